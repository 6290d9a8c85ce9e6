#!/usr/bin/env python3
"""Many realistic runs for the many-runs bench: a runs folder as the trainer
and the sweeps leave it.

    python3 bench/many_runs/generate.py --out DIR --runs N --steps S [--seed 1]
        [--live K] [--jobs J] [--check] [--force]
    python3 bench/many_runs/generate.py --out DIR --check-only

writes DIR/runs/<id>/events.jsonl (and meta.json for the runs that have a
name, notes or tags), DIR/checkpoints/ and DIR/data/ (empty) and
DIR/generate.json (what was generated: the harness reuses a folder whose
parameters match). Every log is what `mnist-monitor train` writes (the
schema of crates/events/src/lib.rs and hardware.rs, the configuration of
crates/train/src/config.rs, the event order of crates/train/src/trainer.rs):

* `run_started` (full config, model summary, backend, device, sizes,
  batches_per_epoch, provenance), the backend note (`log`), `phase`
  compiling (GPU backends) and training (after the first flush);
* S `batch` events over the config's epochs, written in flushes of about
  100 ms as the trainer does (10-20 ms per batch, so several batches share a
  `ts_ms`), `hardware` about every second from the sampler, interleaved;
* after every epoch an `eval` of `val`, `samples` (16 PNG thumbnails) and a
  `checkpoint` (with the retention policy's `removed`); the test `eval` after
  the last epoch (every epoch with eval_test_every_epoch); `run_finished`.

Statuses: mostly completed; about 3% failed (NaN loss with its alert, CUDA
out of memory, a checkpoint that cannot be written), 2% stopped, 2%
interrupted (the log just ends; its mtime is its last event's time), 1%
resumed after being killed mid-epoch (a second `run_started` with
`resumed_from_*`), and the last --live K runs cut at the present time (left
without an end, mtime now). About one run in three belongs to a sweep of
8-50 runs (tagged `sweep-<time>-<hex>` in meta.json); some runs are tagged
`keep`, some named, some with notes.

Python 3.11 standard library only. Lines are rendered with %-templates (the
hot `batch` line in one format call), runs in parallel over --jobs processes.
"""

import argparse
import base64
import itertools
import json
import math
import multiprocessing
import os
import random
import shutil
import struct
import sys
import time
import zlib

# --------------------------------------------------------------------------
# Constants of the trainer and of MNIST

TRAIN_FILES = 60_000
TEST_SIZE = 10_000
SAMPLE_COUNT = 16  # crates/train/src/samples.rs
FLUSH_MS = 100.0  # trainer::FLUSH_EVERY
FLUSH_MAX = 256  # trainer::FLUSH_MAX_BATCHES
HIDDEN = 128
CLASSES = 10
TEST_SUPPORT = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
TRAIN_SUPPORT = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
# Digits people confuse, for the off-diagonal of a confusion matrix.
CONFUSABLE = {0: [6, 8], 1: [7, 8], 2: [7, 3], 3: [5, 8], 4: [9, 6], 5: [3, 6],
              6: [0, 5], 7: [2, 9], 8: [3, 5], 9: [4, 7]}
BATCH_SIZES = [32, 48, 64, 96, 128, 192, 256, 384, 512]
KERNEL_PRESETS = [[32, 64, 64, 64], [16, 32, 32, 32]]
KERNEL_CHOICES = [8, 16, 24, 32, 48, 64, 96, 128]
CONFIG_KEYS = ["kernels", "optimizer", "lr", "momentum", "batch_size", "epochs",
               "schedule", "backend", "device", "seed", "val_size", "limit_train",
               "limit_val", "limit_test", "eval_test_every_epoch", "keep_checkpoints",
               "apply_label_overrides"]
DATA_SHA256 = {  # mnist-data's FILES (the real MNIST hashes)
    "t10k-images-idx3-ubyte": "346e55b948d973a97e58d2351dde16a484bd415d4595297633bb08f03db6a073",
    "t10k-labels-idx1-ubyte": "67da17c76eaffca5446c3361aaab5c3cd6d1c2608764d35dfb1850b086bf8dd5",
    "train-images-idx3-ubyte": "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
    "train-labels-idx1-ubyte": "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
}

# Machines the runs trained on: a kind, its CPU, its GPUs.
HOSTS = [
    # name, weight, cpu model, logical, physical, ram GiB, gpu name, gpu count, gpu mem GiB, power limit
    ("gpu-node-01", 12, "AMD EPYC 7543 32-Core Processor", 64, 32, 512, "NVIDIA H100 80GB HBM3", 8, 79.6, 700.0),
    ("gpu-node-02", 12, "AMD EPYC 7543 32-Core Processor", 64, 32, 512, "NVIDIA H100 80GB HBM3", 8, 79.6, 700.0),
    ("gpu-node-03", 10, "AMD EPYC 7543 32-Core Processor", 64, 32, 512, "NVIDIA H100 80GB HBM3", 8, 79.6, 700.0),
    ("dgx-a100-1", 14, "AMD EPYC 7742 64-Core Processor", 32, 16, 256, "NVIDIA A100-SXM4-80GB", 4, 79.2, 400.0),
    ("dgx-a100-2", 11, "AMD EPYC 7742 64-Core Processor", 32, 16, 256, "NVIDIA A100-SXM4-80GB", 4, 79.2, 400.0),
    ("ws-anna", 20, "13th Gen Intel(R) Core(TM) i9-13900K", 32, 24, 64, "NVIDIA GeForce RTX 4090", 1, 23.99, 450.0),
    ("laptop-ben", 15, "Intel(R) Core(TM) i7-1165G7 @ 2.80GHz", 8, 4, 16, None, 0, 0, 0),
    ("cpu-box", 6, "Intel(R) Xeon(R) CPU E5-2680 v4 @ 2.40GHz", 28, 14, 128, None, 0, 0, 0),
]
USERS = {"gpu-node-01": "anna", "gpu-node-02": "ben", "gpu-node-03": "chen", "dgx-a100-1": "dana",
         "dgx-a100-2": "anna", "ws-anna": "anna", "laptop-ben": "ben", "cpu-box": "chen"}
OTHER_USERS = ["erik", "fatima", "gus", "hana"]
NO_NVML = "no NVIDIA GPU: NVML: libnvidia-ml.so.1: cannot open shared object file: No such file or directory"
NOTES = [
    "baseline for the lr sweep",
    "loss plateaus after epoch 3; try cosine",
    "compare with the small preset",
    "rerun of the best config with another seed",
    "good candidate for the report",
    "checking whether dropout hurts at this width",
]
NAMES = ["baseline", "best so far", "small preset", "wide kernels", "sgd momentum", "cosine test",
         "long run", "quick check", "paper config", "repro attempt"]


# --------------------------------------------------------------------------
# Small helpers

def run_id_at(sec, salt):
    """`YYYYMMDD-HHMMSS-hhhh` in UTC, as mnist_train::new_run_id."""
    return time.strftime("%Y%m%d-%H%M%S", time.gmtime(sec)) + "-%04x" % salt


