//! The user's words about a run (its name, notes and tags: a
//! [`RunMeta`]) kept in `runs/<id>/meta.json`, beside its log and never
//! inside it (the log is what the trainer recorded), and their limits.

use crate::protocol::RunMeta;
use std::path::Path;

/// A sink that tags each run with its sweep once it started (`meta.json`
/// beside its log, where the page's tags live; the run's folder exists
/// from then on, and must not before: a taken run id is refused). The
/// server's queue and `mnist-monitor sweep` both use it.
pub fn sweep_tagger(runs_dir: std::path::PathBuf, sweep: String) -> impl mnist_events::EventSink {
    mnist_events::FnSink(move |e: &mnist_events::Event| {
        if matches!(e.kind, mnist_events::EventKind::RunStarted(_)) {
            let meta = RunMeta {
                tags: vec![sweep.clone()],
                ..Default::default()
            };
            if let Err(err) = meta.save(&runs_dir, &e.run_id) {
                tracing::warn!("run {}: cannot tag it with its sweep: {err}", e.run_id);
            }
        }
    })
}

/// Longest name, tag and notes, in characters.
pub const MAX_NAME: usize = 200;
/// Longest tag, in characters.
pub const MAX_TAG: usize = 64;
/// Most tags on one run.
pub const MAX_TAGS: usize = 32;
/// Longest notes, in characters.
pub const MAX_NOTES: usize = 20_000;

pub(crate) const META_FILE: &str = "meta.json";

impl RunMeta {
    /// The run's meta, or the empty one.
    pub fn load(runs_dir: &Path, run_id: &str) -> Self {
        std::fs::read(runs_dir.join(run_id).join(META_FILE))
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default()
    }

    pub(crate) fn save(&self, runs_dir: &Path, run_id: &str) -> std::io::Result<()> {
        let path = runs_dir.join(run_id).join(META_FILE);
        crate::write_atomic(&path, &serde_json::to_vec_pretty(self).expect("serialises"))
    }
}
