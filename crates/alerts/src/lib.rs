//! # mnist-alerts: rules evaluated on the event stream
//!
//! [`AlertEngine`] is an [`Observer`] of a run's stream: it reads `batch`,
//! `eval` and `hardware` events and derives `alert` events from them. Each
//! rule fires once when its condition starts and re-arms when it clears, so
//! a GPU that stays hot gives one alert, not one a second.
//!
//! Rules ([`AlertRules`] holds the thresholds):
//! * `loss_not_finite` — a batch loss is NaN or infinite (critical; stops the
//!   run when `stop_on_nan` is set);
//! * `loss_spike` — a batch loss over [`diagnose::SPIKE`] times its smoothed
//!   baseline;
//! * `grad_jump` — a layer's gradient norm (from the `layers` samples) over
//!   [`diagnose::RISE`] times its median of the earlier samples;
//! * `loss_rising` — validation loss rose at N consecutive evaluations;
//! * `gpu_temperature` — a GPU is hotter than the threshold;
//! * `gpu_memory`, `host_memory` — more than 95% used;
//! * `gpu_idle` — every GPU under 10% busy for 30 s while a GPU run trains;
//! * `disk_full` — a disk holding runs or checkpoints is over 95% full;
//! * `stalled` — no batch (nor evaluation, nor phase change) for
//!   [`AlertRules::stall_seconds`] while the run trains; checked on each
//!   hardware sample, so it needs the sampler on (`--hw-interval` > 0).
//!
//! Those three carry a [`mnist_events::Diagnosis`] ([`diagnose`]): the
//! step and learning rate, which layer's gradient norm rose first and by
//! how much, the share of dead ReLU units, what to try and the last good
//! checkpoint to fork from.
//!
//! [`WebhookSink`] POSTs each alert and the run's end to a URL, as Slack,
//! Discord or plain JSON ([`WebhookFormat`]), from a thread of its own, so
//! a slow endpoint never slows training.

pub mod diagnose;
mod webhook;

pub use webhook::{body as webhook_body, Webhook, WebhookError, WebhookFormat, WebhookSink};

use mnist_events::{
    Alert, AlertSeverity, BatchMetrics, EvalMetrics, Event, EventKind, GpuStats, HardwareSnapshot,
    Observer, Split, Stop, StopReason,
};
use std::collections::HashSet;

/// Thresholds of the rules.
#[derive(Debug, Clone)]
pub struct AlertRules {
    /// GPU temperature above which `gpu_temperature` fires, °C (it re-arms
    /// 5 °C below).
    pub gpu_temperature_celsius: f64,
    /// Used/total above which memory (GPU or host) alerts.
    pub memory_ratio: f64,
    /// Utilisation under which a GPU counts as idle, percent.
    pub gpu_idle_percent: f64,
    /// Seconds every GPU must stay idle during a GPU run before `gpu_idle`
    /// fires.
    pub gpu_idle_seconds: f64,
    /// Consecutive rising validation losses.
    pub loss_rising_evals: usize,
    /// Used/total above which a watched disk alerts.
    pub disk_ratio: f64,
    /// Seconds without progress (a batch, an evaluation, a phase) after
    /// which a training run is `stalled`; 0 turns the rule off.
    pub stall_seconds: f64,
}

impl Default for AlertRules {
    fn default() -> Self {
        Self {
            gpu_temperature_celsius: 85.0,
            memory_ratio: 0.95,
            gpu_idle_percent: 10.0,
            gpu_idle_seconds: 30.0,
            loss_rising_evals: 3,
            disk_ratio: 0.95,
            stall_seconds: 600.0,
        }
    }
}

