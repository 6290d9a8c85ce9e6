//! `serve` follows the whole runs folder, the way TensorBoard follows a
//! logdir: a run written by any process (a `train` started from a shell, a
//! Slurm job on a shared filesystem, a remote launcher) shows up on the
//! page within a second of its log appearing, and its growing log streams
//! to viewers like a run this server trains.
//!
//! Every [`SCAN`] the folder is listed and each `events.jsonl` stat'ed.
//! A log that is new, or grew since the server started, gets a live
//! [`RunHub`]: read once, then only its new complete lines (a torn last line
//! waits for its end), pushed into the hub as they come; everything else
//! (finished runs, folded on first request and cached) is left alone. A
//! followed log that stops growing for [`QUIET`] without `run_finished`
//! shows as interrupted (its process died or was killed) until it grows
//! again.

use crate::hub::RunHub;
use crate::{AppState, CurrentRun};
use mnist_events::{Event, LockExt};
use std::collections::HashMap;
use std::io::{Read, Seek, SeekFrom};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How often the runs folder is looked at.
pub const SCAN: Duration = Duration::from_millis(500);

/// A followed log quiet this long without `run_finished` is shown as
/// interrupted. A training process writes a hardware sample every second
/// and a batch far more often, so half a minute of silence means it is gone.
pub const QUIET: Duration = Duration::from_secs(30);

/// The logs the server follows, and the sizes it saw of the others.
#[derive(Default)]
pub(crate) struct Followed {
    tails: HashMap<String, Tail>,
    /// Each log's length when last seen (the ones not followed).
    seen: HashMap<String, u64>,
    scanned_once: bool,
}

struct Tail {
    hub: Arc<RunHub>,
    /// Bytes of the log read into the hub (up to a line's end).
    offset: u64,
    last_growth: Instant,
}

impl Followed {
    /// The hub of a followed run.
    pub(crate) fn hub(&self, run_id: &str) -> Option<Arc<RunHub>> {
        self.tails.get(run_id).map(|t| t.hub.clone())
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

/// Starts following `state`'s runs folder on a thread of its own.
pub fn start(state: Arc<AppState>) -> std::io::Result<std::thread::JoinHandle<()>> {
    std::thread::Builder::new()
        .name("runs-follower".into())
        .spawn(move || loop {
            scan(&state);
            std::thread::sleep(SCAN);
        })
}

/// One look at the runs folder (see the module doc).
pub fn scan(state: &Arc<AppState>) {
    // A run this server trains is fed by its own sink, not its log.
    let mut own = state.training_ids();
    own.extend(
        state
            .current_hub()
            .filter(|h| !h.is_finished() && !state.is_followed(&h.run_id))
            .map(|h| h.run_id.clone()),
    );
    let mut appeared = None;
    let mut changed = false;
    {
        let mut f = state.followed.locked();
        let logs = crate::history::list_runs(&state.opts.runs_dir);
        for (id, path) in &logs {
            if own.contains(id) {
                continue;
            }
            let Ok(len) = std::fs::metadata(path).map(|m| m.len()) else {
                continue;
            };
            if let Some(tail) = f.tails.get_mut(id) {
                changed |= advance(tail, path, len);
                if tail.offset > len {
                    // Replaced by a shorter log: read it afresh next time.
                    f.tails.remove(id);
                    f.seen.remove(id);
                }
                continue;
            }
            let before = f.seen.insert(id.clone(), len);
            if !f.scanned_once || before == Some(len) {
                continue;
            }
            // New, or grown since the server started: follow it from now on.
            let hub = RunHub::live(id.clone());
            let mut tail = Tail {
                hub: hub.clone(),
                offset: 0,
                last_growth: Instant::now(),
            };
            advance(&mut tail, path, len);
            f.seen.remove(id);
            f.tails.insert(id.clone(), tail);
            changed = true;
            if !hub.is_finished() {
                appeared = Some(hub);
            }
        }
        // Runs that left the folder (deleted to the trash).
        let before = f.tails.len();
        f.tails.retain(|id, _| logs.iter().any(|(l, _)| l == id));
        f.seen.retain(|id, _| logs.iter().any(|(l, _)| l == id));
        changed |= f.tails.len() != before;
        f.scanned_once = true;
    }
    if let Some(hub) = appeared {
        // Nothing trains here: show the new run to pages following `current`.
        if state
            .current_hub()
            .is_none_or(|h| h.is_finished() || !h.with_state(|s| s.is_live()))
        {
            state.set_current(CurrentRun {
                hub,
                stop: mnist_events::Stop::new(),
            });
        }
    }
    if changed {
        state.runs_changed.send_modify(|v| *v += 1);
        // A run another process trained may have ended: the queue goes on.
        state.dispatch_queue();
    }
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
            let Ok(event) = serde_json::from_slice::<Event>(line) else {
                continue;
            };
            if event.seq > newest_seq {
                newest_seq = event.seq;
                tail.hub.push(event);
            }
        }
        tail.offset += end as u64 + 1;
        tail.last_growth = Instant::now();
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
