//! The JSON-lines run log: `runs/<run-id>/events.jsonl`, one [`Event`] a line.
//!
//! Crash-safe the way a database's write-ahead log is:
//! * each event goes out in **one `write`** of its whole line (with
//!   `O_APPEND`), so concurrent readers and a crash see whole lines; a write
//!   that fails part-way (a full disk) is cut back to the last whole line;
//! * a log that ends in a **torn line** (the process died mid-write) is
//!   repaired when it is reopened: the fragment is moved to
//!   `events.jsonl.torn` (kept, never silently dropped) and the log ends at
//!   its last whole line again, so the next event starts a line of its own;
//! * **readers skip a bad line** and report it ([`read_log`]) instead of
//!   losing the whole run;
//! * a write that fails marks the writer failed and says why through
//!   [`JsonlWriter::on_failure`], so the run can stop as failed instead of
//!   "completing" without a log.

use crate::{Event, EventSink};
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

/// Called once, with the error, when the log can no longer be written.
pub type FailureHook = Box<dyn FnOnce(String) + Send>;

/// Appends events to a JSONL file, one `write` per event.
pub struct JsonlWriter {
    path: PathBuf,
    file: File,
    /// Length of the file up to the last whole line written.
    len: u64,
    failed: bool,
    on_failure: Option<FailureHook>,
    repaired: Option<TornTail>,
}

/// The fragment a reopened log ended in, and where it was kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TornTail {
    /// Length of the fragment, without the `\n` added when it was kept.
    pub bytes: usize,
    /// The `.torn` file the fragment was appended to (see [`torn_path`]).
    pub kept_in: PathBuf,
}

impl JsonlWriter {
    /// Opens (creating directories as needed) `path` for appending, first
    /// repairing a torn last line (see [`JsonlWriter::repaired`]).
    pub fn append(path: impl AsRef<Path>) -> std::io::Result<Self> {
        let path = path.as_ref().to_path_buf();
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let repaired = repair_torn_tail(&path)?;
        let file = OpenOptions::new().create(true).append(true).open(&path)?;
        let len = file.metadata()?.len();
        Ok(Self {
            path,
            file,
            len,
            failed: false,
            on_failure: None,
            repaired,
        })
    }

    /// The log file being written.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The torn line found (and kept aside) when the log was opened.
    pub fn repaired(&self) -> Option<&TornTail> {
        self.repaired.as_ref()
    }

    /// Calls `hook` with the error when a write fails.
    pub fn on_failure(mut self, hook: impl FnOnce(String) + Send + 'static) -> Self {
        self.on_failure = Some(Box::new(hook));
        self
    }

    fn write_line(&mut self, event: &Event) -> std::io::Result<()> {
        let mut line = serde_json::to_vec(event).map_err(std::io::Error::from)?;
        line.push(b'\n');
        match self.file.write_all(&line) {
            Ok(()) => {
                self.len += line.len() as u64;
                Ok(())
            }
            Err(err) => {
                // Part of the line may be on disk: cut it off so the log
                // still ends at a whole line.
                let _ = self.file.set_len(self.len);
                Err(err)
            }
        }
    }
}

impl EventSink for JsonlWriter {
    fn emit(&mut self, event: &Event) {
        if self.failed {
            return;
        }
        if let Err(err) = self.write_line(event) {
            self.failed = true;
            let message = format!("cannot write the run log {}: {err}", self.path.display());
            match self.on_failure.take() {
                Some(hook) => hook(message),
                None => eprintln!("warning: {message}; events are no longer logged"),
            }
        }
    }
}

/// Where a torn fragment of `log` is kept.
pub fn torn_path(log: &Path) -> PathBuf {
    let mut name = log.file_name().unwrap_or_default().to_os_string();
    name.push(".torn");
    log.with_file_name(name)
}

