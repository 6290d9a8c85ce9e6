//! Steering a run while it trains (`POST /api/runs/{id}/control`, the
//! `control` CLI), resuming one from the API after the server was killed,
//! forking one from a checkpoint, and reproducing a steered run: a real
//! `serve` and `train` training tiny real runs on the CPU.

use crate::common::*;
use mnist_events::{ControlAction, Event, EventKind};
use serde_json::{json, Value};
use std::time::{Duration, Instant};

fn config(epochs: usize) -> Value {
    json!({"kernels": [4, 4, 4, 4], "batch_size": 20, "epochs": epochs, "backend": "cpu",
           "val_size": 100, "limit_test": 100, "keep_checkpoints": 50})
}

fn run_state(base: &str, id: &str) -> Value {
    let (_, body) = get(&format!("{base}/api/runs/{id}"));
    serde_json::from_str(&body).unwrap()
}

/// Polls the run until `ok` holds of its details.
fn wait_for(base: &str, id: &str, what: &str, ok: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let v = run_state(base, id);
        if ok(&v) {
            return v;
        }
        assert!(Instant::now() < deadline, "run {id}: never {what}: {v}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn steps(v: &Value) -> u64 {
    v["summary"]["steps"].as_u64().unwrap_or(0)
}

fn control(base: &str, id: &str, body: Value) -> (u16, Value) {
    post(&format!("{base}/api/runs/{id}/control"), &body)
}

fn events_of(work: &std::path::Path, id: &str) -> Vec<Event> {
    read_events(&work.join("runs").join(id).join("events.jsonl"))
}

fn controls(events: &[Event]) -> Vec<&mnist_events::Control> {
    events
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::Control(c) => Some(c),
            _ => None,
        })
        .collect()
}

/// Pause holds the run (no batch, status paused), a new rate applies from
/// the next step, an evaluation and a checkpoint happen between batches,
/// stop-after-epoch ends it after the epoch; bad values are 400s naming
/// the field, a finished run's controls 409s.
#[test]
fn a_run_is_paused_steered_and_stopped_from_the_api_and_the_cli() {
    let work = tempfile::tempdir().unwrap();
    let data = work.path().join("data");
    write_synthetic(&data, 1200, 200);
    let mut args = serve_in(&data, work.path());
    args.push("--skip-verify".into());
    let server = spawn_server(args);
    let base = server.base.as_str();
    let (code, body) = post(&format!("{base}/api/runs"), &config(500));
    assert_eq!(code, 201, "{body}");
    let id = body["run_id"].as_str().unwrap().to_string();
    wait_for(base, &id, "trained 20 steps", |v| steps(v) >= 20);

    let (code, body) = control(base, &id, json!({"action": "pause", "source": "page"}));
    assert_eq!(code, 202, "{body}");
    let paused = wait_for(base, &id, "paused", |v| v["status"] == "paused");
    std::thread::sleep(Duration::from_millis(800));
    let still = run_state(base, &id);
    assert_eq!(still["status"], "paused");
    assert_eq!(
        steps(&still),
        steps(&paused),
        "a paused run trains no batch"
    );

    // Bad values: 400 naming the field, and the run goes on being paused.
    for (body, field) in [
        (json!({"action": "set_lr", "lr": 0}), "lr"),
        (json!({"action": "set_lr", "lr": "NaN"}), "lr"),
        (json!({"action": "set_lr", "lr": 11}), "lr"),
        (json!({"action": "fly"}), "action"),
        (json!({"action": "eval", "split": "train"}), "split"),
        (json!({"action": "pause", "lr": 1}), "lr"),
    ] {
        let (code, answer) = control(base, &id, body.clone());
        assert_eq!(code, 400, "{body}: {answer}");
        assert_eq!(answer["errors"][0]["field"], field, "{body}: {answer}");
    }
    let (code, _) = control(base, "no-such-run", json!({"action": "pause"}));
    assert_eq!(code, 404);

    // The CLI, while paused: a new rate, a test evaluation, a checkpoint.
    let cli = |args: &[&str]| {
        let out = bin()
            .args(["control", &id])
            .args(args)
            .args(["--server", base])
            .output()
            .unwrap();
        assert!(out.status.success(), "control {args:?}: {}", stderr(&out));
    };
    cli(&["lr", "3e-4"]);
    cli(&["eval", "--split", "test"]);
    cli(&["checkpoint"]);
    let bad = bin()
        .args(["control", &id, "lr", "0", "--server", base])
        .output()
        .unwrap();
    assert!(!bad.status.success());
    assert!(
        stderr(&bad).contains("lr: must be a number in (0, 10]"),
        "{}",
        stderr(&bad)
    );
    cli(&["resume"]);
    wait_for(base, &id, "running again", |v| {
        v["status"] == "running" && steps(v) > steps(&paused) + 5
    });
    cli(&["stop-after-epoch"]);
    let ended = wait_ended(base, &id);
    assert_eq!(ended["status"], "stopped", "{ended}");

    let events = events_of(work.path(), &id);
    let done = controls(&events);
    let names: Vec<&str> = done.iter().map(|c| c.action.name()).collect();
    assert_eq!(
        names,
        [
            "pause",
            "set_lr",
            "eval",
            "checkpoint",
            "resume",
            "stop_after_epoch"
        ]
    );
    assert_eq!(done[0].source, "page");
    assert!(done[1..].iter().all(|c| c.source == "cli"));
    let at = done[1].step;
    assert_eq!(done[1].old_lr, Some(1e-3));
    assert!(done[4].paused_seconds.unwrap() >= 0.8, "{:?}", done[4]);
    let mut after = 0;
    for e in &events {
        match &e.kind {
            EventKind::Batch(b) if b.step <= at => assert_eq!(b.lr, 1e-3, "step {}", b.step),
            EventKind::Batch(b) => {
                assert_eq!(b.lr, 3e-4, "step {}", b.step);
                after += 1;
            }
            _ => {}
        }
    }
    assert!(after > 5);
    let test_evals: Vec<u64> = events
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::Eval(m) if m.split == mnist_events::Split::Test => Some(m.step),
            _ => None,
        })
        .collect();
    assert!(
        test_evals.contains(&at),
        "a test evaluation at step {at}: {test_evals:?}"
    );
    let mid = events.iter().find_map(|e| match &e.kind {
        EventKind::Checkpoint(c) if c.batches_into_epoch.is_some() => Some(c.clone()),
        _ => None,
    });
    assert_eq!(mid.expect("a checkpoint between batches").step, at);
    let finished = events.iter().find_map(|e| match &e.kind {
        EventKind::RunFinished(f) => Some(f.clone()),
        _ => None,
    });
    let finished = finished.unwrap();
    let reason = finished.reason.unwrap_or_default();
    assert!(reason.contains("stopped after epoch"), "{reason}");
    assert_eq!(finished.steps % 55, 0, "it ended at an epoch's end");

    let (code, body) = control(base, &id, json!({"action": "pause"}));
    assert_eq!(code, 409, "{body}");
    assert!(
        body["error"].as_str().unwrap().contains("finished"),
        "{body}"
    );
}

