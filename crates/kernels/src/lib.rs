//! # mnist-kernels: faster CPU training for this network's layers
//!
//! Burn's CPU backend (`flex`) runs the forward convolution well, but its
//! default convolution *weight gradient* is a convolution with the batch and
//! channel axes swapped, whose "kernel" is the whole 24×24 output gradient:
//! on this network that one op was a fifth of every training step (see
//! BENCHMARKS.md, `examples/flex_ops.rs`). This crate owns the layer
//! functions the model calls ([`conv2d_3x3`], [`max_pool_2x2`],
//! [`dropout`]); on `Autodiff<Flex>` they run custom autodiff ops (the conv
//! weight gradient as one im2col + GEMM per image, a single-pass 2×2
//! max-pool, dropout masks drawn on all cores); on every other backend
//! (CUDA, wgpu, plain `Flex` for inference) they are exactly Burn's own ops.
//! [`tune_allocator`] keeps freed tensor buffers for reuse.
//!
//! The dispatch is by type at run time ([`std::any::Any`]), so the model
//! stays generic over `B: Backend` with no extra trait bounds.

mod conv;
mod dropout;
mod pool;

pub use dropout::seed;

use burn::backend::{Autodiff, Flex};
use burn::tensor::backend::Backend;
use burn::tensor::module::{conv2d, max_pool2d};
use burn::tensor::ops::ConvOptions;
use burn::tensor::{Tensor, TensorData};
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
    if is_cpu::<B>() {
        return from_cpu(conv::conv2d_3x3(
            to_cpu(x),
            to_cpu(weight),
            bias.map(to_cpu),
        ));
    }
    conv2d(x, weight, bias, ConvOptions::new([1, 1], [0, 0], [1, 1], 1))
}

/// 2×2 max-pooling, stride 2 (the network's two pools).
pub fn max_pool_2x2<B: Backend>(x: Tensor<B, 4>) -> Tensor<B, 4> {
    let [_, _, h, w] = x.dims();
    if is_cpu::<B>() && h % 2 == 0 && w % 2 == 0 {
        return from_cpu(pool::max_pool_2x2(to_cpu(x)));
    }
    max_pool2d(x, [2, 2], [2, 2], [0, 0], [1, 1], false)
}

/// Dropout with probability `prob` while training (an autodiff backend),
/// the identity otherwise, like `burn::nn::Dropout`.
pub fn dropout<B: Backend, const D: usize>(x: Tensor<B, D>, prob: f64) -> Tensor<B, D> {
    if !is_cpu::<B>() {
        return burn::nn::DropoutConfig::new(prob).init().forward(x);
    }
    if prob == 0.0 {
        return x;
    }
    let x = to_cpu(x);
    let mask = dropout::mask(x.shape().num_elements(), 1.0 - prob);
    let mask = Tensor::from_data(TensorData::new(mask, x.shape()), &x.device());
    from_cpu(x * mask)
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

fn is_cpu<B: Backend>() -> bool {
    TypeId::of::<B>() == TypeId::of::<CpuAutodiff>()
}

/// The same tensor typed as [`CpuAutodiff`]; only called when [`is_cpu`].
fn to_cpu<B: Backend, const D: usize>(t: Tensor<B, D>) -> Tensor<CpuAutodiff, D> {
    let boxed: Box<dyn Any> = Box::new(t);
    *boxed
        .downcast::<Tensor<CpuAutodiff, D>>()
        .expect("to_cpu is only called when B is CpuAutodiff")
}

/// The inverse of [`to_cpu`].
fn from_cpu<B: Backend, const D: usize>(t: Tensor<CpuAutodiff, D>) -> Tensor<B, D> {
    let boxed: Box<dyn Any> = Box::new(t);
    *boxed
        .downcast::<Tensor<B, D>>()
        .expect("from_cpu is only called when B is CpuAutodiff")
}
