//! The machine the server's scheduler runs on ([`ServerMachine`]): the
//! devices there are (NVML's GPUs where CUDA works, the wgpu adapter, the
//! CPU), the runs other processes train here, the data set (read once),
//! and training a placed run on a thread of its own. Also the checks a run
//! passes before it is queued ([`prepare`]).

use crate::hub::{HubSink, RunHub};
use crate::queue::Origin;
use crate::scheduler::{fail_hub, Machine, Start};
use crate::slots::{Devices, Slot};
use crate::AppState;
use mnist_events::LockExt;
use mnist_train::{BackendChoice, RunOptions, TrainConfig};
use std::sync::Arc;

/// The server's machine, for its [`crate::scheduler::Scheduler`].
#[derive(Clone)]
pub struct ServerMachine(pub Arc<AppState>);

impl Machine for ServerMachine {
    fn devices(&self, gpu: bool) -> Result<Devices, String> {
        load_data(&self.0)?;
        Ok(match gpu {
            true => probe_devices(&self.0),
            false => Devices {
                own_pid: std::process::id(),
                ..Default::default()
            },
        })
    }

    fn held_elsewhere(&self) -> Vec<(Slot, String)> {
        self.0.followed_slots()
    }

    fn is_taken(&self, run_id: &str) -> bool {
        self.0.opts.runs_dir.join(run_id).exists()
    }

    fn resumed_hub(&self, run_id: &str) -> Arc<RunHub> {
        let log = mnist_events::log_path(&self.0.opts.runs_dir, run_id);
        RunHub::resuming(run_id, mnist_events::read_events(log).unwrap_or_default())
    }

    fn launch(&self, start: Start) -> Result<(), String> {
        let data = load_data(&self.0)?;
        let state = self.0.clone();
        let run_id = start.item.run_id.clone();
        let hub = start.run.hub.clone();
        let (opts, config) = run_options(&state, start, data);
        std::thread::Builder::new()
            .name(format!("train-{run_id}"))
            .spawn(move || {
                train(config, opts, &hub);
                // Its row in the index, as it ended (the log is complete now).
                hub.with_state(|s| state.index.record(s));
                let machine = ServerMachine(state.clone());
                state.scheduler.on_run_ended(&machine, &run_id);
            })
            .map(drop)
            .map_err(|e| e.to_string())
    }

    fn runs_changed(&self) {
        self.0.runs_changed.send_modify(|v| *v += 1);
    }
}

/// Trains a run to its end; a run that never started its stream, or
/// whose thread panicked, is failed rather than left "running".
fn train(config: TrainConfig, opts: RunOptions, hub: &Arc<RunHub>) {
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        mnist_train::run(config, opts)
    }));
    match outcome {
        Ok(Ok(_)) => {}
        Ok(Err(e)) => fail_hub(hub, e.to_string()),
        // Never expected (the trainer catches its own panics).
        Err(_) if !hub.is_finished() => fail_hub(hub, "the training thread panicked".into()),
        Err(_) => {}
    }
}

/// The trainer's options for a placed run: its hub (and sweep tag) as
/// sinks, its stop and control handles, where it starts from.
fn run_options(
    state: &AppState,
    start: Start,
    data: Arc<mnist_data::Mnist>,
) -> (RunOptions, TrainConfig) {
    let Start {
        item,
        placement,
        run,
    } = start;
    let run_id = item.run_id.clone();
    let mut sinks: Vec<Box<dyn mnist_events::EventSink>> = vec![Box::new(HubSink(run.hub))];
    if let Some(sweep) = item.sweep {
        let tagger = crate::meta::sweep_tagger(state.opts.runs_dir.clone(), sweep);
        sinks.push(Box::new(tagger));
    }
    let command = match &item.origin {
        Origin::New => "POST /api/runs".into(),
        Origin::Resume => format!("POST /api/runs/{run_id}/resume"),
        Origin::Fork(f) => format!("POST /api/runs/{}/fork", f.run_id),
    };
    let opts = RunOptions {
        data_dir: state.opts.data_dir.clone(),
        verify: state.opts.verify,
        download: false,
        runs_dir: state.opts.runs_dir.clone(),
        checkpoints_dir: state.opts.checkpoints_dir.clone(),
        run_id: Some(run_id.clone()),
        resume: (item.origin == Origin::Resume).then_some(run_id),
        fork: match item.origin {
            Origin::Fork(f) => Some(f),
            _ => None,
        },
        stop: run.stop,
        controls: Some(run.controls),
        replay: Vec::new(),
        sinks,
        data: Some(data),
        hardware: state.opts.hardware.clone(),
        alerts: Some(state.opts.alert_rules.clone()),
        stop_on_nan: state.opts.stop_on_nan,
        alert_webhook: state.opts.alert_webhook.clone(),
        provenance: state.opts.provenance.clone().map(|mut p| {
            p.command_line = vec![command];
            p
        }),
        placed: Some(placement),
    };
    (opts, item.config)
}

