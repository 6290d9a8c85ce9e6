//! Review and labeling, prediction and the sandbox, on a small real MNIST
//! set with deliberately flipped test labels: the ranking, the overrides
//! file (persisted across a restart, applied by the next run), the
//! prediction endpoint against the run's own evaluation, `predict`, and the
//! review page in a real headless Chromium.

use crate::common::*;
use base64::Engine;
use mnist_data::{IdxImages, IdxLabels, Verify, FILES, IMAGE_PIXELS};
use serde_json::{json, Value};
use sha2::Digest;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

/// Test samples whose labels we flip.
const FLIPPED: [usize; 3] = [0, 1, 2];

/// 3,000 real training and 500 real test digits, with three test labels wrong.
fn write_small_real_set(dir: &Path) -> Vec<u8> {
    let real = mnist_data::load_dir(&real_mnist_dir(), Verify::Sha256).unwrap();
    std::fs::create_dir_all(dir).unwrap();
    let (ntrain, ntest) = (3000, 500);
    let mut test_labels = real.test_labels[..ntest].to_vec();
    for &i in &FLIPPED {
        test_labels[i] = (test_labels[i] + 5) % 10;
    }
    let images = |px: &[u8], n: usize| {
        IdxImages {
            count: n,
            rows: 28,
            cols: 28,
            pixels: px[..n * IMAGE_PIXELS].to_vec(),
        }
        .encode()
    };
    std::fs::write(dir.join(FILES[0].name), images(&real.train_images, ntrain)).unwrap();
    std::fs::write(
        dir.join(FILES[1].name),
        IdxLabels {
            labels: real.train_labels[..ntrain].to_vec(),
        }
        .encode(),
    )
    .unwrap();
    std::fs::write(dir.join(FILES[2].name), images(&real.test_images, ntest)).unwrap();
    std::fs::write(
        dir.join(FILES[3].name),
        IdxLabels {
            labels: test_labels.clone(),
        }
        .encode(),
    )
    .unwrap();
    test_labels
}

fn server(data: &Path, work: &Path) -> Server {
    let mut args = serve_in(data, work);
    args.extend(["--skip-verify".into(), "--hw-interval".into(), "0".into()]);
    spawn_server(args)
}

fn events_of(work: &Path, run_id: &str) -> Vec<mnist_events::Event> {
    read_events(&work.join("runs").join(run_id).join("events.jsonl"))
}

fn test_support(events: &[mnist_events::Event]) -> Vec<u64> {
    events
        .iter()
        .rev()
        .find_map(|e| match &e.kind {
            mnist_events::EventKind::Eval(m) if m.split == mnist_events::Split::Test => {
                Some(m.per_class.iter().map(|c| c.support).collect())
            }
            _ => None,
        })
        .unwrap()
}

