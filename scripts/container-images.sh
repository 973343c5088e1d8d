#!/usr/bin/env bash
# Builds Schism's image from its own Dockerfile, on a machine that may not pull from any
# registry (as root). It starts dockerd if none answers. If the official base images cannot
# be pulled, it makes its own from Debian's mirror:
#
#   schism-test/debian:bookworm      debootstrap --variant=minbase, imported (the runtime base)
#   schism-test/rust:bookworm        the same root plus gcc, libc6-dev and this machine's Rust
#                                    toolchain (the builder)
#
# Then it builds IMAGE (default schism:test) with the legacy builder (no BuildKit frontend to
# pull) and prints the image's size and layers. Nothing is committed; the images stay in the
# engine for the container tests, and `scripts/container-images.sh --remove` deletes them, with
# every container and network labelled schism-test (what the container tests make).
set -euo pipefail
cd "$(dirname "$0")/.."

image=${IMAGE:-schism:test}
base=schism-test/debian:bookworm
builder=schism-test/rust:bookworm
mirror=http://deb.debian.org/debian

fail() {
  echo "container-images: $*" >&2
  exit 1
}

start_dockerd() {
  docker info >/dev/null 2>&1 && return
  command -v dockerd >/dev/null || fail "dockerd is missing: apt-get install docker.io (scripts/install-deps.sh does)"
  echo "== starting dockerd (log: /var/log/schism-dockerd.log)"
  setsid dockerd >/var/log/schism-dockerd.log 2>&1 </dev/null &
  for _ in $(seq 1 60); do
    docker info >/dev/null 2>&1 && return
    sleep 0.5
  done
  tail -20 /var/log/schism-dockerd.log >&2
  fail "dockerd did not answer within 30 s"
}

# Official base images this script pulled, so that --remove removes them too.
pulled_list=/var/tmp/schism-pulled-images

if [ "${1:-}" = --remove ]; then
  docker info >/dev/null 2>&1 || exit 0
  # What the container tests made carries the label schism-test.
  docker ps -aq --filter label=schism-test | xargs -r docker rm -f >/dev/null
  docker network ls -q --filter label=schism-test | xargs -r docker network rm >/dev/null
  { echo "$image"; echo "$base"; echo "$builder"; cat "$pulled_list" 2>/dev/null || true; } \
    | xargs docker image rm -f >/dev/null 2>&1 || true
  rm -f "$pulled_list"
  docker image prune -f >/dev/null
  exit 0
fi

start_dockerd

# A root made from Debian's mirror, with this machine's CA bundle so that containers reach
# the mirror and crates.io through the engine's NAT.
make_root() {
  local dir=$1
  debootstrap --variant=minbase bookworm "$dir" "$mirror" >"$dir.log" 2>&1 \
    || { tail -20 "$dir.log" >&2; fail "debootstrap failed"; }
  mkdir -p "$dir/etc/ssl/certs"
  cp /etc/ssl/certs/ca-certificates.crt "$dir/etc/ssl/certs/ca-certificates.crt"
  rm -rf "$dir"/var/cache/apt/archives/*.deb "$dir"/var/lib/apt/lists/*
}

runtime_base=debian:bookworm-slim
builder_base=rust:1.95-bookworm
pull() {
  docker image inspect "$1" >/dev/null 2>&1 && return
  timeout 30 docker pull -q "$1" >/dev/null 2>&1 || return 1
  echo "$1" >>"$pulled_list"
}
if ! pull "$runtime_base" || ! pull "$builder_base"; then
  runtime_base=$base
  builder_base=$builder
  work=$(mktemp -d /var/tmp/schism-images.XXXXXX)
  trap 'rm -rf "$work" "$work.log"' EXIT
  if ! docker image inspect "$base" >/dev/null 2>&1; then
    echo "== $base from $mirror (debootstrap, about a minute)"
    make_root "$work/root"
    tar -C "$work/root" -c . | docker import - "$base" >/dev/null
  fi
  if ! docker image inspect "$builder" >/dev/null 2>&1; then
    echo "== $builder: $base plus gcc and this machine's Rust toolchain"
    [ -d "$work/root" ] || make_root "$work/root"
    chroot "$work/root" sh -c 'apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends gcc libc6-dev ca-certificates >/dev/null && rm -rf /var/lib/apt/lists/*' \
      || fail "cannot install gcc into the builder root"
    # Installing ca-certificates rewrote the bundle; the machine's own is the one that works.
    cp /etc/ssl/certs/ca-certificates.crt "$work/root/etc/ssl/certs/ca-certificates.crt"
    toolchain=$(rustup toolchain list | awk '/\(default\)/ {print $1}')
    toolchain=${toolchain:-stable-x86_64-unknown-linux-gnu}
    mkdir -p "$work/root/usr/local/rustup/toolchains" "$work/root/usr/local/cargo/bin"
    cp -a "$(rustup toolchain list -v | awk -v t="$toolchain" '$1 == t {print $NF}')" \
      "$work/root/usr/local/rustup/toolchains/$toolchain"
    for tool in cargo rustc rustup; do
      ln -sf "/usr/local/rustup/toolchains/$toolchain/bin/$tool" "$work/root/usr/local/cargo/bin/$tool" 2>/dev/null || true
    done
    tar -C "$work/root" -c . | docker import \
      -c 'ENV RUSTUP_HOME=/usr/local/rustup CARGO_HOME=/usr/local/cargo PATH=/usr/local/cargo/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
      - "$builder" >/dev/null
  fi
fi

echo "== $image from the Dockerfile (legacy builder; base $runtime_base, builder $builder_base)"
started=$(date +%s)
DOCKER_BUILDKIT=0 docker build --quiet \
  --build-arg "BUILDER_IMAGE=$builder_base" --build-arg "BASE_IMAGE=$runtime_base" \
  -t "$image" . >/dev/null || fail "docker build failed"
size=$(docker image inspect -f '{{.Size}}' "$image")
base_size=$(docker image inspect -f '{{.Size}}' "$runtime_base")
echo "== $image built in $(( $(date +%s) - started )) s: $(( size / 1048576 )) MiB, $(( (size - base_size) / 1048576 )) MiB on top of $runtime_base"
docker history --format '   {{.Size}}\t{{.CreatedBy}}' "$image" | cut -c 1-110 | head -8
