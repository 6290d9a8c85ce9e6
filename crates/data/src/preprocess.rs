//! Any picture of a digit → the 28×28 the model expects, the way MNIST was
//! made: white digit on black, its bounding box scaled to fit 20×20 (aspect
//! kept, anti-aliased), then placed so that its centre of mass is the centre
//! of the 28×28 field.

use crate::{IMAGE_PIXELS, IMAGE_SIDE};

/// Pixels at or below this (after inversion) count as background.
const INK: u8 = 24;

/// `gray` is `width × height` 8-bit luminance. Dark-on-light pictures (a
/// photo of paper, a drawing on white) are inverted first. An empty picture
/// gives an all-black 28×28.
pub fn to_mnist(gray: &[u8], width: usize, height: usize) -> Vec<u8> {
    assert_eq!(gray.len(), width * height, "gray is width × height");
    let mut img: Vec<u8> = gray.to_vec();
    // MNIST digits are light on dark: decide by the border, which is background.
    let border: Vec<u8> = (0..width)
        .flat_map(|x| [img[x], img[(height - 1) * width + x]])
        .chain((0..height).flat_map(|y| [img[y * width], img[y * width + width - 1]]))
        .collect();
    let border_mean = border.iter().map(|&v| v as f64).sum::<f64>() / border.len().max(1) as f64;
    if border_mean > 127.0 {
        for v in &mut img {
            *v = 255 - *v;
        }
    }
    // Bounding box of the ink.
    let (mut x0, mut y0, mut x1, mut y1) = (width, height, 0, 0);
    for y in 0..height {
        for x in 0..width {
            if img[y * width + x] > INK {
                x0 = x0.min(x);
                y0 = y0.min(y);
                x1 = x1.max(x);
                y1 = y1.max(y);
            }
        }
    }
    if x0 > x1 {
        return vec![0; IMAGE_PIXELS];
    }
    let (bw, bh) = (x1 - x0 + 1, y1 - y0 + 1);
    // Already an MNIST digit (28×28, light on dark, its ink within 20×20):
    // cropping it at the ink threshold and scaling it again would cut its
    // faint edge and stretch it, and shift a weak model's answers. Keep it,
    // moved only if its centre of mass is more than a pixel off.
    if (width, height) == (IMAGE_SIDE, IMAGE_SIDE) && bw.max(bh) <= 20 {
        return recentre(&img);
    }
    let (small, sw, sh) = fit_20(&img, width, height, x0, y0, bw, bh);
    // Centre of mass of the scaled digit.
    let (mut mass, mut cx, mut cy) = (0.0, 0.0, 0.0);
    for y in 0..sh {
        for x in 0..sw {
            let v = small[y * sw + x] as f64;
            mass += v;
            cx += v * x as f64;
            cy += v * y as f64;
        }
    }
    let (cx, cy) = if mass > 0.0 {
        (cx / mass, cy / mass)
    } else {
        (sw as f64 / 2.0, sh as f64 / 2.0)
    };
    // Place it so the centre of mass lands where MNIST's do (pixel index
    // 14 on both axes), as close as the field allows: the same place
    // `recentre` keeps a raw digit at, so a digit off-centre on a larger
    // canvas comes back to its raw pixels.
    let ox = ((MNIST_CENTRE - cx).round() as i64).clamp(0, (IMAGE_SIDE - sw) as i64) as usize;
    let oy = ((MNIST_CENTRE - cy).round() as i64).clamp(0, (IMAGE_SIDE - sh) as i64) as usize;
    let mut out = vec![0u8; IMAGE_PIXELS];
    for y in 0..sh {
        for x in 0..sw {
            out[(oy + y) * IMAGE_SIDE + ox + x] = small[y * sw + x];
        }
    }
    out
}

/// Where MNIST puts a digit's centre of mass, in pixel indices (measured
/// on the 10,000 test digits: 14.0 ± 0.5 on both axes, see the test).
const MNIST_CENTRE: f64 = 14.0;

/// A 28×28 picture moved by whole pixels so that its centre of mass is
/// within a pixel of MNIST's; unchanged when it already is.
fn recentre(img: &[u8]) -> Vec<u8> {
    let (mut mass, mut cx, mut cy) = (0.0, 0.0, 0.0);
    for (i, &v) in img.iter().enumerate() {
        let v = v as f64;
        mass += v;
        cx += v * (i % IMAGE_SIDE) as f64;
        cy += v * (i / IMAGE_SIDE) as f64;
    }
    let shift = |c: f64| {
        let d = MNIST_CENTRE - c / mass;
        if d.abs() <= 1.0 {
            0
        } else {
            d.round() as i64
        }
    };
    let (dx, dy) = (shift(cx), shift(cy));
    if (dx, dy) == (0, 0) {
        return img.to_vec();
    }
    let side = IMAGE_SIDE as i64;
    let mut out = vec![0u8; IMAGE_PIXELS];
    for y in 0..side {
        for x in 0..side {
            let (sx, sy) = (x - dx, y - dy);
            if (0..side).contains(&sx) && (0..side).contains(&sy) {
                out[(y * side + x) as usize] = img[(sy * side + sx) as usize];
            }
        }
    }
    out
}

