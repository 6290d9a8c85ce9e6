//! The run index: one compact row per run of the runs folder (its summary,
//! configuration, results, the user's name and tags, what it holds on disk)
//! and its series downsampled once, so that listing, filtering, sorting and
//! comparing thousands of runs never reads their logs.
//!
//! It is only a cache. The JSONL logs stay the source of truth; each row
//! remembers the log's (and `meta.json`'s) length and modification time it
//! was folded from, and a row whose log changed, or a log without a row, is
//! folded again. Deleting `runs/.index` loses nothing: the next `serve` (or
//! `mnist-monitor index`) rebuilds it, showing its progress.
//!
//! Storage: a file per run, `runs/.index/runs/<id>.json` (the row) and
//! `runs/.index/series/<id>.json` (the series answer for
//! [`INDEX_POINTS`] points). Each is written to a temporary name of its
//! writer's own and renamed into place, so a reader only ever sees a whole
//! file, a `kill -9` mid-write leaves a stray temporary file and the old
//! entry, and several writers (shells, Slurm tasks on a shared filesystem,
//! two servers) never share a file that could tear. A single database file
//! (SQLite) would need its locks to work, which on NFS they do not.

pub use crate::protocol::Progress;
use crate::protocol::{Disk, RunMeta, RunSummary};
use crate::series::DEFAULT_SMOOTHING;
use crate::state::RunState;
use crate::write_atomic;
use mnist_events::LockExt;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::UNIX_EPOCH;

/// The index's folder inside the runs folder (hidden: not a run).
pub const INDEX_DIR: &str = ".index";

/// The resolution of the series kept per run: what the page overlays when
/// it compares runs (min/max buckets, no spike hidden).
pub const INDEX_POINTS: usize = 600;

/// Bumped when a row's meaning changes: rows of another version are folded
/// again.
const VERSION: u32 = 1;

/// What a row was folded from: the log's and `meta.json`'s length and
/// modification time (nanoseconds since the epoch), and the checkpoints
/// folder's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Stamp {
    /// The log's length in bytes.
    pub log_len: u64,
    /// The log's modification time.
    pub log_mtime_ns: u64,
    /// `meta.json`'s length and modification time (0 when absent).
    pub meta: (u64, u64),
    /// The run's checkpoints folder's modification time (0 when absent).
    pub checkpoints_mtime_ns: u64,
}

fn mtime_ns(meta: &std::fs::Metadata) -> u64 {
    meta.modified()
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_nanos() as u64)
}

/// Where a run's files are: its log and meta under the runs folder, its
/// checkpoints under the checkpoints folder.
#[derive(Debug, Clone)]
pub struct Folders {
    /// The runs folder (`runs/`).
    pub runs: PathBuf,
    /// The checkpoints folder (`checkpoints/`).
    pub checkpoints: PathBuf,
}

impl Folders {
    /// `runs/<id>/events.jsonl`.
    pub fn log(&self, id: &str) -> PathBuf {
        mnist_events::log_path(&self.runs, id)
    }

    /// The stamp of run `id` now, or None when it has no log.
    pub fn stamp(&self, id: &str) -> Option<Stamp> {
        let log = std::fs::metadata(self.log(id)).ok()?;
        if !log.is_file() {
            return None;
        }
        let meta = std::fs::metadata(self.runs.join(id).join("meta.json"))
            .map_or((0, 0), |m| (m.len(), mtime_ns(&m)));
        let checkpoints_mtime_ns =
            std::fs::metadata(self.checkpoints.join(id)).map_or(0, |m| mtime_ns(&m));
        Some(Stamp {
            log_len: log.len(),
            log_mtime_ns: mtime_ns(&log),
            meta,
            checkpoints_mtime_ns,
        })
    }

    fn rows_dir(&self) -> PathBuf {
        self.runs.join(INDEX_DIR).join("runs")
    }

    fn series_dir(&self) -> PathBuf {
        self.runs.join(INDEX_DIR).join("series")
    }

    /// The run ids with a log in the runs folder (one `read_dir`, no `stat`:
    /// a folder without a log is weeded out when its stamp is taken).
    pub fn run_ids(&self) -> Vec<String> {
        std::fs::read_dir(&self.runs)
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| e.file_name().into_string().ok())
            .filter(|id| crate::valid_run_id(id))
            .collect()
    }
}