def model_summary(k):
    k1, k2, k3, k4 = k
    conv = lambda i, o: i * o * 9 + o
    rows = [
        ("conv1", f"Conv2d 3x3 1→{k1} + ReLU", [k1, 26, 26], conv(1, k1)),
        ("conv2", f"Conv2d 3x3 {k1}→{k2} + ReLU", [k2, 24, 24], conv(k1, k2)),
        ("pool1", "MaxPool2d 2x2", [k2, 12, 12], 0),
        ("dropout1", "Dropout p=0.25", [k2, 12, 12], 0),
        ("conv3", f"Conv2d 3x3 {k2}→{k3} + ReLU", [k3, 10, 10], conv(k2, k3)),
        ("conv4", f"Conv2d 3x3 {k3}→{k4} + ReLU", [k4, 8, 8], conv(k3, k4)),
        ("pool2", "MaxPool2d 2x2", [k4, 4, 4], 0),
        ("dropout2", "Dropout p=0.5", [k4, 4, 4], 0),
        ("flatten", "Flatten", [k4 * 16], 0),
        ("fc1", f"Linear {k4 * 16}→{HIDDEN} + ReLU", [HIDDEN], k4 * 16 * HIDDEN + HIDDEN),
        ("fc2", f"Linear {HIDDEN}→{CLASSES}", [CLASSES], HIDDEN * CLASSES + CLASSES),
    ]
    layers = [{"name": n, "kind": kd, "output_shape": s, "params": p} for n, kd, s, p in rows]
    return {"input_shape": [1, 28, 28], "layers": layers, "total_params": sum(r[3] for r in rows)}


def png_gray(pixels):
    """A 28x28 8-bit grayscale PNG."""
    raw = b"".join(b"\x00" + bytes(pixels[r * 28:(r + 1) * 28]) for r in range(28))
    chunk = lambda t, d: struct.pack(">I", len(d)) + t + d + struct.pack(">I", zlib.crc32(t + d))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 28, 28, 8, 0, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(raw, 6)) + chunk(b"IEND", b""))


def digit_thumbnails():
    """16 stroke-like 28x28 images (the trainer's fixed sample images)."""
    rng = random.Random(7)
    out = []
    for _ in range(SAMPLE_COUNT):
        px = [0] * 784
        cx, cy = rng.uniform(11, 17), rng.uniform(11, 17)
        rx, ry = rng.uniform(3, 7), rng.uniform(6, 9)
        a0, a1 = rng.uniform(0, 3), rng.uniform(3.5, 6.3)
        for i in range(120):
            a = a0 + (a1 - a0) * i / 119
            x, y = cx + rx * math.cos(a), cy + ry * math.sin(a)
            for dx in (-1, 0, 1):
                for dy in (-1, 0, 1):
                    xi, yi = int(x) + dx, int(y) + dy
                    if 0 <= xi < 28 and 0 <= yi < 28:
                        v = 255 - 70 * (abs(dx) + abs(dy)) - rng.randrange(30)
                        px[yi * 28 + xi] = max(px[yi * 28 + xi], v)
        out.append(base64.b64encode(png_gray(px)).decode())
    return out


THUMBS = digit_thumbnails()
G = [random.Random(11).gauss(0, 1) for _ in range(65536)]  # N(0, 1) draws for the hot loop
SAMPLE_LABELS = [7, 2, 1, 0, 4, 1, 4, 9, 5, 9, 0, 6, 9, 0, 1, 5]


def split_support(n):
    """Class counts of `n` images drawn like MNIST's training set."""
    s = [round(n * c / TRAIN_FILES) for c in TRAIN_SUPPORT]
    s[1] += n - sum(s)
    return s


def dumps(obj):
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False)


def f32(x):
    """A value as serde_json writes an f32 (shortest f32 round trip: ~7-9 digits)."""
    return "%.8g" % x


# --------------------------------------------------------------------------
# The plan: every run's id, time, configuration, fate and meta (main process)

