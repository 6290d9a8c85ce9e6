//! Nothing lost: a killed, torn, signalled, over-sized or disk-starved run
//! keeps every finished step, one value per step, through the real binary.

use crate::common::*;
use mnist_events::{EventKind, RunStatus};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn tiny_train(data: &Path, work: &Path, extra: &[&str]) -> Command {
    let mut cmd = bin();
    cmd.arg("train");
    for (flag, default) in [("--kernels", "4,8,8,8"), ("--batch-size", "50")] {
        if !extra.contains(&flag) {
            cmd.args([flag, default]);
        }
    }
    cmd.args([
        "--val-size",
        "100",
        "--backend",
        "cpu",
        "--hw-interval",
        "0",
        "--quiet",
        "--data-dir",
    ])
    .arg(data)
    .arg("--skip-verify")
    .args(work_dirs(work))
    .args(extra);
    cmd
}

/// Waits until the log at `log` holds an event for which `done` is true.
fn wait_for(
    log: &Path,
    child: &mut std::process::Child,
    what: &str,
    done: impl Fn(&[mnist_events::Event]) -> bool,
) {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let events = mnist_events::read_events(log).unwrap_or_default();
        if done(&events) {
            return;
        }
        assert!(Instant::now() < deadline, "no {what} within 120 s");
        assert!(
            child.try_wait().unwrap().is_none(),
            "the run ended before {what}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn last_step(events: &[mnist_events::Event]) -> u64 {
    events
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::Batch(b) => Some(b.step),
            _ => None,
        })
        .max()
        .unwrap_or(0)
}

/// `kill -9` in the middle of epoch 2 and in the middle of writing an
/// event, then `--resume`: the torn line is kept aside, the log reads back
/// whole, and the charts, the CSV and the run list keep one value per step
/// (steps 21.. of the killed attempt appeared twice before).
#[test]
fn kill_9_mid_epoch_with_a_torn_line_then_resume_keeps_one_value_per_step() {
    let work = tempfile::tempdir().unwrap();
    let data = work.path().join("data");
    // 80 steps an epoch: a wide window to kill it inside epoch 2 however
    // slow the machine is to notice.
    write_synthetic(&data, 4100, 200);
    let log = work.path().join("runs/torn/events.jsonl");
    let mut child = tiny_train(&data, work.path(), &["--epochs", "3", "--run-id", "torn"])
        .spawn()
        .unwrap();
    wait_for(&log, &mut child, "steps into epoch 2", |e| {
        last_step(e) >= 90
    });
    child.kill().unwrap();
    child.wait().unwrap();
    let killed_at = last_step(&mnist_events::read_events(&log).unwrap());
    assert!(
        killed_at < 160,
        "killed at step {killed_at}, after epoch 2 ended"
    );
    // The process died while writing its next line.
    let fragment = b"{\"seq\":999,\"ts_ms\":1,\"run_id\":\"torn\",\"type\":\"ba";
    std::fs::OpenOptions::new()
        .append(true)
        .open(&log)
        .and_then(|mut f| std::io::Write::write_all(&mut f, fragment))
        .unwrap();

    let out = tiny_train(&data, work.path(), &["--resume", "torn", "--json"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let torn = std::fs::read(log.with_file_name("events.jsonl.torn")).unwrap();
    assert!(torn.starts_with(fragment), "the fragment is kept");
    let read = mnist_events::read_log(&log).unwrap();
    assert!(read.bad_lines.is_empty(), "{:?}", read.bad_lines);
    assert!(
        read.events
            .iter()
            .any(|e| matches!(&e.kind, EventKind::Log(l) if l.message.contains("torn line"))),
        "the repair is reported in the run's log"
    );
    let batch_steps: Vec<u64> = read
        .events
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::Batch(b) => Some(b.step),
            _ => None,
        })
        .collect();
    assert!(
        batch_steps.len() as u64 > last_step(&read.events),
        "the log itself holds the killed attempt's steps {} and their redo",
        killed_at
    );

    // Every consumer keeps one value per step.
    let server = spawn_server(serve_in(&data, work.path()));
    let (_, csv) = get(&format!("{}/api/runs/torn/metrics.csv", server.base));
    let csv_steps: Vec<u64> = csv
        .lines()
        .filter(|l| l.starts_with("batch,"))
        .map(|l| l.split(',').nth(4).unwrap().parse().unwrap())
        .collect();
    assert_eq!(
        csv_steps,
        (1..=240).collect::<Vec<u64>>(),
        "CSV: 3 epochs × 80 steps, once each"
    );
    let mut ws = ws_connect(&server.base, "/ws/runs/torn");
    let snapshot = next_message(&mut ws).unwrap();
    let xs: Vec<u64> = snapshot["series"]["step"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_u64().unwrap())
        .collect();
    assert_eq!(xs, (1..=240).collect::<Vec<u64>>(), "chart series");
    assert_eq!(snapshot["status"], "completed");
    let (_, list) = get(&format!("{}/api/runs", server.base));
    let list: serde_json::Value = serde_json::from_str(&list).unwrap();
    assert!(
        list["runs"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["run_id"] == "torn" && r["status"] == "completed"),
        "the run is listed: {list}"
    );

    // Its id is now taken: a new run under it is refused, nothing touched.
    let before = std::fs::read(&log).unwrap();
    let out = tiny_train(
        &data,
        work.path(),
        &["--epochs", "1", "--run-id", "torn", "--kernels", "8,8,8,8"],
    )
    .output()
    .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("--resume torn"), "{}", stderr(&out));
    assert_eq!(std::fs::read(&log).unwrap(), before, "the log is untouched");
}

