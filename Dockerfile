# syntax=docker/dockerfile:1
# One image for the controller (`schism controller`) and the node agent (`schism agent`).
#
# The image runs as an unprivileged user (65532) by default: that is what the controller, and
# `schism wait` / `schism report` in CI, need. The node agent must enter other pods' network
# namespaces and change their firewall and qdiscs, so the Helm chart runs it as root with the
# few capabilities that takes (see charts/schism/values.yaml, `agent.securityContext`); the
# controller Deployment additionally sets runAsNonRoot, a read-only root filesystem and drops
# every capability.

FROM rust:1.95-bookworm AS builder
WORKDIR /build

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

FROM debian:bookworm-slim
# The node agent's data plane shells out to nft, iptables (NFQUEUE delay loop), tc and ip.
RUN apt-get update \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
         nftables iptables iproute2 ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --system --gid 65532 schism \
    && useradd --system --uid 65532 --gid 65532 --no-create-home --home-dir /nonexistent \
         --shell /usr/sbin/nologin schism
COPY --from=builder /usr/local/bin/schism /usr/local/bin/schism
USER 65532:65532
ENTRYPOINT ["schism"]
CMD ["--help"]
