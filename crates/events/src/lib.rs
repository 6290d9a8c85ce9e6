//! # mnist-events: the run event stream
//!
//! This crate owns the one schema every part of mnist-monitor speaks. A training
//! run emits a sequence of typed [`Event`]s; the terminal progress bar, the JSONL
//! run log (`runs/<run-id>/events.jsonl`), the web server and the exporters all
//! consume that same sequence. Nothing here knows about Burn, HTTP or terminals.
//!
//! ## Wire format
//!
//! Each event is one JSON object:
//!
//! ```json
//! {"seq":12,"ts_ms":1763830000123,"run_id":"20261122-181502-a1b2","type":"batch", ...fields}
//! ```
//!
//! * `seq` — monotonic per run, starting at 1, never reused (a resumed run
//!   continues the numbering of its log), so a consumer that remembers its last
//!   `seq` can ask for exactly the events after it.
//! * `ts_ms` — wall-clock time of emission, Unix milliseconds.
//! * `type` — one of [`EventKind::NAMES`] (`run_started`, `batch`, `eval`,
//!   `samples`, `checkpoint`, `log`, `hardware`, `alert`, `phase`,
//!   `control`, `layers`, `histograms`, `run_finished`); the remaining
//!   fields are those of the matching struct in this crate ([`RunStarted`],
//!   [`BatchMetrics`], [`EvalMetrics`], [`Samples`], [`CheckpointSaved`],
//!   [`LogMessage`], [`HardwareSnapshot`], [`Alert`], [`Phase`],
//!   [`Control`], [`LayerStats`], [`Histograms`], [`RunFinished`]).
//!
//! `hardware` events arrive at the sampler's rate (`--hw-interval`, 1 s by
//! default) from their own thread, interleaved with the trainer's; `alert`
//! events are derived from the stream itself by an [`Observer`] (NaN loss,
//! a hot GPU, …) and follow the event that fired them.
//!
//! New fields may be added to a type; consumers ignore fields they don't know.

mod control;
mod hardware;
mod jsonl;
mod layers;
mod lock;
mod stop;
mod stream;
pub use control::{Control, ControlAction, ControlRequest, Controls, CONTROL_SOURCES};
pub use hardware::*;

pub use jsonl::{
    line_is, parse_line, read_events, read_log, torn_path, BadLine, JsonlWriter, Log, TornTail,
};
pub use layers::{
    ActivationStats, Diagnosis, GoodCheckpoint, Histogram, Histograms, LayerHistograms,
    LayerSample, LayerStats, LAYERS,
};
pub use lock::LockExt;

/// A run's log inside its folder: `<runs>/<run-id>/events.jsonl`.
pub const LOG_FILE: &str = "events.jsonl";

/// Where run `run_id`'s log is under the runs folder `runs_dir`.
pub fn log_path(runs_dir: &std::path::Path, run_id: &str) -> std::path::PathBuf {
    runs_dir.join(run_id).join(LOG_FILE)
}
pub use stop::{Stop, StopReason};
pub use stream::{EventSink, EventStream, FnSink, Observer};

use serde::{Deserialize, Serialize};

/// JSON has no NaN or infinity: serde_json writes them as `null`. A loss
/// that diverged must still read back (as NaN) rather than break the log.
fn nan_if_null<'de, D: serde::Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
    Ok(Option::<f64>::deserialize(d)?.unwrap_or(f64::NAN))
}

/// Which reviewed labels a run used: the file, its SHA-256, and what it changed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LabelOverridesUsed {
    /// Path of the label-overrides file that was applied.
    pub path: String,
    /// Hex SHA-256 of the file's contents, so a run names exactly which
    /// review it used.
    pub sha256: String,
    /// Labels (train or test) the file changed.
    pub relabelled: usize,
    /// Training images left out.
    pub excluded: usize,
}

/// One event of a run: the envelope (`seq`, `ts_ms`, `run_id`) plus its payload.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// Position in the run's stream, starting at 1.
    pub seq: u64,
    /// Unix time of emission in milliseconds.
    pub ts_ms: u64,
    /// The run this event belongs to.
    pub run_id: String,
    /// What happened.
    #[serde(flatten)]
    pub kind: EventKind,
}

