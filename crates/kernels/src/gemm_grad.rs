//! The 3×3 convolution for GPU training (CUDA, wgpu): Burn's forward and
//! input gradient, and the **weight gradient as a batched GEMM**.
//!
//! CubeCL's weight gradient is an implicit GEMM with M = out channels,
//! N = 9·in channels and K = batch·h·w, with no split-K: for this network's
//! early layers (M = 32 or 64, N = 9 or 288) it runs on a handful of thread
//! blocks, each looping over hundreds of thousands of K elements. Here the
//! K loop is cut per image instead: with `cols[b] = unfold(x[b])`
//! (`[in·9, h·w]`, a strided view then one copy) and `g[b]` the output
//! gradient (`[out, h·w]`),
//!
//! ```text
//! dW = Σ_b g[b] · cols[b]ᵀ      (a batched matmul [B, out, in·9], summed over B)
//! db = Σ_b Σ_hw g[b]            (a reduction)
//! ```
//!
//! so the matmul has `batch` independent problems to spread over the GPU
//! (a split-K by construction), and the sum is one reduction.
//!
//! The op is generic over the inner backend, so it is tested against
//! Burn's autodiff `conv2d` on `Flex` and on wgpu alike.

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::NoCheckpointing;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::Autodiff;
use burn::tensor::backend::Backend;
use burn::tensor::ops::{ConvOptions, FloatTensor, UnfoldOptions};
use burn::tensor::{Tensor, TensorMetadata, TensorPrimitive};

fn options() -> ConvOptions<2> {
    ConvOptions::new([1, 1], [0, 0], [1, 1], 1)
}

/// `conv2d(x, weight, bias)` (3×3, stride 1, no padding) on `Autodiff<B>`
/// with the weight and bias gradients as a batched GEMM and a reduction.
pub fn conv2d_3x3<B: Backend>(
    x: Tensor<Autodiff<B>, 4>,
    weight: Tensor<Autodiff<B>, 4>,
    bias: Tensor<Autodiff<B>, 1>,
) -> Tensor<Autodiff<B>, 4> {
    let x = x.into_primitive().tensor();
    let weight = weight.into_primitive().tensor();
    let bias = bias.into_primitive().tensor();
    let forward = || {
        B::conv2d(
            x.primitive.clone(),
            weight.primitive.clone(),
            Some(bias.primitive.clone()),
            options(),
        )
    };
    let out = match GemmGradConv
        .prepare::<NoCheckpointing>([x.node.clone(), weight.node.clone(), bias.node.clone()])
        .compute_bound()
        .stateful()
    {
        OpsKind::Tracked(prep) => {
            let state = (x.primitive.clone(), weight.primitive.clone());
            prep.finish(state, forward())
        }
        OpsKind::UnTracked(prep) => prep.finish(forward()),
    };
    Tensor::from_primitive(TensorPrimitive::Float(out))
}

#[derive(Debug)]
struct GemmGradConv;

impl<B: Backend> Backward<B, 3> for GemmGradConv {
    /// The input and the weight, as the forward saw them.
    type State = (FloatTensor<B>, FloatTensor<B>);

    fn backward(self, ops: Ops<Self::State, 3>, grads: &mut Gradients, _: &mut Checkpointer) {
        let [node_x, node_weight, node_bias] = ops.parents;
        let grad: FloatTensor<B> = grads.consume::<B>(&ops.node);
        let (x, weight) = ops.state;
        if let Some(node) = node_x {
            let dx = B::conv2d_x_backward(x.clone(), weight.clone(), grad.clone(), options());
            grads.register::<B>(node.id, dx);
        }
        if let Some(node) = node_bias {
            grads.register::<B>(node.id, bias_grad::<B>(grad.clone()));
        }
        if let Some(node) = node_weight {
            let dims = weight.shape().dims::<4>();
            grads.register::<B>(node.id, weight_grad::<B>(x, grad, dims));
        }
    }
}

fn float<B: Backend, const D: usize>(t: FloatTensor<B>) -> Tensor<B, D> {
    Tensor::from_primitive(TensorPrimitive::Float(t))
}

