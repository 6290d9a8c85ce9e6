#!/usr/bin/env bash
# The GPU checks the trainer, telemetry and speed issues still owe, in one
# invocation on an NVIDIA machine (written for the H100 the project borrows):
#
#   1. the full default run on CUDA, batch 512, 10 epochs (goal: >= 99.0% test),
#   2. ours vs PyTorch eager on CUDA at batch 128 and 512 (bench/compare.py),
#   3. wgpu training (time recorded),
#   4. `stats --json` while a CUDA run is going (the GPU, its process, its user),
#   5. Nsight Compute's kernel summary of a few CUDA steps, when `ncu` exists.
#
#   bench/gpu_acceptance.sh [BIN] [OUT_DIR]
#
# BIN defaults to target/release/mnist-monitor, OUT_DIR to gpu-acceptance/.
# Everything each step prints goes to OUT_DIR/<step>.log; a summary is
# printed at the end. Needs datasets/mnist; CUDA_PATH defaults to
# /usr/local/cuda. Steps that fail are reported and the rest still run.
set -u
BIN=${1:-${CARGO_TARGET_DIR:-target}/release/mnist-monitor}
OUT=${2:-gpu-acceptance}
export CUDA_PATH=${CUDA_PATH:-/usr/local/cuda}
mkdir -p "$OUT"
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
common=(--json --quiet --run-dir "$WORK/runs" --checkpoint-dir "$WORK/ckpt")

step() { # name, command...
    local name=$1; shift
    echo "== $name: $*" | tee -a "$OUT/summary.txt"
    local t0=$SECONDS
    "$@" >"$OUT/$name.log" 2>&1
    local rc=$?
    echo "   exit $rc after $((SECONDS - t0)) s" | tee -a "$OUT/summary.txt"
    return $rc
}

summary_of() { # the --json summary line of a train log, trimmed
    grep '^{' "$OUT/$1.log" | tail -1 | python3 -c '
import json, sys
d = json.loads(sys.stdin.read())
keys = ("status", "backend", "device", "epochs", "test_accuracy", "train_seconds", "images_per_sec")
print("  ", {k: d.get(k) for k in keys})' 2>/dev/null | tee -a "$OUT/summary.txt"
}

nvidia-smi >"$OUT/nvidia-smi.txt" 2>&1
"$BIN" backends >"$OUT/backends.txt" 2>&1

step cuda-default-10-epochs "$BIN" train --backend cuda --batch-size 512 --epochs 10 "${common[@]}"
summary_of cuda-default-10-epochs

step compare-cuda python3 bench/compare.py --bin "$BIN" --device cuda --batch-sizes 128,512 --epochs 3
head -4 "$OUT/compare-cuda.log" | tee -a "$OUT/summary.txt"

step wgpu-3-epochs "$BIN" train --backend wgpu --batch-size 512 --epochs 3 "${common[@]}"
summary_of wgpu-3-epochs

# stats while a run trains: start one, wait for its first batches, sample.
"$BIN" train --backend cuda --batch-size 512 --epochs 2 "${common[@]}" >"$OUT/stats-run.log" 2>&1 &
run=$!
for _ in $(seq 1 120); do
    sleep 1
    grep -q '"batch"' "$WORK"/runs/*/events.jsonl 2>/dev/null && break
done
step stats-json-during-run "$BIN" stats --json
step stats-text-during-run "$BIN" stats
wait $run
python3 - "$OUT/stats-json-during-run.log" <<'EOF' | tee -a "$OUT/summary.txt"
import json, sys
s = json.load(open(sys.argv[1]))
for g in s.get("gpus") or []:
    procs = [(p.get("pid"), p.get("user"), p.get("command"), p.get("gpu_memory_bytes")) for p in g.get("processes") or []]
    print("   GPU", g.get("index"), g.get("name"), "util %", g.get("utilization_percent"),
          "mem", g.get("memory_used_bytes"), "temp", g.get("temperature_celsius"),
          "power", g.get("power_watts"), "processes", procs)
if not s.get("gpus"):
    print("   no GPUs:", s.get("gpu_error"))
EOF

if command -v ncu >/dev/null || [ -x /usr/local/cuda/bin/ncu ]; then
    NCU=$(command -v ncu || echo /usr/local/cuda/bin/ncu)
    step ncu-kernels "$NCU" --print-summary per-kernel --launch-skip 200 --launch-count 400 \
        "$BIN" train --backend cuda --batch-size 512 --epochs 1 --limit-train 20480 "${common[@]}"
fi

echo "logs in $OUT/ (summary.txt)"