/// Moves a last line without its `\n` out of `path` (appending it to
/// [`torn_path`]) and truncates `path` after its last whole line.
fn repair_torn_tail(path: &Path) -> std::io::Result<Option<TornTail>> {
    let mut file = match OpenOptions::new().read(true).write(true).open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let len = file.metadata()?.len();
    let start = last_line_start(&mut file, len)?;
    if start == len {
        return Ok(None);
    }
    let mut fragment = Vec::with_capacity((len - start) as usize + 1);
    file.seek(SeekFrom::Start(start))?;
    file.read_to_end(&mut fragment)?;
    fragment.push(b'\n');
    let kept_in = torn_path(path);
    let mut torn = OpenOptions::new()
        .create(true)
        .append(true)
        .open(&kept_in)?;
    torn.write_all(&fragment)?;
    torn.sync_all()?;
    file.set_len(start)?;
    file.sync_all()?;
    Ok(Some(TornTail {
        bytes: fragment.len() - 1,
        kept_in,
    }))
}

/// Offset just after the last `\n` of the file's first `len` bytes (0 if none).
fn last_line_start(file: &mut File, len: u64) -> std::io::Result<u64> {
    const CHUNK: u64 = 64 * 1024;
    let mut end = len;
    let mut buf = vec![0u8; CHUNK as usize];
    while end > 0 {
        let begin = end.saturating_sub(CHUNK);
        let chunk = &mut buf[..(end - begin) as usize];
        file.seek(SeekFrom::Start(begin))?;
        file.read_exact(chunk)?;
        if let Some(i) = chunk.iter().rposition(|&b| b == b'\n') {
            return Ok(begin + i as u64 + 1);
        }
        end = begin;
    }
    Ok(0)
}

/// A log as read back: its events, and the lines that were not events.
#[derive(Debug, Default)]
pub struct Log {
    /// The lines that parsed, in file order.
    pub events: Vec<Event>,
    /// The lines that did not, in file order.
    pub bad_lines: Vec<BadLine>,
}

/// A line of a log that did not parse as an event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadLine {
    /// 1-based line number.
    pub line: usize,
    /// The parse error for that line.
    pub error: String,
}

/// Reads every event of a JSONL log, skipping (and listing) lines that are
/// not events: a torn last line, or damage anywhere, costs those lines only.
pub fn read_log(path: impl AsRef<Path>) -> std::io::Result<Log> {
    let reader = BufReader::new(File::open(path.as_ref())?);
    let mut log = Log::default();
    for (i, line) in reader.split(b'\n').enumerate() {
        let line = line?;
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        match parse_line(&line) {
            Ok(event) => log.events.push(event),
            Err(err) => log.bad_lines.push(BadLine {
                line: i + 1,
                error: err.to_string(),
            }),
        }
    }
    Ok(log)
}

/// Parses one line of a log. `batch` lines, most of any log, take a path
/// of their own: `Event`'s flattened, tagged payload makes serde buffer
/// every line into a generic tree first, which costs about as much again
/// as the parse itself; a batch's envelope and its metrics are read
/// straight into their structs instead. Anything else (or a line the fast
/// path does not take) goes through `Event`'s own `Deserialize`.
pub fn parse_line(line: &[u8]) -> serde_json::Result<Event> {
    if line_is(line, "batch") {
        #[derive(serde::Deserialize)]
        struct Envelope {
            seq: u64,
            ts_ms: u64,
            run_id: String,
        }
        let head = serde_json::from_slice::<Envelope>(line);
        let batch = serde_json::from_slice::<crate::BatchMetrics>(line);
        if let (Ok(head), Ok(batch)) = (head, batch) {
            return Ok(Event {
                seq: head.seq,
                ts_ms: head.ts_ms,
                run_id: head.run_id,
                kind: crate::EventKind::Batch(batch),
            });
        }
    }
    serde_json::from_slice(line)
}

/// Whether a log line's envelope says `"type":"KIND"`, without parsing
/// it: our writer puts the type among the first fields, and no string
/// value before it can hold a quote unescaped.
pub fn line_is(line: &[u8], kind: &str) -> bool {
    const TAG: &[u8] = b"\"type\":\"";
    let head = &line[..line.len().min(200)];
    head.windows(TAG.len())
        .position(|w| w == TAG)
        .is_some_and(|at| {
            let rest = &head[at + TAG.len()..];
            rest.starts_with(kind.as_bytes()) && rest.get(kind.len()) == Some(&b'"')
        })
}

