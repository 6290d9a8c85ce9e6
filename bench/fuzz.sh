#!/usr/bin/env bash
# Fuzzes the parsers longer than CI does: the IDX parser, the event-log
# reader and its torn-tail repair, the JSON and TOML configuration parsers
# and the PNG path (proptest properties in each crate's `fuzz` module).
#   bash bench/fuzz.sh [CASES]     (CI runs the default 256 per property)
set -euo pipefail
cd "$(dirname "$0")/.."
export PROPTEST_CASES="${1:-20000}"
time cargo test --release -p mnist-data -p mnist-events -p mnist-train fuzz -- --test-threads 2
