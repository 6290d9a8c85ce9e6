//! A background sampler shared by everything in one process: the trainer's
//! run stream, the server's hardware websocket and `/metrics` all read the
//! same samples, so the machine is sampled once however many consumers there
//! are.

use crate::sampler::Sampler;
use mnist_events::HardwareSnapshot;
use mnist_events::LockExt;
use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

/// Samples kept for the page's sparklines (5 minutes at 1 Hz).
pub const HISTORY: usize = 300;

type Listener = Box<dyn Fn(&Arc<HardwareSnapshot>) + Send>;

/// Samples the machine on a background thread, keeps the last [`HISTORY`]
/// samples and hands each new one to subscribers.
pub struct Monitor {
    interval: Duration,
    state: Mutex<State>,
}

struct State {
    history: VecDeque<Arc<HardwareSnapshot>>,
    listeners: Vec<(u64, Listener)>,
    next_id: u64,
}

/// Keeps a listener registered; dropping it unregisters.
pub struct Subscription {
    monitor: Weak<Monitor>,
    id: u64,
}

impl Drop for Subscription {
    fn drop(&mut self) {
        if let Some(m) = self.monitor.upgrade() {
            m.lock().listeners.retain(|(id, _)| *id != self.id);
        }
    }
}

impl std::fmt::Debug for Monitor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Monitor")
            .field("interval", &self.interval)
            .finish_non_exhaustive()
    }
}

impl Monitor {
    /// Starts sampling every `interval` on a thread of its own, which ends
    /// when the last `Arc<Monitor>` is dropped.
    pub fn start(interval: Duration, watch: Vec<PathBuf>) -> Arc<Monitor> {
        let monitor = Arc::new(Monitor {
            interval,
            state: Mutex::new(State {
                history: VecDeque::with_capacity(HISTORY),
                listeners: Vec::new(),
                next_id: 0,
            }),
        });
        let weak = Arc::downgrade(&monitor);
        std::thread::Builder::new()
            .name("hw-sampler".into())
            .spawn(move || run(weak, interval, watch))
            .expect("spawn the hardware sampler");
        monitor
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.locked()
    }

    /// Time between samples.
    pub fn interval(&self) -> Duration {
        self.interval
    }

    /// The most recent sample, or `None` before the first.
    pub fn latest(&self) -> Option<Arc<HardwareSnapshot>> {
        self.lock().history.back().cloned()
    }

    /// The last [`HISTORY`] samples, oldest first.
    pub fn history(&self) -> Vec<Arc<HardwareSnapshot>> {
        self.lock().history.iter().cloned().collect()
    }

    /// Calls `f` with every new sample, on the sampler's thread: `f` must be
    /// quick and must not block (hand the sample to a bounded queue).
    pub fn subscribe(
        self: &Arc<Self>,
        f: impl Fn(&Arc<HardwareSnapshot>) + Send + 'static,
    ) -> Subscription {
        let mut state = self.lock();
        let id = state.next_id;
        state.next_id += 1;
        state.listeners.push((id, Box::new(f)));
        Subscription {
            monitor: Arc::downgrade(self),
            id,
        }
    }

    /// History plus a subscription, under one lock: no sample is missed or
    /// seen twice between the two.
    pub fn subscribe_with_history(
        self: &Arc<Self>,
        f: impl Fn(&Arc<HardwareSnapshot>) + Send + 'static,
    ) -> (Vec<Arc<HardwareSnapshot>>, Subscription) {
        let mut state = self.lock();
        let history = state.history.iter().cloned().collect();
        let id = state.next_id;
        state.next_id += 1;
        state.listeners.push((id, Box::new(f)));
        (
            history,
            Subscription {
                monitor: Arc::downgrade(self),
                id,
            },
        )
    }
}

fn run(monitor: Weak<Monitor>, interval: Duration, watch: Vec<PathBuf>) {
    let mut sampler = Sampler::new(watch);
    // CPU usage needs two readings some time apart; take the first sample
    // soon rather than a whole interval later.
    let mut next = Instant::now() + sysinfo_min_interval().min(interval);
    loop {
        // Sleep in short steps so a dropped monitor ends the thread promptly.
        loop {
            let now = Instant::now();
            if now >= next {
                break;
            }
            std::thread::sleep((next - now).min(Duration::from_millis(250)));
            if monitor.strong_count() == 0 {
                return;
            }
        }
        next += interval;
        if next < Instant::now() {
            next = Instant::now() + interval; // fell behind (suspend): don't burst
        }
        let snapshot = Arc::new(sampler.sample());
        let Some(m) = monitor.upgrade() else { return };
        let state = &mut *m.lock();
        if state.history.len() == HISTORY {
            state.history.pop_front();
        }
        state.history.push_back(snapshot.clone());
        for (_, f) in &state.listeners {
            f(&snapshot);
        }
    }
}

pub(crate) fn sysinfo_min_interval() -> Duration {
    sysinfo::MINIMUM_CPU_UPDATE_INTERVAL.max(Duration::from_millis(200))
}
