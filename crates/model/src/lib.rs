//! # mnist-model: the four-conv MNIST network
//!
//! The network of the original project, as a Burn [`Module`](burn::module::Module)
//! ([`Cnn`]) built from a [`Config`](burn::config::Config) ([`CnnConfig`]):
//!
//! ```text
//! input 1×28×28
//! conv3x3(1→k1) ReLU  → k1×26×26
//! conv3x3(k1→k2) ReLU → k2×24×24
//! maxpool 2           → k2×12×12
//! dropout 0.25
//! conv3x3(k2→k3) ReLU → k3×10×10
//! conv3x3(k3→k4) ReLU → k4×8×8
//! maxpool 2           → k4×4×4
//! dropout 0.5
//! flatten             → k4·16
//! linear(→128) ReLU
//! linear(128→10)      → logits
//! ```
//!
//! All convolutions use valid padding. [`CnnConfig::summary`] describes the
//! layers as plain data (for the CLI and the web page) without building a model.

use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::pool::{MaxPool2d, MaxPool2dConfig};
use burn::nn::{Dropout, DropoutConfig, Linear, LinearConfig, Relu};
use burn::prelude::*;
use mnist_events::{LayerSummary, ModelSummary};

/// The allowed range of each kernel (channel) count.
pub const KERNEL_RANGE: std::ops::RangeInclusive<usize> = 1..=512;
/// The default kernel counts (225,162 parameters).
pub const KERNELS_DEFAULT: [usize; 4] = [32, 64, 64, 64];
/// The small preset (90,250 parameters).
pub const KERNELS_SMALL: [usize; 4] = [16, 32, 32, 32];
/// Width of the hidden fully connected layer.
pub const HIDDEN: usize = 128;
/// Number of output classes.
pub const CLASSES: usize = 10;

/// Configuration of [`Cnn`].
#[derive(Config, Debug)]
pub struct CnnConfig {
    /// Output channels of the four convolutions.
    #[config(default = "[32, 64, 64, 64]")]
    pub kernels: [usize; 4],
    /// Dropout after the first pooling.
    #[config(default = 0.25)]
    pub dropout1: f64,
    /// Dropout after the second pooling.
    #[config(default = 0.5)]
    pub dropout2: f64,
}

/// The network. Fields are in forward order.
#[derive(Module, Debug)]
pub struct Cnn<B: Backend> {
    /// 3×3 convolution 1→k1 on the 28×28 input.
    pub conv1: Conv2d<B>,
    /// 3×3 convolution k1→k2.
    pub conv2: Conv2d<B>,
    /// The 2×2 max pooling after conv2 and after conv4 (no parameters).
    pub pool: MaxPool2d,
    /// Dropout after the first pooling.
    pub dropout1: Dropout,
    /// 3×3 convolution k2→k3.
    pub conv3: Conv2d<B>,
    /// 3×3 convolution k3→k4.
    pub conv4: Conv2d<B>,
    /// Dropout after the second pooling.
    pub dropout2: Dropout,
    /// Fully connected layer k4·16→128, followed by ReLU.
    pub fc1: Linear<B>,
    /// Fully connected layer 128→10, giving the logits.
    pub fc2: Linear<B>,
    /// The ReLU after `fc1` (the convolutions' ReLUs are fused into them).
    pub relu: Relu,
}

/// Kernel counts outside [`KERNEL_RANGE`], named `k1 = 0, k3 = 513`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("--kernels: each of the four kernel counts must be in {min}..={max} (got {bad})", min = KERNEL_RANGE.start(), max = KERNEL_RANGE.end(), bad = .0)]
pub struct KernelsOutOfRange(pub String);

impl CnnConfig {
    /// Checks every kernel count against [`KERNEL_RANGE`].
    pub fn validate(&self) -> Result<(), KernelsOutOfRange> {
        let bad: Vec<String> = self
            .kernels
            .iter()
            .enumerate()
            .filter(|(_, k)| !KERNEL_RANGE.contains(k))
            .map(|(i, k)| format!("k{} = {k}", i + 1))
            .collect();
        if bad.is_empty() {
            Ok(())
        } else {
            Err(KernelsOutOfRange(bad.join(", ")))
        }
    }

    /// Builds the network on `device` with fresh (Kaiming-uniform) weights.
    pub fn init<B: Backend>(&self, device: &B::Device) -> Cnn<B> {
        let [k1, k2, k3, k4] = self.kernels;
        let conv = |i: usize, o: usize| Conv2dConfig::new([i, o], [3, 3]).init(device);
        Cnn {
            conv1: conv(1, k1),
            conv2: conv(k1, k2),
            pool: MaxPool2dConfig::new([2, 2]).init(),
            dropout1: DropoutConfig::new(self.dropout1).init(),
            conv3: conv(k2, k3),
            conv4: conv(k3, k4),
            dropout2: DropoutConfig::new(self.dropout2).init(),
            fc1: LinearConfig::new(k4 * 4 * 4, HIDDEN).init(device),
            fc2: LinearConfig::new(HIDDEN, CLASSES).init(device),
            relu: Relu::new(),
        }
    }

