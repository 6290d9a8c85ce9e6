//! What a trained network does with one digit: each convolution's feature
//! maps, conv1's filters, and a saliency map (the gradient of the
//! predicted class's score with respect to the input pixels), as small
//! PNGs for the page (`GET /api/runs/{id}/inspect`).

use crate::infer::Predictor;
use burn::backend::{Autodiff, Flex};
use burn::module::AutodiffModule;
use burn::tensor::{Tensor, TensorData};
use mnist_data::{normalise, CLASSES, IMAGE_PIXELS};
use mnist_model::Cnn;
use serde::Serialize;

/// One convolution's ReLU output for the digit.
#[derive(Debug, Clone, Serialize)]
pub struct FeatureMaps {
    /// `conv1` … `conv4`.
    pub layer: String,
    /// Channels, height and width.
    pub shape: [usize; 3],
    /// Each channel as a grayscale PNG (base64), scaled to its own maximum.
    pub tiles: Vec<String>,
    /// Each channel's largest value (black tiles are all zero).
    pub max: Vec<f32>,
}

/// The answer of an inspection.
#[derive(Debug, Clone, Serialize)]
pub struct Inspection {
    /// The digit as the network saw it (28×28 grayscale PNG, base64).
    pub input_png: String,
    /// The most probable class.
    pub predicted: usize,
    /// Each class's probability.
    pub probs: [f32; CLASSES],
    /// conv1 … conv4's feature maps.
    pub layers: Vec<FeatureMaps>,
    /// conv1's 3×3 filters as PNGs (base64): mid-grey is 0, white the
    /// largest positive weight of all filters, black the most negative.
    pub filters: Vec<String>,
    /// |∂ score of the predicted class / ∂ pixel| as a 28×28 PNG (base64),
    /// white where a pixel matters most.
    pub saliency_png: String,
    /// The largest |gradient| (what white stands for).
    pub saliency_max: f32,
}

type Ad = Autodiff<Flex>;

/// Inspects one digit (784 raw pixels, 0–255, MNIST-style) with the
/// predictor's weights.
pub fn inspect(p: &Predictor, pixels: &[u8]) -> Inspection {
    let device = Default::default();
    let input: Vec<f32> = normalise(pixels);
    let x = Tensor::<Flex, 4>::from_data(TensorData::new(input.clone(), [1, 1, 28, 28]), &device);
    let traced = p.model().forward_traced(x);
    let probs: Vec<f32> = burn::tensor::activation::softmax(traced.logits, 1)
        .into_data()
        .iter::<f32>()
        .collect();
    let predicted = crate::infer::argmax(&probs);
    let layers = ["conv1", "conv2", "conv3", "conv4"]
        .iter()
        .zip(traced.convs)
        .map(|(name, t)| feature_maps(name, t))
        .collect();
    let (saliency, saliency_max) = saliency(p.model(), input, predicted);
    Inspection {
        input_png: crate::samples::png_base64(pixels),
        predicted,
        probs: probs.try_into().unwrap_or([0.0; CLASSES]),
        layers,
        filters: filters(p.model()),
        saliency_png: png(&saliency, 28, 28),
        saliency_max,
    }
}

/// A layer's `[1, c, h, w]` output as one PNG per channel.
fn feature_maps(layer: &str, t: Tensor<Flex, 4>) -> FeatureMaps {
    let [_, c, h, w] = t.dims();
    let values: Vec<f32> = t.into_data().iter::<f32>().collect();
    let (tiles, max) = values
        .chunks(h * w)
        .map(|ch| {
            let max = ch.iter().fold(0f32, |m, &v| m.max(v));
            let scaled: Vec<u8> = ch
                .iter()
                .map(|&v| {
                    if max > 0.0 {
                        (v / max * 255.0).round() as u8
                    } else {
                        0
                    }
                })
                .collect();
            (png(&scaled, w, h), max)
        })
        .unzip();
    FeatureMaps {
        layer: layer.into(),
        shape: [c, h, w],
        tiles,
        max,
    }
}

/// conv1's filters, on one symmetric scale for all.
fn filters(model: &Cnn<Flex>) -> Vec<String> {
    let w: Vec<f32> = model.conv1.weight.val().into_data().iter::<f32>().collect();
    let m = w.iter().fold(1e-12f32, |m, v| m.max(v.abs()));
    w.chunks(9)
        .map(|f| {
            let px: Vec<u8> = f
                .iter()
                .map(|v| ((v / m + 1.0) * 127.5).round() as u8)
                .collect();
            png(&px, 3, 3)
        })
        .collect()
}

