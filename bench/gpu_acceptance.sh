#!/usr/bin/env bash
# Every GPU figure the issues owe, in one command of at most 8 minutes on a
# fresh NVIDIA machine (the H100 the project borrows now and then: no Rust,
# no internet, CUDA at /usr/local/cuda, PyTorch and nvidia-smi):
#
#   1. time to the first batch, cold (empty kernel caches) and warm (the
#      first batch of step 3);
#   2. ours vs PyTorch eager, steady-state images/s at batch 128 and 512, in
#      this one invocation (bench/compare.py), with warm caches;
#   3. the 10-epoch default at batch 512 and its test accuracy;
#   4. wgpu images/s on the GPU (when a Vulkan driver answers);
#   5. `stats --json` during a CUDA run: the GPU, its process, its user;
#   6. two runs on one GPU at once against one run alone (images/s each),
#      and the device `--device cuda` picked, with its reason;
#   7. a per-kernel profile (nsys when present, else CubeCL's profiler);
#   8. the cost of per-layer statistics at the default interval: images/s
#      with them over images/s without, alternating rounds (goal >= 0.98);
#   9. one sample's steady cost against one step (the `sample_cost`
#      example, when gpu-carry/ holds it): what a sample adds, in ms, and
#      what that costs at the default interval, without the one-time
#      compile that step 8's short runs include.
#
#   bash bench/gpu_acceptance.sh [BIN] [OUT_DIR]
#
# BIN defaults to $CARGO_TARGET_DIR/release/mnist-monitor (or gpu-carry/
# mnist-monitor when it exists), OUT_DIR to gpu-acceptance/. Each step's
# output goes to OUT_DIR/<step>.log and every figure to OUT_DIR/summary.txt,
# which is printed at the end. Each step has a time limit, so the whole run
# stays under 8 minutes and a step that fails or overruns costs only itself.
# GPU=cpu runs the same steps on the CPU backend, to check the script where
# no GPU is at hand.
set -u
cd "$(dirname "$0")/.."
default_bin=${CARGO_TARGET_DIR:-target}/release/mnist-monitor
[ -x gpu-carry/mnist-monitor ] && default_bin=gpu-carry/mnist-monitor
BIN=${1:-$default_bin}
OUT=${2:-gpu-acceptance}
GPU=${GPU:-cuda}
export CUDA_PATH=${CUDA_PATH:-/usr/local/cuda}
# NVRTC (CubeCL compiles its kernels with it): the toolkit's, else the one
# PyTorch's wheels bring.
for d in "$CUDA_PATH/lib64" /usr/local/lib/python3*/dist-packages/nvidia/*/lib \
    /usr/local/lib/python3*/site-packages/nvidia/*/lib /usr/lib/python3/dist-packages/nvidia/*/lib; do
    [ -d "$d" ] && LD_LIBRARY_PATH=${LD_LIBRARY_PATH:+$LD_LIBRARY_PATH:}$d
done
export LD_LIBRARY_PATH
mkdir -p "$OUT"
: >"$OUT/summary.txt"
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"; kill $(jobs -p) 2>/dev/null' EXIT
# One fresh kernel cache for this invocation: step 1 measures it cold.
export MNIST_MONITOR_KERNEL_CACHE=$WORK/kernel-cache
T0=$SECONDS
say() { echo "$*" | tee -a "$OUT/summary.txt"; }

BUDGET=480 # seconds for all steps: the command ends within 8 minutes
step() { # name, seconds, command...
    local name=$1 limit=$2; shift 2
    local left=$((BUDGET - (SECONDS - T0)))
    [ "$left" -lt "$limit" ] && limit=$left
    if [ "$limit" -lt 5 ]; then say "== $name: skipped, the 8-minute budget is spent"; return 1; fi
    say "== $name (limit ${limit}s): $*"
    local t0=$SECONDS
    timeout --kill-after=5 "$limit" "$@" >"$OUT/$name.log" 2>&1
    local rc=$?
    say "   exit $rc after $((SECONDS - t0)) s (total $((SECONDS - T0)) s)"
    return $rc
}

