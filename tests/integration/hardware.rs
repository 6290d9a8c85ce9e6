//! Hardware telemetry and alerts, on this real machine: `stats`, hardware
//! events in a run's stream, `/ws/hardware`, and the NaN-loss alert with its
//! webhook and `--stop-on-nan`.

use crate::common::*;
use serde_json::Value;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::process::Stdio;
use std::time::{Duration, Instant};

fn mem_total_bytes() -> u64 {
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap();
    let kib: u64 = meminfo
        .lines()
        .find(|l| l.starts_with("MemTotal:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .unwrap()
        .parse()
        .unwrap();
    kib * 1024
}

#[test]
fn stats_json_reports_this_machine_and_why_there_is_no_gpu() {
    let work = tempfile::tempdir().unwrap();
    let out = bin()
        .args(["stats", "--json", "--watch-dir"])
        .arg(work.path())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let s: Value = serde_json::from_slice(&out.stdout).unwrap();
    let cores = std::thread::available_parallelism().unwrap().get();
    assert_eq!(s["cpu"]["cores"], cores);
    assert_eq!(
        s["cpu"]["per_core_percent"].as_array().unwrap().len(),
        cores
    );
    let usage = s["cpu"]["usage_percent"].as_f64().unwrap();
    assert!((0.0..=100.0).contains(&usage), "{usage}");
    let total = s["memory"]["total_bytes"].as_u64().unwrap();
    assert_eq!(
        total / 1024 / 1024,
        mem_total_bytes() / 1024 / 1024,
        "memory total matches /proc/meminfo"
    );
    assert!(s["memory"]["used_bytes"].as_u64().unwrap() < total);
    assert!(
        s["process"]["rss_bytes"].as_u64().unwrap() > 1 << 20,
        "our own RSS is real"
    );
    let net = s["network"].as_array().unwrap();
    assert!(
        net.iter().any(|n| n["interface"] == "lo"),
        "loopback is listed: {net:?}"
    );
    // The watched directory is placed on a real disk with free space.
    let watched = std::fs::canonicalize(work.path()).unwrap();
    let disk = s["disks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| {
            d["holds"]
                .as_array()
                .is_some_and(|h| h.iter().any(|p| p == watched.to_str().unwrap()))
        })
        .unwrap_or_else(|| panic!("no disk holds {}: {}", watched.display(), s["disks"]));
    assert!(disk["available_bytes"].as_u64().unwrap() > 0);
    // GPUs: either NVML lists them, or the reason there are none is given.
    let gpus = s["gpus"].as_array().unwrap();
    if gpus.is_empty() {
        let reason = s["gpu_error"]
            .as_str()
            .expect("gpu_error explains the empty list");
        assert!(reason.starts_with("no NVIDIA GPU: "), "{reason}");
    } else {
        assert!(s.get("gpu_error").is_none());
        assert!(gpus[0]["memory_total_bytes"].as_u64().unwrap() > 0);
    }

    // The terminal view says the same in words.
    let out = bin().arg("stats").output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success());
    assert!(text.contains(&format!("of {cores} cores")), "{text}");
    assert!(
        text.contains("no NVIDIA GPU: ") || text.contains("[0] "),
        "{text}"
    );
}

