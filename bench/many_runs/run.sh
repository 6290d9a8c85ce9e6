#!/usr/bin/env bash
# Many-runs bench: the server with thousands of runs in its runs folder.
# One invocation generates (or reuses) N realistic runs of S steps each
# (generate.py), then measures, each as a `name: value unit` line:
#    1. reading the logs once: `cat` of every events.jsonl, warm cache (the
#       second of two reads), and their bytes;
#    2. index rebuild: `mnist-monitor index --run-dir DIR/runs --rebuild`,
#       and its ratio to 1;
#    3. serve start with an index: from starting `serve` to
#       GET /api/runs?limit=50 answering total == N;
#    4. first page (the first answered GET) and warm page (median of 20);
#    5. filter over all runs: median of 10 of each of two queries;
#    6. page open to a filled Runs table (Chromium, page_open.mjs);
#    7. compare of 20 runs: 20 series?points=600 fetched at once;
#    8. server RSS; 9. idle CPU over 20 s; 10. a new run appears (a copied
#       run renamed into place, until the filter lists it);
# then a table of every figure with its goal.
#
# Usage: bash bench/many_runs/run.sh [--runs N] [--steps S] [--bin PATH]
#            [--keep DIR] [--live K] [--port P]
#   --runs 1000 --steps 2000 by default; --bin defaults to
#   $CARGO_TARGET_DIR/release/mnist-monitor ($CARGO_TARGET_DIR defaults to
#   ~/.cache/mnist-monitor-target); --keep DIR keeps the generated runs there
#   and reuses them next time when they are N x S (otherwise a temporary
#   folder is used and removed). Loopback only; every wait is bounded.
set -uo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
RUNS=1000 STEPS=2000 BIN="" KEEP="" LIVE=0 PORT=""
die() { echo "run.sh: $*" >&2; exit 2; }
while [ $# -gt 0 ]; do
  case $1 in
    --runs) RUNS=${2:?}; shift 2 ;;
    --steps) STEPS=${2:?}; shift 2 ;;
    --bin) BIN=${2:?}; shift 2 ;;
    --keep) KEEP=${2:?}; shift 2 ;;
    --live) LIVE=${2:?}; shift 2 ;;
    --port) PORT=${2:?}; shift 2 ;;
    -h|--help) sed -n '2,/^set /p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) die "unknown argument $1 (see --help)" ;;
  esac
done
[[ $RUNS =~ ^[0-9]+$ && $RUNS -ge 1 ]] || die "--runs takes a positive number"
[[ $STEPS =~ ^[0-9]+$ && $STEPS -ge 1 ]] || die "--steps takes a positive number"
TARGET=${CARGO_TARGET_DIR:-$HOME/.cache/mnist-monitor-target}
BIN=${BIN:-$TARGET/release/mnist-monitor}
[ -x "$BIN" ] || die "no binary at $BIN (cargo build --release, or --bin PATH)"
BIN=$(realpath "$BIN")
command -v python3 >/dev/null || die "python3 is needed"

if [ -n "$KEEP" ]; then
  mkdir -p "$KEEP" || die "cannot create $KEEP"
  DIR=$(realpath "$KEEP")
else
  DIR=$(mktemp -d "${TMPDIR:-/tmp}/many_runs.XXXXXX")
