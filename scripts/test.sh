#!/usr/bin/env bash
# README's test command: formatting, lints, the CRD checked by real Kubernetes tooling, the
# packaging, the image built from the Dockerfile, then every test (some need root, etcd,
# Redis, nftables and Docker: scripts/install-deps.sh provides them).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh

echo "== cargo fmt --check"
cargo fmt --check
echo "== cargo clippy"
cargo clippy --all-targets --quiet -- -D warnings

echo "== the CRD against the Kubernetes API (kubernetes-validate --strict)"
cargo build --quiet
./target/debug/schism crd | diff -u crds/schism.yaml - || { echo "crds/schism.yaml is stale" >&2; exit 1; }
.tools/venv/bin/kubernetes-validate --strict --quiet crds/schism.yaml
echo "== examples against the CRD's openAPIV3Schema (openapi-schema-validator)"
.tools/venv/bin/python scripts/validate_against_crd.py crds/schism.yaml examples/*.yaml examples/local/*.yaml
./target/debug/schism validate --quiet examples/*.yaml examples/local/*.yaml

bash scripts/validate-packaging.sh

# The image, from the Dockerfile, once per run and never beside a cargo build. Every image,
# container and network the run made is removed at the end (SCHISM_KEEP_IMAGES=1 keeps the
# images, to rebuild from the cache).
echo "== the image (scripts/container-images.sh)"
if [ "${SCHISM_KEEP_IMAGES:-}" != 1 ]; then
  trap 'bash scripts/container-images.sh --remove' EXIT
fi
bash scripts/container-images.sh

# The fuzz targets, which tests/fuzz_targets.rs runs for a bounded time each.
echo "== the fuzz targets (scripts/fuzz.sh build)"
bash scripts/fuzz.sh build

echo "== tests"
cargo nextest run --no-fail-fast --status-level fail