fn dir_bytes(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| match e.metadata() {
            Ok(m) if m.is_dir() => dir_bytes(&e.path()),
            Ok(m) => m.len(),
            Err(_) => 0,
        })
        .sum()
}

impl Disk {
    /// The bytes of the files under `dir`.
    pub fn bytes_of(dir: &Path) -> u64 {
        dir_bytes(dir)
    }

    /// Measures run `id`'s folders.
    pub fn of(folders: &Folders, id: &str) -> Self {
        let ck = folders.checkpoints.join(id);
        let mut checkpoint_epochs: Vec<usize> = std::fs::read_dir(&ck)
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| {
                let name = e.file_name().into_string().ok()?;
                name.strip_prefix("epoch-")?.parse().ok()
            })
            .collect();
        checkpoint_epochs.sort_unstable();
        Disk {
            run_bytes: dir_bytes(&folders.runs.join(id)),
            checkpoint_bytes: dir_bytes(&ck),
            checkpoint_epochs,
        }
    }
}

/// One run's row: its summary (with the user's meta and its disk use) and
/// the stamp it was folded from.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Row {
    /// The row's format ([`VERSION`]).
    pub version: u32,
    /// What the row was folded from.
    pub stamp: Stamp,
    /// The run's summary, as the runs list shows it.
    pub summary: RunSummary,
}

impl Row {
    /// The row of a folded run, with the meta and disk use it has now.
    pub fn of(state: &RunState, stamp: Stamp, meta: RunMeta, disk: Disk) -> Self {
        let mut summary = state.summary();
        summary.attach(meta, disk);
        Row {
            version: VERSION,
            stamp,
            summary,
        }
    }
}

/// Folds a log straight from disk, line by line, without keeping its
/// events (indexing a run needs its state, not its history).
pub fn fold_log(id: &str, path: &Path) -> std::io::Result<RunState> {
    use std::io::BufRead;
    let reader = std::io::BufReader::with_capacity(256 * 1024, std::fs::File::open(path)?);
    let mut state = RunState::new(id, false);
    for line in reader.split(b'\n') {
        let line = line?;
        // The index keeps neither the machine's samples nor the sample
        // predictions: a quarter of a log's bytes left unparsed.
        if mnist_events::line_is(&line, "hardware") || mnist_events::line_is(&line, "samples") {
            continue;
        }
        if let Ok(event) = mnist_events::parse_line(&line) {
            state.fold(&std::sync::Arc::new(event));
        }
    }
    Ok(state)
}

/// Writes run `state`'s entry (its series, then its row: the row is what
/// readers trust, so it goes last) and returns the row.
pub fn write_entry(folders: &Folders, state: &RunState, stamp: Stamp) -> std::io::Result<Row> {
    let id = state.run_id();
    let meta = RunMeta::load(&folders.runs, id);
    let row = Row::of(state, stamp, meta, Disk::of(folders, id));
    let series = state.series(0, u64::MAX, INDEX_POINTS, DEFAULT_SMOOTHING);
    std::fs::create_dir_all(folders.series_dir())?;
    std::fs::create_dir_all(folders.rows_dir())?;
    write_atomic(
        &folders.series_dir().join(format!("{id}.json")),
        compact_json(&serde_json::to_value(series).expect("series serialise")).as_bytes(),
    )?;
    write_atomic(
        &folders.rows_dir().join(format!("{id}.json")),
        &serde_json::to_vec(&row).expect("rows serialise"),
    )?;
    Ok(row)
}

/// `v` as JSON with every fraction at `f32` precision (7 digits, what a
/// chart can show), integers (steps, times) exact: the stored series take
/// half the bytes.
pub fn compact_json(v: &serde_json::Value) -> String {
    fn write(v: &serde_json::Value, out: &mut String) {
        use serde_json::Value;
        use std::fmt::Write;
        match v {
            Value::Number(n) => match n.as_f64() {
                Some(x) if n.is_f64() && x.fract() != 0.0 && x.is_finite() => {
                    let _ = write!(out, "{}", x as f32);
                }
                _ => {
                    let _ = write!(out, "{n}");
                }
            },
            Value::Array(a) => {
                out.push('[');
                for (i, x) in a.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    write(x, out);
                }
                out.push(']');
            }
            Value::Object(m) => {
                out.push('{');
                for (i, (k, x)) in m.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    out.push_str(&serde_json::to_string(k).expect("a key serialises"));
                    out.push(':');
                    write(x, out);
                }
                out.push('}');
            }
            other => out.push_str(&other.to_string()),
        }
    }
    let mut out = String::new();
    write(v, &mut out);
    out
}

