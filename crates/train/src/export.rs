//! A trained model for other tools: safetensors in PyTorch's names and
//! layout, so that the PyTorch version of this network
//! (`nn.Conv2d(1, k1, 3)` … `nn.Linear(k4 * 16, 128)`, `nn.Linear(128, 10)`,
//! ReLU, 2×2 max-pools after conv2 and conv4) loads it with
//! `load_state_dict` and predicts the same on inputs normalised as the
//! trainer does.
//!
//! Burn keeps a convolution's weight as PyTorch does, `[out, in, 3, 3]`,
//! and a linear layer's as `[in, out]`, PyTorch's transposed: `fc1.weight`
//! and `fc2.weight` are written as `[out, in]`. Both flatten the last
//! feature maps NCHW, so `fc1`'s columns follow `[k4, 4, 4]` in order.

use crate::infer::Predictor;
use burn::module::Param;
use burn::prelude::Backend;
use burn::tensor::Tensor;
use std::collections::HashMap;

/// One exported tensor: its PyTorch name, shape and values (row-major).
#[derive(Debug, Clone, PartialEq)]
pub struct Named {
    /// `conv1.weight`, `fc2.bias`, …
    pub name: String,
    /// PyTorch's shape.
    pub shape: Vec<usize>,
    /// The values, row-major.
    pub values: Vec<f32>,
}

/// Why a model could not be exported.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    /// The run id names no folder (empty, hidden, or a path).
    #[error("{0:?} is not a run id")]
    BadRunId(String),
    /// The run (or the epoch asked for) has no checkpoint.
    #[error("no checkpoint{} of run {run_id} in {}", .epoch.map_or(String::new(), |e| format!(" of epoch {e}")), .dir.display())]
    NoCheckpoint {
        /// The run.
        run_id: String,
        /// The epoch asked for, if one was.
        epoch: Option<usize>,
        /// The checkpoints folder looked in.
        dir: std::path::PathBuf,
    },
    /// The safetensors writer refused the tensors.
    #[error("cannot write safetensors: {0}")]
    Safetensors(String),
    /// The ONNX writer refused the tensors.
    #[error("cannot write ONNX: {0}")]
    Onnx(#[from] mnist_onnx::OnnxError),
}

fn values<B: Backend, const D: usize>(t: Tensor<B, D>) -> Vec<f32> {
    t.into_data().iter::<f32>().collect()
}

fn conv<B: Backend>(name: &str, c: &burn::nn::conv::Conv2d<B>) -> Vec<Named> {
    let w = c.weight.val();
    let mut out = vec![Named {
        name: format!("{name}.weight"),
        shape: w.dims().to_vec(),
        values: values(w),
    }];
    out.extend(bias(name, c.bias.as_ref()));
    out
}

fn linear<B: Backend>(name: &str, l: &burn::nn::Linear<B>) -> Vec<Named> {
    // Burn's [in, out] as PyTorch's [out, in].
    let w = l.weight.val().transpose();
    let mut out = vec![Named {
        name: format!("{name}.weight"),
        shape: w.dims().to_vec(),
        values: values(w),
    }];
    out.extend(bias(name, l.bias.as_ref()));
    out
}

fn bias<B: Backend>(name: &str, b: Option<&Param<Tensor<B, 1>>>) -> Option<Named> {
    b.map(|b| {
        let b = b.val();
        Named {
            name: format!("{name}.bias"),
            shape: b.dims().to_vec(),
            values: values(b),
        }
    })
}

/// The checkpoint `export` reads: run `run_id`'s folder under
/// `checkpoints_dir` (whose best [`Predictor::load`] takes) or, with
/// `epoch`, that epoch's.
pub fn checkpoint_dir(
    checkpoints_dir: &std::path::Path,
    run_id: &str,
    epoch: Option<usize>,
) -> Result<std::path::PathBuf, ExportError> {
    if run_id.is_empty() || run_id.starts_with('.') || run_id.contains(['/', '\\', '\0']) {
        return Err(ExportError::BadRunId(run_id.to_string()));
    }
    let run = checkpoints_dir.join(run_id);
    let dir = match epoch {
        Some(e) => run.join(crate::checkpoint::epoch_dir_name(e)),
        None => run,
    };
    if !dir.is_dir() {
        return Err(ExportError::NoCheckpoint {
            run_id: run_id.to_string(),
            epoch,
            dir: checkpoints_dir.to_path_buf(),
        });
    }
    Ok(dir)
}

