//! A run's state, folded once from its events as they arrive ([`RunState::fold`]).
//!
//! The hub folds every event into this as it pushes it, and every view reads
//! it instead of replaying the log: the websocket snapshot, the run list,
//! `GET /api/runs/{id}`, `GET /api/runs/{id}/series` (zoomed, min/max
//! buckets), the CSV and `/metrics`. One status vocabulary ([`Status`]),
//! one series per batch metric, one value per step: a resumed run's
//! `run_started` (with `resumed_from_step`) cuts what the interrupted
//! attempt logged after its checkpoint.

use crate::protocol::{Latest, RunDetails, RunSummary, Snapshot, Status};
use crate::series::{self, HwPoint, Point, SeriesAnswer, DEFAULT_SMOOTHING, MAX_POINTS};
use mnist_events::{Event, EventKind, RunStatus, Split};
use serde_json::Value;
use std::sync::Arc;

/// Everything the views need, folded from the events once.
#[derive(Debug)]
pub struct RunState {
    run_id: String,
    /// A process is training this run and will push its events here.
    live: bool,
    first_ts_ms: Option<u64>,
    started: Option<Arc<Event>>,
    /// `run_finished` of the latest attempt (cleared by a resumption).
    finished: Option<Arc<Event>>,
    points: Vec<Point>,
    /// The hardware samples taken while it trained.
    hardware: Vec<HwPoint>,
    /// The events the snapshot carries in full (all but batches and
    /// hardware samples), in order.
    others: Vec<Arc<Event>>,
    last_batch: Option<Arc<Event>>,
    last_val: Option<Arc<Event>>,
    last_test: Option<Arc<Event>>,
    last_samples: Option<Arc<Event>>,
    last_checkpoint: Option<Arc<Event>>,
    epochs_checkpointed: usize,
    /// The latest `control` was a pause (cleared by resume, a new start
    /// and the end).
    paused: bool,
    /// Alerts fired, by rule, in the order rules first fired.
    alerts: Vec<(String, u64)>,
    /// The layer samples and histograms (not in the snapshot's events:
    /// `GET /api/runs/{id}/layers` serves them).
    layers: crate::layers::LayerHistory,
    last_seq: u64,
}

impl RunState {
    /// An empty state for `run_id`; `live` when a process is training it.
    pub fn new(run_id: impl Into<String>, live: bool) -> Self {
        Self {
            run_id: run_id.into(),
            live,
            first_ts_ms: None,
            started: None,
            finished: None,
            points: Vec::new(),
            hardware: Vec::new(),
            others: Vec::new(),
            last_batch: None,
            last_val: None,
            last_test: None,
            last_samples: None,
            last_checkpoint: None,
            epochs_checkpointed: 0,
            paused: false,
            alerts: Vec::new(),
            layers: Default::default(),
            last_seq: 0,
        }
    }

    /// Folds one event in (events arrive in `seq` order).
    pub fn fold(&mut self, event: &Arc<Event>) {
        self.first_ts_ms.get_or_insert(event.ts_ms);
        self.last_seq = event.seq;
        match &event.kind {
            EventKind::Batch(b) => {
                self.points.push(Point {
                    step: b.step,
                    epoch: b.epoch,
                    batch: b.batch,
                    batches: b.batches,
                    ts_ms: event.ts_ms,
                    loss: b.loss,
                    accuracy: b.accuracy,
                    f1_macro: b.f1_macro,
                    lr: b.lr,
                    images_per_sec: b.images_per_sec,
                });
                self.last_batch = Some(event.clone());
                return;
            }
            EventKind::Hardware(h) => {
                self.hardware.push(HwPoint::of(h));
                return;
            }
            EventKind::Layers(s) => {
                self.layers.push_sample(event.ts_ms, s);
                return;
            }
            EventKind::Histograms(h) => {
                self.layers.push_histograms(h);
                return;
            }
            EventKind::RunStarted(r) => {
                if let Some(step) = r.resumed_from_step {
                    self.cut_after(step);
                }
                self.started = Some(event.clone());
                // A resumption starts over: the earlier end no longer holds.
                self.finished = None;
                self.paused = false;
            }
            EventKind::Control(c) => match c.action {
                mnist_events::ControlAction::Pause => self.paused = true,
                mnist_events::ControlAction::Resume => self.paused = false,
                _ => {}
            },
            EventKind::Eval(m) => match m.split {
                Split::Test => self.last_test = Some(event.clone()),
                _ => self.last_val = Some(event.clone()),
            },
            EventKind::Samples(_) => self.last_samples = Some(event.clone()),
            EventKind::Checkpoint(c) => {
                self.epochs_checkpointed = self.epochs_checkpointed.max(c.epoch);
                self.last_checkpoint = Some(event.clone());
            }
            EventKind::RunFinished(_) => {
                self.finished = Some(event.clone());
                self.live = false;
                self.paused = false;
            }
            EventKind::Alert(a) => match self.alerts.iter_mut().find(|(r, _)| *r == a.rule) {
                Some((_, n)) => *n += 1,
                None => self.alerts.push((a.rule.clone(), 1)),
            },
            _ => {}
        }
        self.others.push(event.clone());
    }

