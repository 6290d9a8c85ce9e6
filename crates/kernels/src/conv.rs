//! The 3×3 valid convolution as a custom autodiff op on `Autodiff<Flex>`,
//! all three passes as im2col + GEMM per image: the image's columns
//! (`[in·9, h·w]`, small enough to stay in cache) are built once per pass
//! and multiplied with `gemm` on one thread, images split over rayon's
//! threads. [`forward`] (also used for inference on plain `Flex`),
//! [`input_grad`] (GEMM then col2im) and [`weight_grad`] (weight and bias
//! gradients summed per thread, then across threads).

use crate::CpuAutodiff;
use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::NoCheckpointing;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::flex::FlexTensor;
use burn::backend::Flex;
use burn::tensor::module::conv2d;
use burn::tensor::ops::{ConvOptions, FloatTensor};
use burn::tensor::{Tensor, TensorData, TensorPrimitive};
use rayon::prelude::*;

fn options() -> ConvOptions<2> {
    ConvOptions::new([1, 1], [0, 0], [1, 1], 1)
}

/// The 3×3 conv (`relu: false`) or conv + ReLU fused into its output pass
/// (`relu: true`: the ReLU's own forward and backward passes over the
/// activation are gone; the backward masks the gradient by the saved
/// output once, then runs the conv's).
pub(crate) fn conv2d_3x3(
    x: Tensor<CpuAutodiff, 4>,
    weight: Tensor<CpuAutodiff, 4>,
    bias: Option<Tensor<CpuAutodiff, 1>>,
    relu: bool,
) -> Tensor<CpuAutodiff, 4> {
    let Some(bias) = bias else {
        let y = conv2d(x, weight, None, options());
        return if relu {
            burn::tensor::activation::relu(y)
        } else {
            y
        };
    };
    let x = x.into_primitive().tensor();
    let weight = weight.into_primitive().tensor();
    let bias = bias.into_primitive().tensor();
    let y = forward(&x.primitive, &weight.primitive, &bias.primitive, relu);
    let out = match Conv3x3
        .prepare::<NoCheckpointing>([x.node.clone(), weight.node.clone(), bias.node.clone()])
        .compute_bound()
        .stateful()
    {
        OpsKind::Tracked(prep) => {
            let state = (
                x.primitive.clone(),
                weight.primitive.clone(),
                relu.then(|| y.clone()),
            );
            prep.finish(state, y)
        }
        OpsKind::UnTracked(prep) => prep.finish(y),
    };
    Tensor::from_primitive(TensorPrimitive::Float(out))
}

#[derive(Debug)]
struct Conv3x3;

impl Backward<Flex, 3> for Conv3x3 {
    /// The input and the weight, as the forward saw them, and with a fused
    /// ReLU the output (whose zeros mask the gradient).
    type State = (FlexTensor, FlexTensor, Option<FlexTensor>);

    fn backward(self, ops: Ops<Self::State, 3>, grads: &mut Gradients, _: &mut Checkpointer) {
        let [node_x, node_weight, node_bias] = ops.parents;
        let grad: FloatTensor<Flex> = grads.consume::<Flex>(&ops.node);
        let (x, weight, relu_out) = ops.state;
        let grad = match relu_out {
            Some(y) => relu_mask(&grad, &y),
            None => grad,
        };
        if let Some(node) = node_x {
            grads.register::<Flex>(node.id, input_grad(&weight, &grad, dims4(&x)));
        }
        if node_weight.is_some() || node_bias.is_some() {
            let (dw, db) = weight_grad(&x, &grad);
            if let Some(node) = node_weight {
                grads.register::<Flex>(node.id, dw);
            }
            if let Some(node) = node_bias {
                grads.register::<Flex>(node.id, db);
            }
        }
    }
}

/// The gradient, zeroed where the ReLU's output is not positive (Burn's
/// ReLU backward applies the same `y <= 0` test).
fn relu_mask(grad: &FlexTensor, y: &FlexTensor) -> FlexTensor {
    let shape = dims4(y);
    let (grad, y) = (grad.to_contiguous(), y.to_contiguous());
    let g = grad.as_slice::<f32>().expect("contiguous f32 gradient");
    let y = y.as_slice::<f32>().expect("contiguous f32 output");
    let mut out = vec![0f32; g.len()];
    out.par_chunks_mut(1 << 14)
        .zip(g.par_chunks(1 << 14).zip(y.par_chunks(1 << 14)))
        .for_each(|(out, (g, y))| {
            for ((o, &g), &y) in out.iter_mut().zip(g).zip(y) {
                *o = if y <= 0.0 { 0.0 } else { g };
            }
        });
    FlexTensor::from_data(TensorData::new(out, shape))
}

