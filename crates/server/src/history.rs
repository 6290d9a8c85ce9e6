//! Views of a run's event log: the websocket snapshot (with downsampled
//! batch series), run summaries for the history list, and CSV export.

use mnist_events::{Event, EventKind, RunStatus};
use serde::Serialize;
use serde_json::{json, Value};
use std::path::Path;
use std::sync::Arc;

/// Most points per batch series in a snapshot. Longer series keep, per
/// bucket, their minimum and maximum, so spikes survive downsampling.
pub const MAX_POINTS: usize = 2000;

/// Reduces `points` (in x order) to at most `max` points, keeping each
/// bucket's minimum and maximum in their original order.
pub fn downsample_minmax(points: &[[f64; 2]], max: usize) -> Vec<[f64; 2]> {
    if points.len() <= max || max < 2 {
        return points.to_vec();
    }
    let buckets = max / 2;
    let mut out = Vec::with_capacity(buckets * 2);
    for b in 0..buckets {
        let lo = b * points.len() / buckets;
        let hi = ((b + 1) * points.len() / buckets).max(lo + 1);
        let bucket = &points[lo..hi];
        let (mut imin, mut imax) = (0, 0);
        for (i, p) in bucket.iter().enumerate() {
            // NaN losses are kept visible as the bucket's "max".
            if p[1] < bucket[imin][1] {
                imin = i;
            }
            if p[1] > bucket[imax][1] || p[1].is_nan() {
                imax = i;
            }
        }
        let (a, b) = if imin <= imax {
            (imin, imax)
        } else {
            (imax, imin)
        };
        out.push(bucket[a]);
        if b != a {
            out.push(bucket[b]);
        }
    }
    out
}

/// The first message a viewer gets: everything but the batch events in full
/// (they are few), and the batch metrics as downsampled series.
pub fn snapshot(run_id: &str, events: &[Arc<Event>], live: bool) -> Value {
    let mut others = Vec::new();
    let mut loss = Vec::new();
    let mut accuracy = Vec::new();
    let mut f1 = Vec::new();
    let mut last_batch = None;
    let superseded = mnist_events::superseded(events.iter().map(|e| &**e));
    for e in events.iter().filter(|e| !superseded.contains(&e.seq)) {
        match &e.kind {
            EventKind::Batch(b) => {
                let x = b.step as f64;
                loss.push([x, b.loss]);
                accuracy.push([x, b.accuracy]);
                f1.push([x, b.f1_macro]);
                last_batch = Some(e.clone());
            }
            // One a second for the whole run: the page has /ws/hardware.
            EventKind::Hardware(_) => {}
            _ => others.push(e.clone()),
        }
    }
    json!({
        "type": "snapshot",
        "run_id": run_id,
        "live": live,
        "status": summarise(run_id, events, live).status,
        "last_seq": events.last().map_or(0, |e| e.seq),
        "batch_count": loss.len(),
        "events": others,
        "last_batch": last_batch,
        "series": {
            "loss": downsample_minmax(&loss, MAX_POINTS),
            "accuracy": downsample_minmax(&accuracy, MAX_POINTS),
            "f1_macro": downsample_minmax(&f1, MAX_POINTS),
        },
    })
}

/// One row of the run history.
#[derive(Debug, Clone, Serialize)]
pub struct RunSummary {
    pub run_id: String,
    /// `running`, `completed`, `stopped`, `failed`, or `interrupted` (the log
    /// ends without `run_finished`: the process died).
    pub status: String,
    pub started_ms: u64,
    pub config: Value,
    pub backend: Option<String>,
    pub device: Option<String>,
    pub params: Option<usize>,
    pub epochs_completed: usize,
    pub steps: u64,
    pub last_loss: Option<f64>,
    pub val_accuracy: Option<f64>,
    pub test_accuracy: Option<f64>,
    pub test_f1_macro: Option<f64>,
    pub error: Option<String>,
}