    /// Forgets what an interrupted attempt logged after `step`: the
    /// resumption trains those steps again.
    fn cut_after(&mut self, step: u64) {
        let keep = self.points.partition_point(|p| p.step <= step);
        self.points.truncate(keep);
        self.layers.cut_after(step);
        let after = |e: &Arc<Event>| match &e.kind {
            EventKind::Eval(m) => m.step > step,
            EventKind::Samples(s) => s.step > step,
            _ => false,
        };
        self.others.retain(|e| !after(e));
        self.last_val =
            self.last_where(|k| matches!(k, EventKind::Eval(m) if m.split != Split::Test));
        self.last_test =
            self.last_where(|k| matches!(k, EventKind::Eval(m) if m.split == Split::Test));
        self.last_samples = self.last_where(|k| matches!(k, EventKind::Samples(_)));
        if self
            .last_batch
            .as_ref()
            .is_some_and(|e| matches!(&e.kind, EventKind::Batch(b) if b.step > step))
        {
            self.last_batch = None;
        }
    }

    fn last_where(&self, pick: impl Fn(&EventKind) -> bool) -> Option<Arc<Event>> {
        self.others.iter().rev().find(|e| pick(&e.kind)).cloned()
    }

    /// About how many bytes the folded state holds beyond its events.
    pub fn approx_bytes(&self) -> usize {
        self.points.capacity() * std::mem::size_of::<Point>()
            + self.hardware.capacity() * std::mem::size_of::<HwPoint>()
            + self.others.capacity() * std::mem::size_of::<Arc<Event>>()
            + self.layers.approx_bytes()
    }

    /// Every event but batches and hardware samples, in order (the
    /// snapshot's `events`).
    pub fn events(&self) -> impl Iterator<Item = &Arc<Event>> {
        self.others.iter()
    }

    /// The id of the run folded here.
    pub fn run_id(&self) -> &str {
        &self.run_id
    }

    /// Whether a process still trains this run (false after `run_finished`
    /// or [`RunState::abandon`]).
    pub fn is_live(&self) -> bool {
        self.live
    }

    /// Marks a live run as no longer trained by anyone (its trainer went
    /// away without `run_finished`).
    pub fn abandon(&mut self) {
        self.live = false;
    }

    /// Whether a process trains this run (a followed log: it grows).
    pub fn set_live(&mut self, live: bool) {
        self.live = live && self.finished.is_none();
    }

    /// The `seq` of the latest event folded, 0 before any.
    pub fn last_seq(&self) -> u64 {
        self.last_seq
    }

    /// From `run_finished` if the latest attempt has one, else running while
    /// live, else interrupted.
    pub fn status(&self) -> Status {
        match self.finished.as_deref().map(|e| &e.kind) {
            Some(EventKind::RunFinished(f)) => match f.status {
                RunStatus::Completed => Status::Completed,
                RunStatus::Stopped => Status::Stopped,
                RunStatus::Failed => Status::Failed,
            },
            _ if self.live && self.paused => Status::Paused,
            _ if self.live => Status::Running,
            _ => Status::Interrupted,
        }
    }

    /// The batch metrics, one point per step, in step order.
    pub fn points(&self) -> &[Point] {
        &self.points
    }

