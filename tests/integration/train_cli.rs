//! `mnist-monitor train` end to end: validation, real training, events,
//! checkpoints and resume after a kill.

use crate::common::*;
use mnist_events::{EventKind, RunStatus};
use std::time::{Duration, Instant};

#[test]
fn invalid_flags_are_rejected_before_any_work() {
    let dir = tempfile::tempdir().unwrap();
    let cases: &[(&[&str], &str, &str)] = &[
        (&["--batch-size", "0"], "--batch-size", "1..=65536"),
        (&["--lr", "-0.1"], "--lr", "(0, 10]"),
        (&["--lr", "0"], "--lr", "(0, 10]"),
        (&["--kernels", "32,64,0,600"], "--kernels", "1..=512"),
        (&["--epochs", "0"], "--epochs", "1..=10000"),
        (&["--momentum", "1.5"], "--momentum", "[0, 1)"),
        (&["--optimizer", "rmsprop"], "--optimizer", "adam"),
        (&["--backend", "tpu"], "--backend", "cuda"),
        (&["--kernels", "32,64"], "--kernels", "four comma-separated"),
    ];
    for (args, flag, range) in cases {
        let out = bin()
            .arg("train")
            .args(*args)
            .arg("--run-dir")
            .arg(dir.path().join("runs"))
            .arg("--data-dir")
            .arg(dir.path().join("nothing-here"))
            .arg("--no-download")
            .output()
            .unwrap();
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(
            err.contains(flag) && err.contains(range),
            "{args:?} should name {flag} and {range}: {err}"
        );
    }
    assert!(
        !dir.path().join("runs").exists(),
        "a rejected run must not create its run directory"
    );
}

#[test]
fn bad_data_gets_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    write_synthetic(dir.path(), 50, 10);
    // Truncate the test labels: the header promises 10 labels.
    let labels = dir.path().join("t10k-labels-idx1-ubyte");
    let mut bytes = std::fs::read(&labels).unwrap();
    bytes.truncate(12);
    std::fs::write(&labels, bytes).unwrap();
    let out = bin()
        .args([
            "train",
            "--skip-verify",
            "--val-size",
            "10",
            "--backend",
            "cpu",
            "--data-dir",
        ])
        .arg(dir.path())
        .output()
        .unwrap();
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("t10k-labels-idx1-ubyte is malformed") && err.contains("truncated"),
        "{err}"
    );

    std::fs::remove_file(&labels).unwrap();
    let out = bin()
        .args(["train", "--no-download", "--backend", "cpu", "--data-dir"])
        .arg(dir.path())
        .output()
        .unwrap();
    let err = stderr(&out);
    assert!(
        err.contains("t10k-labels-idx1-ubyte is missing")
            && err.contains(&dir.path().display().to_string()),
        "{err}"
    );

    // The real file names with the wrong content fail verification by name.
    write_synthetic(dir.path(), 50, 10);
    let out = bin()
        .args(["train", "--no-download", "--backend", "cpu", "--data-dir"])
        .arg(dir.path())
        .output()
        .unwrap();
    let err = stderr(&out);
    assert!(err.contains("train-images-idx3-ubyte is corrupt"), "{err}");
}

