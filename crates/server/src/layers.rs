//! A run's layer statistics and histograms, folded from its `layers` and
//! `histograms` events ([`LayerHistory`]) and served as columns for the
//! page's Layers panel (`GET /api/runs/{id}/layers`, [`LayersAnswer`]):
//! one table of the statistics ([`STATISTICS`]) that the page's picker,
//! the answer and the CSV read.

use mnist_events::{Histograms, LayerSample, LayerStats};
use serde::Serialize;
use std::sync::Arc;

/// How a statistic reads its value off a layer's sample.
pub type Reading = fn(&LayerSample) -> Option<f64>;

/// One statistic of the table.
#[derive(Clone, Copy, Serialize)]
pub struct Statistic {
    /// Its key in answers and on the page.
    pub key: &'static str,
    /// Where it is in a `layers` event's layer sample (a dotted path), for
    /// whoever reads the log or the websocket rather than this answer.
    pub field: &'static str,
    /// What the page calls it.
    pub title: &'static str,
    /// What it means, for the page's hover and README.
    pub help: &'static str,
    /// Whether the page shows it on a log scale.
    pub log: bool,
    /// How it reads its value.
    #[serde(skip)]
    pub read: Reading,
}

/// Every statistic a layer sample has, in the page's order.
pub const STATISTICS: [Statistic; 6] = [
    Statistic {
        key: "grad_norm",
        field: "grad_norm",
        title: "Gradient norm",
        help: "L2 norm of the loss's gradient for the layer's weights and bias, before the step",
        log: true,
        read: |s| Some(s.grad_norm),
    },
    Statistic {
        key: "weight_norm",
        field: "weight_norm",
        title: "Weight norm",
        help: "L2 norm of the layer's weights and bias after the step",
        log: true,
        read: |s| Some(s.weight_norm),
    },
    Statistic {
        key: "update_ratio",
        field: "update_ratio",
        title: "Update / weight",
        help: "the step the optimiser took over the weights' norm; about 1e-3 is healthy, far above is unstable, far below is stuck",
        log: true,
        read: |s| Some(s.update_ratio),
    },
    Statistic {
        key: "act_mean",
        field: "activations.mean",
        title: "Activation mean",
        help: "mean of the layer's ReLU output on the batch",
        log: true,
        read: |s| s.activations.map(|a| a.mean),
    },
    Statistic {
        key: "act_std",
        field: "activations.std",
        title: "Activation std",
        help: "standard deviation of the layer's ReLU output on the batch",
        log: true,
        read: |s| s.activations.map(|a| a.std),
    },
    Statistic {
        key: "dead",
        field: "activations.dead",
        title: "Dead units",
        help: "share of the layer's ReLU units that are zero for every image of the batch",
        log: false,
        read: |s| s.activations.map(|a| a.dead),
    },
];

/// Most samples in an answer; longer runs are thinned evenly (the newest
/// sample always kept).
pub const MAX_SAMPLES: usize = 2000;
/// Most histogram sets in an answer (evenly thinned, the newest kept).
pub const MAX_HISTOGRAMS: usize = 200;

/// A run's layer samples and histograms, in step order.
#[derive(Debug, Default)]
pub struct LayerHistory {
    /// Each sample with the time it was logged.
    samples: Vec<(u64, Arc<LayerStats>)>,
    histograms: Vec<Arc<Histograms>>,
}

/// `GET /api/runs/{id}/layers`.
#[derive(Serialize)]
pub struct LayersAnswer {
    /// The layers, in forward order.
    pub layers: Vec<String>,
    /// The statistics table.
    pub statistics: &'static [Statistic],
    /// Samples the run has.
    pub total: usize,
    /// Each kept sample's step.
    pub step: Vec<u64>,
    /// Each kept sample's epoch.
    pub epoch: Vec<usize>,
    /// Each kept sample's learning rate.
    pub lr: Vec<f64>,
    /// By statistic key: per layer, a value per kept sample (`null` where
    /// it has none or it is not finite).
    pub values: std::collections::BTreeMap<&'static str, Vec<Vec<Option<f64>>>>,
    /// The histograms, oldest first (at most [`MAX_HISTOGRAMS`]).
    pub histograms: Vec<Arc<Histograms>>,
}

impl LayerHistory {
    /// Folds a sample in (a resumed run's later samples replace what the
    /// interrupted attempt logged after its checkpoint: see [`Self::cut_after`]).
    pub fn push_sample(&mut self, ts_ms: u64, s: &LayerStats) {
        self.samples.push((ts_ms, Arc::new(s.clone())));
    }

    /// Folds histograms in.
    pub fn push_histograms(&mut self, h: &Histograms) {
        self.histograms.push(Arc::new(h.clone()));
    }

    /// Forgets what came after `step` (a resumption trains it again).
    pub fn cut_after(&mut self, step: u64) {
        self.samples.retain(|(_, s)| s.step <= step);
        self.histograms.retain(|h| h.step <= step);
    }

    /// The samples with the time each was logged, in step order.
    pub fn samples(&self) -> &[(u64, Arc<LayerStats>)] {
        &self.samples
    }

    /// About how many bytes it holds.
    pub fn approx_bytes(&self) -> usize {
        self.samples.len() * 1200 + self.histograms.len() * 6 * 3 * 400
    }