    /// Layers, output shapes and parameter counts, computed from the config.
    pub fn summary(&self) -> ModelSummary {
        let [k1, k2, k3, k4] = self.kernels;
        let conv_params = |i: usize, o: usize| i * o * 9 + o;
        let row = |name: &str, kind: String, shape: &[usize], params: usize| LayerSummary {
            name: name.to_string(),
            kind,
            output_shape: shape.to_vec(),
            params,
        };
        let layers = vec![
            row(
                "conv1",
                format!("Conv2d 3x3 1→{k1} + ReLU"),
                &[k1, 26, 26],
                conv_params(1, k1),
            ),
            row(
                "conv2",
                format!("Conv2d 3x3 {k1}→{k2} + ReLU"),
                &[k2, 24, 24],
                conv_params(k1, k2),
            ),
            row("pool1", "MaxPool2d 2x2".into(), &[k2, 12, 12], 0),
            row(
                "dropout1",
                format!("Dropout p={}", self.dropout1),
                &[k2, 12, 12],
                0,
            ),
            row(
                "conv3",
                format!("Conv2d 3x3 {k2}→{k3} + ReLU"),
                &[k3, 10, 10],
                conv_params(k2, k3),
            ),
            row(
                "conv4",
                format!("Conv2d 3x3 {k3}→{k4} + ReLU"),
                &[k4, 8, 8],
                conv_params(k3, k4),
            ),
            row("pool2", "MaxPool2d 2x2".into(), &[k4, 4, 4], 0),
            row(
                "dropout2",
                format!("Dropout p={}", self.dropout2),
                &[k4, 4, 4],
                0,
            ),
            row("flatten", "Flatten".into(), &[k4 * 16], 0),
            row(
                "fc1",
                format!("Linear {}→{HIDDEN} + ReLU", k4 * 16),
                &[HIDDEN],
                k4 * 16 * HIDDEN + HIDDEN,
            ),
            row(
                "fc2",
                format!("Linear {HIDDEN}→{CLASSES}"),
                &[CLASSES],
                HIDDEN * CLASSES + CLASSES,
            ),
        ];
        let total_params = layers.iter().map(|l| l.params).sum();
        ModelSummary {
            input_shape: vec![1, 28, 28],
            layers,
            total_params,
        }
    }
}

/// [`Cnn::forward_traced`]'s answer: the logits and every ReLU output on
/// the way (what the layer statistics, feature maps and saliency read).
pub struct Traced<B: Backend> {
    /// `[batch, 10]`.
    pub logits: Tensor<B, 2>,
    /// conv1…conv4's ReLU outputs, `[batch, k, h, w]` (before pooling).
    pub convs: [Tensor<B, 4>; 4],
    /// fc1's ReLU output, `[batch, 128]`.
    pub fc1: Tensor<B, 2>,
}

impl<B: burn::tensor::backend::AutodiffBackend> Traced<B> {
    /// The same tensors without their autodiff graph (what the layer
    /// statistics compute on, after the backward pass).
    pub fn inner(self) -> Traced<B::InnerBackend> {
        Traced {
            logits: self.logits.inner(),
            convs: self.convs.map(|c| c.inner()),
            fc1: self.fc1.inner(),
        }
    }
}

impl<B: Backend> Cnn<B> {
    /// `images`: `[batch, 1, 28, 28]`, normalised. Returns logits `[batch, 10]`.
    ///
    /// Convolutions, pools and dropout go through `mnist-kernels`: Burn's
    /// own ops on GPUs, faster custom ops on the CPU (the layers' weights
    /// and settings are still these modules', so checkpoints are unchanged).
    pub fn forward(&self, images: Tensor<B, 4>) -> Tensor<B, 2> {
        // Written out rather than through `forward_traced`: a tensor only
        // one handle holds can be reused in place by the next op.
        let x = conv_relu(&self.conv1, images);
        let x = conv_relu(&self.conv2, x);
        let x = mnist_kernels::max_pool_2x2_dropout(x, self.dropout1.prob);
        let x = conv_relu(&self.conv3, x);
        let x = conv_relu(&self.conv4, x);
        let x = mnist_kernels::max_pool_2x2_dropout(x, self.dropout2.prob);
        let x: Tensor<B, 2> = x.flatten(1, 3);
        let x = self.relu.forward(self.fc1.forward(x));
        self.fc2.forward(x)
    }