/// The rules as an [`Observer`]: turns `batch`, `eval` and `hardware`
/// events into `alert` events.
pub struct AlertEngine {
    rules: AlertRules,
    /// Set to stop the run on a NaN loss (`--stop-on-nan`).
    stop_on_nan: Option<Stop>,
    /// Conditions currently true (by rule and subject), so each fires once.
    active: HashSet<String>,
    /// Whether a run is training on a GPU backend.
    gpu_run: bool,
    training: bool,
    val_losses: Vec<f64>,
    /// When every GPU went idle during training (ms).
    idle_since_ms: Option<u64>,
    /// When the run last made progress (ms): its start, a batch, an
    /// evaluation or a phase change; and the step it had reached.
    progress: (u64, u64),
    /// What the diagnosis of a run going wrong has seen.
    doctor: diagnose::Doctor,
}

impl AlertEngine {
    /// An engine with `rules`; given `stop_on_nan`, a non-finite loss also
    /// asks that handle to stop the run.
    pub fn new(rules: AlertRules, stop_on_nan: Option<Stop>) -> Self {
        Self {
            rules,
            stop_on_nan,
            active: HashSet::new(),
            gpu_run: false,
            training: false,
            val_losses: Vec::new(),
            idle_since_ms: None,
            progress: (0, 0),
            doctor: Default::default(),
        }
    }

    /// Records whether `key`'s condition holds; returns true when it just
    /// started to.
    fn edge(&mut self, key: String, holds: bool) -> bool {
        if holds {
            self.active.insert(key)
        } else {
            self.active.remove(&key);
            false
        }
    }

    /// The alerts `event` fires.
    pub fn check(&mut self, event: &Event) -> Vec<Alert> {
        match &event.kind {
            EventKind::Batch(b) => self.progress = (event.ts_ms, b.step),
            EventKind::RunStarted(_) | EventKind::Eval(_) | EventKind::Phase(_) => {
                self.progress.0 = event.ts_ms;
                self.edge("stalled".into(), false);
            }
            _ => {}
        }
        match &event.kind {
            EventKind::RunStarted(r) => {
                self.doctor.started(r);
                self.training = true;
                self.gpu_run = r.backend != "cpu";
                self.idle_since_ms = None;
                Vec::new()
            }
            EventKind::RunFinished(_) => {
                self.training = false;
                Vec::new()
            }
            EventKind::Batch(b) => {
                self.edge("stalled".into(), false);
                let spike = self.check_spike(b);
                self.check_batch(b).into_iter().chain(spike).collect()
            }
            EventKind::Layers(s) => self.check_layers(s).into_iter().collect(),
            EventKind::Checkpoint(c) => {
                self.doctor.checkpoint(c);
                Vec::new()
            }
            EventKind::Eval(m) if m.split == Split::Val => self.check_val(m).into_iter().collect(),
            EventKind::Hardware(h) => self.check_hardware(h),
            _ => Vec::new(),
        }
    }

    /// A loss that is NaN or infinite (and, with `--stop-on-nan`, the stop).
    fn check_batch(&mut self, b: &BatchMetrics) -> Option<Alert> {
        if !self.edge("loss_not_finite".into(), !b.loss.is_finite()) {
            return None;
        }
        let action = self.stop_on_nan.as_ref().map(|stop| {
            stop.request(StopReason::LossNotFinite);
            "run stopped (--stop-on-nan)".to_string()
        });
        let diagnosis = self.doctor.diagnose(b.step, diagnose::Cause::NotFinite);
        let what = format!("loss is {} in epoch {} batch {}", b.loss, b.epoch, b.batch);
        Some(Alert {
            rule: "loss_not_finite".into(),
            severity: AlertSeverity::Critical,
            message: diagnose::sentence(&what, &diagnosis),
            value: None,
            threshold: None,
            action,
            diagnosis: Some(Box::new(diagnosis)),
        })
    }