/// The payload of an [`Event`], tagged by `type` on the wire.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum EventKind {
    /// `run_started`: the first event of a run or of a resumption.
    RunStarted(Box<RunStarted>),
    /// `batch`: one training step's metrics.
    Batch(BatchMetrics),
    /// `eval`: an evaluation of a whole split.
    Eval(EvalMetrics),
    /// `samples`: predictions on a fixed set of test images.
    Samples(Samples),
    /// `checkpoint`: a checkpoint was written.
    Checkpoint(CheckpointSaved),
    /// `log`: a message for the person watching.
    Log(LogMessage),
    /// `hardware`: one sample of the machine.
    Hardware(HardwareSnapshot),
    /// `alert`: an alert rule fired.
    Alert(Alert),
    /// `phase`: what the run is doing before or between batches.
    Phase(Phase),
    /// `control`: a person steered the run (pause, resume, a new learning
    /// rate, an evaluation or checkpoint now, stop after the epoch).
    Control(Control),
    /// `layers`: every layer's statistics on one sampled step.
    Layers(LayerStats),
    /// `histograms`: every layer's weights, gradients and activations at
    /// an epoch's end.
    Histograms(Histograms),
    /// `run_finished`: the last event of a run or of a resumption.
    RunFinished(RunFinished),
}

impl EventKind {
    /// Every event's wire name, in the schema's order (README lists them;
    /// a test keeps the two equal).
    pub const NAMES: [&'static str; 13] = [
        "run_started",
        "batch",
        "eval",
        "samples",
        "checkpoint",
        "log",
        "hardware",
        "alert",
        "phase",
        "control",
        "layers",
        "histograms",
        "run_finished",
    ];

    /// The wire name of this event's `type` (one of [`EventKind::NAMES`]).
    pub fn name(&self) -> &'static str {
        Self::NAMES[match self {
            EventKind::RunStarted(_) => 0,
            EventKind::Batch(_) => 1,
            EventKind::Eval(_) => 2,
            EventKind::Samples(_) => 3,
            EventKind::Checkpoint(_) => 4,
            EventKind::Log(_) => 5,
            EventKind::Hardware(_) => 6,
            EventKind::Alert(_) => 7,
            EventKind::Phase(_) => 8,
            EventKind::Control(_) => 9,
            EventKind::Layers(_) => 10,
            EventKind::Histograms(_) => 11,
            EventKind::RunFinished(_) => 12,
        }]
    }
}

/// The first event of a run (and of every resumption of it).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunStarted {
    /// The training configuration, as the trainer's `TrainConfig` serialises it.
    pub config: serde_json::Value,
    /// Layers, output shapes and parameter counts.
    pub model: ModelSummary,
    /// Backend actually used: `cpu`, `wgpu` or `cuda`.
    pub backend: String,
    /// Human-readable device name, as the backend reports it.
    pub device: String,
    /// The device's index within the backend: CUDA's ordinal (`cuda:1`,
    /// nvidia-smi's numbering unless `CUDA_VISIBLE_DEVICES` renumbers) or
    /// the wgpu adapter's place in the best-first list; absent on the CPU
    /// and in older logs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device_index: Option<usize>,
    /// What was picked and why, as one sentence (e.g. `auto picked cuda:1
    /// (…: 78.9 GiB free, 0% busy) over cuda:0 (…)`); absent in older logs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device_reason: Option<String>,
    /// Number of training images per epoch.
    pub train_size: usize,
    /// Number of validation images.
    pub val_size: usize,
    /// Number of test images.
    pub test_size: usize,
    /// Batches per epoch (the last one may be partial).
    pub batches_per_epoch: usize,
    /// Set when this start continues an earlier run from a checkpoint: the
    /// epoch it resumes after.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resumed_from_epoch: Option<usize>,
    /// Set with `resumed_from_epoch`: the last step of that checkpoint. The
    /// log may hold batches after it from the interrupted attempt (a run
    /// killed mid-epoch); they are superseded by the ones that follow this
    /// event, so consumers keep one value per step: drop earlier `batch`
    /// `batch`, `eval` and `samples` events with `step > resumed_from_step`
    /// (see [`superseded`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resumed_from_step: Option<u64>,
    /// The label corrections this run trained with (`--apply-label-overrides`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label_overrides: Option<LabelOverridesUsed>,
    /// What produced the run, to reproduce it (absent in older logs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provenance: Option<Provenance>,
    /// Set for a run forked from another's checkpoint: its first step is
    /// `parent.step + 1`, on the parent's step axis.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent: Option<Parent>,
}

