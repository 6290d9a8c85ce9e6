//! The data set in memory: splits, limits, shuffling and normalisation.

use crate::IMAGE_PIXELS;
use rand::seq::SliceRandom;
use rand::SeedableRng;

/// Mean pixel value of the MNIST training set, in `[0, 1]` units.
pub const MNIST_MEAN: f32 = 0.1307;
/// Standard deviation of the MNIST training pixels, in `[0, 1]` units.
pub const MNIST_STD: f32 = 0.3081;

/// The four files' content: `u8` pixels (row-major, 784 per image) and labels.
#[derive(Debug, Clone)]
pub struct Mnist {
    /// Training-file pixels, 784 per image.
    pub train_images: Vec<u8>,
    /// Training-file labels, one digit 0–9 per image.
    pub train_labels: Vec<u8>,
    /// Test-file pixels, 784 per image.
    pub test_images: Vec<u8>,
    /// Test-file labels, one digit 0–9 per image.
    pub test_labels: Vec<u8>,
}

/// A contiguous range of one of the files, ready to upload.
#[derive(Debug, Clone, Default)]
pub struct MnistSplit {
    /// `len() * 784` pixels.
    pub images: Vec<u8>,
    /// One digit 0–9 per image.
    pub labels: Vec<u8>,
    /// Index of this split's first image in its file, so that a position here
    /// maps back to the original sample (`first_index + i`).
    pub first_index: usize,
}

impl MnistSplit {
    /// Number of images.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// Whether the split has no images.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// The pixels of image `i`.
    pub fn image(&self, i: usize) -> &[u8] {
        &self.images[i * IMAGE_PIXELS..(i + 1) * IMAGE_PIXELS]
    }

    fn range(images: &[u8], labels: &[u8], start: usize, end: usize) -> Self {
        Self {
            images: images[start * IMAGE_PIXELS..end * IMAGE_PIXELS].to_vec(),
            labels: labels[start..end].to_vec(),
            first_index: start,
        }
    }
}

/// How to cut the files into train, validation and test sets.
#[derive(Debug, Clone, Copy)]
pub struct SplitOptions {
    /// The last `val_size` training images are held out for validation.
    pub val_size: usize,
    /// Use only the first N remaining training images.
    pub limit_train: Option<usize>,
    /// Use only the first N validation images.
    pub limit_val: Option<usize>,
    /// Use only the first N test images.
    pub limit_test: Option<usize>,
}

/// Train, validation and test sets.
#[derive(Debug, Clone)]
pub struct Splits {
    /// The head of the training file, after `limit_train`.
    pub train: MnistSplit,
    /// The last `val_size` training images, after `limit_val`.
    pub val: MnistSplit,
    /// The head of the test file, after `limit_test`.
    pub test: MnistSplit,
}

/// A split that leaves no training data.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("val_size {val_size} must be smaller than the {train_images} training images")]
pub struct SplitError {
    /// The `val_size` asked for.
    pub val_size: usize,
    /// Images in the training file.
    pub train_images: usize,
}

impl Mnist {
    /// Cuts the data into splits. Fails (with a message naming the option)
    /// when the validation set would leave no training data.
    pub fn split(&self, opts: SplitOptions) -> Result<Splits, SplitError> {
        let n = self.train_labels.len();
        if opts.val_size >= n {
            return Err(SplitError {
                val_size: opts.val_size,
                train_images: n,
            });
        }
        let train_end = n - opts.val_size;
        let train_len = opts.limit_train.map_or(train_end, |l| l.min(train_end));
        let val_len = opts
            .limit_val
            .map_or(opts.val_size, |l| l.min(opts.val_size));
        let test_len = opts
            .limit_test
            .map_or(self.test_labels.len(), |l| l.min(self.test_labels.len()));
        Ok(Splits {
            train: MnistSplit::range(&self.train_images, &self.train_labels, 0, train_len),
            val: MnistSplit::range(
                &self.train_images,
                &self.train_labels,
                train_end,
                train_end + val_len,
            ),
            test: MnistSplit::range(&self.test_images, &self.test_labels, 0, test_len),
        })
    }
}

/// The order in which epoch `epoch` visits `n` training images: a permutation
/// that depends only on `seed` and `epoch`, so a resumed run sees the same
/// order it would have seen without the interruption.
pub fn epoch_order(n: usize, seed: u64, epoch: usize) -> Vec<usize> {
    let mut order: Vec<usize> = (0..n).collect();
    let mut rng = rand::rngs::StdRng::seed_from_u64(
        seed ^ (epoch as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15),
    );
    order.shuffle(&mut rng);
    order
}

/// Normalises `u8` pixels to `(x/255 - mean) / std`.
pub fn normalise(pixels: &[u8]) -> Vec<f32> {
    pixels
        .iter()
        .map(|&p| (p as f32 / 255.0 - MNIST_MEAN) / MNIST_STD)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data(train: usize, test: usize) -> Mnist {
        Mnist {
            train_images: (0..train * 784).map(|i| (i / 784) as u8).collect(),
            train_labels: (0..train).map(|i| (i % 10) as u8).collect(),
            test_images: vec![0; test * 784],
            test_labels: vec![3; test],
        }
    }

    #[test]
    fn validation_is_the_tail_of_training_data() {
        let splits = data(100, 10)
            .split(SplitOptions {
                val_size: 20,
                limit_train: None,
                limit_val: None,
                limit_test: Some(4),
            })
            .unwrap();
        assert_eq!(splits.train.len(), 80);
        assert_eq!(splits.val.len(), 20);
        assert_eq!(splits.val.first_index, 80);
        assert_eq!(splits.val.image(0)[0], 80);
        assert_eq!(splits.test.len(), 4);
    }

    #[test]
    fn limits_never_overlap_validation() {
        let splits = data(100, 10)
            .split(SplitOptions {
                val_size: 20,
                limit_train: Some(1000),
                limit_val: Some(5),
                limit_test: None,
            })
            .unwrap();
        assert_eq!(splits.train.len(), 80);
        assert_eq!(splits.val.len(), 5);
        let err = data(10, 1)
            .split(SplitOptions {
                val_size: 10,
                limit_train: None,
                limit_val: None,
                limit_test: None,
            })
            .unwrap_err();
        assert!(err.to_string().contains("val_size 10"), "{err}");
    }

    #[test]
    fn epoch_order_is_a_seeded_permutation() {
        let a = epoch_order(50, 1, 0);
        assert_eq!(a, epoch_order(50, 1, 0));
        assert_ne!(a, epoch_order(50, 1, 1));
        assert_ne!(a, epoch_order(50, 2, 0));
        let mut sorted = a.clone();
        sorted.sort();
        assert_eq!(sorted, (0..50).collect::<Vec<_>>());
    }

    #[test]
    fn normalisation_matches_the_published_constants() {
        let v = normalise(&[0, 255]);
        assert!((v[0] + 0.1307 / 0.3081).abs() < 1e-6);
        assert!((v[1] - (1.0 - 0.1307) / 0.3081).abs() < 1e-6);
    }
}
