//! # mnist-server: the live web monitor
//!
//! Serves the page in `web/static` (embedded in the binary), a JSON HTTP API
//! to configure, start, stop and inspect runs, and websockets that stream a
//! run's events to any number of viewers. Runs started here train on a
//! thread of their own; the server consumes their event stream through a
//! [`hub::RunHub`], the same stream the JSONL log and the progress bar read.
//!
//! Safe by default: binding anywhere but loopback requires a token, and then
//! every request must carry it (`Authorization: Bearer`, `?token=` or the
//! cookie the page gets when opened with `?token=`); Host and Origin are
//! checked so that other web sites can neither drive nor read the server
//! ([`guard`]).

mod api;
mod assets;
pub mod error;
pub mod follow;
pub mod guard;
pub mod history;
pub mod hub;
pub mod index;
mod inspect;
pub mod layers;
mod machine;
pub mod manage;
pub mod meta;
pub mod metrics;
pub mod prom_fleet;
pub mod protocol;
pub mod prune;
pub mod query;
pub mod queue;
mod queue_api;
pub mod report;
mod review;
mod scheduler;
pub mod series;
pub mod slots;
pub mod slurm;
pub mod state;
mod sweeps;
pub mod trash;
pub mod ws;

use actix_web::{web, App, HttpServer};
use hub::RunHub;
use mnist_data::Mnist;
use mnist_events::LockExt;
use mnist_train::BackendStatus;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};
use tokio::sync::watch;

pub use scheduler::CurrentRun;

/// Where the server's runs read and write.
#[derive(Debug, Clone)]
pub struct ServerOptions {
    /// Folder of the MNIST IDX files (and of the label overrides).
    pub data_dir: PathBuf,
    /// Folder of run logs: `<id>/events.jsonl` (and `meta.json`) per run.
    pub runs_dir: PathBuf,
    /// Folder of checkpoints, `<id>/` per run, for resuming and review.
    pub checkpoints_dir: PathBuf,
    /// Whether loading the data set checks the files' SHA-256 hashes.
    pub verify: mnist_data::Verify,
    /// Required on every request when set.
    pub token: Option<String>,
    /// Origins besides the server's own that may drive it from a browser
    /// (see [`guard`]).
    pub allowed_origins: Vec<String>,
    /// What the server is for: starting runs, watching one, or `/metrics`.
    pub mode: ServerMode,
    /// The machine's sampler, for `/ws/hardware`, `/metrics` and the runs
    /// this server starts; `None` when `--hw-interval 0`.
    pub hardware: Option<Arc<mnist_hardware::Monitor>>,
    /// Stop runs started here when their loss becomes NaN.
    pub stop_on_nan: bool,
    /// POST alerts of runs started here to this URL.
    pub alert_webhook: Option<mnist_alerts::Webhook>,
    /// The alert rules of runs started here (`--stall-minutes`).
    pub alert_rules: mnist_alerts::AlertRules,
    /// GPU hosts polled over SSH for the fleet view (`serve --hosts`).
    pub fleet: Option<Arc<mnist_remote::fleet::Fleet>>,
    /// The fleet read from Prometheus instead (`serve --fleet-prometheus`).
    pub fleet_prometheus: Option<Arc<prom_fleet::PromFleet>>,
    /// The binary's provenance, recorded (with `POST /api/runs` as the
    /// command line) in the runs this server starts.
    pub provenance: Option<mnist_events::Provenance>,
}

/// What a server is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServerMode {
    /// `serve`: the page and the API, and it starts runs (queued, resumed,
    /// swept) besides showing those of its runs folder.
    Full,
    /// `train --serve`: the page and the API for the run its process
    /// trains; it starts none.
    Watch,
    /// `exporter`: `/metrics` only.
    Exporter,
}

impl ServerMode {
    /// Whether the server starts runs (`POST /api/runs`, sweeps, resumes).
    pub fn starts_runs(self) -> bool {
        self == ServerMode::Full
    }
}

impl ServerOptions {
    /// A server in `mode` with nothing else said: MNIST in `datasets/mnist`
    /// (checked), runs in `runs`, checkpoints in `checkpoints`; no token, no
    /// other origin, no hardware sampler, no webhook, the default alert
    /// rules, no fleet, no provenance, NaN losses not stopped. A caller
    /// sets what differs (`ServerOptions { token, ..ServerOptions::new(mode) }`).
    pub fn new(mode: ServerMode) -> Self {
        Self {
            data_dir: "datasets/mnist".into(),
            runs_dir: "runs".into(),
            checkpoints_dir: "checkpoints".into(),
            verify: mnist_data::Verify::Sha256,
            token: None,
            allowed_origins: Vec::new(),
            mode,
            hardware: None,
            stop_on_nan: false,
            alert_webhook: None,
            alert_rules: Default::default(),
            fleet: None,
            fleet_prometheus: None,
            provenance: None,
        }
    }
}