    /// The latest `batch` event, if any.
    pub fn last_batch(&self) -> Option<&Arc<Event>> {
        self.last_batch.as_ref()
    }

    /// The latest attempt's `run_started`, once it arrived.
    pub fn started(&self) -> Option<&mnist_events::RunStarted> {
        match self.started.as_deref().map(|e| &e.kind) {
            Some(EventKind::RunStarted(r)) => Some(r),
            _ => None,
        }
    }

    fn run_finished(&self) -> Option<&mnist_events::RunFinished> {
        match self.finished.as_deref().map(|e| &e.kind) {
            Some(EventKind::RunFinished(f)) => Some(f),
            _ => None,
        }
    }

    /// The latest evaluation on `split` (`val` or `test`).
    pub fn last_eval(&self, split: Split) -> Option<&mnist_events::EvalMetrics> {
        Self::eval_of(if split == Split::Test {
            &self.last_test
        } else {
            &self.last_val
        })
    }

    /// Alerts fired so far, by rule.
    pub fn alert_counts(&self) -> &[(String, u64)] {
        &self.alerts
    }

    fn eval_of(slot: &Option<Arc<Event>>) -> Option<&mnist_events::EvalMetrics> {
        match slot.as_deref().map(|e| &e.kind) {
            Some(EventKind::Eval(m)) => Some(m),
            _ => None,
        }
    }

    /// The run's row in the history.
    pub fn summary(&self) -> RunSummary {
        let started = self.started();
        let finished = self.run_finished();
        let test = Self::eval_of(&self.last_test);
        RunSummary {
            run_id: self.run_id.clone(),
            status: self.status(),
            started_ms: self.first_ts_ms.unwrap_or(0),
            finished_ms: self.finished.as_ref().map(|e| e.ts_ms),
            config: started.map_or(Value::Null, |s| s.config.clone()),
            backend: started.map(|s| s.backend.clone()),
            device: started.map(|s| s.device.clone()),
            device_index: started.and_then(|s| s.device_index),
            device_reason: started.and_then(|s| s.device_reason.clone()),
            params: started.map(|s| s.model.total_params),
            epochs_completed: finished.map_or(self.epochs_checkpointed, |f| f.epochs_completed),
            steps: self.points.last().map_or(0, |p| p.step),
            last_loss: self.points.last().map(|p| p.loss),
            val_accuracy: Self::eval_of(&self.last_val).map(|m| m.accuracy),
            test_accuracy: test.map(|m| m.accuracy),
            test_f1_macro: test.map(|m| m.f1_macro),
            error: finished.and_then(|f| f.error.clone()),
            sweep: None,
            parent: started.and_then(|s| s.parent.clone()),
            meta: Default::default(),
            disk: Default::default(),
        }
    }

    /// `GET /api/runs/{id}`: configuration, model, status and the latest
    /// of each kind of event. What only the server knows (the user's
    /// words, the checkpoints on disk, whether it may steer or resume the
    /// run) is left empty for the handler to fill in.
    pub fn details(&self) -> RunDetails {
        let summary = self.summary();
        RunDetails {
            run_id: self.run_id.clone(),
            status: summary.status,
            config: summary.config.clone(),
            model: self.started().map(|s| s.model.clone()),
            backend: summary.backend.clone(),
            device: summary.device.clone(),
            device_index: summary.device_index,
            device_reason: summary.device_reason.clone(),
            last_seq: self.last_seq,
            latest: Latest {
                batch: self.last_batch.clone(),
                val: self.last_val.clone(),
                test: self.last_test.clone(),
                samples: self.last_samples.clone(),
                checkpoint: self.last_checkpoint.clone(),
            },
            parent: summary.parent.clone(),
            summary,
            meta: Default::default(),
            checkpoint_epochs: Vec::new(),
            can_control: false,
            can_resume: false,
        }
    }

    /// The series between steps `from` and `to` (inclusive) on one shared
    /// step axis, reduced to about `max` points (see [`series::answer`]).
    pub fn series(&self, from: u64, to: u64, max: usize, smoothing: f64) -> SeriesAnswer {
        series::answer(&self.points, from, to, max, smoothing)
    }

