//! # mnist-train: training runs
//!
//! Owns a run from configuration to final metrics: validating the
//! [`TrainConfig`], picking a backend ([`backend`]), loading the data, the
//! training loop with device-side metrics ([`trainer`]), evaluation, sample
//! predictions, atomic checkpoints with retention and resume
//! ([`checkpoint`]), and the run's [event stream](mnist_events) written to
//! `runs/<run-id>/events.jsonl` and handed to any extra sinks.
//!
//! Entry point: [`run`].

pub mod backend;
pub mod checkpoint;
pub mod config;
pub mod infer;
pub mod metrics;
pub mod samples;
mod trainer;

pub use backend::{probe_all, BackendStatus, Resolved};
pub use config::{BackendChoice, FieldError, OptimizerKind, Schedule, TrainConfig};
pub use trainer::{learning_rate, FLUSH_EVERY};

use mnist_data::{DataError, Mnist, SplitOptions, Verify};
use mnist_events::{
    read_events, EventKind, EventSink, EventStream, JsonlWriter, LogLevel, LogMessage, RunFinished,
    RunStatus,
};
use serde::Serialize;
use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

/// Where a run reads and writes, and who listens to it.
pub struct RunOptions {
    /// Directory holding the four MNIST files.
    pub data_dir: PathBuf,
    pub verify: Verify,
    /// Download missing files into `data_dir` before loading.
    pub download: bool,
    /// Parent of `<run-id>/events.jsonl`.
    pub runs_dir: PathBuf,
    /// Parent of `<run-id>/epoch-NNNN/`.
    pub checkpoints_dir: PathBuf,
    /// Use this run id instead of a fresh one.
    pub run_id: Option<String>,
    /// Continue this run from its newest checkpoint (its stored config wins).
    pub resume: Option<String>,
    /// Set to stop the run after the current batch.
    pub stop: Arc<AtomicBool>,
    /// Extra consumers of the event stream (progress bar, web server, …).
    pub sinks: Vec<Box<dyn EventSink>>,
    /// Already-loaded data, to skip reading the files again.
    pub data: Option<Arc<Mnist>>,
    /// The machine's sampler: its samples join the stream as `hardware`
    /// events while the run lasts (shared with the server when there is one).
    pub hardware: Option<Arc<mnist_hardware::Monitor>>,
    /// Alert rules evaluated on the stream; `None` turns them off.
    pub alerts: Option<mnist_alerts::AlertRules>,
    /// Stop the run (as failed) when the loss becomes NaN or infinite.
    pub stop_on_nan: bool,
    /// POST every alert as JSON to this URL.
    pub alert_webhook: Option<String>,
}

impl Default for RunOptions {
    fn default() -> Self {
        Self {
            data_dir: PathBuf::from("datasets/mnist"),
            verify: Verify::Sha256,
            download: false,
            runs_dir: PathBuf::from("runs"),
            checkpoints_dir: PathBuf::from("checkpoints"),
            run_id: None,
            resume: None,
            stop: Arc::new(AtomicBool::new(false)),
            sinks: Vec::new(),
            data: None,
            hardware: None,
            alerts: Some(mnist_alerts::AlertRules::default()),
            stop_on_nan: true,
            alert_webhook: None,
        }
    }
}

/// The outcome of a run, as `train --json` prints it.
#[derive(Debug, Clone, Serialize)]
pub struct RunSummary {
    pub run_id: String,
    pub status: RunStatus,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    pub backend: String,
    pub device: String,
    pub params: usize,
    pub epochs: usize,
    pub steps: u64,
    pub test_accuracy: Option<f64>,
    pub test_f1_macro: Option<f64>,
    pub test_loss: Option<f64>,
    /// Seconds spent in training steps (evaluation excluded) in this process.
    pub train_seconds: f64,
    /// Training images per second over those seconds.
    pub images_per_sec: f64,
    pub events: String,
    pub checkpoints: String,
    pub config: TrainConfig,
}

/// Why a run could not start.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("invalid configuration: {}", .0.iter().map(|e| e.to_string()).collect::<Vec<_>>().join("; "))]
    Config(Vec<FieldError>),
    #[error(transparent)]
    Data(#[from] DataError),
    #[error("{0}")]
    Backend(String),
    #[error("cannot resume: {0}")]
    Resume(String),
    #[error("{0}")]
    Io(String),
}