/// Shared state of all handlers.
pub struct AppState {
    /// How the server was started; read by every handler.
    pub opts: ServerOptions,
    /// The queue, the runs this server trains and the run its pages follow.
    pub(crate) scheduler: scheduler::Scheduler,
    data: Mutex<Option<Arc<Mnist>>>,
    backends: OnceLock<Vec<BackendStatus>>,
    review: review::ReviewCache,
    /// Hubs of logged runs, folded when asked for and kept within a byte
    /// budget, least recently used first out ([`LoggedHubs`]).
    logged: Mutex<LoggedHubs>,
    /// One row per run of the runs folder ([`index`]): what the runs list
    /// filters, sorts and pages.
    pub index: index::RunIndex,
    /// Set when the process is about to exit: websockets send what they
    /// still owe, close with "server exiting" and finish.
    closing: watch::Sender<bool>,
    /// Websockets still open (see [`Serving::shutdown`]).
    open_sockets: AtomicUsize,
    /// Runs followed in the runs folder ([`follow`]).
    followed: Mutex<follow::Followed>,
    /// Sweeps submitted to Slurm and their tasks' states ([`slurm`]).
    slurm: Mutex<slurm::Board>,
    /// Bumped when a run appears, leaves or changes status in the runs
    /// folder: every websocket tells its page (`runs_changed`).
    runs_changed: watch::Sender<u64>,
}

type LogStamp = (u64, Option<std::time::SystemTime>);

/// The bytes of folded logged runs kept in memory (see [`LoggedHubs`]).
pub const LOGGED_BUDGET: usize = 96 << 20;

/// Logged runs' hubs kept for their next request: each with the log's
/// (length, mtime) it was folded from and its size in memory; past
/// [`LOGGED_BUDGET`] the least recently used go, one at a time, so the
/// server's memory does not grow with the number of runs or their length.
#[derive(Default)]
pub(crate) struct LoggedHubs {
    hubs: std::collections::HashMap<String, LoggedHub>,
    bytes: usize,
    clock: u64,
}

struct LoggedHub {
    stamp: LogStamp,
    hub: Arc<RunHub>,
    bytes: usize,
    used: u64,
}

impl LoggedHubs {
    fn get(&mut self, id: &str, stamp: &LogStamp) -> Option<Arc<RunHub>> {
        self.clock += 1;
        let entry = self.hubs.get_mut(id).filter(|e| e.stamp == *stamp)?;
        entry.used = self.clock;
        Some(entry.hub.clone())
    }

    fn insert(&mut self, id: &str, stamp: LogStamp, hub: Arc<RunHub>) {
        self.clock += 1;
        // Events hold heap beyond their size (hardware snapshots, sample
        // images); measured, a folded log takes about 2.5 times its bytes
        // (the process's RSS, opening 80 runs of 8,600 steps).
        let bytes = hub.approx_bytes().max(stamp.0 as usize * 5 / 2);
        if let Some(old) = self.hubs.insert(
            id.to_string(),
            LoggedHub {
                stamp,
                hub,
                bytes,
                used: self.clock,
            },
        ) {
            self.bytes -= old.bytes;
        }
        self.bytes += bytes;
        while self.bytes > LOGGED_BUDGET && self.hubs.len() > 1 {
            let oldest = self
                .hubs
                .iter()
                .filter(|(k, _)| k.as_str() != id)
                .min_by_key(|(_, e)| e.used)
                .map(|(k, _)| k.clone());
            let Some(oldest) = oldest else { break };
            if let Some(gone) = self.hubs.remove(&oldest) {
                self.bytes -= gone.bytes;
            }
        }
    }

    /// The hubs kept and their bytes in memory, for `/api/health`.
    fn usage(&self) -> CacheUsage {
        CacheUsage {
            runs: self.hubs.len(),
            bytes: self.bytes,
            budget: LOGGED_BUDGET,
        }
    }
}

