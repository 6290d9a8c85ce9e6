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
