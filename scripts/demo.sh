#!/usr/bin/env bash
# README's main command: builds Schism, validates the shipped experiments and prints the CRD that
# `kubectl apply` installs.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
cargo build --release --quiet
echo "== schism validate examples"
./target/release/schism validate examples/*.yaml examples/local/*.yaml
echo "== schism crd (first lines)"
./target/release/schism crd | head -n 20