    /// A loss far over its smoothed baseline (re-armed once it is back
    /// under half the spike).
    fn check_spike(&mut self, b: &BatchMetrics) -> Option<Alert> {
        let spike = self.doctor.batch(b);
        let holds = match (spike, self.active.contains("loss_spike")) {
            (Some(_), _) => true,
            (None, true) => self
                .doctor
                .baseline()
                .is_some_and(|base| b.loss > diagnose::SPIKE / 2.0 * base),
            (None, false) => false,
        };
        let (base, threshold) = spike?;
        self.edge("loss_spike".into(), holds).then(|| {
            let diagnosis = self.doctor.diagnose(b.step, diagnose::Cause::Spike);
            let what = format!(
                "loss spiked to {}, {}× its smoothed {},",
                diagnose::num(b.loss),
                diagnose::num(b.loss / base),
                diagnose::num(base)
            );
            Alert {
                rule: "loss_spike".into(),
                severity: AlertSeverity::Warning,
                message: diagnose::sentence(&what, &diagnosis),
                value: Some(b.loss),
                threshold: Some(threshold),
                action: None,
                diagnosis: Some(Box::new(diagnosis)),
            }
        })
    }

    /// A layer's gradient norm jumping over its earlier samples.
    fn check_layers(&mut self, s: &mnist_events::LayerStats) -> Option<Alert> {
        let jump = self.doctor.layers(s);
        let holds = jump.is_some();
        if !self.edge("grad_jump".into(), holds) {
            return None;
        }
        let (layer, rise) = jump?;
        let mut diagnosis = self.doctor.diagnose(s.step, diagnose::Cause::GradJump);
        diagnosis.layer = Some(layer.clone());
        diagnosis.rise = rise;
        diagnosis.rose_at_step = Some(s.step);
        let what = format!("{layer}'s gradient norm jumped");
        Some(Alert {
            rule: "grad_jump".into(),
            severity: AlertSeverity::Warning,
            message: diagnose::sentence(&what, &diagnosis),
            value: Some(rise),
            threshold: Some(diagnose::RISE),
            action: None,
            diagnosis: Some(Box::new(diagnosis)),
        })
    }

    /// Validation loss rising at `loss_rising_evals` evaluations in a row.
    fn check_val(&mut self, m: &EvalMetrics) -> Option<Alert> {
        self.val_losses.push(m.loss);
        let n = self.rules.loss_rising_evals;
        let tail = &self.val_losses[self.val_losses.len().saturating_sub(n + 1)..];
        let rising = tail.len() == n + 1 && tail.windows(2).all(|w| w[1] > w[0]);
        self.edge("loss_rising".into(), rising).then(|| Alert {
            rule: "loss_rising".into(),
            severity: AlertSeverity::Warning,
            message: format!(
                "validation loss rose at {n} evaluations in a row (now {:.4} at epoch {}): overfitting or a learning rate too high",
                m.loss, m.epoch
            ),
            value: Some(m.loss),
            threshold: None,
            action: None,
            diagnosis: None,
        })
    }

    fn check_hardware(&mut self, h: &HardwareSnapshot) -> Vec<Alert> {
        let mut out = Vec::new();
        for g in &h.gpus {
            out.extend(self.check_gpu_temperature(g));
            out.extend(self.check_gpu_memory(g));
        }
        out.extend(self.check_host_memory(h));
        out.extend(self.check_disks(h));
        out.extend(self.check_gpu_idle(h));
        out.extend(self.check_stalled(h.sampled_at_ms));
        out
    }

    /// No progress for `stall_seconds` while training (a hung data loader,
    /// a deadlocked GPU, a process stopped with SIGSTOP, a full disk).
    fn check_stalled(&mut self, now_ms: u64) -> Option<Alert> {
        let limit = self.rules.stall_seconds;
        let (since, step) = self.progress;
        let quiet_s = now_ms.saturating_sub(since) as f64 / 1000.0;
        let holds = self.training && limit > 0.0 && since > 0 && quiet_s >= limit;
        self.edge("stalled".into(), holds).then(|| {
            let message = format!(
                "no batch for {} (last at step {step}): the run may be stuck",
                minutes(quiet_s)
            );
            Self::warning("stalled", message, quiet_s, limit)
        })
    }

    fn warning(rule: &str, message: String, value: f64, threshold: f64) -> Alert {
        Alert {
            rule: rule.into(),
            severity: AlertSeverity::Warning,
            message,
            value: Some(value),
            threshold: Some(threshold),
            action: None,
            diagnosis: None,
        }
    }

