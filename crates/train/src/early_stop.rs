//! Early stopping: after each epoch's validation, whether the run should
//! end before its last epoch, and why, in words `run_finished` carries.
//! Its state travels in checkpoints, so a resumed run keeps counting.

use crate::config::{EarlyStop, TrainConfig};
use mnist_events::EvalMetrics;
use serde::{Deserialize, Serialize};

/// The watched metric's best value so far and the validations since.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Watch {
    /// The best value seen (lower is better for the loss).
    pub best: Option<f64>,
    /// The epoch it was seen at.
    pub best_epoch: usize,
    /// Validations since it without an improvement of `min_delta`.
    pub since: usize,
}

impl Watch {
    /// Folds in epoch `epoch`'s validation; why the run should stop now,
    /// if it should.
    pub fn observe(
        &mut self,
        config: &TrainConfig,
        epoch: usize,
        val: &EvalMetrics,
    ) -> Option<String> {
        if config.target_accuracy > 0.0 && val.accuracy >= config.target_accuracy {
            return Some(format!(
                "target reached: validation accuracy {:.4} ≥ {} at epoch {epoch}",
                val.accuracy, config.target_accuracy
            ));
        }
        let (name, value, lower_is_better) = match config.early_stop {
            EarlyStop::Off => return None,
            EarlyStop::ValLoss => ("validation loss", val.loss, true),
            EarlyStop::ValAccuracy => ("validation accuracy", val.accuracy, false),
        };
        let gain = |best: f64| match lower_is_better {
            true => best - value,
            false => value - best,
        };
        match self.best {
            Some(best)
                if !value.is_finite() || gain(best) < config.min_delta.max(f64::MIN_POSITIVE) =>
            {
                self.since += 1
            }
            _ if value.is_finite() => {
                *self = Watch {
                    best: Some(value),
                    best_epoch: epoch,
                    since: 0,
                }
            }
            _ => self.since += 1,
        }
        (self.since >= config.patience).then(|| {
            format!(
                "early stop: {name} did not improve by {} for {} epochs (best {:.4} at epoch {})",
                config.min_delta,
                self.since,
                self.best.unwrap_or(f64::NAN),
                self.best_epoch
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn val(loss: f64, accuracy: f64) -> EvalMetrics {
        serde_json::from_value(serde_json::json!({
            "split": "val", "epoch": 1, "step": 1, "loss": loss, "accuracy": accuracy,
            "f1_macro": accuracy, "mse": 0.0, "confusion": [], "per_class": [], "images": 10, "seconds": 0.1
        }))
        .unwrap()
    }

    fn config(early_stop: EarlyStop, patience: usize, min_delta: f64) -> TrainConfig {
        TrainConfig {
            early_stop,
            patience,
            min_delta,
            ..Default::default()
        }
    }

    #[test]
    fn the_loss_must_fall_by_min_delta_within_patience() {
        let c = config(EarlyStop::ValLoss, 2, 0.01);
        let mut w = Watch::default();
        let losses = [0.5, 0.3, 0.295, 0.31, 0.2];
        let stops: Vec<bool> = losses
            .iter()
            .enumerate()
            .map(|(i, &l)| w.observe(&c, i + 1, &val(l, 0.5)).is_some())
            .collect();
        assert_eq!(
            stops,
            [false, false, false, true, false],
            "a gain resets the count"
        );
        let why = Watch::default();
        let mut w2 = why;
        for (i, l) in [0.5, 0.3, 0.295, 0.31].iter().enumerate() {
            if let Some(reason) = w2.observe(&c, i + 1, &val(*l, 0.5)) {
                assert!(reason.contains("best 0.3000 at epoch 2"), "{reason}");
                assert!(reason.contains("for 2 epochs"), "{reason}");
            }
        }
    }

    #[test]
    fn accuracy_rises_and_a_nan_loss_is_no_improvement() {
        let c = config(EarlyStop::ValAccuracy, 1, 0.0);
        let mut w = Watch::default();
        assert!(w.observe(&c, 1, &val(1.0, 0.90)).is_none());
        assert!(w.observe(&c, 2, &val(1.0, 0.95)).is_none());
        assert!(
            w.observe(&c, 3, &val(1.0, 0.95)).is_some(),
            "equal is no gain"
        );
        let c = config(EarlyStop::ValLoss, 2, 0.0);
        let mut w = Watch::default();
        assert!(w.observe(&c, 1, &val(0.4, 0.9)).is_none());
        assert!(w.observe(&c, 2, &val(f64::NAN, 0.1)).is_none());
        assert!(w.observe(&c, 3, &val(f64::NAN, 0.1)).is_some());
    }

    #[test]
    fn a_target_stops_at_once_and_off_never_stops() {
        let c = TrainConfig {
            target_accuracy: 0.97,
            ..Default::default()
        };
        let mut w = Watch::default();
        assert!(w.observe(&c, 1, &val(0.3, 0.96)).is_none());
        let why = w.observe(&c, 2, &val(0.2, 0.975)).unwrap();
        assert!(why.starts_with("target reached"), "{why}");
        let off = TrainConfig::default();
        assert!((1..50).all(|e| w.observe(&off, e, &val(9.0, 0.0)).is_none()));
    }
}