/// The events of a JSONL log ([`read_log`] without the bad lines).
pub fn read_events(path: impl AsRef<Path>) -> std::io::Result<Vec<Event>> {
    read_log(path).map(|log| log.events)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{EventKind, EventStream, LogLevel, LogMessage};

    fn log_event(i: usize) -> EventKind {
        EventKind::Log(LogMessage {
            level: LogLevel::Info,
            message: format!("m{i}"),
        })
    }

    #[test]
    fn the_fast_path_for_batches_reads_what_serde_reads() {
        let stream = EventStream::new("r", 0);
        let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let sink = seen.clone();
        stream.add_sink(crate::FnSink(move |e: &Event| {
            sink.lock().unwrap().push(e.clone())
        }));
        for loss in [0.5, f64::NAN, f64::INFINITY] {
            stream.emit(EventKind::Batch(crate::BatchMetrics {
                epoch: 2,
                batch: 3,
                batches: 10,
                step: 13,
                size: 64,
                loss,
                accuracy: 0.25,
                f1_macro: 0.125,
                epoch_loss: loss,
                epoch_accuracy: 0.5,
                epoch_f1_macro: 0.5,
                lr: 1e-3,
                images_per_sec: 1234.5,
                elapsed_s: 9.75,
            }));
        }
        stream.emit(log_event(1));
        for e in seen.lock().unwrap().iter() {
            let line = serde_json::to_vec(e).unwrap();
            let fast = parse_line(&line).unwrap();
            let slow: Event = serde_json::from_slice(&line).unwrap();
            assert_eq!(
                format!("{fast:?}"),
                format!("{slow:?}"),
                "{}",
                String::from_utf8_lossy(&line)
            );
        }
        assert!(
            parse_line(br#"{"seq":1,"ts_ms":2,"run_id":"r","type":"batch","step":"x"}"#).is_err()
        );
    }

    #[test]
    fn writes_and_reads_back_skipping_a_torn_tail() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("events.jsonl");
        let stream = EventStream::new("r", 0);
        stream.add_sink(JsonlWriter::append(&path).unwrap());
        for i in 0..3 {
            stream.emit(log_event(i));
        }
        drop(stream);
        OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap()
            .write_all(b"{\"seq\":4,\"ts_")
            .unwrap();
        let log = read_log(&path).unwrap();
        assert_eq!(
            log.events.iter().map(|e| e.seq).collect::<Vec<_>>(),
            vec![1, 2, 3]
        );
        assert_eq!(log.bad_lines.len(), 1);
        assert_eq!(log.bad_lines[0].line, 4);
    }

    #[test]
    fn a_bad_line_in_the_middle_costs_that_line_only() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("events.jsonl");
        let stream = EventStream::new("r", 0);
        stream.add_sink(JsonlWriter::append(&path).unwrap());
        stream.emit(log_event(1));
        drop(stream);
        let mut text = std::fs::read_to_string(&path).unwrap();
        text += "{\"seq\":2,\"ts_ms\":0,\"run_id\":\"r\",\"type\":\"lo\x00\n";
        text += &text
            .lines()
            .next()
            .unwrap()
            .replace("\"seq\":1", "\"seq\":3");
        text += "\n";
        std::fs::write(&path, text).unwrap();
        let log = read_log(&path).unwrap();
        assert_eq!(log.events.iter().map(|e| e.seq).collect::<Vec<_>>(), [1, 3]);
        assert_eq!(
            log.bad_lines.iter().map(|b| b.line).collect::<Vec<_>>(),
            [2]
        );
    }

    #[test]
    fn reopening_moves_a_torn_line_aside_so_the_next_event_stands_alone() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("events.jsonl");
        let stream = EventStream::new("r", 0);
        stream.add_sink(JsonlWriter::append(&path).unwrap());
        stream.emit(log_event(1));
        drop(stream);
        let fragment = b"{\"seq\":2,\"ts_ms\":17,\"run_id\":\"r\",\"ty";
        OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap()
            .write_all(fragment)
            .unwrap();

        let writer = JsonlWriter::append(&path).unwrap();
        let torn = writer.repaired().cloned().expect("the torn line was found");
        assert_eq!(torn.bytes, fragment.len());
        assert_eq!(torn.kept_in, dir.path().join("events.jsonl.torn"));
        let kept = std::fs::read(&torn.kept_in).unwrap();
        assert_eq!(&kept[..fragment.len()], fragment, "kept, not dropped");
        let stream = EventStream::new("r", 1);
        stream.add_sink(writer);
        stream.emit(log_event(2));
        drop(stream);
        let log = read_log(&path).unwrap();
        assert!(log.bad_lines.is_empty(), "{:?}", log.bad_lines);
        assert_eq!(log.events.iter().map(|e| e.seq).collect::<Vec<_>>(), [1, 2]);
        // A whole log is left alone.
        assert!(JsonlWriter::append(&path).unwrap().repaired().is_none());
    }

    #[test]
    fn a_failed_write_is_reported_once_and_leaves_whole_lines() {
        // /dev/full fails every write with ENOSPC, like a full disk.
        if !Path::new("/dev/full").exists() {
            return;
        }
        let file = OpenOptions::new().append(true).open("/dev/full").unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        let mut writer = JsonlWriter {
            path: PathBuf::from("/dev/full"),
            file,
            len: 0,
            failed: false,
            on_failure: None,
            repaired: None,
        }
        .on_failure(move |e| tx.send(e).unwrap());
        for i in 0..2 {
            let event = Event {
                seq: i + 1,
                ts_ms: 0,
                run_id: "r".into(),
                kind: log_event(i as usize),
            };
            writer.emit(&event);
        }
        let errors: Vec<String> = rx.try_iter().collect();
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert!(errors[0].contains("No space left"), "{}", errors[0]);
    }
}

