//! `serve` follows the whole runs folder, the way TensorBoard follows a
//! logdir: a run written by any process (a `train` started from a shell, a
//! Slurm job on a shared filesystem, a remote launcher) shows up on the
//! page within a second of its log appearing, and its growing log streams
//! to viewers like a run this server trains.
//!
//! What changes is learnt from the filesystem's change notification
//! (`notify`: inotify on Linux) where it works, so an idle server with
//! thousands of runs does next to nothing; every [`SCAN`] the runs it was
//! told about (and the logs it follows) are looked at, and every
//! [`FULL_SCAN_NOTIFIED`] all of them, in case a notification was lost.
//! Where notification does not reach (NFS and other network filesystems
//! only report local writes), the folder is listed every [`SCAN`] (a new
//! run appears within it) and every run looked at every [`FULL_SCAN_POLLED`].
//!
//! A log that is new, or changed since its row in the [`crate::index`], gets
//! a live [`RunHub`]: read once, then only its new complete lines (a torn
//! last line waits for its end), pushed into the hub as they come. When it
//! ends its row is written and the hub let go, so the server's memory does
//! not grow with the runs it followed. A followed log that stops growing
//! for [`QUIET`] without `run_finished` shows as interrupted (its process
//! died or was killed) until it grows again.

use crate::hub::RunHub;
use crate::index::Stamp;
use crate::{AppState, CurrentRun};
use mnist_events::LockExt;
use std::collections::{HashMap, HashSet};
use std::io::{Read, Seek, SeekFrom};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How often the runs folder is looked at.
pub const SCAN: Duration = Duration::from_millis(500);

/// How often every run is looked at while change notification works.
pub const FULL_SCAN_NOTIFIED: Duration = Duration::from_secs(60);

/// How often every run is looked at without change notification.
pub const FULL_SCAN_POLLED: Duration = Duration::from_secs(10);

/// A followed log quiet this long without `run_finished` is shown as
/// interrupted. A training process writes a hardware sample every second
/// and a batch far more often, so half a minute of silence means it is gone.
pub const QUIET: Duration = Duration::from_secs(30);

/// The logs the server follows now.
#[derive(Default)]
pub(crate) struct Followed {
    tails: HashMap<String, Tail>,
}

struct Tail {
    hub: Arc<RunHub>,
    /// Bytes of the log read into the hub (up to a line's end).
    offset: u64,
    last_growth: Instant,
    /// Whether its row was written since it went quiet.
    recorded_quiet: bool,
}

impl Followed {
    /// The hub of a followed run.
    pub(crate) fn hub(&self, run_id: &str) -> Option<Arc<RunHub>> {
        self.tails.get(run_id).map(|t| t.hub.clone())
    }

    /// Every followed run's hub.
    pub(crate) fn hubs(&self) -> Vec<Arc<RunHub>> {
        self.tails.values().map(|t| t.hub.clone()).collect()
    }

    /// The followed runs still training (their process writes their log).
    pub(crate) fn live_hubs(&self) -> Vec<Arc<RunHub>> {
        self.tails
            .values()
            .filter(|t| !t.hub.is_finished() && t.hub.with_state(|s| s.is_live()))
            .map(|t| t.hub.clone())
            .collect()
    }
}

/// What change notification reported since the last look.
#[derive(Default)]
struct Changes {
    /// Runs whose folder saw a change.
    runs: HashSet<String>,
    /// The runs folder itself changed (a run appeared or left).
    folder: bool,
}

/// How the follower learns of changes.
struct Watch {
    changes: Arc<Mutex<Changes>>,
    runs_dir: std::path::PathBuf,
    /// Kept alive while it watches; None while notification is unavailable.
    watcher: Option<notify::RecommendedWatcher>,
    /// When setting it up was last tried.
    tried: Option<Instant>,
}

impl Watch {
    fn start(runs_dir: &Path) -> Self {
        let changes = Arc::new(Mutex::new(Changes {
            folder: true,
            ..Default::default()
        }));
        let mut w = Watch {
            changes,
            runs_dir: runs_dir.to_path_buf(),
            watcher: None,
            tried: None,
        };
        w.ensure();
        w
    }

    /// Starts watching once the runs folder exists (it may be made by the
    /// first run); a failure (no inotify, too many watches) is retried now
    /// and then, polling meanwhile.
    fn ensure(&mut self) {
        if self.watcher.is_some() || self.tried.is_some_and(|t| t.elapsed() < FULL_SCAN_POLLED) {
            return;
        }
        if !self.runs_dir.is_dir() {
            return;
        }
        self.tried = Some(Instant::now());
        match watch(&self.runs_dir, self.changes.clone()) {
            Ok(w) => {
                self.watcher = Some(w);
                // Whatever happened before it watched: look at everything.
                self.changes.locked().folder = true;
            }
            Err(e) => tracing::info!(
                "no change notification on {} ({e}): polling it every {:?}",
                self.runs_dir.display(),
                SCAN
            ),
        }
    }