/// A fresh run id: UTC date and time plus four random hex digits.
pub fn new_run_id() -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let secs = now.as_secs();
    let (y, m, d) = civil_from_days((secs / 86_400) as i64);
    let tod = secs % 86_400;
    let salt = (now.subsec_nanos() ^ std::process::id().rotate_left(16)) & 0xffff;
    format!(
        "{y:04}{m:02}{d:02}-{:02}{:02}{:02}-{salt:04x}",
        tod / 3600,
        tod / 60 % 60,
        tod % 60
    )
}

/// Days since 1970-01-01 to a proleptic Gregorian date (Howard Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

/// Run ids are used as directory names: keep them to a safe alphabet.
fn check_run_id(id: &str) -> Result<(), RunError> {
    let ok = !id.is_empty()
        && id.len() <= 128
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
        && !id.starts_with('.');
    if ok {
        Ok(())
    } else {
        Err(RunError::Resume(format!(
            "run id {id:?} must be 1-128 characters of letters, digits, '-', '_' or '.'"
        )))
    }
}

/// Trains according to `config`, blocking until the run ends.
///
/// Errors that prevent the run from starting (bad config, missing data, an
/// unusable backend, nothing to resume) return `Err` and write nothing.
/// Once started, the run always ends with a `run_finished` event; a failure
/// inside training (including a panic in a backend) is reported in the
/// summary's `status`/`error`, not as `Err`.
pub fn run(config: TrainConfig, mut opts: RunOptions) -> Result<RunSummary, RunError> {
    let (config, run_id, resume) = match &opts.resume {
        Some(id) => {
            check_run_id(id)?;
            let dir = opts.checkpoints_dir.join(id);
            let found = checkpoint::latest(&dir).map_err(|e| RunError::Resume(e.to_string()))?;
            let Some((path, state)) = found else {
                return Err(RunError::Resume(format!(
                    "no checkpoint of run {id} in {} (checkpoints are written after each epoch)",
                    dir.display()
                )));
            };
            (state.config.clone(), id.clone(), Some((path, state)))
        }
        None => {
            let id = opts.run_id.clone().unwrap_or_else(new_run_id);
            check_run_id(&id)?;
            (config, id, None)
        }
    };
    config.validate().map_err(RunError::Config)?;
    let webhook = match &opts.alert_webhook {
        Some(url) => Some(
            mnist_alerts::WebhookSink::new(url)
                .map_err(|e| RunError::Config(vec![FieldError::new("alert_webhook", e)]))?,
        ),
        None => None,
    };
    let (resolved, backend_note) = backend::resolve(config.backend).map_err(RunError::Backend)?;

    let data = match opts.data.take() {
        Some(data) => data,
        None => {
            if opts.download {
                mnist_data::ensure_downloaded(&opts.data_dir)?;
            }
            Arc::new(mnist_data::load_dir(&opts.data_dir, opts.verify)?)
        }
    };
    let mut label_overrides = None;
    let data = if config.apply_label_overrides {
        let path = mnist_data::overrides::path_in(&opts.data_dir);
        let overrides = mnist_data::overrides::LabelOverrides::load(&path)
            .map_err(|e| RunError::Config(vec![FieldError::new("apply_label_overrides", e)]))?;
        let (applied, used) = overrides.apply(&data, &path);
        label_overrides = Some(mnist_events::LabelOverridesUsed {
            path: used.path,
            sha256: used.sha256,
            relabelled: used.relabelled,
            excluded: used.excluded,
        });
        Arc::new(applied)
    } else {
        data
    };
    let splits = data
        .split(SplitOptions {
            val_size: config.val_size,
            limit_train: config.limit_train,
            limit_val: config.limit_val,
            limit_test: config.limit_test,
        })
        .map_err(|msg| RunError::Config(vec![FieldError::new("val_size", msg)]))?;

    let events_path = opts.runs_dir.join(&run_id).join("events.jsonl");
    let last_seq = match read_events(&events_path) {
        Ok(events) => events.last().map_or(0, |e| e.seq),
        Err(_) => 0,
    };
    let mut stream = EventStream::new(run_id.clone(), last_seq);
    let writer = JsonlWriter::append(&events_path)
        .map_err(|e| RunError::Io(format!("cannot write {}: {e}", events_path.display())))?;
    stream.add_sink(writer);
    for sink in opts.sinks.drain(..) {
        stream.add_boxed_sink(sink);
    }
    if let Some(webhook) = webhook {
        stream.add_sink(webhook);
    }
    // Whether the NaN rule stopped the run, to report it as failed.
    let nan_stopped = Arc::new(AtomicBool::new(false));
    if let Some(rules) = opts.alerts.clone() {
        let stop = opts.stop_on_nan.then(|| opts.stop.clone());
        stream.add_observer(mnist_alerts::AlertEngine::new(rules, stop));
        if opts.stop_on_nan {
            let flag = nan_stopped.clone();
            stream.add_sink(mnist_events::FnSink(move |e: &mnist_events::Event| {
                if matches!(&e.kind, EventKind::Alert(a) if a.rule == "loss_not_finite") {
                    flag.store(true, std::sync::atomic::Ordering::SeqCst);
                }
            }));
        }
    }
    let checkpoint_dir = opts.checkpoints_dir.join(&run_id);
    let device_name = match resolved {
        Resolved::Cpu => format!(
            "cpu ({} threads)",
            std::thread::available_parallelism().map_or(1, |n| n.get())
        ),
        #[allow(unreachable_patterns)]
        _ => backend_note.rsplit(" on ").next().unwrap_or("").to_string(),
    };
    // Hardware samples join the stream from the sampler's thread until the
    // subscription is dropped, before `run_finished`.
    let hardware = opts.hardware.as_ref().map(|monitor| {
        let stream = stream.clone();
        monitor.subscribe(move |snapshot| {
            stream.emit(EventKind::Hardware((**snapshot).clone()));
        })
    });
    let job = trainer::Job {
        config: &config,
        splits: &splits,
        events: &mut stream,
        label_overrides,
        checkpoint_dir: checkpoint_dir.clone(),
        resume,
        stop: opts.stop.clone(),
        backend: resolved.name(),
        device_name: device_name.clone(),
        backend_note,
    };
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| dispatch(resolved, job)))
        .unwrap_or_else(|payload| {
            Err(format!(
                "training panicked: {}",
                backend::panic_message(&*payload)
            ))
        });

    drop(hardware);
    let (status, error, outcome) = match result {
        Ok(outcome) if outcome.stopped && nan_stopped.load(std::sync::atomic::Ordering::SeqCst) => (
            RunStatus::Failed,
            Some("the loss became NaN or infinite, so the run was stopped (--stop-on-nan); try a lower learning rate".to_string()),
            outcome,
        ),
        Ok(outcome) if outcome.stopped => (RunStatus::Stopped, None, outcome),
        Ok(outcome) => (RunStatus::Completed, None, outcome),
        Err(e) => (RunStatus::Failed, Some(e), trainer::Outcome::default()),
    };
    if let Some(e) = &error {
        stream.emit(EventKind::Log(LogMessage {
            level: LogLevel::Error,
            message: e.clone(),
        }));
    }
    let test = outcome.test.as_ref();
    stream.emit(EventKind::RunFinished(RunFinished {
        status,
        error: error.clone(),
        epochs_completed: outcome.epochs_completed,
        steps: outcome.steps,
        train_seconds: outcome.total_train_seconds,
        test_accuracy: test.map(|m| m.accuracy),
        test_f1_macro: test.map(|m| m.f1_macro),
        test_loss: test.map(|m| m.loss),
    }));
    Ok(RunSummary {
        run_id,
        status,
        error,
        backend: resolved.name().to_string(),
        device: device_name,
        params: config.model().summary().total_params,
        epochs: outcome.epochs_completed,
        steps: outcome.steps,
        test_accuracy: test.map(|m| m.accuracy),
        test_f1_macro: test.map(|m| m.f1_macro),
        test_loss: test.map(|m| m.loss),
        train_seconds: outcome.train_seconds,
        images_per_sec: if outcome.train_seconds > 0.0 {
            outcome.images_trained as f64 / outcome.train_seconds
        } else {
            0.0
        },
        events: events_path.display().to_string(),
        checkpoints: checkpoint_dir.display().to_string(),
        config,
    })
}

fn dispatch(resolved: Resolved, job: trainer::Job<'_>) -> Result<trainer::Outcome, String> {
    use burn::backend::Autodiff;
    match resolved {
        Resolved::Cpu => trainer::train::<Autodiff<burn::backend::Flex>>(Default::default(), job),
        #[cfg(feature = "wgpu")]
        Resolved::Wgpu => trainer::train::<Autodiff<burn::backend::Wgpu>>(Default::default(), job),
        #[cfg(feature = "cuda")]
        Resolved::Cuda => trainer::train::<Autodiff<burn::backend::Cuda>>(
            burn::backend::cuda::CudaDevice::new(0),
            job,
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_ids_sort_by_time_and_are_path_safe() {
        let id = new_run_id();
        assert_eq!(id.len(), "20261122-181502-a1b2".len(), "{id}");
        assert!(check_run_id(&id).is_ok());
        assert!(check_run_id("../etc").is_err());
        assert!(check_run_id("a/b").is_err());
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(20_414), (2025, 11, 22));
    }
}
