//! Fan-out of one run's events to any number of sinks.

use crate::LockExt;
use crate::{now_ms, Event, EventKind};

/// A consumer of events. Sinks run on the trainer's thread, so they must be
/// quick and must never block on a slow reader: a sink that feeds a network
/// client should hand the event to a bounded queue and drop on overflow.
pub trait EventSink: Send {
    /// Receives one stamped event; must return quickly.
    fn emit(&mut self, event: &Event);
}

/// Adapts a closure into an [`EventSink`].
pub struct FnSink<F>(pub F);

impl<F: FnMut(&Event) + Send> EventSink for FnSink<F> {
    fn emit(&mut self, event: &Event) {
        (self.0)(event)
    }
}

/// Derives new events from the stream (the alert rules): called after every
/// event has reached the sinks; what it returns is emitted next, in order.
pub trait Observer: Send {
    /// Looks at one event after the sinks; returns the events it derives
    /// (often none).
    fn observe(&mut self, event: &Event) -> Vec<EventKind>;
}

/// Stamps events with `seq`, `ts_ms` and `run_id`, and hands each to every
/// sink, then to every observer.
///
/// A cheap handle: clones share one sequence, so the trainer's thread and the
/// hardware sampler's thread can both emit into the same run. Emission holds
/// a lock only while the (quick) sinks run.
#[derive(Clone)]
pub struct EventStream {
    run_id: std::sync::Arc<str>,
    inner: std::sync::Arc<std::sync::Mutex<Inner>>,
}

struct Inner {
    next_seq: u64,
    sinks: Vec<Box<dyn EventSink>>,
    observers: Vec<Box<dyn Observer>>,
}

impl EventStream {
    /// A stream whose first event gets `seq = last_seq + 1` (0 for a new run;
    /// a resumed run passes the last `seq` of its log).
    pub fn new(run_id: impl Into<String>, last_seq: u64) -> Self {
        Self {
            run_id: run_id.into().into(),
            inner: std::sync::Arc::new(std::sync::Mutex::new(Inner {
                next_seq: last_seq + 1,
                sinks: Vec::new(),
                observers: Vec::new(),
            })),
        }
    }

    /// The run id stamped on every event.
    pub fn run_id(&self) -> &str {
        &self.run_id
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A sink that panicked leaves the stream usable for the others.
        self.inner.locked()
    }

    /// The `seq` of the most recently emitted event (0 if none).
    pub fn last_seq(&self) -> u64 {
        self.lock().next_seq - 1
    }

    /// Adds a sink; it receives the events emitted from now on.
    pub fn add_sink(&self, sink: impl EventSink + 'static) {
        self.lock().sinks.push(Box::new(sink));
    }

    /// Adds an already boxed sink; see [`EventStream::add_sink`].
    pub fn add_boxed_sink(&self, sink: Box<dyn EventSink>) {
        self.lock().sinks.push(sink);
    }

    /// Adds an observer; it sees the events emitted from now on.
    pub fn add_observer(&self, observer: impl Observer + 'static) {
        self.lock().observers.push(Box::new(observer));
    }

    /// Emits one event to every sink, then any events the observers derive
    /// from it, and returns the first one's `seq`.
    pub fn emit(&self, kind: EventKind) -> u64 {
        let mut inner = self.lock();
        let first = inner.next_seq;
        let mut queue = std::collections::VecDeque::from([kind]);
        while let Some(kind) = queue.pop_front() {
            let event = Event {
                seq: inner.next_seq,
                ts_ms: now_ms(),
                run_id: self.run_id.to_string(),
                kind,
            };
            inner.next_seq += 1;
            for sink in &mut inner.sinks {
                sink.emit(&event);
            }
            for observer in &mut inner.observers {
                queue.extend(observer.observe(&event));
            }
        }
        first
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{LogLevel, LogMessage};
    use std::sync::{Arc, Mutex};

    #[test]
    fn seq_is_monotonic_and_continues_after_resume() {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let sink_seen = seen.clone();
        let stream = EventStream::new("run", 41);
        stream.add_sink(FnSink(move |e: &Event| sink_seen.locked().push(e.seq)));
        for _ in 0..3 {
            stream.emit(EventKind::Log(LogMessage {
                level: LogLevel::Info,
                message: String::new(),
            }));
        }
        assert_eq!(*seen.locked(), vec![42, 43, 44]);
        assert_eq!(stream.last_seq(), 44);
    }
}