#[test]
fn short_real_training_learns_and_logs_every_event() {
    let work = tempfile::tempdir().unwrap();
    let out = bin()
        .args([
            "train",
            "--epochs",
            "1",
            "--limit-train",
            "2560",
            "--limit-val",
            "500",
            "--limit-test",
            "1000",
            "--batch-size",
            "64",
            "--backend",
            "cpu",
            "--json",
            "--run-id",
            "real-short",
        ])
        .arg("--data-dir")
        .arg(real_mnist_dir())
        .args(work_dirs(work.path()))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let summary = summary(&out);
    let accuracy = summary["test_accuracy"].as_f64().unwrap();
    assert!(
        accuracy > 0.8,
        "one epoch on 2,560 real digits should reach well above chance: {summary}"
    );
    assert_eq!(summary["params"], 225_162);
    assert_eq!(summary["backend"], "cpu");
    assert!(summary["images_per_sec"].as_f64().unwrap() > 0.0);

    let events = read_events(&work.path().join("runs/real-short/events.jsonl"));
    let seqs: Vec<u64> = events.iter().map(|e| e.seq).collect();
    assert_eq!(
        seqs,
        (1..=events.len() as u64).collect::<Vec<_>>(),
        "seq is 1, 2, 3, …"
    );
    assert!(matches!(events[0].kind, EventKind::RunStarted(_)));
    let EventKind::RunFinished(finished) = &events.last().unwrap().kind else {
        panic!("last event must be run_finished");
    };
    assert_eq!(finished.status, RunStatus::Completed);
    assert_eq!(finished.test_accuracy, Some(accuracy));

    let batches: Vec<_> = events
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::Batch(b) => Some(b),
            _ => None,
        })
        .collect();
    assert_eq!(
        batches.len(),
        40,
        "2,560 images / 64 = 40 batches, each reported"
    );
    assert!(batches
        .iter()
        .enumerate()
        .all(|(i, b)| b.step == i as u64 + 1 && b.batches == 40));
    let (first, last) = (batches[0], batches[39]);
    assert!(
        last.epoch_loss < first.loss,
        "loss falls: {} -> {}",
        first.loss,
        last.epoch_loss
    );
    assert!(batches
        .iter()
        .all(|b| (0.0..=1.0).contains(&b.accuracy) && (0.0..=1.0).contains(&b.f1_macro)));

    let evals: Vec<_> = events
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::Eval(m) => Some(m),
            _ => None,
        })
        .collect();
    assert_eq!(
        evals.len(),
        2,
        "validation after the epoch, test at the end"
    );
    let test = evals[1];
    assert_eq!(test.images, 1000);
    let total: u64 = test.confusion.iter().flatten().sum();
    assert_eq!(
        total, 1000,
        "the confusion matrix counts every test image once"
    );
    assert_eq!(test.per_class.iter().map(|c| c.support).sum::<u64>(), 1000);
    assert!(
        test.mse > 0.0 && test.mse < 0.1,
        "softmax-vs-one-hot MSE of a trained model: {}",
        test.mse
    );

    let samples = events
        .iter()
        .find_map(|e| match &e.kind {
            EventKind::Samples(s) => Some(s),
            _ => None,
        })
        .expect("a samples event");
    assert_eq!(samples.samples.len(), 16);
    use base64::Engine;
    let png = base64::engine::general_purpose::STANDARD
        .decode(&samples.samples[0].png_base64)
        .unwrap();
    assert_eq!(&png[1..4], b"PNG");
    let right = samples
        .samples
        .iter()
        .filter(|s| s.label == s.predicted)
        .count();
    assert!(
        right >= 10,
        "most sample predictions are right after an epoch: {right}/16"
    );
    assert!(events
        .iter()
        .any(|e| matches!(&e.kind, EventKind::Checkpoint(c) if c.epoch == 1 && c.best)));
    assert!(work
        .path()
        .join("ckpt/real-short/epoch-0001/model.mpk")
        .is_file());
}

