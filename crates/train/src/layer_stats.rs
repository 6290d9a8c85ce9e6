//! Per-layer statistics, computed on the device where the run trains and
//! read back with the batch metrics the trainer already transfers (no
//! extra synchronisation per step): each layer's gradient, weight and
//! update norms, and each ReLU output's mean, standard deviation and dead
//! units ([`sample`], [`decode`]); and, once an epoch, histograms of each
//! layer's weights, gradients and activations with bins fixed per layer
//! ([`Bins`]).

use burn::optim::GradientsParams;
use burn::prelude::Backend;
use burn::tensor::Tensor;
use mnist_events::{ActivationStats, Histogram, LayerHistograms, LayerSample, LAYERS};
use mnist_model::{Cnn, Traced};
use serde::{Deserialize, Serialize};

/// Values per sample row: 4 sums per layer, 3 per ReLU output.
pub const WIDTH: usize = 4 * 6 + 3 * 5;
/// Bins of each histogram.
pub const BINS: usize = 40;
/// Images of the batch whose activations a histogram counts.
const HISTOGRAM_IMAGES: usize = 8;

/// Whether step `step` (from 1) is sampled at interval `every` (0: never):
/// steps 1, 2, 4, 8, … below `every`, then every `every`-th.
pub fn due(step: u64, every: u64) -> bool {
    every > 0 && (step.is_multiple_of(every) || (step < every && step.is_power_of_two()))
}

/// Every layer's parameters (weight then bias, flattened, in layer
/// order) as one rank-1 tensor: one op and one buffer, so that the
/// sample's sums over all layers are a few large ops, not dozens of small
/// ones (on a GPU each op costs a launch whatever its size).
pub fn params<B: Backend>(model: &Cnn<B>) -> Tensor<B, 1> {
    let parts = model
        .weights()
        .into_iter()
        .flat_map(|(_, w, b)| [w, b])
        .collect();
    Tensor::cat(parts, 0)
}

/// Each layer's parameter count, in [`params`]' order.
pub fn lengths<B: Backend>(model: &Cnn<B>) -> [usize; 6] {
    model.weights().map(|(_, w, b)| w.dims()[0] + b.dims()[0])
}

/// A step's gradients laid out as [`params`] (zeros for a parameter that
/// got none), taken before the optimiser consumes them.
pub fn grads<B: Backend>(model: &Cnn<B>, grads: &GradientsParams) -> Tensor<B, 1> {
    let weights = model.weights();
    let zeros = |t: &Tensor<B, 1>| Tensor::zeros(t.dims(), &t.device());
    let mut parts = Vec::with_capacity(12);
    for (layer, (w, b)) in model.param_ids().into_iter().enumerate() {
        let (_, weight, bias) = &weights[layer];
        let grad = match layer {
            0..=3 => grads.get::<B, 4>(w).map(|g| g.flatten(0, 3)),
            _ => grads.get::<B, 2>(w).map(|g| g.flatten(0, 1)),
        };
        parts.push(grad.unwrap_or_else(|| zeros(weight)));
        parts.push(grads.get::<B, 1>(b).unwrap_or_else(|| zeros(bias)));
    }
    Tensor::cat(parts, 0)
}

/// A ReLU output's mean, mean square and dead-unit share (a unit is dead
/// when it is zero for every image of the batch).
fn activation_sums<B: Backend, const D: usize>(a: Tensor<B, D>) -> [Tensor<B, 1>; 3] {
    let dead = a.clone().max_dim(0).equal_elem(0.0).float().mean();
    let flat: Tensor<B, 1> = a.flatten(0, D - 1);
    [flat.clone().mean(), (flat.clone() * flat).mean(), dead]
}

/// The sample of one step, left on the device as parts whose
/// concatenation is the row [`decode`] reads (read back together with the
/// step's metrics, in one transfer): the squared norms of every layer's
/// gradient, weights before and after the step and the step itself, and
/// each ReLU output's mean, mean square and dead share.
///
/// `before`, `after` and `grads` are laid out as [`params`], `lengths` as
/// [`lengths`]. The four quantities are stacked into one `[4, N]` tensor
/// and squared once; each layer's sums are then one reduction of its
/// columns.
pub fn sample<B: Backend>(
    before: Tensor<B, 1>,
    after: Tensor<B, 1>,
    grads: Tensor<B, 1>,
    lengths: [usize; 6],
    acts: &Traced<B>,
) -> Vec<Tensor<B, 1>> {
    let step = after.clone() - before.clone();
    let stacked = Tensor::stack::<2>(vec![grads, before, after, step], 0);
    let squares = stacked.clone() * stacked;
    let mut at = 0;
    let per_layer: Vec<Tensor<B, 2>> = lengths
        .iter()
        .map(|&n| {
            let sums = squares.clone().narrow(1, at, n).sum_dim(1);
            at += n;
            sums
        })
        .collect();
    // [4, 6]: quantity-major, as `decode` reads it.
    let mut parts = vec![Tensor::cat(per_layer, 1).flatten(0, 1)];
    for conv in &acts.convs {
        parts.extend(activation_sums(conv.clone()));
    }
    parts.extend(activation_sums(acts.fc1.clone()));
    parts
}

