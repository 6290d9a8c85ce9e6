//! The server's messages that have a shape, typed in one place: the
//! websocket envelope and the snapshot it opens with, a run's details
//! (`GET /api/runs/{id}`), a row of the runs list ([`RunSummary`]), the
//! user's words about a run ([`RunMeta`]) and what it holds on disk
//! ([`Disk`]), and the small answers of the API. Handlers and the run
//! state build these; nothing here reads a file or holds a lock.

use crate::series::{HwPoint, SeriesAnswer};
use mnist_events::{Event, HardwareSnapshot};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::sync::Arc;

/// Where a run stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// A process is training it now.
    Running,
    /// Its trainer holds it between batches (the `pause` control) until
    /// it is resumed.
    Paused,
    /// Ran to its last epoch.
    Completed,
    /// Stopped early at a person's request.
    Stopped,
    /// Ended by an error, or stopped by `--stop-on-nan`.
    Failed,
    /// The log ends without `run_finished`: the process died (or was
    /// killed) and nothing trains it now.
    Interrupted,
}

impl Status {
    /// The snake_case name, as serialised (`running`, `completed`, …).
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Running => "running",
            Status::Paused => "paused",
            Status::Completed => "completed",
            Status::Stopped => "stopped",
            Status::Failed => "failed",
            Status::Interrupted => "interrupted",
        }
    }

    /// Whether a trainer holds the run now (running or paused).
    pub fn is_training(self) -> bool {
        matches!(self, Status::Running | Status::Paused)
    }

    /// Whether the run ended (completed, stopped or failed): its log gets
    /// nothing more unless it is resumed.
    pub fn is_final(self) -> bool {
        matches!(self, Status::Completed | Status::Stopped | Status::Failed)
    }

    /// Every status, for `/metrics` (one gauge per status).
    pub const ALL: [Status; 6] = [
        Status::Running,
        Status::Paused,
        Status::Completed,
        Status::Stopped,
        Status::Failed,
        Status::Interrupted,
    ];
}

/// One row of the run history (and of the run index).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunSummary {
    /// The run's id, as in its `runs/<id>` folder.
    pub run_id: String,
    /// Where the run stands.
    pub status: Status,
    /// Unix time of the run's first event, in milliseconds (0 without one).
    pub started_ms: u64,
    /// Unix time of the latest attempt's `run_finished`, in milliseconds.
    #[serde(default)]
    pub finished_ms: Option<u64>,
    /// The training configuration from `run_started` (null before it).
    pub config: Value,
    /// Backend used (`cpu`, `wgpu` or `cuda`), from `run_started`.
    pub backend: Option<String>,
    /// Device name as the backend reports it, from `run_started`.
    pub device: Option<String>,
    /// The device's index within the backend (`cuda:1` is 1), from `run_started`.
    pub device_index: Option<usize>,
    /// What was picked and why, from `run_started`.
    pub device_reason: Option<String>,
    /// The model's total parameter count, from `run_started`.
    pub params: Option<usize>,
    /// Epochs done: from `run_finished`, else the last checkpointed epoch.
    pub epochs_completed: usize,
    /// The latest batch's step, 0 before any.
    pub steps: u64,
    /// The latest batch's loss.
    pub last_loss: Option<f64>,
    /// Accuracy (0–1) of the latest evaluation not on the test split.
    pub val_accuracy: Option<f64>,
    /// Accuracy (0–1) of the latest test evaluation.
    pub test_accuracy: Option<f64>,
    /// Macro-F1 (0–1) of the latest test evaluation.
    pub test_f1_macro: Option<f64>,
    /// Why the run failed, from `run_finished`.
    pub error: Option<String>,
    /// The sweep the run belongs to (its `sweep-…` tag).
    #[serde(default)]
    pub sweep: Option<String>,
    /// The run and checkpoint it was forked from, from `run_started`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent: Option<mnist_events::Parent>,
    /// The user's name, notes and tags (`meta.json`, filled in by the API).
    #[serde(flatten)]
    pub meta: RunMeta,
    /// What it holds on disk (filled in by the index).
    #[serde(flatten)]
    pub disk: Disk,
}

impl RunSummary {
    /// The row with the user's words about it and its disk use.
    pub fn attach(&mut self, meta: RunMeta, disk: Disk) {
        self.sweep = meta.tags.iter().find(|t| t.starts_with("sweep-")).cloned();
        self.meta = meta;
        self.disk = disk;
    }
}