/// Folds run `id`'s log and writes its entry; None when it has no log.
pub fn index_run(folders: &Folders, id: &str) -> std::io::Result<Option<Row>> {
    // The stamp before reading: a log that grows meanwhile has a newer one
    // and is folded again on the next look.
    let Some(stamp) = folders.stamp(id) else {
        return Ok(None);
    };
    let state = fold_log(id, &folders.log(id))?;
    write_entry(folders, &state, stamp).map(Some)
}

/// The stored series answer of run `id` (see [`INDEX_POINTS`]), as bytes.
pub fn read_series(folders: &Folders, id: &str) -> Option<Vec<u8>> {
    std::fs::read(folders.series_dir().join(format!("{id}.json"))).ok()
}

/// Removes run `id`'s entry (it left the runs folder).
pub fn remove_entry(folders: &Folders, id: &str) {
    let _ = std::fs::remove_file(folders.rows_dir().join(format!("{id}.json")));
    let _ = std::fs::remove_file(folders.series_dir().join(format!("{id}.json")));
}

/// The rows in memory, by run id: what `GET /api/runs` filters, sorts and
/// pages.
pub struct RunIndex {
    folders: Folders,
    rows: Mutex<HashMap<String, Row>>,
    /// Runs still to fold while the index is (re)built: (done, total).
    progress: Mutex<(usize, usize)>,
    /// Set once the first [`RunIndex::reconcile`] is over: until then a run
    /// without a row is one the index has still to read, not a new one.
    built: std::sync::atomic::AtomicBool,
}

impl RunIndex {
    /// Opens the index of `folders`: every row file read (a row that does
    /// not parse, or of another version, is left out and folded again on
    /// the first [`RunIndex::reconcile`]).
    pub fn open(folders: Folders) -> Self {
        let rows_dir = folders.rows_dir();
        let mut rows = HashMap::new();
        for entry in std::fs::read_dir(&rows_dir).into_iter().flatten().flatten() {
            let Ok(name) = entry.file_name().into_string() else {
                continue;
            };
            if name.starts_with('.') {
                // A writer's temporary file: one killed mid-write left it.
                if stale_tmp(&entry) {
                    let _ = std::fs::remove_file(entry.path());
                }
                continue;
            }
            let Some(id) = name.strip_suffix(".json") else {
                continue;
            };
            let Ok(bytes) = std::fs::read(entry.path()) else {
                continue;
            };
            if let Ok(row) = serde_json::from_slice::<Row>(&bytes) {
                if row.version == VERSION && row.summary.run_id == id {
                    rows.insert(id.to_string(), row);
                }
            }
        }
        RunIndex {
            folders,
            rows: Mutex::new(rows),
            progress: Mutex::new((0, 0)),
            built: std::sync::atomic::AtomicBool::new(false),
        }
    }

    /// The folders indexed.
    pub fn folders(&self) -> &Folders {
        &self.folders
    }

    /// How many rows the index holds.
    pub fn len(&self) -> usize {
        self.rows.locked().len()
    }

    /// Whether the index holds no row.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The row of run `id`, if indexed.
    pub fn row(&self, id: &str) -> Option<Row> {
        self.rows.locked().get(id).cloned()
    }

    /// Reads every row under the lock (the listing filters and sorts them).
    pub fn with_rows<T>(&self, read: impl FnOnce(&HashMap<String, Row>) -> T) -> T {
        read(&self.rows.locked())
    }

    /// Puts `row` in (a run this process folded itself).
    pub fn put(&self, row: Row) {
        self.rows.locked().insert(row.summary.run_id.clone(), row);
    }

    /// The pass under way, if any.
    pub fn progress(&self) -> Option<Progress> {
        let (done, total) = *self.progress.locked();
        (done < total).then_some(Progress { done, total })
    }