    /// The run's hardware samples, at most `max`: per bucket of consecutive
    /// samples the largest of each (a short spike stays visible), at the
    /// bucket's last sample's time.
    pub fn hardware(&self, max: usize) -> Vec<HwPoint> {
        let n = self.hardware.len();
        if n <= max || max == 0 {
            return self.hardware.clone();
        }
        let max_of = |a: Option<f64>, b: Option<f64>| match (a, b) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        };
        (0..max)
            .map(|b| {
                let bucket = &self.hardware[b * n / max..((b + 1) * n / max).max(b * n / max + 1)];
                bucket.iter().skip(1).fold(bucket[0], |acc, p| HwPoint {
                    ts_ms: p.ts_ms,
                    cpu_percent: acc.cpu_percent.max(p.cpu_percent),
                    rss_bytes: acc.rss_bytes.max(p.rss_bytes),
                    gpu_percent: max_of(acc.gpu_percent, p.gpu_percent),
                    gpu_memory_bytes: max_of(acc.gpu_memory_bytes, p.gpu_memory_bytes),
                })
            })
            .collect()
    }

    /// The first message a viewer gets (as the websocket envelope's
    /// snapshot).
    pub fn snapshot(&self) -> Snapshot {
        Snapshot {
            run_id: self.run_id.clone(),
            live: self.live,
            status: self.status(),
            last_seq: self.last_seq,
            batch_count: self.points.len(),
            events: self.others.clone(),
            last_batch: self.last_batch.clone(),
            series: self.series(0, u64::MAX, MAX_POINTS, DEFAULT_SMOOTHING),
            hardware: self.hardware(MAX_POINTS),
        }
    }

    /// The layer samples and histograms.
    pub fn layers(&self) -> &crate::layers::LayerHistory {
        &self.layers
    }

    /// Batch and evaluation metrics as CSV, one row per step and per
    /// evaluation, and one per layer of each layer sample.
    pub fn csv(&self) -> String {
        let mut out = format!(
            "kind,split,epoch,batch,step,loss,accuracy,f1_macro,mse,lr,images_per_sec,ts_ms,{}\n",
            crate::layers::CSV_COLUMNS
        );
        let mut samples = self.layers.samples().iter().peekable();
        let mut evals = self.others.iter().filter_map(|e| match &e.kind {
            EventKind::Eval(m) => Some((e.ts_ms, m)),
            _ => None,
        });
        let mut next_eval = evals.next();
        for p in &self.points {
            while let Some((ts, m)) = next_eval.filter(|(_, m)| m.step < p.step) {
                out += &eval_row(ts, m);
                next_eval = evals.next();
            }
            out += &format!(
                "batch,train,{},{},{},{},{},{},,{},{},{},,,,,,,\n",
                p.epoch,
                p.batch,
                p.step,
                p.loss,
                p.accuracy,
                p.f1_macro,
                p.lr,
                p.images_per_sec,
                p.ts_ms
            );
            while let Some((ts, sample)) = samples.next_if(|(_, s)| s.step <= p.step) {
                out += &crate::layers::csv_rows(*ts, sample);
            }
        }
        while let Some((ts, m)) = next_eval {
            out += &eval_row(ts, m);
            next_eval = evals.next();
        }
        for (ts, sample) in samples {
            out += &crate::layers::csv_rows(*ts, sample);
        }
        out
    }
}

/// The runs CSV's header (`GET /api/runs.csv`): identity, the user's name
/// and tags, status, one column per configuration field (the config table,
/// `mnist_train::config::FIELDS`) and the results.
pub fn runs_csv_head() -> String {
    let mut head = vec!["run_id", "name", "tags", "status", "started_ms"];
    head.extend(mnist_train::config::FIELDS.iter().map(|f| f.name));
    head.extend(CSV_RESULTS);
    head.join(",") + "\n"
}

/// The runs CSV's columns after the config fields.
const CSV_RESULTS: [&str; 14] = [
    // The config's `backend` and `device` are what was asked (`auto`);
    // these are what ran.
    "ran_on",
    "ran_on_device",
    "device_name",
    "params",
    "epochs_completed",
    "steps",
    "last_loss",
    "val_accuracy",
    "test_accuracy",
    "test_f1_macro",
    "error",
    "finished_ms",
    "run_bytes",
    "checkpoint_bytes",
];