/// The machine's devices now: NVML's GPUs (with their processes) where
/// CUDA is usable, numbered as CUDA numbers them, and the wgpu adapter.
fn probe_devices(state: &AppState) -> Devices {
    let usable = |choice| {
        backend_status(state, choice)
            .filter(|b| b.available)
            .map(|b| b.software)
    };
    let cuda = match usable(BackendChoice::Cuda) {
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
    let wgpu = usable(BackendChoice::Wgpu);
    Devices {
        auto_wgpu: cuda.is_empty() && wgpu == Some(false),
        cuda,
        wgpu: usize::from(wgpu.is_some()),
        own_pid: std::process::id(),
    }
}

/// Which backend a probe is about (`None` for one this build does not know).
fn kind(status: &mnist_train::BackendStatus) -> Option<BackendChoice> {
    status.name.parse().ok()
}

/// What probing `choice` found here.
fn backend_status(state: &AppState, choice: BackendChoice) -> Option<&mnist_train::BackendStatus> {
    state.backends().iter().find(|b| kind(b) == Some(choice))
}

/// Why a run cannot be queued here, for a 400 naming the field or a 503.
#[derive(Debug, thiserror::Error)]
pub enum PrepareError {
    /// A field names something this machine lacks or cannot fit.
    #[error("{0}")]
    Field(mnist_train::FieldError),
    /// The data set cannot be read.
    #[error("{0}")]
    Data(String),
}

/// Checks the backend and the device index, and loads (once) the data set,
/// before a run is queued (blocking: driver probes, reading 50 MB).
pub fn prepare(state: &AppState, config: &TrainConfig) -> Result<(), PrepareError> {
    let field = |name: &str, message: String| {
        PrepareError::Field(mnist_train::FieldError::new(name, message))
    };
    if config.backend != BackendChoice::Auto {
        let name = config.backend.as_str();
        let unusable = backend_status(state, config.backend).filter(|b| !b.available);
        if let Some(b) = unusable {
            let reason = b.reason.clone().unwrap_or_default();
            return Err(field(
                "backend",
                format!("{name} is not usable here: {reason}"),
            ));
        }
    }
    // `cuda:5` on a box with two GPUs: refused now, not when it would start.
    mnist_train::check_device(config.backend, config.device)
        .map_err(|e| field("device", e.to_string()))?;
    let data = load_data(state).map_err(PrepareError::Data)?;
    // A CPU run that cannot fit would abort the whole server: refuse it now.
    if runs_on_cpu(state, config.backend) {
        let (train, test) = (data.train_labels.len(), data.test_labels.len());
        mnist_train::memory::check_data(config, train, test).map_err(PrepareError::Field)?;
    }
    Ok(())
}

/// Whether `choice` trains on the CPU here (`auto` without a usable GPU).
fn runs_on_cpu(state: &AppState, choice: BackendChoice) -> bool {
    match choice {
        BackendChoice::Cpu => true,
        BackendChoice::Auto => !state
            .backends()
            .iter()
            .any(|b| kind(b) != Some(BackendChoice::Cpu) && b.available && !b.software),
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