/// The ink's box (`bw × bh` at `x0`, `y0`) with its longer side fit to 20
/// pixels, as MNIST's digits were, and its size. Shrinking, the grid of
/// output cells is laid where it gives the sharpest digit: a picture that
/// was an MNIST digit enlarged (k× larger, any filter) comes back to its
/// pixels only when each output cell covers the k × k block one pixel
/// became; a grid laid from the ink's thresholded edge falls half a block
/// off and blurs every stroke. The edge also overstates the size by the
/// enlargement's spill, so slightly smaller cells are tried too.
fn fit_20(
    img: &[u8],
    width: usize,
    height: usize,
    x0: usize,
    y0: usize,
    bw: usize,
    bh: usize,
) -> (Vec<u8>, usize, usize) {
    let long = bw.max(bh) as f64;
    if long <= 20.0 {
        return fit_from_edge(img, width, x0, y0, bw, bh);
    }
    let base = long / 20.0;
    // Eight phases and seven sizes a few percent apart: about 5 M pixel
    // reads for a 4× digit; a large photo (cells over 8 pixels) tries one.
    let (phases, sizes) = if base <= 8.0 { (8, 7) } else { (1, 1) };
    let mut best: Option<(f64, Vec<u8>, usize, usize)> = None;
    for size in 0..sizes {
        let cell = base * (1.0 - 0.01 * size as f64);
        // Where the grid may start on an axis whose ink begins at `at`: at
        // the ink's edge, or at one of `phases` offsets from the origin.
        let starts = |at: usize| -> Vec<f64> {
            let at = at as f64;
            std::iter::once(at)
                .chain((0..phases).map(|p| {
                    let offset = p as f64 * cell / phases as f64;
                    offset + ((at - offset) / cell).floor() * cell
                }))
                .collect()
        };
        for &ys in &starts(y0) {
            for &xs in &starts(x0) {
                let sw = ((x0 as f64 + bw as f64 - xs) / cell).ceil() as usize;
                let sh = ((y0 as f64 + bh as f64 - ys) / cell).ceil() as usize;
                if sw.max(sh) > 22 {
                    continue;
                }
                let out = resample_cells(img, width, height, (xs, ys), cell, sw, sh);
                let (mass, square) = out.iter().fold((0.0, 0.0), |(m, q), &v| {
                    (m + v as f64, q + (v as f64) * (v as f64))
                });
                let sharpness = square / mass.max(1.0);
                if best.as_ref().is_none_or(|b| sharpness > b.0) {
                    best = Some((sharpness, out, sw, sh));
                }
            }
        }
    }
    match best {
        Some((_, out, sw, sh)) => (out, sw, sh),
        None => fit_from_edge(img, width, x0, y0, bw, bh),
    }
}

/// The ink's box with its longer side scaled to 20 pixels on a grid laid
/// from the ink's edge (enlarging, or when no searched grid fits).
fn fit_from_edge(
    img: &[u8],
    width: usize,
    x0: usize,
    y0: usize,
    bw: usize,
    bh: usize,
) -> (Vec<u8>, usize, usize) {
    let scale = 20.0 / bw.max(bh) as f64;
    let (sw, sh) = (
        ((bw as f64 * scale).round() as usize).max(1),
        ((bh as f64 * scale).round() as usize).max(1),
    );
    (resample_area(img, width, x0, y0, bw, bh, sw, sh), sw, sh)
}

/// Box-filter resampling onto `sw × sh` square cells of side `cell` whose
/// grid starts at `origin` (in source pixels): each output pixel averages
/// the source area its cell covers, outside the picture counting as
/// background.
fn resample_cells(
    img: &[u8],
    width: usize,
    height: usize,
    origin: (f64, f64),
    cell: f64,
    sw: usize,
    sh: usize,
) -> Vec<u8> {
    let span = |start: f64, limit: usize| {
        let lo = start.max(0.0).floor() as usize;
        let hi = ((start + cell).ceil().max(0.0) as usize).min(limit);
        (lo, hi)
    };
    let cover = |p: usize, start: f64| (start + cell).min(p as f64 + 1.0) - start.max(p as f64);
    let mut out = vec![0u8; sw * sh];
    for oy in 0..sh {
        let sy = origin.1 + oy as f64 * cell;
        let (ylo, yhi) = span(sy, height);
        for ox in 0..sw {
            let sx = origin.0 + ox as f64 * cell;
            let (xlo, xhi) = span(sx, width);
            let mut acc = 0.0;
            for y in ylo..yhi {
                let wy = cover(y, sy).max(0.0);
                for x in xlo..xhi {
                    acc += wy * cover(x, sx).max(0.0) * img[y * width + x] as f64;
                }
            }
            out[oy * sw + ox] = (acc / (cell * cell)).round().clamp(0.0, 255.0) as u8;
        }
    }
    out
}