/// `y[b] = W · im2col(x[b]) + bias` (then `max(0, ·)` with `relu`, while
/// the image's output is still in cache): per image one GEMM of the weight
/// `[out, in·9]` by the image's columns `[in·9, h·w]`, which lands directly
/// in the NCHW output; images split over the cores.
pub(crate) fn forward(
    x: &FlexTensor,
    weight: &FlexTensor,
    bias: &FlexTensor,
    relu: bool,
) -> FlexTensor {
    let [batch, c_in, h, w] = dims4(x);
    let c_out = dims4(weight)[0];
    let (ho, wo) = (h - 2, w - 2);
    let (k, p) = (c_in * 9, ho * wo);
    let (x, weight, bias) = (
        x.to_contiguous(),
        weight.to_contiguous(),
        bias.to_contiguous(),
    );
    let x = x.as_slice::<f32>().expect("contiguous f32 input");
    let wt = weight.as_slice::<f32>().expect("contiguous f32 weight");
    let bias = bias.as_slice::<f32>().expect("contiguous f32 bias");
    let mut out = vec![0f32; batch * c_out * p];
    out.par_chunks_mut(c_out * p).enumerate().for_each_init(
        || vec![0f32; k * p],
        |col, (b, y)| {
            im2col(&x[b * c_in * h * w..][..c_in * h * w], c_in, h, w, col);
            for (o, row) in y.chunks_exact_mut(p).enumerate() {
                row.fill(bias[o]);
            }
            matmul(y, View::rows(wt, c_out, k), View::rows(col, k, p), true);
            if relu {
                // Burn's ReLU zeroes `v <= 0` and keeps a NaN; so does this.
                y.iter_mut()
                    .for_each(|v| *v = if *v < 0.0 { 0.0 } else { *v });
            }
        },
    );
    FlexTensor::from_data(TensorData::new(out, [batch, c_out, ho, wo]))
}

/// `dx[b] = col2im(Wᵀ · grad[b])`: per image one GEMM of the transposed
/// weight `[in·9, out]` by the output gradient `[out, h·w]`, then each
/// column entry added back to the input pixel it was read from.
pub(crate) fn input_grad(
    weight: &FlexTensor,
    grad: &FlexTensor,
    [batch, c_in, h, w]: [usize; 4],
) -> FlexTensor {
    let c_out = dims4(weight)[0];
    let (ho, wo) = (h - 2, w - 2);
    let (k, p) = (c_in * 9, ho * wo);
    let (weight, grad) = (weight.to_contiguous(), grad.to_contiguous());
    let wt = weight.as_slice::<f32>().expect("contiguous f32 weight");
    let g = grad.as_slice::<f32>().expect("contiguous f32 gradient");
    let mut dx = vec![0f32; batch * c_in * h * w];
    dx.par_chunks_mut(c_in * h * w).enumerate().for_each_init(
        || vec![0f32; k * p],
        |col, (b, dx)| {
            let gb = &g[b * c_out * p..][..c_out * p];
            matmul(
                col,
                View::transposed(wt, c_out, k),
                View::rows(gb, c_out, p),
                false,
            );
            col2im(col, c_in, h, w, dx);
        },
    );
    FlexTensor::from_data(TensorData::new(dx, [batch, c_in, h, w]))
}

