//! Label decisions made while reviewing: `labels-overrides.json` next to the
//! data files.
//!
//! One entry per reviewed sample, keyed `"<split>:<index>"` (`train` or
//! `test`, the index in its original file), sorted, pretty-printed: a
//! reviewer's session reads well in `git diff`. Every change rewrites the
//! file through a temporary file and a rename, so a crash never leaves half
//! of it. Training applies it only when asked (`--apply-label-overrides`).

use crate::dataset::Mnist;
use serde::{Deserialize, Serialize};
use sha2::Digest;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Name of the overrides file inside a data directory.
pub const OVERRIDES_FILE: &str = "labels-overrides.json";

/// A reviewer's verdict on one sample.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Decision {
    /// The file's label is right.
    Keep,
    /// The label should be `label`.
    Relabel,
    /// Not a usable digit: leave it out of training.
    Exclude,
}

/// One reviewed sample: the verdict, who gave it and when.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Override {
    /// What the reviewer decided.
    pub decision: Decision,
    /// The new label, for `relabel`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label: Option<u8>,
    /// The label in the original file, for the record.
    pub original: u8,
    /// Who decided: the name the reviewer gave, or `web`.
    pub by: String,
    /// Unix milliseconds.
    pub at_ms: u64,
}

/// The whole overrides file: every reviewed sample.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct LabelOverrides {
    /// Decisions keyed `"<split>:<index>"` (see [`key`]), in key order.
    pub entries: BTreeMap<String, Override>,
}

/// What applying the overrides changed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AppliedOverrides {
    /// The overrides file, as displayed.
    pub path: String,
    /// SHA-256 of the file as applied.
    pub sha256: String,
    /// Labels (train or test) actually changed by `relabel` entries.
    pub relabelled: usize,
    /// Training images left out.
    pub excluded: usize,
}

/// The entry key of sample `index` of `split` (`train` or `test`):
/// `"<split>:<index>"`.
pub fn key(split: &str, index: usize) -> String {
    format!("{split}:{index}")
}

/// Where the overrides file of data directory `data_dir` lives.
pub fn path_in(data_dir: &Path) -> PathBuf {
    data_dir.join(OVERRIDES_FILE)
}