    /// Brings the rows in line with the runs folder: every run whose stamp
    /// differs from its row's (or without a row) is folded from its log and
    /// its entry written, unless `skip` says another part of the server
    /// folds it (a run it trains or follows); rows of runs that left the
    /// folder are dropped. Returns the ids that changed. `on_progress` is
    /// told after each run folded.
    pub fn reconcile(
        &self,
        skip: &(dyn Fn(&str) -> bool + Sync),
        on_progress: &(dyn Fn(Progress) + Sync),
    ) -> Vec<String> {
        // Stamps and `skip` outside the rows' lock: `skip` asks other locks.
        let stamps: Vec<(String, Stamp)> = self
            .folders
            .run_ids()
            .into_iter()
            .filter_map(|id| self.folders.stamp(&id).map(|s| (id, s)))
            .collect();
        let present: std::collections::HashSet<&str> =
            stamps.iter().map(|(id, _)| id.as_str()).collect();
        let candidates: Vec<&(String, Stamp)> = {
            let rows = self.rows.locked();
            stamps
                .iter()
                .filter(|(id, stamp)| rows.get(id).is_none_or(|r| r.stamp != *stamp))
                .collect()
        };
        let stale: Vec<String> = candidates
            .into_iter()
            .filter(|(id, _)| !skip(id))
            .map(|(id, _)| id.clone())
            .collect();
        let gone: Vec<String> = {
            let rows = self.rows.locked();
            rows.keys()
                .filter(|id| !present.contains(id.as_str()))
                .cloned()
                .collect()
        };
        let mut changed: Vec<String> = gone.into_iter().filter(|id| self.remove(id)).collect();
        let total = stale.len();
        *self.progress.locked() = (0, total);
        // Folding is parsing: one log per core.
        let next = std::sync::atomic::AtomicUsize::new(0);
        let workers = std::thread::available_parallelism()
            .map_or(2, |n| n.get())
            .min(8);
        let folded = Mutex::new(Vec::new());
        std::thread::scope(|scope| {
            for _ in 0..workers.min(total.max(1)) {
                scope.spawn(|| loop {
                    let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    let Some(id) = stale.get(i) else { break };
                    match index_run(&self.folders, id) {
                        Ok(Some(row)) => {
                            self.put(row);
                            folded.locked().push(id.clone());
                        }
                        Ok(None) => {}
                        Err(e) => tracing::warn!("cannot index run {id}: {e}"),
                    }
                    let done = {
                        let mut p = self.progress.locked();
                        p.0 += 1;
                        p.0
                    };
                    on_progress(Progress { done, total });
                });
            }
        });
        changed.extend(folded.into_inner().unwrap_or_default());
        self.built.store(true, std::sync::atomic::Ordering::SeqCst);
        changed
    }

