//! `train --reproduce RUN_ID`: train a logged run again with its stored
//! configuration and seed, then say whether the first epoch came out the
//! same (every batch's loss and accuracy, and the epoch's validation).

use mnist_events::{Event, EventKind, Split};
use mnist_train::TrainConfig;
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::Path;

/// Largest relative difference still called the same: CPU training is
/// deterministic (fixed thread partitions, seeded shuffling and dropout),
/// so a rerun on the same build and machine matches to the last bit; this
/// leaves room for a different CPU's SIMD width only.
pub const TOLERANCE: f64 = 1e-5;

/// The run to reproduce, read from its log.
pub struct Original {
    /// Its id.
    pub run_id: String,
    /// The configuration of its latest attempt.
    pub config: TrainConfig,
    /// Its events.
    pub events: Vec<Event>,
}

/// Reads `run_dir/run_id/events.jsonl` and the configuration it trained with.
pub fn load(run_dir: &Path, run_id: &str) -> anyhow::Result<Original> {
    let path = mnist_events::log_path(run_dir, run_id);
    if !path.is_file() {
        anyhow::bail!(
            "--reproduce: no run {run_id} in {} (no {})",
            run_dir.display(),
            path.display()
        );
    }
    let events = mnist_events::read_events(&path)?;
    let started = events
        .iter()
        .rev()
        .find_map(|e| match &e.kind {
            EventKind::RunStarted(r) => Some(r),
            _ => None,
        })
        .ok_or_else(|| {
            anyhow::anyhow!(
                "--reproduce: run {run_id} never started (no run_started in {})",
                path.display()
            )
        })?;
    let config = TrainConfig::from_json(&started.config).map_err(|errors| {
        let fields: Vec<String> = errors
            .iter()
            .map(|e| format!("{}: {}", e.field, e.message))
            .collect();
        anyhow::anyhow!(
            "--reproduce: run {run_id}'s stored configuration is not valid here: {}",
            fields.join("; ")
        )
    })?;
    Ok(Original {
        run_id: run_id.to_string(),
        config,
        events,
    })
}

impl Original {
    /// The controls the run applied that change what it computes (all but
    /// pause and resume, and the evaluations and checkpoints, which change
    /// nothing it trains), at the steps it applied them: replayed so that
    /// a steered run is reproduced as it was steered.
    pub fn controls(&self) -> Vec<(u64, mnist_events::ControlAction)> {
        use mnist_events::ControlAction as A;
        self.events
            .iter()
            .filter_map(|e| match &e.kind {
                EventKind::Control(c) => Some((c.step, c.action.clone())),
                _ => None,
            })
            .filter(|(_, a)| matches!(a, A::SetLr { .. } | A::StopAfterEpoch))
            .collect()
    }
}

/// How the rerun's first epoch compares with the original's.
#[derive(Debug, Serialize)]
pub struct Comparison {
    /// The run reproduced.
    pub original: String,
    /// The new run.
    pub rerun: String,
    /// Steps of epoch 1 both runs logged.
    pub steps_compared: usize,
    /// Largest relative difference over those steps' loss and accuracy and
    /// the epoch-1 validation loss and accuracy.
    pub max_relative_difference: f64,
    /// Where it was (`step 17 loss`, `val loss`).
    pub worst_at: Option<String>,
    /// Epoch-1 validation accuracy: original, rerun.
    pub val_accuracy: Option<(f64, f64)>,
    /// Whether everything compared is within [`TOLERANCE`].
    pub matches: bool,
}

/// A loss and an accuracy.
type LossAccuracy = (f64, f64);

/// Epoch 1 of a log: (loss, accuracy) by step (a resumed attempt's value
/// replaces the killed one's) and the validation evaluation.
fn first_epoch(events: &[Event]) -> (BTreeMap<u64, LossAccuracy>, Option<LossAccuracy>) {
    let mut steps = BTreeMap::new();
    let mut val = None;
    for e in events {
        match &e.kind {
            EventKind::Batch(b) if b.epoch == 1 => {
                steps.insert(b.step, (b.loss, b.accuracy));
            }
            EventKind::Eval(m) if m.epoch == 1 && m.split == Split::Val => {
                val = Some((m.loss, m.accuracy));
            }
            _ => {}
        }
    }
    (steps, val)
}

fn relative(a: f64, b: f64) -> f64 {
    if a == b || (a.is_nan() && b.is_nan()) {
        0.0
    } else {
        (a - b).abs() / a.abs().max(b.abs()).max(1e-12)
    }
}

/// Compares the first epochs of `original` and `rerun`.
pub fn compare(original: &Original, rerun_id: &str, rerun: &[Event]) -> Comparison {
    let (a_steps, a_val) = first_epoch(&original.events);
    let (b_steps, b_val) = first_epoch(rerun);
    let mut worst = (0.0, None);
    let mut note = |d: f64, at: String| {
        if d > worst.0 || (d.is_nan() && !worst.0.is_nan()) {
            worst = (d, Some(at));
        }
    };
    let mut compared = 0;
    for (step, (loss, acc)) in &a_steps {
        if let Some((loss2, acc2)) = b_steps.get(step) {
            compared += 1;
            note(relative(*loss, *loss2), format!("step {step} loss"));
            note(relative(*acc, *acc2), format!("step {step} accuracy"));
        }
    }
    if let (Some(a), Some(b)) = (a_val, b_val) {
        note(relative(a.0, b.0), "val loss".into());
        note(relative(a.1, b.1), "val accuracy".into());
    }
    Comparison {
        original: original.run_id.clone(),
        rerun: rerun_id.to_string(),
        steps_compared: compared,
        max_relative_difference: worst.0,
        worst_at: worst.1,
        val_accuracy: a_val.zip(b_val).map(|(a, b)| (a.1, b.1)),
        matches: compared > 0 && worst.0 <= TOLERANCE,
    }
}

impl Comparison {
    /// One paragraph for the terminal.
    pub fn describe(&self) -> String {
        let val = self.val_accuracy.map_or(String::new(), |(a, b)| {
            format!(
                ", validation accuracy {:.2}% then {:.2}%",
                a * 100.0,
                b * 100.0
            )
        });
        if self.steps_compared == 0 {
            return format!(
                "reproduce {}: nothing to compare (no batch of epoch 1 in both runs)",
                self.original
            );
        }
        let verdict = if self.matches {
            "the first epoch matches".to_string()
        } else {
            format!(
                "the first epoch differs (largest relative difference {:.3e} at {}; GPU kernels and another build or CPU can change the last digits)",
                self.max_relative_difference,
                self.worst_at.as_deref().unwrap_or("?")
            )
        };
        format!(
            "reproduce {} as {}: {verdict}: {} steps compared{val}",
            self.original, self.rerun, self.steps_compared
        )
    }
}
