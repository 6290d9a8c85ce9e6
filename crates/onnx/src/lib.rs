//! The trained network as an ONNX model, for runtimes other than Burn
//! (onnxruntime, Netron, …).
//!
//! This crate owns the ONNX form of mnist-monitor's four-conv CNN: from the
//! tensors the safetensors export writes (PyTorch's names and layout,
//! `conv1.weight [k1, 1, 3, 3]` … `fc2.bias [10]`) it checks that every
//! tensor is there with a consistent shape and writes an opset-13
//! `ModelProto`:
//!
//! ```text
//! input [N,1,28,28] → Conv conv1 → Relu → Conv conv2 → Relu → MaxPool 2×2
//!   → Conv conv3 → Relu → Conv conv4 → Relu → MaxPool 2×2 → Flatten(1)
//!   → Gemm fc1 (transB) → Relu → Gemm fc2 (transB) → logits [N,10]
//!                                        Softmax(1) → probabilities [N,10]
//! ```
//!
//! The weights are initializers under their PyTorch names. The input is
//! *not* normalised inside the graph: each pixel `x` in 0..=255 is given as
//! `(x/255 − mean)/std`, as the model's `doc_string` and `metadata_props`
//! (`mean`, `std`, `normalisation`) say. The protobuf is encoded by `prost`
//! from the message subset in [`proto`]; nothing here depends on Burn.

pub mod proto;

use prost::Message;
use proto::tensor_shape_proto::{dimension, Dimension};
use proto::{
    type_proto, AttributeProto, AttributeType, GraphProto, ModelProto, NodeProto,
    OperatorSetIdProto, StringStringEntryProto, TensorProto, TensorShapeProto, TypeProto,
    ValueInfoProto, DATA_TYPE_FLOAT,
};

/// The ONNX operator set the graph uses (default domain `ai.onnx`).
pub const OPSET: i64 = 13;
/// The IR version written: 7, the one that came with opset 13 (ONNX 1.8).
pub const IR_VERSION: i64 = 7;
/// The graph's input: float `[N, 1, 28, 28]`, already normalised.
pub const INPUT: &str = "input";
/// The graph's first output: float `[N, 10]` logits.
pub const LOGITS: &str = "logits";
/// The graph's second output: float `[N, 10]`, the softmax of the logits.
pub const PROBABILITIES: &str = "probabilities";
/// The symbolic batch dimension of the input and outputs.
pub const BATCH: &str = "N";
/// The mean used when the metadata gives none (MNIST's training set).
pub const DEFAULT_MEAN: &str = "0.1307";
/// The standard deviation used when the metadata gives none.
pub const DEFAULT_STD: &str = "0.3081";
/// `fc1`'s output width.
pub const HIDDEN: usize = 128;
/// The number of classes.
pub const CLASSES: usize = 10;

/// The tensors the network needs, in the order they are written.
pub const TENSOR_NAMES: [&str; 12] = [
    "conv1.weight",
    "conv1.bias",
    "conv2.weight",
    "conv2.bias",
    "conv3.weight",
    "conv3.bias",
    "conv4.weight",
    "conv4.bias",
    "fc1.weight",
    "fc1.bias",
    "fc2.weight",
    "fc2.bias",
];

/// One weight tensor: its PyTorch name, shape and values (row-major).
#[derive(Debug, Clone, PartialEq)]
pub struct Tensor {
    /// `conv1.weight`, `fc2.bias`, … (see [`TENSOR_NAMES`]).
    pub name: String,
    /// PyTorch's shape: `[out, in, 3, 3]` for a convolution, `[out, in]`
    /// for a linear layer.
    pub shape: Vec<usize>,
    /// The values, row-major.
    pub values: Vec<f32>,
}

/// Why the tensors or metadata cannot make a model.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum OnnxError {
    /// A tensor the network needs is not given.
    #[error("tensor {name} is missing")]
    Missing {
        /// The tensor's name.
        name: String,
    },
    /// A tensor is given more than once.
    #[error("tensor {name} is given more than once")]
    Duplicate {
        /// The tensor's name.
        name: String,
    },
    /// A tensor is not part of the network.
    #[error("tensor {name} is not part of the network (expected {})", TENSOR_NAMES.join(", "))]
    Unexpected {
        /// The tensor's name.
        name: String,
    },
    /// A tensor's shape does not fit the network or the tensors before it.
    #[error("tensor {name} has shape {found:?}, expected {expected}")]
    Shape {
        /// The tensor's name.
        name: String,
        /// The shape it should have, as `[k2, 8, 3, 3]` (`k2` any positive
        /// number of kernels, the rest fixed by the network or earlier
        /// tensors).
        expected: String,
        /// The shape it has.
        found: Vec<usize>,
    },
    /// A tensor's values do not fill its shape.
    #[error("tensor {name} of shape {shape:?} has {found} values, expected {expected}")]
    Values {
        /// The tensor's name.
        name: String,
        /// Its shape.
        shape: Vec<usize>,
        /// The product of the shape.
        expected: usize,
        /// The number of values given.
        found: usize,
    },
    /// A metadata entry is unusable.
    #[error("metadata {key} = {value:?}: {reason}")]
    Metadata {
        /// The entry's key.
        key: String,
        /// Its value.
        value: String,
        /// What is wrong with it.
        reason: String,
    },
}

