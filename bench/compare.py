#!/usr/bin/env python3
"""Ours vs PyTorch, in one invocation, on one device.

For each batch size, trains N epochs with `mnist-monitor train` and with
`bench/reference_pytorch.py` (same network, Adam, data split, normalisation),
and prints steady-state images/s (all epochs but the first), the ratio, the
time to the first batch (start-up: data, kernel compilation, autotune) and
final test accuracy for each.

    python3 bench/compare.py --device cpu --batch-sizes 64,512 --epochs 2
    CUDA_PATH=/usr/local/cuda python3 bench/compare.py --device cuda --batch-sizes 128,512 --epochs 3

Our figures come from the run's own event log: steady-state throughput is
measured from the first to the last batch event of each epoch after the
first, the time to first batch from process start to the first batch event.
Without PyTorch installed, only our side is printed.
"""
import argparse, json, os, shutil, subprocess, sys, tempfile, time

HERE = os.path.dirname(os.path.abspath(__file__))


def ours(bin_, device, batch, epochs, data_dir, limit_train, workdir):
    run_id = f"bench-{device}-{batch}-{int(time.time())}"
    cmd = [bin_, "train", "--json", "--quiet", "--backend", device, "--batch-size", str(batch),
           "--epochs", str(epochs), "--data-dir", data_dir, "--run-dir", os.path.join(workdir, "runs"),
           "--checkpoint-dir", os.path.join(workdir, "ckpt"), "--run-id", run_id, "--hw-interval", "0"]
    if limit_train:
        cmd += ["--limit-train", str(limit_train)]
    t0 = time.time()
    out = subprocess.run(cmd, capture_output=True, text=True)
    if out.returncode != 0:
        raise SystemExit(f"mnist-monitor failed ({out.returncode}):\n{out.stderr[-3000:]}")
    summary = json.loads(out.stdout.strip().splitlines()[-1])
    events = [json.loads(l) for l in open(os.path.join(workdir, "runs", run_id, "events.jsonl"))]
    batches = [e for e in events if e["type"] == "batch"]
    first_batch = batches[0]["ts_ms"] / 1000 - t0
    per_epoch = {}
    for b in batches:
        per_epoch.setdefault(b["epoch"], []).append(b)
    steady_images, steady_seconds = 0, 0.0
    for epoch, bs in sorted(per_epoch.items())[1:] or sorted(per_epoch.items()):
        # From the end of the first batch to the end of the last: every batch but one.
        steady_images += sum(b["size"] for b in bs[1:])
        steady_seconds += (bs[-1]["ts_ms"] - bs[0]["ts_ms"]) / 1000
    return {
        "impl": "mnist-monitor",
        "backend": summary["backend"],
        "images_per_sec": steady_images / steady_seconds if steady_seconds > 0 else summary["images_per_sec"],
        "time_to_first_batch_s": first_batch,
        "test_accuracy": summary["test_accuracy"],
    }


def pytorch(device, batch, epochs, data_dir, limit_train):
    try:
        import torch  # noqa: F401
    except ImportError:
        return None
    cmd = [sys.executable, os.path.join(HERE, "reference_pytorch.py"), "--device", "cuda" if device == "cuda" else "cpu",
           "--batch-size", str(batch), "--epochs", str(epochs), "--data-dir", data_dir]
    if limit_train:
        cmd += ["--limit-train", str(limit_train)]
    out = subprocess.run(cmd, capture_output=True, text=True)
    if out.returncode != 0:
        raise SystemExit(f"reference_pytorch.py failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", choices=["cpu", "cuda", "wgpu"], default="cpu")
    ap.add_argument("--batch-sizes", default="128,512")
    ap.add_argument("--epochs", type=int, default=3, help="at least 2: the first epoch is warm-up")
    ap.add_argument("--data-dir", default="datasets/mnist")
    ap.add_argument("--limit-train", type=int, default=None)
    ap.add_argument("--bin", default=os.path.join(os.environ.get("CARGO_TARGET_DIR", "target"), "release", "mnist-monitor"))
    a = ap.parse_args()
    if a.epochs < 2:
        raise SystemExit("--epochs: at least 2 (the first epoch is warm-up, not measured)")
    work = tempfile.mkdtemp(prefix="mnist-bench-")
    rows = []
    try:
        for batch in [int(b) for b in a.batch_sizes.split(",")]:
            o = ours(a.bin, a.device, batch, a.epochs, a.data_dir, a.limit_train, work)
            # wgpu has no PyTorch counterpart; compare it with PyTorch CUDA.
            p = pytorch("cuda" if a.device == "wgpu" else a.device, batch, a.epochs, a.data_dir, a.limit_train)
            rows.append((batch, o, p))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(f"device {a.device}, {a.epochs} epochs (first is warm-up), data {a.data_dir}"
          + (f", {a.limit_train} training images" if a.limit_train else ""))
    print(f"{'batch':>6} {'ours img/s':>11} {'torch img/s':>12} {'ratio':>6} {'ours 1st batch':>15} {'torch 1st batch':>16} {'ours acc':>9} {'torch acc':>10}")
    for batch, o, p in rows:
        ratio = f"{o['images_per_sec'] / p['images_per_sec']:.2f}" if p else "–"
        t_ips = f"{p['images_per_sec']:.0f}" if p else "–"
        t_first = f"{p['time_to_first_batch_s']:.1f}s" if p else "–"
        t_acc = f"{p['test_accuracy']:.4f}" if p else "–"
        print(f"{batch:>6} {o['images_per_sec']:>11.0f} {t_ips:>12} {ratio:>6} "
              f"{o['time_to_first_batch_s']:>14.1f}s {t_first:>16} {o['test_accuracy']:>9.4f} {t_acc:>10}")
    if not rows[0][2]:
        print("PyTorch is not installed here: only our side was measured (pip install torch to compare).")
    print(json.dumps([{"batch_size": b, "ours": o, "pytorch": p} for b, o, p in rows]))


if __name__ == "__main__":
    main()
