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
pub mod control;
pub mod device;
pub mod early_stop;
pub mod export;
pub mod field;
pub mod infer;
pub mod inspect;
pub mod kernel_cache;
pub mod layer_stats;
pub mod memory;
pub mod metrics;
pub mod samples;
mod trainer;

pub use backend::{check_device, probe_all, BackendStatus, BackendUnavailable, Picked, Resolved};
pub use checkpoint::ResumeError;
pub use config::{BackendChoice, EarlyStop, FieldError, OptimizerKind, Schedule, TrainConfig};
pub use device::{pick_gpu, DeviceSpec, GpuPick};
pub use trainer::{learning_rate, FLUSH_EVERY};

use mnist_data::{DataError, Mnist, SplitOptions, Verify};
use mnist_events::{
    read_events, EventKind, EventSink, EventStream, JsonlWriter, LogLevel, LogMessage, RunFinished,
    RunStatus, Stop, StopReason,
};
use serde::Serialize;
use std::path::PathBuf;
use std::sync::Arc;

/// Where a run reads and writes, and who listens to it.
pub struct RunOptions {
    /// Directory holding the four MNIST files.
    pub data_dir: PathBuf,
    /// Whether to check the files' SHA-256 hashes (`Skip` for custom IDX data sets).
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
    /// Start a new run (`run_id`, with the configuration given) from
    /// another run's checkpoint.
    pub fork: Option<ForkFrom>,
    /// Asks the run to stop after the current batch, and says why.
    pub stop: Stop,
    /// Steers the run between batches: pause, resume, a new learning
    /// rate, an evaluation or a checkpoint now, stop after the epoch.
    /// `None` when nobody can steer it (a `train` without `--serve`): the
    /// trainer then does not look between batches.
    pub controls: Option<mnist_events::Controls>,
    /// Controls to apply at given steps (`train --reproduce` of a steered
    /// run: the original's, minus pauses), in step order.
    pub replay: Vec<(u64, mnist_events::ControlAction)>,
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
    pub alert_webhook: Option<mnist_alerts::Webhook>,
    /// What started the run (the binary fills it in; the data hashes are
    /// added here when the files were checked).
    pub provenance: Option<mnist_events::Provenance>,
    /// The device a scheduler placed the run on (the server's queue: one
    /// run per free GPU), instead of the configuration's own choice, which
    /// the run still records as asked.
    pub placed: Option<Placement>,
}

/// Where a forked run starts: a run's epoch checkpoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct ForkFrom {
    /// The run forked.
    pub run_id: String,
    /// The epoch whose checkpoint it starts from.
    pub epoch: usize,
    /// Whether the optimiser's state comes along (else it starts afresh).
    pub keep_optimizer: bool,
}

/// A device chosen for a run by whoever started it, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Placement {
    /// The backend to train on.
    pub backend: BackendChoice,
    /// The device within it.
    pub device: Option<usize>,
    /// Why there, as a sentence for `run_started`'s `device_reason`.
    pub reason: String,
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
            fork: None,
            stop: Stop::new(),
            controls: None,
            replay: Vec::new(),
            sinks: Vec::new(),
            data: None,
            hardware: None,
            alerts: Some(mnist_alerts::AlertRules::default()),
            stop_on_nan: true,
            alert_webhook: None,
            provenance: None,
            placed: None,
        }
    }
}