/// Checks the tensors against the network: each of [`TENSOR_NAMES`] once,
/// no others, shapes consistent, values filling them. Returns the kernels
/// `[k1, k2, k3, k4]` (the output channels of conv1–conv4).
pub fn kernels(tensors: &[Tensor]) -> Result<[usize; 4], OnnxError> {
    for (i, t) in tensors.iter().enumerate() {
        if !TENSOR_NAMES.contains(&t.name.as_str()) {
            return Err(OnnxError::Unexpected {
                name: t.name.clone(),
            });
        }
        if tensors[..i].iter().any(|u| u.name == t.name) {
            return Err(OnnxError::Duplicate {
                name: t.name.clone(),
            });
        }
        let expected: usize = t.shape.iter().product();
        if t.values.len() != expected {
            return Err(OnnxError::Values {
                name: t.name.clone(),
                shape: t.shape.clone(),
                expected,
                found: t.values.len(),
            });
        }
    }
    let get = |name: &str| {
        tensors
            .iter()
            .find(|t| t.name == name)
            .ok_or_else(|| OnnxError::Missing { name: name.into() })
    };
    let shape_error = |t: &Tensor, expected: String| OnnxError::Shape {
        name: t.name.clone(),
        expected,
        found: t.shape.clone(),
    };
    let exact = |name: &str, want: &[usize]| -> Result<(), OnnxError> {
        let t = get(name)?;
        if t.shape == want {
            Ok(())
        } else {
            Err(shape_error(t, format!("{want:?}")))
        }
    };

    let mut k = [0usize; 4];
    let mut channels_in = 1;
    for (i, k_i) in k.iter_mut().enumerate() {
        let w = get(&format!("conv{}.weight", i + 1))?;
        match w.shape[..] {
            [out, c, 3, 3] if out > 0 && c == channels_in => *k_i = out,
            _ => {
                return Err(shape_error(
                    w,
                    format!("[k{}, {channels_in}, 3, 3] with k{} > 0", i + 1, i + 1),
                ))
            }
        }
        exact(&format!("conv{}.bias", i + 1), &[*k_i])?;
        channels_in = *k_i;
    }
    exact("fc1.weight", &[HIDDEN, k[3] * 16])?;
    exact("fc1.bias", &[HIDDEN])?;
    exact("fc2.weight", &[CLASSES, HIDDEN])?;
    exact("fc2.bias", &[CLASSES])?;
    Ok(k)
}

/// The normalisation sentence written as the `normalisation` metadata entry.
pub fn normalisation(mean: &str, std: &str) -> String {
    format!(
        "(x/255 - {mean})/{std} on [N, 1, 28, 28] images, x the pixel in 0..=255 \
         (MNIST style: light digit on dark, centred)"
    )
}

/// The network as an ONNX model (protobuf bytes of a `ModelProto`).
///
/// `tensors` are the twelve of [`TENSOR_NAMES`] in any order (see
/// [`kernels`] for what is checked). `meta` becomes `metadata_props` in the
/// order given: keys must be unique; `mean` and `std`, if given, must be
/// numbers (std > 0) and are the normalisation the model's documentation
/// states ([`DEFAULT_MEAN`] and [`DEFAULT_STD`] are added if absent);
/// `kernels`, if given, must agree with the tensors (`k1,k2,k3,k4`; added
/// if absent); a `normalisation` entry is written from mean and std,
/// replacing any given.
pub fn model(tensors: &[Tensor], meta: &[(String, String)]) -> Result<Vec<u8>, OnnxError> {
    Ok(model_proto(tensors, meta)?.encode_to_vec())
}

/// A model file read back (for tests and tools that inspect one).
pub fn read(bytes: &[u8]) -> Result<ModelProto, prost::DecodeError> {
    prost::Message::decode(bytes)
}

