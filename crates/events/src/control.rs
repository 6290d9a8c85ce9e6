//! Steering a training run: what a person (the page, the API, the CLI) may
//! ask of a run while it trains, and the handle that carries the requests
//! to the trainer, which applies them at its next batch boundary.
//!
//! The handle costs the trainer one relaxed atomic load per batch when
//! nothing is asked ([`Controls::has_pending`]); the requests themselves
//! sit behind a mutex only the asker and the trainer touch.

use crate::{LockExt, Split};
use serde::{Deserialize, Serialize};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

/// One thing asked of a training run; on the wire tagged by `action`
/// (`{"action": "set_lr", "lr": 0.0003}`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum ControlAction {
    /// Hold the run between batches; its device stays its own.
    Pause,
    /// Go on after a pause.
    Resume,
    /// Train on with learning rate `lr` from the next step, following
    /// `schedule` (the run's own when absent) from there to the last step.
    SetLr {
        /// The new learning rate (the config table's `lr` range).
        lr: f64,
        /// `constant` or `cosine` (from `lr` now to 0 after the last step).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        schedule: Option<String>,
    },
    /// Evaluate a split now (`val` unless `test` is asked).
    Eval {
        /// The split to evaluate.
        #[serde(default = "val_split")]
        split: Split,
    },
    /// Write a checkpoint now, at the current step.
    Checkpoint,
    /// Finish the epoch in progress (evaluation and checkpoint included),
    /// then stop.
    StopAfterEpoch,
}

fn val_split() -> Split {
    Split::Val
}

impl ControlAction {
    /// Every action's wire name (the API's `action`), in declaration order.
    pub const NAMES: [&'static str; 6] = [
        "pause",
        "resume",
        "set_lr",
        "eval",
        "checkpoint",
        "stop_after_epoch",
    ];

    /// This action's wire name (one of [`ControlAction::NAMES`]).
    pub fn name(&self) -> &'static str {
        Self::NAMES[match self {
            ControlAction::Pause => 0,
            ControlAction::Resume => 1,
            ControlAction::SetLr { .. } => 2,
            ControlAction::Eval { .. } => 3,
            ControlAction::Checkpoint => 4,
            ControlAction::StopAfterEpoch => 5,
        }]
    }
}

/// A control the trainer applied: the `control` event (drawn as a marker
/// on every chart and listed in the status log).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Control {
    /// What was asked, with its values (`action`, `lr`, `schedule`, `split`).
    #[serde(flatten)]
    pub action: ControlAction,
    /// The step it took effect at: the last step trained before it (the
    /// next batch is the first under it).
    pub step: u64,
    /// The epoch in progress (or the last one, between epochs).
    pub epoch: usize,
    /// Who asked: `page`, `cli`, `api` or `reproduce`.
    pub source: String,
    /// For `set_lr`: the learning rate the next step would have had.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub old_lr: Option<f64>,
    /// For `set_lr`: the schedule followed until now.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub old_schedule: Option<String>,
    /// For `resume`: how long the run was paused, in seconds (left out of
    /// `elapsed_s` and images/s).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub paused_seconds: Option<f64>,
    /// A sentence for people, e.g. `learning rate 0.001 → 0.0003 at step 1200 (page)`.
    pub message: String,
}

/// A request waiting for the trainer.
#[derive(Debug, Clone, PartialEq)]
pub struct ControlRequest {
    /// What is asked.
    pub action: ControlAction,
    /// Who asks (see [`Control::source`]).
    pub source: String,
}

/// The sources a request may name.
pub const CONTROL_SOURCES: [&str; 4] = ["page", "cli", "api", "reproduce"];

/// A cloneable handle carrying control requests to one run's trainer.
#[derive(Debug, Clone, Default)]
pub struct Controls(Arc<Inner>);

#[derive(Debug, Default)]
struct Inner {
    pending: AtomicBool,
    queue: Mutex<Vec<ControlRequest>>,
    arrived: Condvar,
}

impl Controls {
    /// A handle with nothing asked.
    pub fn new() -> Self {
        Self::default()
    }

    /// Asks the trainer for `action`; applied at its next batch boundary.
    pub fn send(&self, action: ControlAction, source: impl Into<String>) {
        self.0.queue.locked().push(ControlRequest {
            action,
            source: source.into(),
        });
        self.0.pending.store(true, Ordering::SeqCst);
        self.0.arrived.notify_all();
    }

    /// Whether anything waits (one relaxed load: the per-batch check).
    pub fn has_pending(&self) -> bool {
        self.0.pending.load(Ordering::Relaxed)
    }

    /// Every waiting request, oldest first, leaving none.
    pub fn take(&self) -> Vec<ControlRequest> {
        let mut queue = self.0.queue.locked();
        self.0.pending.store(false, Ordering::SeqCst);
        std::mem::take(&mut *queue)
    }

    /// Waits up to `timeout` for a request (a paused trainer's sleep, woken
    /// at once by the next request); returns what arrived.
    pub fn wait(&self, timeout: Duration) -> Vec<ControlRequest> {
        let queue = self.0.queue.locked();
        let (mut queue, _) = self
            .0
            .arrived
            .wait_timeout_while(queue, timeout, |q| q.is_empty())
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        self.0.pending.store(false, Ordering::SeqCst);
        std::mem::take(&mut *queue)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_arrive_in_order_and_wake_a_waiting_trainer() {
        let controls = Controls::new();
        assert!(!controls.has_pending());
        controls.send(ControlAction::Pause, "page");
        controls.send(
            ControlAction::SetLr {
                lr: 3e-4,
                schedule: None,
            },
            "cli",
        );
        assert!(controls.has_pending());
        let got = controls.take();
        assert_eq!(got.len(), 2);
        assert_eq!(got[0].action, ControlAction::Pause);
        assert_eq!(got[1].source, "cli");
        assert!(!controls.has_pending());

        let asker = controls.clone();
        let t = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(50));
            asker.send(ControlAction::Resume, "api");
        });
        let started = std::time::Instant::now();
        let got = controls.wait(Duration::from_secs(10));
        assert_eq!(got[0].action, ControlAction::Resume);
        assert!(started.elapsed() < Duration::from_secs(5));
        t.join().unwrap();
        assert!(controls.wait(Duration::from_millis(10)).is_empty());
    }

    #[test]
    fn a_control_event_round_trips_with_its_action_inline() {
        let event = crate::Event {
            seq: 3,
            ts_ms: 1,
            run_id: "r".into(),
            kind: crate::EventKind::Control(Control {
                action: ControlAction::SetLr {
                    lr: 3e-4,
                    schedule: Some("cosine".into()),
                },
                step: 120,
                epoch: 2,
                source: "page".into(),
                old_lr: Some(1e-3),
                old_schedule: Some("constant".into()),
                paused_seconds: None,
                message: "m".into(),
            }),
        };
        let text = serde_json::to_string(&event).unwrap();
        assert!(
            text.contains(r#""type":"control","action":"set_lr","lr":0.0003"#),
            "{text}"
        );
        let back: crate::Event = serde_json::from_str(&text).unwrap();
        assert_eq!(back, event);
        let eval: ControlAction = serde_json::from_str(r#"{"action":"eval"}"#).unwrap();
        assert_eq!(eval, ControlAction::Eval { split: Split::Val });
        for name in ControlAction::NAMES {
            let text = match name {
                "set_lr" => r#"{"action":"set_lr","lr":0.1}"#.to_string(),
                n => format!(r#"{{"action":"{n}"}}"#),
            };
            let a: ControlAction = serde_json::from_str(&text).unwrap();
            assert_eq!(a.name(), name);
        }
    }
}