/// The user's words about a run.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct RunMeta {
    /// A name to show instead of the run id.
    pub name: Option<String>,
    /// Free text, at most [`MAX_NOTES`] characters.
    pub notes: String,
    /// Short labels, trimmed: at most [`MAX_TAGS`], each 1..=[`MAX_TAG`]
    /// characters.
    pub tags: Vec<String>,
}

/// What a run holds on disk, for the runs table and `prune`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Disk {
    /// Bytes of the run's folder (its log and meta).
    pub run_bytes: u64,
    /// Bytes of its checkpoints.
    pub checkpoint_bytes: u64,
    /// The epochs it has a checkpoint of, ascending.
    pub checkpoint_epochs: Vec<usize>,
}

/// What the server sends on a websocket besides the run's own events
/// (which go out as they are, see `mnist_events`): the one definition of
/// the envelope, tagged by `type` like the events.
#[derive(Debug, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Envelope {
    /// The run so far, folded.
    Snapshot(Box<Snapshot>),
    /// `/ws/runs/current` while no run exists yet.
    Idle,
    /// `current` moved to another run; its snapshot follows.
    RunChanged {
        /// The new current run's id; `None` when there is none.
        run_id: Option<String>,
    },
    /// A run appeared in, left or changed status in the runs folder (a
    /// `train` from a shell, a deletion): the page lists the runs again.
    RunsChanged,
    /// `/ws/runs/{id}` for a run that does not exist.
    Error {
        /// What went wrong, for a person (`no run ID`).
        error: String,
    },
    /// `/ws/hardware` when sampling is off (`--hw-interval 0`).
    HardwareOff,
    /// `/ws/hardware`'s first message: the last few minutes.
    HardwareHistory {
        /// Seconds between samples.
        interval_s: f64,
        /// The samples the monitor keeps, oldest first.
        samples: Vec<Arc<HardwareSnapshot>>,
    },
    /// `/ws/hardware`: each new sample.
    Hardware(Arc<HardwareSnapshot>),
}

/// The first message a viewer of a run gets ([`Envelope::Snapshot`]):
/// every event but batches and hardware samples in full, the batch series
/// downsampled.
#[derive(Debug, Serialize)]
pub struct Snapshot {
    /// The run's id.
    pub run_id: String,
    /// Whether a process trains it now.
    pub live: bool,
    /// Where it stands.
    pub status: Status,
    /// The `seq` of the latest event folded in (a reconnect asks from it).
    pub last_seq: u64,
    /// Batches the run has logged (one per step).
    pub batch_count: usize,
    /// Every event but batches and hardware samples, in order.
    pub events: Vec<Arc<Event>>,
    /// The latest batch.
    pub last_batch: Option<Arc<Event>>,
    /// The batch series at the page's default smoothing.
    pub series: SeriesAnswer,
    /// The machine over the run.
    pub hardware: Vec<HwPoint>,
}

/// The latest event of each kind a run's details show.
#[derive(Debug, Serialize)]
pub struct Latest {
    /// The latest `batch`.
    pub batch: Option<Arc<Event>>,
    /// The latest evaluation not on the test split.
    pub val: Option<Arc<Event>>,
    /// The latest test evaluation.
    pub test: Option<Arc<Event>>,
    /// The latest sample predictions.
    pub samples: Option<Arc<Event>>,
    /// The latest checkpoint.
    pub checkpoint: Option<Arc<Event>>,
}