#[test]
fn review_ranks_wrong_labels_first_overrides_persist_and_apply_and_predictions_match() {
    let work = tempfile::tempdir().unwrap();
    let data = work.path().join("data");
    let test_labels = write_small_real_set(&data);

    // A real (small) model, trained from the command line.
    let out = bin()
        .args([
            "train",
            "--json",
            "--quiet",
            "--skip-verify",
            "--backend",
            "cpu",
            "--kernels",
            "16,32,32,32",
        ])
        .args([
            "--epochs",
            "1",
            "--batch-size",
            "32",
            "--val-size",
            "500",
            "--hw-interval",
            "0",
            "--data-dir",
        ])
        .arg(&data)
        .args(work_dirs(work.path()))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let run_id = summary(&out)["run_id"].as_str().unwrap().to_string();
    let first_events = events_of(work.path(), &run_id);

    let mut srv = server(&data, work.path());
    let base = srv.base.clone();

    // 1. The flipped labels come out on top of the test review queue.
    let (code, body) = get(&format!(
        "{base}/api/runs/{run_id}/review?split=test&limit=5"
    ));
    assert_eq!(code, 200, "{body}");
    let review: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(review["total"], 500);
    let top: Vec<usize> = review["samples"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["index"].as_u64().unwrap() as usize)
        .collect();
    for i in FLIPPED {
        assert!(
            top.contains(&i),
            "flipped test sample {i} is not in the top 5 {top:?}"
        );
    }
    let first = &review["samples"][0];
    assert!(
        first["loss"].as_f64().unwrap() > 2.0 && first["png_base64"].as_str().unwrap().len() > 100
    );
    // Filters: only samples labelled 3.
    let (_, body) = get(&format!(
        "{base}/api/runs/{run_id}/review?split=test&limit=50&label=3"
    ));
    let threes: Value = serde_json::from_str(&body).unwrap();
    assert!(threes["samples"]
        .as_array()
        .unwrap()
        .iter()
        .all(|s| s["label"] == 3));
    assert_eq!(
        threes["total"].as_u64().unwrap() as usize,
        test_labels.iter().filter(|&&l| l == 3).count()
    );
    let (code, body) = get(&format!("{base}/api/runs/{run_id}/review?split=valid"));
    assert_eq!(code, 400);
    assert!(body.contains("\"field\":\"split\""), "{body}");

    // 2. The prediction endpoint classifies the run's sample digits as its
    //    evaluation did.
    let samples = first_events
        .iter()
        .rev()
        .find_map(|e| match &e.kind {
            mnist_events::EventKind::Samples(s) => Some(s.samples.clone()),
            _ => None,
        })
        .unwrap();
    for s in &samples {
        let png = base64::engine::general_purpose::STANDARD
            .decode(&s.png_base64)
            .unwrap();
        let pixels: Vec<u8> = image::load_from_memory(&png).unwrap().to_luma8().into_raw();
        let (code, out) = post(
            &format!("{base}/api/predict"),
            &json!({"pixels": pixels, "run_id": run_id}),
        );
        assert_eq!(code, 200, "{out}");
        assert_eq!(
            out["predicted"].as_u64().unwrap() as u8,
            s.predicted,
            "sample {}",
            s.index
        );
        let p = out["probs"][s.predicted as usize].as_f64().unwrap();
        assert!(
            (p - s.confidence).abs() < 1e-3,
            "confidence {p} vs {}",
            s.confidence
        );
    }
    let (code, out) = post(
        &format!("{base}/api/predict"),
        &json!({"pixels": [1, 2, 3]}),
    );
    assert_eq!(code, 400);
    assert_eq!(out["errors"][0]["field"], "pixels");

    // 3. `predict` on PNG files, with a clear error for a bad one.
    let good = work.path().join("digit.png");
    std::fs::write(
        &good,
        base64::engine::general_purpose::STANDARD
            .decode(&samples[0].png_base64)
            .unwrap(),
    )
    .unwrap();
    let bad = work.path().join("notes.png");
    std::fs::write(&bad, "not a picture").unwrap();
    let out = bin()
        .arg("predict")
        .arg("--checkpoint")
        .arg(work.path().join("ckpt").join(&run_id))
        .arg(&good)
        .arg(&bad)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "one file failed");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains(&format!("digit.png: {} (p = ", samples[0].predicted)),
        "{stdout}"
    );
    assert!(
        stderr(&out).contains("notes.png: not a readable PNG"),
        "{}",
        stderr(&out)
    );

    // 4. Decisions are saved at once, and survive a restart.
    let relabel_to = (test_labels[3] + 1) % 10;
    let (code, out) = post(
        &format!("{base}/api/overrides"),
        &json!({"split": "test", "index": 3, "decision": "relabel", "label": relabel_to}),
    );
    assert_eq!(code, 200, "{out}");
    for i in 0..10 {
        let (code, _) = post(
            &format!("{base}/api/overrides"),
            &json!({"split": "train", "index": i, "decision": "exclude"}),
        );
        assert_eq!(code, 200);
    }
    let (code, out) = post(
        &format!("{base}/api/overrides"),
        &json!({"split": "test", "index": 4, "decision": "keep"}),
    );
    assert_eq!((code, out["reviewed"].as_u64()), (200, Some(2)));
    let (code, out) = post(
        &format!("{base}/api/overrides"),
        &json!({"split": "test", "index": 99999, "decision": "keep"}),
    );
    assert_eq!(code, 400);
    assert_eq!(out["errors"][0]["field"], "index");
    let (code, out) = post(
        &format!("{base}/api/overrides"),
        &json!({"split": "test", "index": 5, "decision": "relabel"}),
    );
    assert_eq!(
        (code, out["errors"][0]["field"].as_str()),
        (400, Some("label"))
    );
    let file = data.join("labels-overrides.json");
    let text = std::fs::read_to_string(&file).unwrap();
    assert!(
        text.contains("\"test:3\": {") && text.contains("\"decision\": \"exclude\""),
        "{text}"
    );

    drop(srv);
    srv = server(&data, work.path());
    let base = srv.base.clone();
    let (_, body) = get(&format!("{base}/api/overrides"));
    let saved: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        saved["entries"].as_object().unwrap().len(),
        12,
        "survived the restart"
    );
    assert_eq!(saved["entries"]["test:3"]["label"], relabel_to);

    // 5. The next run, with overrides applied, trains on the corrected data
    //    and records which file it used.
    let (code, out) = post(
        &format!("{base}/api/runs"),
        &json!({"kernels": [4, 4, 4, 4], "epochs": 1, "batch_size": 64, "backend": "cpu", "val_size": 500, "apply_label_overrides": true}),
    );
    assert_eq!(code, 201, "{out}");
    let second = out["run_id"].as_str().unwrap().to_string();
    let deadline = Instant::now() + Duration::from_secs(120);
    while get(&format!("{base}/api/runs/{second}"))
        .1
        .contains("\"status\":\"running\"")
    {
        assert!(Instant::now() < deadline, "the second run did not finish");
        std::thread::sleep(Duration::from_millis(200));
    }
    let events = events_of(work.path(), &second);
    let started = events
        .iter()
        .find_map(|e| match &e.kind {
            mnist_events::EventKind::RunStarted(s) => Some(s.clone()),
            _ => None,
        })
        .unwrap();
    let used = started
        .label_overrides
        .expect("run_started records the overrides");
    assert_eq!((used.relabelled, used.excluded), (1, 10));
    assert_eq!(
        used.sha256,
        format!("{:x}", sha2::Sha256::digest(std::fs::read(&file).unwrap()))
    );
    assert_eq!(
        started.train_size,
        3000 - 10 - 500,
        "excluded training images are left out"
    );
    let (before, after) = (test_support(&first_events), test_support(&events));
    let original = test_labels[3] as usize;
    assert_eq!(
        after[original] + 1,
        before[original],
        "test sample 3 left class {original}"
    );
    assert_eq!(
        after[relabel_to as usize],
        before[relabel_to as usize] + 1,
        "and joined class {relabel_to}"
    );

    // 6. The review page in Chromium: relabel with the keyboard, draw a digit.
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let shot = std::env::var("CARGO_TARGET_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|_| root.join("target"))
        .join("e2e-review.png");
    let out = Command::new("node")
        .arg(root.join("tests/e2e/review.mjs"))
        .arg(format!("{base}/review.html?run={run_id}"))
        .arg(&shot)
        .env(
            "CHROMIUM",
            std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into()),
        )
        .output()
        .expect("node is needed for the browser test");
    assert!(
        out.status.success(),
        "review page test failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        stderr(&out)
    );
    let relabelled: usize = String::from_utf8_lossy(&out.stdout)
        .trim()
        .rsplit(' ')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    let (_, body) = get(&format!("{base}/api/overrides"));
    let saved: Value = serde_json::from_str(&body).unwrap();
    let entry = &saved["entries"][format!("test:{relabelled}")];
    assert_eq!(
        (entry["decision"].as_str(), entry["label"].as_u64()),
        (Some("relabel"), Some(7)),
        "{saved}"
    );
}