train() { # name, seconds, train flags...
    local name=$1 limit=$2; shift 2
    step "$name" "$limit" "$BIN" train --json --quiet --hw-interval 0 \
        --run-dir "$WORK/runs-$name" --checkpoint-dir "$WORK/ckpt-$name" "$@"
    # The summary, and the first-batch time from the run's own phase event.
    python3 - "$OUT/$name.log" "$WORK/runs-$name" <<'EOF' | tee -a "$OUT/summary.txt"
import glob, json, sys
lines = [l for l in open(sys.argv[1]) if l.startswith("{")]
d = json.loads(lines[-1]) if lines else {}
first = None
for log in glob.glob(sys.argv[2] + "/*/events.jsonl"):
    for l in open(log):
        e = json.loads(l)
        if e.get("type") == "phase" and e.get("phase") == "training":
            first = e["message"].split(" s after")[0].replace("first batch ", "")
keys = ("status", "backend", "device", "epochs", "test_accuracy", "images_per_sec")
print("  ", {k: d.get(k) for k in keys}, "first batch after", first, "s")
EOF
}

nvidia-smi >"$OUT/nvidia-smi.txt" 2>&1 && head -15 "$OUT/nvidia-smi.txt" | tee -a "$OUT/summary.txt"
ldconfig -p 2>/dev/null | grep -E "libnvrtc|libcuda.so" | head -4 | tee -a "$OUT/summary.txt"
"$BIN" backends | tee -a "$OUT/summary.txt"

# 1. Cold: a short run on an empty kernel cache (compiles and autotunes).
train first-batch-cold 180 --backend "$GPU" --batch-size 512 --epochs 1 --limit-train 5120
step warmup-128 60 "$BIN" warmup --backend "$GPU" --batch-size 128 --quiet
tail -1 "$OUT/warmup-128.log" | tee -a "$OUT/summary.txt"

# 2. Ours vs PyTorch eager, one invocation, warm caches.
step compare 100 python3 bench/compare.py --bin "$BIN" --device "$GPU" --batch-sizes 128,512 --epochs 3
head -4 "$OUT/compare.log" | tee -a "$OUT/summary.txt"

