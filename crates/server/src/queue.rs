//! The run queue: runs posted while another trains wait here, in order, in
//! a file beside the runs (`runs/.queue.json`, rewritten atomically), so a
//! restarted server picks up where it stopped. Each device trains one run
//! at a time (the CPU one, each free GPU one, see [`crate::slots`]): a run
//! starts as soon as a device it may use is free, in queue order
//! (the scheduler's `dispatch`).

use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// A run waiting for its turn.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Queued {
    /// The id it will train under.
    pub run_id: String,
    /// Its configuration, validated when it was queued.
    pub config: mnist_train::TrainConfig,
    /// When it was queued, Unix time in milliseconds.
    pub queued_ms: u64,
    /// The sweep it belongs to, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sweep: Option<String>,
    /// A new run, a resumption of an earlier one, or a fork of one.
    #[serde(default, skip_serializing_if = "Origin::is_new")]
    pub origin: Origin,
}

/// What a queued run starts from.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Origin {
    /// Nothing: a fresh model.
    #[default]
    New,
    /// Its own newest checkpoint (`train --resume`): an interrupted,
    /// stopped or failed run continues its log and step count.
    Resume,
    /// Another run's checkpoint, with a configuration of its own.
    Fork(mnist_train::ForkFrom),
}

impl Origin {
    fn is_new(&self) -> bool {
        *self == Origin::New
    }
}

/// A queued run read back from the file, its configuration checked again
/// (a newer binary may have narrowed a range): one that no longer holds is
/// dropped with a warning naming it and why, not left to block the queue.
fn checked(item: serde_json::Value) -> Option<Queued> {
    let id = item["run_id"].as_str().unwrap_or("?").to_string();
    let config = mnist_train::TrainConfig::from_json(&item["config"]);
    let why = match (config, serde_json::from_value::<Queued>(item)) {
        (Ok(config), Ok(queued)) => return Some(Queued { config, ..queued }),
        (Err(errors), _) => errors
            .iter()
            .map(|e| e.to_string())
            .collect::<Vec<_>>()
            .join("; "),
        (_, Err(e)) => e.to_string(),
    };
    tracing::warn!("queued run {id} dropped: its entry no longer holds: {why}");
    None
}

/// The queue and its file.
#[derive(Debug)]
pub struct Queue {
    path: PathBuf,
    items: Vec<Queued>,
}

/// Why the queue file could not be written.
#[derive(Debug, thiserror::Error)]
#[error("cannot write the run queue {path}: {source}")]
pub struct QueueWriteError {
    path: String,
    source: std::io::Error,
}

impl Queue {
    /// The queue kept in `runs_dir/.queue.json` (empty if there is none; a
    /// file that cannot be read is set aside as `.queue.json.bad`, never
    /// lost).
    pub fn load(runs_dir: &Path) -> Self {
        let path = runs_dir.join(".queue.json");
        let items = match std::fs::read(&path) {
            Err(_) => Vec::new(),
            Ok(bytes) => serde_json::from_slice::<Vec<serde_json::Value>>(&bytes)
                .map(|items| items.into_iter().filter_map(checked).collect())
                .unwrap_or_else(|e| {
                    tracing::warn!("{}: {e}; kept as .queue.json.bad", path.display());
                    let _ = std::fs::rename(&path, path.with_extension("json.bad"));
                    Vec::new()
                }),
        };
        Self { path, items }
    }

    fn save(&self) -> Result<(), QueueWriteError> {
        let err = |source| QueueWriteError {
            path: self.path.display().to_string(),
            source,
        };
        if let Some(dir) = self.path.parent() {
            std::fs::create_dir_all(dir).map_err(err)?;
        }
        let bytes = serde_json::to_vec_pretty(&self.items).expect("serialises");
        crate::write_atomic(&self.path, &bytes).map_err(err)
    }