/// The checkpoint a forked run started from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Parent {
    /// The run forked.
    pub run_id: String,
    /// The epoch of its checkpoint.
    pub epoch: usize,
    /// That checkpoint's step.
    pub step: u64,
    /// Whether the optimiser's state (Adam's moments, momentum) came along.
    pub optimizer_state: bool,
}

/// What produced a run: the program, the machine, how it was started and
/// the data it read. With the run's config (seed included) this is what
/// rerunning it takes.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Provenance {
    /// mnist-monitor's version.
    pub version: String,
    /// The git commit the binary was built from, when built from a checkout.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub git_commit: Option<String>,
    /// Whether that checkout had uncommitted changes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub git_dirty: Option<bool>,
    /// The Cargo features the binary was built with (`cuda`, `wgpu`).
    pub features: Vec<String>,
    /// The Burn version it trains with.
    pub burn_version: String,
    /// The machine's host name.
    pub host: String,
    /// The command line (`argv`), or `["POST /api/runs"]` for a run started
    /// from the web page.
    pub command_line: Vec<String>,
    /// SHA-256 of each data file's decompressed content, by file name, when
    /// checked against MNIST's (`--skip-verify` leaves it empty).
    #[serde(default)]
    pub data_sha256: std::collections::BTreeMap<String, String>,
}

/// A model description that needs no tensor library to read.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelSummary {
    /// Input shape without the batch dimension, e.g. `[1, 28, 28]`.
    pub input_shape: Vec<usize>,
    /// Every layer in forward order, parameter-free ones included.
    pub layers: Vec<LayerSummary>,
    /// Total number of trainable parameters.
    pub total_params: usize,
}

/// One row of a [`ModelSummary`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LayerSummary {
    /// Field name in the model, e.g. `conv1`.
    pub name: String,
    /// What the layer is, e.g. `Conv2d 3x3 1→32`.
    pub kind: String,
    /// Output shape without the batch dimension.
    pub output_shape: Vec<usize>,
    /// Trainable parameters of this layer.
    pub params: usize,
}

/// Metrics of one training batch, plus running values over the epoch so far.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BatchMetrics {
    /// Epoch, starting at 1.
    pub epoch: usize,
    /// Batch within the epoch, starting at 1.
    pub batch: usize,
    /// Batches in this epoch.
    pub batches: usize,
    /// Global optimiser step, starting at 1.
    pub step: u64,
    /// Images in this batch.
    pub size: usize,
    /// Mean cross-entropy loss of this batch.
    #[serde(deserialize_with = "nan_if_null")]
    pub loss: f64,
    /// Fraction of this batch classified correctly.
    pub accuracy: f64,
    /// Macro-averaged F1 over the classes present in this batch.
    pub f1_macro: f64,
    /// Mean loss over the epoch so far.
    #[serde(deserialize_with = "nan_if_null")]
    pub epoch_loss: f64,
    /// Accuracy over the epoch so far.
    pub epoch_accuracy: f64,
    /// Macro-F1 over the epoch so far.
    pub epoch_f1_macro: f64,
    /// Learning rate used for this step.
    pub lr: f64,
    /// Training throughput around this batch, images per second.
    pub images_per_sec: f64,
    /// Seconds since training (this process) started.
    pub elapsed_s: f64,
}