#[test]
fn killed_run_resumes_from_its_last_checkpoint() {
    let work = tempfile::tempdir().unwrap();
    let data = work.path().join("data");
    write_synthetic(&data, 1100, 200);
    let common_args = |cmd: &mut std::process::Command| {
        cmd.arg("--data-dir")
            .arg(&data)
            .arg("--skip-verify")
            .args(work_dirs(work.path()));
    };
    let mut cmd = bin();
    cmd.args([
        "train",
        "--epochs",
        "6",
        "--val-size",
        "100",
        "--kernels",
        "4,8,8,8",
        "--batch-size",
        "50",
        "--backend",
        "cpu",
        "--keep-checkpoints",
        "2",
        "--run-id",
        "killed",
        "--quiet",
    ]);
    common_args(&mut cmd);
    let mut child = cmd.spawn().unwrap();
    let log = work.path().join("runs/killed/events.jsonl");
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        if text.contains("\"type\":\"checkpoint\"") {
            break;
        }
        assert!(Instant::now() < deadline, "no checkpoint within 120 s");
        assert!(
            child.try_wait().unwrap().is_none(),
            "run ended before it could be killed"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let before = read_events(&log);
    assert!(
        !before
            .iter()
            .any(|e| matches!(e.kind, EventKind::RunFinished(_))),
        "a killed run logs no end"
    );

    let mut cmd = bin();
    cmd.args(["train", "--resume", "killed", "--json", "--quiet"]);
    common_args(&mut cmd);
    let out = cmd.output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let summary = summary(&out);
    assert_eq!(summary["epochs"], 6);
    assert_eq!(
        summary["config"]["kernels"],
        serde_json::json!([4, 8, 8, 8]),
        "the stored config is used"
    );
    assert!(
        summary["test_accuracy"].as_f64().unwrap() > 0.5,
        "{summary}"
    );

    let after = read_events(&log);
    let seqs: Vec<u64> = after.iter().map(|e| e.seq).collect();
    assert_eq!(
        seqs,
        (1..=after.len() as u64).collect::<Vec<_>>(),
        "seq continues without gap or repeat"
    );
    let resumed_from = after[before.len()..]
        .iter()
        .find_map(|e| match &e.kind {
            EventKind::RunStarted(s) => s.resumed_from_epoch,
            _ => None,
        })
        .expect("the resumed part starts with run_started");
    assert!(
        (1..6).contains(&resumed_from),
        "resumed after epoch {resumed_from}"
    );
    let first_batch = after[before.len()..].iter().find_map(|e| match &e.kind {
        EventKind::Batch(b) => Some(b),
        _ => None,
    });
    let first_batch = first_batch.expect("the resumed run trains");
    assert_eq!(first_batch.epoch, resumed_from + 1);
    assert_eq!(
        first_batch.step,
        resumed_from as u64 * 20 + 1,
        "20 steps per epoch, counted across the resume"
    );

    let mut kept: Vec<String> = std::fs::read_dir(work.path().join("ckpt/killed"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.starts_with("epoch-"))
        .collect();
    kept.sort();
    assert!(
        kept.len() <= 3 && kept.ends_with(&["epoch-0005".into(), "epoch-0006".into()]),
        "newest 2 plus the best: {kept:?}"
    );
}

#[test]
fn resume_of_an_unknown_run_says_so() {
    let work = tempfile::tempdir().unwrap();
    let out = bin()
        .args(["train", "--resume", "no-such-run", "--checkpoint-dir"])
        .arg(work.path())
        .output()
        .unwrap();
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2));
    assert!(err.contains("no checkpoint of run no-such-run"), "{err}");
}

#[test]
fn config_file_and_flags_combine() {
    let work = tempfile::tempdir().unwrap();
    let file = work.path().join("run.toml");
    std::fs::write(&file, "batch_size = 0\noptimizer = \"sgd\"\n").unwrap();
    let out = bin()
        .arg("train")
        .arg("--config")
        .arg(&file)
        .output()
        .unwrap();
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        err.contains("field batch_size") && err.contains("1..=65536"),
        "{err}"
    );

    // A flag overrides the file's bad value; the run then trains with SGD from the file.
    let data = work.path().join("data");
    write_synthetic(&data, 300, 50);
    let out = bin()
        .arg("train")
        .arg("--config")
        .arg(&file)
        .args([
            "--batch-size",
            "50",
            "--epochs",
            "1",
            "--val-size",
            "50",
            "--kernels",
            "4,4,4,4",
            "--backend",
            "cpu",
            "--skip-verify",
            "--json",
            "-q",
        ])
        .arg("--data-dir")
        .arg(&data)
        .args(work_dirs(work.path()))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let summary = summary(&out);
    assert_eq!(summary["config"]["optimizer"], "sgd");
    assert_eq!(summary["config"]["batch_size"], 50);
    assert_eq!(summary["steps"], 5);
}

