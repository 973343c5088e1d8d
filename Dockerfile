# One image for the controller (`schism controller`), the runner (`schism runner`, one pod per
# experiment) and the node agent (`schism agent`).
#
# No `# syntax=` line: it would make BuildKit pull a frontend image from a registry, and the
# file builds with the legacy builder (DOCKER_BUILDKIT=0) as well. The base images are build
# arguments; their defaults are the official images, and a machine that cannot pull them
# passes its own (scripts/container-images.sh makes them from Debian's mirror).
#
# The image runs as an unprivileged user (65532) by default: that is what the controller, and
# `schism wait` / `schism report` in CI, need. The node agent must enter other pods' network
# namespaces and change their firewall and qdiscs, so the Helm chart runs it as root with the
# few capabilities that takes (see charts/schism/values.yaml, `agent.securityContext`); the
# controller Deployment additionally sets runAsNonRoot, a read-only root filesystem and drops
# every capability.

ARG BUILDER_IMAGE=rust:1.95-bookworm
ARG BASE_IMAGE=debian:bookworm-slim

FROM ${BUILDER_IMAGE} AS builder
WORKDIR /build
# The shipped binary carries no debug info (the release profile keeps some for benchmarks).
ENV CARGO_PROFILE_RELEASE_DEBUG=0 CARGO_PROFILE_RELEASE_STRIP=symbols

# Dependency layer: build the dependencies against stub sources, so that a change to Schism's
# own code does not recompile them. Stubs exist for every target Cargo.toml names.
COPY Cargo.toml Cargo.lock ./
RUN mkdir -p src benches \
    && echo 'fn main() {}' > src/main.rs \
    && touch src/lib.rs \
    && for bench in $(awk '/^\[\[bench\]\]/ { b = 1; next } b && /^name *=/ { gsub(/"/, "", $3); print $3; b = 0 }' Cargo.toml); do \
         echo 'fn main() {}' > "benches/$bench.rs"; \
       done \
    && cargo build --release --locked \
    && rm -rf src benches

COPY src ./src
COPY benches ./benches
# The stubs' build artefacts are older than the real sources; touch makes cargo rebuild them.
RUN touch src/main.rs src/lib.rs \
    && cargo build --release --locked \
    && cp target/release/schism /usr/local/bin/schism \
    && /usr/local/bin/schism --version

FROM ${BASE_IMAGE}
# The node agent's data plane shells out to nft, iptables (NFQUEUE delay loop), tc and ip.
# No ca-certificates (with the openssl tool it needs, 3 MB): in a pod the API server's CA is
# the mounted ServiceAccount one, kubeconfigs carry their cluster's CA, and the HTTP
# workloads use the web PKI roots compiled into the binary.
# Documentation, manual pages and translations are not installed (dpkg's path-exclude).
RUN printf '%s\n' 'path-exclude=/usr/share/doc/*' 'path-exclude=/usr/share/man/*' \
         'path-exclude=/usr/share/locale/*' 'path-exclude=/usr/share/info/*' \
         > /etc/dpkg/dpkg.cfg.d/schism-no-docs \
    && apt-get update \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
         nftables iptables iproute2 \
    && apt-get clean \
    && rm -rf /var/lib/apt/lists/* /var/cache/apt/* /var/cache/debconf/*-old \
         /var/lib/dpkg/*-old /var/log/apt /var/log/dpkg.log /var/log/alternatives.log \
    && groupadd --system --gid 65532 schism \
    && useradd --system --uid 65532 --gid 65532 --no-create-home --home-dir /nonexistent \
         --shell /usr/sbin/nologin schism
COPY --from=builder /usr/local/bin/schism /usr/local/bin/schism
USER 65532:65532
ENTRYPOINT ["schism"]
CMD ["--help"]