    /// [`Cnn::forward`], keeping each ReLU output (the same ops: nothing
    /// more is computed, the intermediate tensors are only kept).
    pub fn forward_traced(&self, images: Tensor<B, 4>) -> Traced<B> {
        let c1 = conv_relu(&self.conv1, images);
        let c2 = conv_relu(&self.conv2, c1.clone());
        let x = mnist_kernels::max_pool_2x2_dropout(c2.clone(), self.dropout1.prob);
        let c3 = conv_relu(&self.conv3, x);
        let c4 = conv_relu(&self.conv4, c3.clone());
        let x = mnist_kernels::max_pool_2x2_dropout(c4.clone(), self.dropout2.prob);
        let x: Tensor<B, 2> = x.flatten(1, 3);
        let fc1 = self.relu.forward(self.fc1.forward(x));
        Traced {
            logits: self.fc2.forward(fc1.clone()),
            convs: [c1, c2, c3, c4],
            fc1,
        }
    }

    /// Each layer with parameters, in forward order, by name (as
    /// `mnist_events::LAYERS` names them), with its weight and bias
    /// flattened.
    pub fn weights(&self) -> [(&'static str, Tensor<B, 1>, Tensor<B, 1>); 6] {
        let conv = |name, c: &Conv2d<B>| {
            let bias = c.bias.as_ref().expect("convolutions have a bias").val();
            (name, c.weight.val().flatten(0, 3), bias)
        };
        let linear = |name, l: &Linear<B>| {
            let bias = l.bias.as_ref().expect("linear layers have a bias").val();
            (name, l.weight.val().flatten(0, 1), bias)
        };
        [
            conv("conv1", &self.conv1),
            conv("conv2", &self.conv2),
            conv("conv3", &self.conv3),
            conv("conv4", &self.conv4),
            linear("fc1", &self.fc1),
            linear("fc2", &self.fc2),
        ]
    }

    /// Each layer's weight and bias parameter ids, in the order of
    /// [`Cnn::weights`] (for looking up their gradients).
    pub fn param_ids(&self) -> [(burn::module::ParamId, burn::module::ParamId); 6] {
        let bias = |b: &Option<burn::module::Param<Tensor<B, 1>>>| {
            b.as_ref().expect("every layer has a bias").id
        };
        [
            (self.conv1.weight.id, bias(&self.conv1.bias)),
            (self.conv2.weight.id, bias(&self.conv2.bias)),
            (self.conv3.weight.id, bias(&self.conv3.bias)),
            (self.conv4.weight.id, bias(&self.conv4.bias)),
            (self.fc1.weight.id, bias(&self.fc1.bias)),
            (self.fc2.weight.id, bias(&self.fc2.bias)),
        ]
    }
}

/// One of the network's 3×3 valid convolutions and its ReLU, through
/// `mnist-kernels` (fused on the CPU).
fn conv_relu<B: Backend>(layer: &Conv2d<B>, x: Tensor<B, 4>) -> Tensor<B, 4> {
    mnist_kernels::conv2d_3x3_relu(x, layer.weight.val(), layer.bias.as_ref().map(|b| b.val()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::backend::Flex;

    #[test]
    fn presets_have_the_published_parameter_counts() {
        let default = CnnConfig::new();
        assert_eq!(default.kernels, KERNELS_DEFAULT);
        assert_eq!(default.summary().total_params, 225_162);
        let small = CnnConfig::new().with_kernels(KERNELS_SMALL);
        assert_eq!(small.summary().total_params, 90_250);
    }

    #[test]
    fn summary_matches_the_built_module() {
        let device = Default::default();
        for kernels in [KERNELS_DEFAULT, KERNELS_SMALL, [3, 5, 7, 9]] {
            let config = CnnConfig::new().with_kernels(kernels);
            let model: Cnn<Flex> = config.init(&device);
            assert_eq!(
                model.num_params(),
                config.summary().total_params,
                "{kernels:?}"
            );
        }
    }

    #[test]
    fn forward_gives_ten_logits_per_image() {
        let device = Default::default();
        let model: Cnn<Flex> = CnnConfig::new().with_kernels(KERNELS_SMALL).init(&device);
        let images = Tensor::<Flex, 4>::zeros([3, 1, 28, 28], &device);
        assert_eq!(model.forward(images).dims(), [3, 10]);
    }

    #[test]
    fn summary_shapes_follow_valid_padding() {
        let s = CnnConfig::new().summary();
        let shapes: Vec<_> = s.layers.iter().map(|l| l.output_shape.clone()).collect();
        assert_eq!(shapes[0], vec![32, 26, 26]);
        assert_eq!(shapes[1], vec![64, 24, 24]);
        assert_eq!(shapes[2], vec![64, 12, 12]);
        assert_eq!(shapes[4], vec![64, 10, 10]);
        assert_eq!(shapes[5], vec![64, 8, 8]);
        assert_eq!(shapes[6], vec![64, 4, 4]);
        assert_eq!(shapes[8], vec![1024]);
    }

    #[test]
    fn kernel_range_is_enforced() {
        assert!(CnnConfig::new().validate().is_ok());
        let err = CnnConfig::new()
            .with_kernels([0, 64, 513, 64])
            .validate()
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("1..=512") && err.contains("k1 = 0") && err.contains("k3 = 513"),
            "{err}"
        );
    }
}
