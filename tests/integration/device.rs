//! `--device`: naming the backend and device, failing fast on one that is
//! not here (CLI and HTTP API alike), and `run_started` recording what was
//! picked and why.

use crate::common::*;
use mnist_events::EventKind;
use serde_json::json;
use std::time::{Duration, Instant};

/// `--device cpu` sets the backend; `run_started` says what ran and why.
#[test]
fn device_cpu_trains_and_run_started_records_the_pick() {
    let work = tempfile::tempdir().unwrap();
    let data = work.path().join("data");
    write_synthetic(&data, 200, 40);
    let out = bin()
        .args([
            "train",
            "--device",
            "cpu",
            "--kernels",
            "4,4,4,4",
            "--epochs",
            "1",
        ])
        .args([
            "--batch-size",
            "20",
            "--val-size",
            "40",
            "--run-id",
            "on-cpu",
        ])
        .args(["--skip-verify", "--hw-interval", "0", "--quiet", "--json"])
        .arg("--data-dir")
        .arg(&data)
        .args(work_dirs(work.path()))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let summary = summary(&out);
    assert_eq!(summary["backend"], "cpu");
    assert_eq!(summary["config"]["backend"], "cpu");
    assert_eq!(summary["config"]["device"], serde_json::Value::Null);
    let events = read_events(&work.path().join("runs/on-cpu/events.jsonl"));
    let EventKind::RunStarted(started) = &events[0].kind else {
        panic!("the first event is not run_started: {:?}", events[0]);
    };
    assert_eq!(started.backend, "cpu");
    assert_eq!(started.device_index, None);
    let reason = started.device_reason.as_deref().unwrap_or_default();
    assert!(reason.contains("cpu"), "{reason}");
    assert_eq!(summary["device_reason"], reason);
}

/// A device this machine lacks, or a `--device` that is no device, fails
/// before any work with exit code 2, naming `--device` and what there is.
#[test]
fn a_device_not_here_fails_fast_and_says_what_there_is() {
    let dir = tempfile::tempdir().unwrap();
    let train = |args: &[&str]| {
        let started = Instant::now();
        let out = bin()
            .arg("train")
            .args(args)
            .args(["--no-download", "--hw-interval", "0"])
            .arg("--data-dir")
            .arg(dir.path().join("nothing-here"))
            .args(work_dirs(dir.path()))
            .output()
            .unwrap();
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "{args:?} was slow"
        );
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", stderr(&out));
        stderr(&out)
    };
    for (args, says) in [
        (&["--device", "tpu"][..], "cuda:N"),
        (&["--device", "cuda:x"], "0..=63"),
        (&["--device", "cuda:99"], "0..=63"),
        (
            &["--backend", "wgpu", "--device", "cuda:0"],
            "backend is \"wgpu\"",
        ),
        (
            &["--backend", "cpu", "--device", "0"],
            "cpu has no device index",
        ),
    ] {
        let err = train(args);
        assert!(
            err.contains("--device") && err.contains(says),
            "{args:?}: {err}"
        );
    }
    // This build's lists of adapters, quick to make; the wgpu backend is not started.
    let err = train(&["--device", "wgpu:7"]);
    assert!(
        err.contains("--device wgpu:7 is not usable here")
            && (err.contains("best first: wgpu:0")
                || err.contains("no GPU adapter")
                || err.contains("not compiled")),
        "{err}"
    );
    if !std::path::Path::new("/dev/nvidiactl").exists() {
        let err = train(&["--device", "cuda:0"]);
        assert!(
            err.contains("--device cuda:0 is not usable here")
                && (err.contains("no NVIDIA driver") || err.contains("not compiled")),
            "{err}"
        );
    }
    assert!(!dir.path().join("runs").exists(), "nothing is written");
}

/// The API takes `device` as an index or as text (`"cuda:1"`); one that
/// is no device, or not here, is a 400 naming `device`.
#[test]
fn the_api_refuses_a_bad_device_with_a_400_naming_it() {
    let work = tempfile::tempdir().unwrap();
    let data = work.path().join("data");
    write_synthetic(&data, 200, 40);
    let mut args = serve_in(&data, work.path());
    args.extend(["--skip-verify".into(), "--hw-interval".into(), "0".into()]);
    let server = spawn_server(args);
    let base = json!({"kernels": [4, 4, 4, 4], "epochs": 1, "batch_size": 20, "val_size": 40});
    for (device, says) in [
        (json!({"backend": "wgpu", "device": 7}), "wgpu:7"),
        (json!({"device": "wgpu:7"}), "wgpu:7"),
        (json!({"device": "cuda:x"}), "0..=63"),
        (json!({"backend": "cuda", "device": 64}), "0..=63"),
        (
            json!({"backend": "cpu", "device": 0}),
            "cpu has no device index",
        ),
        (json!({"backend": "auto", "device": "cuda:0"}), "\"auto\""),
    ] {
        let mut config = base.clone();
        for (k, v) in device.as_object().unwrap() {
            config[k] = v.clone();
        }
        let (code, body) = post(&format!("{}/api/runs", server.base), &config);
        assert_eq!(code, 400, "{device}: {body}");
        let errors = body["errors"].as_array().unwrap();
        assert_eq!(errors.len(), 1, "{device}: {body}");
        assert_eq!(errors[0]["field"], "device", "{device}: {body}");
        let message = errors[0]["message"].as_str().unwrap();
        assert!(message.contains(says), "{device}: {message}");
    }
    let (code, _) = get(&format!("{}/api/health", server.base));
    assert_eq!(code, 200);
}