/// A sample row read back, as one [`LayerSample`] per layer.
pub fn decode(row: &[f32]) -> Vec<LayerSample> {
    let (layers, acts) = row.split_at(24);
    LAYERS
        .iter()
        .enumerate()
        .map(|(i, name)| {
            // Quantity-major: grads, weights before, after, the step.
            let [grad, before, after, step] =
                [0, 1, 2, 3].map(|q| (layers[q * 6 + i] as f64).sqrt());
            let activations = acts.get(i * 3..i * 3 + 3).map(|a| {
                let (mean, square) = (a[0] as f64, a[1] as f64);
                ActivationStats {
                    mean,
                    std: (square - mean * mean).max(0.0).sqrt(),
                    dead: a[2] as f64,
                }
            });
            LayerSample {
                name: name.to_string(),
                grad_norm: grad,
                weight_norm: after,
                update_ratio: step / before,
                activations,
            }
        })
        .collect()
}

/// Each layer's histogram ranges, fixed the first time they are needed
/// (per run; kept in checkpoints), so one layer's histograms compare.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Bins {
    /// By layer, the `(lo, hi)` of its weights, gradients and activations.
    pub ranges: Vec<[(f64, f64); 3]>,
}

impl Bins {
    /// Histograms of every layer, from the values read back by
    /// [`histogram_values`]: `(weights, grads, activations)` per layer.
    pub fn histograms(
        &mut self,
        values: &[(Vec<f32>, Vec<f32>, Vec<f32>)],
    ) -> Vec<LayerHistograms> {
        if self.ranges.len() != values.len() {
            self.ranges = values
                .iter()
                .map(|(w, g, a)| [symmetric(w), symmetric(g), (0.0, upper(a))])
                .collect();
        }
        values
            .iter()
            .zip(&self.ranges)
            .zip(LAYERS)
            .map(|(((w, g, a), r), name)| LayerHistograms {
                name: name.to_string(),
                weights: Histogram::of(w, r[0].0, r[0].1, BINS),
                grads: Histogram::of(g, r[1].0, r[1].1, BINS),
                activations: (!a.is_empty()).then(|| Histogram::of(a, r[2].0, r[2].1, BINS)),
            })
            .collect()
    }
}

/// `[-m, m]` with `m` one and a half times the largest finite |value|,
/// rounded up to two significant digits (never 0).
fn symmetric(v: &[f32]) -> (f64, f64) {
    let m = upper(&v.iter().map(|x| x.abs()).collect::<Vec<_>>());
    (-m, m)
}

fn upper(v: &[f32]) -> f64 {
    let max = v
        .iter()
        .filter(|x| x.is_finite())
        .fold(0f64, |m, &x| m.max(x as f64));
    let m = (1.5 * max).max(1e-8);
    let exponent = m.log10().floor() as i32 - 1;
    // Two significant digits, rounded up (slack for f32 inputs: 1.5 × 0.2f32).
    let digits = (m / 10f64.powi(exponent) - 1e-5).ceil();
    match exponent < 0 {
        true => digits / 10f64.powi(-exponent),
        false => digits * 10f64.powi(exponent),
    }
}

/// Every layer's weights, gradients and (the first images') ReLU output as
/// one rank-1 tensor, with the lengths to split it by: one transfer.
/// `weights` and `grads` are laid out as [`params`], `lengths` as
/// [`lengths`] (the sample's own, not gathered again).
pub fn histogram_values<B: Backend>(
    weights: &Tensor<B, 1>,
    grads: &Tensor<B, 1>,
    lengths: [usize; 6],
    acts: &Traced<B>,
) -> (Tensor<B, 1>, Vec<[usize; 3]>) {
    let images = acts.logits.dims()[0].min(HISTOGRAM_IMAGES);
    let acts: Vec<Tensor<B, 1>> = acts
        .convs
        .iter()
        .map(|c| c.clone().narrow(0, 0, images).flatten(0, 3))
        .chain([acts.fc1.clone().narrow(0, 0, images).flatten(0, 1)])
        .collect();
    let (mut parts, mut split, mut at) = (Vec::new(), Vec::new(), 0);
    for (i, &n) in lengths.iter().enumerate() {
        let a = acts.get(i).cloned();
        split.push([n, n, a.as_ref().map_or(0, |a| a.dims()[0])]);
        parts.push(weights.clone().narrow(0, at, n));
        parts.push(grads.clone().narrow(0, at, n));
        parts.extend(a);
        at += n;
    }
    (Tensor::cat(parts, 0), split)
}

/// [`histogram_values`] read back, split per layer.
pub fn split_values(values: &[f32], lengths: &[[usize; 3]]) -> Vec<(Vec<f32>, Vec<f32>, Vec<f32>)> {
    let mut at = 0;
    let mut take = |n: usize| {
        let part = values[at..at + n].to_vec();
        at += n;
        part
    };
    lengths
        .iter()
        .map(|[w, g, a]| (take(*w), take(*g), take(*a)))
        .collect()
}

#[cfg(test)]
mod tests;
