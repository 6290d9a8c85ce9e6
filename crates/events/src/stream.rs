//! Fan-out of one run's events to any number of sinks.

use crate::{now_ms, Event, EventKind};

/// A consumer of events. Sinks run on the trainer's thread, so they must be
/// quick and must never block on a slow reader: a sink that feeds a network
/// client should hand the event to a bounded queue and drop on overflow.
pub trait EventSink: Send {
    fn emit(&mut self, event: &Event);
}

/// Adapts a closure into an [`EventSink`].
pub struct FnSink<F>(pub F);

impl<F: FnMut(&Event) + Send> EventSink for FnSink<F> {
    fn emit(&mut self, event: &Event) {
        (self.0)(event)
    }
}

/// Stamps events with `seq`, `ts_ms` and `run_id`, and hands each to every sink.
pub struct EventStream {
    run_id: String,
    next_seq: u64,
    sinks: Vec<Box<dyn EventSink>>,
}

impl EventStream {
    /// A stream whose first event gets `seq = last_seq + 1` (0 for a new run;
    /// a resumed run passes the last `seq` of its log).
    pub fn new(run_id: impl Into<String>, last_seq: u64) -> Self {
        Self {
            run_id: run_id.into(),
            next_seq: last_seq + 1,
            sinks: Vec::new(),
        }
    }

    pub fn run_id(&self) -> &str {
        &self.run_id
    }

    /// The `seq` of the most recently emitted event (0 if none).
    pub fn last_seq(&self) -> u64 {
        self.next_seq - 1
    }

    pub fn add_sink(&mut self, sink: impl EventSink + 'static) {
        self.sinks.push(Box::new(sink));
    }

    pub fn add_boxed_sink(&mut self, sink: Box<dyn EventSink>) {
        self.sinks.push(sink);
    }

    /// Emits one event to every sink and returns its `seq`.
    pub fn emit(&mut self, kind: EventKind) -> u64 {
        let event = Event {
            seq: self.next_seq,
            ts_ms: now_ms(),
            run_id: self.run_id.clone(),
            kind,
        };
        self.next_seq += 1;
        for sink in &mut self.sinks {
            sink.emit(&event);
        }
        event.seq
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
        let mut stream = EventStream::new("run", 41);
        stream.add_sink(FnSink(move |e: &Event| {
            sink_seen.lock().unwrap().push(e.seq)
        }));
        for _ in 0..3 {
            stream.emit(EventKind::Log(LogMessage {
                level: LogLevel::Info,
                message: String::new(),
            }));
        }
        assert_eq!(*seen.lock().unwrap(), vec![42, 43, 44]);
        assert_eq!(stream.last_seq(), 44);
    }
}
