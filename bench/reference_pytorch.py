#!/usr/bin/env python3
"""PyTorch reference of mnist-monitor's network and training, for benchmarks.

Same network (four 3x3 valid convolutions, two max-pools, dropout 0.25/0.5,
linear 128, linear 10), same data split (last 5,000 training images held out),
same normalisation (0.1307, 0.3081), Adam(lr, eps=1e-8), batch size and epochs.
Data is resident on the device; one loss read per batch, as our trainer does.

Prints one JSON object: images/s over the steady-state epochs (all but the
first), seconds per epoch, time to first batch, and final test accuracy.

    python3 bench/reference_pytorch.py --device cuda --batch-size 512 --epochs 10
"""
import argparse, gzip, json, os, struct, time

import torch
import torch.nn as nn
import torch.nn.functional as F


def read_idx(path):
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rb") as f:
        data = f.read()
    magic = struct.unpack(">I", data[:4])[0]
    dims = magic & 0xFF
    shape = struct.unpack(">" + "I" * dims, data[4 : 4 + 4 * dims])
    return torch.frombuffer(bytearray(data[4 + 4 * dims :]), dtype=torch.uint8).reshape(shape)


def load(data_dir, name):
    for candidate in (name + ".gz", name):
        p = os.path.join(data_dir, candidate)
        if os.path.exists(p):
            return read_idx(p)
    raise SystemExit(f"missing {name} in {data_dir}")


class Net(nn.Module):
    def __init__(self, k):
        super().__init__()
        self.conv1 = nn.Conv2d(1, k[0], 3)
        self.conv2 = nn.Conv2d(k[0], k[1], 3)
        self.conv3 = nn.Conv2d(k[1], k[2], 3)
        self.conv4 = nn.Conv2d(k[2], k[3], 3)
        self.drop1 = nn.Dropout(0.25)
        self.drop2 = nn.Dropout(0.5)
        self.fc1 = nn.Linear(k[3] * 16, 128)
        self.fc2 = nn.Linear(128, 10)

    def forward(self, x):
        x = F.relu(self.conv1(x))
        x = F.relu(self.conv2(x))
        x = self.drop1(F.max_pool2d(x, 2))
        x = F.relu(self.conv3(x))
        x = F.relu(self.conv4(x))
        x = self.drop2(F.max_pool2d(x, 2))
        x = F.relu(self.fc1(torch.flatten(x, 1)))
        return self.fc2(x)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--data-dir", default="datasets/mnist")
    ap.add_argument("--batch-size", type=int, default=512)
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--kernels", default="32,64,64,64")
    ap.add_argument("--val-size", type=int, default=5000)
    ap.add_argument("--limit-train", type=int, default=None)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--seed", type=int, default=42)
    a = ap.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
    elif a.device == "cpu":
        # Some builds (Debian's) start with one thread: use every core we may.
        torch.set_num_threads(len(os.sched_getaffinity(0)))
    torch.manual_seed(a.seed)
    t0 = time.perf_counter()
    dev = torch.device(a.device)
    norm = lambda x: ((x.float() / 255.0 - 0.1307) / 0.3081).unsqueeze(1)
    tx, ty = load(a.data_dir, "train-images-idx3-ubyte"), load(a.data_dir, "train-labels-idx1-ubyte")
    sx, sy = load(a.data_dir, "t10k-images-idx3-ubyte"), load(a.data_dir, "t10k-labels-idx1-ubyte")
    n_train = len(ty) - a.val_size
    if a.limit_train:
        n_train = min(n_train, a.limit_train)
    tx, ty = norm(tx[:n_train]).to(dev), ty[:n_train].long().to(dev)
    sx, sy = norm(sx).to(dev), sy.long().to(dev)
    model = Net([int(v) for v in a.kernels.split(",")]).to(dev)
    opt = torch.optim.Adam(model.parameters(), lr=a.lr, eps=1e-8)
    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)
    first_batch = None
    epoch_times = []
    for epoch in range(a.epochs):
        model.train()
        perm = torch.randperm(n_train, device=dev)
        sync()
        e0 = time.perf_counter()
        for i in range(0, n_train, a.batch_size):
            idx = perm[i : i + a.batch_size]
            out = model(tx[idx])
            loss = F.cross_entropy(out, ty[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            loss_value = loss.item()  # one read per batch, like our trainer's metrics
            if first_batch is None:
                first_batch = time.perf_counter() - t0
        sync()
        epoch_times.append(time.perf_counter() - e0)
    model.eval()
    correct = 0
    with torch.no_grad():
        for i in range(0, len(sy), 1000):
            correct += (model(sx[i : i + 1000]).argmax(1) == sy[i : i + 1000]).sum().item()
    steady = epoch_times[1:] or epoch_times
    print(json.dumps({
        "impl": "pytorch",
        "torch": torch.__version__,
        "device": str(dev),
        "batch_size": a.batch_size,
        "threads": torch.get_num_threads(),
        "epochs": a.epochs,
        "train_images": n_train,
        "seconds_per_epoch": sum(steady) / len(steady),
        "images_per_sec": n_train * len(steady) / sum(steady),
        "time_to_first_batch_s": first_batch,
        "test_accuracy": correct / len(sy),
        "last_loss": loss_value,
    }))


if __name__ == "__main__":
    main()