/// Weight `[out, in, 3, 3]` and bias `[out]` gradients of a 3×3 valid
/// convolution with input `x` `[b, in, h, w]` and output gradient `grad`
/// `[b, out, h-2, w-2]`.
pub(crate) fn weight_grad(x: &FlexTensor, grad: &FlexTensor) -> (FlexTensor, FlexTensor) {
    let [batch, c_in, h, w] = dims4(x);
    let [_, c_out, ho, wo] = dims4(grad);
    let x = x.to_contiguous();
    let grad = grad.to_contiguous();
    let x = x.as_slice::<f32>().expect("contiguous f32 input");
    let g = grad.as_slice::<f32>().expect("contiguous f32 gradient");
    let (k, p) = (c_in * 9, ho * wo);

    // Each thread sums its share of the images into its own [out, in·9]
    // buffer (plus the bias gradient); the shares are added at the end.
    let threads = rayon::current_num_threads().max(1);
    let per = batch.div_ceil(threads).max(1);
    let partials: Vec<(Vec<f32>, Vec<f32>)> = (0..batch)
        .step_by(per)
        .collect::<Vec<_>>()
        .into_par_iter()
        .map(|first| {
            let mut dw = vec![0f32; c_out * k];
            let mut db = vec![0f32; c_out];
            let mut col = vec![0f32; k * p];
            for b in first..(first + per).min(batch) {
                im2col(
                    &x[b * c_in * h * w..(b + 1) * c_in * h * w],
                    c_in,
                    h,
                    w,
                    &mut col,
                );
                let gb = &g[b * c_out * p..(b + 1) * c_out * p];
                // dw[o, r] += sum_p g[o, p] * col[r, p]
                matmul(
                    &mut dw,
                    View::rows(gb, c_out, p),
                    View::transposed(&col, k, p),
                    true,
                );
                for (o, row) in gb.chunks_exact(p).enumerate() {
                    db[o] += row.iter().sum::<f32>();
                }
            }
            (dw, db)
        })
        .collect();
    let mut parts = partials.into_iter();
    let (mut dw, mut db) = parts
        .next()
        .unwrap_or_else(|| (vec![0.0; c_out * k], vec![0.0; c_out]));
    for (pw, pb) in parts {
        dw.iter_mut().zip(pw).for_each(|(a, b)| *a += b);
        db.iter_mut().zip(pb).for_each(|(a, b)| *a += b);
    }
    (
        FlexTensor::from_data(TensorData::new(dw, [c_out, c_in, 3, 3])),
        FlexTensor::from_data(TensorData::new(db, [c_out])),
    )
}

/// A matrix in a slice: row-major `rows × cols`, or the transpose of a
/// row-major `cols × rows` one (read in place, not copied).
#[derive(Clone, Copy)]
struct View<'a> {
    data: &'a [f32],
    rows: usize,
    cols: usize,
    /// Stride between columns and between rows.
    strides: (isize, isize),
}

impl<'a> View<'a> {
    fn rows(data: &'a [f32], rows: usize, cols: usize) -> Self {
        Self::new(data, rows, cols, (1, cols as isize))
    }

    /// The `cols × rows` transpose of the row-major `rows × cols` `data`.
    fn transposed(data: &'a [f32], rows: usize, cols: usize) -> Self {
        Self::new(data, cols, rows, (cols as isize, 1))
    }

    fn new(data: &'a [f32], rows: usize, cols: usize, strides: (isize, isize)) -> Self {
        assert!(data.len() >= rows * cols, "matrix view past its slice");
        Self {
            data,
            rows,
            cols,
            strides,
        }
    }
}

/// `dst = lhs · rhs` (or `dst += lhs · rhs` when `accumulate`), `dst`
/// row-major, on the calling thread: the callers parallelise over images.
fn matmul(dst: &mut [f32], lhs: View, rhs: View, accumulate: bool) {
    assert_eq!(lhs.cols, rhs.rows, "inner dimensions");
    assert_eq!(dst.len(), lhs.rows * rhs.cols, "destination size");
    // SAFETY: the views' constructors and the asserts above keep every
    // element gemm reads or writes inside its slice.
    unsafe {
        gemm::gemm(
            lhs.rows,
            rhs.cols,
            lhs.cols,
            dst.as_mut_ptr(),
            1,
            rhs.cols as isize,
            accumulate,
            lhs.data.as_ptr(),
            lhs.strides.0,
            lhs.strides.1,
            rhs.data.as_ptr(),
            rhs.strides.0,
            rhs.strides.1,
            1.0,
            1.0,
            false,
            false,
            false,
            gemm::Parallelism::None,
        );
    }
}