/// The model's parameters in PyTorch's names and layout, in forward order.
pub fn pytorch_tensors<B: Backend>(model: &mnist_model::Cnn<B>) -> Vec<Named> {
    let mut out = conv("conv1", &model.conv1);
    out.extend(conv("conv2", &model.conv2));
    out.extend(conv("conv3", &model.conv3));
    out.extend(conv("conv4", &model.conv4));
    out.extend(linear("fc1", &model.fc1));
    out.extend(linear("fc2", &model.fc2));
    out
}

/// The file's metadata: what PyTorch needs to know to use it as we do.
pub fn metadata(p: &Predictor) -> HashMap<String, String> {
    let k = p.state.config.kernels;
    HashMap::from([
        ("format".into(), "pt".into()),
        (
            "architecture".into(),
            format!(
                "Conv2d(1,{},3) ReLU Conv2d({},{},3) ReLU MaxPool2d(2) Conv2d({},{},3) ReLU \
                 Conv2d({},{},3) ReLU MaxPool2d(2) Flatten Linear({},128) ReLU Linear(128,10)",
                k[0],
                k[0],
                k[1],
                k[1],
                k[2],
                k[2],
                k[3],
                k[3] * 16
            ),
        ),
        ("kernels".into(), k.map(|v| v.to_string()).join(",")),
        (
            "normalisation".into(),
            format!(
                "(x/255 - {})/{} on [N, 1, 28, 28] images",
                mnist_data::MNIST_MEAN,
                mnist_data::MNIST_STD
            ),
        ),
        ("mean".into(), mnist_data::MNIST_MEAN.to_string()),
        ("std".into(), mnist_data::MNIST_STD.to_string()),
        ("run_id".into(), p.state.run_id.clone()),
        ("epoch".into(), p.state.epoch.to_string()),
    ])
}

/// The checkpoint as one safetensors file (little-endian f32).
pub fn safetensors(p: &Predictor) -> Result<Vec<u8>, ExportError> {
    let tensors = pytorch_tensors(p.model());
    let bytes: Vec<Vec<u8>> = tensors
        .iter()
        .map(|t| t.values.iter().flat_map(|v| v.to_le_bytes()).collect())
        .collect();
    let views = tensors
        .iter()
        .zip(&bytes)
        .map(|(t, b)| {
            safetensors::tensor::TensorView::new(safetensors::Dtype::F32, t.shape.clone(), b)
                .map(|v| (t.name.clone(), v))
        })
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| ExportError::Safetensors(e.to_string()))?;
    safetensors::serialize(views, Some(metadata(p)))
        .map_err(|e| ExportError::Safetensors(e.to_string()))
}

/// The checkpoint as an ONNX model (opset 13; `input` `[N, 1, 28, 28]`
/// normalised as the metadata says, `logits` and `probabilities`
/// `[N, 10]`), for onnxruntime and other tools.
pub fn onnx(p: &Predictor) -> Result<Vec<u8>, ExportError> {
    let tensors: Vec<mnist_onnx::Tensor> = pytorch_tensors(p.model())
        .into_iter()
        .map(|t| mnist_onnx::Tensor {
            name: t.name,
            shape: t.shape,
            values: t.values,
        })
        .collect();
    // safetensors' "format" names PyTorch's layout there; ONNX has its own.
    let mut meta: Vec<(String, String)> = metadata(p)
        .into_iter()
        .filter(|(k, _)| k != "format")
        .collect();
    meta.sort();
    Ok(mnist_onnx::model(&tensors, &meta)?)
}

/// A model file's format, for the CLI and the download.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// safetensors in PyTorch's names and layout.
    Safetensors,
    /// ONNX, opset 13.
    Onnx,
}

