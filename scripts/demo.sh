#!/usr/bin/env bash
# README's main command: builds Schism and runs the local etcd experiment — three etcd members
# in network namespaces, partitioned, slowed down and killed while a client workload runs —
# then prints the verdict. Needs root (network namespaces, nftables).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
cargo build --release --quiet
./target/release/schism validate --quiet examples/*.yaml examples/local/*.yaml
echo "== schism run examples/local/etcd-3node.yaml"
./target/release/schism run --out schism-out/etcd-3node examples/local/etcd-3node.yaml