/// [`model`] before encoding, for callers that want to inspect or extend it.
pub fn model_proto(tensors: &[Tensor], meta: &[(String, String)]) -> Result<ModelProto, OnnxError> {
    let k = kernels(tensors)?;
    let Metadata { mean, std, props } = metadata(meta, k)?;
    let graph = graph(tensors, k);
    Ok(ModelProto {
        ir_version: Some(IR_VERSION),
        opset_import: vec![OperatorSetIdProto {
            domain: Some(String::new()),
            version: Some(OPSET),
        }],
        producer_name: Some("mnist-monitor".into()),
        producer_version: Some(env!("CARGO_PKG_VERSION").into()),
        domain: None,
        model_version: None,
        doc_string: Some(format!(
            "mnist-monitor's four-conv MNIST CNN (kernels {k1},{k2},{k3},{k4}). \
             Input `{INPUT}`: float32 [N, 1, 28, 28], each pixel x in 0..=255 (MNIST style: \
             light digit on dark, centred) normalised as (x/255 - {mean})/{std}. \
             Outputs: `{LOGITS}` [N, 10] and `{PROBABILITIES}` = softmax(logits) [N, 10], \
             index = digit.",
            k1 = k[0],
            k2 = k[1],
            k3 = k[2],
            k4 = k[3],
        )),
        graph: Some(graph),
        metadata_props: props
            .into_iter()
            .map(|(key, value)| StringStringEntryProto {
                key: Some(key),
                value: Some(value),
            })
            .collect(),
    })
}

/// The metadata entries to write, and the mean and std they state.
struct Metadata {
    mean: String,
    std: String,
    props: Vec<(String, String)>,
}

fn metadata(meta: &[(String, String)], k: [usize; 4]) -> Result<Metadata, OnnxError> {
    let bad = |key: &str, value: &str, reason: String| OnnxError::Metadata {
        key: key.into(),
        value: value.into(),
        reason,
    };
    for (i, (key, value)) in meta.iter().enumerate() {
        if meta[..i].iter().any(|(other, _)| other == key) {
            return Err(bad(key, value, "the key is given more than once".into()));
        }
    }
    let find = |key: &str| meta.iter().find(|(k, _)| k == key).map(|(_, v)| v.trim());
    let number = |key: &str, default: &str| -> Result<String, OnnxError> {
        let value = find(key).unwrap_or(default);
        match value.parse::<f64>() {
            Ok(v) if v.is_finite() && (key != "std" || v > 0.0) => Ok(value.to_string()),
            _ => Err(bad(
                key,
                value,
                if key == "std" {
                    "not a positive number".into()
                } else {
                    "not a finite number".into()
                },
            )),
        }
    };
    let mean = number("mean", DEFAULT_MEAN)?;
    let std = number("std", DEFAULT_STD)?;
    let kernels = k.map(|v| v.to_string()).join(",");
    if let Some(given) = find("kernels") {
        let parsed: Option<Vec<usize>> = given.split(',').map(|v| v.trim().parse().ok()).collect();
        if parsed.as_deref() != Some(&k[..]) {
            return Err(bad(
                "kernels",
                given,
                format!("the tensors have kernels {kernels}"),
            ));
        }
    }

    let mut props: Vec<(String, String)> = meta
        .iter()
        .filter(|(key, _)| key != "normalisation")
        .cloned()
        .collect();
    for (key, value) in [("mean", &mean), ("std", &std), ("kernels", &kernels)] {
        if find(key).is_none() {
            props.push((key.into(), value.clone()));
        }
    }
    props.push(("normalisation".into(), normalisation(&mean, &std)));
    Ok(Metadata { mean, std, props })
}

/// A dimension: fixed, or the batch symbol when `None`.
fn dims(shape: &[Option<usize>]) -> TensorShapeProto {
    TensorShapeProto {
        dim: shape
            .iter()
            .map(|d| Dimension {
                value: Some(match d {
                    Some(n) => dimension::Value::DimValue(*n as i64),
                    None => dimension::Value::DimParam(BATCH.into()),
                }),
                denotation: None,
            })
            .collect(),
    }
}

/// A float tensor value of shape `[N, rest…]`.
fn batched(name: &str, rest: &[usize]) -> ValueInfoProto {
    let shape: Vec<Option<usize>> = std::iter::once(None)
        .chain(rest.iter().copied().map(Some))
        .collect();
    ValueInfoProto {
        name: Some(name.into()),
        r#type: Some(TypeProto {
            value: Some(type_proto::Value::TensorType(type_proto::Tensor {
                elem_type: Some(DATA_TYPE_FLOAT),
                shape: Some(dims(&shape)),
            })),
            denotation: None,
        }),
        doc_string: None,
    }
}

fn ints(name: &str, values: &[i64]) -> AttributeProto {
    AttributeProto {
        name: Some(name.into()),
        r#type: Some(AttributeType::Ints as i32),
        ints: values.to_vec(),
        ..Default::default()
    }
}