#[test]
fn stats_watch_prints_one_json_line_per_interval() {
    let mut child = bin()
        .args(["stats", "--watch", "--json", "--interval", "0.2"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut stamps = Vec::new();
    for _ in 0..3 {
        let line = lines.next().unwrap().unwrap();
        let v: Value = serde_json::from_str(&line).unwrap();
        stamps.push(v["sampled_at_ms"].as_u64().unwrap());
        assert!(v["interval_s"].as_f64().unwrap() > 0.1);
    }
    let _ = child.kill();
    let _ = child.wait();
    assert!(stamps.windows(2).all(|w| w[1] > w[0]), "{stamps:?}");
}

#[test]
fn bad_intervals_and_webhooks_are_refused_naming_the_flag() {
    let out = bin()
        .args(["stats", "--watch", "--interval", "0"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("--interval") && stderr(&out).contains("0.2..=3600"),
        "{}",
        stderr(&out)
    );

    let out = bin()
        .args(["train", "--hw-interval", "0.01"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("--hw-interval") && stderr(&out).contains("0 (off) or 0.2..=3600"),
        "{}",
        stderr(&out)
    );

    let work = tempfile::tempdir().unwrap();
    let data = work.path().join("data");
    write_synthetic(&data, 200, 100);
    let out = bin()
        .args([
            "train",
            "--skip-verify",
            "--alert-webhook",
            "ftp://example.org/x",
            "--data-dir",
        ])
        .arg(&data)
        .arg("--run-dir")
        .arg(work.path().join("runs"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("--alert-webhook") && stderr(&out).contains("http://"),
        "{}",
        stderr(&out)
    );
    assert!(!work.path().join("runs").exists(), "nothing was started");
}

#[test]
fn a_run_streams_hardware_events_until_it_finishes() {
    let work = tempfile::tempdir().unwrap();
    let data = work.path().join("data");
    write_synthetic(&data, 1200, 200);
    let runs = work.path().join("runs");
    let out = bin()
        .args([
            "train",
            "--json",
            "--quiet",
            "--skip-verify",
            "--backend",
            "cpu",
            "--kernels",
            "8,8,8,8",
        ])
        .args([
            "--epochs",
            "2",
            "--batch-size",
            "20",
            "--val-size",
            "200",
            "--hw-interval",
            "0.2",
        ])
        .arg("--data-dir")
        .arg(&data)
        .arg("--run-dir")
        .arg(&runs)
        .arg("--checkpoint-dir")
        .arg(work.path().join("ckpt"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let s = summary(&out);
    let events = read_events(
        &runs
            .join(s["run_id"].as_str().unwrap())
            .join("events.jsonl"),
    );
    let hw: Vec<_> = events
        .iter()
        .filter_map(|e| match &e.kind {
            mnist_events::EventKind::Hardware(h) => Some((e.seq, h)),
            _ => None,
        })
        .collect();
    assert!(
        !hw.is_empty(),
        "no hardware events in {} events",
        events.len()
    );
    let finished = events.last().unwrap();
    assert!(
        matches!(finished.kind, mnist_events::EventKind::RunFinished(_)),
        "run_finished is last"
    );
    assert!(
        events.windows(2).all(|w| w[1].seq == w[0].seq + 1),
        "one gap-free sequence across threads"
    );
    assert!(hw[0].1.process.pid > 0 && hw[0].1.process.rss_bytes > 0);
    assert_eq!(
        hw[0].1.cpu.cores,
        std::thread::available_parallelism().unwrap().get()
    );
}

/// A one-connection-at-a-time HTTP endpoint that records request bodies.
fn webhook_receiver() -> (String, std::sync::mpsc::Receiver<Value>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let mut stream = stream.unwrap();
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut length = 0;
            loop {
                let mut line = String::new();
                reader.read_line(&mut line).unwrap();
                if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                    length = v.trim().parse().unwrap();
                }
                if line == "\r\n" || line.is_empty() {
                    break;
                }
            }
            let mut body = vec![0; length];
            reader.read_exact(&mut body).unwrap();
            let _ = stream
                .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n");
            let _ = tx.send(serde_json::from_slice(&body).unwrap());
        }
    });
    (url, rx)
}

fn diverging_run(
    work: &std::path::Path,
    extra: &[&str],
) -> (std::process::Output, Vec<mnist_events::Event>) {
    let runs = work.join("runs");
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
            "640",
            "--limit-val",
            "100",
            "--limit-test",
            "100",
            "--batch-size",
            "32",
        ])
        // SGD at the largest allowed rate with heavy momentum diverges within a few batches.
        .args(["--optimizer", "sgd", "--lr", "10", "--momentum", "0.9"])
        .args(extra)
        .arg("--data-dir")
        .arg(real_mnist_dir())
        .arg("--run-dir")
        .arg(&runs)
        .arg("--checkpoint-dir")
        .arg(work.join("ckpt"))
        .output()
        .unwrap();
    let s = summary(&out);
    let events = read_events(
        &runs
            .join(s["run_id"].as_str().unwrap())
            .join("events.jsonl"),
    );
    (out, events)
}

fn alerts(events: &[mnist_events::Event]) -> Vec<mnist_events::Alert> {
    events
        .iter()
        .filter_map(|e| match &e.kind {
            mnist_events::EventKind::Alert(a) => Some(a.clone()),
            _ => None,
        })
        .collect()
}

/// The one critical NaN alert; whatever fired before it can only be a
/// warning of the explosion that led there (a loss spike, a gradient jump).
fn the_nan_alert(fired: &[mnist_events::Alert]) -> &mnist_events::Alert {
    let at = fired
        .iter()
        .position(|a| a.rule == "loss_not_finite")
        .unwrap_or_else(|| panic!("no loss_not_finite alert in {fired:?}"));
    assert_eq!(
        fired.iter().filter(|a| a.rule == "loss_not_finite").count(),
        1,
        "{fired:?}"
    );
    for early in &fired[..at] {
        assert!(
            matches!(early.rule.as_str(), "loss_spike" | "grad_jump")
                && early.severity == mnist_events::AlertSeverity::Warning,
            "only warnings of the explosion come before the NaN: {early:?}"
        );
    }
    assert_eq!(fired[at].severity, mnist_events::AlertSeverity::Critical);
    &fired[at]
}

#[test]
fn nan_loss_fires_an_alert_posts_the_webhook_and_stops_the_run() {
    let work = tempfile::tempdir().unwrap();
    let (url, bodies) = webhook_receiver();
    let (out, events) = diverging_run(work.path(), &["--alert-webhook", &url]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "a NaN-stopped run has failed: {}",
        stderr(&out)
    );
    let s = summary(&out);
    assert_eq!(s["status"], "failed");
    assert!(s["error"].as_str().unwrap().contains("NaN"), "{s}");
    let fired = alerts(&events);
    let nan = the_nan_alert(&fired);
    assert_eq!(nan.action.as_deref(), Some("run stopped (--stop-on-nan)"));
    let batches_after = events
        .iter()
        .skip_while(|e| !matches!(e.kind, mnist_events::EventKind::Alert(_)))
        .filter(|e| matches!(e.kind, mnist_events::EventKind::Batch(_)))
        .count();
    assert!(
        batches_after < 20,
        "the run stopped soon after the alert ({batches_after} more batches)"
    );

    // A loss spike's warning may come first: the loss explodes before it is NaN.
    let body = std::iter::from_fn(|| bodies.recv_timeout(Duration::from_secs(10)).ok())
        .find(|b| b["alert"]["rule"] == "loss_not_finite")
        .expect("the webhook was called with the NaN alert");
    assert_eq!(body["run_id"], s["run_id"]);
    assert!(body["text"].as_str().unwrap().contains("loss is"), "{body}");
    // Then the run's end, failed, with the reason.
    let end = bodies
        .recv_timeout(Duration::from_secs(10))
        .expect("the run's end was posted");
    assert_eq!(end["event"], "run_finished", "{end}");
    assert_eq!(end["run_finished"]["status"], "failed");
    assert!(end["text"].as_str().unwrap().contains("failed"), "{end}");
}

#[test]
fn a_runs_end_is_posted_as_a_discord_or_slack_message() {
    for (format, check) in [("discord", "embeds"), ("slack", "blocks")] {
        let work = tempfile::tempdir().unwrap();
        let (url, bodies) = webhook_receiver();
        let out = bin()
            .args([
                "train",
                "--json",
                "--quiet",
                "--backend",
                "cpu",
                "--epochs",
                "1",
                "--kernels",
                "4,4,4,4",
            ])
            .args([
                "--limit-train",
                "200",
                "--limit-val",
                "50",
                "--limit-test",
                "50",
                "--batch-size",
                "50",
            ])
            .args(["--alert-webhook", &url, "--webhook-format", format])
            .arg("--data-dir")
            .arg(real_mnist_dir())
            .args(work_dirs(work.path()))
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", stderr(&out));
        let run_id = summary(&out)["run_id"].as_str().unwrap().to_string();
        let body = bodies
            .recv_timeout(Duration::from_secs(10))
            .expect("the run's end was posted");
        assert!(body.get(check).is_some(), "{format}: {body}");
        let title = match format {
            "discord" => body["embeds"][0]["title"].as_str().unwrap().to_string(),
            _ => body["text"].as_str().unwrap().to_string(),
        };
        assert!(
            title.contains(&format!("run {run_id} completed")),
            "{format}: {body}"
        );
    }
    let out = bin()
        .args([
            "train",
            "--alert-webhook",
            "http://127.0.0.1:9/x",
            "--webhook-format",
            "teams",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("--webhook-format"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn with_stop_on_nan_false_the_alert_fires_and_the_run_goes_on() {
    let work = tempfile::tempdir().unwrap();
    let (out, events) = diverging_run(work.path(), &["--stop-on-nan", "false"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(summary(&out)["status"], "completed");
    let fired = alerts(&events);
    assert_eq!(the_nan_alert(&fired).action, None);
    let batches = events
        .iter()
        .filter(|e| matches!(e.kind, mnist_events::EventKind::Batch(_)))
        .count();
    assert_eq!(batches, 20, "every batch of the epoch ran");
}

#[test]
fn the_server_streams_hardware_when_idle() {
    let work = tempfile::tempdir().unwrap();
    let runs = work.path().join("runs");
    let server = spawn_server([
        "--hw-interval".as_ref(),
        "0.2".as_ref(),
        "--run-dir".as_ref(),
        runs.as_os_str(),
    ]);
    let mut ws = ws_connect(&server.base, "/ws/hardware");
    let first = next_message(&mut ws).unwrap();
    assert_eq!(first["type"], "hardware_history");
    assert!((first["interval_s"].as_f64().unwrap() - 0.2).abs() < 1e-9);
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut stamps = Vec::new();
    while stamps.len() < 3 {
        assert!(Instant::now() < deadline, "no live hardware samples");
        let m = next_message(&mut ws).unwrap();
        assert_eq!(m["type"], "hardware");
        assert!(m["cpu"]["cores"].as_u64().unwrap() > 0);
        stamps.push(m["sampled_at_ms"].as_u64().unwrap());
    }
    assert!(stamps.windows(2).all(|w| w[1] > w[0]));
    // /metrics carries the same machine.
    let (code, text) = get(&format!("{}/metrics", server.base));
    assert_eq!(code, 200);
    assert!(
        text.contains("# TYPE mnist_memory_total_bytes gauge"),
        "{text}"
    );
    assert!(text.contains("mnist_hardware_up 1"), "{text}");
    assert!(text.contains("mnist_run_active 0"), "{text}");

    // With sampling off the page is told so.
    let off = spawn_server([
        "--hw-interval".as_ref(),
        "0".as_ref(),
        "--run-dir".as_ref(),
        runs.as_os_str(),
    ]);
    let mut ws = ws_connect(&off.base, "/ws/hardware");
    assert_eq!(next_message(&mut ws).unwrap()["type"], "hardware_off");
}