impl Format {
    /// The file's extension.
    pub fn extension(self) -> &'static str {
        match self {
            Format::Safetensors => "safetensors",
            Format::Onnx => "onnx",
        }
    }

    /// The checkpoint in this format.
    pub fn write(self, p: &Predictor) -> Result<Vec<u8>, ExportError> {
        match self {
            Format::Safetensors => safetensors(p),
            Format::Onnx => onnx(p),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::backend::Flex;
    use burn::tensor::TensorData;

    /// The network as PyTorch computes it, from the exported tensors alone.
    fn torch_forward(t: &[Named], x: &[f32]) -> Vec<f32> {
        let get = |n: &str| t.iter().find(|t| t.name == n).unwrap();
        let conv = |x: &[f32], c: usize, h: usize, name: &str| {
            let (w, b) = (get(&format!("{name}.weight")), get(&format!("{name}.bias")));
            let (o, oh) = (w.shape[0], h - 2);
            let mut y = vec![0f32; o * oh * oh];
            for oc in 0..o {
                for i in 0..oh {
                    for j in 0..oh {
                        let mut s = b.values[oc];
                        for ic in 0..c {
                            for di in 0..3 {
                                for dj in 0..3 {
                                    s += w.values[((oc * c + ic) * 3 + di) * 3 + dj]
                                        * x[(ic * h + i + di) * h + j + dj];
                                }
                            }
                        }
                        y[(oc * oh + i) * oh + j] = s.max(0.0);
                    }
                }
            }
            y
        };
        let pool = |x: &[f32], c: usize, h: usize| {
            let oh = h / 2;
            let mut y = vec![f32::MIN; c * oh * oh];
            for ch in 0..c {
                for i in 0..h {
                    for j in 0..h {
                        let k = (ch * oh + i / 2) * oh + j / 2;
                        y[k] = y[k].max(x[(ch * h + i) * h + j]);
                    }
                }
            }
            y
        };
        let linear = |x: &[f32], name: &str, relu: bool| {
            let (w, b) = (get(&format!("{name}.weight")), get(&format!("{name}.bias")));
            let (o, i) = (w.shape[0], w.shape[1]);
            (0..o)
                .map(|r| {
                    let s = b.values[r] + (0..i).map(|c| w.values[r * i + c] * x[c]).sum::<f32>();
                    if relu {
                        s.max(0.0)
                    } else {
                        s
                    }
                })
                .collect::<Vec<f32>>()
        };
        let k: Vec<usize> = ["conv1", "conv2", "conv3", "conv4"]
            .iter()
            .map(|n| get(&format!("{n}.weight")).shape[0])
            .collect();
        let x = conv(x, 1, 28, "conv1");
        let x = conv(&x, k[0], 26, "conv2");
        let x = pool(&x, k[1], 24);
        let x = conv(&x, k[1], 12, "conv3");
        let x = conv(&x, k[2], 10, "conv4");
        let x = pool(&x, k[3], 8);
        let x = linear(&x, "fc1", true);
        linear(&x, "fc2", false)
    }

    #[test]
    fn pytorch_s_layout_computes_what_our_model_computes() {
        // Distinct kernel counts: a transposed or misordered tensor shows.
        let device = Default::default();
        let config = mnist_model::CnnConfig::new().with_kernels([3, 5, 6, 7]);
        let model = config.init::<Flex>(&device);
        let tensors = pytorch_tensors(&model);
        let shapes: Vec<(&str, &[usize])> = tensors
            .iter()
            .map(|t| (t.name.as_str(), t.shape.as_slice()))
            .collect();
        assert_eq!(shapes[0], ("conv1.weight", &[3, 1, 3, 3][..]));
        assert_eq!(shapes[6], ("conv4.weight", &[7, 6, 3, 3][..]));
        assert_eq!(shapes[8], ("fc1.weight", &[128, 7 * 16][..]));
        assert_eq!(shapes[10], ("fc2.weight", &[10, 128][..]));
        assert_eq!(tensors.len(), 12);
        let x: Vec<f32> = (0..2 * 784)
            .map(|i| ((i * 37 % 101) as f32 / 50.0) - 1.0)
            .collect();
        let ours: Vec<f32> = model
            .forward(Tensor::<Flex, 4>::from_data(
                TensorData::new(x.clone(), [2, 1, 28, 28]),
                &device,
            ))
            .into_data()
            .iter::<f32>()
            .collect();
        for n in 0..2 {
            let theirs = torch_forward(&tensors, &x[n * 784..(n + 1) * 784]);
            for (a, b) in ours[n * 10..(n + 1) * 10].iter().zip(&theirs) {
                assert!((a - b).abs() <= 1e-4 * a.abs().max(1.0), "{a} vs {b}");
            }
        }
    }
}