/// Which data set an evaluation ran on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Split {
    /// The training images.
    Train,
    /// The validation images held out of the training files.
    Val,
    /// The test images.
    Test,
}

impl Split {
    /// The wire name: `train`, `val` or `test`.
    pub fn as_str(self) -> &'static str {
        match self {
            Split::Train => "train",
            Split::Val => "val",
            Split::Test => "test",
        }
    }
}

/// Precision, recall and F1 of one class.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClassMetrics {
    /// Class index (the digit, for MNIST).
    pub class: usize,
    /// Fraction of predictions of this class that were right (0–1).
    pub precision: f64,
    /// Fraction of this class's examples predicted as it (0–1).
    pub recall: f64,
    /// Harmonic mean of precision and recall (0–1).
    pub f1: f64,
    /// Number of examples whose true label is this class.
    pub support: u64,
}

/// The result of evaluating the model on a whole split.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EvalMetrics {
    /// The split evaluated.
    pub split: Split,
    /// Epoch after which this evaluation ran.
    pub epoch: usize,
    /// Global step at evaluation time.
    pub step: u64,
    /// Images evaluated.
    pub images: usize,
    /// Mean cross-entropy loss over the split.
    #[serde(deserialize_with = "nan_if_null")]
    pub loss: f64,
    /// Fraction of the split classified correctly.
    pub accuracy: f64,
    /// F1 averaged over the classes, unweighted.
    pub f1_macro: f64,
    /// Mean squared error between the softmax output and the one-hot target,
    /// averaged over images and classes.
    #[serde(deserialize_with = "nan_if_null")]
    pub mse: f64,
    /// Precision, recall and F1 of each class, in class order.
    pub per_class: Vec<ClassMetrics>,
    /// `confusion[true][predicted]` counts.
    pub confusion: Vec<Vec<u64>>,
    /// Wall time the evaluation took.
    pub seconds: f64,
}

/// Sample predictions on a fixed set of test images.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Samples {
    /// Epoch after which the samples were taken.
    pub epoch: usize,
    /// Global step at sampling time.
    pub step: u64,
    /// One entry per fixed test image.
    pub samples: Vec<Sample>,
}

/// One predicted image.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Sample {
    /// Index in the test set.
    pub index: usize,
    /// The 28×28 grayscale image as a base64 PNG.
    pub png_base64: String,
    /// The true label.
    pub label: u8,
    /// The model's most probable class.
    pub predicted: u8,
    /// Softmax probability of the predicted class.
    #[serde(deserialize_with = "nan_if_null")]
    pub confidence: f64,
}

/// A checkpoint was written (atomically) after an epoch.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CheckpointSaved {
    /// Epoch the checkpoint was taken after.
    pub epoch: usize,
    /// Global step at the checkpoint.
    pub step: u64,
    /// Directory holding the checkpoint.
    pub path: String,
    /// Whether this is the best checkpoint so far by validation accuracy.
    pub best: bool,
    /// Checkpoint directories deleted by the retention policy.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub removed: Vec<String>,
    /// Set for a checkpoint taken between batches (the `checkpoint`
    /// control): batches of epoch `epoch + 1` it holds; a resume goes on
    /// from there.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub batches_into_epoch: Option<usize>,
}

/// Severity of a [`LogMessage`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LogLevel {
    /// Routine progress.
    Info,
    /// Something worth a look; the run goes on.
    Warn,
    /// Something failed.
    Error,
}

/// A message worth showing to the person watching the run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LogMessage {
    /// How serious the message is.
    pub level: LogLevel,
    /// The text shown to people.
    pub message: String,
}

/// How a run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunStatus {
    /// Ran to its last epoch.
    Completed,
    /// Stopped early at a person's request (Ctrl-C, SIGTERM, the Stop button).
    Stopped,
    /// Ended by an error, or stopped by `--stop-on-nan` (see
    /// [`RunFinished::error`]).
    Failed,
}