/// The server killed mid-run: restarted, the run is interrupted, and
/// `POST /api/runs/{id}/resume` continues it from its checkpoint to the
/// end, its steps going on. A fork of its epoch-1 checkpoint with another
/// learning rate starts at the parent's step, names its parent and lists
/// under `parent:ID`; a fork of a missing epoch or with other kernels is
/// a 400 naming the field.
#[test]
fn a_killed_run_resumes_from_the_api_and_a_checkpoint_forks() {
    let work = tempfile::tempdir().unwrap();
    let data = work.path().join("data");
    write_synthetic(&data, 1200, 200);
    let mut args = serve_in(&data, work.path());
    args.push("--skip-verify".into());
    let server = spawn_server(args.clone());
    let (code, body) = post(&format!("{}/api/runs", server.base), &config(4));
    assert_eq!(code, 201, "{body}");
    let id = body["run_id"].as_str().unwrap().to_string();
    let ckpt = work.path().join("ckpt").join(&id);
    let deadline = Instant::now() + Duration::from_secs(120);
    while !ckpt.join("epoch-0001").join("state.json").exists() {
        assert!(Instant::now() < deadline, "no checkpoint of epoch 1");
        std::thread::sleep(Duration::from_millis(20));
    }
    let mut server = server;
    server.child.kill().unwrap(); // SIGKILL
    server.child.wait().unwrap();

    let server = spawn_server(args);
    let base = server.base.as_str();
    wait_for(base, &id, "listed as interrupted", |v| {
        v["status"] == "interrupted"
    });
    let (code, body) = post(&format!("{base}/api/runs/{id}/resume"), &json!({}));
    assert!(code == 201 || code == 202, "{code} {body}");
    assert_eq!(body["run_id"], id.as_str());
    let ended = wait_ended(base, &id);
    assert_eq!(ended["status"], "completed", "{ended}");
    assert_eq!(ended["summary"]["epochs_completed"], 4);
    assert_eq!(steps(&ended), 4 * 55);
    let (code, body) = post(&format!("{base}/api/runs/{id}/resume"), &json!({}));
    assert_eq!(code, 409, "a completed run does not resume: {body}");

    // Fork epoch 1 with another rate and a fresh optimiser.
    let fork = |body: Value| post(&format!("{base}/api/runs/{id}/fork"), &body);
    let (code, body) = fork(json!({"epoch": 99, "config": {"lr": 5e-4}}));
    assert_eq!(
        (code, body["errors"][0]["field"].clone()),
        (400, json!("epoch")),
        "{body}"
    );
    let (code, body) = fork(json!({"epoch": 1, "config": {"kernels": [8, 8, 8, 8]}}));
    assert_eq!(
        (code, body["errors"][0]["field"].clone()),
        (400, json!("kernels")),
        "{body}"
    );
    let (code, body) = fork(json!({"epoch": 1, "config": {"lr": -1}}));
    assert_eq!(
        (code, body["errors"][0]["field"].clone()),
        (400, json!("lr")),
        "{body}"
    );
    let (code, body) = fork(json!({"epoch": 1, "optimizer_state": "maybe"}));
    assert_eq!(code, 400, "{body}");
    // Adam's moments cannot load into SGD: keeping them is refused up front.
    let (code, body) = fork(json!({"epoch": 1, "config": {"optimizer": "sgd", "epochs": 3}}));
    assert_eq!(
        (code, body["errors"][0]["field"].clone()),
        (400, json!("optimizer_state")),
        "{body}"
    );
    let (code, body) =
        fork(json!({"epoch": 1, "config": {"lr": 5e-4, "epochs": 3}, "optimizer_state": "reset"}));
    assert!(code == 201 || code == 202, "{code} {body}");
    let child = body["run_id"].as_str().unwrap().to_string();
    assert_ne!(child, id);
    let ended = wait_ended(base, &child);
    assert_eq!(ended["status"], "completed", "{ended}");
    let events = events_of(work.path(), &child);
    let started = events
        .iter()
        .find_map(|e| match &e.kind {
            EventKind::RunStarted(r) => Some(r.clone()),
            _ => None,
        })
        .unwrap();
    let parent = started.parent.expect("the child names its parent");
    assert_eq!(
        (parent.run_id.as_str(), parent.epoch, parent.step),
        (id.as_str(), 1, 55)
    );
    assert!(!parent.optimizer_state);
    assert_eq!(started.config["lr"], 5e-4);
    let batch_steps: Vec<u64> = events
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::Batch(b) => Some(b.step),
            _ => None,
        })
        .collect();
    assert_eq!(
        batch_steps.first(),
        Some(&56),
        "the child goes on from the parent's step"
    );
    assert_eq!(batch_steps.last(), Some(&165));
    let (_, list) = get(&format!("{base}/api/runs?q=parent:{id}"));
    let list: Value = serde_json::from_str(&list).unwrap();
    assert_eq!(list["total"], 1, "{list}");
    assert_eq!(list["runs"][0]["run_id"], child.as_str());
    assert_eq!(list["runs"][0]["parent"]["run_id"], id.as_str());
}

