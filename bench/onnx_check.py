"""The exported ONNX model in onnxruntime: `mnist-monitor export --format onnx`
writes a model that onnx's checker accepts and that predicts what
mnist-monitor predicts.

Usage:
  python3 bench/onnx_check.py FILE.onnx BASE_URL RUN_ID [N] [--checkpoint epoch-0003]
    FILE: from the export of RUN_ID; BASE_URL: a running `mnist-monitor
    serve` over the same runs (its POST /api/predict answers for RUN_ID's
    best checkpoint, or the one --checkpoint names); N test digits (default
    1000) from datasets/mnist, normalised with the file's metadata (mean,
    std). Prints the agreement of the predicted digits and the largest
    difference of the probabilities, as one JSON line.
  python3 bench/onnx_check.py --self-test FILE.onnx [N]
    Without a server or trained run: onnx.checker (full_check), the graph's
    structure and metadata, then onnxruntime against a numpy forward pass
    computed from the file's initializers on N test digits (default 256;
    random images if datasets/mnist is absent). Prints one JSON line; exits
    1 if a check fails.
Needs onnx, onnxruntime and numpy from PyPI (e.g. in a venv outside the
repository).
"""
import gzip, json, os, struct, sys, urllib.request
import numpy as np
import onnx
import onnxruntime as ort
from onnx import numpy_helper

IMAGES = "datasets/mnist/t10k-images-idx3-ubyte.gz"
OPS = ["Conv", "Relu", "Conv", "Relu", "MaxPool", "Conv", "Relu", "Conv", "Relu",
       "MaxPool", "Flatten", "Gemm", "Relu", "Gemm", "Softmax"]


def digits(n):
    """The first n test digits as uint8 [n, 784]."""
    with gzip.open(IMAGES) as f:
        magic, count, rows, cols = struct.unpack(">IIII", f.read(16))
        assert magic == 2051 and rows == cols == 28 and n <= count, (magic, count, rows, cols)
        return np.frombuffer(f.read(n * 784), dtype=np.uint8).reshape(n, 784)


def load(path):
    model = onnx.load(path)
    meta = {p.key: p.value for p in model.metadata_props}
    return model, meta


def normalise(pixels, meta):
    mean, std = float(meta["mean"]), float(meta["std"])
    return ((pixels.astype(np.float32) / 255 - mean) / std).reshape(-1, 1, 28, 28).astype(np.float32)


def run(path, x):
    session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    logits, probs = session.run(["logits", "probabilities"], {"input": x})
    return logits, probs


