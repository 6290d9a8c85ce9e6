#!/usr/bin/env bash
# Sweep bench on the CPU: the wall time of a 4-run sweep, three ways, in one
# invocation on real MNIST (2 epochs of 6,000 images each, small kernels):
#   1. four `mnist-monitor train` processes one after another (a shell loop);
#   2. `mnist-monitor sweep` (one process, the data set read once);
#   3. the same grid queued on a running `serve` (`sweep --server`), timed
#      from the request to the last run's end.
# Prints each wall time and runs per minute, and the ratios against 1.
# Usage: bash bench/sweep.sh [path/to/mnist-monitor]
set -euo pipefail
BIN=${1:-target/release/mnist-monitor}
DATA=${DATA:-datasets/mnist}
WORK=$(mktemp -d)
trap 'kill $SERVE 2>/dev/null || true; rm -rf "$WORK"' EXIT
FLAGS=(--epochs 2 --limit-train 6000 --limit-test 2000 --val-size 1000 --batch-size 64 --backend cpu --quiet --hw-interval 0 --data-dir "$DATA")
now() { date +%s.%N; }

t0=$(now)
for lr in 0.001 0.003; do for k in 8,16,16,16 16,32,32,32; do
  "$BIN" train "${FLAGS[@]}" --lr $lr --kernels $k --run-dir "$WORK/a/runs" --checkpoint-dir "$WORK/a/ckpt" >/dev/null
done; done
t1=$(now)
"$BIN" sweep --grid lr=0.001,0.003 --grid kernels=8,16,16,16:16,32,32,32 -- "${FLAGS[@]}" \
  --run-dir "$WORK/b/runs" --checkpoint-dir "$WORK/b/ckpt" >/dev/null 2>&1
t2=$(now)
"$BIN" serve --bind 127.0.0.1:0 --data-dir "$DATA" --hw-interval 0 --run-dir "$WORK/c/runs" --checkpoint-dir "$WORK/c/ckpt" 2>"$WORK/serve.log" &
SERVE=$!
until grep -q "serving on" "$WORK/serve.log"; do sleep 0.1; done
URL=$(grep -o 'http://[^/ ]*' "$WORK/serve.log" | head -1)
curl -s "$URL/api/health" >/dev/null
t3=$(now)
"$BIN" sweep --grid lr=0.001,0.003 --grid kernels=8,16,16,16:16,32,32,32 --server "$URL" -- "${FLAGS[@]}" >/dev/null 2>&1
while :; do
  done=$(curl -s "$URL/api/runs" | { grep -o '"status":"completed"' || true; } | wc -l)
  queued=$(curl -s "$URL/api/queue" | { grep -o '"run_id"' || true; } | wc -l)
  [ "$done" -ge 4 ] && [ "$queued" -eq 0 ] && break
  sleep 0.2
done
t4=$(now)
python3 - "$t0" "$t1" "$t2" "$t3" "$t4" <<'PY'
import sys
t0, t1, t2, t3, t4 = map(float, sys.argv[1:])
rows = [("4 x train, one after another", t1 - t0), ("sweep (one process)", t2 - t1), ("sweep --server (the queue)", t4 - t3)]
base = rows[0][1]
for name, s in rows:
    print(f"{name:32s} {s:7.1f} s  {4 * 60 / s:5.1f} runs/min  {base / s:4.2f}x")
PY