    fn check_gpu_temperature(&mut self, g: &GpuStats) -> Option<Alert> {
        let t = g.temperature_celsius? as f64;
        let limit = self.rules.gpu_temperature_celsius;
        let key = format!("gpu_temperature/{}", g.index);
        // Re-arm only 5 °C below the threshold, not on every wobble.
        let holds = if self.active.contains(&key) {
            t > limit - 5.0
        } else {
            t > limit
        };
        self.edge(key, holds).then(|| {
            let message = format!("GPU {} is at {t} °C (threshold {limit} °C)", g.index);
            Self::warning("gpu_temperature", message, t, limit)
        })
    }

    fn check_gpu_memory(&mut self, g: &GpuStats) -> Option<Alert> {
        let (used, total) = (g.memory_used_bytes?, g.memory_total_bytes?);
        let ratio = used as f64 / total.max(1) as f64;
        let limit = self.rules.memory_ratio;
        self.edge(format!("gpu_memory/{}", g.index), ratio > limit)
            .then(|| {
                let message = format!("GPU {} memory is {:.1}% full", g.index, ratio * 100.0);
                Self::warning("gpu_memory", message, ratio, limit)
            })
    }

    fn check_host_memory(&mut self, h: &HardwareSnapshot) -> Option<Alert> {
        let ratio = h.memory.used_bytes as f64 / h.memory.total_bytes.max(1) as f64;
        let limit = self.rules.memory_ratio;
        self.edge("host_memory".into(), ratio > limit).then(|| {
            let message = format!("host memory is {:.1}% used", ratio * 100.0);
            Self::warning("host_memory", message, ratio, limit)
        })
    }

    fn check_disks(&mut self, h: &HardwareSnapshot) -> Vec<Alert> {
        let limit = self.rules.disk_ratio;
        let mut out = Vec::new();
        for d in h.disks.iter().filter(|d| !d.holds.is_empty()) {
            let used = 1.0 - d.available_bytes as f64 / d.total_bytes.max(1) as f64;
            if self.edge(format!("disk_full/{}", d.mount), used > limit) {
                let message = format!(
                    "disk {} (holding {}) is {:.1}% full",
                    d.mount,
                    d.holds.join(", "),
                    used * 100.0
                );
                out.push(Self::warning("disk_full", message, used, limit));
            }
        }
        out
    }

    /// Every GPU under `gpu_idle_percent` busy for `gpu_idle_seconds` while
    /// a GPU run trains.
    fn check_gpu_idle(&mut self, h: &HardwareSnapshot) -> Option<Alert> {
        let r = &self.rules;
        let idle = self.training
            && self.gpu_run
            && !h.gpus.is_empty()
            && h.gpus
                .iter()
                .all(|g| (g.utilization_percent.unwrap_or(0) as f64) < r.gpu_idle_percent);
        self.idle_since_ms = idle.then(|| self.idle_since_ms.unwrap_or(h.sampled_at_ms));
        let idle_s = self
            .idle_since_ms
            .map_or(0.0, |t| (h.sampled_at_ms.saturating_sub(t)) as f64 / 1000.0);
        let (percent, seconds) = (r.gpu_idle_percent, r.gpu_idle_seconds);
        self.edge("gpu_idle".into(), idle && idle_s >= seconds).then(|| {
            let message = format!(
                "the GPU has been under {percent}% busy for {idle_s:.0} s while training: the input pipeline or the host may be the bottleneck"
            );
            Self::warning("gpu_idle", message, idle_s, seconds)
        })
    }
}

fn minutes(seconds: f64) -> String {
    if seconds >= 120.0 {
        format!("{:.0} min", seconds / 60.0)
    } else {
        format!("{seconds:.0} s")
    }
}

impl Observer for AlertEngine {
    fn observe(&mut self, event: &Event) -> Vec<EventKind> {
        self.check(event)
            .into_iter()
            .map(EventKind::Alert)
            .collect()
    }
}

#[cfg(test)]
mod tests;