/// One run's line of the runs CSV (see [`runs_csv_head`]).
pub fn runs_csv_row(r: &RunSummary) -> String {
    let config_cell = |name: &str| match r.config.get(name) {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(s)) => s.clone(),
        Some(Value::Array(a)) => a
            .iter()
            .map(|v| v.to_string())
            .collect::<Vec<_>>()
            .join(" "),
        Some(v) => v.to_string(),
    };
    let opt = |v: Option<f64>| v.map_or(String::new(), |v| v.to_string());
    let mut cells = vec![
        r.run_id.clone(),
        r.meta.name.clone().unwrap_or_default(),
        r.meta.tags.join(" "),
        r.status.as_str().to_string(),
        r.started_ms.to_string(),
    ];
    cells.extend(
        mnist_train::config::FIELDS
            .iter()
            .map(|f| config_cell(f.name)),
    );
    cells.extend([
        r.backend.clone().unwrap_or_default(),
        r.device_index.map_or(String::new(), |i| i.to_string()),
        r.device.clone().unwrap_or_default(),
        r.params.map_or(String::new(), |p| p.to_string()),
        r.epochs_completed.to_string(),
        r.steps.to_string(),
        opt(r.last_loss),
        opt(r.val_accuracy),
        opt(r.test_accuracy),
        opt(r.test_f1_macro),
        r.error.clone().unwrap_or_default(),
        r.finished_ms.map_or(String::new(), |v| v.to_string()),
        r.disk.run_bytes.to_string(),
        r.disk.checkpoint_bytes.to_string(),
    ]);
    let mut line = cells
        .iter()
        .map(|c| csv_cell(c))
        .collect::<Vec<_>>()
        .join(",");
    line.push('\n');
    line
}

/// Every run as CSV, one row each (see [`runs_csv_head`]).
pub fn runs_csv(rows: &[RunSummary]) -> String {
    let mut out = runs_csv_head();
    out.extend(rows.iter().map(runs_csv_row));
    out
}

/// A CSV cell, quoted when it holds a comma, quote or line break; a cell a
/// spreadsheet would run as a formula (`=`, `+`, `-`, `@` first) gets a `'`.
fn csv_cell(s: &str) -> String {
    let s = if s.starts_with(['=', '+', '@']) || (s.starts_with('-') && s.parse::<f64>().is_err()) {
        format!("'{s}")
    } else {
        s.to_string()
    };
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s
    }
}