# 3. The 10-epoch default at batch 512 (its first batch is the warm
# figure), and 5. `stats` while it trains.
(sleep 1; for _ in $(seq 1 60); do
    grep -q '"batch"' "$WORK"/runs-default-10-epochs-512/*/events.jsonl 2>/dev/null && break
    sleep 1
done
"$BIN" stats --json >"$OUT/stats-json-during-run.log" 2>&1
"$BIN" stats >"$OUT/stats-text-during-run.log" 2>&1) &
train default-10-epochs-512 80 --backend "$GPU" --batch-size 512 --epochs 10
wait
python3 - "$OUT/stats-json-during-run.log" <<'EOF' | tee -a "$OUT/summary.txt"
import json, sys
try:
    s = json.load(open(sys.argv[1]))
except Exception as e:
    sys.exit(f"   no stats: {e}")
for g in s.get("gpus") or []:
    procs = [(p.get("pid"), p.get("user"), p.get("command"), p.get("gpu_memory_bytes")) for p in g.get("processes") or []]
    print("   GPU", g.get("index"), g.get("name"), "util %", g.get("utilization_percent"),
          "mem", g.get("memory_used_bytes"), "temp", g.get("temperature_celsius"),
          "power", g.get("power_watts"), "processes", procs)
if not s.get("gpus"):
    print("   no GPUs:", s.get("gpu_error"))
EOF

# 8. Per-layer statistics at the default interval against none, alternating
# rounds of the same short run (batch 128: the most steps per image).
layers_round() { # round, with (1|0)
    local off=(--layer-stats-every 0); [ "$2" = 1 ] && off=() # 1: the default interval
    "$BIN" train --json --quiet --hw-interval 0 --backend "$GPU" --batch-size 128 --epochs 2 \
        --limit-train "${LAYERS_IMAGES:-30720}" --limit-test 512 "${off[@]}" \
        --run-dir "$WORK/runs-layers" --checkpoint-dir "$WORK/ckpt-layers" | tail -1 |
        python3 -c "import json,sys; print($1, $2, json.load(sys.stdin)['images_per_sec'])"
}
layers_rounds() {
    layers_round 0 1 # compiles the statistics' kernels once
    for r in 1 2 3; do
        if [ $((r % 2)) = 1 ]; then layers_round $r 1; layers_round $r 0
        else layers_round $r 0; layers_round $r 1; fi
    done
}
export BIN GPU WORK LAYERS_IMAGES; export -f layers_round layers_rounds
step layers-overhead 75 bash -c layers_rounds
python3 - "$OUT/layers-overhead.log" <<'EOF' | tee -a "$OUT/summary.txt"
import sys
rows = [l.split() for l in open(sys.argv[1]) if l.count(" ") == 2 and l[0].isdigit()]
by = {}
for r, w, ips in rows:
    if r != "0":
        by.setdefault(r, {})[w] = float(ips)
ratios = sorted(v["1"] / v["0"] for v in by.values() if "1" in v and "0" in v)
for r, v in sorted(by.items()):
    print("   round", r, "with", v.get("1"), "without", v.get("0"))
if ratios:
    print("   layer statistics at the default interval: median ratio %.3f (range %.3f-%.3f)" % (ratios[len(ratios) // 2], ratios[0], ratios[-1]))
else:
    print("   layer statistics: no complete round")
EOF

# 9. One sample against one step, steady state (the example prints the
# cost at the default interval and at 10, 100 and 500).
SAMPLE_COST=$(dirname "$BIN")/sample_cost
if [ -x "$SAMPLE_COST" ]; then
    step sample-cost 30 "$SAMPLE_COST" "$GPU" 128 40
    grep -E "^(backend|median|a sample)" "$OUT/sample-cost.log" | sed 's/^/   /' | tee -a "$OUT/summary.txt"
else
    say "== sample-cost: skipped, no $SAMPLE_COST (build it with --example sample_cost)"
fi

# 4. wgpu on the GPU (its own kernels: a short run, capped).
train wgpu 30 --backend wgpu --batch-size 512 --epochs 2 --limit-train 10240

# 6. Two runs sharing one GPU against one alone: what the queue's one run
# per free GPU saves. `--device cuda` picks the GPU (the reason is in
# run_started); the pair is pinned to the same device.
train alone 40 --device "$GPU" --batch-size 512 --epochs 2 --limit-train 30720
python3 - "$WORK/runs-alone" <<'EOF' | tee -a "$OUT/summary.txt"
import glob, json, sys
for log in glob.glob(sys.argv[1] + "/*/events.jsonl"):
    for l in open(log):
        e = json.loads(l)
        if e.get("type") == "run_started":
            print("   device", e.get("device"), "index", e.get("device_index"), "because:", e.get("device_reason"))
EOF
pinned=$GPU; [ "$GPU" = cuda ] && pinned=cuda:0
train together-a 60 --device "$pinned" --batch-size 512 --epochs 2 --limit-train 30720 &
train together-b 60 --device "$pinned" --batch-size 512 --epochs 2 --limit-train 30720 &
wait

# 7. Where a step's time goes, per kernel.
profile_run=("$BIN" train --backend "$GPU" --batch-size 512 --epochs 1 --limit-train 10240 --json --quiet
    --hw-interval 0 --run-dir "$WORK/runs-prof" --checkpoint-dir "$WORK/ckpt-prof")
if command -v nsys >/dev/null; then
    step profile-nsys 45 nsys profile --stats=true --force-overwrite true -o "$WORK/prof" "${profile_run[@]}"
    grep -A 25 "cuda_gpu_kern_sum" "$OUT/profile-nsys.log" | head -30 | tee -a "$OUT/summary.txt"
else
    CUBECL_DEBUG_OPTION=profile step profile-cubecl 45 "${profile_run[@]}"
    grep -iE "kernel|ms|us" "$OUT/profile-cubecl.log" | head -30 | tee -a "$OUT/summary.txt"
fi

say "total $((SECONDS - T0)) s; logs in $OUT/ (summary.txt)"