def numpy_forward(model, x):
    """The network in numpy from the file's initializers (float64)."""
    w = {t.name: numpy_helper.to_array(t).astype(np.float64) for t in model.graph.initializer}

    def conv(x, name):
        k, b = w[name + ".weight"], w[name + ".bias"]
        n, c, h, wd = x.shape
        out_h, out_w = h - 2, wd - 2
        # im2col: [n, c, 3, 3, out_h, out_w]
        cols = np.empty((n, c, 3, 3, out_h, out_w))
        for i in range(3):
            for j in range(3):
                cols[:, :, i, j] = x[:, :, i:i + out_h, j:j + out_w]
        return np.einsum("ncijhw,ocij->nohw", cols, k) + b[None, :, None, None]

    def pool(x):
        n, c, h, wd = x.shape
        return x.reshape(n, c, h // 2, 2, wd // 2, 2).max(axis=(3, 5))

    relu = lambda v: np.maximum(v, 0)
    x = x.astype(np.float64)
    x = pool(relu(conv(relu(conv(x, "conv1")), "conv2")))
    x = pool(relu(conv(relu(conv(x, "conv3")), "conv4")))
    x = x.reshape(x.shape[0], -1)
    x = relu(x @ w["fc1.weight"].T + w["fc1.bias"])
    logits = x @ w["fc2.weight"].T + w["fc2.bias"]
    e = np.exp(logits - logits.max(axis=1, keepdims=True))
    return logits, e / e.sum(axis=1, keepdims=True)


def dims(value):
    return [d.dim_param or d.dim_value for d in value.type.tensor_type.shape.dim]


def self_test(path, n):
    model, meta = load(path)
    onnx.checker.check_model(model, full_check=True)
    g = model.graph
    k = [int(v) for v in meta["kernels"].split(",")]
    failures = []

    def expect(what, got, want):
        if got != want:
            failures.append(f"{what}: {got!r}, expected {want!r}")

    expect("opset", [(o.domain, o.version) for o in model.opset_import], [("", 13)])
    expect("producer", model.producer_name, "mnist-monitor")
    expect("ops", [node.op_type for node in g.node], OPS)
    expect("inputs", [(v.name, dims(v)) for v in g.input], [("input", ["N", 1, 28, 28])])
    expect("outputs", [(v.name, dims(v)) for v in g.output],
           [("logits", ["N", 10]), ("probabilities", ["N", 10])])
    expect("initializers", {t.name: list(t.dims) for t in g.initializer}, {
        "conv1.weight": [k[0], 1, 3, 3], "conv1.bias": [k[0]],
        "conv2.weight": [k[1], k[0], 3, 3], "conv2.bias": [k[1]],
        "conv3.weight": [k[2], k[1], 3, 3], "conv3.bias": [k[2]],
        "conv4.weight": [k[3], k[2], 3, 3], "conv4.bias": [k[3]],
        "fc1.weight": [128, k[3] * 16], "fc1.bias": [128],
        "fc2.weight": [10, 128], "fc2.bias": [10]})
    for key in ["mean", "std", "kernels", "normalisation"]:
        if key not in meta:
            failures.append(f"metadata has no {key}")
    if f"(x/255 - {meta['mean']})/{meta['std']}" not in model.doc_string:
        failures.append(f"doc_string does not state the normalisation: {model.doc_string!r}")

    if os.path.exists(IMAGES):
        source, pixels = "mnist", digits(n)
    else:
        source, pixels = "random", np.random.default_rng(0).integers(0, 256, (n, 784), dtype=np.uint8)
    x = normalise(pixels, meta)
    logits, probs = run(path, x)
    ref_logits, ref_probs = numpy_forward(model, x)
    logit_diff = float(np.abs(logits - ref_logits).max())
    prob_diff = float(np.abs(probs - ref_probs).max())
    same = int((probs.argmax(1) == ref_probs.argmax(1)).sum())
    # Random weights still give logits of order 1–10; float32 sums of a few
    # thousand terms stay well inside 1e-3 of float64.
    if logit_diff > 1e-3 or prob_diff > 1e-4:
        failures.append(f"onnxruntime differs from numpy: logits {logit_diff}, probabilities {prob_diff}")
    # Batch size is symbolic: a single image and an odd batch run too.
    for b in [1, 3]:
        got = run(path, x[:b])[1]
        if got.shape != (b, 10) or float(np.abs(got - probs[:b]).max()) > 1e-5:
            failures.append(f"batch of {b} differs")
    print(json.dumps({"self_test": "pass" if not failures else "fail", "images": source, "n": n,
                      "kernels": meta["kernels"], "same_prediction": same,
                      "predicted_classes": len(set(probs.argmax(1).tolist())),
                      "logit_range": [float(logits.min()), float(logits.max())],
                      "max_logit_difference": logit_diff,
                      "max_probability_difference": prob_diff,
                      "failures": failures, "onnx": onnx.__version__, "onnxruntime": ort.__version__}))
    return not failures


def against_server(path, base, run_id, n, checkpoint):
    model, meta = load(path)
    onnx.checker.check_model(model, full_check=True)
    file_run = meta.get("run_id", meta.get("run"))
    if file_run is not None and file_run != run_id:
        print(f"warning: the file is of run {file_run}, not {run_id}", file=sys.stderr)
    pixels = digits(n)
    _, theirs = run(path, normalise(pixels, meta))

    same, worst = 0, 0.0
    for i in range(n):
        request = {"pixels": pixels[i].tolist(), "run_id": run_id}
        if checkpoint:
            request["checkpoint"] = checkpoint
        req = urllib.request.Request(base + "/api/predict", json.dumps(request).encode(),
                                     {"content-type": "application/json"})
        ours = json.load(urllib.request.urlopen(req))
        probs = np.array(ours["probs"])
        same += int(probs.argmax() == theirs[i].argmax())
        worst = max(worst, float(np.abs(probs - theirs[i]).max()))
    print(json.dumps({"digits": n, "same_prediction": same, "agreement": same / n,
                      "max_probability_difference": worst, "epoch": meta.get("epoch"),
                      "onnxruntime": ort.__version__}))


def main(argv):
    checkpoint = None
    if "--checkpoint" in argv:
        i = argv.index("--checkpoint")
        checkpoint = argv[i + 1]
        argv = argv[:i] + argv[i + 2:]
    if argv and argv[0] == "--self-test" and len(argv) in (2, 3):
        sys.exit(0 if self_test(argv[1], int(argv[2]) if len(argv) > 2 else 256) else 1)
    if len(argv) in (3, 4) and not argv[0].startswith("-"):
        against_server(argv[0], argv[1].rstrip("/"), argv[2], int(argv[3]) if len(argv) > 3 else 1000,
                       checkpoint)
        return
    sys.exit(__doc__)


if __name__ == "__main__":
    main(sys.argv[1:])
