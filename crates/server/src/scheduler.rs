//! The run scheduler: the queue of runs waiting for a device, the runs this
//! server trains (one per device, placed by [`crate::slots`]) and the run
//! its pages follow (`current`), behind one lock.
//!
//! It decides; a [`Machine`] acts: it tells the devices there are and who
//! else holds them, and trains a run on a thread of its own, which calls
//! [`Scheduler::on_run_ended`] when the run ends. The server's machine
//! lives in `machine.rs`; the tests below use one with made-up GPUs.
//! Nothing here waits on a driver, a file or a thread while holding the
//! lock.

use crate::hub::{HubSink, RunHub};
use crate::queue::{Origin, Queue, QueueWriteError, Queued};
use crate::slots::{place, Devices, Placement, Slot, Taken};
use mnist_events::{EventKind, LockExt, LogLevel, LogMessage, RunFinished, RunStatus};
use mnist_train::TrainConfig;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use tokio::sync::watch;

/// What the scheduler needs of the machine it runs on.
pub trait Machine {
    /// The devices now, or why queued runs must wait (the data set cannot
    /// be read). `gpu` is false when every queued run is a CPU run: no
    /// driver is probed for those.
    fn devices(&self, gpu: bool) -> Result<Devices, String>;
    /// The devices runs of other processes hold on this machine, each with
    /// who holds it.
    fn held_elsewhere(&self) -> Vec<(Slot, String)>;
    /// Whether a run id is taken (its folder exists).
    fn is_taken(&self, run_id: &str) -> bool;
    /// The hub a resumed run continues: its logged events, live.
    fn resumed_hub(&self, run_id: &str) -> Arc<RunHub>;
    /// Trains `start` on a thread of its own, which calls
    /// [`Scheduler::on_run_ended`] when the run ends; why not, if it
    /// could not start.
    fn launch(&self, start: Start) -> Result<(), String>;
    /// Runs started, ended or left the queue: pages list them again.
    fn runs_changed(&self);
}

/// A run this scheduler trains, and the device it holds.
#[derive(Clone)]
pub struct Training {
    /// The run's events and folded state.
    pub hub: Arc<RunHub>,
    /// Asks its trainer to stop.
    pub stop: mnist_events::Stop,
    /// Steers its trainer between batches.
    pub controls: mnist_events::Controls,
    /// The device it trains on, free again when it ends.
    pub slot: Slot,
}

/// A run being trained by (or watched from) this process: the one the
/// pages following `current` show.
pub struct CurrentRun {
    /// The run's events and folded state (live, or loaded from its log).
    pub hub: Arc<RunHub>,
    /// Asks the run's trainer to stop (`POST /api/runs/{id}/stop`).
    pub stop: mnist_events::Stop,
    /// Steers its trainer (`POST /api/runs/{id}/control`); `None` for a
    /// run no trainer in this process trains (a log, a followed run).
    pub controls: Option<mnist_events::Controls>,
}

impl From<&Training> for CurrentRun {
    fn from(t: &Training) -> Self {
        Self {
            hub: t.hub.clone(),
            stop: t.stop.clone(),
            controls: Some(t.controls.clone()),
        }
    }
}

/// A queued run placed on a device, for [`Machine::launch`].
pub struct Start {
    /// What was queued.
    pub item: Queued,
    /// Where it trains, and why there.
    pub placement: mnist_train::Placement,
    /// Its hub and handles.
    pub run: Training,
}

/// A run to put on the queue.
pub struct Submission {
    /// Its checked configuration.
    pub config: TrainConfig,
    /// The sweep it belongs to.
    pub sweep: Option<String>,
    /// A fresh model, a resumption or a fork.
    pub origin: Origin,
    /// The id to train under: a resumption's own (which must be neither
    /// queued nor training); a fresh one when `None`.
    pub run_id: Option<String>,
}

impl Submission {
    /// A new run of `config` under a fresh id, in no sweep.
    pub fn new(config: TrainConfig) -> Self {
        Self {
            config,
            sweep: None,
            origin: Origin::New,
            run_id: None,
        }
    }
}

/// What became of a submission.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Submitted {
    /// It trains now.
    Started,
    /// It waits; its place in the queue (1 is next).
    Queued(usize),
}

