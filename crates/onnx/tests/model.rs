//! The ONNX model decoded again with prost and checked structurally; bad
//! tensors and metadata refused with typed errors. `writes_a_model_file`
//! also writes a random-weights model to `$MNIST_ONNX_OUT` when set, for
//! `bench/onnx_check.py --self-test`.

use mnist_onnx::proto::tensor_shape_proto::dimension::Value as Dim;
use mnist_onnx::proto::type_proto::Value as TypeValue;
use mnist_onnx::proto::{AttributeType, ModelProto, ValueInfoProto, DATA_TYPE_FLOAT};
use mnist_onnx::{model, model_proto, OnnxError, Tensor, TENSOR_NAMES};
use prost::Message;

const K: [usize; 4] = [4, 8, 8, 16];

/// A small deterministic generator (xorshift), uniform in [-1, 1).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> f32 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        ((self.0 >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
    }
}

fn shapes(k: [usize; 4]) -> Vec<(&'static str, Vec<usize>)> {
    vec![
        ("conv1.weight", vec![k[0], 1, 3, 3]),
        ("conv1.bias", vec![k[0]]),
        ("conv2.weight", vec![k[1], k[0], 3, 3]),
        ("conv2.bias", vec![k[1]]),
        ("conv3.weight", vec![k[2], k[1], 3, 3]),
        ("conv3.bias", vec![k[2]]),
        ("conv4.weight", vec![k[3], k[2], 3, 3]),
        ("conv4.bias", vec![k[3]]),
        ("fc1.weight", vec![128, k[3] * 16]),
        ("fc1.bias", vec![128]),
        ("fc2.weight", vec![10, 128]),
        ("fc2.bias", vec![10]),
    ]
}

/// Random weights, scaled by fan-in (He-like) so activations stay O(1).
fn tensors(k: [usize; 4]) -> Vec<Tensor> {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    shapes(k)
        .into_iter()
        .map(|(name, shape)| {
            let fan_in: usize = if shape.len() > 1 {
                shape[1..].iter().product()
            } else {
                1
            };
            let scale = if shape.len() > 1 {
                (6.0 / fan_in as f32).sqrt()
            } else {
                0.1
            };
            let n: usize = shape.iter().product();
            Tensor {
                name: name.into(),
                values: (0..n).map(|_| rng.next() * scale).collect(),
                shape,
            }
        })
        .collect()
}

fn meta() -> Vec<(String, String)> {
    [
        ("kernels", "4,8,8,16"),
        ("mean", "0.1307"),
        ("std", "0.3081"),
        ("run", "test-run"),
        ("epoch", "3"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect()
}

fn shape_of(v: &ValueInfoProto) -> Vec<String> {
    let Some(TypeValue::TensorType(t)) = v.r#type.as_ref().and_then(|t| t.value.as_ref()) else {
        panic!("{:?} is not a tensor", v.name);
    };
    assert_eq!(t.elem_type, Some(DATA_TYPE_FLOAT));
    t.shape
        .as_ref()
        .unwrap()
        .dim
        .iter()
        .map(|d| match d.value.as_ref().unwrap() {
            Dim::DimValue(n) => n.to_string(),
            Dim::DimParam(s) => s.clone(),
        })
        .collect()
}

fn prop<'a>(m: &'a ModelProto, key: &str) -> Option<&'a str> {
    m.metadata_props
        .iter()
        .find(|p| p.key.as_deref() == Some(key))
        .and_then(|p| p.value.as_deref())
}

