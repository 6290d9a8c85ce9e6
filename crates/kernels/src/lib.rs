//! # mnist-kernels: the network's layers, fast on the CPU and the GPU
//!
//! Burn's CPU backend (`flex`) spent most of a training step of this network
//! in three places: the convolution weight gradient (a convolution with the
//! batch and channel axes swapped, whose "kernel" is the whole 24×24 output
//! gradient), max-pooling with indices, and dropout masks drawn on one
//! thread (see BENCHMARKS.md and `crates/train/examples/flex_ops.rs`).
//!
//! This crate owns the layer functions the model calls ([`conv2d_3x3_relu`],
//! [`max_pool_2x2_dropout`], and their parts [`conv2d_3x3`],
//! [`max_pool_2x2`], [`dropout`]). On `Autodiff<Flex>` (CPU training) they
//! run custom autodiff ops: every convolution pass as im2col + GEMM per
//! image with the ReLU fused into its output pass, a single-pass 2×2
//! max-pool with the dropout multiply fused in, dropout masks drawn on all
//! cores, and gemm's AVX-512 kernels where the CPU has them. On
//! plain `Flex` (CPU inference) the convolution and pool forwards are the
//! same kernels. On GPU training (`Autodiff` of CUDA or wgpu) the
//! convolution is Burn's forward and input gradient with the weight
//! gradient as a batched GEMM ([`gemm_grad`]); everything else there is
//! Burn's own ops. [`tune_allocator`] keeps freed tensor buffers for reuse.
//! Each custom op is tested against Burn's own on the same inputs.
//!
//! The dispatch is by type at run time ([`std::any::Any`]), so the model
//! stays generic over `B: Backend` with no extra trait bounds.

mod conv;
mod dropout;
pub mod gemm_grad;
mod pool;

pub use dropout::seed;

use burn::backend::flex::FlexTensor;
use burn::backend::{Autodiff, Flex};
use burn::tensor::backend::Backend;
use burn::tensor::module::{conv2d, max_pool2d};
use burn::tensor::ops::ConvOptions;
use burn::tensor::{Tensor, TensorData, TensorPrimitive};
use std::any::{Any, TypeId};

/// The CPU training backend the fast paths serve.
pub type CpuAutodiff = Autodiff<Flex>;

/// A 3×3 convolution, stride 1, no padding (what every conv of this network
/// is): `x` `[batch, in, h, w]`, `weight` `[out, in, 3, 3]`, `bias` `[out]`
/// → `[batch, out, h-2, w-2]`.
pub fn conv2d_3x3<B: Backend>(
    x: Tensor<B, 4>,
    weight: Tensor<B, 4>,
    bias: Option<Tensor<B, 1>>,
) -> Tensor<B, 4> {
    conv(x, weight, bias, false)
}

/// `relu(conv2d_3x3(x, weight, bias))`, fused into one pass on the CPU.
pub fn conv2d_3x3_relu<B: Backend>(
    x: Tensor<B, 4>,
    weight: Tensor<B, 4>,
    bias: Option<Tensor<B, 1>>,
) -> Tensor<B, 4> {
    conv(x, weight, bias, true)
}

fn conv<B: Backend>(
    x: Tensor<B, 4>,
    weight: Tensor<B, 4>,
    bias: Option<Tensor<B, 1>>,
    relu: bool,
) -> Tensor<B, 4> {
    if is::<B, CpuAutodiff>() {
        return retype(conv::conv2d_3x3(
            retype(x),
            retype(weight),
            bias.map(retype),
            relu,
        ));
    }
    if let (true, Some(bias)) = (is::<B, Flex>(), &bias) {
        // Inference (evaluation, `predict`, the review ranking).
        let [x, w, b] = [primitive(x), primitive(weight), primitive(bias.clone())];
        return retype(float(conv::forward(&x, &w, &b, relu)));
    }
    let y = gpu_conv(x, weight, bias);
    if relu {
        burn::tensor::activation::relu(y)
    } else {
        y
    }
}

/// On GPU training, the conv with its weight gradient as a batched GEMM
/// ([`gemm_grad`]); elsewhere Burn's own.
fn gpu_conv<B: Backend>(
    x: Tensor<B, 4>,
    weight: Tensor<B, 4>,
    bias: Option<Tensor<B, 1>>,
) -> Tensor<B, 4> {
    if let Some(bias) = &bias {
        #[cfg(feature = "wgpu")]
        if is::<B, Autodiff<burn::backend::Wgpu>>() {
            return retype(gemm_grad::conv2d_3x3::<burn::backend::Wgpu>(
                retype(x),
                retype(weight),
                retype(bias.clone()),
            ));
        }
        #[cfg(feature = "cuda")]
        if is::<B, Autodiff<burn::backend::Cuda>>() {
            return retype(gemm_grad::conv2d_3x3::<burn::backend::Cuda>(
                retype(x),
                retype(weight),
                retype(bias.clone()),
            ));
        }
        let _ = bias;
    }
    conv2d(x, weight, bias, ConvOptions::new([1, 1], [0, 0], [1, 1], 1))
}

