#!/usr/bin/env bash
# Fuzzes the parsers longer than CI does: the IDX parser, the event-log
# reader and its torn-tail repair, the JSON and TOML configuration parsers
# and the PNG path (proptest properties in each crate's `fuzz` module).
#   bash bench/fuzz.sh [CASES]     (CI runs the default 256 per property)
set -euo pipefail
cd "$(dirname "$0")/.."
export PROPTEST_CASES="${1:-20000}"
# --workspace, not -p: the same features as `cargo test --release --workspace`,
# so nothing is rebuilt (selecting packages would build Burn without its GPU
# features, a second full build).
time cargo test --release --workspace --lib fuzz -- --test-threads 2