/// `Σ_b g[b] · unfold(x[b])ᵀ`, reshaped to the weight's `[out, in, 3, 3]`.
pub fn weight_grad<B: Backend>(
    x: FloatTensor<B>,
    grad: FloatTensor<B>,
    [c_out, c_in, kh, kw]: [usize; 4],
) -> FloatTensor<B> {
    let [batch, _, ho, wo] = grad.shape().dims::<4>();
    let cols = B::unfold4d(x, [kh, kw], UnfoldOptions::new([1, 1], [0, 0], [1, 1]));
    let cols: Tensor<B, 3> = float(cols); // [batch, in·9, ho·wo]
    let g: Tensor<B, 3> = float::<B, 4>(grad).reshape([batch, c_out, ho * wo]);
    let per_image = g.matmul(cols.swap_dims(1, 2)); // [batch, out, in·9]
    per_image
        .sum_dim(0)
        .reshape([c_out, c_in, kh, kw])
        .into_primitive()
        .tensor()
}

/// `Σ_b Σ_hw g[b]` per output channel.
pub fn bias_grad<B: Backend>(grad: FloatTensor<B>) -> FloatTensor<B> {
    let [batch, c_out, ho, wo] = grad.shape().dims::<4>();
    let g: Tensor<B, 3> = float::<B, 4>(grad).reshape([batch, c_out, ho * wo]);
    g.sum_dim(2)
        .sum_dim(0)
        .reshape([c_out])
        .into_primitive()
        .tensor()
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use burn::tensor::module::conv2d;
    use burn::tensor::{Distribution, Tolerance};

    /// Output and all three gradients of the GEMM-gradient op equal those of
    /// Burn's autodiff `conv2d` on backend `B`, to 1e-4 relative.
    pub(crate) fn matches_burn_on<B: Backend>(
        device: &B::Device,
        shapes: &[(usize, usize, usize, usize)],
    ) {
        for &(batch, c_in, c_out, side) in shapes {
            let x = Tensor::<Autodiff<B>, 4>::random(
                [batch, c_in, side, side],
                Distribution::Normal(0.0, 1.0),
                device,
            );
            let w = Tensor::<Autodiff<B>, 4>::random(
                [c_out, c_in, 3, 3],
                Distribution::Normal(0.0, 0.3),
                device,
            );
            let b =
                Tensor::<Autodiff<B>, 1>::random([c_out], Distribution::Normal(0.0, 1.0), device);
            let mix = Tensor::<Autodiff<B>, 4>::random(
                [batch, c_out, side - 2, side - 2],
                Distribution::Normal(0.0, 1.0),
                device,
            );
            let run = |ours: bool| {
                let (x, w, b) = (
                    x.clone().require_grad(),
                    w.clone().require_grad(),
                    b.clone().require_grad(),
                );
                let y = if ours {
                    conv2d_3x3(x.clone(), w.clone(), b.clone())
                } else {
                    conv2d(x.clone(), w.clone(), Some(b.clone()), options())
                };
                let grads = (y.clone() * mix.clone()).sum().backward();
                (
                    y.inner(),
                    x.grad(&grads).unwrap(),
                    w.grad(&grads).unwrap(),
                    b.grad(&grads).unwrap(),
                )
            };
            let (y1, dx1, dw1, db1) = run(true);
            let (y2, dx2, dw2, db2) = run(false);
            let tol = Tolerance::<f32>::rel_abs(1e-4, 1e-4);
            y1.into_data().assert_approx_eq(&y2.into_data(), tol);
            dx1.into_data().assert_approx_eq(&dx2.into_data(), tol);
            dw1.into_data().assert_approx_eq(&dw2.into_data(), tol);
            db1.into_data().assert_approx_eq(&db2.into_data(), tol);
        }
    }

    #[test]
    fn matches_burn_on_flex() {
        matches_burn_on::<burn::backend::Flex>(
            &Default::default(),
            &[(3, 2, 5, 7), (8, 32, 16, 12), (1, 1, 4, 5)],
        );
    }

    /// The GPU path as CI runs it: wgpu on Mesa's lavapipe (tiny shapes:
    /// a software renderer compiles every kernel on the CPU).
    #[cfg(feature = "wgpu")]
    #[test]
    fn matches_burn_on_wgpu() {
        matches_burn_on::<burn::backend::Wgpu>(&Default::default(), &[(2, 2, 3, 6), (4, 8, 4, 8)]);
    }
}
