//! The four MNIST files on disk: where they are, whether they are intact, and
//! how to fetch them when they are not there.

use crate::dataset::Mnist;
use crate::idx::{IdxError, IdxImages, IdxLabels};
use sha2::{Digest, Sha256};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

/// One of the four MNIST files.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MnistFile {
    /// File name without `.gz`.
    pub name: &'static str,
    /// SHA-256 of the decompressed content, as published with the data set.
    pub sha256: &'static str,
}

/// The four files, in the order train images, train labels, test images, test labels.
pub const FILES: [MnistFile; 4] = [
    MnistFile {
        name: "train-images-idx3-ubyte",
        sha256: "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
    },
    MnistFile {
        name: "train-labels-idx1-ubyte",
        sha256: "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
    },
    MnistFile {
        name: "t10k-images-idx3-ubyte",
        sha256: "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
    },
    MnistFile {
        name: "t10k-labels-idx1-ubyte",
        sha256: "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
    },
];

/// Public mirrors serving the gzipped files under their original names.
pub const MIRRORS: [&str; 2] = [
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "https://storage.googleapis.com/cvdf-datasets/mnist/",
];

/// Whether to check file content against [`FILES`]' hashes. Custom data sets
/// in IDX format (Fashion-MNIST, a test's tiny files) skip it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verify {
    /// Check the decompressed content's SHA-256 against [`FILES`].
    Sha256,
    /// Load whatever IDX files are there.
    Skip,
}

/// Why the data could not be loaded, with what to do about it.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    /// A file is in the directory neither gzipped nor raw.
    #[error(
        "MNIST file {name} is missing: looked for {dir}/{name}.gz and {dir}/{name}. \
         Put the file there (gzipped or raw), or let mnist-monitor download it \
         (it tries {mirrors} when the data directory is the default or --download is given)",
        dir = .dir.display(), mirrors = MIRRORS.join(" and ")
    )]
    Missing {
        /// The file's name.
        name: String,
        /// Where it was looked for.
        dir: PathBuf,
    },
    /// A file's content does not hash to the published SHA-256.
    #[error(
        "MNIST file {path} is corrupt: SHA-256 of its content is {actual}, expected {expected}. \
         Delete it and run again to download a fresh copy, or replace it with the original file \
         (use --skip-verify only for a different data set in IDX format)",
        path = .path.display()
    )]
    Corrupt {
        /// The file as found on disk.
        path: PathBuf,
        /// The published SHA-256.
        expected: String,
        /// SHA-256 of its decompressed content.
        actual: String,
    },
    /// A file is not valid IDX (gzipped or raw).
    #[error("MNIST file {path} is malformed: {source}", path = .path.display())]
    Malformed {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        source: IdxError,
    },
    /// The images and labels files hold different numbers of items.
    #[error(
        "{images} holds {image_count} images but {labels} holds {label_count} labels; \
         the two files must come from the same data set",
        images = .images.display(), labels = .labels.display()
    )]
    CountMismatch {
        /// The images file.
        images: PathBuf,
        /// The labels file.
        labels: PathBuf,
        /// Images in the images file.
        image_count: usize,
        /// Labels in the labels file.
        label_count: usize,
    },
    /// A file could not be read, or the data directory could not be created.
    #[error("cannot read {path}: {source}", path = .path.display())]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// No mirror served a good copy of a missing file.
    #[error(
        "could not download {name} into {dir}: {reason}. Without internet, copy the four MNIST \
         files ({files}) into {dir} by hand (gzipped or raw)",
        dir = .dir.display(),
        files = FILES.iter().map(|f| f.name).collect::<Vec<_>>().join(", ")
    )]
    Download {
        /// The missing file's name, without `.gz`.
        name: String,
        /// The data directory it was to go into.
        dir: PathBuf,
        /// Each mirror's URL and error, separated by `; `.
        reason: String,
    },
}

/// Where a file lives: `dir/name.gz` preferred, then `dir/name`.
fn locate(dir: &Path, file: &MnistFile) -> Option<PathBuf> {
    [format!("{}.gz", file.name), file.name.to_string()]
        .into_iter()
        .map(|n| dir.join(n))
        .find(|p| p.is_file())
}

/// Names of the files that are not in `dir`.
pub fn missing_files(dir: &Path) -> Vec<&'static str> {
    FILES
        .iter()
        .filter(|f| locate(dir, f).is_none())
        .map(|f| f.name)
        .collect()
}

fn sha256_hex(bytes: &[u8]) -> String {
    let digest = Sha256::digest(bytes);
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// A reader that hashes what passes through it.
struct Hashing<R> {
    inner: R,
    hasher: Sha256,
}

impl<R: Read> Read for Hashing<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
}