/// SIGTERM (kill, systemd, Docker) stops like Ctrl-C: after the batch,
/// with `run_finished` as stopped, so the page does not show it running.
#[test]
fn sigterm_stops_the_run_with_run_finished() {
    let work = tempfile::tempdir().unwrap();
    let data = work.path().join("data");
    write_synthetic(&data, 1100, 200);
    let log = work.path().join("runs/termed/events.jsonl");
    let mut child = tiny_train(
        &data,
        work.path(),
        &["--epochs", "50", "--run-id", "termed", "--json"],
    )
    .stdout(Stdio::piped())
    .spawn()
    .unwrap();
    wait_for(&log, &mut child, "a batch", |e| last_step(e) >= 3);
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(130));
    let events = read_events(&log);
    match &events.last().unwrap().kind {
        EventKind::RunFinished(f) => assert_eq!(f.status, RunStatus::Stopped),
        other => panic!("the log ends with {other:?}"),
    }
    assert_eq!(summary(&out)["status"], "stopped");
}

/// A test set with no images used to "complete" with test accuracy 0.
#[test]
fn an_empty_test_set_is_an_error() {
    let work = tempfile::tempdir().unwrap();
    let data = work.path().join("data");
    write_synthetic(&data, 300, 0);
    let out = tiny_train(&data, work.path(), &["--epochs", "1"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("test"), "{}", stderr(&out));
    assert!(!work.path().join("runs").exists(), "nothing was started");
}

/// A configuration that passes validation but cannot fit in memory once
/// made the allocator abort the process; now it is refused up front, by
/// the CLI and by a server, which lives on.
#[test]
fn a_run_that_cannot_fit_in_memory_is_refused_with_the_figures() {
    let work = tempfile::tempdir().unwrap();
    let data = work.path().join("data");
    write_synthetic(&data, 300, 50);
    let huge = [
        "--epochs",
        "1",
        "--kernels",
        "512,512,512,512",
        "--batch-size",
        "4096",
    ];
    // Under a 6 GB address-space limit (ulimit -v), as a shared box may set.
    let mut cmd = Command::new("sh");
    cmd.arg("-c")
        .arg("ulimit -v 6000000 && exec \"$@\"")
        .arg("sh")
        .arg(env!("CARGO_BIN_EXE_mnist-monitor"));
    let inner = tiny_train(&data, work.path(), &huge);
    cmd.args(inner.get_args());
    let out = cmd.output().unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains("--batch-size") && err.contains("GiB") && err.contains("fits"),
        "{err}"
    );

    let mut server = serve_in(&data, work.path());
    server.push("--skip-verify".into());
    let server = spawn_server(server);
    let (code, body) = post(
        &format!("{}/api/runs", server.base),
        &serde_json::json!({"kernels": [512, 512, 512, 512], "batch_size": 65536, "backend": "cpu",
                            "val_size": 10}),
    );
    assert_eq!(code, 400, "{body}");
    assert_eq!(body["errors"][0]["field"], "batch_size");
    assert!(
        body["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("GiB"),
        "{body}"
    );
    let (code, _) = get(&format!("{}/api/health", server.base));
    assert_eq!(code, 200);
}

/// A `serve` and a `train --serve` on one data directory, both saving
/// label decisions: every decision lands and the file stays valid JSON
/// (64 of 200 writes failed, and the file broke, with one fixed temporary
/// name and a lock within one process).
#[test]
fn two_processes_writing_label_decisions_lose_none() {
    let work = tempfile::tempdir().unwrap();
    let data = work.path().join("data");
    write_synthetic(&data, 400, 50);
    let servers: Vec<Server> = (0..2)
        .map(|i| {
            let mut args = vec![
                "--data-dir".into(),
                data.clone().into_os_string(),
                "--skip-verify".into(),
            ];
            args.extend(work_dirs(&work.path().join(format!("w{i}"))));
            spawn_server(args)
        })
        .collect();
    let writers: Vec<_> = servers
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let url = format!("{}/api/overrides", s.base);
            std::thread::spawn(move || {
                for n in 0..100 {
                    let (code, body) = post(
                        &url,
                        &serde_json::json!({"split": "train", "index": i * 100 + n, "decision": "keep"}),
                    );
                    assert_eq!(code, 200, "{body}");
                }
            })
        })
        .collect();
    for w in writers {
        w.join().unwrap();
    }
    let text = std::fs::read_to_string(data.join("labels-overrides.json")).unwrap();
    let all: serde_json::Value = serde_json::from_str(&text).expect("valid JSON");
    assert_eq!(all["entries"].as_object().unwrap().len(), 200);
}

