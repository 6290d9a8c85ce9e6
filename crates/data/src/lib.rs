//! # mnist-data: the MNIST data set on disk and in memory
//!
//! Owns everything between the four IDX files and the `u8` pixels the trainer
//! uploads to its device:
//!
//! * [`idx`] parses IDX files (gzipped or raw) and rejects malformed ones with
//!   an error that says what is wrong, never a panic;
//! * [`files`] finds the four files in a directory, verifies them against the
//!   published SHA-256 of their content, and downloads missing ones from a
//!   public mirror with a progress bar;
//! * [`dataset`] splits training data into train/validation, applies limits,
//!   shuffles by seed and defines the normalisation constants.

pub mod dataset;
pub mod files;
pub mod idx;
pub mod overrides;
pub mod preprocess;

pub use dataset::{
    epoch_order, normalise, Mnist, MnistSplit, SplitOptions, Splits, MNIST_MEAN, MNIST_STD,
};
pub use files::{
    ensure_downloaded, load_dir, missing_files, DataError, MnistFile, Verify, FILES, MIRRORS,
};
pub use idx::{IdxError, IdxImages, IdxLabels};

/// Side length of an MNIST image.
pub const IMAGE_SIDE: usize = 28;
/// Pixels per image.
pub const IMAGE_PIXELS: usize = IMAGE_SIDE * IMAGE_SIDE;
/// Number of classes.
pub const CLASSES: usize = 10;