/// What the cache of folded logged runs holds (`/api/health`).
#[derive(Debug, Clone, Copy, serde::Serialize)]
pub struct CacheUsage {
    /// Runs kept folded.
    pub runs: usize,
    /// About how many bytes they take.
    pub bytes: usize,
    /// The most it keeps.
    pub budget: usize,
}

impl AppState {
    /// Fresh state: no current run, nothing loaded or cached yet.
    pub fn new(opts: ServerOptions) -> Arc<Self> {
        let queue = queue::Queue::load(&opts.runs_dir);
        let index = index::RunIndex::open(index::Folders {
            runs: opts.runs_dir.clone(),
            checkpoints: opts.checkpoints_dir.clone(),
        });
        Arc::new(Self {
            index,
            opts,
            scheduler: scheduler::Scheduler::new(queue),
            data: Mutex::new(None),
            backends: OnceLock::new(),
            review: Default::default(),
            logged: Mutex::new(Default::default()),
            closing: watch::channel(false).0,
            open_sockets: AtomicUsize::new(0),
            followed: Mutex::new(Default::default()),
            slurm: Mutex::new(Default::default()),
            runs_changed: watch::channel(0).0,
        })
    }

    /// Counts a websocket as open until the guard drops.
    pub(crate) fn socket_opened(self: &Arc<Self>) -> SocketGuard {
        self.open_sockets.fetch_add(1, Ordering::SeqCst);
        SocketGuard(self.clone())
    }

    /// Wakes when the server starts closing (see [`Serving::shutdown`]).
    pub(crate) fn closing(&self) -> watch::Receiver<bool> {
        self.closing.subscribe()
    }

    /// Makes `run` the run the server shows (used by `train --serve`, and by
    /// the API when it starts one).
    pub fn set_current(&self, run: CurrentRun) {
        self.scheduler.show(run);
    }

    /// Shows the newest logged run until a new one starts, so that a page
    /// that reconnects after a server restart finds the run it was showing
    /// (and resumes from its last `seq`) instead of an empty screen.
    pub fn show_latest_run(&self) {
        let Some((run_id, path)) = history::list_runs(&self.opts.runs_dir).into_iter().next()
        else {
            return;
        };
        let Ok(events) = mnist_events::read_events(path) else {
            return;
        };
        self.set_current(CurrentRun {
            hub: RunHub::from_log(run_id, events),
            stop: mnist_events::Stop::new(),
            controls: None,
        });
    }

    /// After run `id` left the runs folder (deleted to the trash): if it was
    /// the run shown, show the newest remaining one instead (or none).
    pub fn forget_run(&self, id: &str) {
        if self.scheduler.unshow(id) {
            self.show_latest_run();
        }
    }

    /// Starts the next queued run if nothing trains (a server started with
    /// runs left in its queue file goes on with them).
    pub fn dispatch_queue(self: &Arc<Self>) {
        self.scheduler
            .dispatch(&machine::ServerMachine(self.clone()));
    }

    /// Whether run `id` is one this server follows in the runs folder
    /// (written by another process), see [`follow`].
    pub fn is_followed(&self, id: &str) -> bool {
        self.followed.locked().hub(id).is_some()
    }

    /// What the cache of folded logged runs holds now.
    pub fn logged_usage(&self) -> CacheUsage {
        self.logged.locked().usage()
    }

    /// Whether run `id` is followed in the runs folder and still live.
    pub fn followed_live(&self, id: &str) -> bool {
        self.followed
            .locked()
            .hub(id)
            .is_some_and(|h| !h.is_finished() && h.with_state(|s| s.is_live()))
    }

    /// The ids of the runs this server trains now.
    pub fn training_ids(&self) -> Vec<String> {
        self.scheduler.training_ids()
    }

    /// The devices that runs other processes train on this machine hold
    /// (followed in the runs folder, still live), each with the run's id:
    /// the CPU for a CPU run or one not started yet, its adapter for a wgpu
    /// one. A run another host trains into a shared runs folder (a Slurm
    /// task on a compute node) holds nothing here; CUDA runs need no entry
    /// either: NVML lists their processes on their GPU.
    pub(crate) fn followed_slots(&self) -> Vec<(slots::Slot, String)> {
        let hubs = self.followed.locked().live_hubs();
        let here = mnist_hardware::host_name();
        hubs.iter()
            .filter_map(|h| {
                let slot = h.with_state(|s| {
                    let started = s.started();
                    let host = started
                        .and_then(|r| r.provenance.as_ref())
                        .map(|p| p.host.as_str());
                    if host.is_some_and(|host| host != here) {
                        return None;
                    }
                    // A backend this build does not know holds nothing here.
                    let backend = match started {
                        Some(r) => Some(r.backend.parse().ok()?),
                        None => None,
                    };
                    slots::slot_of(backend, started.and_then(|r| r.device_index))
                })?;
                Some((slot, h.run_id.clone()))
            })
            .collect()
    }