/// |∂ logit[class] / ∂ input| for the normalised input, scaled to 0–255,
/// and its largest value. Dropout is off: this is the trained network.
fn saliency(model: &Cnn<Flex>, input: Vec<f32>, class: usize) -> (Vec<u8>, f32) {
    let device = Default::default();
    let mut model = Cnn::<Ad>::from_inner(model.clone());
    model.dropout1.prob = 0.0;
    model.dropout2.prob = 0.0;
    let x =
        Tensor::<Ad, 4>::from_data(TensorData::new(input, [1, 1, 28, 28]), &device).require_grad();
    let score = model.forward(x.clone()).narrow(1, class, 1).sum();
    let grads = score.backward();
    let g: Vec<f32> = x
        .grad(&grads)
        .map(|g| g.into_data().iter::<f32>().map(f32::abs).collect())
        .unwrap_or_else(|| vec![0.0; IMAGE_PIXELS]);
    let max = g.iter().fold(0f32, |m, &v| m.max(v));
    let scaled = g
        .iter()
        .map(|&v| {
            if max > 0.0 {
                (v / max * 255.0).round() as u8
            } else {
                0
            }
        })
        .collect();
    (scaled, max)
}

/// A grayscale PNG, base64.
fn png(pixels: &[u8], width: usize, height: usize) -> String {
    use base64::Engine;
    let mut out = Vec::new();
    let encoder = image::codecs::png::PngEncoder::new(&mut out);
    image::ImageEncoder::write_image(
        encoder,
        pixels,
        width as u32,
        height as u32,
        image::ExtendedColorType::L8,
    )
    .expect("encoding a small grayscale image into memory cannot fail");
    base64::engine::general_purpose::STANDARD.encode(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use mnist_model::CnnConfig;

    /// The saliency is the gradient: finite differences of the class's
    /// logit agree with it at the pixels that matter most.
    #[test]
    fn the_saliency_is_the_logits_gradient_by_pixel() {
        let device = Default::default();
        <Flex as burn::tensor::backend::Backend>::seed(&device, 3);
        let model: Cnn<Flex> = CnnConfig::new().with_kernels([8, 8, 8, 8]).init(&device);
        let input: Vec<f32> = (0..IMAGE_PIXELS)
            .map(|i| ((i * 7919) % 255) as f32 / 64.0 - 2.0)
            .collect();
        let logit = |x: &[f32]| -> f32 {
            let t =
                Tensor::<Flex, 4>::from_data(TensorData::new(x.to_vec(), [1, 1, 28, 28]), &device);
            model.forward(t).into_data().iter::<f32>().nth(3).unwrap()
        };
        // Parameters are made on first use: use them before copying them.
        logit(&input);
        let (scaled, max) = saliency(&model, input.clone(), 3);
        assert!(max > 0.0);
        let mut top: Vec<usize> = (0..IMAGE_PIXELS).collect();
        top.sort_by_key(|&i| std::cmp::Reverse(scaled[i]));
        for &px in &top[..3] {
            let h = 1e-2;
            let (mut up, mut down) = (input.clone(), input.clone());
            up[px] += h;
            down[px] -= h;
            let numeric = ((logit(&up) - logit(&down)) / (2.0 * h)).abs();
            let analytic = scaled[px] as f32 / 255.0 * max;
            assert!(
                (numeric - analytic).abs() <= 0.05 * max,
                "pixel {px}: finite difference {numeric}, gradient {analytic}"
            );
        }
    }

    #[test]
    fn feature_maps_are_a_tile_per_channel() {
        let device = Default::default();
        let t = Tensor::<Flex, 4>::from_data(
            TensorData::new(
                (0..2 * 4 * 4).map(|v| v as f32).collect::<Vec<f32>>(),
                [1, 2, 4, 4],
            ),
            &device,
        );
        let maps = feature_maps("conv9", t);
        assert_eq!((maps.shape, maps.tiles.len()), ([2, 4, 4], 2));
        assert_eq!(maps.max, vec![15.0, 31.0]);
    }
}
