//! Checkpoints on disk: `checkpoints/<run-id>/epoch-NNNN/` holding
//! `model.mpk`, `optim.mpk` and `state.json`, and at most one
//! `step-NNNNNNNNNN/` taken between batches (the `checkpoint` control),
//! kept until an epoch's checkpoint is newer. [`list`] names the epochs'
//! (what retention, export and the run index count); [`latest`], what a
//! resume continues from, takes the newest of either kind.
//!
//! A checkpoint directory is written under a temporary name and renamed into
//! place only once every file is complete and synced, so a run killed at any
//! moment leaves either the previous checkpoints or the new one, never half a
//! checkpoint. Directories whose name doesn't parse (temporaries) are ignored.

use crate::config::TrainConfig;
use serde::{Deserialize, Serialize};
use std::io::Write;
use std::path::{Path, PathBuf};

/// File of a checkpoint holding the model's weights (Burn's named MessagePack record).
pub const MODEL_FILE: &str = "model.mpk";
/// File of a checkpoint holding the optimiser's state (same format), so a resume continues it.
pub const OPTIM_FILE: &str = "optim.mpk";
/// File of a checkpoint holding its [`CheckpointState`] as JSON; [`list`] counts only directories that have it.
pub const STATE_FILE: &str = "state.json";

/// What the trainer needs, beyond the weights, to continue a run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CheckpointState {
    /// The run the checkpoint belongs to.
    pub run_id: String,
    /// Epochs completed when this checkpoint was written.
    pub epoch: usize,
    /// Optimiser steps completed.
    pub step: u64,
    /// The run's configuration; a resumed run uses it instead of the one it was given.
    pub config: TrainConfig,
    /// Validation accuracy after this epoch, when there is a validation set.
    pub val_accuracy: Option<f64>,
    /// The epoch of the best checkpoint so far, and its score (validation
    /// accuracy, or training accuracy without a validation set).
    pub best_epoch: usize,
    /// The score of `best_epoch`, as a fraction (0–1).
    pub best_score: f64,
    /// Training seconds spent so far, over all resumptions.
    pub train_seconds: f64,
    /// Batches of epoch `epoch + 1` already trained: 0 for an epoch's
    /// checkpoint, more for one taken between batches.
    #[serde(default)]
    pub batches_into_epoch: usize,
    /// Taken between batches (the `checkpoint` control), so kept as
    /// `step-N`, not as an epoch's.
    #[serde(default)]
    pub between_batches: bool,
    /// What early stopping had seen (a resumed run keeps counting).
    #[serde(default)]
    pub early_stop: crate::early_stop::Watch,
    /// Each layer's histogram bins (a resumed run's histograms compare
    /// with its earlier ones).
    #[serde(default)]
    pub histogram_bins: crate::layer_stats::Bins,
    /// The learning rate from `step` on, when a `set_lr` control changed
    /// it (older checkpoints: the configuration's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lr_plan: Option<crate::control::LrPlan>,
}

/// Directory name of epoch `epoch`'s checkpoint.
pub fn epoch_dir_name(epoch: usize) -> String {
    format!("epoch-{epoch:04}")
}

fn parse_epoch(name: &str) -> Option<usize> {
    name.strip_prefix("epoch-")?.parse().ok()
}

/// Directory name of a checkpoint taken between batches at `step`.
pub fn step_dir_name(step: u64) -> String {
    format!("step-{step:010}")
}

fn parse_step(name: &str) -> Option<u64> {
    name.strip_prefix("step-")?.parse().ok()
}

/// Checkpoints taken between batches, oldest first, by step.
fn list_steps(run_dir: &Path) -> std::io::Result<Vec<(u64, PathBuf)>> {
    let mut found = Vec::new();
    let entries = match std::fs::read_dir(run_dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(found),
        Err(e) => return Err(e),
    };
    for entry in entries {
        let entry = entry?;
        if let Some(step) = entry.file_name().to_str().and_then(parse_step) {
            if entry.path().join(STATE_FILE).is_file() {
                found.push((step, entry.path()));
            }
        }
    }
    found.sort();
    Ok(found)
}

