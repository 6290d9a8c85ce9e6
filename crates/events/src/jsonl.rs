//! The JSON-lines run log: `runs/<run-id>/events.jsonl`, one [`Event`] a line.

use crate::{Event, EventSink};
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};

/// Appends events to a JSONL file. Each event is flushed as it is written so
/// that `tail -f` and a crash both see every event up to the last one.
pub struct JsonlWriter {
    path: PathBuf,
    out: BufWriter<File>,
    failed: bool,
}

impl JsonlWriter {
    /// Opens (creating directories as needed) `path` for appending.
    pub fn append(path: impl AsRef<Path>) -> std::io::Result<Self> {
        let path = path.as_ref().to_path_buf();
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let file = OpenOptions::new().create(true).append(true).open(&path)?;
        Ok(Self {
            path,
            out: BufWriter::new(file),
            failed: false,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl EventSink for JsonlWriter {
    fn emit(&mut self, event: &Event) {
        if self.failed {
            return;
        }
        let result = serde_json::to_writer(&mut self.out, event)
            .map_err(std::io::Error::from)
            .and_then(|_| self.out.write_all(b"\n"))
            .and_then(|_| self.out.flush());
        if let Err(err) = result {
            // A full disk must not kill training; say so once and stop writing.
            eprintln!(
                "warning: cannot write run log {}: {err}; events are no longer logged",
                self.path.display()
            );
            self.failed = true;
        }
    }
}

/// Reads every event of a JSONL log. A torn last line (the process died while
/// writing it) is skipped; any other bad line is an error naming its number.
pub fn read_events(path: impl AsRef<Path>) -> std::io::Result<Vec<Event>> {
    let path = path.as_ref();
    let reader = BufReader::new(File::open(path)?);
    let lines: Vec<String> = reader.lines().collect::<Result<_, _>>()?;
    let mut events = Vec::with_capacity(lines.len());
    for (i, line) in lines.iter().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        match serde_json::from_str::<Event>(line) {
            Ok(event) => events.push(event),
            Err(_) if i + 1 == lines.len() => break,
            Err(err) => {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    format!("{}: line {}: {err}", path.display(), i + 1),
                ))
            }
        }
    }
    Ok(events)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{EventKind, EventStream, LogLevel, LogMessage};

    #[test]
    fn writes_and_reads_back_skipping_a_torn_tail() {
        let dir = std::env::temp_dir().join(format!("mnist-events-{}", std::process::id()));
        let path = dir.join("events.jsonl");
        let _ = std::fs::remove_file(&path);
        let stream = EventStream::new("r", 0);
        stream.add_sink(JsonlWriter::append(&path).unwrap());
        for i in 0..3 {
            stream.emit(EventKind::Log(LogMessage {
                level: LogLevel::Info,
                message: format!("m{i}"),
            }));
        }
        drop(stream);
        std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap()
            .write_all(b"{\"seq\":4,\"ts_")
            .unwrap();
        let events = read_events(&path).unwrap();
        assert_eq!(
            events.iter().map(|e| e.seq).collect::<Vec<_>>(),
            vec![1, 2, 3]
        );
        std::fs::remove_dir_all(dir).unwrap();
    }
}
