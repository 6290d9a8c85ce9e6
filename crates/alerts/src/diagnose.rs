//! The diagnosis of a run going wrong: from the batches (the loss and its
//! smoothed baseline, the learning rate), the layer samples (each layer's
//! gradient norm, its dead ReLU units) and the checkpoints written, what
//! happened, which layer's gradient norm rose first and by how much, and
//! what to try, with the last good checkpoint to fork from.

use mnist_events::{
    BatchMetrics, CheckpointSaved, Diagnosis, GoodCheckpoint, LayerStats, RunStarted,
};

/// A gradient norm this many times its layer's baseline has "risen".
pub const RISE: f64 = 10.0;
/// A loss this many times its smoothed baseline is a spike.
pub const SPIKE: f64 = 3.0;
/// Before [`WARM_UP`] batches, when the loss still falls fast, only a loss
/// this many times its baseline is a spike (an explosion).
pub const EXPLOSION: f64 = 100.0;
/// Batches before the baseline is trusted for [`SPIKE`].
const WARM_UP: u64 = 50;
/// Layer samples kept (the earliest are the baselines).
const KEPT: usize = 256;

/// What the diagnosis has seen of a run.
#[derive(Debug, Default)]
pub struct Doctor {
    /// The debiased moving average of the finite batch losses (weight 0.98).
    ema: (f64, f64),
    batches: u64,
    lr: f64,
    samples: Vec<LayerStats>,
    /// The first sample taken after [`WARM_UP`]/4 batches: the samples
    /// before it, from the first steps of a fresh network, whose gradients
    /// can be ten times smaller than a healthy run's later ones, are no
    /// baseline for a jump.
    settled_from: Option<usize>,
    /// The newest epoch checkpoint written while the loss looked healthy.
    good: Option<GoodCheckpoint>,
    troubled: bool,
}

impl Doctor {
    /// The loss's smoothed baseline so far.
    pub fn baseline(&self) -> Option<f64> {
        (self.ema.1 > 0.0).then(|| self.ema.0 / self.ema.1)
    }

    /// Folds a batch in; the baseline it is a spike against and the
    /// threshold it crossed, if it is one.
    pub fn batch(&mut self, b: &BatchMetrics) -> Option<(f64, f64)> {
        self.lr = b.lr;
        self.batches += 1;
        let baseline = self.baseline();
        let factor = match self.batches > WARM_UP {
            true => SPIKE,
            false => EXPLOSION,
        };
        let spike = baseline
            .map(|base| (base, factor * base))
            .filter(|&(_, threshold)| b.loss.is_finite() && b.loss > threshold);
        self.troubled = spike.is_some() || !b.loss.is_finite();
        if b.loss.is_finite() && spike.is_none() {
            self.ema = (0.98 * self.ema.0 + 0.02 * b.loss, 0.98 * self.ema.1 + 0.02);
        }
        spike
    }

    /// Notes where a run starts from: a resumed run's checkpoint, or a
    /// fork's parent's, is good until the run saves one of its own.
    pub fn started(&mut self, r: &RunStarted) {
        self.good = match (&r.parent, r.resumed_from_epoch, r.resumed_from_step) {
            (_, Some(epoch), Some(step)) => Some(GoodCheckpoint {
                epoch,
                step,
                run_id: None,
            }),
            (Some(p), _, _) => Some(GoodCheckpoint {
                epoch: p.epoch,
                step: p.step,
                run_id: Some(p.run_id.clone()),
            }),
            _ => self.good.take(),
        };
    }

    /// Notes an epoch's checkpoint written while the run looked healthy.
    pub fn checkpoint(&mut self, c: &CheckpointSaved) {
        if c.batches_into_epoch.is_none() && !self.troubled {
            self.good = Some(GoodCheckpoint {
                epoch: c.epoch,
                step: c.step,
                run_id: None,
            });
        }
    }

