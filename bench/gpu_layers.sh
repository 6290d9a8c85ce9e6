#!/usr/bin/env bash
# One-off: cold first batch at 128 on CUDA, then alternating layer-stat rounds.
set -u
BIN=${1:-gpu-carry/mnist-monitor}
export CUDA_PATH=/usr/local/cuda MNIST_MONITOR_KERNEL_CACHE=/tmp/kc
W=/tmp/w; mkdir -p $W
run() { # name, limit, extra flags
  local n=$1 l=$2; shift 2; local t0=$SECONDS
  timeout $l $BIN train --json --quiet --hw-interval 0 --backend cuda --batch-size 128 --epochs 2 \
    --limit-train 30720 --limit-test 512 --run-dir $W/runs-$n --checkpoint-dir $W/ck-$n "$@" > $W/$n.out 2>&1
  local ips=$(tail -1 $W/$n.out | python3 -c "import json,sys; print(json.load(sys.stdin)['images_per_sec'])" 2>/dev/null)
  local fb=$(grep -h '"phase":"training"' $W/runs-$n/*/events.jsonl 2>/dev/null | python3 -c "import json,sys; print(json.loads(sys.stdin.readline())['message'])" 2>/dev/null)
  echo "$n wall $((SECONDS - t0)) s, images/s $ips; $fb"
}
run cold 230
du -sh /tmp/kc 2>/dev/null
for r in 1 2 3 4 5; do
  if [ $((r % 2)) = 1 ]; then run with$r 40; run without$r 40 --layer-stats-every 0
  else run without$r 40 --layer-stats-every 0; run with$r 40; fi
done