/// Box-filter resampling of a `bw × bh` window at (`x0`, `y0`) to `sw × sh`:
/// each output pixel averages the source area it covers (anti-aliased when
/// shrinking, nearest-like when enlarging).
#[allow(clippy::too_many_arguments)]
fn resample_area(
    img: &[u8],
    width: usize,
    x0: usize,
    y0: usize,
    bw: usize,
    bh: usize,
    sw: usize,
    sh: usize,
) -> Vec<u8> {
    let mut out = vec![0u8; sw * sh];
    let (fx, fy) = (bw as f64 / sw as f64, bh as f64 / sh as f64);
    for oy in 0..sh {
        let (sy0, sy1) = (oy as f64 * fy, (oy + 1) as f64 * fy);
        for ox in 0..sw {
            let (sx0, sx1) = (ox as f64 * fx, (ox + 1) as f64 * fx);
            let (mut acc, mut area) = (0.0, 0.0);
            let mut y = sy0.floor() as usize;
            while (y as f64) < sy1 && y < bh {
                let wy = (sy1.min(y as f64 + 1.0) - sy0.max(y as f64)).max(0.0);
                let mut x = sx0.floor() as usize;
                while (x as f64) < sx1 && x < bw {
                    let wx = (sx1.min(x as f64 + 1.0) - sx0.max(x as f64)).max(0.0);
                    acc += wx * wy * img[(y0 + y) * width + x0 + x] as f64;
                    area += wx * wy;
                    x += 1;
                }
                y += 1;
            }
            out[oy * sw + ox] = if area > 0.0 {
                (acc / area).round().clamp(0.0, 255.0) as u8
            } else {
                0
            };
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn centre_of_mass(img: &[u8]) -> (f64, f64) {
        let (mut m, mut cx, mut cy) = (0.0, 0.0, 0.0);
        for (i, &v) in img.iter().enumerate() {
            let v = v as f64;
            m += v;
            cx += v * (i % 28) as f64;
            cy += v * (i / 28) as f64;
        }
        (cx / m, cy / m)
    }

    fn bbox(img: &[u8]) -> (usize, usize) {
        let ink: Vec<usize> = (0..784).filter(|&i| img[i] > INK).collect();
        let xs = ink.iter().map(|i| i % 28);
        let ys = ink.iter().map(|i| i / 28);
        (
            xs.clone().max().unwrap() - xs.min().unwrap() + 1,
            ys.clone().max().unwrap() - ys.min().unwrap() + 1,
        )
    }

    #[test]
    fn an_off_centre_dark_on_light_stroke_is_inverted_scaled_and_centred() {
        // A 200×120 white canvas with a black vertical bar near the top-left.
        let (w, h) = (200, 120);
        let mut img = vec![255u8; w * h];
        for y in 5..65 {
            for x in 10..25 {
                img[y * w + x] = 0;
            }
        }
        let out = to_mnist(&img, w, h);
        let (cx, cy) = centre_of_mass(&out);
        assert!(
            (cx - 13.5).abs() <= 1.0 && (cy - 13.5).abs() <= 1.0,
            "centre of mass ({cx}, {cy})"
        );
        let (bw, bh) = bbox(&out);
        assert_eq!(bh, 20, "the long side is scaled to 20");
        assert!((4..=6).contains(&bw), "aspect kept: width {bw}");
        assert!(out[0] == 0 && out[783] == 0, "background is black");
    }

    #[test]
    fn a_blank_picture_is_blank() {
        assert!(to_mnist(&vec![255u8; 50 * 50], 50, 50)
            .iter()
            .all(|&v| v == 0));
    }

    #[test]
    fn real_mnist_digits_go_through_unchanged() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../datasets/mnist");
        let Ok(data) = crate::load_dir(&dir, crate::Verify::Skip) else {
            eprintln!("skipped: no MNIST in {}", dir.display());
            return;
        };
        let (mut same, mut sum) = (0, (0.0, 0.0));
        let n = data.test_labels.len();
        for digit in data.test_images.chunks(IMAGE_PIXELS) {
            let (cx, cy) = centre_of_mass(digit);
            sum = (sum.0 + cx, sum.1 + cy);
            if to_mnist(digit, 28, 28) == digit {
                same += 1;
            }
        }
        let mean = (sum.0 / n as f64, sum.1 / n as f64);
        assert!(
            (mean.0 - MNIST_CENTRE).abs() < 0.5 && (mean.1 - MNIST_CENTRE).abs() < 0.5,
            "MNIST's centre of mass is {mean:?}"
        );
        assert!(same * 1000 >= n * 995, "{same} of {n} unchanged");
    }

    #[test]
    fn an_mnist_digit_stays_about_where_it_is() {
        // A light-on-dark 28×28 blob already centred: stays centred.
        let mut img = vec![0u8; 784];
        for y in 4..24 {
            for x in 10..18 {
                img[y * 28 + x] = 255;
            }
        }
        let out = to_mnist(&img, 28, 28);
        let (cx, cy) = centre_of_mass(&out);
        assert!(
            (cx - 13.5).abs() <= 1.0 && (cy - 13.5).abs() <= 1.0,
            "({cx}, {cy})"
        );
    }
}