    /// Wakes when runs appear in, leave or change status in the runs folder.
    pub(crate) fn runs_changed(&self) -> watch::Receiver<u64> {
        self.runs_changed.subscribe()
    }

    /// The hub of the run the server shows now, if any.
    pub fn current_hub(&self) -> Option<Arc<RunHub>> {
        self.scheduler.current_hub()
    }

    /// Probing GPU backends initialises drivers, so do it once.
    pub fn backends(&self) -> &[BackendStatus] {
        self.backends.get_or_init(|| {
            mnist_train::set_up_kernel_cache();
            mnist_train::probe_all()
        })
    }

    /// The hub of `run_id`: the live one, or one folded from its log (kept
    /// while the log does not change).
    pub fn hub(&self, run_id: &str) -> Option<Arc<RunHub>> {
        if let Some(hub) = self.scheduler.hub(run_id) {
            return Some(hub);
        }
        if let Some(hub) = self.followed.locked().hub(run_id) {
            return Some(hub);
        }
        if !valid_run_id(run_id) {
            return None;
        }
        let path = mnist_events::log_path(&self.opts.runs_dir, run_id);
        let meta = std::fs::metadata(&path).ok()?;
        let stamp = (meta.len(), meta.modified().ok());
        if let Some(hub) = self.logged.locked().get(run_id, &stamp) {
            return Some(hub);
        }
        // Folded outside the lock: one big log never holds up the others.
        let events = mnist_events::read_events(&path).ok()?;
        let hub = RunHub::from_log(run_id, events);
        self.logged.locked().insert(run_id, stamp, hub.clone());
        Some(hub)
    }
}

/// One open websocket, for [`AppState::socket_opened`].
pub(crate) struct SocketGuard(Arc<AppState>);

impl Drop for SocketGuard {
    fn drop(&mut self) {
        self.0.open_sockets.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Whether `id` names a folder directly inside the runs (or checkpoints)
/// folder: one path component, never `.`, `..` or a hidden name. Runs this
/// binary creates use a narrower alphabet; a folder a user named by hand
/// ("my run", even `<img …>`) is still listed and shown, as text.
pub(crate) fn valid_run_id(id: &str) -> bool {
    !id.is_empty() && !id.starts_with('.') && !id.contains(['/', '\\', '\0'])
}

/// Writes `bytes` to `path` (in a folder that exists) through a temporary
/// file of this writer's own, hidden beside it, and a rename: readers see
/// the old file or the new one, whole, and two writers at once never share
/// a temporary file.
pub(crate) fn write_atomic(path: &std::path::Path, bytes: &[u8]) -> std::io::Result<()> {
    static WRITES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = WRITES.fetch_add(1, Ordering::Relaxed);
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("file");
    let tmp = path.with_file_name(format!(".{name}.{}-{n}.tmp", std::process::id()));
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(&tmp, path).inspect_err(|_| {
        let _ = std::fs::remove_file(&tmp);
    })
}

/// Why the server refused to start.
#[derive(Debug)]
pub struct BindError(pub String);

impl std::fmt::Display for BindError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Checks the bind address against the token rule: loopback is always
/// allowed; anything else needs a token.
pub fn check_bind(addr: &SocketAddr, token: Option<&str>) -> Result<(), BindError> {
    if addr.ip().is_loopback() || token.is_some_and(|t| !t.is_empty()) {
        Ok(())
    } else {
        Err(BindError(format!(
            "refusing to listen on {addr} without a token: anyone who can reach it could start runs. \
             Bind 127.0.0.1 (and use an SSH tunnel), or pass --token / set MNIST_MONITOR_TOKEN"
        )))
    }
}

/// Binds `addr` (port 0 picks a free one) and returns the running server and
/// the address it listens on. The server runs on the current actix system.
pub fn bind(
    state: Arc<AppState>,
    addr: SocketAddr,
) -> std::io::Result<(actix_web::dev::Server, SocketAddr)> {
    check_bind(&addr, state.opts.token.as_deref())
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::PermissionDenied, e.0))?;
    let listener = std::net::TcpListener::bind(addr)?;
    let local = listener.local_addr()?;
    let access = guard::Access::new(local, state.opts.token.clone(), &state.opts.allowed_origins)
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
    let access = web::Data::new(access);
    let data = web::Data::from(state.clone());
    let exporter = state.opts.mode == ServerMode::Exporter;
    let server = HttpServer::new(move || {
        let app = App::new()
            .app_data(data.clone())
            .app_data(access.clone())
            .app_data(
                web::JsonConfig::default()
                    .limit(64 * 1024)
                    .error_handler(error::json_error),
            )
            .wrap(actix_web::middleware::from_fn(guard::guard))
            .configure(metrics::routes);
        if exporter {
            // `mnist-monitor exporter`: /metrics and nothing else.
            return app.default_service(web::to(|| async {
                Err::<actix_web::HttpResponse, _>(error::ApiError::NotFound(
                    "this is an exporter: only /metrics is served".into(),
                ))
            }));
        }
        app.configure(api::routes)
            .configure(manage::routes)
            .configure(queue_api::routes)
            .configure(sweeps::routes)
            .configure(slurm::routes)
            .configure(ws::routes)
            .configure(review::routes)
            .configure(inspect::routes)
            .default_service(web::to(assets::serve))
    })
    .workers(2)
    .shutdown_timeout(1)
    .disable_signals()
    .listen(listener)?;
    Ok((server.run(), local))
}