/// What the run is doing when batches alone do not say: a GPU backend
/// compiling and autotuning its kernels before the first batch (minutes on
/// a fresh machine), then training.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Phase {
    /// The phase the run entered.
    pub phase: PhaseKind,
    /// A sentence for people (the page, the progress bar, the log).
    pub message: String,
}

/// The phases a [`Phase`] event announces.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PhaseKind {
    /// Compiling and autotuning GPU kernels before the first batch.
    Compiling,
    /// The first batch is done; training goes on.
    Training,
}

/// The last event of a run (or of one resumption of it).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunFinished {
    /// How the run ended.
    pub status: RunStatus,
    /// Set when `status` is `failed`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Why a run that did not fail ended before its last epoch: early
    /// stopping, its target reached, a stop after an epoch someone asked
    /// for (absent when it ran to its last epoch, and in older logs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Epochs completed in total.
    pub epochs_completed: usize,
    /// Global steps completed in total.
    pub steps: u64,
    /// Seconds spent training in this process.
    pub train_seconds: f64,
    /// Final test metrics, when the test evaluation ran.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub test_accuracy: Option<f64>,
    /// Final test macro-F1, when the test evaluation ran.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub test_f1_macro: Option<f64>,
    /// Final test loss, when the test evaluation ran.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub test_loss: Option<f64>,
}

/// Current Unix time in milliseconds.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// The `seq`s of `batch`, `eval` and `samples` events that a later resume
/// superseded: after a run is killed mid-epoch and resumed from its last
/// checkpoint, the log holds the steps after that checkpoint twice. Every
/// consumer skips these so that it keeps one value per step (see
/// [`RunStarted::resumed_from_step`]).
pub fn superseded<'a, I>(events: I) -> std::collections::HashSet<u64>
where
    I: IntoIterator<Item = &'a Event>,
    I::IntoIter: DoubleEndedIterator,
{
    let mut cut = u64::MAX;
    let mut out = std::collections::HashSet::new();
    for event in events.into_iter().rev() {
        match &event.kind {
            EventKind::RunStarted(r) => {
                if let Some(step) = r.resumed_from_step {
                    cut = cut.min(step);
                }
            }
            EventKind::Batch(BatchMetrics { step, .. })
            | EventKind::Eval(EvalMetrics { step, .. })
            | EventKind::Samples(Samples { step, .. })
                if *step > cut =>
            {
                out.insert(event.seq);
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
    fn a_nan_loss_is_written_as_null_and_read_back_as_nan() {
        let text = r#"{"seq":1,"ts_ms":1,"run_id":"r","type":"batch","epoch":1,"batch":1,"batches":2,"step":1,"size":8,"loss":null,"accuracy":0.1,"f1_macro":0.1,"epoch_loss":null,"epoch_accuracy":0.1,"epoch_f1_macro":0.1,"lr":10.0,"images_per_sec":1.0,"elapsed_s":1.0}"#;
        let event: Event = serde_json::from_str(text).unwrap();
        let EventKind::Batch(b) = &event.kind else {
            panic!()
        };
        assert!(b.loss.is_nan() && b.epoch_loss.is_nan());
        let again = serde_json::to_string(&event).unwrap();
        assert!(again.contains(r#""loss":null"#), "{again}");
    }

    #[test]
    fn events_round_trip_with_type_tag() {
        let event = Event {
            seq: 7,
            ts_ms: 1,
            run_id: "r".into(),
            kind: EventKind::Log(LogMessage {
                level: LogLevel::Warn,
                message: "hi".into(),
            }),
        };
        let text = serde_json::to_string(&event).unwrap();
        assert!(text.contains(r#""type":"log""#), "{text}");
        assert!(text.contains(r#""level":"warn""#), "{text}");
        let back: Event = serde_json::from_str(&text).unwrap();
        assert_eq!(back, event);
    }

    #[test]
    fn unknown_fields_are_ignored() {
        let text = r#"{"seq":1,"ts_ms":2,"run_id":"r","type":"log","level":"info","message":"m","new_field":3}"#;
        let event: Event = serde_json::from_str(text).unwrap();
        assert_eq!(event.kind.name(), "log");
    }
}
