//! The run scheduler: the queue of configurations waiting for a device,
//! placing each on a free one (one run per device, [`crate::slots`]),
//! training it on a thread of its own, and starting the next when a run
//! ends. The HTTP handlers ([`crate::api`], [`crate::sweeps`]) only
//! translate requests into [`enqueue`] and [`dispatch`].

use crate::error::ApiError;
use crate::hub::{HubSink, RunHub};
use crate::queue::Origin;
use crate::{AppState, CurrentRun};
use mnist_events::LockExt;
use mnist_events::{EventKind, LogLevel, LogMessage, RunFinished, RunStatus};
use mnist_train::{BackendChoice, RunOptions, TrainConfig};
use std::sync::Arc;

/// Puts a checked configuration at the end of the queue under a fresh run
/// id; the id and its position.
pub(crate) fn enqueue(
    state: &AppState,
    config: &TrainConfig,
    sweep: Option<String>,
) -> Result<(String, usize), ApiError> {
    enqueue_from(state, config, sweep, Origin::New, None)
}

/// [`enqueue`] for a run that starts from a checkpoint: a fork (under a
/// fresh id) or a resumption (`own_id`: its own, which must not be queued
/// or training already).
pub(crate) fn enqueue_from(
    state: &AppState,
    config: &TrainConfig,
    sweep: Option<String>,
    origin: Origin,
    own_id: Option<&str>,
) -> Result<(String, usize), ApiError> {
    let mut queue = state.queue.locked();
    let run_id = match own_id {
        Some(id) => {
            if queue.contains(id) || state.training.locked().contains_key(id) {
                return Err(ApiError::conflict(format!(
                    "run {id} is already queued or training"
                )));
            }
            id.to_string()
        }
        _ => {
            let mut run_id = mnist_train::new_run_id();
            while queue.contains(&run_id) || state.opts.runs_dir.join(&run_id).exists() {
                run_id = mnist_train::new_run_id();
            }
            run_id
        }
    };
    let item = crate::queue::Queued {
        run_id: run_id.clone(),
        config: serde_json::to_value(config).expect("config serialises"),
        queued_ms: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64),
        sweep,
        origin,
    };
    let position = queue
        .push(item)
        .map_err(|e| ApiError::Internal(e.to_string()))?;
    Ok((run_id, position))
}

/// Starts every queued run a device is free for, in queue order (one run
/// per device, see [`crate::slots`]): after a `POST /api/runs`, when a run
/// ends, when a run another process trained in the runs folder ends, and
/// when the server starts (a queue left by a restart).
pub fn dispatch(state: &Arc<AppState>) {
    while start_next(state) {}
}

/// Starts the first queued run that may start now; false when none can.
fn start_next(state: &Arc<AppState>) -> bool {
    if state.queue.locked().items().is_empty() {
        return false;
    }
    let data = match load_data(state) {
        Ok(data) => data,
        Err(e) => {
            tracing::error!("queued runs wait: {e}");
            return false;
        }
    };
    let devices = devices(state);
    let Some((item, slot, run)) = take_placeable(state, &devices) else {
        return false;
    };
    let hub = run.hub.clone();
    // Pages following `current` move to the new run unless one they show trains.
    if state
        .current_hub()
        .is_none_or(|h| h.is_finished() || !h.with_state(|s| s.is_live()))
    {
        *state.current.locked() = Some(CurrentRun {
            hub: hub.clone(),
            stop: run.stop.clone(),
            controls: Some(run.controls.clone()),
        });
        state.current_id.send_replace(Some(item.run_id.clone()));
    }
    state.runs_changed.send_modify(|v| *v += 1);
    let (config, slot) = match (TrainConfig::from_json(&item.config), slot) {
        (Ok(config), Some(slot)) => (config, slot),
        (Ok(_), None) => unreachable!("a valid configuration is placed on a device"),
        (Err(errors), _) => {
            let why: Vec<String> = errors.iter().map(|e| e.to_string()).collect();
            let error = format!(
                "its queued configuration is no longer valid: {}",
                why.join("; ")
            );
            state.training.locked().remove(&item.run_id);
            fail_hub(&hub, error);
            return true;
        }
    };
    let placement = placement_of(&slot, &devices);
    launch(state, config, placement, run, data, item);
    true
}