/// The flags, their help and the defaults come from mnist-train's one table
/// of fields: every field is a flag, and the default its help states is
/// `TrainConfig::default()`'s.
#[test]
fn help_states_every_fields_range_and_the_configs_default() {
    let out = bin().args(["train", "--help"]).output().unwrap();
    let help = String::from_utf8_lossy(&out.stdout).to_string();
    let defaults = serde_json::to_value(mnist_train::TrainConfig::default()).unwrap();
    for field in mnist_train::config::FIELDS {
        let flag = format!("--{}", field.name.replace('_', "-"));
        let line = help
            .lines()
            .find(|l| l.trim_start().starts_with(&format!("{flag} ")) || l.trim() == flag)
            .unwrap_or_else(|| panic!("{flag} missing from train --help:\n{help}"));
        let full: String = help[help.find(line).unwrap()..]
            .lines()
            .take(3)
            .collect::<Vec<_>>()
            .join(" ");
        let default = &defaults[field.name];
        let shown = match default {
            serde_json::Value::Bool(_) => continue,
            serde_json::Value::Null if field.name == "device" => "auto".to_string(),
            serde_json::Value::Null => "all".to_string(),
            serde_json::Value::String(s) => s.clone(),
            serde_json::Value::Array(ks) => ks
                .iter()
                .map(|k| k.to_string())
                .collect::<Vec<_>>()
                .join(","),
            v => v.to_string(),
        };
        assert!(
            full.contains(&format!("[default: {shown}]")),
            "{flag}: help should state the default {shown}: {full}"
        );
        if let mnist_train::config::FieldKind::Integer { min, max } = field.kind {
            if max < u64::MAX {
                assert!(full.contains(&format!("{min}..={max}")), "{flag}: {full}");
            }
        }
    }
}

/// Trains `args` in `work` (synthetic data, CPU) and returns its `--json` summary.
fn train_json(
    work: &std::path::Path,
    data: &std::path::Path,
    args: &[&str],
) -> (Option<i32>, serde_json::Value, String) {
    let out = bin()
        .arg("train")
        .args(args)
        .args([
            "--backend",
            "cpu",
            "--json",
            "--quiet",
            "--skip-verify",
            "--hw-interval",
            "0",
        ])
        .arg("--data-dir")
        .arg(data)
        .args(work_dirs(work))
        .output()
        .unwrap();
    let err = stderr(&out);
    let json = serde_json::from_slice(&out.stdout).unwrap_or(serde_json::Value::Null);
    (out.status.code(), json, err)
}

#[test]
fn reproduce_reruns_a_run_with_its_config_and_seed_and_compares_the_first_epoch() {
    let work = tempfile::tempdir().unwrap();
    let data = work.path().join("data");
    write_synthetic(&data, 300, 60);
    let (code, first, err) = train_json(
        work.path(),
        &data,
        &[
            "--run-id",
            "orig",
            "--kernels",
            "4,4,4,4",
            "--epochs",
            "2",
            "--batch-size",
            "16",
            "--val-size",
            "60",
            "--seed",
            "7",
            "--lr",
            "0.003",
        ],
    );
    assert_eq!(code, Some(0), "{err}");
    // Same configuration and seed, one epoch: the first epoch matches.
    let (code, again, err) = train_json(
        work.path(),
        &data,
        &["--reproduce", "orig", "--epochs", "1"],
    );
    assert_eq!(code, Some(0), "{err}");
    assert!(err.contains("the first epoch matches"), "{err}");
    let r = &again["reproduce"];
    assert_eq!(r["matches"], true, "{again}");
    assert_eq!(r["steps_compared"], 15, "{again}");
    assert_eq!(again["config"]["kernels"], first["config"]["kernels"]);
    assert_eq!(again["config"]["seed"], 7);
    assert_eq!(again["config"]["lr"], 0.003);
    assert_ne!(again["run_id"], "orig", "a new run");
    // A log that no longer matches what training gives is reported, exit 4.
    let log = work.path().join("runs/orig/events.jsonl");
    let tampered: String = std::fs::read_to_string(&log)
        .unwrap()
        .lines()
        .map(|l| {
            let mut e: serde_json::Value = serde_json::from_str(l).unwrap();
            if e["type"] == "batch" && e["step"] == 5 {
                e["loss"] = (e["loss"].as_f64().unwrap() * 1.01).into();
            }
            e.to_string() + "\n"
        })
        .collect();
    std::fs::write(&log, tampered).unwrap();
    let (code, differs, err) = train_json(
        work.path(),
        &data,
        &["--reproduce", "orig", "--epochs", "1"],
    );
    assert_eq!(code, Some(4), "{err}");
    assert_eq!(differs["reproduce"]["matches"], false);
    assert_eq!(differs["reproduce"]["worst_at"], "step 5 loss", "{differs}");
    assert!(err.contains("the first epoch differs"), "{err}");
    // Nothing to reproduce: said, exit 2.
    let (code, _, err) = train_json(work.path(), &data, &["--reproduce", "nope"]);
    assert_eq!(code, Some(2));
    assert!(err.contains("no run nope"), "{err}");
}

