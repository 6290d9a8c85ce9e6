//! A run's events in memory, folded into its state and fanned out to
//! websocket viewers.
//!
//! The trainer pushes each event through a [`HubSink`]; the hub folds it
//! into the run's [`RunState`] (once: every view reads that), keeps it for
//! exact `?since=SEQ` replays, and offers it to every subscriber's bounded
//! queue with `try_send`. A viewer whose queue is full is dropped (its
//! socket closes and the page reconnects with its last `seq`), so a slow
//! browser can never slow training: the trainer only ever takes a short
//! lock and never awaits.

use crate::state::RunState;
use mnist_events::LockExt;
use mnist_events::{Event, EventKind, EventSink};
use std::sync::{Arc, Mutex, MutexGuard};
use tokio::sync::mpsc;

/// Events a viewer may fall behind by before it is dropped.
pub const VIEWER_QUEUE: usize = 4096;

/// One run's events, folded state and live viewers, shared by its trainer
/// (through a [`HubSink`]) and the server's handlers.
pub struct RunHub {
    /// The run's id, as in its events and its `runs/<id>` folder.
    pub run_id: String,
    inner: Mutex<Inner>,
}

struct Inner {
    events: Vec<Arc<Event>>,
    state: RunState,
    subscribers: Vec<mpsc::Sender<Arc<Event>>>,
    finished: bool,
}

impl RunHub {
    /// A hub for a run that is about to start.
    pub fn live(run_id: impl Into<String>) -> Arc<Self> {
        let run_id = run_id.into();
        Arc::new(Self {
            inner: Mutex::new(Inner {
                events: Vec::new(),
                state: RunState::new(run_id.clone(), true),
                subscribers: Vec::new(),
                finished: false,
            }),
            run_id,
        })
    }

    /// A hub holding a finished (or abandoned) run's logged events.
    pub fn from_log(run_id: impl Into<String>, events: Vec<Event>) -> Arc<Self> {
        let run_id = run_id.into();
        let mut state = RunState::new(run_id.clone(), false);
        let events: Vec<Arc<Event>> = events.into_iter().map(Arc::new).collect();
        for e in &events {
            state.fold(e);
        }
        Arc::new(Self {
            inner: Mutex::new(Inner {
                events,
                state,
                subscribers: Vec::new(),
                finished: true,
            }),
            run_id,
        })
    }

    /// A hub for a run about to be resumed: its logged events, live, so
    /// viewers see the whole run and then what the resumption adds.
    pub fn resuming(run_id: impl Into<String>, events: Vec<Event>) -> Arc<Self> {
        let hub = Self::from_log(run_id, events);
        {
            let mut inner = hub.lock();
            inner.finished = false;
            inner.state.set_live(true);
        }
        hub
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic elsewhere while holding the lock leaves whole events
        // behind (each push is one step); keep serving them.
        self.inner.locked()
    }

    /// Appends an event, folds it into the state and offers it to every viewer.
    pub fn push(&self, event: Event) {
        let event = Arc::new(event);
        let mut inner = self.lock();
        inner.state.fold(&event);
        inner.events.push(event.clone());
        inner
            .subscribers
            .retain(|tx| tx.try_send(event.clone()).is_ok());
        if matches!(event.kind, EventKind::RunFinished(_)) {
            inner.finished = true;
            // Dropping the senders ends every viewer's stream after this event.
            inner.subscribers.clear();
        }
    }

    /// Reads the run's state under the hub's lock.
    pub fn with_state<T>(&self, read: impl FnOnce(&RunState) -> T) -> T {
        read(&self.lock().state)
    }

    /// Every event with `seq > since`, and, while the run is live, a queue
    /// that will receive every later event: taken under one lock, so there is
    /// no gap and no duplicate between the two.
    pub fn subscribe(&self, since: u64) -> (Vec<Arc<Event>>, Option<mpsc::Receiver<Arc<Event>>>) {
        let mut inner = self.lock();
        let backlog = since_in(&inner.events, since);
        if inner.finished {
            return (backlog, None);
        }
        let (tx, rx) = mpsc::channel(VIEWER_QUEUE);
        inner.subscribers.push(tx);
        (backlog, Some(rx))
    }