pub fn summarise(run_id: &str, events: &[Arc<Event>], live: bool) -> RunSummary {
    let mut s = RunSummary {
        run_id: run_id.to_string(),
        status: if live { "running" } else { "interrupted" }.into(),
        started_ms: events.first().map_or(0, |e| e.ts_ms),
        config: Value::Null,
        backend: None,
        device: None,
        params: None,
        epochs_completed: 0,
        steps: 0,
        last_loss: None,
        val_accuracy: None,
        test_accuracy: None,
        test_f1_macro: None,
        error: None,
    };
    let superseded = mnist_events::superseded(events.iter().map(|e| &**e));
    for e in events.iter().filter(|e| !superseded.contains(&e.seq)) {
        match &e.kind {
            EventKind::RunStarted(r) => {
                s.config = r.config.clone();
                s.backend = Some(r.backend.clone());
                s.device = Some(r.device.clone());
                s.params = Some(r.model.total_params);
                // A resumption starts over: a `run_finished` of an earlier
                // attempt no longer describes the run.
                if !live {
                    s.status = "interrupted".into();
                }
            }
            EventKind::Batch(b) => {
                s.steps = b.step;
                s.last_loss = Some(b.loss);
            }
            EventKind::Eval(m) => match m.split {
                mnist_events::Split::Test => {
                    s.test_accuracy = Some(m.accuracy);
                    s.test_f1_macro = Some(m.f1_macro);
                }
                _ => s.val_accuracy = Some(m.accuracy),
            },
            EventKind::Checkpoint(c) => s.epochs_completed = s.epochs_completed.max(c.epoch),
            EventKind::RunFinished(f) => {
                s.status = match f.status {
                    RunStatus::Completed => "completed",
                    RunStatus::Stopped => "stopped",
                    RunStatus::Failed => "failed",
                }
                .into();
                s.epochs_completed = f.epochs_completed;
                s.error = f.error.clone();
            }
            _ => {}
        }
    }
    s
}

/// Runs logged under `runs_dir`, newest first.
pub fn list_runs(runs_dir: &Path) -> Vec<(String, std::path::PathBuf)> {
    let mut runs: Vec<(String, std::path::PathBuf)> = std::fs::read_dir(runs_dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let path = entry.path().join("events.jsonl");
            let name = entry.file_name().into_string().ok()?;
            path.is_file().then_some((name, path))
        })
        .collect();
    runs.sort_by(|a, b| b.0.cmp(&a.0));
    runs
}

/// Batch and evaluation metrics as CSV, one row per event.
pub fn csv(events: &[Arc<Event>]) -> String {
    let mut out = String::from(
        "kind,split,epoch,batch,step,loss,accuracy,f1_macro,mse,lr,images_per_sec,ts_ms\n",
    );
    let superseded = mnist_events::superseded(events.iter().map(|e| &**e));
    for e in events.iter().filter(|e| !superseded.contains(&e.seq)) {
        match &e.kind {
            EventKind::Batch(b) => {
                out += &format!(
                    "batch,train,{},{},{},{},{},{},,{},{},{}\n",
                    b.epoch,
                    b.batch,
                    b.step,
                    b.loss,
                    b.accuracy,
                    b.f1_macro,
                    b.lr,
                    b.images_per_sec,
                    e.ts_ms
                )
            }
            EventKind::Eval(m) => {
                out += &format!(
                    "eval,{},{},,{},{},{},{},{},,,{}\n",
                    m.split.as_str(),
                    m.epoch,
                    m.step,
                    m.loss,
                    m.accuracy,
                    m.f1_macro,
                    m.mse,
                    e.ts_ms
                )
            }
            _ => {}
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn downsampling_bounds_points_and_keeps_extremes() {
        let points: Vec<[f64; 2]> = (0..100_000).map(|i| [i as f64, (i % 7) as f64]).collect();
        let mut with_spike = points.clone();
        with_spike[54_321][1] = 1e6;
        let out = downsample_minmax(&with_spike, MAX_POINTS);
        assert!(out.len() <= MAX_POINTS);
        assert!(out.iter().any(|p| p[1] == 1e6), "the spike survives");
        assert!(
            out.windows(2).all(|w| w[0][0] < w[1][0]),
            "x stays increasing"
        );
        assert_eq!(downsample_minmax(&points[..10], MAX_POINTS).len(), 10);
    }
}