/// `GET /api/runs/{id}`: configuration, model, status, the latest of each
/// kind of event, and what may be done with the run here.
#[derive(Debug, Serialize)]
pub struct RunDetails {
    /// The run's id.
    pub run_id: String,
    /// Where it stands.
    pub status: Status,
    /// Its configuration (null before `run_started`).
    pub config: Value,
    /// Its model, from `run_started`.
    pub model: Option<mnist_events::ModelSummary>,
    /// Backend used, from `run_started`.
    pub backend: Option<String>,
    /// Device name, from `run_started`.
    pub device: Option<String>,
    /// The device's index within the backend.
    pub device_index: Option<usize>,
    /// What was picked and why.
    pub device_reason: Option<String>,
    /// The `seq` of its latest event.
    pub last_seq: u64,
    /// The latest event of each kind.
    pub latest: Latest,
    /// Its row in the runs list.
    pub summary: RunSummary,
    /// The user's name, notes and tags.
    pub meta: RunMeta,
    /// The run and checkpoint it was forked from.
    pub parent: Option<mnist_events::Parent>,
    /// The epochs it has a checkpoint of (what a fork may start from).
    pub checkpoint_epochs: Vec<usize>,
    /// Whether this server trains it, so that controls reach its trainer.
    pub can_control: bool,
    /// Whether `POST /api/runs/{id}/resume` would take it: interrupted,
    /// stopped or failed, with a checkpoint, on a server that starts runs.
    pub can_resume: bool,
}

/// A row of `GET /api/runs`: the run's summary, and for `sort=tree` its
/// depth in the lineage tree (0 for a run not forked from a listed one).
#[derive(Debug, Serialize)]
pub struct ListedRun {
    /// The run's row.
    #[serde(flatten)]
    pub summary: RunSummary,
    /// Forks between it and its listed root.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub depth: Option<usize>,
}

/// The body of every error answer (the server's `ApiError`): what went
/// wrong, each invalid field, and for a conflict over a run, its id.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ErrorBody {
    /// What went wrong, for a person.
    pub error: String,
    /// Each invalid field and why (empty unless the request was invalid).
    #[serde(default)]
    pub errors: Vec<mnist_train::FieldError>,
    /// The run a conflict is about (a resume's fork, a run that trains).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_id: Option<String>,
}

/// `GET /api/config/schema`: the training configuration's fields.
#[derive(Debug, Serialize)]
pub struct ConfigSchema {
    /// Each field's name, type, range and default
    /// (`mnist_train::config::schema`).
    pub fields: Value,
}

/// `GET /api/health`.
#[derive(Debug, Serialize)]
pub struct Health {
    /// Always `ok`: the server answers.
    pub status: &'static str,
    /// This binary's version.
    pub version: &'static str,
    /// The run the page shows now.
    pub current_run: Option<String>,
    /// Whether a run trains here now.
    pub training: bool,
    /// The runs this server trains.
    pub training_runs: Vec<String>,
    /// Whether the fleet view has hosts (SSH or Prometheus).
    pub fleet: bool,
    /// Whether this server starts runs (`serve`, not `train --serve`).
    pub can_start_runs: bool,
    /// The runs index.
    pub index: IndexHealth,
    /// The cache of folded logged runs.
    pub logged_cache: crate::CacheUsage,
}

/// The runs index in [`Health`].
#[derive(Debug, Serialize)]
pub struct IndexHealth {
    /// Runs it lists.
    pub runs: usize,
    /// How far building it got, while it is being built.
    pub building: Option<Progress>,
}

/// `POST /api/model/preview`: a configuration's model and the memory its
/// run would take.
#[derive(Debug, Serialize)]
pub struct ModelPreview {
    /// Its layers and parameter counts.
    pub model: mnist_events::ModelSummary,
    /// The memory estimate, in bytes.
    pub memory_bytes: u64,
    /// The same in GiB, for people.
    pub memory: String,
}

/// `POST /api/runs/{id}/stop`'s answer (202): the stop was asked.
#[derive(Debug, Serialize)]
pub struct Stopping {
    /// The run.
    pub run_id: String,
    /// Always true.
    pub stopping: bool,
    /// For a Slurm task: the task cancelled (`JOB_TASK`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub slurm: Option<String>,
}

/// `POST /api/runs/{id}/control`'s answer (202). The CLI's `control`
/// reads it back.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ControlAccepted {
    /// The run.
    pub run_id: String,
    /// The action's name (`pause`, `set_lr`, …).
    pub action: String,
    /// When the trainer applies it.
    pub applied: String,
}

/// The body of `POST /api/runs/{id}/control` as the CLI sends it (the
/// server reads any JSON object, checking each field:
/// `mnist_train::control::parse`).
#[derive(Debug, Clone, Serialize)]
pub struct ControlBody {
    /// What is asked, with its values.
    #[serde(flatten)]
    pub action: mnist_events::ControlAction,
    /// Who asks (`page`, `cli`, `api` or `reproduce`).
    pub source: String,
}