/// Checkpoints of a run, oldest first.
pub fn list(run_dir: &Path) -> std::io::Result<Vec<(usize, PathBuf)>> {
    let mut found = Vec::new();
    let entries = match std::fs::read_dir(run_dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(found),
        Err(e) => return Err(e),
    };
    for entry in entries {
        let entry = entry?;
        if let Some(epoch) = entry.file_name().to_str().and_then(parse_epoch) {
            if entry.path().join(STATE_FILE).is_file() {
                found.push((epoch, entry.path()));
            }
        }
    }
    found.sort();
    Ok(found)
}

/// Why a run cannot be resumed.
#[derive(Debug, thiserror::Error)]
pub enum ResumeError {
    /// The run has no complete checkpoint (or no checkpoint directory at all).
    #[error("no checkpoint of run {id} in {} (checkpoints are written after each epoch)", .dir.display())]
    NoCheckpoint {
        /// The run id asked to resume.
        id: String,
        /// Where its checkpoints were looked for (`<checkpoints_dir>/<run-id>`).
        dir: PathBuf,
    },
    /// Listing the run's checkpoints, or reading the newest one's state, failed.
    #[error("cannot read the checkpoints in {}: {source}", .dir.display())]
    Unreadable {
        /// The run's checkpoint directory.
        dir: PathBuf,
        /// The I/O error (`InvalidData` for a malformed `state.json`).
        source: std::io::Error,
    },
}

/// The newest complete checkpoint of a run and its state: the last
/// epoch's, or one taken between batches after it.
pub fn latest(run_dir: &Path) -> std::io::Result<Option<(PathBuf, CheckpointState)>> {
    let epoch = match list(run_dir)?.pop() {
        None => None,
        Some((_, path)) => Some((read_state(&path)?, path)),
    };
    let between = match list_steps(run_dir)?.pop() {
        None => None,
        Some((_, path)) => Some((read_state(&path)?, path)),
    };
    let newest = match (epoch, between) {
        (Some(e), Some(b)) if b.0.step > e.0.step => Some(b),
        (Some(e), _) => Some(e),
        (None, b) => b,
    };
    Ok(newest.map(|(state, path)| (path, state)))
}

/// Reads the [`STATE_FILE`] of the checkpoint directory `checkpoint`; a malformed one is an `InvalidData` error naming the file.
pub fn read_state(checkpoint: &Path) -> std::io::Result<CheckpointState> {
    let text = std::fs::read_to_string(checkpoint.join(STATE_FILE))?;
    serde_json::from_str(&text).map_err(|e| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("{}: {e}", checkpoint.join(STATE_FILE).display()),
        )
    })
}

fn write_synced(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut f = std::fs::File::create(path)?;
    f.write_all(bytes)?;
    f.sync_all()
}

/// Writes a checkpoint atomically and returns its directory.
pub fn save(
    run_dir: &Path,
    model: &[u8],
    optim: &[u8],
    state: &CheckpointState,
) -> std::io::Result<PathBuf> {
    std::fs::create_dir_all(run_dir)?;
    let name = match state.between_batches {
        false => epoch_dir_name(state.epoch),
        true => step_dir_name(state.step),
    };
    let tmp = run_dir.join(format!(".{name}.tmp"));
    if tmp.exists() {
        std::fs::remove_dir_all(&tmp)?;
    }
    std::fs::create_dir(&tmp)?;
    let written = (|| {
        write_synced(&tmp.join(MODEL_FILE), model)?;
        write_synced(&tmp.join(OPTIM_FILE), optim)?;
        let state_json = serde_json::to_vec_pretty(state).map_err(std::io::Error::from)?;
        write_synced(&tmp.join(STATE_FILE), &state_json)
    })();
    if let Err(e) = written {
        // A full disk: give back what the half-written copy took, keep the
        // older checkpoints.
        let _ = std::fs::remove_dir_all(&tmp);
        return Err(e);
    }
    let target = run_dir.join(&name);
    if target.exists() {
        // Re-running an epoch after a resume: move the old one aside first so
        // the rename below never meets a non-empty directory.
        let old = run_dir.join(format!(".{name}.old"));
        let _ = std::fs::remove_dir_all(&old);
        std::fs::rename(&target, &old)?;
        std::fs::rename(&tmp, &target)?;
        std::fs::remove_dir_all(&old)?;
    } else {
        std::fs::rename(&tmp, &target)?;
    }
    if let Ok(dir) = std::fs::File::open(run_dir) {
        let _ = dir.sync_all();
    }
    Ok(target)
}

