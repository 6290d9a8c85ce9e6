"""The exported model in PyTorch: `mnist-monitor export` writes safetensors
that the PyTorch version of our network loads with `load_state_dict`
(strict) and that predicts what mnist-monitor predicts.

Usage: python3 bench/export_check.py FILE.safetensors BASE_URL RUN_ID [N]
  FILE: from `mnist-monitor export RUN_ID -o FILE`; BASE_URL: a running
  `mnist-monitor serve` over the same runs (its POST /api/predict answers
  for RUN_ID's best checkpoint); N test digits (default 1000) from
  datasets/mnist. Needs torch, numpy and safetensors from PyPI.
Prints the agreement of the predicted digits and the largest difference of
the probabilities, as one JSON line.
"""
import gzip, json, struct, sys, urllib.request
import numpy as np
import torch
from torch import nn
from safetensors.torch import load_file
from safetensors import safe_open

path, base, run_id = sys.argv[1:4]
n = int(sys.argv[4]) if len(sys.argv) > 4 else 1000

with safe_open(path, "pt") as f:
    meta = f.metadata()
k1, k2, k3, k4 = (int(v) for v in meta["kernels"].split(","))
mean, std = float(meta["mean"]), float(meta["std"])


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1, self.conv2 = nn.Conv2d(1, k1, 3), nn.Conv2d(k1, k2, 3)
        self.conv3, self.conv4 = nn.Conv2d(k2, k3, 3), nn.Conv2d(k3, k4, 3)
        self.fc1, self.fc2 = nn.Linear(k4 * 16, 128), nn.Linear(128, 10)

    def forward(self, x):
        r, p = torch.relu, nn.functional.max_pool2d
        x = p(r(self.conv2(r(self.conv1(x)))), 2)
        x = p(r(self.conv4(r(self.conv3(x)))), 2)
        return self.fc2(r(self.fc1(torch.flatten(x, 1))))


net = Net()
net.load_state_dict(load_file(path), strict=True)
net.eval()

with gzip.open("datasets/mnist/t10k-images-idx3-ubyte.gz") as f:
    magic, count, rows, cols = struct.unpack(">IIII", f.read(16))
    pixels = np.frombuffer(f.read(n * 784), dtype=np.uint8).reshape(n, 784)
x = torch.from_numpy(((pixels.astype(np.float32) / 255 - mean) / std).reshape(n, 1, 28, 28))
with torch.no_grad():
    theirs = torch.softmax(net(x), 1).numpy()

same, worst = 0, 0.0
for i in range(n):
    body = json.dumps({"pixels": pixels[i].tolist(), "run_id": run_id}).encode()
    req = urllib.request.Request(base + "/api/predict", body, {"content-type": "application/json"})
    ours = json.load(urllib.request.urlopen(req))
    probs = np.array(ours["probs"])
    same += int(probs.argmax() == theirs[i].argmax())
    worst = max(worst, float(np.abs(probs - theirs[i]).max()))
print(json.dumps({"digits": n, "same_prediction": same, "agreement": same / n,
                  "max_probability_difference": worst, "torch": torch.__version__}))