/// The device a run was given, with why, for its `run_started`.
fn placement_of(
    slot: &crate::slots::Slot,
    devices: &crate::slots::Devices,
) -> mnist_train::Placement {
    use crate::slots::Slot;
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

/// The machine's devices now: NVML's GPUs (with their processes) where
/// CUDA is usable, the wgpu adapter, this process's id. A queue of CPU runs
/// only needs none of it: no driver is probed for them.
fn devices(state: &AppState) -> crate::slots::Devices {
    let cpu_only =
        state.queue.locked().items().iter().all(|q| {
            TrainConfig::from_json(&q.config).is_ok_and(|c| c.backend == BackendChoice::Cpu)
        });
    if cpu_only {
        return crate::slots::Devices {
            own_pid: std::process::id(),
            ..Default::default()
        };
    }
    let usable = |name: &str| {
        state
            .backends()
            .iter()
            .find(|b| b.name == name && b.available)
            .map(|b| b.software)
    };
    // Numbered as CUDA numbers them (CUDA_VISIBLE_DEVICES renumbers).
    let cuda = match usable("cuda") {
        Some(_) => {
            // The sampler's latest reading (at most a second old) when it
            // runs; NVML asked afresh otherwise.
            let sampled = state.opts.hardware.as_ref().and_then(|m| m.latest());
            let gpus = match sampled.filter(|s| !s.gpus.is_empty()) {
                Some(s) => s.gpus.clone(),
                None => mnist_hardware::gpus().unwrap_or_default(),
            };
            let visible = std::env::var("CUDA_VISIBLE_DEVICES").ok();
            mnist_train::device::visible_gpus(&gpus, visible.as_deref())
                .into_iter()
                .map(|(ordinal, g)| mnist_events::GpuStats {
                    index: ordinal as u32,
                    ..g.clone()
                })
                .collect()
        }
        None => Vec::new(),
    };
    let wgpu = usable("wgpu");
    crate::slots::Devices {
        auto_wgpu: cuda.is_empty() && wgpu == Some(false),
        cuda,
        wgpu: usize::from(wgpu.is_some()),
        own_pid: std::process::id(),
    }
}

/// The devices held now: by the runs this server trains and by runs other
/// processes train on this machine, each with its holder.
/// `training` is the locked map, so that deciding and registering a start
/// happen under one lock.
fn held_slots(
    followed: Vec<(crate::slots::Slot, String)>,
    training: &std::collections::HashMap<String, crate::Training>,
) -> crate::slots::Taken {
    let mut taken: crate::slots::Taken = followed
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

/// Why each queued run waits, in queue order: the device it needs and who
/// holds it (the runs before it take their devices first).
pub(crate) fn waiting_for(state: &AppState) -> Vec<(String, String)> {
    use crate::slots::{place, Placement};
    let devices = devices(state);
    let followed = state.followed_slots();
    let mut taken = held_slots(followed, &state.training.locked());
    let queue: Vec<_> = state.queue.locked().items().to_vec();
    queue
        .iter()
        .map(|item| {
            let why = match TrainConfig::from_json(&item.config) {
                Err(_) => {
                    "nothing: its configuration is no longer valid (it fails when it starts)".into()
                }
                Ok(c) => match place(c.backend, c.device, &devices, &taken) {
                    Placement::Start(slot) => {
                        let why = format!("{slot}, free: it starts now");
                        taken.insert(slot, format!("run {}", item.run_id));
                        why
                    }
                    Placement::Wait(why) => why,
                },
            };
            (item.run_id.clone(), why)
        })
        .collect()
}

/// Takes the first queued run a device is free for off the queue and
/// registers it as training there (with no device when its configuration
/// no longer parses: it is failed, not left to block the queue).
fn take_placeable(
    state: &AppState,
    devices: &crate::slots::Devices,
) -> Option<(
    crate::queue::Queued,
    Option<crate::slots::Slot>,
    crate::Training,
)> {
    use crate::slots::{place, Placement};
    let followed = state.followed_slots();
    let mut training = state.training.locked();
    let taken = held_slots(followed, &training);
    let mut queue = state.queue.locked();
    let (run_id, slot) =
        queue
            .items()
            .iter()
            .find_map(|item| match TrainConfig::from_json(&item.config) {
                Err(_) => Some((item.run_id.clone(), None)),
                Ok(c) => match place(c.backend, c.device, devices, &taken) {
                    Placement::Start(slot) => Some((item.run_id.clone(), Some(slot))),
                    Placement::Wait(_) => None,
                },
            })?;
    let item = queue.take(&run_id)?;
    // A resumption's viewers see the whole run, then what it adds.
    let hub = match item.origin {
        Origin::Resume => RunHub::resuming(
            run_id.clone(),
            mnist_events::read_events(mnist_events::log_path(&state.opts.runs_dir, &run_id))
                .unwrap_or_default(),
        ),
        _ => RunHub::live(run_id.clone()),
    };
    let run = crate::Training {
        hub,
        stop: mnist_events::Stop::new(),
        controls: mnist_events::Controls::new(),
        slot: slot.clone().unwrap_or(crate::slots::Slot::Cpu),
    };
    training.insert(run_id, run.clone());
    Some((item, slot, run))
}

/// Trains `config` on a thread of its own into `run`'s hub; when it ends,
/// the next queued run starts.
fn launch(
    state: &Arc<AppState>,
    config: TrainConfig,
    placement: mnist_train::Placement,
    run: crate::Training,
    data: Arc<mnist_data::Mnist>,
    item: crate::queue::Queued,
) {
    let hub = run.hub;
    let run_id = hub.run_id.clone();
    let mut sinks: Vec<Box<dyn mnist_events::EventSink>> = vec![Box::new(HubSink(hub.clone()))];
    if let Some(sweep) = item.sweep {
        sinks.push(Box::new(crate::manage::sweep_tagger(
            state.opts.runs_dir.clone(),
            sweep,
        )));
    }
    let opts = RunOptions {
        data_dir: state.opts.data_dir.clone(),
        verify: state.opts.verify,
        download: false,
        runs_dir: state.opts.runs_dir.clone(),
        checkpoints_dir: state.opts.checkpoints_dir.clone(),
        run_id: Some(run_id.clone()),
        resume: (item.origin == Origin::Resume).then(|| run_id.clone()),
        fork: match &item.origin {
            Origin::Fork(f) => Some(f.clone()),
            _ => None,
        },
        stop: run.stop,
        controls: run.controls,
        replay: Vec::new(),
        sinks,
        data: Some(data),
        hardware: state.opts.hardware.clone(),
        alerts: Some(state.opts.alert_rules.clone()),
        stop_on_nan: state.opts.stop_on_nan,
        alert_webhook: state.opts.alert_webhook.clone(),
        provenance: state.opts.provenance.clone().map(|mut p| {
            p.command_line = vec![match &item.origin {
                Origin::New => "POST /api/runs".into(),
                Origin::Resume => format!("POST /api/runs/{run_id}/resume"),
                Origin::Fork(f) => format!("POST /api/runs/{}/fork", f.run_id),
            }];
            p
        }),
        placed: Some(placement),
    };
    let thread_hub = hub.clone();
    let thread_state = state.clone();
    let spawned = std::thread::Builder::new()
        .name(format!("train-{run_id}"))
        .spawn(move || {
            let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                mnist_train::run(config, opts)
            }));
            match outcome {
                Ok(Ok(_)) => {}
                // The run never started its stream.
                Ok(Err(e)) => fail_hub(&thread_hub, e.to_string()),
                // Never expected (the trainer catches its own panics), and
                // never allowed to leave the run "running".
                Err(_) if !thread_hub.is_finished() => {
                    fail_hub(&thread_hub, "the training thread panicked".into())
                }
                Err(_) => {}
            }
            // Its row in the index, as it ended (the log is complete now).
            thread_hub.with_state(|s| thread_state.index.record(s));
            thread_state.training.locked().remove(&thread_hub.run_id);
            follow_another_training_run(&thread_state, &thread_hub.run_id);
            thread_state.runs_changed.send_modify(|v| *v += 1);
            dispatch(&thread_state);
        });
    if let Err(e) = spawned {
        state.training.locked().remove(&hub.run_id);
        fail_hub(&hub, format!("cannot start the training thread: {e}"));
    }
}