/// A gzip bomb: a small `.gz` whose header promises 60,000 images and whose
/// data inflates far past them. It is refused after reading one byte more
/// than the header promises (the message says "at least 47040001"; the whole
/// file used to be inflated into memory first), and the reason is said once.
#[test]
fn a_gzip_bombed_idx_file_is_refused_without_inflating_it() {
    use std::io::Write;
    let work = tempfile::tempdir().unwrap();
    let data = work.path().join("data");
    write_synthetic(&data, 100, 20);
    let name = mnist_data::FILES[0].name;
    std::fs::remove_file(data.join(name)).unwrap();
    let file = std::fs::File::create(data.join(format!("{name}.gz"))).unwrap();
    let mut gz = flate2::write::GzEncoder::new(file, flate2::Compression::fast());
    for v in [0x803u32, 60_000, 28, 28] {
        gz.write_all(&v.to_be_bytes()).unwrap();
    }
    let zeros = vec![0u8; 1 << 20];
    for _ in 0..(60_000 * 784 / (1 << 20) + 64) {
        gz.write_all(&zeros).unwrap();
    }
    gz.finish().unwrap();
    let out = bin()
        .args([
            "train",
            "--skip-verify",
            "--backend",
            "cpu",
            "--epochs",
            "1",
            "--data-dir",
        ])
        .arg(&data)
        .args(work_dirs(work.path()))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let err = stderr(&out);
    let reason = "at least 47040001 bytes of data follow where the header promises 47040000";
    assert!(err.contains(reason), "{err}");
    assert_eq!(
        err.matches("bytes of data follow").count(),
        1,
        "said once: {err}"
    );
}