/// A server running on a thread of its own (see [`spawn`]).
pub struct Serving {
    /// Where it listens.
    pub addr: SocketAddr,
    state: Arc<AppState>,
    handle: actix_web::dev::ServerHandle,
    thread: std::thread::JoinHandle<()>,
}

impl Serving {
    /// Stops the server without losing what viewers are owed: every
    /// websocket first sends the events it still holds (the end of a run
    /// that just finished), then closes with "server exiting"; after at most
    /// `grace` the server stops. Without this, a process that exits right
    /// after its run cuts viewers off before the last events reach them.
    pub fn shutdown(self, grace: Duration) {
        self.state.closing.send_replace(true);
        let deadline = Instant::now() + grace;
        while self.state.open_sockets.load(Ordering::SeqCst) > 0 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        // A graceful stop lets responses being written (the close frames)
        // flush, within the server's shutdown timeout.
        let stop = self.handle.stop(true);
        if let Ok(rt) = tokio::runtime::Builder::new_current_thread().build() {
            rt.block_on(stop);
        }
        let _ = self.thread.join();
    }
}

/// Runs the server on a new thread with its own actix system, once it is
/// listening.
pub fn spawn(state: Arc<AppState>, addr: SocketAddr) -> std::io::Result<Serving> {
    let (tx, rx) = std::sync::mpsc::channel();
    let server_state = state.clone();
    let thread = std::thread::Builder::new()
        .name("mnist-server".into())
        .spawn(move || {
            let system = actix_web::rt::System::new();
            system.block_on(async move {
                match bind(server_state, addr) {
                    Ok((server, local)) => {
                        let _ = tx.send(Ok((local, server.handle())));
                        let _ = server.await;
                    }
                    Err(e) => {
                        let _ = tx.send(Err(e));
                    }
                }
            });
        })?;
    let (addr, handle) = rx
        .recv()
        .map_err(|_| std::io::Error::other("server thread ended"))??;
    Ok(Serving {
        addr,
        state,
        handle,
        thread,
    })
}

/// Runs the server on the calling thread until it stops.
pub fn run_blocking(
    state: Arc<AppState>,
    addr: SocketAddr,
    on_listen: impl FnOnce(SocketAddr),
) -> std::io::Result<()> {
    actix_web::rt::System::new().block_on(async move {
        let (server, local) = bind(state, addr)?;
        on_listen(local);
        server.await
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn non_loopback_needs_a_token() {
        let public: SocketAddr = "0.0.0.0:8080".parse().unwrap();
        let local: SocketAddr = "127.0.0.1:8080".parse().unwrap();
        assert!(check_bind(&local, None).is_ok());
        let err = check_bind(&public, None).unwrap_err().0;
        assert!(
            err.contains("--token") && err.contains("MNIST_MONITOR_TOKEN"),
            "{err}"
        );
        assert!(check_bind(&public, Some("")).is_err());
        assert!(check_bind(&public, Some("s3cret")).is_ok());
    }
}