/// Why the overrides file could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum OverridesError {
    /// The file exists but could not be read.
    #[error("{path}: {source}")]
    Read {
        /// The overrides file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file is not valid overrides JSON.
    #[error("{path} is not a label-overrides file: {source}")]
    Parse {
        /// The overrides file.
        path: PathBuf,
        /// Why it did not parse.
        source: serde_json::Error,
    },
    /// Creating, locking or writing (`what` says which) failed.
    #[error("cannot {what} {path}: {source}")]
    Write {
        /// The step that failed: `create`, `open`, `lock` or `write`.
        what: &'static str,
        /// The directory or file that step acted on.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
}

impl LabelOverrides {
    /// The file, or no overrides when it doesn't exist.
    pub fn load(path: &Path) -> Result<Self, OverridesError> {
        match std::fs::read(path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|source| OverridesError::Parse {
                path: path.to_path_buf(),
                source,
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Self::default()),
            Err(source) => Err(OverridesError::Read {
                path: path.to_path_buf(),
                source,
            }),
        }
    }

    /// Writes atomically: a temporary file of this write's own (two
    /// processes never share one), fsync, rename.
    pub fn save(&self, path: &Path) -> Result<(), OverridesError> {
        static WRITES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let text = serde_json::to_string_pretty(self).expect("serialises") + "\n";
        let n = WRITES.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let tmp = path.with_extension(format!("json.{}-{n}.tmp", std::process::id()));
        let write = || -> std::io::Result<()> {
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir)?;
            }
            let mut f = std::fs::File::create(&tmp)?;
            std::io::Write::write_all(&mut f, text.as_bytes())?;
            f.sync_all()?;
            std::fs::rename(&tmp, path)
        };
        write().map_err(|source| {
            let _ = std::fs::remove_file(&tmp);
            OverridesError::Write {
                what: "write",
                path: path.to_path_buf(),
                source,
            }
        })
    }

    /// Reads the file, lets `change` edit it, and writes it back, holding an
    /// advisory lock (`labels-overrides.json.lock`, `flock`) throughout, so
    /// that a `serve` and a `train --serve` on one data directory never lose
    /// each other's decisions. Returns what `change` returned.
    pub fn update<T>(
        path: &Path,
        change: impl FnOnce(&mut Self) -> T,
    ) -> Result<T, OverridesError> {
        let failed = |what, path: &Path| {
            let path = path.to_path_buf();
            move |source| OverridesError::Write { what, path, source }
        };
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(failed("create", dir))?;
        }
        let lock_path = path.with_extension("json.lock");
        let lock = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(failed("open", &lock_path))?;
        lock.lock().map_err(failed("lock", &lock_path))?;
        let mut all = Self::load(path)?;
        let out = change(&mut all);
        all.save(path)?;
        // Dropping the file releases the lock.
        drop(lock);
        Ok(out)
    }

    /// Applies relabels to both files and drops excluded training images.
    /// Excluded *test* images stay (with any relabel), so that test accuracy
    /// remains comparable between runs.
    pub fn apply(&self, data: &Mnist, path: &Path) -> (Mnist, AppliedOverrides) {
        let mut out = data.clone();
        let mut relabelled = 0;
        let mut drop_train = vec![false; data.train_labels.len()];
        for (k, o) in &self.entries {
            let Some((split, index)) = k
                .split_once(':')
                .and_then(|(s, i)| Some((s, i.parse::<usize>().ok()?)))
            else {
                continue;
            };
            let labels = match split {
                "train" => &mut out.train_labels,
                "test" => &mut out.test_labels,
                _ => continue,
            };
            if index >= labels.len() {
                continue;
            }
            match (o.decision, o.label) {
                (Decision::Relabel, Some(l)) if l < 10 && labels[index] != l => {
                    labels[index] = l;
                    relabelled += 1;
                }
                (Decision::Exclude, _) if split == "train" => drop_train[index] = true,
                _ => {}
            }
        }
        let excluded = drop_train.iter().filter(|&&d| d).count();
        if excluded > 0 {
            let px = crate::IMAGE_PIXELS;
            let keep: Vec<usize> = (0..drop_train.len()).filter(|&i| !drop_train[i]).collect();
            out.train_images = keep
                .iter()
                .flat_map(|&i| data.train_images[i * px..(i + 1) * px].iter().copied())
                .collect();
            out.train_labels = keep.iter().map(|&i| out.train_labels[i]).collect();
        }
        let sha256 = std::fs::read(path)
            .map(|b| format!("{:x}", sha2::Sha256::digest(&b)))
            .unwrap_or_default();
        (
            out,
            AppliedOverrides {
                path: path.display().to_string(),
                sha256,
                relabelled,
                excluded,
            },
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data() -> Mnist {
        Mnist {
            train_images: (0..5).flat_map(|i| vec![i as u8; 784]).collect(),
            train_labels: vec![0, 1, 2, 3, 4],
            test_images: vec![9; 784 * 2],
            test_labels: vec![7, 8],
        }
    }

    fn entry(decision: Decision, label: Option<u8>, original: u8) -> Override {
        Override {
            decision,
            label,
            original,
            by: "tester".into(),
            at_ms: 1,
        }
    }

    #[test]
    fn saved_atomically_read_back_and_applied() {
        let dir = tempfile::tempdir().unwrap();
        let path = path_in(dir.path());
        let mut o = LabelOverrides::load(&path).unwrap();
        assert!(o.entries.is_empty(), "no file, no overrides");
        o.entries
            .insert(key("train", 1), entry(Decision::Relabel, Some(7), 1));
        o.entries
            .insert(key("train", 3), entry(Decision::Exclude, None, 3));
        o.entries
            .insert(key("train", 4), entry(Decision::Keep, None, 4));
        o.entries
            .insert(key("test", 0), entry(Decision::Relabel, Some(1), 7));
        o.entries
            .insert(key("test", 1), entry(Decision::Exclude, None, 8));
        o.save(&path).unwrap();
        let leftovers: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().ends_with(".tmp"))
            .collect();
        assert!(leftovers.is_empty(), "{leftovers:?}");
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(
            text.contains("\"train:1\": {") && text.contains("\"decision\": \"relabel\""),
            "{text}"
        );
        let back = LabelOverrides::load(&path).unwrap();
        assert_eq!(back, o);

        let (applied, summary) = back.apply(&data(), &path);
        assert_eq!(
            applied.train_labels,
            vec![0, 7, 2, 4],
            "relabelled, index 3 dropped"
        );
        assert_eq!(&applied.train_images[2 * 784..3 * 784], &[2u8; 784][..]);
        assert_eq!(
            &applied.train_images[3 * 784..4 * 784],
            &[4u8; 784][..],
            "images follow their labels"
        );
        assert_eq!(
            applied.test_labels,
            vec![1, 8],
            "test relabelled, test exclusions kept"
        );
        assert_eq!((summary.relabelled, summary.excluded), (2, 1));
        assert_eq!(summary.sha256.len(), 64);
    }

    #[test]
    fn concurrent_updates_from_many_writers_all_land() {
        let dir = tempfile::tempdir().unwrap();
        let path = path_in(dir.path());
        let writers: Vec<_> = (0..8)
            .map(|w| {
                let path = path.clone();
                std::thread::spawn(move || {
                    for i in 0..25 {
                        LabelOverrides::update(&path, |all| {
                            all.entries
                                .insert(key("train", w * 100 + i), entry(Decision::Keep, None, 0));
                        })
                        .unwrap();
                    }
                })
            })
            .collect();
        for w in writers {
            w.join().unwrap();
        }
        assert_eq!(LabelOverrides::load(&path).unwrap().entries.len(), 200);
    }

    #[test]
    fn a_corrupt_file_is_an_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = path_in(dir.path());
        std::fs::write(&path, "{not json").unwrap();
        let e = LabelOverrides::load(&path).unwrap_err();
        assert!(e.to_string().contains(OVERRIDES_FILE), "{e}");
    }
}