/// The outcome of a run, as `train --json` prints it.
#[derive(Debug, Clone, Serialize)]
pub struct RunSummary {
    /// The run's id: its directory name under the runs and checkpoints directories.
    pub run_id: String,
    /// How the run ended: completed, stopped or failed.
    pub status: RunStatus,
    /// Why the run failed, when it did (left out of the JSON otherwise).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The backend trained on: `cpu`, `wgpu` or `cuda`.
    pub backend: String,
    /// The device as a user knows it (`cpu (16 threads)`, a GPU's or an adapter's name).
    pub device: String,
    /// The device's index within the backend (`cuda:1` is 1); absent on the CPU.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub device_index: Option<usize>,
    /// What was picked and why, as `run_started` records it.
    pub device_reason: String,
    /// Parameters of the model the configuration builds.
    pub params: usize,
    /// Epochs completed, counting those before a resume.
    pub epochs: usize,
    /// Optimiser steps as of the last completed epoch, counting those before a resume.
    pub steps: u64,
    /// Test-set accuracy (0–1) of the latest test evaluation; `None` if the run ended before one.
    pub test_accuracy: Option<f64>,
    /// Test-set macro-F1 (0–1) of the same evaluation.
    pub test_f1_macro: Option<f64>,
    /// Mean test-set cross-entropy of the same evaluation.
    pub test_loss: Option<f64>,
    /// Seconds spent in training steps (evaluation excluded) in this process.
    pub train_seconds: f64,
    /// Training images per second over those seconds.
    pub images_per_sec: f64,
    /// Path of the run's `events.jsonl` log.
    pub events: String,
    /// The run's checkpoint directory (`<checkpoints_dir>/<run-id>`).
    pub checkpoints: String,
    /// The configuration the run used (a resumed run's stored one).
    pub config: TrainConfig,
}

/// Why a run could not start.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// Invalid settings, one error per field (including the webhook URL, the label overrides and a CPU run's memory need).
    #[error("invalid configuration: {}", .0.iter().map(|e| e.to_string()).collect::<Vec<_>>().join("; "))]
    Config(Vec<FieldError>),
    /// The MNIST files could not be downloaded, read, verified or split.
    #[error(transparent)]
    Data(#[from] DataError),
    /// The asked-for backend does not answer on this machine.
    #[error(transparent)]
    Backend(#[from] backend::BackendUnavailable),
    /// The run id (new or to resume) is not a safe directory name.
    #[error("--run-id {0:?} must be 1-128 characters of letters, digits, '-', '_' or '.', not starting with '.'")]
    RunId(String),
    /// A new run's id is already taken by an earlier run's log or checkpoints.
    #[error("run {id} already exists ({}); continue it with --resume {id}, or pick another --run-id", .path.display())]
    RunExists {
        /// The id asked for.
        id: String,
        /// The existing directory (log or checkpoints) that already uses it.
        path: PathBuf,
    },
    /// The run to resume has no checkpoint that can be read.
    #[error("cannot resume: {0}")]
    Resume(#[from] checkpoint::ResumeError),
    /// The run's event log could not be opened for appending.
    #[error("cannot write {}: {source}", .path.display())]
    Io {
        /// The `events.jsonl` file.
        path: PathBuf,
        /// The underlying I/O error.
        source: std::io::Error,
    },
}

/// The Burn version this crate trains with (pinned `=0.21.0` in the
/// workspace's Cargo.toml), for a run's provenance.
pub const BURN_VERSION: &str = "0.21.0";

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
        Err(RunError::RunId(id.to_string()))
    }
}