    /// The answer: samples between steps `from` and `to`, thinned to at
    /// most `max`; the histograms.
    pub fn answer(&self, from: u64, to: u64, max: usize) -> LayersAnswer {
        let lo = self.samples.partition_point(|(_, s)| s.step < from);
        let hi = self.samples.partition_point(|(_, s)| s.step <= to);
        let kept: Vec<Arc<LayerStats>> = thin(&self.samples[lo..hi], max)
            .into_iter()
            .map(|(_, s)| s)
            .collect();
        let layers: Vec<String> = kept
            .first()
            .map(|s| s.layers.iter().map(|l| l.name.clone()).collect())
            .unwrap_or_else(|| mnist_events::LAYERS.iter().map(|l| l.to_string()).collect());
        let values = STATISTICS
            .iter()
            .map(|stat| {
                let per_layer = (0..layers.len())
                    .map(|i| {
                        kept.iter()
                            .map(|s| {
                                s.layers
                                    .get(i)
                                    .and_then(stat.read)
                                    .filter(|v| v.is_finite())
                            })
                            .collect()
                    })
                    .collect();
                (stat.key, per_layer)
            })
            .collect();
        LayersAnswer {
            layers,
            statistics: &STATISTICS,
            total: self.samples.len(),
            step: kept.iter().map(|s| s.step).collect(),
            epoch: kept.iter().map(|s| s.epoch).collect(),
            lr: kept.iter().map(|s| s.lr).collect(),
            values,
            histograms: thin(&self.histograms, MAX_HISTOGRAMS),
        }
    }
}

/// At most `max` of `items`, evenly spaced, the last always kept.
fn thin<T: Clone>(items: &[T], max: usize) -> Vec<T> {
    if items.len() <= max || max < 2 {
        return items.to_vec();
    }
    let mut out: Vec<T> = (0..max - 1)
        .map(|i| items[i * (items.len() - 1) / (max - 1)].clone())
        .collect();
    out.push(items[items.len() - 1].clone());
    out
}

/// The CSV's columns for layer rows (empty on batch and eval rows).
pub const CSV_COLUMNS: &str = "layer,grad_norm,weight_norm,update_ratio,act_mean,act_std,dead";

/// A sample's CSV rows, one per layer: `layers,,epoch,,step,…,lr,,ts,layer,…`.
pub fn csv_rows(ts_ms: u64, s: &LayerStats) -> String {
    let mut out = String::new();
    for l in &s.layers {
        let cell = |v: Option<f64>| v.map_or(String::new(), |v| v.to_string());
        let values: Vec<String> = STATISTICS.iter().map(|stat| cell((stat.read)(l))).collect();
        out += &format!(
            "layers,,{},,{},,,,,{},,{},{},{}\n",
            s.epoch,
            s.step,
            s.lr,
            ts_ms,
            l.name,
            values.join(",")
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_statistics_field_path_reads_its_value_in_the_event() {
        let mut s = sample(7, 2.5).layers[0].clone();
        s.weight_norm = 3.0;
        s.update_ratio = 1e-3;
        s.activations = Some(mnist_events::ActivationStats {
            mean: 0.25,
            std: 0.5,
            dead: 0.125,
        });
        let json = serde_json::to_value(&s).unwrap();
        for stat in STATISTICS {
            let at = stat
                .field
                .split('.')
                .fold(&json, |v, k| &v[k])
                .as_f64()
                .unwrap_or_else(|| panic!("{} is no number in {json}", stat.field));
            assert_eq!(Some(at), (stat.read)(&s), "{}", stat.key);
        }
    }

    fn sample(step: u64, grad: f64) -> LayerStats {
        LayerStats {
            step,
            epoch: 1,
            lr: 1e-3,
            layers: mnist_events::LAYERS
                .iter()
                .map(|name| LayerSample {
                    name: name.to_string(),
                    grad_norm: grad,
                    weight_norm: 2.0,
                    update_ratio: 1e-3,
                    activations: (*name != "fc2").then_some(mnist_events::ActivationStats {
                        mean: 0.5,
                        std: 0.1,
                        dead: 0.25,
                    }),
                })
                .collect(),
        }
    }

    #[test]
    fn columns_per_layer_thinned_with_the_newest_kept() {
        let mut h = LayerHistory::default();
        for step in 1..=5000 {
            h.push_sample(
                step,
                &sample(step, if step == 7 { f64::NAN } else { step as f64 }),
            );
        }
        let all = h.answer(0, u64::MAX, MAX_SAMPLES);
        assert_eq!(all.total, 5000);
        assert_eq!(all.step.len(), MAX_SAMPLES);
        assert_eq!(all.step.last(), Some(&5000));
        assert_eq!(all.values["grad_norm"].len(), 6);
        assert_eq!(all.values["dead"][5][0], None, "fc2 has no ReLU");
        assert_eq!(all.values["dead"][0][0], Some(0.25));
        let zoom = h.answer(5, 10, MAX_SAMPLES);
        assert_eq!(zoom.step, vec![5, 6, 7, 8, 9, 10]);
        assert_eq!(zoom.values["grad_norm"][0][2], None, "NaN is null");
        h.cut_after(100);
        assert_eq!(h.answer(0, u64::MAX, 10).total, 100);
    }

    #[test]
    fn a_sample_is_a_csv_row_per_layer() {
        let rows = csv_rows(9, &sample(3, 1.5));
        let lines: Vec<&str> = rows.lines().collect();
        assert_eq!(lines.len(), 6);
        assert_eq!(
            lines[0],
            "layers,,1,,3,,,,,0.001,,9,conv1,1.5,2,0.001,0.5,0.1,0.25"
        );
        assert!(lines[5].ends_with("fc2,1.5,2,0.001,,,"), "{}", lines[5]);
    }
}