def feasible_pairs(steps):
    """(epochs, batch_size, limit_train) with epochs * batches_per_epoch == steps."""
    pairs = []
    for epochs in range(1, 31):
        if steps % epochs:
            continue
        bpe = steps // epochs
        for bs in BATCH_SIZES:
            full = -(-55_000 // bs)
            if full == bpe:
                pairs.append((epochs, bs, None))
            elif (bpe - 1) * bs < 55_000 and bpe * bs <= 55_000:
                pairs.append((epochs, bs, bpe * bs))
    if not pairs:  # more steps than 30 epochs of batch 32: train on more than MNIST has
        pairs = [(1, 32, steps * 32)]
    pairs = [p for p in pairs if p[1] in BS_WEIGHT] or pairs
    return pairs


def random_kernels(rng):
    r = rng.random()
    if r < 0.4:
        return list(KERNEL_PRESETS[0])
    if r < 0.6:
        return list(KERNEL_PRESETS[1])
    ks = sorted(rng.choice(KERNEL_CHOICES) for _ in range(4))
    return ks


def round_lr(x):
    return float("%.2g" % x)


BS_WEIGHT = {32: 2, 48: 0.5, 64: 4, 96: 0.7, 128: 3, 192: 0.5, 256: 2, 384: 0.4, 512: 1.5}


def pick_pair(rng, pairs):
    """Full data, batch 64 or 128 and up to 20 epochs are the usual choices."""
    w = [(5 if limit is None else 1) * BS_WEIGHT[bs] * (1 if epochs <= 20 else 0.4)
         for epochs, bs, limit in pairs]
    return rng.choices(pairs, w)[0]


def random_config(rng, pairs):
    epochs, bs, limit = pick_pair(rng, pairs)
    opt = "adam" if rng.random() < 0.75 else "sgd"
    return {
        "kernels": random_kernels(rng),
        "optimizer": opt,
        "lr": round_lr(10 ** rng.uniform(-4, math.log10(3e-3))),
        "momentum": (rng.choice([0.9, 0.9, 0.9, 0.0, 0.5, 0.95]) if opt == "sgd" else 0.0),
        "batch_size": bs,
        "epochs": epochs,
        "schedule": "cosine" if rng.random() < 0.3 else "constant",
        "backend": rng.choices(["auto", "cuda", "cpu", "wgpu"], [60, 25, 10, 5])[0],
        "device": None,
        "seed": 42 if rng.random() < 0.6 else rng.randrange(1000),
        "val_size": 5000 if rng.random() < 0.9 else 10000,
        "limit_train": limit,
        "limit_val": None,
        "limit_test": None if rng.random() < 0.95 else 2000,
        "eval_test_every_epoch": rng.random() < 0.1,
        "keep_checkpoints": rng.choices([3, 1, 5], [85, 8, 7])[0],
        "apply_label_overrides": rng.random() < 0.03,
    }


def sweep_configs(rng, pairs, size):
    """A base configuration and a grid over lr and one or two other fields."""
    base = random_config(rng, pairs)
    lrs = sorted(rng.sample([1e-4, 2e-4, 3e-4, 5e-4, 1e-3, 2e-3, 3e-3], rng.randint(2, 5)))
    axes = [("lr", lrs)]
    others = ["kernels", "optimizer", "pair", "seed", "schedule"]
    for field in rng.sample(others, rng.randint(1, 2)):
        if field == "kernels":
            vals = [list(k) for k in {tuple(random_kernels(rng)) for _ in range(4)}]
        elif field == "optimizer":
            vals = ["adam", "sgd"]
        elif field == "pair":
            vals = rng.sample(pairs, min(len(pairs), rng.randint(2, 4)))
        elif field == "seed":
            vals = [1, 2, 3]
        else:
            vals = ["constant", "cosine"]
        axes.append((field, vals))
    combos = list(itertools.product(*(v for _, v in axes)))
    seed = 0
    out = []
    while len(out) < size:  # a grid smaller than the sweep repeats it with other seeds
        for combo in combos:
            if len(out) == size:
                break
            c = json.loads(json.dumps(base))
            for (field, _), v in zip(axes, combo):
                if field == "pair":
                    c["epochs"], c["batch_size"], c["limit_train"] = v
                elif field == "optimizer":
                    c["optimizer"] = v
                    c["momentum"] = 0.9 if v == "sgd" else 0.0
                else:
                    c[field] = v
            if seed:
                c["seed"] = base["seed"] + seed
            out.append(c)
        seed += 1
    return out


def final_accuracy(rng, c, steps):
    """Test accuracy this configuration reaches: 0.95..0.995."""
    params = model_summary(c["kernels"])["total_params"]
    cap = min(1.0, max(0.0, (math.log10(params) - 4.4) / 1.4))
    best = -3.0 if c["optimizer"] == "adam" else -2.5
    lrfit = math.exp(-((math.log10(c["lr"]) - best) ** 2) / (2 * 0.45 ** 2))
    images = steps * c["batch_size"]
    amount = min(1.0, max(0.0, math.log10(images / 20_000) / 1.6))
    q = 0.3 * cap + 0.4 * lrfit + 0.3 * amount + (0.08 if c["schedule"] == "cosine" else 0)
    q = q * 1.05 + 0.05 + rng.gauss(0, 0.06)
    return 0.95 + 0.045 * min(1.0, max(0.0, q))


def host_for(rng, config):
    while True:
        h = rng.choices(HOSTS, [x[1] for x in HOSTS])[0]
        gpu = h[6] is not None
        if config["backend"] in ("cuda", "wgpu") and not gpu:
            continue
        if config["backend"] == "wgpu" and h[0] != "ws-anna":
            continue
        return h


def make_plans(args, now_ms):
    rng = random.Random(args.seed)
    n, steps = args.runs, args.steps
    pairs = feasible_pairs(steps)
    # Blocks of runs in time order: single runs and sweeps (about n/3 runs).
    blocks = []
    left = n // 3 if n >= 8 else 0
    while left >= 8:
        size = min(left, rng.randint(8, 50))
        if left - size < 8:
            size = left
        blocks.append(("sweep", size))
        left -= size
    blocks += [("single", 1)] * (n - sum(b[1] for b in blocks))
    rng.shuffle(blocks)

    plans = []
    for kind, size in blocks:
        if kind == "sweep":
            configs = sweep_configs(rng, pairs, size)
            sweep = len(plans)  # a key; the id (from its first run's time) comes below
        else:
            configs, sweep = [random_config(rng, pairs)], None
        host = None
        for c in configs:
            if sweep is None or host is None:
                host = host_for(rng, c)
            if host[6] is None:
                c["backend"] = rng.choice(["auto", "cpu"])
            elif c["backend"] == "wgpu" and host[0] != "ws-anna":
                c["backend"] = "cuda"
            if c["backend"] == "cuda" and rng.random() < 0.25:
                c["device"] = rng.randrange(host[7])
            plans.append({"config": c, "sweep": sweep, "host": host[0],
                          "first_of_sweep": sweep is not None and c is configs[0]})
    for p in plans:  # all of the training files, less the validation set, make the epoch
        limit = p["config"]["limit_train"]
        if limit is None or limit > TRAIN_FILES - p["config"]["val_size"]:
            p["config"]["val_size"] = 5000
    # Fates.
    for p in plans:
        r = rng.random()
        p["fate"] = ("failed_nan" if r < 0.012 else "failed_oom" if r < 0.022
                     else "failed_ckpt" if r < 0.03 else "stopped" if r < 0.05
                     else "interrupted" if r < 0.07 else "resumed" if r < 0.08 else "completed")
        if p["fate"] == "failed_oom" and p["host"] in ("laptop-ben", "cpu-box"):
            p["fate"] = "failed_nan"
        if p["fate"] == "failed_nan":  # a learning rate too high for it
            p["config"]["lr"] = round_lr(rng.uniform(2e-3, 3e-3))
            p["config"]["schedule"] = "constant"
        if p["fate"] == "failed_ckpt" and p["config"]["epochs"] == 1:
            p["fate"] = "stopped"
        if p["fate"] == "resumed" and p["config"]["epochs"] == 1:
            p["fate"] = "interrupted"
    live = min(args.live, n)
    for p in plans[n - live:]:
        p["fate"] = "live"
    # Durations, then start times: strictly increasing, the live runs last,
    # still going at `now`.
    for p in plans:
        c = p["config"]
        p["dt_ms"] = rng.uniform(10, 20)
        p["compile_s"] = 0.0 if (p["host"] in ("laptop-ben", "cpu-box") or c["backend"] == "cpu") \
            else (rng.uniform(1.5, 6) if rng.random() < 0.8 else rng.uniform(20, 90))
        p["est_s"] = p["compile_s"] + steps * p["dt_ms"] * 1.14 / 1000 + c["epochs"] * 1.6 + 1
    live_plans = plans[n - live:]
    starts_live = []
    for p in live_plans:
        starts_live.append(now_ms - int(rng.uniform(0.1, 0.8) * p["est_s"] * 1000))
    starts_live.sort()
    for i in range(1, len(starts_live)):
        starts_live[i] = max(starts_live[i], starts_live[i - 1] + 1000)
    t = (starts_live[0] if starts_live else now_ms) - 60_000
    gaps = []  # before each run's start: a sweep's queue starts the next run as one ends
    for i, p in enumerate(plans[:n - live]):
        queued = p["sweep"] is not None and not p["first_of_sweep"]
        gaps.append(rng.uniform(1, 3) + plans[i - 1]["est_s"] if queued else rng.uniform(60, 3600))
    total = sum(gaps) + (plans[n - live - 1]["est_s"] if n - live > 0 else 0)
    t = int(t - total * 1000)
    starts = []
    for g in gaps:
        t += int(g * 1000)
        starts.append(t)
    starts += starts_live
    taken = set()
    sweep_ids = {}
    last_sec = -1
    for p, s in zip(plans, starts):
        sec = max(s // 1000, last_sec + 1)
        last_sec = sec
        p["start_ms"] = sec * 1000 + rng.randrange(1000)
        while True:
            rid = run_id_at(sec, rng.getrandbits(16))
            if rid not in taken:
                break
        taken.add(rid)
        p["run_id"] = rid
        if p["sweep"] is not None and p["sweep"] not in sweep_ids:
            sweep_ids[p["sweep"]] = "sweep-" + run_id_at(sec - rng.randint(1, 5), rng.getrandbits(16))
        p["now_ms"] = now_ms
        p["steps"] = steps
        p["seed"] = rng.getrandbits(32)
        p["acc"] = final_accuracy(rng, p["config"], steps)
    # Meta: the sweep tag, some keep tags, names, notes.
    for p in plans:
        tags = []
        if p["sweep"] is not None:
            tags.append(sweep_ids[p["sweep"]])
        name, notes = None, ""
        if rng.random() < 0.06 or (p["acc"] > 0.992 and rng.random() < 0.3):
            tags.append("keep")
        if rng.random() < 0.02:
            tags.append(rng.choice(["baseline", "paper", "debug"]))
        if rng.random() < 0.03:
            name = rng.choice(NAMES)
        if rng.random() < 0.02:
            notes = rng.choice(NOTES)
        p["meta"] = {"name": name, "notes": notes, "tags": tags} if (tags or name or notes) else None
        p["sweep"] = sweep_ids.get(p["sweep"])
    return plans


# --------------------------------------------------------------------------
# Rendering one run (worker processes)

class Cut(Exception):
    """The log ends here (an interrupted or live run)."""


class Hardware:
    """The sampler of one run's machine: `hardware` event bodies over time."""

    def __init__(self, rng, host_name, plan):
        h = next(x for x in HOSTS if x[0] == host_name)
        self.rng = rng
        _, _, self.cpu_model, self.cores, self.phys, ram, self.gpu_name, self.ngpu, gmem, plimit = h
        self.host = host_name
        self.ram = ram * 1024 ** 3
        self.pid = rng.randrange(2000, 4_000_000)
        self.user = USERS[host_name]
        self.rss = rng.randrange(900, 2500) * 1024 ** 2
        self.cfg = plan["config"]
        self.busy_gpu = None
        if self.ngpu:
            self.busy_gpu = self.cfg["device"] if self.cfg["device"] is not None else rng.randrange(self.ngpu)
        self.gmem = int(gmem * 1024 ** 3)
        self.plimit = plimit
        self.uuids = ["GPU-%08x-%04x-%04x-%04x-%012x" % (
            random.Random(host_name + str(i)).getrandbits(32), i, 0x4a2b, 0x9c1d, random.Random(i).getrandbits(48))
            for i in range(self.ngpu)]
        # Other people's jobs on this machine's other GPUs (fixed over the run).
        self.others = {}
        for i in range(self.ngpu):
            if i != self.busy_gpu and rng.random() < 0.5:
                self.others[i] = (rng.randrange(10_000, 4_000_000), rng.choice(OTHER_USERS),
                                  rng.choice(["python3", "python", "mnist-monitor", "torchrun"]),
                                  rng.randrange(2, 70) * 1024 ** 3 // 1 if self.gmem > 40 * 1024 ** 3
                                  else rng.randrange(1, 20) * 1024 ** 3, rng.randrange(40, 100))
        self.mem_used = int(self.ram * rng.uniform(0.1, 0.5))
        self.disk_total = rng.choice([1_920_383_410_176, 3_840_755_982_336, 999_650_332_672])
        self.disk_avail = int(self.disk_total * rng.uniform(0.2, 0.7))
        self.home = "/home/" + self.user
        self.rx = rng.randrange(10 ** 9, 10 ** 13)
        self.tx = rng.randrange(10 ** 9, 10 ** 12)
        self.per_core = []
        for _ in range(24):  # a pool of per-core rows to draw from
            row = []
            for c in range(self.cores):
                busy = rng.random() < (0.15 if c else 0.9)
                row.append(f32(rng.uniform(70, 100) if busy else rng.uniform(0, 8)))
            self.per_core.append(",".join(row))
        self.load = rng.uniform(0.5, 3)
        self.head = ('"host":"%s","interval_s":1.0,"cpu":{"model":"%s","cores":%d,"physical_cores":%d,'
                     % (host_name, self.cpu_model, self.cores, self.phys))

    def body(self, t_ms, training):
        rng = self.rng
        self.load += (rng.random() - 0.5) * 0.1 + ((1.2 if training else 0.3) - self.load) * 0.05
        usage = (100.0 / self.cores) * (1.1 if training else 0.2) + rng.uniform(0, 3)
        self.mem_used = min(self.ram - 10 ** 9, max(10 ** 9, self.mem_used + rng.randrange(-2 ** 26, 2 ** 26)))
        self.rss = max(500 * 1024 ** 2, self.rss + rng.randrange(-2 ** 20, 2 ** 21))
        self.rx += rng.randrange(10 ** 3, 10 ** 6)
        self.tx += rng.randrange(10 ** 3, 10 ** 5)
        read = rng.choice([0.0, 0.0, float(rng.randrange(4096, 4_000_000))])
        write = float(rng.randrange(4096, 600_000))
        s = ['"sampled_at_ms":%d,' % t_ms, self.head,
             '"usage_percent":%s,"per_core_percent":[%s],"load_avg":[%r,%r,%r]},' % (
                 f32(usage), rng.choice(self.per_core), round(self.load, 2),
                 round(self.load * 0.9, 2), round(self.load * 0.8, 2)),
             '"memory":{"total_bytes":%d,"used_bytes":%d,"available_bytes":%d,"swap_total_bytes":%d,'
             '"swap_used_bytes":0},' % (self.ram, self.mem_used, self.ram - self.mem_used, 8 * 1024 ** 3),
             '"process":{"pid":%d,"rss_bytes":%d,"cpu_percent":%s},' % (
                 self.pid, self.rss, f32(rng.uniform(95, 130) if training else rng.uniform(1, 20))),
             '"disks":[{"name":"/dev/nvme0n1p2","mount":"/","total_bytes":%d,"available_bytes":%d,'
             '"read_bytes_per_sec":%r,"write_bytes_per_sec":%r,"holds":["%s/mnist-monitor/runs",'
             '"%s/mnist-monitor/checkpoints"]},{"name":"/dev/nvme0n1p1","mount":"/boot/efi",'
             '"total_bytes":535805952,"available_bytes":529104896,"read_bytes_per_sec":0.0,'
             '"write_bytes_per_sec":0.0}],' % (self.disk_total, self.disk_avail, read, write, self.home, self.home),
             '"network":[{"interface":"eno1","rx_bytes_per_sec":%r,"tx_bytes_per_sec":%r,"rx_total_bytes":%d,'
             '"tx_total_bytes":%d},{"interface":"lo","rx_bytes_per_sec":%r,"tx_bytes_per_sec":%r,'
             '"rx_total_bytes":%d,"tx_total_bytes":%d}],' % (
                 float(rng.randrange(1000, 900_000)), float(rng.randrange(500, 90_000)), self.rx, self.tx,
                 float(rng.randrange(0, 5000)), float(rng.randrange(0, 5000)), self.tx // 7, self.tx // 7)]
        if not self.ngpu:
            s.append('"gpus":[],"gpu_error":"%s"' % NO_NVML)
            return "".join(s)
        gpus = []
        for i in range(self.ngpu):
            mine = i == self.busy_gpu and self.cfg["backend"] != "cpu"
            other = self.others.get(i)
            procs = []
            if mine:
                util = rng.randrange(78, 100) if training else rng.randrange(0, 10)
                used = int(self.gmem * 0.02) + rng.randrange(1, 4) * 1024 ** 3
                procs.append('{"pid":%d,"kind":"compute","user":"%s","command":"mnist-monitor",'
                             '"gpu_memory_bytes":%d}' % (self.pid, self.user, used - 500 * 1024 ** 2))
            elif other:
                util = max(0, min(100, other[4] + rng.randrange(-8, 8)))
                used = other[3] + 500 * 1024 ** 2
                procs.append('{"pid":%d,"kind":"compute","user":"%s","command":"%s","gpu_memory_bytes":%d}'
                             % (other[0], other[1], other[2], other[3]))
            else:
                util, used = 0, 4 * 1024 ** 2 * 128
            busy = util > 20
            gpus.append(
                '{"index":%d,"name":"%s","uuid":"%s","utilization_percent":%d,"memory_utilization_percent":%d,'
                '"memory_used_bytes":%d,"memory_total_bytes":%d,"temperature_celsius":%d,"power_watts":%r,'
                '"power_limit_watts":%r,"fan_percent":%s,"sm_clock_mhz":%d,"memory_clock_mhz":%d,'
                '"pcie_rx_bytes_per_sec":%r,"pcie_tx_bytes_per_sec":%r,"processes":[%s]}' % (
                    i, self.gpu_name, self.uuids[i], util, util // 3, used, self.gmem,
                    rng.randrange(55, 78) if busy else rng.randrange(28, 40),
                    round(self.plimit * (rng.uniform(0.45, 0.85) if busy else rng.uniform(0.08, 0.12)), 3),
                    self.plimit, ("%d" % rng.randrange(30, 80)) if self.ngpu == 1 else "null",
                    rng.randrange(1700, 1980) if busy else 345, 2619 if busy else 405,
                    float(rng.randrange(10 ** 6, 10 ** 9)) if busy else float(rng.randrange(0, 10 ** 5)),
                    float(rng.randrange(10 ** 5, 10 ** 8)) if busy else float(rng.randrange(0, 10 ** 5)),
                    ",".join(procs)))
        s.append('"gpus":[%s]' % ",".join(gpus))
        return "".join(s)


def eval_body(rng, split, epoch, step, acc, supports, seconds):
    images = sum(supports)
    err = 1 - acc
    w = [math.exp(rng.gauss(0, 0.5)) for _ in range(CLASSES)]
    mean_w = sum(w[c] * supports[c] for c in range(CLASSES)) / images
    conf = [[0] * CLASSES for _ in range(CLASSES)]
    for c in range(CLASSES):
        wrong = min(supports[c], round(supports[c] * err * w[c] / mean_w))
        a, b = CONFUSABLE[c]
        other = rng.choice([x for x in range(CLASSES) if x not in (a, b, c)])
        to_a = round(wrong * rng.uniform(0.3, 0.6))
        to_b = round((wrong - to_a) * rng.uniform(0.4, 0.8))
        conf[c][a] += to_a
        conf[c][b] += to_b
        conf[c][other] += wrong - to_a - to_b
        conf[c][c] = supports[c] - wrong
    correct = sum(conf[c][c] for c in range(CLASSES))
    per = []
    f1s = []
    for c in range(CLASSES):
        pred = sum(conf[r][c] for r in range(CLASSES))
        p = conf[c][c] / pred if pred else 0.0
        r = conf[c][c] / supports[c] if supports[c] else 0.0
        f = 2 * p * r / (p + r) if p + r else 0.0
        f1s.append(f)
        per.append({"class": c, "precision": p, "recall": r, "f1": f, "support": supports[c]})
    accuracy = correct / images
    e = 1 - accuracy
    body = {"split": split, "epoch": epoch, "step": step, "images": images,
            "loss": e * 2.9 + 0.006 + abs(rng.gauss(0, 0.002)), "accuracy": accuracy,
            "f1_macro": sum(f1s) / CLASSES, "mse": e * 0.16 + 0.0003, "per_class": per,
            "confusion": conf, "seconds": seconds}
    return dumps(body)[1:-1], accuracy, body["f1_macro"], body["loss"]


BATCH_T = ('{"seq":%d,"ts_ms":%d,"run_id":"@ID@","type":"batch","epoch":%d,"batch":%d,"batches":@B@,'
           '"step":%d,"size":%d,"loss":%r,"accuracy":%r,"f1_macro":%r,"epoch_loss":%r,"epoch_accuracy":%r,'
           '"epoch_f1_macro":%r,"lr":%r,"images_per_sec":%r,"elapsed_s":%r}\n')


def render(plan):
    """Writes one run's folder; returns (run_id, bytes written, status)."""
    rng = random.Random(plan["seed"])
    rid, c, steps = plan["run_id"], plan["config"], plan["steps"]
    epochs, bs = c["epochs"], c["batch_size"]
    bpe = steps // epochs
    train_size = c["limit_train"] if c["limit_train"] is not None else TRAIN_FILES - c["val_size"]
    val_size = c["val_size"]
    test_size = c["limit_test"] or TEST_SIZE
    fate = plan["fate"]
    cut_ms = plan["now_ms"] if fate == "live" else None
    out = []
    seq = 0
    hw = Hardware(rng, plan["host"], plan)
    host_gpu = hw.ngpu > 0
    backend = "cpu" if (c["backend"] == "cpu" or not host_gpu) else ("wgpu" if c["backend"] == "wgpu" else "cuda")
    state = {"t": float(plan["start_ms"]), "hw_next": plan["start_ms"] + rng.uniform(50, 1000), "training": False}
    batch_t = BATCH_T.replace("@ID@", rid).replace("@B@", str(bpe))
    env_t = '{"seq":%d,"ts_ms":%d,"run_id":"' + rid + '","type":"%s",%s}\n'

    def hw_until(t):
        nonlocal seq
        while state["hw_next"] <= t:
            ts = int(state["hw_next"])
            if cut_ms is not None and ts > cut_ms:
                raise Cut
            seq += 1
            out.append(env_t % (seq, ts, "hardware", hw.body(ts - rng.randrange(0, 3), state["training"])))
            state["hw_next"] += 1000 + rng.uniform(-3, 6)

    def emit(kind, body, advance_ms=0.0):
        nonlocal seq
        state["t"] += advance_ms
        hw_until(state["t"])
        ts = int(state["t"])
        if cut_ms is not None and ts > cut_ms:
            raise Cut
        seq += 1
        out.append(env_t % (seq, ts, kind, body))

    if backend == "cuda":
        gpu = hw.busy_gpu
        device = hw.gpu_name
        reason = ("auto picked cuda:%d (%s: %.1f GiB free, 0%% busy)" % (gpu, hw.gpu_name, hw.gmem / 1024 ** 3 - 0.5)
                  + (", the only GPU" if hw.ngpu == 1 else " over " + ", ".join(
                      "cuda:%d (%s)" % (i, "%d%% busy" % hw.others[i][4] if i in hw.others else "free")
                      for i in range(hw.ngpu) if i != gpu)))
        if c["backend"] == "cuda":
            reason = "backend cuda: " + reason.replace("auto picked", "picked")
        dev_index = gpu
    elif backend == "wgpu":
        device, dev_index = hw.gpu_name + " (Vulkan)", 0
        reason = "backend wgpu on wgpu:0 (%s)" % device
    else:
        device, dev_index = "cpu (%d threads)" % hw.cores, None
        reason = ("backend cpu (flex)" if c["backend"] == "cpu" else
                  "auto picked cpu; cuda: %s; wgpu: no hardware adapter" % NO_NVML)
    argv = ["mnist-monitor", "train"]
    if plan["sweep"]:
        argv = ["mnist-monitor", "sweep", "--grid", "lr=...", "--", "--epochs", str(epochs)]
    else:
        for k in ("lr", "batch_size", "epochs", "optimizer"):
            argv += ["--" + k.replace("_", "-"), str(c[k])]
        argv += ["--kernels", ",".join(map(str, c["kernels"]))]
    prov = {"version": "0.1.0", "git_commit": "%040x" % random.Random(plan["start_ms"] // 86_400_000).getrandbits(160),
            "git_dirty": rng.random() < 0.2, "features": ["cuda"] if backend == "cuda" else
            (["wgpu"] if backend == "wgpu" else []), "burn_version": "0.21.0", "host": plan["host"],
            "command_line": argv, "data_sha256": DATA_SHA256}

    def started(resume=None):
        rs = {"config": c, "model": model_summary(c["kernels"]), "backend": backend, "device": device}
        if dev_index is not None:
            rs["device_index"] = dev_index
        rs["device_reason"] = reason
        rs.update({"train_size": train_size, "val_size": val_size, "test_size": test_size,
                   "batches_per_epoch": bpe})
        if resume:
            rs["resumed_from_epoch"], rs["resumed_from_step"] = resume, resume * bpe
        if c["apply_label_overrides"]:
            rs["label_overrides"] = {"path": "datasets/mnist/labels-overrides.json",
                                     "sha256": "%064x" % rng.getrandbits(256), "relabelled": rng.randrange(3, 40),
                                     "excluded": rng.randrange(0, 12)}
        rs["provenance"] = prov
        emit("run_started", dumps(rs)[1:-1])
        emit("log", '"level":"info","message":%s' % dumps(reason), rng.uniform(0.2, 2))
        if backend != "cpu":
            emit("phase", '"phase":"compiling","message":"compiling GPU kernels and autotuning before the first '
                 'batch: minutes the first time on this GPU, seconds once cached"', rng.uniform(1, 10))

    # The run's curve.
    acc_final = plan["acc"]
    ef = (1 - acc_final) * 1.4
    lr0 = c["lr"]
    tau = max(3.0, 12_000 / bs * math.sqrt(1e-3 / lr0) * (1.0 if c["optimizer"] == "adam" else 2.0))
    tau = min(tau, steps / 3)
    total_steps = bpe * epochs
    noise = 1 / math.sqrt(bs / 64)
    dt = plan["dt_ms"]
    cosine = c["schedule"] == "cosine"
    val_support = split_support(val_size) if c["limit_val"] is None else split_support(c["limit_val"])
    test_support = [round(test_size * s / TEST_SIZE) for s in TEST_SUPPORT]
    test_support[1] += test_size - sum(test_support)
    last_bs = train_size - (bpe - 1) * bs
    gauss, rand, exp, sqrt, cos, pi = rng.gauss, rng.random, math.exp, math.sqrt, math.cos, math.pi
    e_rest = 0.9 - 1.8 * ef
    append = out.append

    # What happens to this run.
    stop_step = None  # the last step trained
    nan_step = None
    fail_epoch = None
    resume_epoch = None
    if fate == "failed_nan":
        nan_step = rng.randrange(1, steps // 3 + 2)
    elif fate == "stopped" or fate == "interrupted":
        stop_step = rng.randrange(1, steps) if steps > 1 else 1
    elif fate == "failed_ckpt":
        fail_epoch = rng.randrange(1, epochs)
    elif fate == "resumed":
        resume_epoch = rng.randrange(1, epochs)
        stop_step = resume_epoch * bpe + rng.randrange(1, bpe) if bpe > 1 else resume_epoch * bpe

    status = "completed"
    error = None
    train_seconds = 0.0
    epochs_done = 0
    steps_done = 0
    test_metrics = None
    best = (0, -1.0)
    kept = []
    ckpt_dir = "checkpoints/" + rid

    def attempt(first_epoch):
        """Trains from `first_epoch`; returns how it ended: done, stopped, killed, nan, ckpt."""
        nonlocal seq, train_seconds, epochs_done, steps_done, test_metrics, best, kept
        started(first_epoch - 1 if first_epoch > 1 else None)
        state["t"] += plan["compile_s"] * 1000 + rng.uniform(200, 900)
        t_start = state["t"] - plan["compile_s"] * 1000
        proc_start = t_start - rng.uniform(500, 3000)
        first_flush = True
        step = (first_epoch - 1) * bpe
        for epoch in range(first_epoch, epochs + 1):
            state["training"] = True
            loss_sum = 0.0
            correct_sum = 0
            images = 0
            pending = []
            last_flush = state["t"]
            epoch_t0 = state["t"]
            t = state["t"]
            gi = rng.randrange(65536)
            for b in range(1, bpe + 1):
                step += 1
                size = bs if b < bpe else last_bs
                gi = (gi + 7919) & 65535
                t += dt * (1 + 0.15 * G[gi]) if rand() < 0.98 else dt * 8
                lr = lr0 * 0.5 * (1 + cos(pi * (step - 1) / total_steps)) if cosine else lr0
                e = ef * (1 + 0.8 * (1 - step / total_steps)) + e_rest * exp(-step / tau)
                p = 1 - e
                k = round(size * p + sqrt(size * p * e) * G[gi ^ 0x5555])
                k = size if k > size else (0 if k < 0 else k)
                acc = k / size
                loss = e * (3.5 - 1.17 * e) * exp((0.04 + 0.5 * (1 - e / 0.9)) * noise * G[gi ^ 0xAAAA])
                loss_sum += loss * size
                correct_sum += k
                images += size
                ea = correct_sum / images
                pending.append((step, b, size, loss, acc, acc * (1 - 0.3 * (1 - acc) * (0.5 + rand())),
                                loss_sum / images, ea, ea * (1 - 0.15 * (1 - ea)), lr))
                is_nan = step == nan_step
                end = step == stop_step or is_nan
                if t - last_flush >= FLUSH_MS or len(pending) >= FLUSH_MAX or b == bpe or end:
                    state["t"] = t
                    hw_until(t)
                    ts = int(state["t"])
                    if cut_ms is not None and ts > cut_ms:
                        raise Cut
                    ips = sum(x[2] for x in pending) / max(1e-9, (state["t"] - last_flush) / 1000)
                    el = (state["t"] - proc_start) / 1000
                    for x in pending:
                        seq += 1
                        append(batch_t % (seq, ts, epoch, x[1], x[0], x[2], x[3], x[4], x[5], x[6], x[7], x[8],
                                          x[9], ips, el))
                    if is_nan:  # the line as serde writes a NaN loss
                        out[-1] = out[-1].replace('"loss":%r' % pending[-1][3], '"loss":null').replace(
                            '"epoch_loss":%r' % pending[-1][6], '"epoch_loss":null')
                    pending = []
                    last_flush = state["t"]
                    if first_flush:
                        first_flush = False
                        emit("phase", '"phase":"training","message":"first batch %.1f s after training started '
                             '(start-up: kernel compilation, autotune, first allocation)"'
                             % ((state["t"] - t_start) / 1000 + 0.3))
                        t = state["t"]
                    if is_nan:
                        emit("alert", '"rule":"loss_not_finite","severity":"critical","message":"loss is NaN at '
                             'step %d (epoch %d): the learning rate %r is probably too high","action":"run '
                             'stopped (--stop-on-nan)"' % (step, epoch, lr0), 1)
                        train_seconds += (state["t"] - epoch_t0) / 1000
                        return "nan"
                    if end:
                        train_seconds += (state["t"] - epoch_t0) / 1000
                        return "stopped"
            train_seconds += (state["t"] - epoch_t0) / 1000
            state["training"] = False
            epochs_done, steps_done = epoch, step
            # Evaluation, samples, checkpoint.
            left = 1 - epoch / epochs
            val_acc = 1 - min(0.6, (1 - acc_final) * (1 + 1.6 * left ** 1.5) + 0.5 * exp(-step / tau)
                              + abs(gauss(0, 0.0006)))
            body, vacc, _, _ = eval_body(rng, "val", epoch, step, val_acc, val_support,
                                         rng.uniform(0.3, 1.5) * val_size / 5000)
            emit("eval", body, rng.uniform(300, 1500) * val_size / 5000)
            if c["eval_test_every_epoch"] or epoch == epochs:
                tacc = acc_final if epoch == epochs else val_acc + gauss(0, 0.0008)
                body, ta, tf1, tl = eval_body(rng, "test", epoch, step, min(0.9995, tacc), test_support,
                                              rng.uniform(0.5, 3) * test_size / 10000)
                emit("eval", body, rng.uniform(500, 3000) * test_size / 10000)
                test_metrics = (ta, tf1, tl)
            smp = []
            for i in range(SAMPLE_COUNT):
                lab = SAMPLE_LABELS[i]
                wrong = rand() < (1 - vacc) * 4
                pred = CONFUSABLE[lab][0] if wrong else lab
                conf_ = rng.uniform(0.4, 0.9) if wrong else 1 - rand() ** 3 * (1 - vacc) * 8
                smp.append('{"index":%d,"png_base64":"%s","label":%d,"predicted":%d,"confidence":%r}'
                           % (i * test_size // SAMPLE_COUNT, THUMBS[i], lab, pred, max(0.11, min(1.0, conf_))))
            emit("samples", '"epoch":%d,"step":%d,"samples":[%s]' % (epoch, step, ",".join(smp)),
                 rng.uniform(30, 120))
            is_best = vacc > best[1]
            if is_best:
                best = (epoch, vacc)
            if epoch == fail_epoch:
                return "ckpt"
            kept.append(epoch)
            keep = set(kept[-c["keep_checkpoints"]:]) | {best[0]}
            removed = [e for e in kept if e not in keep]
            kept = [e for e in kept if e in keep]
            body = '"epoch":%d,"step":%d,"path":"%s/epoch-%04d","best":%s' % (
                epoch, step, ckpt_dir, epoch, "true" if is_best else "false")
            if removed:
                body += ',"removed":[%s]' % ",".join('"%s/epoch-%04d"' % (ckpt_dir, e) for e in removed)
            emit("checkpoint", body, rng.uniform(60, 600))
        return "done"

    try:
        if fate == "failed_oom":
            started()
            state["t"] += plan["compile_s"] * 1000 * rng.uniform(0.2, 1.0)
            status = "failed"
            error = ("the cuda backend panicked: out of memory: cannot allocate %.2f GiB on cuda:%d "
                     "(%.1f GiB of %.1f GiB in use by other processes)"
                     % (rng.uniform(1, 6), hw.busy_gpu or 0, hw.gmem / 1024 ** 3 - 1, hw.gmem / 1024 ** 3))
            epochs_done = steps_done = 0
            train_seconds = 0.0
        else:
            how = attempt(1)
            if how == "stopped" and fate == "interrupted":
                raise Cut
            if how == "stopped" and fate == "resumed":
                # Killed mid-epoch; resumed from its last checkpoint later,
                # in a new process: the same curve again from there.
                state["t"] += rng.uniform(60, 7200) * 1000
                state["hw_next"] = state["t"] + rng.uniform(50, 1000)
                stop_step = None
                how = attempt(resume_epoch + 1)
            if how == "nan":
                status = "failed"
                error = ("the loss became NaN or infinite, so the run was stopped (--stop-on-nan); "
                         "try a lower learning rate")
            elif how == "stopped":
                status = "stopped"
            elif how == "ckpt":
                status = "failed"
                error = ("epoch %d: the checkpoint could not be written in %s: No space left on device "
                         "(os error 28); %s" % (epochs_done, ckpt_dir,
                                                "the last good checkpoint is %s/epoch-%04d: free space, then continue "
                                                "with --resume %s" % (ckpt_dir, kept[-1], rid) if kept
                                                else "no earlier checkpoint was saved"))
        if error:
            emit("log", '"level":"error","message":%s' % dumps(error), 5)
        fin = '"status":"%s"' % status
        if error:
            fin += ',"error":%s' % dumps(error)
        fin += ',"epochs_completed":%d,"steps":%d,"train_seconds":%r' % (epochs_done, steps_done, train_seconds)
        if test_metrics and status == "completed":
            fin += ',"test_accuracy":%r,"test_f1_macro":%r,"test_loss":%r' % test_metrics
        emit("run_finished", fin, rng.uniform(5, 60))
        shown = status
        if fate == "live":  # it ran faster than planned: end it before its end
            del out[max(1, len(out) * 4 // 5):]
            shown = "live"
    except Cut:
        shown = "live" if fate == "live" else "interrupted"
    run_dir = os.path.join(plan["runs_dir"], rid)
    os.makedirs(run_dir, exist_ok=True)
    data = "".join(out).encode()
    path = os.path.join(run_dir, "events.jsonl")
    with open(path, "wb") as f:
        f.write(data)
    written = len(data)
    if plan["meta"] is not None:
        meta = json.dumps(plan["meta"], indent=2, ensure_ascii=False).encode()
        with open(os.path.join(run_dir, "meta.json"), "wb") as f:
            f.write(meta)
        written += len(meta)
    if fate != "live":
        last = state["t"] / 1000
        os.utime(path, (last, last))
    return rid, written, shown


# --------------------------------------------------------------------------
# Checking the output

TYPES = {
    "run_started": ["config", "model", "backend", "device", "train_size", "val_size", "test_size",
                    "batches_per_epoch"],
    "batch": ["epoch", "batch", "batches", "step", "size", "loss", "accuracy", "f1_macro", "epoch_loss",
              "epoch_accuracy", "epoch_f1_macro", "lr", "images_per_sec", "elapsed_s"],
    "eval": ["split", "epoch", "step", "images", "loss", "accuracy", "f1_macro", "mse", "per_class",
             "confusion", "seconds"],
    "samples": ["epoch", "step", "samples"],
    "checkpoint": ["epoch", "step", "path", "best"],
    "log": ["level", "message"],
    "hardware": ["sampled_at_ms", "host", "interval_s", "cpu", "memory", "process", "disks", "network", "gpus"],
    "alert": ["rule", "severity", "message"],
    "phase": ["phase", "message"],
    "run_finished": ["status", "epochs_completed", "steps", "train_seconds"],
}


def check_run(run_dir):
    rid = os.path.basename(run_dir)
    with open(os.path.join(run_dir, "events.jsonl"), "rb") as f:
        lines = f.read().split(b"\n")
    assert lines[-1] == b"", f"{rid}: the log does not end with a newline"
    events = [json.loads(line) for line in lines[:-1]]
    assert events, f"{rid}: empty log"
    last_ts = 0
    step = 0
    bpe = None
    for i, e in enumerate(events, 1):
        for k in ("seq", "ts_ms", "run_id", "type"):
            assert k in e, f"{rid}: event {i} has no {k}"
        assert e["seq"] == i, f"{rid}: seq {e['seq']} at line {i}"
        assert e["run_id"] == rid, f"{rid}: run_id {e['run_id']}"
        assert e["ts_ms"] >= last_ts, f"{rid}: ts_ms goes back at seq {i}"
        last_ts = e["ts_ms"]
        t = e["type"]
        assert t in TYPES, f"{rid}: unknown type {t}"
        missing = [k for k in TYPES[t] if k not in e]
        assert not missing, f"{rid}: {t} at seq {i} lacks {missing}"
        if t == "run_started":
            assert sorted(e["config"]) == sorted(CONFIG_KEYS), f"{rid}: config keys {sorted(e['config'])}"
            assert e["model"]["total_params"] == sum(l["params"] for l in e["model"]["layers"])
            bpe = e["batches_per_epoch"]
            assert bpe == -(-e["train_size"] // e["config"]["batch_size"]), f"{rid}: batches_per_epoch {bpe}"
            assert e["train_size"] + e["val_size"] <= TRAIN_FILES or e["config"]["limit_train"] > 55_000
            assert bpe * e["config"]["epochs"] > 0
            step = e.get("resumed_from_step", 0)
            assert e["config"]["optimizer"] in ("adam", "sgd")
            assert 1e-4 <= e["config"]["lr"] <= 3e-3
        elif t == "batch":
            assert e["step"] == step + 1, f"{rid}: step {e['step']} after {step}"
            step = e["step"]
            assert e["batches"] == bpe and 1 <= e["batch"] <= bpe and e["size"] >= 1
            assert e["loss"] is None or 0 < e["loss"] < 20
            assert 0 <= e["accuracy"] <= 1 and 0 <= e["epoch_accuracy"] <= 1
        elif t == "eval":
            assert e["split"] in ("val", "test")
            assert sum(map(sum, e["confusion"])) == e["images"]
            assert len(e["per_class"]) == 10
        elif t == "samples":
            assert len(e["samples"]) == SAMPLE_COUNT
            base64.b64decode(e["samples"][0]["png_base64"], validate=True)
        elif t == "hardware":
            assert isinstance(e["gpus"], list) and ("gpu_error" in e) == (not e["gpus"])
    assert events[0]["type"] == "run_started", f"{rid}: first event is {events[0]['type']}"
    fins = [e for e in events if e["type"] == "run_finished"]
    status = "interrupted/live"
    if fins:
        assert events[-1]["type"] == "run_finished" and len(fins) == 1, f"{rid}: run_finished not last"
        f = events[-1]
        status = f["status"]
        assert status in ("completed", "failed", "stopped")
        assert (status == "failed") == ("error" in f), f"{rid}: error with status {status}"
        if status == "completed":
            tests = [e for e in events if e["type"] == "eval" and e["split"] == "test"]
            assert tests and 0.95 <= f["test_accuracy"] <= 0.996, f"{rid}: test {f.get('test_accuracy')}"
            assert f["steps"] == step and tests[-1]["accuracy"] == f["test_accuracy"]
    meta = os.path.join(run_dir, "meta.json")
    if os.path.exists(meta):
        with open(meta) as f:
            m = json.load(f)
        assert set(m) == {"name", "notes", "tags"} and isinstance(m["tags"], list)
    return status, len(events)


def check(out, count):
    runs = os.path.join(out, "runs")
    ids = sorted(d for d in os.listdir(runs) if not d.startswith("."))
    rng = random.Random(0)
    chosen = ids if len(ids) <= count else sorted(rng.sample(ids, count))
    seen = {}
    for rid in chosen:
        status, n = check_run(os.path.join(runs, rid))
        seen[status] = seen.get(status, 0) + 1
    print(f"check: {len(chosen)} of {len(ids)} logs parse, seq 1.. in order, every field present "
          f"({', '.join(f'{k} {v}' for k, v in sorted(seen.items()))})", file=sys.stderr)


# --------------------------------------------------------------------------

def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True, help="folder to write runs/, checkpoints/, data/ into")
    ap.add_argument("--runs", type=int, default=1000)
    ap.add_argument("--steps", type=int, default=2000, help="batch events of a whole run")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--live", type=int, default=0, help="the last K runs are still going (no end)")
    ap.add_argument("--jobs", type=int, default=os.cpu_count() or 2)
    ap.add_argument("--now-ms", type=int, default=None, help="the present, Unix ms (default: now)")
    ap.add_argument("--check", action="store_true", help="then read back 20 logs and check them")
    ap.add_argument("--check-only", action="store_true", help="only check what --out holds")
    ap.add_argument("--force", action="store_true", help="replace what an earlier run of this script wrote")
    args = ap.parse_args()
    if args.check_only:
        check(args.out, 20)
        return
    if args.runs < 1 or args.steps < 1:
        ap.error("--runs and --steps must be at least 1")
    runs_dir = os.path.join(args.out, "runs")
    stamp = os.path.join(args.out, "generate.json")
    if os.path.isdir(runs_dir) and os.listdir(runs_dir):
        if not (args.force and os.path.exists(stamp)):
            sys.exit(f"{runs_dir} is not empty (--force replaces it when this script wrote it)")
        shutil.rmtree(runs_dir)
    for d in ("runs", "checkpoints", "data"):
        os.makedirs(os.path.join(args.out, d), exist_ok=True)
    now_ms = args.now_ms or int(time.time() * 1000)
    t0 = time.time()
    plans = make_plans(args, now_ms)
    for p in plans:
        p["runs_dir"] = runs_dir
    total = 0
    statuses = {}
    done = 0
    last = 0.0
    with multiprocessing.get_context("fork").Pool(args.jobs) as pool:
        for rid, n, status in pool.imap_unordered(render, plans, chunksize=4):
            total += n
            done += 1
            statuses[status] = statuses.get(status, 0) + 1
            now = time.time()
            if now - last >= 2 or done == len(plans):
                last = now
                el = now - t0
                print(f"generated {done}/{len(plans)} runs, {total / 1e6:.0f} MB, {el:.0f} s "
                      f"({done / max(el, 1e-9):.0f} runs/s, {total / 1e6 / max(el, 1e-9):.0f} MB/s)",
                      file=sys.stderr, flush=True)
    el = time.time() - t0
    sweeps = {p["sweep"] for p in plans if p["sweep"]}
    in_sweeps = sum(1 for p in plans if p["sweep"])
    keep = sum(1 for p in plans if p["meta"] and "keep" in p["meta"]["tags"])
    print(f"statuses: {', '.join(f'{k} {v}' for k, v in sorted(statuses.items()))}; "
          f"{len(sweeps)} sweeps holding {in_sweeps} runs; {keep} tagged keep", file=sys.stderr)
    print(f"wrote {args.runs} runs x {args.steps} steps: {total} bytes in {el:.1f} s")
    with open(stamp, "w") as f:
        json.dump({"runs": args.runs, "steps": args.steps, "seed": args.seed, "live": args.live,
                   "bytes": total, "seconds": round(el, 1), "now_ms": now_ms,
                   "statuses": statuses}, f, indent=2)
    if args.check:
        check(args.out, 20)


if __name__ == "__main__":
    main()