/// A mounted tmpfs, unmounted on drop.
struct Tmpfs(std::path::PathBuf);

impl Tmpfs {
    fn mount(dir: &Path, size: &str) -> Option<Tmpfs> {
        std::fs::create_dir_all(dir).unwrap();
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir)
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        ok.then(|| Tmpfs(dir.to_path_buf()))
    }

    fn resize(&self, size: &str) {
        let ok = Command::new("mount")
            .args(["-o", &format!("remount,size={size}")])
            .arg(&self.0)
            .status()
            .unwrap();
        assert!(ok.success());
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// A full disk (a 3 MB tmpfs holding the run and its checkpoints) used to
/// end as "completed" with epochs unsaved, temporaries left and the log
/// torn; after freeing space a resume joined the fragment to its first
/// event and the run vanished. Now: failed, with the last good checkpoint
/// and a whole log; after freeing space, `--resume` completes it.
#[test]
fn a_full_disk_fails_the_run_and_keeps_what_was_saved() {
    let work = tempfile::tempdir().unwrap();
    let data = work.path().join("data");
    write_synthetic(&data, 1100, 200);
    let disk = work.path().join("disk");
    let Some(tmpfs) = Tmpfs::mount(&disk, "3m") else {
        eprintln!("skipped: this machine does not let the test mount a tmpfs (needs root)");
        return;
    };
    let out = bin()
        .args([
            "train",
            "--epochs",
            "6",
            "--val-size",
            "100",
            "--kernels",
            "16,32,32,32",
        ])
        .args([
            "--batch-size",
            "50",
            "--backend",
            "cpu",
            "--hw-interval",
            "0",
            "--quiet",
            "--json",
        ])
        .args([
            "--run-id",
            "full",
            "--keep-checkpoints",
            "4",
            "--skip-verify",
            "--data-dir",
        ])
        .arg(&data)
        .arg("--run-dir")
        .arg(disk.join("runs"))
        .arg("--checkpoint-dir")
        .arg(disk.join("ckpt"))
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(1),
        "a full disk fails the run: {}",
        stderr(&out)
    );
    let s = summary(&out);
    assert_eq!(s["status"], "failed");
    let error = s["error"].as_str().unwrap();
    assert!(error.contains("No space left"), "{error}");
    let leftovers: Vec<String> = std::fs::read_dir(disk.join("ckpt/full"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with('.'))
        .collect();
    assert!(
        leftovers.is_empty(),
        "temporary checkpoints removed: {leftovers:?}"
    );
    let saved = mnist_train::checkpoint::list(&disk.join("ckpt/full")).unwrap();
    assert!(
        !saved.is_empty(),
        "the epochs before the disk filled are kept"
    );
    let log = disk.join("runs/full/events.jsonl");
    let read = mnist_events::read_log(&log).unwrap();
    assert!(
        read.bad_lines.is_empty(),
        "the log ends at a whole line: {:?}",
        read.bad_lines
    );

    // Free space, resume: the run completes and stays whole.
    tmpfs.resize("64m");
    let out = bin()
        .args([
            "train",
            "--resume",
            "full",
            "--quiet",
            "--json",
            "--hw-interval",
            "0",
            "--skip-verify",
        ])
        .arg("--data-dir")
        .arg(&data)
        .arg("--run-dir")
        .arg(disk.join("runs"))
        .arg("--checkpoint-dir")
        .arg(disk.join("ckpt"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(summary(&out)["epochs"], 6);
    let read = mnist_events::read_log(&log).unwrap();
    assert!(read.bad_lines.is_empty(), "{:?}", read.bad_lines);
    assert!(matches!(
        &read.events.last().unwrap().kind,
        EventKind::RunFinished(f) if f.status == RunStatus::Completed
    ));
}