/// `GET /api/runs/columns`: chosen columns of every matching run.
#[derive(Debug, Serialize)]
pub struct RunColumns {
    /// Runs that match.
    pub total: usize,
    /// Their ids, in the order of every column.
    pub run_ids: Vec<String>,
    /// Their names.
    pub names: Vec<Option<String>>,
    /// Each asked key's values, one per run.
    pub columns: std::collections::BTreeMap<String, Vec<Cell>>,
}

/// `POST /api/sweeps`: a base configuration, the grid (as JSON lists by
/// field, or as `field=v1,v2` lines), and optionally `random` (with
/// `seed`). `sweep --server` sends it.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SweepRequest {
    /// The configuration of every run before the grid (defaults when null).
    #[serde(default)]
    pub base: Value,
    /// Each swept field's values.
    #[serde(default)]
    pub grid: serde_json::Map<String, Value>,
    /// Swept fields as `field=v1,v2` lines.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub specs: Vec<String>,
    /// Train this many combinations drawn at random instead of all.
    pub random: Option<usize>,
    /// The random draw's seed.
    #[serde(default)]
    pub seed: u64,
}

/// A run of a sweep, as queued.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SweepRun {
    /// The run's id.
    pub run_id: String,
    /// Its place in the queue (absent when it started at once).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub position: Option<usize>,
    /// Its configuration.
    pub config: mnist_train::TrainConfig,
}

/// `POST /api/sweeps`'s answer (202); `sweep --server` reads it back.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SweepQueued {
    /// The sweep id every run is tagged with.
    pub sweep_id: String,
    /// Its runs, in order.
    pub runs: Vec<SweepRun>,
    /// The page that overlays the sweep's runs.
    pub compare: String,
}

/// `GET /api/slurm`.
#[derive(Debug, Serialize)]
pub struct SlurmSweeps {
    /// Every sweep submitted to Slurm from this runs folder.
    pub sweeps: Vec<SweepView>,
    /// Why Slurm could not be asked.
    pub error: Option<String>,
}

/// `POST /api/slurm/{sweep}/cancel`'s answer (202).
#[derive(Debug, Serialize)]
pub struct SlurmCancelling {
    /// The sweep.
    pub sweep_id: String,
    /// Its Slurm job.
    pub job_id: String,
    /// The task cancelled; `None` for the whole job.
    pub task: Option<u32>,
    /// Always true.
    pub cancelling: bool,
}

/// `DELETE /api/runs/{id}`'s answer: the run went to the trash.
#[derive(Debug, Serialize)]
pub struct Trashed {
    /// The run.
    pub run_id: String,
    /// Always true.
    pub trashed: bool,
}

/// A row of `GET /api/trash`.
#[derive(Debug, Serialize)]
pub struct TrashedRun {
    /// The run.
    pub run_id: String,
    /// Its name, if it had one.
    pub name: Option<String>,
    /// Its tags.
    pub tags: Vec<String>,
}

/// `POST /api/trash/{id}/restore`'s answer.
#[derive(Debug, Serialize)]
pub struct Restored {
    /// The run.
    pub run_id: String,
    /// Always true.
    pub restored: bool,
}

/// A sample of `GET /api/runs/{id}/review`.
#[derive(Debug, Serialize)]
pub struct ReviewSample<'a> {
    /// `test` or `train`.
    pub split: &'a str,
    /// Its index in the split's file.
    pub index: usize,
    /// The digit as a PNG.
    pub png_base64: String,
    /// The label the file gives it.
    pub label: u8,
    /// The class the model rates most probable.
    pub predicted: u8,
    /// Each class's probability.
    pub probs: [f32; mnist_data::CLASSES],
    /// Cross-entropy of the label.
    pub loss: f32,
    /// Top wrong class probability minus the label's.
    pub margin: f32,
    /// The reviewer's decision on it, if any.
    pub decision: Option<&'a mnist_data::overrides::Override>,
}

/// `GET /api/runs/{id}/review`: a page of a split's samples, most
/// suspicious first.
#[derive(Debug, Serialize)]
pub struct ReviewPage<'a> {
    /// The run.
    pub run_id: String,
    /// The checkpoint that ranked them.
    pub checkpoint: String,
    /// `test` or `train`.
    pub split: &'a str,
    /// Samples that match the filter.
    pub total: usize,
    /// Samples of the split with a decision.
    pub reviewed: usize,
    /// This page.
    pub samples: Vec<ReviewSample<'a>>,
}