/// Deletes all checkpoints but the newest `keep` and the one of
/// `best_epoch`, and those taken between batches but the newest, unless an
/// epoch's checkpoint is newer. Returns the deleted directories.
pub fn prune(run_dir: &Path, keep: usize, best_epoch: usize) -> std::io::Result<Vec<PathBuf>> {
    let all = list(run_dir)?;
    let cut = all.len().saturating_sub(keep);
    let mut removed = Vec::new();
    for (epoch, path) in &all[..cut] {
        if *epoch != best_epoch {
            std::fs::remove_dir_all(path)?;
            removed.push(path.clone());
        }
    }
    let newest_epoch_step = match all.last() {
        Some((_, path)) => read_state(path)?.step,
        None => 0,
    };
    let mut steps = list_steps(run_dir)?;
    let newest = steps.pop();
    steps.extend(newest.filter(|(step, _)| *step <= newest_epoch_step));
    for (_, path) in steps {
        std::fs::remove_dir_all(&path)?;
        removed.push(path);
    }
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(epoch: usize) -> CheckpointState {
        CheckpointState {
            run_id: "r".into(),
            epoch,
            step: epoch as u64 * 10,
            config: TrainConfig::default(),
            val_accuracy: Some(0.5),
            best_epoch: 2,
            best_score: 0.9,
            train_seconds: 1.0,
            batches_into_epoch: 0,
            between_batches: false,
            early_stop: Default::default(),
            histogram_bins: Default::default(),
            lr_plan: None,
        }
    }

    #[test]
    fn keeps_the_newest_n_and_the_best() {
        let dir = tempfile::tempdir().unwrap();
        for epoch in 1..=6 {
            save(dir.path(), b"m", b"o", &state(epoch)).unwrap();
        }
        let removed = prune(dir.path(), 3, 2).unwrap();
        assert_eq!(removed.len(), 2);
        let epochs: Vec<_> = list(dir.path())
            .unwrap()
            .into_iter()
            .map(|(e, _)| e)
            .collect();
        assert_eq!(epochs, vec![2, 4, 5, 6]);
        let (path, latest_state) = latest(dir.path()).unwrap().unwrap();
        assert!(path.ends_with("epoch-0006"));
        assert_eq!(latest_state.step, 60);
    }

    #[test]
    fn half_written_checkpoints_are_ignored_and_rewrites_replace() {
        let dir = tempfile::tempdir().unwrap();
        save(dir.path(), b"m", b"o", &state(1)).unwrap();
        // A crash mid-write leaves only a temporary directory behind.
        std::fs::create_dir(dir.path().join(".epoch-0002.tmp")).unwrap();
        std::fs::create_dir(dir.path().join("epoch-0003")).unwrap();
        assert_eq!(latest(dir.path()).unwrap().unwrap().1.epoch, 1);
        save(dir.path(), b"new", b"o", &state(1)).unwrap();
        assert_eq!(
            std::fs::read(dir.path().join("epoch-0001").join(MODEL_FILE)).unwrap(),
            b"new"
        );
        // The leftover temporary is replaced by the next save of that epoch.
        save(dir.path(), b"m", b"o", &state(2)).unwrap();
        assert_eq!(latest(dir.path()).unwrap().unwrap().1.epoch, 2);
    }

    #[test]
    fn a_checkpoint_between_batches_is_resumed_from_until_an_epoch_is_newer() {
        let dir = tempfile::tempdir().unwrap();
        save(dir.path(), b"m", b"o", &state(1)).unwrap();
        let between = CheckpointState {
            step: 15,
            batches_into_epoch: 5,
            between_batches: true,
            ..state(1)
        };
        let path = save(dir.path(), b"m", b"o", &between).unwrap();
        assert!(path.ends_with("step-0000000015"));
        assert_eq!(list(dir.path()).unwrap().len(), 1, "not an epoch's");
        let (newest, read) = latest(dir.path()).unwrap().unwrap();
        assert_eq!((newest, read.batches_into_epoch), (path.clone(), 5));
        assert!(
            prune(dir.path(), 3, 2).unwrap().is_empty(),
            "kept while newest"
        );
        save(dir.path(), b"m", b"o", &state(2)).unwrap();
        assert_eq!(prune(dir.path(), 3, 2).unwrap(), vec![path]);
        assert!(latest(dir.path())
            .unwrap()
            .unwrap()
            .0
            .ends_with("epoch-0002"));
    }
}