#[test]
fn the_model_decodes_with_the_network_and_its_weights() {
    let t = tensors(K);
    let bytes = model(&t, &meta()).unwrap();
    let m = ModelProto::decode(&bytes[..]).unwrap();
    assert_eq!(m, model_proto(&t, &meta()).unwrap());

    assert_eq!(m.ir_version, Some(7));
    assert_eq!(m.opset_import.len(), 1);
    assert_eq!(m.opset_import[0].domain.as_deref(), Some(""));
    assert_eq!(m.opset_import[0].version, Some(13));
    assert_eq!(m.producer_name.as_deref(), Some("mnist-monitor"));
    let doc = m.doc_string.as_deref().unwrap();
    assert!(doc.contains("(x/255 - 0.1307)/0.3081"), "{doc}");

    let g = m.graph.as_ref().unwrap();
    let ops: Vec<&str> = g
        .node
        .iter()
        .map(|n| n.op_type.as_deref().unwrap())
        .collect();
    assert_eq!(
        ops,
        [
            "Conv", "Relu", "Conv", "Relu", "MaxPool", "Conv", "Relu", "Conv", "Relu", "MaxPool",
            "Flatten", "Gemm", "Relu", "Gemm", "Softmax"
        ]
    );
    // Each node reads the previous node's output (softmax reads the logits).
    for w in g.node.windows(2) {
        assert_eq!(w[1].input[0], w[0].output[0], "{:?}", w[1].name);
    }
    assert_eq!(g.node[0].input, ["input", "conv1.weight", "conv1.bias"]);
    assert_eq!(g.node[13].input[1..], ["fc2.weight", "fc2.bias"]);
    assert_eq!(g.node[13].output, ["logits"]);
    assert_eq!(g.node[14].output, ["probabilities"]);

    let attr = |node: usize, name: &str| {
        g.node[node]
            .attribute
            .iter()
            .find(|a| a.name.as_deref() == Some(name))
            .unwrap_or_else(|| panic!("node {node} has no {name}"))
            .clone()
    };
    assert_eq!(attr(0, "kernel_shape").ints, [3, 3]);
    assert_eq!(attr(0, "pads").ints, [0, 0, 0, 0]);
    for pool in [4, 9] {
        let ks = attr(pool, "kernel_shape");
        assert_eq!(ks.r#type, Some(AttributeType::Ints as i32));
        assert_eq!(ks.ints, [2, 2]);
        assert_eq!(attr(pool, "strides").ints, [2, 2]);
    }
    assert_eq!(attr(10, "axis").i, Some(1));
    for gemm in [11, 13] {
        let t = attr(gemm, "transB");
        assert_eq!((t.r#type, t.i), (Some(AttributeType::Int as i32), Some(1)));
    }
    assert_eq!(attr(14, "axis").i, Some(1));

    let names: Vec<&str> = g
        .initializer
        .iter()
        .map(|i| i.name.as_deref().unwrap())
        .collect();
    assert_eq!(names, TENSOR_NAMES);
    for (init, (tensor, (_, shape))) in g.initializer.iter().zip(t.iter().zip(shapes(K))) {
        let dims: Vec<usize> = init.dims.iter().map(|&d| d as usize).collect();
        assert_eq!(dims, shape, "{:?}", init.name);
        assert_eq!(init.data_type, Some(DATA_TYPE_FLOAT));
        let values: Vec<f32> = init
            .raw_data
            .as_ref()
            .unwrap()
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
            .collect();
        assert_eq!(values, tensor.values);
    }

    assert_eq!(g.input.len(), 1);
    assert_eq!(g.input[0].name.as_deref(), Some("input"));
    assert_eq!(shape_of(&g.input[0]), ["N", "1", "28", "28"]);
    let outputs: Vec<(&str, Vec<String>)> = g
        .output
        .iter()
        .map(|o| (o.name.as_deref().unwrap(), shape_of(o)))
        .collect();
    let n10 = vec!["N".to_string(), "10".into()];
    assert_eq!(
        outputs,
        [("logits", n10.clone()), ("probabilities", n10.clone())]
    );
    // Intermediate shapes: 28 → 26 → 24 → 12 → 10 → 8 → 4.
    let info: Vec<(String, Vec<String>)> = g
        .value_info
        .iter()
        .map(|v| (v.name.clone().unwrap(), shape_of(v)))
        .collect();
    let find = |name: &str| info.iter().find(|(n, _)| n == name).unwrap().1.join(",");
    assert_eq!(find("conv1.out"), "N,4,26,26");
    assert_eq!(find("pool1.out"), "N,8,12,12");
    assert_eq!(find("conv4.relu"), "N,16,8,8");
    assert_eq!(find("pool2.out"), "N,16,4,4");
    assert_eq!(find("flatten.out"), "N,256");
    assert_eq!(find("fc1.relu"), "N,128");

    assert_eq!(prop(&m, "kernels"), Some("4,8,8,16"));
    assert_eq!(prop(&m, "mean"), Some("0.1307"));
    assert_eq!(prop(&m, "std"), Some("0.3081"));
    assert_eq!(prop(&m, "run"), Some("test-run"));
    assert_eq!(prop(&m, "epoch"), Some("3"));
    assert!(prop(&m, "normalisation")
        .unwrap()
        .starts_with("(x/255 - 0.1307)/0.3081"));
    let keys: Vec<&str> = m
        .metadata_props
        .iter()
        .map(|p| p.key.as_deref().unwrap())
        .collect();
    assert_eq!(
        keys,
        ["kernels", "mean", "std", "run", "epoch", "normalisation"]
    );
}

#[test]
fn tensors_in_any_order_and_missing_metadata_defaults() {
    let mut t = tensors([2, 3, 5, 7]);
    t.reverse();
    let m = model_proto(&t, &[("normalisation".into(), "stale".into())]).unwrap();
    let g = m.graph.as_ref().unwrap();
    let names: Vec<&str> = g
        .initializer
        .iter()
        .map(|i| i.name.as_deref().unwrap())
        .collect();
    assert_eq!(names, TENSOR_NAMES);
    assert_eq!(g.initializer[8].dims, [128, 7 * 16]);
    assert_eq!(prop(&m, "kernels"), Some("2,3,5,7"));
    assert_eq!(prop(&m, "mean"), Some("0.1307"));
    assert_eq!(prop(&m, "std"), Some("0.3081"));
    assert_ne!(prop(&m, "normalisation"), Some("stale"));
    assert_eq!(m.metadata_props.len(), 4);
}

#[test]
fn a_missing_tensor_is_named() {
    for name in TENSOR_NAMES {
        let t: Vec<Tensor> = tensors(K).into_iter().filter(|t| t.name != name).collect();
        assert_eq!(
            model(&t, &meta()).unwrap_err(),
            OnnxError::Missing { name: name.into() }
        );
    }
}

#[test]
fn a_mis_shaped_tensor_is_named_with_both_shapes() {
    let with = |name: &str, shape: Vec<usize>| {
        let mut t = tensors(K);
        let i = t.iter().position(|t| t.name == name).unwrap();
        t[i].values = vec![0.0; shape.iter().product()];
        t[i].shape = shape;
        model(&t, &meta()).unwrap_err()
    };
    // conv2 must read conv1's 4 channels.
    let e = with("conv2.weight", vec![8, 5, 3, 3]);
    assert_eq!(
        e,
        OnnxError::Shape {
            name: "conv2.weight".into(),
            expected: "[k2, 4, 3, 3] with k2 > 0".into(),
            found: vec![8, 5, 3, 3],
        }
    );
    assert_eq!(
        e.to_string(),
        "tensor conv2.weight has shape [8, 5, 3, 3], expected [k2, 4, 3, 3] with k2 > 0"
    );
    assert!(matches!(
        with("conv1.weight", vec![4, 1, 5, 5]),
        OnnxError::Shape { name, .. } if name == "conv1.weight"
    ));
    assert!(matches!(
        with("conv3.weight", vec![0, 8, 3, 3]),
        OnnxError::Shape { name, .. } if name == "conv3.weight"
    ));
    assert_eq!(
        with("conv4.bias", vec![15]),
        OnnxError::Shape {
            name: "conv4.bias".into(),
            expected: "[16]".into(),
            found: vec![15],
        }
    );
    // PyTorch's [out, in], not Burn's [in, out].
    assert_eq!(
        with("fc1.weight", vec![256, 128]),
        OnnxError::Shape {
            name: "fc1.weight".into(),
            expected: "[128, 256]".into(),
            found: vec![256, 128],
        }
    );
    assert!(matches!(
        with("fc2.bias", vec![10, 1]),
        OnnxError::Shape { name, .. } if name == "fc2.bias"
    ));
}

#[test]
fn values_that_do_not_fill_the_shape_extra_and_duplicate_tensors_are_refused() {
    let mut t = tensors(K);
    t[1].values.pop();
    assert_eq!(
        model(&t, &meta()).unwrap_err(),
        OnnxError::Values {
            name: "conv1.bias".into(),
            shape: vec![4],
            expected: 4,
            found: 3,
        }
    );
    let mut t = tensors(K);
    t.push(t[3].clone());
    assert_eq!(
        model(&t, &meta()).unwrap_err(),
        OnnxError::Duplicate {
            name: "conv2.bias".into()
        }
    );
    let mut t = tensors(K);
    t.push(Tensor {
        name: "fc3.weight".into(),
        shape: vec![1],
        values: vec![0.0],
    });
    assert_eq!(
        model(&t, &meta()).unwrap_err(),
        OnnxError::Unexpected {
            name: "fc3.weight".into()
        }
    );
}

#[test]
fn bad_metadata_is_refused() {
    let with = |key: &str, value: &str| {
        let mut m = meta();
        match m.iter_mut().find(|(k, _)| k == key) {
            Some(e) => e.1 = value.into(),
            None => m.push((key.into(), value.into())),
        }
        model(&tensors(K), &m).unwrap_err()
    };
    assert!(
        matches!(with("kernels", "4,8,8,32"), OnnxError::Metadata { key, .. } if key == "kernels")
    );
    assert!(
        matches!(with("kernels", "4,8,8"), OnnxError::Metadata { key, .. } if key == "kernels")
    );
    assert!(matches!(with("mean", "zero"), OnnxError::Metadata { key, .. } if key == "mean"));
    assert!(matches!(with("std", "0"), OnnxError::Metadata { key, .. } if key == "std"));
    assert!(matches!(with("std", "NaN"), OnnxError::Metadata { key, .. } if key == "std"));
    let mut m = meta();
    m.push(("run".into(), "again".into()));
    assert!(matches!(
        model(&tensors(K), &m).unwrap_err(),
        OnnxError::Metadata { key, .. } if key == "run"
    ));
    // Spaces in the kernels are fine.
    assert!(model(&tensors(K), &[("kernels".into(), "4, 8, 8, 16".into())]).is_ok());
}

/// With `MNIST_ONNX_OUT=/tmp/x.onnx`, writes the random-weights model there
/// (for `python3 bench/onnx_check.py --self-test /tmp/x.onnx`).
#[test]
fn writes_a_model_file() {
    let bytes = model(&tensors(K), &meta()).unwrap();
    assert!(!bytes.is_empty());
    if let Some(path) = std::env::var_os("MNIST_ONNX_OUT") {
        std::fs::write(&path, &bytes).unwrap();
        eprintln!("wrote {} bytes to {}", bytes.len(), path.to_string_lossy());
    }
}