/// `GET /api/overrides`: the label decisions and their file.
#[derive(Debug, Serialize)]
pub struct OverridesAnswer {
    /// The overrides file.
    pub path: String,
    /// Decisions keyed `"<split>:<index>"`.
    pub entries: std::collections::BTreeMap<String, mnist_data::overrides::Override>,
}

/// `POST /api/overrides`'s answer: the decision saved.
#[derive(Debug, Serialize)]
pub struct OverrideSaved {
    /// Its key, `"<split>:<index>"`.
    pub key: String,
    /// The decision.
    pub entry: mnist_data::overrides::Override,
    /// Samples of its split with a decision now.
    pub reviewed: usize,
}

/// `POST /api/predict`'s answer.
#[derive(Debug, Serialize)]
pub struct Prediction {
    /// The run whose model answered.
    pub run_id: String,
    /// Its checkpoint.
    pub checkpoint: String,
    /// The most probable digit.
    pub predicted: usize,
    /// Each digit's probability.
    pub probs: [f32; mnist_data::CLASSES],
    /// The input as the model saw it (28×28, centred), as a PNG.
    pub input_png_base64: String,
    /// Milliseconds the model took.
    pub ms: f64,
}

/// What a run's HTML report shows, embedded in it as JSON
/// and read by `web/report/report.js`.
#[derive(Debug, Serialize)]
pub struct ReportData<'a> {
    /// The run.
    pub run_id: &'a str,
    /// Its name, notes and tags.
    pub meta: &'a RunMeta,
    /// Its row in the runs list.
    pub summary: RunSummary,
    /// Its latest `run_started`.
    pub started: Option<&'a Arc<Event>>,
    /// Its latest `run_finished`.
    pub finished: Option<&'a Arc<Event>>,
    /// Every evaluation.
    pub evals: Vec<&'a Arc<Event>>,
    /// The latest sample predictions.
    pub samples: Option<&'a Arc<Event>>,
    /// How many alerts of each kind it raised.
    pub alerts: &'a [(String, u64)],
    /// The curves.
    pub series: SeriesAnswer,
    /// The machine over the run.
    pub hardware: Vec<HwPoint>,
    /// When the report was made (Unix ms).
    pub generated_ms: u64,
    /// `mnist-monitor <version>`.
    pub generator: String,
}

/// Who reads the fleet for `/api/fleet`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FleetSource {
    /// Each host over SSH (`serve --hosts`).
    Ssh,
    /// One Prometheus that scrapes every host's exporter
    /// (`serve --fleet-prometheus`).
    Prometheus,
}

/// `GET /api/fleet`: every host's status, polled over SSH
/// (`H` = [`mnist_remote::fleet::HostStatus`]) or read from Prometheus
/// ([`PromHost`]); without a fleet, no source and no hosts.
#[derive(Debug, Clone, Serialize)]
pub struct FleetAnswer<H> {
    /// Who reads the fleet; absent without one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source: Option<FleetSource>,
    /// The Prometheus read (its base URL).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub prometheus: Option<String>,
    /// Every host, in order.
    pub hosts: Vec<H>,
    /// Why the fleet could not be read.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl FleetAnswer<mnist_remote::fleet::HostStatus> {
    /// The answer of a server without a fleet: no hosts.
    pub fn none() -> Self {
        Self {
            source: None,
            prometheus: None,
            hosts: Vec::new(),
            error: None,
        }
    }

    /// The SSH fleet's hosts now.
    pub fn ssh(hosts: Vec<mnist_remote::fleet::HostStatus>) -> Self {
        Self {
            source: Some(FleetSource::Ssh),
            hosts,
            ..Self::none()
        }
    }
}

/// A host of the fleet read from Prometheus: the SSH host's row with the
/// few series Prometheus keeps as its stats, and the run it trains.
#[derive(Debug, Clone, Serialize)]
pub struct PromHost {
    /// Its state and stats, as an SSH host's.
    #[serde(flatten)]
    pub status: mnist_remote::fleet::HostStatus<FleetStats>,
    /// The run its exporter follows.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub run: Option<FleetRun>,
}