    /// The state's snapshot and, while the run is live, a queue of every
    /// later event: under one lock, like [`RunHub::subscribe`].
    pub fn subscribe_snapshot(
        &self,
    ) -> (
        crate::protocol::Envelope,
        Option<mpsc::Receiver<Arc<Event>>>,
    ) {
        let mut inner = self.lock();
        let snapshot = crate::protocol::Envelope::Snapshot(Box::new(inner.state.snapshot()));
        if inner.finished {
            return (snapshot, None);
        }
        let (tx, rx) = mpsc::channel(VIEWER_QUEUE);
        inner.subscribers.push(tx);
        (snapshot, Some(rx))
    }

    /// Every event kept with `seq > since`, without a live queue (see
    /// [`RunHub::subscribe`]).
    pub fn events_since(&self, since: u64) -> Vec<Arc<Event>> {
        since_in(&self.lock().events, since)
    }

    /// Marks whether a process still trains this run (a followed log that
    /// went quiet is not; one that grows again is). A finished run stays
    /// as it ended.
    pub fn set_live(&self, live: bool) {
        let mut inner = self.lock();
        if !inner.finished {
            inner.state.set_live(live);
        }
    }

    /// Whether no more events will come: `run_finished` was pushed, or the
    /// hub was folded from a log.
    pub fn is_finished(&self) -> bool {
        self.lock().finished
    }

    /// About how many bytes the hub holds in memory: its events and the
    /// state folded from them (for the logged runs' budget).
    pub fn approx_bytes(&self) -> usize {
        let inner = self.lock();
        let per_event = std::mem::size_of::<Event>() + std::mem::size_of::<Arc<Event>>() + 48;
        inner.events.len() * per_event + inner.state.approx_bytes()
    }

    /// Live subscribers still attached (those dropped for lagging don't count).
    pub fn viewers(&self) -> usize {
        self.lock().subscribers.len()
    }

    /// The `seq` of the latest event folded, 0 before any.
    pub fn last_seq(&self) -> u64 {
        self.lock().state.last_seq()
    }
}

fn since_in(events: &[Arc<Event>], since: u64) -> Vec<Arc<Event>> {
    // `seq` increases along the log, so the cut point is a binary search.
    let start = events.partition_point(|e| e.seq <= since);
    events[start..].to_vec()
}

/// The trainer-side end of a hub.
pub struct HubSink(pub Arc<RunHub>);

impl EventSink for HubSink {
    fn emit(&mut self, event: &Event) {
        self.0.push(event.clone());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mnist_events::{LogLevel, LogMessage};

    fn log(seq: u64) -> Event {
        Event {
            seq,
            ts_ms: 0,
            run_id: "r".into(),
            kind: EventKind::Log(LogMessage {
                level: LogLevel::Info,
                message: String::new(),
            }),
        }
    }

    #[test]
    fn subscribe_gives_backlog_then_live_without_gap() {
        let hub = RunHub::live("r");
        for s in 1..=5 {
            hub.push(log(s));
        }
        let (backlog, rx) = hub.subscribe(3);
        assert_eq!(
            backlog.iter().map(|e| e.seq).collect::<Vec<_>>(),
            vec![4, 5]
        );
        hub.push(log(6));
        let mut rx = rx.unwrap();
        assert_eq!(rx.try_recv().unwrap().seq, 6);
    }

    #[test]
    fn a_full_viewer_is_dropped_not_waited_for() {
        let hub = RunHub::live("r");
        let (_, rx) = hub.subscribe(0);
        for s in 1..=(VIEWER_QUEUE as u64 + 10) {
            hub.push(log(s));
        }
        assert_eq!(hub.viewers(), 0);
        let mut rx = rx.unwrap();
        let mut got = 0;
        while rx.try_recv().is_ok() {
            got += 1;
        }
        assert_eq!(
            got, VIEWER_QUEUE,
            "it keeps what fitted, then its stream ends"
        );
    }
}