/// Reads, decompresses and (optionally) verifies one file.
fn read_verified(
    dir: &Path,
    file: &MnistFile,
    verify: Verify,
) -> Result<(PathBuf, Vec<u8>), DataError> {
    let path = locate(dir, file).ok_or_else(|| DataError::Missing {
        name: file.name.to_string(),
        dir: dir.to_path_buf(),
    })?;
    let io = |source| DataError::Io {
        path: path.clone(),
        source,
    };
    let mut opened = std::io::BufReader::new(std::fs::File::open(&path).map_err(io)?);
    let gzipped = std::io::BufRead::fill_buf(&mut opened)
        .map_err(io)?
        .starts_with(&[0x1f, 0x8b]);
    // Decompressed as it is read, no further than the header promises,
    // hashed on the way.
    let mut reader = Hashing {
        inner: if gzipped {
            Box::new(flate2::read::MultiGzDecoder::new(opened)) as Box<dyn Read>
        } else {
            Box::new(opened)
        },
        hasher: Sha256::new(),
    };
    let bytes = crate::idx::read_promised(&mut reader).map_err(|e| match gzipped {
        true => DataError::Malformed {
            path: path.clone(),
            source: IdxError::Gzip(e.to_string()),
        },
        false => io(e),
    })?;
    if verify == Verify::Sha256 {
        let actual: String = reader
            .hasher
            .finalize()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        if actual != file.sha256 {
            return Err(DataError::Corrupt {
                path,
                expected: file.sha256.to_string(),
                actual,
            });
        }
    }
    Ok((path, bytes))
}

fn load_pair(
    dir: &Path,
    images: &MnistFile,
    labels: &MnistFile,
    verify: Verify,
) -> Result<(Vec<u8>, Vec<u8>), DataError> {
    let (ipath, ibytes) = read_verified(dir, images, verify)?;
    let (lpath, lbytes) = read_verified(dir, labels, verify)?;
    let imgs = IdxImages::parse(&ibytes).map_err(|source| DataError::Malformed {
        path: ipath.clone(),
        source,
    })?;
    let lbls = IdxLabels::parse(&lbytes).map_err(|source| DataError::Malformed {
        path: lpath.clone(),
        source,
    })?;
    if imgs.count != lbls.labels.len() {
        return Err(DataError::CountMismatch {
            images: ipath,
            labels: lpath,
            image_count: imgs.count,
            label_count: lbls.labels.len(),
        });
    }
    Ok((imgs.pixels, lbls.labels))
}

/// Loads the four files from `dir`.
pub fn load_dir(dir: &Path, verify: Verify) -> Result<Mnist, DataError> {
    // Name a missing file before spending time reading the others.
    if let Some(name) = missing_files(dir).first() {
        return Err(DataError::Missing {
            name: name.to_string(),
            dir: dir.to_path_buf(),
        });
    }
    let (train_images, train_labels) = load_pair(dir, &FILES[0], &FILES[1], verify)?;
    let (test_images, test_labels) = load_pair(dir, &FILES[2], &FILES[3], verify)?;
    Ok(Mnist {
        train_images,
        train_labels,
        test_images,
        test_labels,
    })
}

/// Downloads every file missing from `dir` (gzipped, verified, written
/// atomically), showing a progress bar on a terminal. Files already there are
/// left alone.
pub fn ensure_downloaded(dir: &Path) -> Result<(), DataError> {
    let missing = missing_files(dir);
    if missing.is_empty() {
        return Ok(());
    }
    std::fs::create_dir_all(dir).map_err(|source| DataError::Io {
        path: dir.to_path_buf(),
        source,
    })?;
    for name in missing {
        let file = FILES.iter().find(|f| f.name == name).expect("known file");
        let mut reasons = Vec::new();
        let mut done = false;
        for mirror in MIRRORS {
            let url = format!("{mirror}{name}.gz");
            match download_one(&url, dir, file) {
                Ok(()) => {
                    done = true;
                    break;
                }
                Err(reason) => reasons.push(format!("{url}: {reason}")),
            }
        }
        if !done {
            return Err(DataError::Download {
                name: name.to_string(),
                dir: dir.to_path_buf(),
                reason: reasons.join("; "),
            });
        }
    }
    Ok(())
}