/// 2×2 max-pooling, stride 2 (the network's two pools).
pub fn max_pool_2x2<B: Backend>(x: Tensor<B, 4>) -> Tensor<B, 4> {
    let [_, _, h, w] = x.dims();
    if h % 2 == 0 && w % 2 == 0 {
        if is::<B, CpuAutodiff>() {
            return retype(pool::max_pool_2x2(retype(x), 0.0));
        }
        if is::<B, Flex>() {
            return retype(float(pool::forward(&primitive(x)).0));
        }
    }
    max_pool2d(x, [2, 2], [2, 2], [0, 0], [1, 1], false)
}

/// `dropout(max_pool_2x2(x), prob)`, fused into the pooling pass when
/// training on the CPU.
pub fn max_pool_2x2_dropout<B: Backend>(x: Tensor<B, 4>, prob: f64) -> Tensor<B, 4> {
    let [_, _, h, w] = x.dims();
    if is::<B, CpuAutodiff>() && h % 2 == 0 && w % 2 == 0 {
        return retype(pool::max_pool_2x2(retype(x), prob));
    }
    dropout(max_pool_2x2(x), prob)
}

/// Dropout with probability `prob` while training (an autodiff backend),
/// the identity otherwise, like `burn::nn::Dropout`.
pub fn dropout<B: Backend, const D: usize>(x: Tensor<B, D>, prob: f64) -> Tensor<B, D> {
    if !is::<B, CpuAutodiff>() {
        return burn::nn::DropoutConfig::new(prob).init().forward(x);
    }
    if prob == 0.0 {
        return x;
    }
    let x: Tensor<CpuAutodiff, D> = retype(x);
    let mask = dropout::mask(x.shape().num_elements(), 1.0 - prob);
    let mask = Tensor::from_data(TensorData::new(mask, x.shape()), &x.device());
    retype(x * mask)
}

/// On glibc, keeps freed buffers of up to 32 MiB in the heap instead of
/// returning them to the kernel: a training step frees and reallocates the
/// same multi-MiB activations every batch, and fresh pages cost a fault
/// each (measured: ReLU on a batch-64 activation 8.6 → 1.8 ms).
pub fn tune_allocator() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes allocator thresholds; called before the
    // heavy allocations start, and any value is valid for these parameters.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 32 << 20);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 512 << 20);
    }
}

fn is<B: Backend, Target: Backend>() -> bool {
    TypeId::of::<B>() == TypeId::of::<Target>()
}

/// The same tensor under the backend type it really has; only called after
/// [`is`] said `From` and `To` are one type.
fn retype<From: Backend, To: Backend, const D: usize>(t: Tensor<From, D>) -> Tensor<To, D> {
    let boxed: Box<dyn Any> = Box::new(t);
    *boxed
        .downcast::<Tensor<To, D>>()
        .expect("retype is only called between identical backend types")
}

/// A plain `Flex` tensor's storage.
fn primitive<B: Backend, const D: usize>(t: Tensor<B, D>) -> FlexTensor {
    retype::<B, Flex, D>(t).into_primitive().tensor()
}

fn float<const D: usize>(t: FlexTensor) -> Tensor<Flex, D> {
    Tensor::from_primitive(TensorPrimitive::Float(t))
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::{Distribution, Tolerance};

    /// Through the public functions, training (`Autodiff<Flex>`) and
    /// inference (`Flex`) give what Burn's own ops give.
    fn same_as_burn<B: Backend>() {
        let device = Default::default();
        let x = Tensor::<B, 4>::random([4, 3, 10, 10], Distribution::Normal(0.0, 1.0), &device);
        let w = Tensor::<B, 4>::random([5, 3, 3, 3], Distribution::Normal(0.0, 0.3), &device);
        let b = Tensor::<B, 1>::random([5], Distribution::Normal(0.0, 1.0), &device);
        let ours = max_pool_2x2(conv2d_3x3(x.clone(), w.clone(), Some(b.clone())));
        let burns = max_pool2d(
            conv2d(x, w, Some(b), ConvOptions::new([1, 1], [0, 0], [1, 1], 1)),
            [2, 2],
            [2, 2],
            [0, 0],
            [1, 1],
            false,
        );
        assert_eq!(ours.dims(), [4, 5, 4, 4]);
        ours.into_data()
            .assert_approx_eq(&burns.into_data(), Tolerance::<f32>::rel_abs(1e-4, 1e-4));
    }

    #[test]
    fn training_and_inference_paths_match_burn() {
        same_as_burn::<CpuAutodiff>();
        same_as_burn::<Flex>();
    }

    #[test]
    fn dropout_is_the_identity_in_inference_and_masks_in_training() {
        let _global_rng = crate::dropout::TEST_LOCK.lock();
        let device = Default::default();
        let x = Tensor::<Flex, 2>::ones([100, 100], &device);
        assert_eq!(dropout(x.clone(), 0.5).into_data(), x.into_data());
        let x = Tensor::<CpuAutodiff, 2>::ones([100, 100], &device);
        let y: Vec<f32> = dropout(x, 0.5).into_data().to_vec().unwrap();
        let zeros = y.iter().filter(|&&v| v == 0.0).count();
        assert!((4000..6000).contains(&zeros), "{zeros} of 10000 dropped");
        assert!(y.iter().all(|&v| v == 0.0 || v == 2.0));
    }
}
