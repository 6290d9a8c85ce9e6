//! A test digit saved as a picture the way people make one (dark ink on
//! white, four times larger, off-centre on a 100×100 canvas) gets the
//! answer its raw pixels get: `predict` on 1,000 real test digits in each
//! form, against the same digits as 28×28 pictures, with a model trained
//! here. Goal (issue 22): at most 1% answered differently in each form.

use crate::common::*;
use image::{imageops, GrayImage, Luma};
use mnist_data::{Verify, IMAGE_PIXELS, IMAGE_SIDE};
use std::collections::HashMap;
use std::path::Path;

/// Test digits per form.
const DIGITS: usize = 1000;
/// Where they start in the test set (past the digits the run evaluates).
const FIRST: usize = 2000;

fn raw(px: &[u8]) -> GrayImage {
    let side = IMAGE_SIDE as u32;
    GrayImage::from_fn(side, side, |x, y| Luma([px[(y * side + x) as usize]]))
}

/// The forms people make: each a picture of the raw digit.
fn forms(px: &[u8], i: usize) -> [(&'static str, GrayImage); 4] {
    let digit = raw(px);
    let mut dark_on_white = digit.clone();
    imageops::invert(&mut dark_on_white);
    // An image editor's smooth enlargement.
    let larger = imageops::resize(&digit, 112, 112, imageops::FilterType::Triangle);
    // Somewhere off the middle of a 100×100 canvas, the place varying.
    let mut canvas = GrayImage::new(100, 100);
    let (x, y) = (5 + (i * 37) % 60, 8 + (i * 53) % 60);
    imageops::overlay(&mut canvas, &digit, x as i64, y as i64);
    [
        ("raw", digit),
        ("dark_on_white", dark_on_white),
        ("four_times_larger", larger),
        ("off_centre_100", canvas),
    ]
}

/// A short real run's checkpoint folder.
fn trained(work: &Path) -> std::path::PathBuf {
    let out = bin()
        .args([
            "train",
            "--json",
            "--quiet",
            "--backend",
            "cpu",
            "--epochs",
            "1",
        ])
        .args([
            "--limit-train",
            "12800",
            "--val-size",
            "0",
            "--limit-test",
            "100",
        ])
        .args(["--hw-interval", "0", "--data-dir"])
        .arg(real_mnist_dir())
        .args(work_dirs(work))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let run = summary(&out)["run_id"].as_str().unwrap().to_string();
    work.join("ckpt").join(run)
}

#[test]
fn pictures_of_test_digits_get_the_answers_of_their_raw_pixels() {
    let work = tempfile::tempdir().unwrap();
    let checkpoint = trained(work.path());
    let real = mnist_data::load_dir(&real_mnist_dir(), Verify::Skip).unwrap();
    let pics = work.path().join("pictures");
    std::fs::create_dir_all(&pics).unwrap();
    let mut files = Vec::new();
    for i in FIRST..FIRST + DIGITS {
        let px = &real.test_images[i * IMAGE_PIXELS..(i + 1) * IMAGE_PIXELS];
        for (form, picture) in forms(px, i) {
            let file = pics.join(format!("{form}-{i}.png"));
            picture.save(&file).unwrap();
            files.push(file);
        }
    }
    let out = bin()
        .args(["predict", "--json", "--checkpoint"])
        .arg(&checkpoint)
        .args(&files)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let answers: HashMap<String, u64> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .map(|v| {
            let name = Path::new(v["file"].as_str().unwrap()).file_stem().unwrap();
            (
                name.to_string_lossy().into_owned(),
                v["predicted"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(answers.len(), files.len());
    let mut report = Vec::new();
    for form in ["dark_on_white", "four_times_larger", "off_centre_100"] {
        let differ: Vec<usize> = (FIRST..FIRST + DIGITS)
            .filter(|i| answers[&format!("{form}-{i}")] != answers[&format!("raw-{i}")])
            .collect();
        report.push((form, differ.len() as f64 / DIGITS as f64, differ));
    }
    eprintln!("answered differently from the raw pixels: {report:?}");
    for (form, share, differ) in &report {
        assert!(
            *share <= 0.01,
            "{form}: {:.1}% of {DIGITS} test digits answered differently (at most 1%): {differ:?}",
            share * 100.0
        );
    }
}