fn eval_row(ts_ms: u64, m: &mnist_events::EvalMetrics) -> String {
    format!(
        "eval,{},{},,{},{},{},{},{},,,{},,,,,,,\n",
        m.split.as_str(),
        m.epoch,
        m.step,
        m.loss,
        m.accuracy,
        m.f1_macro,
        m.mse,
        ts_ms
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::series::{bucket_extremes, Ema};
    use mnist_events::{BatchMetrics, RunFinished};
    use serde_json::json;

    fn batch(seq: u64, step: u64, loss: f64) -> Arc<Event> {
        Arc::new(Event {
            seq,
            ts_ms: seq,
            run_id: "r".into(),
            kind: EventKind::Batch(BatchMetrics {
                epoch: 1,
                batch: step as usize,
                batches: 100,
                step,
                size: 8,
                loss,
                accuracy: 0.5,
                f1_macro: 0.5,
                epoch_loss: loss,
                epoch_accuracy: 0.5,
                epoch_f1_macro: 0.5,
                lr: 1e-3,
                images_per_sec: 100.0,
                elapsed_s: 0.0,
            }),
        })
    }

    fn started(seq: u64, resumed_from_step: Option<u64>) -> Arc<Event> {
        let mut value = json!({
            "seq": seq, "ts_ms": seq, "run_id": "r", "type": "run_started",
            "config": {}, "backend": "cpu", "device": "cpu",
            "model": {"input_shape": [1, 28, 28], "layers": [], "total_params": 1},
            "train_size": 1, "val_size": 0, "test_size": 1, "batches_per_epoch": 100,
        });
        if let Some(step) = resumed_from_step {
            value["resumed_from_epoch"] = json!(1);
            value["resumed_from_step"] = json!(step);
        }
        Arc::new(serde_json::from_value(value).unwrap())
    }

    fn finished(seq: u64, status: RunStatus) -> Arc<Event> {
        Arc::new(Event {
            seq,
            ts_ms: seq,
            run_id: "r".into(),
            kind: EventKind::RunFinished(RunFinished {
                status,
                error: None,
                reason: None,
                epochs_completed: 1,
                steps: 0,
                train_seconds: 0.0,
                test_accuracy: None,
                test_f1_macro: None,
                test_loss: None,
            }),
        })
    }

    #[test]
    fn a_resume_keeps_one_value_per_step_and_the_status_follows_the_log() {
        let mut s = RunState::new("r", false);
        s.fold(&started(1, None));
        for step in 1..=30 {
            s.fold(&batch(1 + step, step, 1.0));
        }
        assert_eq!(
            s.status(),
            Status::Interrupted,
            "no run_finished, nobody training"
        );
        // Killed after step 30; the checkpoint was at step 20.
        s.fold(&started(40, Some(20)));
        for step in 21..=25 {
            s.fold(&batch(40 + step, step, 0.5));
        }
        let steps: Vec<u64> = s.points().iter().map(|p| p.step).collect();
        assert_eq!(steps, (1..=25).collect::<Vec<_>>());
        assert_eq!(
            s.points()[22].loss,
            0.5,
            "the redone steps replace the killed attempt's"
        );
        s.fold(&finished(70, RunStatus::Completed));
        assert_eq!(s.status(), Status::Completed);
        let csv_steps = s.csv().lines().filter(|l| l.starts_with("batch,")).count();
        assert_eq!(csv_steps, 25);
    }

    #[test]
    fn the_runs_csv_has_a_column_per_config_field_and_quotes_user_text() {
        let mut s = RunState::new("r", false);
        s.fold(&started(1, None));
        let mut row = s.summary();
        row.config = json!({"kernels": [4, 8, 8, 8], "lr": 0.001, "optimizer": "adam"});
        row.meta.name = Some("=cmd|' /C calc'!A0, \"quoted\"".into());
        row.meta.tags = vec!["a".into(), "b".into()];
        let csv = runs_csv(&[row]);
        let mut lines = csv.lines();
        let head: Vec<&str> = lines.next().unwrap().split(',').collect();
        for f in mnist_train::config::FIELDS {
            assert!(head.contains(&f.name), "no column for {}", f.name);
        }
        let mut unique = head.clone();
        unique.sort();
        unique.dedup();
        assert_eq!(unique.len(), head.len(), "a column named twice: {head:?}");
        let line = lines.next().unwrap();
        assert!(
            line.starts_with("r,\"'=cmd|' /C calc'!A0, \"\"quoted\"\"\",a b,interrupted,"),
            "{line}"
        );
        assert!(line.contains(",4 8 8 8,"), "{line}");
        assert!(line.contains(",0.001,"), "{line}");
    }

    #[test]
    fn a_live_run_is_running_until_it_finishes() {
        let mut s = RunState::new("r", true);
        s.fold(&started(1, None));
        assert_eq!(s.status(), Status::Running);
        s.fold(&finished(2, RunStatus::Stopped));
        assert_eq!(s.status(), Status::Stopped);
        assert!(!s.is_live());
    }

    fn loss_series(v: &Value) -> Vec<f64> {
        v["loss"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_f64().unwrap_or(f64::NAN))
            .collect()
    }

    #[test]
    fn series_zooms_to_full_resolution_and_buckets_keep_spikes() {
        let mut s = RunState::new("r", false);
        for step in 1..=100_000u64 {
            let loss = if step == 54_321 {
                1e6
            } else {
                (step % 7) as f64
            };
            s.fold(&batch(step, step, loss));
        }
        let all = serde_json::to_value(s.series(0, u64::MAX, MAX_POINTS, 0.9)).unwrap();
        let steps = all["step"].as_array().unwrap();
        assert!(steps.len() <= MAX_POINTS * 5 / 2);
        assert!(
            steps.windows(2).all(|w| w[0].as_u64() < w[1].as_u64()),
            "steps increase"
        );
        assert!(loss_series(&all).contains(&1e6), "the spike survives");
        for key in ["accuracy", "lr", "epoch", "ts_ms"] {
            assert_eq!(
                all[key].as_array().unwrap().len(),
                steps.len(),
                "{key} on the same steps"
            );
        }
        let zoom = serde_json::to_value(s.series(54_000, 54_999, MAX_POINTS, 0.9)).unwrap();
        assert_eq!(zoom["in_range"], 1000);
        assert_eq!(loss_series(&zoom).len(), 1000, "full resolution");
        assert_eq!(zoom["lr"].as_array().unwrap().len(), 1000);
    }

    #[test]
    fn smoothing_is_computed_at_full_resolution_whatever_the_zoom() {
        let mut s = RunState::new("r", false);
        for step in 1..=50_000u64 {
            s.fold(&batch(step, step, ((step * 7919) % 1000) as f64 / 100.0));
        }
        // The reference: the average over every step, by hand.
        let mut ema = Ema::new(0.95);
        let reference: Vec<f64> = s
            .points()
            .iter()
            .map(|p| ema.push(p.loss).unwrap())
            .collect();
        let check = |v: &Value| {
            let steps = v["step"].as_array().unwrap();
            let smoothed = v["smoothed"]["loss"].as_array().unwrap();
            assert_eq!(steps.len(), smoothed.len());
            for (step, y) in steps.iter().zip(smoothed) {
                let want = reference[step.as_u64().unwrap() as usize - 1];
                assert!((y.as_f64().unwrap() - want).abs() < 1e-9, "step {step}");
            }
        };
        let whole = serde_json::to_value(s.series(0, u64::MAX, MAX_POINTS, 0.95)).unwrap();
        check(&whole);
        check(&serde_json::to_value(s.series(30_000, 30_500, MAX_POINTS, 0.95)).unwrap());
        // The state after the last step continues the curve on live batches.
        let end = &whole["ema"]["loss"];
        let (sum, weight) = (end[0].as_f64().unwrap(), end[1].as_f64().unwrap());
        assert!((sum / weight - reference[49_999]).abs() < 1e-9);
    }

    #[test]
    fn bucket_extremes_keep_every_metrics_extremes_in_order() {
        let mut s = RunState::new("r", false);
        for step in 1..=10_000u64 {
            s.fold(&batch(
                step,
                step,
                if step == 777 {
                    f64::NAN
                } else {
                    (step % 13) as f64
                },
            ));
        }
        let keep = bucket_extremes(s.points(), 400);
        assert!(keep.len() <= 1000 && keep.len() >= 100);
        assert!(keep.windows(2).all(|w| w[0] < w[1]));
        assert!(keep.contains(&776), "the NaN loss is kept");
        assert_eq!(bucket_extremes(&s.points()[..10], MAX_POINTS).len(), 10);
    }
}

/// The vectors the page's own series folding is tested against: written
/// by [`golden::vectors`], kept in `web/test/golden/series.json` and read
/// by `node --test web/test/`.
#[cfg(test)]
mod golden {
    use super::*;
    use mnist_events::BatchMetrics;
    use serde_json::json;

    /// Batch `step` of a made-up run: ten batches an epoch, a NaN loss at
    /// step 7 and a spike at 23; `scale` changes every value (a resumed
    /// attempt trains the same steps to other values).
    fn batch(step: u64, scale: f64) -> (Value, Arc<Event>) {
        let x = step as f64;
        let loss = match step {
            7 => f64::NAN,
            23 => 9.5,
            _ => scale * 2.3 * (-x / 15.0).exp() * (1.0 + 0.3 * x.sin()),
        };
        let accuracy = (1.0 - loss / 3.0).clamp(0.0, 1.0);
        let b = BatchMetrics {
            epoch: ((step - 1) / 10 + 1) as usize,
            batch: ((step - 1) % 10 + 1) as usize,
            batches: 10,
            step,
            size: 32,
            loss,
            accuracy: if loss.is_nan() { 0.1 } else { accuracy },
            f1_macro: 0.9 * accuracy,
            epoch_loss: loss,
            epoch_accuracy: accuracy,
            epoch_f1_macro: accuracy,
            lr: if step <= 20 { 1e-3 } else { 5e-4 * scale },
            images_per_sec: 400.0 + 37.0 * (step % 5) as f64 * scale,
            elapsed_s: 0.0,
        };
        let ts_ms = 1_796_000_000_000 + 250 * step + (scale * 10.0) as u64;
        let page = json!({
            "step": b.step, "epoch": b.epoch, "batch": b.batch, "batches": b.batches,
            "ts_ms": ts_ms, "loss": b.loss, "accuracy": b.accuracy, "f1_macro": b.f1_macro,
            "lr": b.lr, "images_per_sec": b.images_per_sec,
        });
        let event = Event {
            seq: step,
            ts_ms,
            run_id: "golden".into(),
            kind: EventKind::Batch(b),
        };
        (page, Arc::new(event))
    }

    fn started(resumed_from_step: Option<u64>) -> Arc<Event> {
        let mut value = json!({
            "seq": 0, "ts_ms": 0, "run_id": "golden", "type": "run_started",
            "config": {}, "backend": "cpu", "device": "cpu",
            "model": {"input_shape": [1, 28, 28], "layers": [], "total_params": 1},
            "train_size": 1, "val_size": 0, "test_size": 1, "batches_per_epoch": 10,
        });
        if let Some(step) = resumed_from_step {
            value["resumed_from_epoch"] = json!(2);
            value["resumed_from_step"] = json!(step);
        }
        Arc::new(serde_json::from_value(value).unwrap())
    }

    const SMOOTHING: f64 = 0.6;

    fn series_of(state: &RunState) -> Value {
        serde_json::to_value(state.series(0, u64::MAX, MAX_POINTS, SMOOTHING)).unwrap()
    }

    /// 40 batches, then a resume from step 20 that trains 21..=30 again.
    pub(super) fn vectors() -> Value {
        let mut state = RunState::new("golden", false);
        state.fold(&started(None));
        let first: Vec<(Value, Arc<Event>)> = (1..=40).map(|s| batch(s, 1.0)).collect();
        for (_, e) in &first {
            state.fold(e);
        }
        let series = series_of(&state);
        let keep = crate::series::bucket_extremes(state.points(), 16);
        state.fold(&started(Some(20)));
        let again: Vec<(Value, Arc<Event>)> = (21..=30).map(|s| batch(s, 0.5)).collect();
        for (_, e) in &again {
            state.fold(e);
        }
        let pages =
            |b: &[(Value, Arc<Event>)]| b.iter().map(|(p, _)| p.clone()).collect::<Vec<_>>();
        json!({
            "about": "written by crates/server/src/state.rs (golden::vectors); UPDATE_GOLDEN=1 cargo test -p mnist-server golden rewrites it",
            "schema": crate::series::schema(),
            "smoothing": SMOOTHING,
            "batches": pages(&first),
            "series": series,
            "bucketed": {"max": 16, "keep": keep},
            "resumed": {"from_step": 20, "batches": pages(&again), "series": series_of(&state)},
        })
    }

    #[test]
    fn the_pages_golden_series_vectors_are_the_servers() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../web/test/golden/series.json");
        let vectors = vectors();
        if std::env::var_os("UPDATE_GOLDEN").is_some() || !path.exists() {
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            let text = serde_json::to_string_pretty(&vectors).unwrap() + "\n";
            std::fs::write(&path, text).unwrap();
        }
        let stored: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        assert!(
            same(&stored, &vectors),
            "web/test/golden/series.json is not what the server computes: \
             rerun with UPDATE_GOLDEN=1 and make the page agree"
        );
    }

    /// Equal, numbers within 1e-12 relative (serde_json's default parser
    /// may differ from the written digits in the last bit).
    fn same(a: &Value, b: &Value) -> bool {
        match (a, b) {
            (Value::Number(x), Value::Number(y)) => {
                let (x, y) = (x.as_f64().unwrap(), y.as_f64().unwrap());
                (x - y).abs() <= 1e-12 * x.abs().max(y.abs())
            }
            (Value::Array(x), Value::Array(y)) => {
                x.len() == y.len() && x.iter().zip(y).all(|(x, y)| same(x, y))
            }
            (Value::Object(x), Value::Object(y)) => {
                x.len() == y.len() && x.iter().all(|(k, v)| y.get(k).is_some_and(|w| same(v, w)))
            }
            _ => a == b,
        }
    }
}