    /// Adds `item` at the end; its position (1 is next).
    pub fn push(&mut self, item: Queued) -> Result<usize, QueueWriteError> {
        self.items.push(item);
        if let Err(e) = self.save() {
            self.items.pop();
            return Err(e);
        }
        Ok(self.items.len())
    }

    /// Takes `run_id` off the queue (it starts now).
    pub fn take(&mut self, run_id: &str) -> Option<Queued> {
        let at = self.items.iter().position(|q| q.run_id == run_id)?;
        let item = self.items.remove(at);
        if let Err(e) = self.save() {
            tracing::error!("{e}");
        }
        Some(item)
    }

    /// The queued runs, next first.
    pub fn items(&self) -> &[Queued] {
        &self.items
    }

    /// Where `run_id` waits (1 is next).
    pub fn position(&self, run_id: &str) -> Option<usize> {
        self.items
            .iter()
            .position(|q| q.run_id == run_id)
            .map(|p| p + 1)
    }

    /// Whether `run_id` waits here.
    pub fn contains(&self, run_id: &str) -> bool {
        self.items.iter().any(|q| q.run_id == run_id)
    }

    pub(crate) fn remove(&mut self, run_id: &str) -> Result<Option<Queued>, QueueWriteError> {
        let Some(at) = self.items.iter().position(|q| q.run_id == run_id) else {
            return Ok(None);
        };
        let item = self.items.remove(at);
        self.save()?;
        Ok(Some(item))
    }

    pub(crate) fn move_to(
        &mut self,
        run_id: &str,
        position: usize,
    ) -> Result<bool, QueueWriteError> {
        let Some(at) = self.items.iter().position(|q| q.run_id == run_id) else {
            return Ok(false);
        };
        let item = self.items.remove(at);
        let to = position.saturating_sub(1).min(self.items.len());
        self.items.insert(to, item);
        self.save()?;
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(id: &str) -> Queued {
        Queued {
            run_id: id.into(),
            config: mnist_train::TrainConfig::default(),
            queued_ms: 0,
            sweep: None,
            origin: Origin::New,
        }
    }

    #[test]
    fn the_queue_keeps_its_order_in_its_file() {
        let dir = tempfile::tempdir().unwrap();
        let mut q = Queue::load(dir.path());
        for id in ["a", "b", "c"] {
            q.push(item(id)).unwrap();
        }
        assert!(q.move_to("c", 1).unwrap());
        assert_eq!(q.remove("b").unwrap().unwrap().run_id, "b");
        let again = Queue::load(dir.path());
        let ids: Vec<_> = again.items().iter().map(|q| q.run_id.as_str()).collect();
        assert_eq!(ids, ["c", "a"], "a restarted server reads the same queue");
        std::fs::write(dir.path().join(".queue.json"), "{not json").unwrap();
        assert!(Queue::load(dir.path()).items().is_empty());
        assert!(
            dir.path().join(".queue.json.bad").is_file(),
            "a bad file is set aside, not lost"
        );
    }

    #[test]
    fn an_entry_whose_configuration_no_longer_holds_is_dropped_not_the_queue() {
        let dir = tempfile::tempdir().unwrap();
        let mut q = Queue::load(dir.path());
        q.push(item("good")).unwrap();
        let mut entries: Vec<serde_json::Value> =
            serde_json::from_slice(&std::fs::read(dir.path().join(".queue.json")).unwrap())
                .unwrap();
        let mut bad = entries[0].clone();
        bad["run_id"] = "bad".into();
        bad["config"]["batch_size"] = 0.into();
        entries.insert(0, bad);
        std::fs::write(
            dir.path().join(".queue.json"),
            serde_json::to_vec(&entries).unwrap(),
        )
        .unwrap();
        let again = Queue::load(dir.path());
        let ids: Vec<_> = again.items().iter().map(|q| q.run_id.as_str()).collect();
        assert_eq!(ids, ["good"]);
        assert_eq!(again.position("good"), Some(1));
    }
}