    /// Whether the first [`RunIndex::reconcile`] is over.
    pub fn is_built(&self) -> bool {
        self.built.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Drops run `id`'s row and entry files; true when it had a row.
    pub fn remove(&self, id: &str) -> bool {
        let had = self.rows.locked().remove(id).is_some();
        remove_entry(&self.folders, id);
        had
    }

    /// Writes the entry of a run this process holds folded (a run it
    /// trained or followed, at an evaluation or its end) and keeps its row.
    pub fn record(&self, state: &RunState) {
        if let Some(stamp) = self.folders.stamp(state.run_id()) {
            self.record_with(state, stamp);
        }
    }

    /// Like [`RunIndex::record`], with the stamp of the log as it was read.
    pub fn record_with(&self, state: &RunState, stamp: Stamp) {
        let id = state.run_id();
        match write_entry(&self.folders, state, stamp) {
            Ok(row) => self.put(row),
            Err(e) => tracing::warn!("cannot index run {id}: {e}"),
        }
    }

    /// The row of run `id` with the user's meta read again (after a PATCH).
    pub fn refresh_meta(&self, id: &str) {
        let meta = RunMeta::load(&self.folders.runs, id);
        let stamp = self.folders.stamp(id);
        let mut rows = self.rows.locked();
        if let Some(row) = rows.get_mut(id) {
            let disk = row.summary.disk.clone();
            row.summary.attach(meta, disk);
            if let Some(stamp) = stamp {
                // Only meta changed: the row still stands for this log.
                if stamp.log_len == row.stamp.log_len
                    && stamp.log_mtime_ns == row.stamp.log_mtime_ns
                {
                    row.stamp = stamp;
                    let row = row.clone();
                    drop(rows);
                    let path = self.folders.rows_dir().join(format!("{id}.json"));
                    let _ = write_atomic(&path, &serde_json::to_vec(&row).expect("serialises"));
                }
            }
        }
    }
}

/// A temporary file older than a minute: its writer is gone.
fn stale_tmp(entry: &std::fs::DirEntry) -> bool {
    entry
        .metadata()
        .ok()
        .and_then(|m| m.modified().ok())
        .and_then(|t| t.elapsed().ok())
        .is_some_and(|age| age.as_secs() > 60)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn line(seq: u64, kind: serde_json::Value) -> String {
        let mut e = kind;
        e["seq"] = json!(seq);
        e["ts_ms"] = json!(1_000 + seq);
        e["run_id"] = json!("x");
        e.to_string() + "\n"
    }

    /// A run's log: started, `steps` batches, finished when `end`.
    fn log(lr: f64, steps: u64, end: bool) -> String {
        let mut out = line(
            1,
            json!({"type": "run_started", "config": {"lr": lr, "kernels": [4, 8, 8, 8]},
                "backend": "cpu", "device": "cpu",
                "model": {"input_shape": [1, 28, 28], "layers": [], "total_params": 1},
                "train_size": 1, "val_size": 0, "test_size": 1, "batches_per_epoch": steps}),
        );
        for step in 1..=steps {
            out += &line(
                1 + step,
                json!({"type": "batch", "epoch": 1, "batch": step, "batches": steps, "step": step,
                    "size": 8, "loss": 1.0 / step as f64, "accuracy": 0.5, "f1_macro": 0.5,
                    "epoch_loss": 1.0, "epoch_accuracy": 0.5, "epoch_f1_macro": 0.5, "lr": lr,
                    "images_per_sec": 100.0, "elapsed_s": 0.0}),
            );
        }
        if end {
            out += &line(
                steps + 2,
                json!({"type": "run_finished", "status": "completed", "epochs_completed": 1,
                    "steps": steps, "train_seconds": 1.0}),
            );
        }
        out
    }

    fn folders(dir: &Path) -> Folders {
        Folders {
            runs: dir.join("runs"),
            checkpoints: dir.join("checkpoints"),
        }
    }

    fn write_run(f: &Folders, id: &str, text: &str) {
        std::fs::create_dir_all(f.runs.join(id)).unwrap();
        std::fs::write(f.log(id), text).unwrap();
    }

    fn build(f: &Folders) -> (RunIndex, Vec<String>) {
        let index = RunIndex::open(f.clone());
        let changed = index.reconcile(&|_| false, &|_| {});
        (index, changed)
    }

    #[test]
    fn the_index_is_a_cache_deleting_it_loses_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let f = folders(dir.path());
        for i in 0..5 {
            write_run(
                &f,
                &format!("run-{i}"),
                &log(1e-3 * (i + 1) as f64, 50, i != 3),
            );
        }
        let (index, changed) = build(&f);
        assert_eq!(changed.len(), 5);
        let row = index.row("run-3").unwrap();
        assert_eq!(row.summary.status, crate::protocol::Status::Interrupted);
        assert_eq!(row.summary.steps, 50);
        assert!(row.summary.disk.run_bytes > 0);
        assert!(read_series(&f, "run-2").is_some());

        // Opened again: every row from its file, nothing read from the logs.
        let (again, changed) = build(&f);
        assert!(changed.is_empty(), "{changed:?}");
        assert_eq!(again.len(), 5);
        assert_eq!(
            again.row("run-1").unwrap().summary.config["lr"],
            json!(2e-3)
        );

        std::fs::remove_dir_all(f.runs.join(INDEX_DIR)).unwrap();
        let (rebuilt, changed) = build(&f);
        assert_eq!((rebuilt.len(), changed.len()), (5, 5));
        for i in 0..5 {
            let id = format!("run-{i}");
            let (a, b) = (index.row(&id).unwrap(), rebuilt.row(&id).unwrap());
            assert_eq!(
                serde_json::to_value(&a.summary).unwrap(),
                serde_json::to_value(&b.summary).unwrap()
            );
        }
    }

