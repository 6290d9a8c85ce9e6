//! 2×2 max-pooling, stride 2, as a custom autodiff op on `Autodiff<Flex>`:
//! one pass over the input that keeps, per output, which of its four
//! inputs won (a byte), and a backward that routes each gradient there.
//! Flex's general pooling with indices took about 11 ms forward for one
//! batch-64 layer of this network, this takes well under 2.

use crate::CpuAutodiff;
use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::NoCheckpointing;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::flex::FlexTensor;
use burn::backend::Flex;
use burn::tensor::{Tensor, TensorData, TensorPrimitive};
use rayon::prelude::*;
use std::sync::Arc;

/// `x` `[b, c, h, w]` with `h`, `w` even → `[b, c, h/2, w/2]`, and with
/// `dropout` (a probability > 0) the pooled values times a dropout mask, in
/// the same pass: dropout's own multiply, forward and backward, is gone.
pub(crate) fn max_pool_2x2(x: Tensor<CpuAutodiff, 4>, dropout: f64) -> Tensor<CpuAutodiff, 4> {
    let x = x.into_primitive().tensor();
    let [b, c, h, w] = x.primitive.layout().shape().dims::<4>();
    let mask =
        (dropout > 0.0).then(|| crate::dropout::mask(b * c * (h / 2) * (w / 2), 1.0 - dropout));
    let (out, winners) = forward_masked(&x.primitive, mask.as_deref());
    let out = match MaxPool2x2
        .prepare::<NoCheckpointing>([x.node.clone()])
        .compute_bound()
        .stateful()
    {
        OpsKind::Tracked(prep) => {
            prep.finish((Arc::new(winners), mask.map(Arc::new), [b, c, h, w]), out)
        }
        OpsKind::UnTracked(prep) => prep.finish(out),
    };
    Tensor::from_primitive(TensorPrimitive::Float(out))
}

/// The pooled values and, per output, the winner's offset in its window
/// (`dy·2 + dx`).
pub(crate) fn forward(x: &FlexTensor) -> (FlexTensor, Vec<u8>) {
    forward_masked(x, None)
}

/// [`forward`], each output multiplied by its entry of `mask` when given.
fn forward_masked(x: &FlexTensor, mask: Option<&[f32]>) -> (FlexTensor, Vec<u8>) {
    let [b, c, h, w] = x.layout().shape().dims::<4>();
    let x = x.to_contiguous();
    let x = x.as_slice::<f32>().expect("contiguous f32");
    let (ho, wo) = (h / 2, w / 2);
    let mut out = vec![0f32; b * c * ho * wo];
    let mut winners = vec![0u8; out.len()];
    out.par_chunks_mut(ho * wo)
        .zip(winners.par_chunks_mut(ho * wo))
        .enumerate()
        .for_each(|(plane, (out, win))| {
            let src = &x[plane * h * w..][..h * w];
            for y in 0..ho {
                let top = &src[2 * y * w..][..w];
                let bottom = &src[(2 * y + 1) * w..][..w];
                let (out, win) = (&mut out[y * wo..][..wo], &mut win[y * wo..][..wo]);
                for x in 0..wo {
                    // Branch-free selects; the first maximum in reading
                    // order wins, like Burn's (NaN never wins a comparison).
                    let (a, b) = (top[2 * x], top[2 * x + 1]);
                    let (c, d) = (bottom[2 * x], bottom[2 * x + 1]);
                    let (m1, i1) = if b > a { (b, 1) } else { (a, 0) };
                    let (m2, i2) = if d > c { (d, 3) } else { (c, 2) };
                    let (m, i) = if m2 > m1 { (m2, i2) } else { (m1, i1) };
                    out[x] = m;
                    win[x] = i;
                }
            }
            if let Some(mask) = mask {
                let mask = &mask[plane * ho * wo..][..ho * wo];
                out.iter_mut().zip(mask).for_each(|(o, m)| *o *= m);
            }
        });
    (
        FlexTensor::from_data(TensorData::new(out, [b, c, ho, wo])),
        winners,
    )
}

#[derive(Debug)]
struct MaxPool2x2;

impl Backward<Flex, 1> for MaxPool2x2 {
    /// Winners, the dropout mask (if fused) and the input's shape.
    type State = (Arc<Vec<u8>>, Option<Arc<Vec<f32>>>, [usize; 4]);

    fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, _: &mut Checkpointer) {
        let [Some(node)] = ops.parents else { return };
        let grad = grads.consume::<Flex>(&ops.node).to_contiguous();
        let grad = grad.as_slice::<f32>().expect("contiguous f32");
        let (winners, mask, [b, c, h, w]) = ops.state;
        let (ho, wo) = (h / 2, w / 2);
        let mut dx = vec![0f32; b * c * h * w];
        dx.par_chunks_mut(h * w)
            .enumerate()
            .for_each(|(plane, dx)| {
                let g = &grad[plane * ho * wo..][..ho * wo];
                let win = &winners[plane * ho * wo..][..ho * wo];
                let mask = mask.as_ref().map(|m| &m[plane * ho * wo..][..ho * wo]);
                for y in 0..ho {
                    for x in 0..wo {
                        let i = y * wo + x;
                        let (dy, dxx) = ((win[i] / 2) as usize, (win[i] % 2) as usize);
                        let g = mask.map_or(g[i], |m| g[i] * m[i]);
                        dx[(2 * y + dy) * w + 2 * x + dxx] = g;
                    }
                }
            });
        grads.register::<Flex>(
            node.id,
            FlexTensor::from_data(TensorData::new(dx, [b, c, h, w])),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::module::max_pool2d;
    use burn::tensor::{Distribution, Tolerance};

    /// Output and input gradient equal Burn's own max_pool2d's.
    #[test]
    fn matches_burn_max_pool() {
        let device = Default::default();
        for shape in [[2, 3, 4, 6], [4, 8, 24, 24], [1, 1, 2, 2]] {
            let x =
                Tensor::<CpuAutodiff, 4>::random(shape, Distribution::Normal(0.0, 1.0), &device);
            let [b, c, h, w] = shape;
            let mix = Tensor::<CpuAutodiff, 4>::random(
                [b, c, h / 2, w / 2],
                Distribution::Normal(0.0, 1.0),
                &device,
            );
            let run = |fast: bool| {
                let x = x.clone().require_grad();
                let y = if fast {
                    max_pool_2x2(x.clone(), 0.0)
                } else {
                    max_pool2d(x.clone(), [2, 2], [2, 2], [0, 0], [1, 1], false)
                };
                let grads = (y.clone() * mix.clone()).sum().backward();
                (y.inner(), x.grad(&grads).unwrap())
            };
            let (y1, dx1) = run(true);
            let (y2, dx2) = run(false);
            let tol = Tolerance::<f32>::rel_abs(1e-6, 1e-6);
            y1.into_data().assert_approx_eq(&y2.into_data(), tol);
            dx1.into_data().assert_approx_eq(&dx2.into_data(), tol);
        }
    }

    /// Pool and dropout fused equal pooling then multiplying by the same
    /// mask, forward and backward.
    #[test]
    fn fused_dropout_is_pool_times_the_mask() {
        let _global_rng = crate::dropout::TEST_LOCK.lock();
        let device = Default::default();
        let shape = [4, 8, 12, 12];
        let x = Tensor::<CpuAutodiff, 4>::random(shape, Distribution::Normal(0.0, 1.0), &device);
        let out_shape = [4, 8, 6, 6];
        let mix =
            Tensor::<CpuAutodiff, 4>::random(out_shape, Distribution::Normal(0.0, 1.0), &device);
        crate::dropout::seed(11);
        let xa = x.clone().require_grad();
        let y = max_pool_2x2(xa.clone(), 0.25);
        let dx_fused = xa
            .grad(&(y.clone() * mix.clone()).sum().backward())
            .unwrap();
        crate::dropout::seed(11);
        let mask = crate::dropout::mask(4 * 8 * 36, 0.75);
        let mask = Tensor::<CpuAutodiff, 4>::from_data(TensorData::new(mask, out_shape), &device);
        let xb = x.clone().require_grad();
        let expected = max_pool2d(xb.clone(), [2, 2], [2, 2], [0, 0], [1, 1], false) * mask;
        let dx = xb.grad(&(expected.clone() * mix).sum().backward()).unwrap();
        let tol = Tolerance::<f32>::rel_abs(1e-6, 1e-6);
        y.inner()
            .into_data()
            .assert_approx_eq(&expected.inner().into_data(), tol);
        dx_fused.into_data().assert_approx_eq(&dx.into_data(), tol);
    }
}
