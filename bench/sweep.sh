#!/usr/bin/env bash
# Sweep bench on the CPU: the wall time of a 4-run sweep, three ways, in one
# invocation on real MNIST (2 epochs of 6,000 images each, small kernels):
#   1. four `mnist-monitor train` processes one after another (a shell loop);
#   2. `mnist-monitor sweep` (one process, the data set read once);
#   3. the same grid queued on a running `serve` (`sweep --server`), timed
#      from the request to the last run's end;
#   4. where Slurm is installed (Debian's slurmctld, slurmd, munge): the same
#      grid through `sweep --executor slurm` on a single-node Slurm this
#      script starts on loopback, each task given every CPU
#      (--cpus-per-task=nproc, so tasks run one at a time like the others),
#      timed from the submission to the last run's end.
# Prints each wall time and runs per minute, and the ratios against 1.
# Usage: bash bench/sweep.sh [path/to/mnist-monitor]
set -euo pipefail
BIN=$(realpath "${1:-target/release/mnist-monitor}")
DATA=$(realpath "${DATA:-datasets/mnist}")
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
t5=$t4; t6=$t4
if [ -x /usr/sbin/slurmctld ] && [ -x /usr/sbin/slurmd ] && [ -x /usr/sbin/munged ]; then
  S=$WORK/slurm; mkdir -p "$S"/{munge,state,spool,log}; chmod 755 "$S/munge"
  head -c 1024 /dev/urandom >"$S/munge/munge.key"; chmod 600 "$S/munge/munge.key"
  /usr/sbin/munged -F --force --socket="$S/munge/sock" --key-file="$S/munge/munge.key" \
    --pid-file="$S/munge/pid" --seed-file="$S/munge/seed" --log-file="$S/log/munged.log" &
  MUNGE=$!
  port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
  me=$(id -un); cpus=$(nproc)
  cat >"$S/slurm.conf" <<EOF
ClusterName=bench
SlurmctldHost=localhost
SlurmctldPort=$(port)
SlurmdPort=$(port)
AuthType=auth/munge
AuthInfo=socket=$S/munge/sock
CredType=cred/munge
SlurmUser=$me
SlurmdUser=$me
StateSaveLocation=$S/state
SlurmdSpoolDir=$S/spool
SlurmctldPidFile=$S/ctld.pid
SlurmdPidFile=$S/d.pid
SlurmctldLogFile=$S/log/ctld.log
SlurmdLogFile=$S/log/d.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SchedulerType=sched/builtin
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
ReturnToService=2
MpiDefault=none
NodeName=localhost NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=1000 State=UNKNOWN
PartitionName=debug Nodes=localhost Default=YES MaxTime=INFINITE State=UP
EOF
  export SLURM_CONF=$S/slurm.conf
  until [ -S "$S/munge/sock" ]; do sleep 0.1; done
  /usr/sbin/slurmctld -D -f "$SLURM_CONF" 2>"$S/log/ctld.err" & CTLD=$!
  sleep 0.5
  /usr/sbin/slurmd -D -f "$SLURM_CONF" -N localhost 2>"$S/log/d.err" & SLURMD=$!
  trap 'kill $SERVE $SLURMD $CTLD $MUNGE 2>/dev/null || true; wait 2>/dev/null; rm -rf "$WORK"' EXIT
  until [ "$(sinfo -h -o %T 2>/dev/null)" = idle ]; do sleep 0.2; done
  mkdir -p "$WORK/d"
  t5=$(now)
  out=$(cd "$WORK/d" && "$BIN" sweep --grid lr=0.001,0.003 --grid kernels=8,16,16,16:16,32,32,32 \
    --executor slurm --cpus-per-task "$cpus" -- "${FLAGS[@]}" 2>/dev/null)
  job=$(echo "$out" | python3 -c 'import json,sys; print(json.load(sys.stdin)["job_id"])')
  while squeue -h -j "$job" 2>/dev/null | grep -q .; do sleep 0.2; done
  t6=$(now)
  grep -l '"run_finished"' "$WORK"/d/runs/*/events.jsonl | wc -l | xargs echo "   slurm runs finished:"
fi
python3 - "$t0" "$t1" "$t2" "$t3" "$t4" "$t5" "$t6" <<'PY'
import sys
t0, t1, t2, t3, t4, t5, t6 = map(float, sys.argv[1:])
rows = [("4 x train, one after another", t1 - t0), ("sweep (one process)", t2 - t1), ("sweep --server (the queue)", t4 - t3)]
if t6 > t5:
    rows.append(("sweep --executor slurm", t6 - t5))
base = rows[0][1]
for name, s in rows:
    print(f"{name:32s} {s:7.1f} s  {4 * 60 / s:5.1f} runs/min  {base / s:4.2f}x")
PY
