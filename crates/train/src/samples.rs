//! Sample-prediction thumbnails: 28×28 grayscale PNGs, base64-encoded for the
//! event stream.

use base64::Engine;

/// Number of test images shown after each evaluation.
pub const SAMPLE_COUNT: usize = 16;

/// Test-set positions of the sample images: spread evenly over the test split
/// and fixed for the whole run, so the page shows the same digits improving.
pub fn sample_indices(test_len: usize) -> Vec<usize> {
    let n = SAMPLE_COUNT.min(test_len);
    (0..n).map(|i| i * test_len / n.max(1)).collect()
}

/// Encodes 784 pixels as a base64 PNG.
pub fn png_base64(pixels: &[u8]) -> String {
    let mut png = Vec::new();
    let encoder = image::codecs::png::PngEncoder::new(&mut png);
    image::ImageEncoder::write_image(encoder, pixels, 28, 28, image::ExtendedColorType::L8)
        .expect("encoding 28x28 grayscale into memory cannot fail");
    base64::engine::general_purpose::STANDARD.encode(png)
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine;

    #[test]
    fn indices_are_spread_and_bounded() {
        assert_eq!(
            sample_indices(32),
            (0..16).map(|i| i * 2).collect::<Vec<_>>()
        );
        assert_eq!(sample_indices(3), vec![0, 1, 2]);
        assert!(sample_indices(0).is_empty());
    }

    #[test]
    fn png_decodes_back_to_the_pixels() {
        let pixels: Vec<u8> = (0..784).map(|i| (i % 256) as u8).collect();
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(png_base64(&pixels))
            .unwrap();
        let img = image::load_from_memory(&bytes).unwrap().to_luma8();
        assert_eq!(img.dimensions(), (28, 28));
        assert_eq!(img.into_raw(), pixels);
    }
}