    /// Folds a layer sample in; the layer whose gradient norm jumped
    /// [`RISE`] times over its median of the earlier settled samples (or
    /// became non-finite), with the rise. Only after [`WARM_UP`] batches and
    /// three settled samples: a fresh network's gradients grow on their own.
    pub fn layers(&mut self, s: &LayerStats) -> Option<(String, f64)> {
        let settled = match self.settled_from {
            Some(from) if self.batches >= WARM_UP => &self.samples[from..],
            _ => &[][..],
        };
        let jump = s
            .layers
            .iter()
            .enumerate()
            .filter_map(|(i, l)| {
                let earlier: Vec<f64> = settled
                    .iter()
                    .rev()
                    .take(16)
                    .filter_map(|p| p.layers.get(i).map(|l| l.grad_norm))
                    .filter(|g| g.is_finite() && *g > 0.0)
                    .collect();
                let base = median(earlier).filter(|_| settled.len() >= 3)?;
                let rise = l.grad_norm / base;
                (!rise.is_finite() || rise >= RISE).then(|| (l.name.clone(), rise))
            })
            .max_by(|a, b| rank(a.1).total_cmp(&rank(b.1)));
        if self.samples.len() == KEPT {
            // Keep the first samples (the baselines) and the newest.
            self.samples.remove(KEPT / 4);
            self.settled_from = self.settled_from.map(|f| f.min(KEPT / 4));
        }
        if self.settled_from.is_none() && self.batches >= WARM_UP / 4 {
            self.settled_from = Some(self.samples.len());
        }
        self.samples.push(s.clone());
        jump
    }

    /// The diagnosis of trouble at `step`.
    pub fn diagnose(&self, step: u64, cause: Cause) -> Diagnosis {
        let before: Vec<&LayerStats> = self.samples.iter().filter(|s| s.step <= step).collect();
        let first_rise = first_rise(&before);
        let dead_share = before.last().and_then(|s| {
            let dead: Vec<f64> = s
                .layers
                .iter()
                .filter_map(|l| l.activations.map(|a| a.dead))
                .filter(|d| d.is_finite())
                .collect();
            (!dead.is_empty()).then(|| dead.iter().sum::<f64>() / dead.len() as f64)
        });
        let lr = self.lr;
        let lower = nice(lr / 10.0);
        let suggestion = match cause {
            Cause::NotFinite | Cause::Spike => format!(
                "lower the learning rate (--lr {lower}, 10× lower) or decay it (--schedule cosine)"
            ),
            Cause::GradJump => format!(
                "watch the loss; if it follows, lower the learning rate (--lr {lower}) or decay it (--schedule cosine)"
            ),
        };
        let suggestion = match &self.good {
            Some(c) => format!(
                "{suggestion}; fork {}from epoch {}'s checkpoint (step {}) with the lower rate",
                c.run_id
                    .as_ref()
                    .map_or(String::new(), |r| format!("run {r} ")),
                c.epoch,
                c.step
            ),
            None => format!("{suggestion}; no checkpoint before it: start again"),
        };
        Diagnosis {
            step,
            lr,
            layer: first_rise.as_ref().map(|r| r.0.clone()),
            rise: first_rise.as_ref().map_or(f64::NAN, |r| r.1),
            rose_at_step: first_rise.map(|r| r.2),
            dead_share,
            suggestion,
            last_good_checkpoint: self.good.clone(),
        }
    }
}

/// What went wrong.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cause {
    /// The loss became NaN or infinite.
    NotFinite,
    /// The loss spiked over its baseline.
    Spike,
    /// A layer's gradient norm jumped.
    GradJump,
}