    fn notified(&self) -> bool {
        self.watcher.is_some()
    }

    fn take(&self) -> Changes {
        std::mem::take(&mut *self.changes.locked())
    }
}

fn watch(
    runs_dir: &Path,
    changes: Arc<Mutex<Changes>>,
) -> notify::Result<notify::RecommendedWatcher> {
    use notify::Watcher;
    let root = runs_dir
        .canonicalize()
        .unwrap_or_else(|_| runs_dir.to_path_buf());
    let base = root.clone();
    let mut watcher = notify::recommended_watcher(move |res: notify::Result<notify::Event>| {
        let mut c = changes.locked();
        let Ok(event) = res else {
            // A lost event (a full queue): look at everything.
            c.folder = true;
            return;
        };
        if event.need_rescan() {
            c.folder = true;
        }
        for path in &event.paths {
            let Ok(rel) = path.strip_prefix(&base) else {
                continue;
            };
            let mut parts = rel.components();
            let Some(first) = parts.next().and_then(|p| p.as_os_str().to_str()) else {
                continue;
            };
            if !crate::valid_run_id(first) {
                continue; // the index, the queue, the trash
            }
            if parts.next().is_none() {
                c.folder = true;
            }
            c.runs.insert(first.to_string());
        }
    })?;
    watcher.watch(&root, notify::RecursiveMode::Recursive)?;
    Ok(watcher)
}

/// Starts following `state`'s runs folder on a thread of its own; the
/// index is brought up to date on another (a first build reads every log,
/// and shows its progress in the runs list meanwhile).
pub fn start(state: Arc<AppState>) -> std::io::Result<std::thread::JoinHandle<()>> {
    let indexer = state.clone();
    std::thread::Builder::new()
        .name("runs-indexer".into())
        .spawn(move || reconcile(&indexer))?;
    std::thread::Builder::new()
        .name("runs-follower".into())
        .spawn(move || {
            let mut watch = Watch::start(&state.opts.runs_dir);
            let mut follower = Follower::default();
            loop {
                watch.ensure();
                follower.tick(&state, &watch);
                std::thread::sleep(SCAN);
            }
        })
}

/// Brings the index in line with the runs folder (every run looked at).
fn reconcile(state: &Arc<AppState>) {
    let skip = |id: &str| state.is_followed(id) || state.training_ids().iter().any(|t| t == id);
    let last = std::sync::atomic::AtomicUsize::new(0);
    let changed = state.index.reconcile(&skip, &|p| {
        // The page shows the progress: tell it now and then.
        if p.done == p.total || p.done - last.load(std::sync::atomic::Ordering::Relaxed) >= 200 {
            last.store(p.done, std::sync::atomic::Ordering::Relaxed);
            state.runs_changed.send_modify(|v| *v += 1);
        }
    });
    if !changed.is_empty() {
        state.runs_changed.send_modify(|v| *v += 1);
    }
}

/// The follower's memory between looks.
#[derive(Default)]
struct Follower {
    /// Run ids in the folder at the last listing.
    known: HashSet<String>,
    last_full: Option<Instant>,
}

impl Follower {
    fn tick(&mut self, state: &Arc<AppState>, watch: &Watch) {
        let changes = watch.take();
        let every = if watch.notified() {
            FULL_SCAN_NOTIFIED
        } else {
            FULL_SCAN_POLLED
        };
        let full = self.last_full.is_none_or(|t| t.elapsed() >= every);
        let mut look: HashSet<String> = changes.runs;
        if full || changes.folder || !watch.notified() {
            let ids: HashSet<String> = state.index.folders().run_ids().into_iter().collect();
            look.extend(ids.difference(&self.known).cloned());
            if full {
                look.extend(ids.iter().cloned());
                self.last_full = Some(Instant::now());
            }
            // Runs that left the folder (deleted to the trash, pruned).
            let gone: Vec<String> = self.known.difference(&ids).cloned().collect();
            look.extend(gone);
            self.known = ids;
        }
        scan(state, look);
    }
}

