//! Inference from a checkpoint on the CPU: the prediction endpoint, the
//! review ranking and `mnist-monitor predict` all go through [`Predictor`].

use crate::checkpoint::{self, CheckpointState};
use burn::backend::Flex;
use burn::module::Module;
use burn::record::{FullPrecisionSettings, NamedMpkBytesRecorder, Recorder};
use burn::tensor::{Tensor, TensorData};
use mnist_data::{normalise, CLASSES, IMAGE_PIXELS};
use mnist_model::Cnn;
use serde::Serialize;
use std::path::{Path, PathBuf};

type B = Flex;

/// A trained model loaded from a checkpoint.
pub struct Predictor {
    model: Cnn<B>,
    device: burn::tensor::Device<B>,
    /// The epoch directory the weights came from.
    pub checkpoint: PathBuf,
    /// The checkpoint's `state.json`: its run, epoch and configuration (which builds the model).
    pub state: CheckpointState,
}

impl std::fmt::Debug for Predictor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Predictor")
            .field("checkpoint", &self.checkpoint)
            .finish_non_exhaustive()
    }
}

/// Why a checkpoint could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The path is neither an epoch directory nor a run's directory holding any.
    #[error("{} is not a checkpoint: expected an epoch-NNNN directory (with {}) or a run's checkpoint directory holding them", .0.display(), checkpoint::STATE_FILE)]
    NotACheckpoint(PathBuf),
    /// A checkpoint directory or file could not be read.
    #[error("{}: {source}", .path.display())]
    Io {
        /// The directory being read.
        path: PathBuf,
        /// The underlying I/O error (`InvalidData` for a malformed `state.json`).
        source: std::io::Error,
    },
    /// `model.mpk` could not be decoded into the model its configuration describes.
    #[error("cannot load the model in {}: {reason}", .path.display())]
    Model {
        /// The epoch directory holding the weights.
        path: PathBuf,
        /// The recorder's error message.
        reason: String,
    },
}

/// Why a picture could not become a digit.
#[derive(Debug, thiserror::Error)]
pub enum PngError {
    /// The bytes could not be decoded as a PNG.
    #[error("not a readable PNG: {0}")]
    Unreadable(#[from] image::ImageError),
    /// The header claims more than [`PNG_MAX_SIDE`] a side or [`PNG_MAX_PIXELS`] in all.
    #[error(
        "the PNG is {width}×{height} pixels; the limit is {PNG_MAX_SIDE} pixels a side and \
         {PNG_MAX_PIXELS} pixels in all (2048×2048): scale it down first"
    )]
    TooLarge {
        /// Width the PNG's header claims, in pixels.
        width: u32,
        /// Height the PNG's header claims, in pixels.
        height: u32,
    },
    /// The image has no pixels (zero width or height).
    #[error("the PNG is empty")]
    Empty,
}