/// Trains according to `config`, blocking until the run ends.
///
/// Errors that prevent the run from starting (bad config, missing data, an
/// unusable backend, nothing to resume, a run id already taken) return
/// `Err` and write nothing. Once started, the run always ends with a
/// `run_finished` event; a failure inside training (a panic in a backend, a
/// log or checkpoint that cannot be written) is reported in the summary's
/// `status`/`error`, not as `Err`.
pub fn run(config: TrainConfig, mut opts: RunOptions) -> Result<RunSummary, RunError> {
    let (config, run_id, mut resume) = choose_run(config, &opts)?;
    let fork = match &opts.fork {
        Some(f) => {
            let (path, state) = fork_point(f, &config, &opts.checkpoints_dir)?;
            resume = Some((path, state.clone()));
            Some(mnist_events::Parent {
                run_id: f.run_id.clone(),
                epoch: f.epoch,
                step: state.step,
                optimizer_state: f.keep_optimizer,
            })
        }
        None => None,
    };
    config.validate().map_err(RunError::Config)?;
    let webhook = match &opts.alert_webhook {
        Some(hook) => Some(mnist_alerts::WebhookSink::new(hook).map_err(|e| {
            RunError::Config(vec![FieldError::new("alert_webhook", e.to_string())])
        })?),
        None => None,
    };
    let asked = opts.placed.as_ref().map_or(config.backend, |p| p.backend);
    if asked != BackendChoice::Cpu {
        set_up_kernel_cache();
    }
    let picked = match &opts.placed {
        Some(p) => backend::resolve(p.backend, p.device).map(|mut picked| {
            picked.note = format!("{}; {}", p.reason, picked.note);
            picked
        })?,
        None => backend::resolve(config.backend, config.device)?,
    };
    let (splits, label_overrides) = load_splits(&config, &mut opts)?;
    if picked.backend == Resolved::Cpu {
        let eval = splits.val.len() + splits.test.len();
        memory::check(&config, splits.train.len(), eval).map_err(|e| RunError::Config(vec![e]))?;
    }

    let events_path = mnist_events::log_path(&opts.runs_dir, &run_id);
    let mut stream = open_stream(&run_id, &events_path, &mut opts, webhook)?;
    let checkpoint_dir = opts.checkpoints_dir.join(&run_id);
    // Hardware samples join the stream from the sampler's thread until the
    // subscription is dropped, before `run_finished`.
    let hardware = opts.hardware.as_ref().map(|monitor| {
        let stream = stream.clone();
        monitor.subscribe(move |snapshot| {
            stream.emit(EventKind::Hardware((**snapshot).clone()));
        })
    });
    let provenance = opts.provenance.take().map(|mut p| {
        // Checked against MNIST's hashes on loading (here or by the server).
        if opts.verify == Verify::Sha256 {
            p.data_sha256 = mnist_data::FILES
                .iter()
                .map(|f| (f.name.to_string(), f.sha256.to_string()))
                .collect();
        }
        p
    });
    let job = trainer::Job {
        config: &config,
        splits: &splits,
        events: &mut stream,
        label_overrides,
        provenance,
        checkpoint_dir: checkpoint_dir.clone(),
        resume,
        fork,
        stop: opts.stop.clone(),
        controls: opts.controls.clone(),
        replay: std::mem::take(&mut opts.replay),
        backend: picked.backend.name(),
        device_name: picked.device.clone(),
        device_index: picked.index,
        backend_note: picked.note.clone(),
    };
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        dispatch(picked.backend.clone(), job)
    }))
    .unwrap_or_else(|payload| {
        Err(trainer::TrainFailure::Panicked(backend::panic_message(
            &*payload,
        )))
    });
    drop(hardware);

    let (status, error, outcome) = ending(result, &opts.stop);
    finish(&stream, status, error.clone(), &outcome);
    let test = outcome.test.as_ref();
    Ok(RunSummary {
        run_id,
        status,
        error,
        backend: picked.backend.name().to_string(),
        device: picked.device,
        device_index: picked.index,
        device_reason: picked.note,
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

/// Points CubeCL's autotune and compilation caches at this machine's
/// kernel cache ([`kernel_cache`]), once per process. A step of [`run`]
/// for GPU backends, of `warmup`, and of anything that probes the
/// backends ([`probe_all`]): CubeCL reads its configuration once, at its
/// first use.
pub fn set_up_kernel_cache() -> Option<std::path::PathBuf> {
    kernel_cache::configure(backend::gpu_names)
}

type ResumePoint = Option<(PathBuf, checkpoint::CheckpointState)>;

/// The parent's checkpoint a fork starts from: its path and state, or a
/// [`FieldError`] on `epoch` naming the epochs the run has checkpoints of.
pub fn fork_source(
    fork: &ForkFrom,
    checkpoints_dir: &std::path::Path,
) -> Result<(PathBuf, checkpoint::CheckpointState), RunError> {
    check_run_id(&fork.run_id)?;
    let run_dir = checkpoints_dir.join(&fork.run_id);
    let path = run_dir.join(checkpoint::epoch_dir_name(fork.epoch));
    checkpoint::read_state(&path)
        .map(|state| (path, state))
        .map_err(|_| {
            let have: Vec<String> = checkpoint::list(&run_dir)
                .unwrap_or_default()
                .iter()
                .map(|(e, _)| e.to_string())
                .collect();
            let have = match have.is_empty() {
                true => "none".to_string(),
                false => have.join(", "),
            };
            let message = format!(
                "run {} has no checkpoint of epoch {} (it has: {have})",
                fork.run_id, fork.epoch
            );
            RunError::Config(vec![FieldError::new("epoch", message)])
        })
}

/// [`fork_source`], checked against the child's configuration: the same
/// model, and epochs left to train (checked by the server before it queues
/// a fork, and by [`run`]).
pub fn fork_point(
    fork: &ForkFrom,
    config: &TrainConfig,
    checkpoints_dir: &std::path::Path,
) -> Result<(PathBuf, checkpoint::CheckpointState), RunError> {
    let (path, state) = fork_source(fork, checkpoints_dir)?;
    let mut errors = Vec::new();
    if state.config.kernels != config.kernels {
        errors.push(FieldError::new(
            "kernels",
            format!(
                "a fork keeps its parent's model: kernels must stay {:?}",
                state.config.kernels
            ),
        ));
    }
    if fork.keep_optimizer && state.config.optimizer != config.optimizer {
        errors.push(FieldError::new(
            "optimizer_state",
            format!(
                "the parent's {} state cannot load into {}: fork with optimizer_state \"reset\"",
                format!("{:?}", state.config.optimizer).to_lowercase(),
                format!("{:?}", config.optimizer).to_lowercase()
            ),
        ));
    }
    if config.epochs <= fork.epoch {
        errors.push(FieldError::new(
            "epochs",
            format!(
                "must be more than the fork's epoch {} (the child trains epochs {}..=epochs)",
                fork.epoch,
                fork.epoch + 1
            ),
        ));
    }
    match errors.is_empty() {
        true => Ok((path, state)),
        false => Err(RunError::Config(errors)),
    }
}

/// The configuration, id and starting point of the run: a new one (whose
/// id must not be taken), or the newest checkpoint of the one to resume.
fn choose_run(
    config: TrainConfig,
    opts: &RunOptions,
) -> Result<(TrainConfig, String, ResumePoint), RunError> {
    if let Some(id) = &opts.resume {
        check_run_id(id)?;
        let dir = opts.checkpoints_dir.join(id);
        let found = checkpoint::latest(&dir).map_err(|source| ResumeError::Unreadable {
            dir: dir.clone(),
            source,
        })?;
        let Some((path, state)) = found else {
            return Err(ResumeError::NoCheckpoint {
                id: id.clone(),
                dir,
            }
            .into());
        };
        return Ok((state.config.clone(), id.clone(), Some((path, state))));
    }
    let id = opts.run_id.clone().unwrap_or_else(new_run_id);
    check_run_id(&id)?;
    // A second run under the same id would overwrite the first one's
    // checkpoints and interleave with its log.
    for path in [opts.runs_dir.join(&id), opts.checkpoints_dir.join(&id)] {
        if path.exists() {
            return Err(RunError::RunExists { id, path });
        }
    }
    Ok((config, id, None))
}

/// Loads the data (unless given), applies the label overrides the config
/// asks for and splits it; an empty training or test set is an error.
fn load_splits(
    config: &TrainConfig,
    opts: &mut RunOptions,
) -> Result<(mnist_data::Splits, Option<mnist_events::LabelOverridesUsed>), RunError> {
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
        let overrides = mnist_data::overrides::LabelOverrides::load(&path).map_err(|e| {
            RunError::Config(vec![FieldError::new(
                "apply_label_overrides",
                e.to_string(),
            )])
        })?;
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
        .map_err(|e| RunError::Config(vec![FieldError::new("val_size", e.to_string())]))?;
    if splits.train.is_empty() {
        return Err(RunError::Config(vec![FieldError::new(
            "val_size",
            format!(
                "leaves no training images: the training files hold {} and val_size takes {}",
                data.train_labels.len(),
                config.val_size
            ),
        )]));
    }
    if splits.test.is_empty() {
        return Err(RunError::Config(vec![FieldError::new(
            "data_dir",
            format!(
                "the test files in {} hold no images: a run needs a test set to report on",
                opts.data_dir.display()
            ),
        )]));
    }
    Ok((splits, label_overrides))
}

/// The run's event stream: its log (repaired if a crash tore its last
/// line; a write that fails stops the run as failed), the extra sinks, the
/// webhook and the alert rules.
fn open_stream(
    run_id: &str,
    events_path: &std::path::Path,
    opts: &mut RunOptions,
    webhook: Option<mnist_alerts::WebhookSink>,
) -> Result<EventStream, RunError> {
    let io = |source| RunError::Io {
        path: events_path.to_path_buf(),
        source,
    };
    let stop = opts.stop.clone();
    let writer = JsonlWriter::append(events_path)
        .map_err(io)?
        .on_failure(move |e| stop.request(StopReason::Failed(e)));
    let torn = writer.repaired().cloned();
    let last_seq = read_events(events_path).map_or(0, |events| events.last().map_or(0, |e| e.seq));
    let stream = EventStream::new(run_id.to_string(), last_seq);
    stream.add_sink(writer);
    for sink in opts.sinks.drain(..) {
        stream.add_boxed_sink(sink);
    }
    if let Some(webhook) = webhook {
        stream.add_sink(webhook);
    }
    if let Some(rules) = opts.alerts.clone() {
        let stop = opts.stop_on_nan.then(|| opts.stop.clone());
        stream.add_observer(mnist_alerts::AlertEngine::new(rules, stop));
    }
    if let Some(torn) = torn {
        stream.emit(EventKind::Log(LogMessage {
            level: LogLevel::Warn,
            message: format!(
                "the run log ended in a torn line ({} bytes: the process died while writing it); it was moved to {}",
                torn.bytes,
                torn.kept_in.display()
            ),
        }));
    }
    Ok(stream)
}

/// How the run ended, from the trainer's result and why it was stopped.
fn ending(
    result: Result<trainer::Outcome, trainer::TrainFailure>,
    stop: &Stop,
) -> (RunStatus, Option<String>, trainer::Outcome) {
    match (result, stop.reason()) {
        (Err(e), _) => (
            RunStatus::Failed,
            Some(e.to_string()),
            trainer::Outcome::default(),
        ),
        (Ok(mut outcome), _) if outcome.failure.is_some() => {
            let e = outcome.failure.take().map(|e| e.to_string());
            (RunStatus::Failed, e, outcome)
        }
        (Ok(outcome), Some(StopReason::Failed(e))) => (RunStatus::Failed, Some(e), outcome),
        (Ok(outcome), Some(StopReason::LossNotFinite)) if outcome.stopped => (
            RunStatus::Failed,
            Some("the loss became NaN or infinite, so the run was stopped (--stop-on-nan); try a lower learning rate".to_string()),
            outcome,
        ),
        (Ok(outcome), _) if outcome.stopped => (RunStatus::Stopped, None, outcome),
        (Ok(outcome), _) => (RunStatus::Completed, None, outcome),
    }
}

/// Emits the error (if any) and `run_finished`.
fn finish(
    stream: &EventStream,
    status: RunStatus,
    error: Option<String>,
    outcome: &trainer::Outcome,
) {
    if let Some(e) = &error {
        stream.emit(EventKind::Log(LogMessage {
            level: LogLevel::Error,
            message: e.clone(),
        }));
    }
    let test = outcome.test.as_ref();
    stream.emit(EventKind::RunFinished(RunFinished {
        status,
        error,
        reason: outcome.reason.clone(),
        epochs_completed: outcome.epochs_completed,
        steps: outcome.steps,
        train_seconds: outcome.total_train_seconds,
        test_accuracy: test.map(|m| m.accuracy),
        test_f1_macro: test.map(|m| m.f1_macro),
        test_loss: test.map(|m| m.loss),
    }));
}

fn dispatch(
    resolved: Resolved,
    job: trainer::Job<'_>,
) -> Result<trainer::Outcome, trainer::TrainFailure> {
    use burn::backend::Autodiff;
    match resolved {
        Resolved::Cpu => trainer::train::<Autodiff<burn::backend::Flex>>(Default::default(), job),
        #[cfg(feature = "wgpu")]
        Resolved::Wgpu(device) => trainer::train::<Autodiff<burn::backend::Wgpu>>(device, job),
        #[cfg(feature = "cuda")]
        Resolved::Cuda(index) => trainer::train::<Autodiff<burn::backend::Cuda>>(
            burn::backend::cuda::CudaDevice::new(index),
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