    #[test]
    fn a_changed_log_or_meta_is_read_again_and_a_removed_run_leaves() {
        let dir = tempfile::tempdir().unwrap();
        let f = folders(dir.path());
        write_run(&f, "a", &log(1e-3, 10, false));
        write_run(&f, "b", &log(1e-3, 10, true));
        let (index, _) = build(&f);
        assert_eq!(index.row("a").unwrap().summary.steps, 10);
        // Appended after indexing: the stamp differs, the log is read again.
        std::fs::write(f.log("a"), log(1e-3, 30, true)).unwrap();
        std::fs::write(
            f.runs.join("b").join("meta.json"),
            r#"{"name": "best", "tags": ["keep", "sweep-1"]}"#,
        )
        .unwrap();
        std::fs::remove_dir_all(f.runs.join("b")).unwrap();
        write_run(&f, "c", &log(1e-3, 5, true));
        std::fs::write(
            f.runs.join("c").join("meta.json"),
            r#"{"tags": ["keep", "sweep-1"]}"#,
        )
        .unwrap();
        let changed = index.reconcile(&|_| false, &|_| {});
        let mut changed = changed;
        changed.sort();
        assert_eq!(changed, ["a", "b", "c"]);
        let a = index.row("a").unwrap().summary;
        assert_eq!(
            (a.steps, a.status),
            (30, crate::protocol::Status::Completed)
        );
        assert!(index.row("b").is_none(), "a removed run leaves the index");
        assert!(!f.rows_dir().join("b.json").exists());
        let c = index.row("c").unwrap().summary;
        assert_eq!(c.sweep.as_deref(), Some("sweep-1"));
        assert_eq!(c.meta.tags, ["keep", "sweep-1"]);
    }

    #[test]
    fn a_torn_or_foreign_row_file_is_folded_again_and_stray_temporaries_go() {
        let dir = tempfile::tempdir().unwrap();
        let f = folders(dir.path());
        write_run(&f, "a", &log(1e-3, 10, true));
        write_run(&f, "b", &log(1e-3, 10, true));
        build(&f);
        // What a writer killed mid-write, or a damaged disk, leaves.
        std::fs::write(f.rows_dir().join("a.json"), b"{\"version\": 1, \"sta").unwrap();
        let tmp = f.rows_dir().join(".b.json.999-0.tmp");
        std::fs::write(&tmp, b"{").unwrap();
        let old = std::time::SystemTime::now() - std::time::Duration::from_secs(3600);
        std::fs::File::options()
            .write(true)
            .open(&tmp)
            .unwrap()
            .set_modified(old)
            .unwrap();
        let (index, changed) = build(&f);
        assert_eq!(changed, ["a"]);
        assert_eq!(index.len(), 2);
        assert!(!tmp.exists(), "a stale temporary file is cleaned up");
    }

    #[test]
    fn compact_series_keep_integers_exact_and_fractions_to_f32() {
        let v = json!({"step": [1, 2], "ts_ms": [1_796_232_816_584.0_f64], "loss": [0.1_f64, 1.0 / 3.0, null]});
        let text = compact_json(&v);
        let back: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(back["ts_ms"][0].as_f64(), Some(1_796_232_816_584.0));
        assert_eq!(back["step"], json!([1, 2]));
        assert_eq!(back["loss"][0].as_f64(), Some(0.1));
        assert!((back["loss"][1].as_f64().unwrap() - 1.0 / 3.0).abs() < 1e-7);
        assert!(back["loss"][2].is_null());
        assert!(text.len() < serde_json::to_string(&v).unwrap().len());
    }

    #[test]
    fn writers_in_parallel_never_tear_a_row() {
        let dir = tempfile::tempdir().unwrap();
        let f = folders(dir.path());
        write_run(&f, "a", &log(1e-3, 200, true));
        std::thread::scope(|s| {
            for _ in 0..4 {
                s.spawn(|| {
                    for _ in 0..20 {
                        index_run(&f, "a").unwrap();
                    }
                });
            }
            s.spawn(|| {
                for _ in 0..200 {
                    if let Ok(bytes) = std::fs::read(f.rows_dir().join("a.json")) {
                        serde_json::from_slice::<Row>(&bytes).expect("a whole row, always");
                    }
                }
            });
        });
        let leftovers = std::fs::read_dir(f.rows_dir()).unwrap().count();
        assert_eq!(leftovers, 1, "no temporary file left behind");
    }
}