/// A Prometheus host's stats: the fields of a `stats --json` snapshot the
/// fleet table reads.
#[derive(Debug, Clone, Serialize)]
pub struct FleetStats {
    /// Its CPUs.
    pub cpu: FleetCpu,
    /// Its RAM.
    pub memory: FleetMemory,
    /// Its GPUs, by index.
    pub gpus: Vec<FleetGpu>,
    /// Why it lists no GPU.
    pub gpu_error: Option<String>,
}

/// A Prometheus host's CPUs.
#[derive(Debug, Clone, Serialize)]
pub struct FleetCpu {
    /// All cores together, 0–100.
    pub usage_percent: f64,
}

/// A Prometheus host's RAM, in bytes.
#[derive(Debug, Clone, Serialize)]
pub struct FleetMemory {
    /// In use.
    pub used_bytes: Option<f64>,
    /// Installed.
    pub total_bytes: Option<f64>,
}

/// A Prometheus host's GPU: the readings it exports (each absent when
/// Prometheus has no series of it).
#[derive(Debug, Clone, Default, Serialize)]
pub struct FleetGpu {
    /// NVML's index.
    pub index: u64,
    /// Model name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Busy percent, 0–100.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub utilization_percent: Option<f64>,
    /// Device memory allocated.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub memory_used_bytes: Option<f64>,
    /// Device memory installed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub memory_total_bytes: Option<f64>,
    /// Core temperature.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub temperature_celsius: Option<f64>,
    /// Processes on it.
    pub processes: Vec<FleetProcess>,
}

/// A process on a Prometheus host's GPU.
#[derive(Debug, Clone, Serialize)]
pub struct FleetProcess {
    /// Its id.
    pub pid: Option<u64>,
    /// Who runs it.
    pub user: Option<String>,
    /// Its command.
    pub command: Option<String>,
    /// The GPU memory it holds.
    pub gpu_memory_bytes: Option<f64>,
}

/// The run a Prometheus host's exporter follows.
#[derive(Debug, Clone, Serialize)]
pub struct FleetRun {
    /// Its id.
    pub run_id: Option<String>,
    /// Whether it trains now.
    pub active: bool,
    /// Its latest step.
    pub step: Option<f64>,
    /// Its latest loss.
    pub loss: Option<f64>,
}

/// How far building the index got.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Progress {
    /// Runs folded so far in this pass.
    pub done: usize,
    /// Runs this pass has to fold.
    pub total: usize,
}

/// A value read off a row for a key.
#[derive(Debug, Clone, PartialEq)]
pub enum Cell {
    /// Nothing there (sorted last).
    Missing,
    /// A number.
    Num(f64),
    /// Text (compared case-insensitively, numbers in it by value).
    Text(String),
    /// Several texts (tags): a term matches when one does.
    Many(Vec<String>),
}

/// As JSON: `null`, the number, the text or the list of texts.
impl serde::Serialize for Cell {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Cell::Missing => s.serialize_none(),
            Cell::Num(v) => s.serialize_f64(*v),
            Cell::Text(t) => s.serialize_str(t),
            Cell::Many(t) => serde::Serialize::serialize(t, s),
        }
    }
}

/// One task as the page shows it.
#[derive(Debug, Clone, Serialize)]
pub struct TaskView {
    /// The task's index in the job array.
    pub task: u32,
    /// The run it trains.
    pub run_id: String,
    /// Slurm's state word; `None` when Slurm no longer knows the task (the
    /// run's own status tells how it ended).
    pub state: Option<String>,
    /// Why it waits, while pending.
    pub reason: Option<String>,
    /// The node it runs or ran on.
    pub node: Option<String>,
    /// Time used, as Slurm prints it.
    pub elapsed: Option<String>,
}

/// One sweep's job and its tasks (`GET /api/slurm`).
#[derive(Debug, Clone, Serialize)]
pub struct SweepView {
    /// The sweep id (the job's name).
    pub sweep_id: String,
    /// Slurm's array job id.
    pub job_id: String,
    /// When it was submitted, seconds since the Unix epoch.
    pub submitted_at: f64,
    /// The `sbatch` options it was submitted with.
    pub options: mnist_slurm::SlurmOptions,
    /// Its tasks, in array order.
    pub tasks: Vec<TaskView>,
}
