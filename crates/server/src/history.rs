//! The runs folder: which runs are logged there.

use std::path::Path;

/// Runs logged under `runs_dir`, newest first.
pub fn list_runs(runs_dir: &Path) -> Vec<(String, std::path::PathBuf)> {
    let mut runs: Vec<(String, std::path::PathBuf)> = std::fs::read_dir(runs_dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let path = entry.path().join(mnist_events::LOG_FILE);
            let name = entry.file_name().into_string().ok()?;
            path.is_file().then_some((name, path))
        })
        .collect();
    runs.sort_by(|a, b| b.0.cmp(&a.0));
    runs
}
