//! Inside the network: per-layer statistics sampled while it trains
//! (`layers`), histograms of each layer's weights, gradients and
//! activations at each epoch's last step (`histograms`), and the diagnosis an
//! alert carries when a run goes wrong.

use serde::{Deserialize, Serialize};

/// The layers with parameters, in forward order: what `layers` and
/// `histograms` events describe. The ReLU outputs are those of the first
/// five (`fc2`'s output is the logits, with no ReLU).
pub const LAYERS: [&str; 6] = ["conv1", "conv2", "conv3", "conv4", "fc1", "fc2"];

/// `layers`: one sample of every layer's statistics, taken on one
/// training step (every `layer_stats_every` steps, and at steps 1, 2, 4,
/// 8, … before that, where a run changes fastest).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LayerStats {
    /// The step the sample was taken on.
    pub step: u64,
    /// Its epoch.
    pub epoch: usize,
    /// The learning rate of that step.
    pub lr: f64,
    /// One entry per layer of [`LAYERS`], in that order.
    pub layers: Vec<LayerSample>,
}

/// One layer's statistics at one step. Non-finite values are `null` on
/// the wire and read back as NaN.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LayerSample {
    /// The layer (`conv1` … `fc2`).
    pub name: String,
    /// L2 norm of the loss's gradient with respect to the layer's weight
    /// and bias, before the optimiser's step.
    #[serde(deserialize_with = "crate::nan_if_null")]
    pub grad_norm: f64,
    /// L2 norm of the weight and bias after the step.
    #[serde(deserialize_with = "crate::nan_if_null")]
    pub weight_norm: f64,
    /// L2 norm of the step the optimiser really took (weights after minus
    /// before) over the norm before: about 1e-3 is healthy.
    #[serde(deserialize_with = "crate::nan_if_null")]
    pub update_ratio: f64,
    /// The layer's ReLU output on the batch (`None` for `fc2`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub activations: Option<ActivationStats>,
}

/// A ReLU output's statistics over one batch.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ActivationStats {
    /// Mean of every value.
    #[serde(deserialize_with = "crate::nan_if_null")]
    pub mean: f64,
    /// Standard deviation of every value.
    #[serde(deserialize_with = "crate::nan_if_null")]
    pub std: f64,
    /// The share of units (each channel at each position, or each neuron)
    /// that are zero for every image of the batch: dead for this batch.
    #[serde(deserialize_with = "crate::nan_if_null")]
    pub dead: f64,
}

/// `histograms`: every layer's weights, gradients and ReLU outputs as
/// histograms, on the last training step of an epoch (before its
/// evaluation). Each layer's bins are fixed the first time (per run), so
/// histograms of one layer compare over time.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Histograms {
    /// The step they were taken on.
    pub step: u64,
    /// The epoch it ends.
    pub epoch: usize,
    /// One entry per layer of [`LAYERS`], in that order.
    pub layers: Vec<LayerHistograms>,
}

/// One layer's histograms.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LayerHistograms {
    /// The layer.
    pub name: String,
    /// Its weights and bias.
    pub weights: Histogram,
    /// Their gradients on that step.
    pub grads: Histogram,
    /// Its ReLU output on (part of) that batch; `None` for `fc2`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub activations: Option<Histogram>,
}

/// Counts of values in equal bins between `lo` and `hi`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Histogram {
    /// The first bin's lower edge.
    pub lo: f64,
    /// The last bin's upper edge.
    pub hi: f64,
    /// Values per bin.
    pub counts: Vec<u64>,
    /// Values below `lo`.
    pub below: u64,
    /// Values above `hi`.
    pub above: u64,
    /// Values that are NaN or infinite.
    #[serde(default)]
    pub not_finite: u64,
}

impl Histogram {
    /// `values` counted into `bins` equal bins over `[lo, hi]`.
    pub fn of(values: &[f32], lo: f64, hi: f64, bins: usize) -> Self {
        let mut h = Histogram {
            lo,
            hi,
            counts: vec![0; bins.max(1)],
            below: 0,
            above: 0,
            not_finite: 0,
        };
        let n = h.counts.len();
        let width = (hi - lo) / n as f64;
        for &v in values {
            let v = v as f64;
            if !v.is_finite() {
                h.not_finite += 1;
            } else if v < lo {
                h.below += 1;
            } else if v > hi {
                h.above += 1;
            } else {
                let i = ((v - lo) / width) as usize;
                h.counts[i.min(n - 1)] += 1;
            }
        }
        h
    }
}

/// What a run-going-wrong alert (`loss_not_finite`, `loss_spike`,
/// `grad_jump`) found, for people and for forking from a good point.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Diagnosis {
    /// The step it happened at.
    pub step: u64,
    /// The learning rate then.
    #[serde(deserialize_with = "crate::nan_if_null")]
    pub lr: f64,
    /// The layer whose gradient norm rose first (from the layer samples).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub layer: Option<String>,
    /// By how much its gradient norm rose over its own baseline (NaN or
    /// infinite: it became non-finite).
    #[serde(default, deserialize_with = "crate::nan_if_null")]
    pub rise: f64,
    /// The step of the sample where it first rose.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rose_at_step: Option<u64>,
    /// The share of ReLU units dead in the latest sample (over every ReLU
    /// layer's units).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dead_share: Option<f64>,
    /// What to try.
    pub suggestion: String,
    /// The newest checkpoint written before it happened, to fork from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_good_checkpoint: Option<GoodCheckpoint>,
}

/// A checkpoint a diagnosis points to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GoodCheckpoint {
    /// Its epoch.
    pub epoch: usize,
    /// Its step.
    pub step: u64,
    /// The run it belongs to when not the diagnosed one: a fork's parent,
    /// whose checkpoint the fork started from, before the fork has saved
    /// one of its own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_id: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_histogram_counts_every_value_once() {
        let h = Histogram::of(
            &[-2.0, -1.0, -0.5, 0.0, 0.5, 1.0, 3.0, f32::NAN],
            -1.0,
            1.0,
            4,
        );
        assert_eq!(
            h.counts,
            vec![1, 1, 1, 2],
            "the last bin holds its upper edge"
        );
        assert_eq!((h.below, h.above, h.not_finite), (1, 1, 1));
    }

    #[test]
    fn non_finite_statistics_survive_the_log() {
        let s = LayerSample {
            name: "fc1".into(),
            grad_norm: f64::NAN,
            weight_norm: 1.0,
            update_ratio: f64::INFINITY,
            activations: None,
        };
        let text = serde_json::to_string(&s).unwrap();
        let back: LayerSample = serde_json::from_str(&text).unwrap();
        assert!(back.grad_norm.is_nan() && back.update_ratio.is_nan());
    }
}