fi
LOGS=$DIR/bench-logs
mkdir -p "$LOGS"
RESULTS=$LOGS/results.txt
: >"$RESULTS"
SERVE=""
cleanup() {
  if [ -n "$SERVE" ] && kill -0 "$SERVE" 2>/dev/null; then
    kill "$SERVE" 2>/dev/null
    for _ in $(seq 50); do kill -0 "$SERVE" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$SERVE" 2>/dev/null || true
  fi
  if [ -s "$LOGS/new_run_id" ]; then
    new=$(head -1 "$LOGS/new_run_id")
    [ -n "$new" ] && rm -rf "${DIR:?}/runs/$new"
  fi
  [ -n "$KEEP" ] || rm -rf "$DIR"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

now_ns() { date +%s%N; }
secs() { python3 -c "print(f'{($2 - $1) / 1e9:.3f}')"; }  # secs T0_NS T1_NS
say() { echo "$1: $2" | tee -a "$RESULTS"; }           # say NAME "VALUE UNIT"
measure() { python3 "$HERE/measure.py" "$@" | tee -a "$RESULTS"; return "${PIPESTATUS[0]}"; }
count_runs() { find "$DIR/runs" -mindepth 2 -maxdepth 2 -name events.jsonl -not -path '*/.*' 2>/dev/null | wc -l; }
server_alive() {
  if ! kill -0 "$SERVE" 2>/dev/null; then
    echo "the server exited; the end of its log:" >&2
    tail -20 "$LOGS/serve.log" >&2
    exit 1
  fi
}

echo "many-runs bench: $RUNS runs x $STEPS steps in $DIR; $BIN" >&2
echo "($("$BIN" --version 2>/dev/null | head -1); $(nproc) CPUs)" >&2

# --- the runs -------------------------------------------------------------
stamp_ok() {
  [ -f "$DIR/generate.json" ] && python3 - "$DIR/generate.json" "$RUNS" "$STEPS" "$LIVE" <<'EOF'
import json, sys
g = json.load(open(sys.argv[1]))
sys.exit(0 if (g["runs"], g["steps"], g.get("live", 0)) == tuple(map(int, sys.argv[2:5])) else 1)
EOF
}
if stamp_ok && [ "$(count_runs)" -eq "$RUNS" ]; then
  echo "reusing the $RUNS runs in $DIR/runs" >&2
else
  t0=$(now_ns)
  python3 "$HERE/generate.py" --out "$DIR" --runs "$RUNS" --steps "$STEPS" --live "$LIVE" --force \
    >"$LOGS/generate.out" || die "generate.py failed"
  t1=$(now_ns)
  say "generating the runs" "$(secs "$t0" "$t1") s"
fi
mkdir -p "$DIR/checkpoints" "$DIR/data"

# --- 1. reading the logs once ---------------------------------------------
cat_all() { printf '%s\0' "$DIR"/runs/*/events.jsonl | xargs -0 cat >/dev/null; }
cat_all
t0=$(now_ns); cat_all; t1=$(now_ns)
CAT_NS=$((t1 - t0))
say "reading the logs once" "$(secs "$t0" "$t1") s"
say "log bytes" "$(printf '%s\0' "$DIR"/runs/*/events.jsonl | du -cb --files0-from=- | tail -1 | cut -f1) bytes"

# --- 2. index rebuild -----------------------------------------------------
t0=$(now_ns)
if timeout 1800 "$BIN" index --run-dir "$DIR/runs" --rebuild 2>"$LOGS/index.log"; then
  t1=$(now_ns)
  say "index rebuild" "$(secs "$t0" "$t1") s"
  say "index rebuild / reading once" "$(python3 -c "print(f'{($t1 - $t0) / max($CAT_NS, 1):.2f}')") x"
  [ -d "$DIR/runs/.index" ] && echo "  (index: $(du -sh "$DIR/runs/.index" | cut -f1))"
else
  rc=$?
  say "index rebuild" "n/a (exit $rc)"
  tail -5 "$LOGS/index.log" | sed 's/^/  /' >&2
fi

# --- 3, 4. serve start, first and warm page --------------------------------
PORT=${PORT:-$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')}
URL=http://127.0.0.1:$PORT
t0=$(now_ns)
"$BIN" serve --bind "127.0.0.1:$PORT" --run-dir "$DIR/runs" --checkpoint-dir "$DIR/checkpoints" \
  --data-dir "$DIR/data" --hw-interval 1 >"$LOGS/serve.log" 2>&1 &
SERVE=$!
measure ready --url "$URL" --runs "$RUNS" --t0-ns "$t0" --pid "$SERVE" || server_alive
server_alive
measure pages --url "$URL" || server_alive

# --- 5. filters ------------------------------------------------------------
measure filters --url "$URL" || server_alive

# --- 6. the page in Chromium ------------------------------------------------
if [ ! -d "$ROOT/web/node_modules/playwright-core" ]; then
  say "page open to a filled Runs table" "n/a (no web/node_modules: npm ci --prefix web --no-audit --no-fund)"
elif [ ! -x "${CHROMIUM:-/usr/bin/chromium}" ]; then
  say "page open to a filled Runs table" "n/a (no Chromium at ${CHROMIUM:-/usr/bin/chromium})"
else
  timeout 120 node "$HERE/page_open.mjs" "$URL/" 60000 | tee -a "$RESULTS"
  [ "${PIPESTATUS[0]}" -eq 124 ] && say "page open to a filled Runs table" "n/a (timed out)"
fi
server_alive

# --- 7. compare ---------------------------------------------------------------
measure compare --url "$URL" || server_alive

# --- 8, 9. memory and idle CPU ----------------------------------------------
measure rss --pid "$SERVE"
measure idle --pid "$SERVE" --seconds 20
server_alive

# --- 10. a new run ------------------------------------------------------------
measure newrun --url "$URL" --runs-dir "$DIR/runs" --id-file "$LOGS/new_run_id" || server_alive

python3 "$HERE/measure.py" summary --results "$RESULTS"
echo "($RUNS runs x $STEPS steps; logs of this bench in $LOGS$([ -n "$KEEP" ] || echo ", removed at exit"))"