fn int(name: &str, value: i64) -> AttributeProto {
    AttributeProto {
        name: Some(name.into()),
        r#type: Some(AttributeType::Int as i32),
        i: Some(value),
        ..Default::default()
    }
}

fn node(
    op: &str,
    name: &str,
    inputs: &[&str],
    output: &str,
    attributes: Vec<AttributeProto>,
) -> NodeProto {
    NodeProto {
        input: inputs.iter().map(|s| s.to_string()).collect(),
        output: vec![output.into()],
        name: Some(name.into()),
        op_type: Some(op.into()),
        domain: None,
        attribute: attributes,
        doc_string: None,
    }
}

fn initializer(t: &Tensor) -> TensorProto {
    TensorProto {
        dims: t.shape.iter().map(|&d| d as i64).collect(),
        data_type: Some(DATA_TYPE_FLOAT),
        float_data: Vec::new(),
        name: Some(t.name.clone()),
        doc_string: None,
        raw_data: Some(t.values.iter().flat_map(|v| v.to_le_bytes()).collect()),
    }
}

/// The graph, for checked tensors with kernels `k`.
fn graph(tensors: &[Tensor], k: [usize; 4]) -> GraphProto {
    let mut nodes = Vec::new();
    let mut value_info = Vec::new();
    // Each step's output value, its shape after the batch dimension.
    let mut step = |nodes: &mut Vec<NodeProto>, n: NodeProto, shape: &[usize]| {
        value_info.push(batched(&n.output[0], shape));
        nodes.push(n);
    };
    let conv_attrs = || {
        vec![
            ints("kernel_shape", &[3, 3]),
            ints("strides", &[1, 1]),
            ints("pads", &[0, 0, 0, 0]),
            ints("dilations", &[1, 1]),
            int("group", 1),
        ]
    };
    let pool_attrs = || vec![ints("kernel_shape", &[2, 2]), ints("strides", &[2, 2])];

    let mut previous = INPUT.to_string();
    let mut side = 28;
    for (i, &k_i) in k.iter().enumerate() {
        let layer = format!("conv{}", i + 1);
        let (w, b) = (format!("{layer}.weight"), format!("{layer}.bias"));
        side -= 2;
        let conv_out = format!("{layer}.out");
        step(
            &mut nodes,
            node(
                "Conv",
                &layer,
                &[&previous, &w, &b],
                &conv_out,
                conv_attrs(),
            ),
            &[k_i, side, side],
        );
        let relu_out = format!("{layer}.relu");
        step(
            &mut nodes,
            node(
                "Relu",
                &format!("{layer}_relu"),
                &[&conv_out],
                &relu_out,
                vec![],
            ),
            &[k_i, side, side],
        );
        previous = relu_out;
        if i % 2 == 1 {
            side /= 2;
            let pool = format!("pool{}", i / 2 + 1);
            let pool_out = format!("{pool}.out");
            step(
                &mut nodes,
                node("MaxPool", &pool, &[&previous], &pool_out, pool_attrs()),
                &[k_i, side, side],
            );
            previous = pool_out;
        }
    }
    step(
        &mut nodes,
        node(
            "Flatten",
            "flatten",
            &[&previous],
            "flatten.out",
            vec![int("axis", 1)],
        ),
        &[k[3] * 16],
    );
    step(
        &mut nodes,
        node(
            "Gemm",
            "fc1",
            &["flatten.out", "fc1.weight", "fc1.bias"],
            "fc1.out",
            vec![int("transB", 1)],
        ),
        &[HIDDEN],
    );
    step(
        &mut nodes,
        node("Relu", "fc1_relu", &["fc1.out"], "fc1.relu", vec![]),
        &[HIDDEN],
    );
    nodes.push(node(
        "Gemm",
        "fc2",
        &["fc1.relu", "fc2.weight", "fc2.bias"],
        LOGITS,
        vec![int("transB", 1)],
    ));
    nodes.push(node(
        "Softmax",
        "softmax",
        &[LOGITS],
        PROBABILITIES,
        vec![int("axis", 1)],
    ));

    let initializer = TENSOR_NAMES
        .iter()
        .filter_map(|name| tensors.iter().find(|t| t.name == *name))
        .map(initializer)
        .collect();
    GraphProto {
        node: nodes,
        name: Some("mnist_cnn".into()),
        initializer,
        doc_string: None,
        input: vec![batched(INPUT, &[1, 28, 28])],
        output: vec![
            batched(LOGITS, &[CLASSES]),
            batched(PROBABILITIES, &[CLASSES]),
        ],
        value_info,
    }
}