/// The handles of a run this scheduler trains or shows.
pub struct Trainer {
    /// Whether its run has ended.
    pub finished: bool,
    /// Asks it to stop.
    pub stop: mnist_events::Stop,
    /// Steers it (`None` when no trainer of this process trains it).
    pub controls: Option<mnist_events::Controls>,
}

/// Why a submission was refused.
#[derive(Debug, thiserror::Error)]
pub enum SubmitError {
    /// A resumption of a run that is queued or training already.
    #[error("run {0} is already queued or training")]
    Busy(String),
    /// The queue file could not be written.
    #[error(transparent)]
    Write(#[from] QueueWriteError),
}

struct Board {
    queue: Queue,
    training: HashMap<String, Training>,
    current: Option<CurrentRun>,
}

/// The queue, the training runs and the current run, behind one lock.
pub struct Scheduler {
    board: Mutex<Board>,
    /// The id of the run `/ws/runs/current` follows; changes wake viewers.
    current_id: watch::Sender<Option<String>>,
}

impl Scheduler {
    /// A scheduler over `queue` (what a restarted server left), with
    /// nothing training and nothing shown.
    pub fn new(queue: Queue) -> Self {
        Self {
            board: Mutex::new(Board {
                queue,
                training: HashMap::new(),
                current: None,
            }),
            current_id: watch::channel(None).0,
        }
    }

    /// Queues a run (under a fresh id, or a resumption's own) and starts every queued run a
    /// device is free for; the run's id and whether it started.
    pub fn submit(
        &self,
        machine: &dyn Machine,
        submission: Submission,
    ) -> Result<(String, Submitted), SubmitError> {
        let run_id = {
            let mut board = self.board.locked();
            let run_id = match submission.run_id {
                Some(id) if board.queue.contains(&id) || board.training.contains_key(&id) => {
                    return Err(SubmitError::Busy(id))
                }
                Some(id) => id,
                None => fresh_id(|id| board.queue.contains(id) || machine.is_taken(id)),
            };
            board.queue.push(Queued {
                run_id: run_id.clone(),
                config: submission.config,
                queued_ms: mnist_events::now_ms(),
                sweep: submission.sweep,
                origin: submission.origin,
            })?;
            run_id
        };
        self.dispatch(machine);
        let board = self.board.locked();
        let answer = match board.queue.position(&run_id) {
            Some(position) => Submitted::Queued(position),
            None => Submitted::Started,
        };
        drop(board);
        if answer != Submitted::Started {
            machine.runs_changed();
        }
        Ok((run_id, answer))
    }

    /// Starts every queued run a device is free for, in queue order: after
    /// a submission, when a run ends (here or in another process) and when
    /// the server starts with a queue left by a restart.
    pub fn dispatch(&self, machine: &dyn Machine) {
        while self.start_next(machine) {}
    }

    /// A run this scheduler trains ended: its device is free, the pages
    /// move on to another training run if they showed it, and the queue
    /// goes on.
    pub fn on_run_ended(&self, machine: &dyn Machine, run_id: &str) {
        {
            let mut board = self.board.locked();
            board.training.remove(run_id);
            let shown = board.current.as_ref().map(|c| c.hub.run_id.as_str());
            if shown.is_none_or(|id| id == run_id) {
                let next = board
                    .training
                    .values()
                    .filter(|t| !t.hub.is_finished())
                    .max_by_key(|t| t.hub.with_state(|s| s.summary().started_ms))
                    .map(CurrentRun::from);
                if let Some(next) = next {
                    self.show_locked(&mut board, next);
                }
            }
        }
        machine.runs_changed();
        self.dispatch(machine);
    }

    /// Why each queued run waits, in queue order: the device it needs and
    /// who holds it (the runs before it take their devices first).
    pub fn waiting_for(&self, machine: &dyn Machine) -> Vec<(String, String)> {
        let queue = self.queued();
        let gpu = queue.iter().any(|q| needs_gpu(&q.config));
        let devices = match machine.devices(gpu) {
            Ok(devices) => devices,
            Err(why) => {
                return queue
                    .iter()
                    .map(|q| (q.run_id.clone(), why.clone()))
                    .collect()
            }
        };
        let mut taken = held(machine.held_elsewhere(), &self.board.locked().training);
        queue
            .iter()
            .map(|item| {
                let why = match place(item.config.backend, item.config.device, &devices, &taken) {
                    Placement::Start(slot) => {
                        let why = format!("{slot}, free: it starts now");
                        taken.insert(slot, format!("run {}", item.run_id));
                        why
                    }
                    Placement::Wait(why) => why,
                };
                (item.run_id.clone(), why)
            })
            .collect()
    }