/// The layer whose gradient norm first reached [`RISE`] times its first
/// sample's (or became non-finite), with the rise and the step; failing
/// that, the layer that rose most.
fn first_rise(samples: &[&LayerStats]) -> Option<(String, f64, u64)> {
    let base = samples.first()?;
    let rise = |s: &LayerStats, i: usize| {
        let b = base.layers.get(i)?.grad_norm;
        let now = s.layers.get(i)?.grad_norm;
        (b.is_finite() && b > 0.0).then_some(now / b)
    };
    let mut most: Option<(String, f64, u64)> = None;
    for s in samples.iter().skip(1) {
        let mut risen: Vec<(String, f64)> = (0..s.layers.len())
            .filter_map(|i| rise(s, i).map(|r| (s.layers[i].name.clone(), r)))
            .collect();
        risen.sort_by(|a, b| rank(b.1).total_cmp(&rank(a.1)));
        let Some((name, r)) = risen.into_iter().next() else {
            continue;
        };
        if !r.is_finite() || r >= RISE {
            return Some((name, r, s.step));
        }
        if most.as_ref().is_none_or(|m| r > m.1) {
            most = Some((name, r, s.step));
        }
    }
    most.filter(|m| m.1 > 1.0)
}

/// A rise for ordering: non-finite counts as the largest.
fn rank(rise: f64) -> f64 {
    if rise.is_finite() {
        rise
    } else {
        f64::INFINITY
    }
}

fn median(mut v: Vec<f64>) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    Some(v[v.len() / 2])
}

/// `x` to one significant digit (`0.00031` → `0.0003`).
fn nice(x: f64) -> f64 {
    if !(x.is_finite() && x > 0.0) {
        return 1e-4;
    }
    let p = 10f64.powf(x.log10().floor());
    (x / p).round() * p
}

/// A number for a sentence: four significant digits, or scientific
/// notation when very large or small.
pub fn num(x: f64) -> String {
    let a = x.abs();
    match (x.is_finite(), a != 0.0 && !(1e-3..1e5).contains(&a)) {
        (false, _) => x.to_string(),
        (true, true) => format!("{x:.2e}"),
        (true, false) => format!("{}", (x * 1e4).round() / 1e4),
    }
}

/// A diagnosis in one sentence, for the alert's message.
pub fn sentence(what: &str, d: &Diagnosis) -> String {
    let mut out = format!("{what} at step {} (learning rate {})", d.step, num(d.lr));
    if let (Some(layer), Some(at)) = (&d.layer, d.rose_at_step) {
        let by = match d.rise.is_finite() {
            true => format!("{}× its first sample's", num(d.rise)),
            false => "to a non-finite value".to_string(),
        };
        out += &format!("; {layer}'s gradient norm rose first, {by} by step {at}");
    }
    if let Some(dead) = d.dead_share {
        out += &format!("; {:.0}% of ReLU units dead", dead * 100.0);
    }
    out + ". Try: " + &d.suggestion
}

#[cfg(test)]
mod tests {
    use super::*;
    use mnist_events::LayerSample;

    fn sample(step: u64, grads: [f64; 6]) -> LayerStats {
        LayerStats {
            step,
            epoch: 1,
            lr: 10.0,
            layers: mnist_events::LAYERS
                .iter()
                .zip(grads)
                .map(|(name, g)| LayerSample {
                    name: name.to_string(),
                    grad_norm: g,
                    weight_norm: 1.0,
                    update_ratio: 1e-3,
                    activations: None,
                })
                .collect(),
        }
    }

    #[test]
    fn the_layer_that_rose_first_is_named_even_when_all_end_non_finite() {
        let mut d = Doctor::default();
        d.layers(&sample(1, [1.0, 1.0, 1.0, 1.0, 1.0, 1.0]));
        d.layers(&sample(2, [2.0, 1.5, 1.0, 1.0, 40.0, 3.0]));
        d.layers(&sample(4, [f64::NAN; 6]));
        let dx = d.diagnose(5, Cause::NotFinite);
        assert_eq!(dx.layer.as_deref(), Some("fc1"));
        assert_eq!(dx.rose_at_step, Some(2));
        assert!((dx.rise - 40.0).abs() < 1e-9);
        let text = sentence("loss is NaN", &dx);
        assert!(
            text.contains("fc1's gradient norm rose first, 40× its first sample's by step 2"),
            "{text}"
        );
        assert!(text.contains("no checkpoint before it"), "{text}");
    }