/// One look at the runs in `look` and at every followed log (see the
/// module doc).
fn scan(state: &Arc<AppState>, look: HashSet<String>) {
    // A run this server trains is fed by its own sink, not its log.
    let mut own: HashSet<String> = state.training_ids().into_iter().collect();
    own.extend(
        state
            .current_hub()
            .filter(|h| !h.is_finished() && !state.is_followed(&h.run_id))
            .map(|h| h.run_id.clone()),
    );
    let folders = state.index.folders().clone();
    let indexing = !state.index.is_built();
    let mut appeared = None;
    let mut changed = false;
    let mut f = state.followed.locked();
    let mut todo: Vec<String> = f.tails.keys().cloned().collect();
    todo.extend(look.into_iter().filter(|id| !f.tails.contains_key(id)));
    for id in &todo {
        if own.contains(id) {
            continue;
        }
        let Some(stamp) = folders.stamp(id) else {
            // Its log is gone: forget it.
            changed |= f.tails.remove(id).is_some();
            if state.index.remove(id) {
                changed = true;
            }
            continue;
        };
        if let Some(tail) = f.tails.get_mut(id) {
            changed |= advance(tail, &folders.log(id), stamp.log_len);
            if tail.offset > stamp.log_len {
                // Replaced by a shorter log: read it afresh next time.
                f.tails.remove(id);
            } else if let Some(end) = settle(state, tail, stamp) {
                changed = true;
                if end == Settled::Finished {
                    f.tails.remove(id);
                }
            }
            continue;
        }
        let row = state.index.row(id).map(|r| r.stamp);
        match row {
            Some(row) if row == stamp => continue,
            // Only its meta or checkpoints changed: fold it again.
            Some(row) if row.log_len == stamp.log_len && row.log_mtime_ns == stamp.log_mtime_ns => {
                if let Ok(Some(row)) = crate::index::index_run(&folders, id) {
                    state.index.put(row);
                    changed = true;
                }
                continue;
            }
            // The first build reads it.
            None if indexing => continue,
            _ => {}
        }
        // New, or its log changed since it was indexed: follow it.
        let hub = RunHub::live(id.clone());
        let mut tail = Tail {
            hub: hub.clone(),
            offset: 0,
            last_growth: Instant::now(),
            recorded_quiet: false,
        };
        advance(&mut tail, &folders.log(id), stamp.log_len);
        changed = true;
        if settle(state, &mut tail, stamp) == Some(Settled::Finished) {
            // A whole run copied in, or a resumption that already ended.
            continue;
        }
        f.tails.insert(id.clone(), tail);
        if !hub.is_finished() {
            appeared = Some(hub);
        }
    }
    drop(f);
    if let Some(hub) = appeared {
        // Nothing trains here: show the new run to pages following `current`.
        if state
            .current_hub()
            .is_none_or(|h| h.is_finished() || !h.with_state(|s| s.is_live()))
        {
            state.set_current(CurrentRun {
                hub,
                stop: mnist_events::Stop::new(),
                controls: None,
            });
        }
    }
    if changed {
        state.runs_changed.send_modify(|v| *v += 1);
        // A run another process trained may have ended: the queue goes on.
        state.dispatch_queue();
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Settled {
    /// It ended: its row is written and it need not be followed.
    Finished,
    /// It went quiet: its row is written, it is followed in case it grows.
    Quiet,
}

/// Writes a followed run's row once it finished or went quiet, when
/// everything its log holds was read (`stamp` is the log as read).
fn settle(state: &AppState, tail: &mut Tail, stamp: Stamp) -> Option<Settled> {
    if tail.offset != stamp.log_len {
        return None;
    }
    let finished = tail.hub.with_state(|s| s.status().is_final());
    let quiet = !tail.hub.with_state(|s| s.is_live());
    if !finished && (!quiet || tail.recorded_quiet) {
        return None;
    }
    tail.hub.with_state(|s| state.index.record_with(s, stamp));
    tail.recorded_quiet = quiet;
    Some(if finished {
        Settled::Finished
    } else {
        Settled::Quiet
    })
}

/// Reads what the log gained since `tail.offset` into the hub; true when
/// the run's status changed (it ended, went quiet or came back).
fn advance(tail: &mut Tail, path: &Path, len: u64) -> bool {
    let before = tail.hub.with_state(|s| s.status());
    read_new_lines(tail, path, len);
    before != tail.hub.with_state(|s| s.status())
}

fn read_new_lines(tail: &mut Tail, path: &Path, len: u64) {
    if len > tail.offset {
        let Ok(bytes) = read_range(path, tail.offset, len) else {
            return;
        };
        // Only whole lines: a torn last line waits for its end.
        let Some(end) = bytes.iter().rposition(|&b| b == b'\n') else {
            return;
        };
        let mut newest_seq = tail.hub.last_seq();
        for line in bytes[..end].split(|&b| b == b'\n') {
            let Ok(event) = mnist_events::parse_line(line) else {
                continue;
            };
            if event.seq > newest_seq {
                newest_seq = event.seq;
                tail.hub.push(event);
            }
        }
        tail.offset += end as u64 + 1;
        tail.last_growth = Instant::now();
        tail.recorded_quiet = false;
        tail.hub.set_live(!tail.hub.is_finished());
    } else if tail.last_growth.elapsed() >= QUIET {
        tail.hub.set_live(false);
    }
}

fn read_range(path: &Path, from: u64, to: u64) -> std::io::Result<Vec<u8>> {
    let mut file = std::fs::File::open(path)?;
    file.seek(SeekFrom::Start(from))?;
    let mut bytes = Vec::with_capacity((to - from) as usize);
    file.take(to - from).read_to_end(&mut bytes)?;
    Ok(bytes)
}