/// When the run pages follow (`current`) has ended while other runs still
/// train here (one per GPU), the pages move on to one of those.
fn follow_another_training_run(state: &AppState, ended: &str) {
    if state.current_hub().is_some_and(|h| h.run_id != ended) {
        return;
    }
    let next = state
        .training
        .locked()
        .values()
        .filter(|t| !t.hub.is_finished())
        .max_by_key(|t| t.hub.with_state(|s| s.summary().started_ms))
        .map(|t| CurrentRun {
            hub: t.hub.clone(),
            stop: t.stop.clone(),
            controls: Some(t.controls.clone()),
        });
    if let Some(run) = next {
        state.set_current(run);
    }
}

/// Ends a run whose trainer could not start (or died without ending its
/// stream): an error and `run_finished`, numbered by an event stream that
/// continues the hub's, so viewers and the 409 check see it as over.
fn fail_hub(hub: &Arc<RunHub>, error: String) {
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

/// Checks the backend and the device index, and loads (once) the data set.
pub(crate) fn prepare(
    state: &AppState,
    config: &TrainConfig,
) -> Result<Arc<mnist_data::Mnist>, ApiError> {
    if config.backend != BackendChoice::Auto {
        let name = config.backend.as_str();
        if let Some(b) = state
            .backends()
            .iter()
            .find(|b| b.name == name && !b.available)
        {
            let reason = b.reason.clone().unwrap_or_default();
            let message = format!("{name} is not usable here: {reason}");
            return Err(ApiError::field("backend", message));
        }
    }
    // `cuda:5` on a box with two GPUs: refused now, not when it would start.
    mnist_train::check_device(config.backend, config.device)
        .map_err(|e| ApiError::field("device", e.to_string()))?;
    let data = load_data(state).map_err(ApiError::Unavailable)?;
    // A CPU run that cannot fit would abort the whole server: refuse it now.
    if runs_on_cpu(state, config.backend) {
        mnist_train::memory::check_data(config, data.train_labels.len(), data.test_labels.len())
            .map_err(|e| ApiError::Invalid(vec![e]))?;
    }
    Ok(data)
}

/// Whether `choice` trains on the CPU here (`auto` without a usable GPU).
fn runs_on_cpu(state: &AppState, choice: BackendChoice) -> bool {
    match choice {
        BackendChoice::Cpu => true,
        BackendChoice::Auto => !state
            .backends()
            .iter()
            .any(|b| b.name != "cpu" && b.available && !b.software),
        _ => false,
    }
}

/// The data set, read once and kept (blocking: call from `web::block`).
pub fn load_data(state: &AppState) -> Result<Arc<mnist_data::Mnist>, String> {
    let mut data = state.data.locked();
    if let Some(d) = data.as_ref() {
        return Ok(d.clone());
    }
    let loaded =
        mnist_data::load_dir(&state.opts.data_dir, state.opts.verify).map_err(|e| e.to_string())?;
    let loaded = Arc::new(loaded);
    *data = Some(loaded.clone());
    Ok(loaded)
}