    /// The queued runs, next first.
    pub fn queued(&self) -> Vec<Queued> {
        self.board.locked().queue.items().to_vec()
    }

    /// Whether run `id` waits in the queue.
    pub fn is_queued(&self, run_id: &str) -> bool {
        self.board.locked().queue.contains(run_id)
    }

    /// Takes a queued run off the queue.
    pub fn cancel(&self, run_id: &str) -> Result<Option<Queued>, QueueWriteError> {
        self.board.locked().queue.remove(run_id)
    }

    /// Moves a queued run to `position` (1 is next); false when it is not
    /// queued.
    pub fn move_to(&self, run_id: &str, position: usize) -> Result<bool, QueueWriteError> {
        self.board.locked().queue.move_to(run_id, position)
    }

    /// The handles of run `id`'s trainer in this process, if it trains or
    /// shows it.
    pub fn trainer(&self, run_id: &str) -> Option<Trainer> {
        let board = self.board.locked();
        if let Some(t) = board.training.get(run_id) {
            return Some(Trainer {
                finished: t.hub.is_finished(),
                stop: t.stop.clone(),
                controls: Some(t.controls.clone()),
            });
        }
        let current = board.current.as_ref().filter(|c| c.hub.run_id == run_id)?;
        Some(Trainer {
            finished: current.hub.is_finished(),
            stop: current.stop.clone(),
            controls: current.controls.clone(),
        })
    }

    /// The ids of the runs this scheduler trains now.
    pub fn training_ids(&self) -> Vec<String> {
        self.board.locked().training.keys().cloned().collect()
    }

    /// The hubs of the runs this scheduler trains now.
    pub fn training_hubs(&self) -> Vec<Arc<RunHub>> {
        let board = self.board.locked();
        board.training.values().map(|t| t.hub.clone()).collect()
    }

    /// The hub of run `id` if it is the current run or trains here.
    pub fn hub(&self, run_id: &str) -> Option<Arc<RunHub>> {
        let board = self.board.locked();
        let current = board.current.as_ref().map(|c| &c.hub);
        current
            .filter(|h| h.run_id == run_id)
            .or_else(|| board.training.get(run_id).map(|t| &t.hub))
            .cloned()
    }

    /// The hub of the run the pages follow, if any.
    pub fn current_hub(&self) -> Option<Arc<RunHub>> {
        self.board.locked().current.as_ref().map(|c| c.hub.clone())
    }

    /// Makes `run` the run the pages follow.
    pub fn show(&self, run: CurrentRun) {
        self.show_locked(&mut self.board.locked(), run);
    }

    /// Stops showing run `id`; whether it was shown.
    pub fn unshow(&self, run_id: &str) -> bool {
        let mut board = self.board.locked();
        if board
            .current
            .as_ref()
            .is_none_or(|c| c.hub.run_id != run_id)
        {
            return false;
        }
        board.current = None;
        self.current_id.send_replace(None);
        true
    }

    /// Wakes when the run the pages follow changes.
    pub fn current_changes(&self) -> watch::Receiver<Option<String>> {
        self.current_id.subscribe()
    }

    fn show_locked(&self, board: &mut Board, run: CurrentRun) {
        let id = run.hub.run_id.clone();
        board.current = Some(run);
        self.current_id.send_replace(Some(id));
    }

    /// Starts the first queued run that may start now; false when none can.
    fn start_next(&self, machine: &dyn Machine) -> bool {
        let gpu = {
            let board = self.board.locked();
            if board.queue.items().is_empty() {
                return false;
            }
            board.queue.items().iter().any(|q| needs_gpu(&q.config))
        };
        let devices = match machine.devices(gpu) {
            Ok(devices) => devices,
            Err(why) => {
                tracing::error!("queued runs wait: {why}");
                return false;
            }
        };
        let elsewhere = machine.held_elsewhere();
        let Some((item, mut run)) = self.take_placeable(&devices, elsewhere) else {
            return false;
        };
        if item.origin == Origin::Resume {
            // Read outside the lock; nothing was pushed to the placeholder.
            run.hub = machine.resumed_hub(&item.run_id);
            if let Some(t) = self.board.locked().training.get_mut(&item.run_id) {
                t.hub = run.hub.clone();
            }
        }
        self.follow_if_idle(&run);
        machine.runs_changed();
        let start = Start {
            placement: placement_of(&run.slot, &devices),
            item,
            run: run.clone(),
        };
        if let Err(why) = machine.launch(start) {
            self.board.locked().training.remove(&run.hub.run_id);
            fail_hub(&run.hub, format!("cannot start the training thread: {why}"));
        }
        true
    }