    fn batch(step: u64, loss: f64) -> BatchMetrics {
        serde_json::from_value(serde_json::json!({
            "epoch": 1, "batch": step, "batches": 100, "step": step, "size": 8,
            "loss": loss, "accuracy": 0.5, "f1_macro": 0.5, "epoch_loss": loss,
            "epoch_accuracy": 0.5, "epoch_f1_macro": 0.5, "lr": 0.1,
            "images_per_sec": 1.0, "elapsed_s": 0.0
        }))
        .unwrap()
    }

    /// Feeds batches up to `step` and then the sample taken there (the
    /// trainer emits a step's sample before its batch).
    fn up_to(d: &mut Doctor, step: u64, grads: [f64; 6]) -> Option<(String, f64)> {
        while d.batches + 1 < step {
            d.batch(&batch(d.batches + 1, 1.0));
        }
        d.layers(&sample(step, grads))
    }

    #[test]
    fn a_jump_over_the_median_of_earlier_samples_is_reported() {
        let mut d = Doctor::default();
        for step in [1, 2, 4, 8, 16, 32, 50, 100] {
            assert!(up_to(&mut d, step, [1.0; 6]).is_none());
        }
        let (layer, rise) = up_to(&mut d, 150, [1.0, 1.0, 25.0, 1.0, 1.0, 1.0]).unwrap();
        assert_eq!((layer.as_str(), rise), ("conv3", 25.0));
    }

    #[test]
    fn a_fresh_networks_growing_gradients_are_no_jump() {
        // A healthy start: gradients tiny at initialisation, 30× larger once
        // the loss is informative, then steady.
        let mut d = Doctor::default();
        for (step, g) in [(1, 0.01), (2, 0.01), (4, 0.01), (8, 0.2), (16, 0.3)] {
            assert!(up_to(&mut d, step, [g; 6]).is_none(), "step {step}");
        }
        for step in [32, 50, 100, 150, 200] {
            assert!(up_to(&mut d, step, [0.3; 6]).is_none(), "step {step}");
        }
    }

    #[test]
    fn a_spike_needs_a_warmed_baseline_and_checkpoints_are_good_until_trouble() {
        let mut d = Doctor::default();
        assert!(d.batch(&batch(1, 50.0)).is_none(), "no baseline yet");
        for step in 2..=60 {
            assert!(
                d.batch(&batch(step, 1.0)).is_none(),
                "falling fast is no spike"
            );
        }
        let ckpt = |epoch, step| CheckpointSaved {
            epoch,
            step,
            path: String::new(),
            best: false,
            removed: Vec::new(),
            batches_into_epoch: None,
        };
        d.checkpoint(&ckpt(1, 60));
        assert!(
            d.batch(&batch(61, 30.0)).is_some(),
            "30 over a baseline near 1"
        );
        d.checkpoint(&ckpt(2, 61));
        let dx = d.diagnose(61, Cause::Spike);
        assert_eq!(
            dx.last_good_checkpoint,
            Some(GoodCheckpoint {
                epoch: 1,
                step: 60,
                run_id: None
            })
        );
        assert!(dx.suggestion.contains("--lr 0.01"), "{}", dx.suggestion);
        assert!(
            dx.suggestion.contains("fork from epoch 1"),
            "{}",
            dx.suggestion
        );
        let mut early = Doctor::default();
        assert!(early.batch(&batch(1, 2.3)).is_none());
        assert!(early.batch(&batch(2, 9.0)).is_none(), "early noise");
        assert!(
            early.batch(&batch(3, 3.7e16)).is_some(),
            "an explosion, warm or not"
        );
    }
}