/// An epoch directory, or a run's checkpoint directory (then its best
/// checkpoint if it is still there, else the newest).
pub fn resolve_checkpoint(path: &Path) -> Result<PathBuf, LoadError> {
    if path.join(checkpoint::STATE_FILE).is_file() {
        return Ok(path.to_path_buf());
    }
    let all = checkpoint::list(path).map_err(|source| LoadError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let Some((_, newest)) = all.last() else {
        return Err(LoadError::NotACheckpoint(path.to_path_buf()));
    };
    let best = checkpoint::read_state(newest).ok().map(|s| s.best_epoch);
    Ok(all
        .iter()
        .find(|(e, _)| Some(*e) == best)
        .map(|(_, p)| p.clone())
        .unwrap_or_else(|| newest.clone()))
}

impl Predictor {
    /// Loads the checkpoint `path` names (see [`resolve_checkpoint`]).
    pub fn load(path: &Path) -> Result<Self, LoadError> {
        let dir = resolve_checkpoint(path)?;
        let io = |source| LoadError::Io {
            path: dir.clone(),
            source,
        };
        let state = checkpoint::read_state(&dir).map_err(io)?;
        let bytes = std::fs::read(dir.join(checkpoint::MODEL_FILE)).map_err(io)?;
        let device = Default::default();
        let record = NamedMpkBytesRecorder::<FullPrecisionSettings>::default()
            .load(bytes, &device)
            .map_err(|e| LoadError::Model {
                path: dir.clone(),
                reason: e.to_string(),
            })?;
        let model = state.config.model().init::<B>(&device).load_record(record);
        Ok(Self {
            model,
            device,
            checkpoint: dir,
            state,
        })
    }

    /// The loaded network.
    pub fn model(&self) -> &Cnn<B> {
        &self.model
    }

    /// Softmax probabilities for `n` images (`n × 784` raw pixels).
    pub fn probabilities(&self, pixels: &[u8]) -> Vec<[f32; CLASSES]> {
        let n = pixels.len() / IMAGE_PIXELS;
        let mut out = Vec::with_capacity(n);
        for chunk in pixels.chunks(512 * IMAGE_PIXELS) {
            let m = chunk.len() / IMAGE_PIXELS;
            let x = Tensor::<B, 4>::from_data(
                TensorData::new(normalise(chunk), [m, 1, 28, 28]),
                &self.device,
            );
            let probs: Vec<f32> = burn::tensor::activation::softmax(self.model.forward(x), 1)
                .into_data()
                .iter::<f32>()
                .collect();
            for p in probs.chunks(CLASSES) {
                let mut row = [0f32; CLASSES];
                row.copy_from_slice(p);
                out.push(row);
            }
        }
        out
    }
}

/// How strongly the model disagrees with a sample's label.
#[derive(Debug, Clone, Serialize)]
pub struct Ranked {
    /// Index in its original file.
    pub index: usize,
    /// The label the data gives it (0–9).
    pub label: u8,
    /// The class the model rates most probable.
    pub predicted: u8,
    /// Softmax probability of each class, summing to 1.
    pub probs: [f32; CLASSES],
    /// Cross-entropy of the label: `-ln p(label)`.
    pub loss: f32,
    /// Top wrong class probability minus the label's (positive: the model
    /// prefers another class).
    pub margin: f32,
}

/// Every image of a split, most suspicious first (highest loss).
pub fn rank(
    predictor: &Predictor,
    pixels: &[u8],
    labels: &[u8],
    first_index: usize,
) -> Vec<Ranked> {
    let probs = predictor.probabilities(pixels);
    let mut ranked: Vec<Ranked> = probs
        .into_iter()
        .zip(labels)
        .enumerate()
        .map(|(i, (p, &label))| {
            let predicted = argmax(&p);
            let wrong = p
                .iter()
                .enumerate()
                .filter(|(k, _)| *k != label as usize)
                .map(|(_, v)| *v)
                .fold(0.0, f32::max);
            Ranked {
                index: first_index + i,
                label,
                predicted: predicted as u8,
                probs: p,
                loss: -(p[label as usize].max(1e-12)).ln(),
                margin: wrong - p[label as usize],
            }
        })
        .collect();
    ranked.sort_by(|a, b| b.loss.total_cmp(&a.loss));
    ranked
}

/// Index of the largest value of `p` (the first on ties, 0 when empty): a probability row's predicted class.
pub fn argmax(p: &[f32]) -> usize {
    p.iter()
        .enumerate()
        .fold(
            (0, f32::MIN),
            |best, (k, &v)| if v > best.1 { (k, v) } else { best },
        )
        .0
}

/// Longest side of a PNG that [`png_to_mnist`] decodes.
pub const PNG_MAX_SIDE: u32 = 4096;
/// Most pixels of a PNG that [`png_to_mnist`] decodes (2048×2048): a few
/// kilobytes of PNG can claim gigapixels, so the header is checked before
/// anything is allocated.
pub const PNG_MAX_PIXELS: u64 = 2048 * 2048;

/// Decodes a PNG of any colour type, up to [`PNG_MAX_SIDE`] a side and
/// [`PNG_MAX_PIXELS`] in all, into the MNIST-style 28×28 the model expects
/// (see [`mnist_data::preprocess`]). Larger images are refused from their
/// header, before decoding.
pub fn png_to_mnist(bytes: &[u8]) -> Result<Vec<u8>, PngError> {
    let open = || {
        let mut reader =
            image::ImageReader::with_format(std::io::Cursor::new(bytes), image::ImageFormat::Png);
        let mut limits = image::Limits::default();
        limits.max_image_width = Some(PNG_MAX_SIDE);
        limits.max_image_height = Some(PNG_MAX_SIDE);
        // The decoded RGBA image plus the decoder's own buffers.
        limits.max_alloc = Some(PNG_MAX_PIXELS * 4 * 2);
        reader.limits(limits);
        reader
    };
    // The header alone: the size it claims, before any limit applies.
    let (w, h) =
        image::ImageReader::with_format(std::io::Cursor::new(bytes), image::ImageFormat::Png)
            .into_dimensions()?;
    if w > PNG_MAX_SIDE || h > PNG_MAX_SIDE || u64::from(w) * u64::from(h) > PNG_MAX_PIXELS {
        return Err(PngError::TooLarge {
            width: w,
            height: h,
        });
    }
    let img = open().decode()?;
    // Transparent pixels (a canvas drawing) count as background, not black ink.
    let rgba = img.to_rgba8();
    let (w, h) = rgba.dimensions();
    let gray: Vec<u8> = rgba
        .pixels()
        .map(|p| {
            let [r, g, b, a] = p.0;
            let luma = (0.299 * r as f32 + 0.587 * g as f32 + 0.114 * b as f32)
                * (a as f32 / 255.0)
                + 255.0 * (1.0 - a as f32 / 255.0);
            luma.round().clamp(0.0, 255.0) as u8
        })
        .collect();
    if w == 0 || h == 0 {
        return Err(PngError::Empty);
    }
    Ok(mnist_data::preprocess::to_mnist(
        &gray, w as usize, h as usize,
    ))
}

/// Fuzzing the PNG path: any bytes, and valid PNGs with bytes flipped, get
/// an answer within the limits, never a panic.
#[cfg(test)]
mod fuzz {
    use super::*;
    use proptest::prelude::*;

    fn png(w: u32, h: u32, seed: u8) -> Vec<u8> {
        let img =
            image::GrayImage::from_fn(w, h, |x, y| image::Luma([(x * 7 + y * 3) as u8 ^ seed]));
        let mut out = std::io::Cursor::new(Vec::new());
        img.write_to(&mut out, image::ImageFormat::Png).unwrap();
        out.into_inner()
    }

    proptest! {
        #[test]
        fn any_bytes_are_answered(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
            let _ = png_to_mnist(&bytes);
        }

        #[test]
        fn damaged_pngs_are_answered(
            w in 1u32..64, h in 1u32..64, seed in any::<u8>(),
            flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..8),
        ) {
            let mut bytes = png(w, h, seed);
            for (at, v) in flips {
                let i = at.index(bytes.len());
                bytes[i] = v;
            }
            if let Ok(px) = png_to_mnist(&bytes) {
                prop_assert_eq!(px.len(), 784);
            }
        }
    }
}