    /// Takes the first queued run a device is free for off the queue and
    /// registers it as training there, deciding and registering under one
    /// lock.
    fn take_placeable(
        &self,
        devices: &Devices,
        elsewhere: Vec<(Slot, String)>,
    ) -> Option<(Queued, Training)> {
        let mut board = self.board.locked();
        let taken = held(elsewhere, &board.training);
        let (run_id, slot) = board.queue.items().iter().find_map(|item| {
            match place(item.config.backend, item.config.device, devices, &taken) {
                Placement::Start(slot) => Some((item.run_id.clone(), slot)),
                Placement::Wait(_) => None,
            }
        })?;
        let item = board.queue.take(&run_id)?;
        let run = Training {
            hub: RunHub::live(run_id.clone()),
            stop: mnist_events::Stop::new(),
            controls: mnist_events::Controls::new(),
            slot,
        };
        board.training.insert(run_id, run.clone());
        Some((item, run))
    }

    /// Pages following `current` move to a new run unless the run they
    /// show still trains.
    fn follow_if_idle(&self, run: &Training) {
        let mut board = self.board.locked();
        let idle = board
            .current
            .as_ref()
            .is_none_or(|c| c.hub.is_finished() || !c.hub.with_state(|s| s.is_live()));
        if idle {
            self.show_locked(&mut board, CurrentRun::from(run));
        }
    }
}

/// A run id no queued run and no run folder has.
fn fresh_id(taken: impl Fn(&str) -> bool) -> String {
    let mut run_id = mnist_train::new_run_id();
    while taken(&run_id) {
        run_id = mnist_train::new_run_id();
    }
    run_id
}

/// Whether placing `config` needs the GPUs probed.
fn needs_gpu(config: &TrainConfig) -> bool {
    config.backend != mnist_train::BackendChoice::Cpu
}

/// The devices held now: by the runs this scheduler trains and by runs
/// other processes train on this machine, each with its holder.
fn held(elsewhere: Vec<(Slot, String)>, training: &HashMap<String, Training>) -> Taken {
    let mut taken: Taken = elsewhere
        .into_iter()
        .map(|(slot, id)| (slot, format!("run {id} (another process)")))
        .collect();
    taken.extend(
        training
            .iter()
            .map(|(id, t)| (t.slot.clone(), format!("run {id}"))),
    );
    taken
}

/// The device a run was given, with why, for its `run_started`.
fn placement_of(slot: &Slot, devices: &Devices) -> mnist_train::Placement {
    let (backend, device) = slot.backend_and_device();
    let detail = match slot {
        Slot::Cuda(i) => devices
            .cuda
            .iter()
            .find(|g| g.index as usize == *i)
            .map(|g| format!(" ({})", mnist_train::device::describe(g)))
            .unwrap_or_default(),
        _ => String::new(),
    };
    mnist_train::Placement {
        backend,
        device,
        reason: format!(
            "the server's queue placed it on {slot}{detail}, a device no other run was using"
        ),
    }
}

/// Ends a run whose trainer could not start (or died without ending its
/// stream): an error and `run_finished`, numbered by an event stream that
/// continues the hub's, so viewers and the 409 check see it as over.
pub fn fail_hub(hub: &Arc<RunHub>, error: String) {
    tracing::error!("run {} failed: {error}", hub.run_id);
    let stream = mnist_events::EventStream::new(hub.run_id.clone(), hub.last_seq());
    stream.add_sink(HubSink(hub.clone()));
    stream.emit(EventKind::Log(LogMessage {
        level: LogLevel::Error,
        message: error.clone(),
    }));
    stream.emit(EventKind::RunFinished(RunFinished {
        status: RunStatus::Failed,
        error: Some(error),
        reason: None,
        epochs_completed: 0,
        steps: 0,
        train_seconds: 0.0,
        test_accuracy: None,
        test_f1_macro: None,
        test_loss: None,
    }));
}

#[cfg(test)]
mod tests;
