//! The trash: deleted runs (their logs and checkpoints) wait in
//! `runs/.trash/<id>/` until restored or emptied (by a person on the page,
//! or by `prune`).

use std::path::Path;

/// The trash folder inside the runs folder (hidden: not a run).
pub(crate) const TRASH: &str = ".trash";

/// Why a run could not go to the trash.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum TrashError {
    /// The trash holds a run of that id.
    #[error("{0}")]
    Taken(String),
    /// Moving it failed.
    #[error("{0}")]
    Io(String),
}

/// Moves run `id` and its checkpoints into the trash.
pub(crate) fn move_to_trash(runs: &Path, checkpoints: &Path, id: &str) -> Result<(), TrashError> {
    let trash = runs.join(TRASH).join(id);
    if trash.exists() {
        return Err(TrashError::Taken(format!(
            "the trash already holds a run {id}: restore or empty it first"
        )));
    }
    let io = |e: std::io::Error| TrashError::Io(format!("cannot move run {id} to the trash: {e}"));
    move_dir(&runs.join(id), &trash.join("run")).map_err(io)?;
    move_dir(&checkpoints.join(id), &trash.join("checkpoints")).map_err(io)
}

/// Moves a folder (nothing to do when there is none), making `to`'s parent.
pub(crate) fn move_dir(from: &Path, to: &Path) -> std::io::Result<()> {
    if !from.exists() {
        return Ok(());
    }
    if let Some(parent) = to.parent() {
        std::fs::create_dir_all(parent)?;
    }
    std::fs::rename(from, to)
}