/// `export`: a trained run's model as safetensors in PyTorch's names and
/// shapes, with the normalisation and the kernels in its metadata.
#[test]
fn export_writes_safetensors_in_pytorch_s_names_and_shapes() {
    let work = tempfile::tempdir().unwrap();
    let data = work.path().join("data");
    write_synthetic(&data, 200, 40);
    let out = bin()
        .args([
            "train",
            "--backend",
            "cpu",
            "--epochs",
            "2",
            "--batch-size",
            "16",
        ])
        .args([
            "--kernels",
            "4,5,6,7",
            "--val-size",
            "40",
            "--quiet",
            "--hw-interval",
            "0",
        ])
        .args(["--skip-verify", "--run-id", "exp", "--data-dir"])
        .arg(&data)
        .args(work_dirs(work.path()))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let file = work.path().join("model.safetensors");
    let export = |extra: &[&str]| {
        bin()
            .args(["export", "exp", "-o"])
            .arg(&file)
            .arg("--checkpoint-dir")
            .arg(work.path().join("ckpt"))
            .args(extra)
            .output()
            .unwrap()
    };
    let out = export(&["--epoch", "1"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let bytes = std::fs::read(&file).unwrap();
    // The format: an 8-byte little-endian header length, a JSON header.
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let header: serde_json::Value = serde_json::from_slice(&bytes[8..8 + n]).unwrap();
    let shape = |name: &str| header[name]["shape"].clone();
    assert_eq!(shape("conv1.weight"), serde_json::json!([4, 1, 3, 3]));
    assert_eq!(shape("conv2.weight"), serde_json::json!([5, 4, 3, 3]));
    assert_eq!(shape("conv4.bias"), serde_json::json!([7]));
    assert_eq!(shape("fc1.weight"), serde_json::json!([128, 112]));
    assert_eq!(shape("fc2.weight"), serde_json::json!([10, 128]));
    assert_eq!(header["fc2.bias"]["dtype"], "F32");
    let meta = &header["__metadata__"];
    assert_eq!(meta["kernels"], "4,5,6,7");
    assert_eq!(meta["epoch"], "1");
    assert!(
        meta["normalisation"].as_str().unwrap().contains("0.1307"),
        "{meta}"
    );
    // ONNX: the same tensors as initializers, opset 13, the metadata.
    let onnx = work.path().join("model.onnx");
    let out = bin()
        .args(["export", "exp", "--format", "onnx", "--epoch", "1", "-o"])
        .arg(&onnx)
        .arg("--checkpoint-dir")
        .arg(work.path().join("ckpt"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let model = mnist_onnx::read(&std::fs::read(&onnx).unwrap()).unwrap();
    assert_eq!(model.opset_import[0].version, Some(13));
    let graph = model.graph.unwrap();
    let dims = |name: &str| {
        graph
            .initializer
            .iter()
            .find(|t| t.name.as_deref() == Some(name))
            .map(|t| t.dims.clone())
    };
    assert_eq!(dims("conv2.weight"), Some(vec![5, 4, 3, 3]));
    assert_eq!(dims("fc1.weight"), Some(vec![128, 112]));
    let meta = |key: &str| {
        let entry = model
            .metadata_props
            .iter()
            .find(|p| p.key.as_deref() == Some(key));
        entry.and_then(|p| p.value.clone())
    };
    assert_eq!(meta("kernels").as_deref(), Some("4,5,6,7"));
    assert_eq!(meta("epoch").as_deref(), Some("1"));
    let out = export(&["--epoch", "9"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("no checkpoint of epoch 9"),
        "{}",
        stderr(&out)
    );
}

/// The validation evaluations of a run's log, as (epoch, loss, accuracy).
fn val_evals(events: &[mnist_events::Event]) -> Vec<(usize, f64, f64)> {
    events
        .iter()
        .filter_map(|e| match &e.kind {
            mnist_events::EventKind::Eval(m) if m.split == mnist_events::Split::Val => {
                Some((m.epoch, m.loss, m.accuracy))
            }
            _ => None,
        })
        .collect()
}

fn run_finished(events: &[mnist_events::Event]) -> mnist_events::RunFinished {
    events
        .iter()
        .find_map(|e| match &e.kind {
            mnist_events::EventKind::RunFinished(f) => Some(f.clone()),
            _ => None,
        })
        .expect("run_finished")
}

/// Early stopping on a short real run: it stops at the first epoch where
/// the validation loss has not fallen by --min-delta for --patience
/// epochs (worked out here from the logged evaluations), completed, with a
/// test evaluation at that epoch and a reason saying why; a target
/// accuracy stops at the first epoch that reaches it.
#[test]
fn early_stopping_and_a_target_end_a_real_run_where_they_should() {
    let work = tempfile::tempdir().unwrap();
    let train = |id: &str, extra: &[&str]| {
        let out = bin()
            .args(["train", "--kernels", "4,4,4,4", "--batch-size", "50"])
            .args([
                "--limit-train",
                "1000",
                "--val-size",
                "1000",
                "--limit-test",
                "500",
            ])
            .args([
                "--backend",
                "cpu",
                "--quiet",
                "--hw-interval",
                "0",
                "--run-id",
                id,
            ])
            .args(extra)
            .arg("--data-dir")
            .arg(real_mnist_dir())
            .args(work_dirs(work.path()))
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", stderr(&out));
        read_events(&work.path().join("runs").join(id).join("events.jsonl"))
    };
    // A high rate on a tiny model plateaus fast: the loss stops falling
    // by 0.02 well before 40 epochs.
    let events = train(
        "early",
        &[
            "--epochs",
            "40",
            "--lr",
            "0.01",
            "--early-stop",
            "val_loss",
            "--patience",
            "3",
            "--min-delta",
            "0.02",
        ],
    );
    let evals = val_evals(&events);
    let (patience, delta) = (3, 0.02_f64);
    let mut best = f64::INFINITY;
    let mut since = 0;
    let mut expected = None;
    for &(epoch, loss, _) in &evals {
        if best - loss >= delta.max(f64::MIN_POSITIVE) {
            (best, since) = (loss, 0);
        } else {
            since += 1;
        }
        if since >= patience {
            expected = Some(epoch);
            break;
        }
    }
    let finished = run_finished(&events);
    assert_eq!(finished.status, mnist_events::RunStatus::Completed);
    assert!(
        finished.epochs_completed < 40,
        "it stopped early: {finished:?}"
    );
    assert_eq!(Some(finished.epochs_completed), expected, "{evals:?}");
    let reason = finished.reason.clone().unwrap_or_default();
    assert!(
        reason.starts_with("early stop: validation loss did not improve"),
        "{reason}"
    );
    assert!(
        finished.test_accuracy.is_some(),
        "tested at the epoch it stopped"
    );

    let events = train("target", &["--epochs", "30", "--target-accuracy", "0.6"]);
    let evals = val_evals(&events);
    let first = evals.iter().find(|(_, _, acc)| *acc >= 0.6).map(|e| e.0);
    let finished = run_finished(&events);
    assert_eq!(Some(finished.epochs_completed), first, "{evals:?}");
    assert!(finished
        .reason
        .unwrap_or_default()
        .starts_with("target reached"));
}

/// A deliberately diverging real run (`--lr 10`) gets an alert whose
/// diagnosis names the layer whose gradient norm rose first, by how much,
/// the learning rate then and a lower one to try.
#[test]
fn a_diverging_run_gets_a_diagnosis_that_names_a_layer() {
    let work = tempfile::tempdir().unwrap();
    let out = bin()
        .args([
            "train",
            "--epochs",
            "1",
            "--lr",
            "10",
            "--limit-train",
            "3200",
        ])
        .args([
            "--val-size",
            "500",
            "--limit-test",
            "500",
            "--backend",
            "cpu",
        ])
        .args([
            "--quiet",
            "--hw-interval",
            "0",
            "--run-id",
            "diverge",
            "--data-dir",
        ])
        .arg(real_mnist_dir())
        .args(work_dirs(work.path()))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let events = read_events(&work.path().join("runs/diverge/events.jsonl"));
    let alert = events
        .iter()
        .find_map(|e| match &e.kind {
            mnist_events::EventKind::Alert(a) if a.diagnosis.is_some() => Some(a.clone()),
            _ => None,
        })
        .expect("an alert with a diagnosis");
    let d = alert.diagnosis.unwrap();
    let layer = d.layer.clone().expect("a layer named");
    assert!(mnist_events::LAYERS.contains(&layer.as_str()), "{layer}");
    assert!(!d.rise.is_finite() || d.rise >= 10.0, "{d:?}");
    assert_eq!(d.lr, 10.0);
    assert!(d.suggestion.contains("--lr 1"), "{}", d.suggestion);
    assert!(
        alert
            .message
            .contains(&format!("{layer}'s gradient norm rose first")),
        "{}",
        alert.message
    );
    let samples = events
        .iter()
        .filter(|e| matches!(e.kind, mnist_events::EventKind::Layers(_)))
        .count();
    assert!(samples >= 2, "layer samples at steps 1 and 2 at least");
}
