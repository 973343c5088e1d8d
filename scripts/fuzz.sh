#!/usr/bin/env bash
# The coverage-guided fuzz targets of fuzz/ (cargo-fuzz and libFuzzer, on the nightly toolchain,
# with AddressSanitizer and overflow checks).
#   bash scripts/fuzz.sh build          builds every target (tests/fuzz_targets.rs runs them)
#   bash scripts/fuzz.sh run TARGET [S] fuzzes one target for S seconds (default 60) from its
#                                       seeds, keeping what it learns in fuzz/corpus/TARGET
set -euo pipefail
cd "$(dirname "$0")/.."

rustup run nightly rustc --version >/dev/null 2>&1 || {
  echo "the nightly toolchain is missing: rustup toolchain install nightly --profile minimal" >&2
  exit 1
}
cargo fuzz --version >/dev/null 2>&1 || {
  echo "cargo-fuzz is missing: bash scripts/install-deps.sh installs it" >&2
  exit 1
}

# Unoptimized (still instrumented for coverage, with AddressSanitizer and overflow checks): on
# two cores this builds in about 5 minutes instead of 14 for the optimized build, at several
# times fewer executions per second. SCHISM_FUZZ_RELEASE=1 builds the optimized targets.
if [ "${SCHISM_FUZZ_RELEASE:-}" = 1 ]; then
  build_flags=(--release --codegen-units 16)
else
  build_flags=(--dev)
fi

case "${1:-}" in
  build)
    cargo +nightly fuzz build "${build_flags[@]}"
    ;;
  run)
    target=${2:?which target: $(cargo +nightly fuzz list | tr '\n' ' ')}
    mkdir -p "fuzz/corpus/$target"
    cargo +nightly fuzz run "${build_flags[@]}" "$target" "fuzz/corpus/$target" "fuzz/seeds/$target" \
      -- -max_total_time="${3:-60}" -timeout=10 -rss_limit_mb=2048
    ;;
  *)
    echo "usage: bash scripts/fuzz.sh build | run TARGET [SECONDS]" >&2
    exit 2
    ;;
esac