/// `train --reproduce` of a run whose rate was changed mid-epoch from the
/// CLI replays the change at the same step: its first epoch matches.
#[test]
fn reproducing_a_steered_run_replays_its_controls() {
    let work = tempfile::tempdir().unwrap();
    let data = work.path().join("data");
    write_synthetic(&data, 1200, 200);
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let mut train = bin()
        .args(["train", "--data-dir"])
        .arg(&data)
        .args(work_dirs(work.path()))
        .args([
            "--skip-verify",
            "--quiet",
            "--backend",
            "cpu",
            "--kernels",
            "4,4,4,4",
        ])
        .args([
            "--batch-size",
            "20",
            "--epochs",
            "2",
            "--val-size",
            "100",
            "--limit-test",
            "100",
        ])
        .args([
            "--run-id",
            "steered",
            "--serve",
            &format!("127.0.0.1:{port}"),
        ])
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    let paused = loop {
        let out = bin()
            .args(["control", "steered", "pause", "--server", &base])
            .output()
            .unwrap();
        if out.status.success() {
            break true;
        }
        assert!(Instant::now() < deadline, "{}", stderr(&out));
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(paused);
    let out = bin()
        .args(["control", "steered", "lr", "2e-4", "--server", &base])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let out = bin()
        .args(["control", "steered", "resume", "--server", &base])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(train.wait().unwrap().success());
    let original = events_of(work.path(), "steered");
    let set = controls(&original)
        .into_iter()
        .find(|c| matches!(c.action, ControlAction::SetLr { .. }))
        .expect("the rate change is logged")
        .step;
    assert!(set < 55, "changed within epoch 1 (step {set})");

    let out = bin()
        .args(["train", "--data-dir"])
        .arg(&data)
        .args(work_dirs(work.path()))
        .args([
            "--skip-verify",
            "--quiet",
            "--json",
            "--reproduce",
            "steered",
            "--run-id",
            "again",
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let answer = summary(&out);
    assert_eq!(answer["reproduce"]["matches"], true, "{answer}");
    let again = events_of(work.path(), "again");
    let replayed = controls(&again);
    assert_eq!(replayed.len(), 1, "only the rate change is replayed");
    assert_eq!(
        (replayed[0].step, replayed[0].source.as_str()),
        (set, "reproduce")
    );
}

/// The page steers a run in Chromium (`tests/e2e/steer.mjs`): pause (no
/// batch, no ETA), resume, a new learning rate with its marks on the
/// charts, stop after the epoch, then a fork of epoch 1 from the Fork
/// panel that opens, goes on from the parent's step and sits under its
/// parent in the Runs table. Then a run whose server was killed after its
/// first checkpoint is continued from the page's Resume button
/// (`tests/e2e/resume_button.mjs`) and completes. Screenshots in
/// `target/e2e/`.
#[test]
fn the_page_pauses_steers_forks_and_resumes_a_run() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    assert!(
        root.join("web/node_modules/playwright-core").is_dir(),
        "playwright-core is missing: run `npm ci --prefix web` (as .ci/run does)"
    );
    let chromium = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    assert!(
        std::path::Path::new(&chromium).exists(),
        "{chromium} is missing: apt-get install chromium (as .ci/run does)"
    );
    let shots = std::env::var("CARGO_TARGET_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|_| root.join("target"))
        .join("e2e");
    std::fs::create_dir_all(&shots).unwrap();

    // 6,000 training images in batches of 20: 300 steps an epoch, time
    // enough to click between batches and epochs.
    let work = tempfile::tempdir().unwrap();
    let data = work.path().join("data");
    write_synthetic(&data, 6200, 200);
    let mut args = serve_in(&data, work.path());
    args.push("--skip-verify".into());
    let server = spawn_server(args);
    let out = run_e2e("steer.mjs", [server.base.as_str(), shots.to_str().unwrap()]);
    assert!(out.contains("\"child\""), "{out}");
    drop(server);
    for name in [
        "steer-paused.png",
        "steer-lr-marker.png",
        "fork.png",
        "tree.png",
    ] {
        let len = std::fs::metadata(shots.join(name))
            .map(|m| m.len())
            .unwrap_or(0);
        assert!(len > 10_000, "no real screenshot {name} ({len} bytes)");
    }

    // A run whose server is killed (SIGKILL) after its first checkpoint,
    // the server restarted on the same folders.
    let work2 = tempfile::tempdir().unwrap();
    let mut args = serve_in(&data, work2.path());
    args.push("--skip-verify".into());
    let mut server = spawn_server(args.clone());
    let mut cfg = config(6);
    cfg["limit_train"] = json!(6000);
    let (code, body) = post(&format!("{}/api/runs", server.base), &cfg);
    assert_eq!(code, 201, "{body}");
    let id = body["run_id"].as_str().unwrap().to_string();
    let ckpt = work2
        .path()
        .join("ckpt")
        .join(&id)
        .join("epoch-0001")
        .join("state.json");
    let deadline = Instant::now() + Duration::from_secs(120);
    while !ckpt.exists() {
        assert!(Instant::now() < deadline, "no checkpoint of epoch 1");
        std::thread::sleep(Duration::from_millis(10));
    }
    server.child.kill().unwrap(); // SIGKILL
    server.child.wait().unwrap();
    drop(server);

    let server = spawn_server(args);
    let base = server.base.as_str();
    wait_for(base, &id, "listed as interrupted and resumable", |v| {
        v["status"] == "interrupted" && v["can_resume"] == true
    });
    let shot = shots.join("resume.png");
    let out = run_e2e(
        "resume_button.mjs",
        [base, id.as_str(), shot.to_str().unwrap()],
    );
    assert!(out.contains("\"status\":\"completed\""), "{out}");
    let ended = run_state(base, &id);
    assert_eq!(ended["status"], "completed", "{ended}");
    assert_eq!(ended["summary"]["epochs_completed"], 6, "{ended}");
}