fn download_one(url: &str, dir: &Path, file: &MnistFile) -> Result<(), String> {
    tracing::info!("downloading {url}");
    let agent = ureq::AgentBuilder::new()
        .timeout_connect(std::time::Duration::from_secs(10))
        .timeout_read(std::time::Duration::from_secs(30))
        .build();
    let response = agent.get(url).call().map_err(|e| e.to_string())?;
    let total = response
        .header("Content-Length")
        .and_then(|v| v.parse::<u64>().ok());
    let bar = match total {
        Some(n) => indicatif::ProgressBar::new(n),
        None => indicatif::ProgressBar::new_spinner(),
    };
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{msg:28} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec}",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
        .progress_chars("=> "),
    );
    bar.set_message(file.name);
    let mut body = Vec::new();
    let mut reader = bar.wrap_read(response.into_reader().take(64 << 20));
    reader.read_to_end(&mut body).map_err(|e| e.to_string())?;
    bar.finish_and_clear();
    // A mirror's answer is checked the way a local file is: decompressed
    // no further than its header promises.
    let content = if body.starts_with(&[0x1f, 0x8b]) {
        crate::idx::read_promised(&mut flate2::read::MultiGzDecoder::new(&body[..]))
            .map_err(|e| IdxError::Gzip(e.to_string()).to_string())?
    } else {
        body.clone()
    };
    let actual = sha256_hex(&content);
    if actual != file.sha256 {
        return Err(format!(
            "content SHA-256 {actual} does not match {}",
            file.sha256
        ));
    }
    let target = dir.join(format!("{}.gz", file.name));
    let tmp = dir.join(format!(".{}.gz.part", file.name));
    let write = || -> std::io::Result<()> {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(&body)?;
        f.sync_all()?;
        std::fs::rename(&tmp, &target)
    };
    write().map_err(|e| format!("cannot write {}: {e}", target.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write_set(dir: &Path, train: usize, test: usize) {
        let img = |n: usize| IdxImages {
            count: n,
            rows: 28,
            cols: 28,
            pixels: vec![7; n * 784],
        };
        let lbl = |n: usize| IdxLabels {
            labels: (0..n).map(|i| (i % 10) as u8).collect(),
        };
        std::fs::write(dir.join(FILES[0].name), img(train).encode()).unwrap();
        std::fs::write(dir.join(FILES[1].name), lbl(train).encode()).unwrap();
        std::fs::write(dir.join(FILES[2].name), img(test).encode()).unwrap();
        std::fs::write(dir.join(FILES[3].name), lbl(test).encode()).unwrap();
    }

    #[test]
    fn loads_raw_files_without_verification() {
        let dir = tempfile::tempdir().unwrap();
        write_set(dir.path(), 20, 5);
        let data = load_dir(dir.path(), Verify::Skip).unwrap();
        assert_eq!(data.train_labels.len(), 20);
        assert_eq!(data.test_images.len(), 5 * 784);
    }

    #[test]
    fn verification_names_the_corrupt_file() {
        let dir = tempfile::tempdir().unwrap();
        write_set(dir.path(), 20, 5);
        let err = load_dir(dir.path(), Verify::Sha256)
            .unwrap_err()
            .to_string();
        assert!(err.contains("train-images-idx3-ubyte is corrupt"), "{err}");
        assert!(err.contains(FILES[0].sha256), "{err}");
    }

    #[test]
    fn missing_file_says_where_to_put_it() {
        let dir = tempfile::tempdir().unwrap();
        write_set(dir.path(), 20, 5);
        std::fs::remove_file(dir.path().join(FILES[3].name)).unwrap();
        assert_eq!(missing_files(dir.path()), vec!["t10k-labels-idx1-ubyte"]);
        let err = load_dir(dir.path(), Verify::Skip).unwrap_err().to_string();
        assert!(err.contains("t10k-labels-idx1-ubyte is missing"), "{err}");
        assert!(err.contains(&dir.path().display().to_string()), "{err}");
    }

    #[test]
    fn count_mismatch_is_reported() {
        let dir = tempfile::tempdir().unwrap();
        write_set(dir.path(), 20, 5);
        let labels = IdxLabels {
            labels: vec![1; 19],
        };
        std::fs::write(dir.path().join(FILES[1].name), labels.encode()).unwrap();
        let err = load_dir(dir.path(), Verify::Skip).unwrap_err();
        assert!(
            matches!(
                err,
                DataError::CountMismatch {
                    image_count: 20,
                    label_count: 19,
                    ..
                }
            ),
            "{err}"
        );
    }

    #[test]
    fn truncated_gzip_file_is_malformed_not_a_panic() {
        let dir = tempfile::tempdir().unwrap();
        write_set(dir.path(), 20, 5);
        std::fs::remove_file(dir.path().join(FILES[2].name)).unwrap();
        std::fs::write(
            dir.path().join(format!("{}.gz", FILES[2].name)),
            [0x1f, 0x8b, 8, 0, 0],
        )
        .unwrap();
        let err = load_dir(dir.path(), Verify::Skip).unwrap_err().to_string();
        assert!(
            err.contains("t10k-images-idx3-ubyte.gz is malformed"),
            "{err}"
        );
    }
}