/// `col[(i·9 + kh·3 + kw), (y·wo + x)] = img[i, y + kh, x + kw]` for one
/// image `[c_in, h, w]`.
fn im2col(img: &[f32], c_in: usize, h: usize, w: usize, col: &mut [f32]) {
    let (ho, wo) = (h - 2, w - 2);
    let p = ho * wo;
    for i in 0..c_in {
        let plane = &img[i * h * w..(i + 1) * h * w];
        for kh in 0..3 {
            for kw in 0..3 {
                let row = &mut col[(i * 9 + kh * 3 + kw) * p..][..p];
                for y in 0..ho {
                    row[y * wo..(y + 1) * wo].copy_from_slice(&plane[(y + kh) * w + kw..][..wo]);
                }
            }
        }
    }
}

/// The adjoint of [`im2col`]: adds each column entry to its pixel.
fn col2im(col: &[f32], c_in: usize, h: usize, w: usize, img: &mut [f32]) {
    let (ho, wo) = (h - 2, w - 2);
    let p = ho * wo;
    for i in 0..c_in {
        let plane = &mut img[i * h * w..(i + 1) * h * w];
        for kh in 0..3 {
            for kw in 0..3 {
                let row = &col[(i * 9 + kh * 3 + kw) * p..][..p];
                for y in 0..ho {
                    let dst = &mut plane[(y + kh) * w + kw..][..wo];
                    for (d, s) in dst.iter_mut().zip(&row[y * wo..(y + 1) * wo]) {
                        *d += s;
                    }
                }
            }
        }
    }
}

fn dims4(t: &FlexTensor) -> [usize; 4] {
    let dims = t.layout().shape().dims::<4>();
    [dims[0], dims[1], dims[2], dims[3]]
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::{Distribution, Tolerance};

    /// The fast op's output and its three gradients equal Burn's own conv's
    /// (followed by Burn's ReLU for the fused op).
    #[test]
    fn matches_burn_conv_forward_and_backward() {
        let device = Default::default();
        for (batch, c_in, c_out, side, fused_relu) in [
            (3, 2, 5, 7, false),
            (8, 32, 16, 12, false),
            (1, 1, 4, 5, false),
            (3, 2, 5, 7, true),
            (8, 32, 16, 12, true),
        ] {
            let x = Tensor::<CpuAutodiff, 4>::random(
                [batch, c_in, side, side],
                Distribution::Normal(0.0, 1.0),
                &device,
            );
            let w = Tensor::<CpuAutodiff, 4>::random(
                [c_out, c_in, 3, 3],
                Distribution::Normal(0.0, 0.3),
                &device,
            );
            let b =
                Tensor::<CpuAutodiff, 1>::random([c_out], Distribution::Normal(0.0, 1.0), &device);
            // A loss whose gradient differs per output element.
            let mix = Tensor::<CpuAutodiff, 4>::random(
                [batch, c_out, side - 2, side - 2],
                Distribution::Normal(0.0, 1.0),
                &device,
            );
            let run = |fast: Option<bool>| {
                let (x, w, b) = (
                    x.clone().require_grad(),
                    w.clone().require_grad(),
                    b.clone().require_grad(),
                );
                let y = match fast {
                    Some(relu) => conv2d_3x3(x.clone(), w.clone(), Some(b.clone()), relu),
                    None => conv2d(x.clone(), w.clone(), Some(b.clone()), options()),
                };
                let y = if fused_relu && fast.is_none() {
                    burn::tensor::activation::relu(y)
                } else {
                    y
                };
                let grads = (y.clone() * mix.clone()).sum().backward();
                (
                    y.inner(),
                    x.grad(&grads).unwrap(),
                    w.grad(&grads).unwrap(),
                    b.grad(&grads).unwrap(),
                )
            };
            let (y1, dx1, dw1, db1) = run(Some(fused_relu));
            let (y2, dx2, dw2, db2) = run(None);
            let tol = Tolerance::<f32>::rel_abs(1e-4, 1e-4);
            y1.into_data().assert_approx_eq(&y2.into_data(), tol);
            dx1.into_data().assert_approx_eq(&dx2.into_data(), tol);
            dw1.into_data().assert_approx_eq(&dw2.into_data(), tol);
            db1.into_data().assert_approx_eq(&db2.into_data(), tol);
        }
    }
}