/// Fuzzing the log reader and the torn-tail repair.
#[cfg(test)]
mod fuzz {
    use super::*;
    use crate::{EventKind, LogLevel, LogMessage};
    use proptest::prelude::*;

    fn event(seq: u64, message: String) -> Event {
        Event {
            seq,
            ts_ms: seq,
            run_id: "r".into(),
            kind: EventKind::Log(LogMessage {
                level: LogLevel::Info,
                message,
            }),
        }
    }

    proptest! {
        /// Damaged lines between good ones cost only themselves.
        #[test]
        fn good_lines_survive_any_damage_around_them(
            messages in proptest::collection::vec(any::<String>(), 0..20),
            garbage in proptest::collection::vec(proptest::collection::vec(any::<u8>().prop_map(|b| if b == b'\n' { b' ' } else { b }), 1..200), 0..20),
        ) {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("events.jsonl");
            let mut bytes = Vec::new();
            let mut expected = Vec::new();
            for (i, m) in messages.iter().enumerate() {
                let e = event(i as u64 + 1, m.clone());
                bytes.extend(serde_json::to_vec(&e).unwrap());
                bytes.push(b'\n');
                expected.push(e);
                if let Some(g) = garbage.get(i) {
                    bytes.extend(g);
                    bytes.push(b'\n');
                }
            }
            std::fs::write(&path, &bytes).unwrap();
            let log = read_log(&path).unwrap();
            prop_assert_eq!(log.events, expected);
        }

        /// Whatever a crash left at the end, reopening leaves a log that
        /// ends at a whole line, and the next event reads back.
        #[test]
        fn any_tail_is_repaired(tail in proptest::collection::vec(any::<u8>(), 0..300)) {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("events.jsonl");
            let mut bytes = serde_json::to_vec(&event(1, "first".into())).unwrap();
            bytes.push(b'\n');
            bytes.extend(&tail);
            std::fs::write(&path, &bytes).unwrap();
            let mut writer = JsonlWriter::append(&path).unwrap();
            writer.emit(&event(2, "after".into()));
            drop(writer);
            let text = std::fs::read(&path).unwrap();
            prop_assert_eq!(text.last(), Some(&b'\n'));
            let log = read_log(&path).unwrap();
            prop_assert_eq!(log.events.first().map(|e| e.seq), Some(1));
            prop_assert_eq!(log.events.last().map(|e| e.seq), Some(2));
        }
    }
}
