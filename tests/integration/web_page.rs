//! The page in a real headless Chromium: `tests/e2e/page.mjs` (playwright-core
//! driving Debian's chromium) fills the form, sees a field error, starts a
//! real run on real MNIST and waits for chart points, sample images and the
//! confusion matrix; it saves a screenshot to `target/e2e-page.png`.
//! `.ci/run` installs chromium and `web/node_modules`.

use crate::common::*;
use std::path::Path;
use std::process::Command;

#[test]
fn page_starts_a_run_and_shows_it_live_in_chromium() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    assert!(
        root.join("web/node_modules/playwright-core").is_dir(),
        "playwright-core is missing: run `npm ci --prefix web` (as .ci/run does)"
    );
    let chromium = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    assert!(
        Path::new(&chromium).exists(),
        "{chromium} is missing: apt-get install chromium (as .ci/run does)"
    );

    let work = tempfile::tempdir().unwrap();
    let server = spawn_server(serve_in(&real_mnist_dir(), work.path()));
    let url = format!("{}/", server.base);

    let shot = std::env::var("CARGO_TARGET_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|_| root.join("target"))
        .join("e2e-page.png");
    let out = Command::new("node")
        .arg(root.join("tests/e2e/page.mjs"))
        .arg(&url)
        .arg(&shot)
        .env("CHROMIUM", &chromium)
        .output()
        .expect("node is needed for the browser test");
    drop(server);
    assert!(
        out.status.success(),
        "browser test failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        std::fs::metadata(&shot).unwrap().len() > 10_000,
        "a real screenshot was saved"
    );
}

#[test]
fn page_reconnects_by_itself_after_a_server_restart() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let chromium = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    let work = tempfile::tempdir().unwrap();
    let out = Command::new("node")
        .arg(root.join("tests/e2e/reconnect.mjs"))
        .arg(env!("CARGO_BIN_EXE_mnist-monitor"))
        .arg(real_mnist_dir())
        .arg(work.path())
        .env("CHROMIUM", &chromium)
        .output()
        .expect("node is needed for the browser test");
    assert!(
        out.status.success(),
        "browser reconnect test failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A run killed with `kill -9` showed as running, with Stop enabled and an
/// ETA: its `run_started` set the page's status and nothing ever ended it.
#[test]
fn a_killed_run_shows_as_interrupted_with_stop_disabled_and_no_eta() {
    let work = tempfile::tempdir().unwrap();
    let data = work.path().join("data");
    write_synthetic(&data, 3000, 100);
    let log = work.path().join("runs/killed/events.jsonl");
    let mut child = bin()
        .args([
            "train",
            "--run-id",
            "killed",
            "--epochs",
            "50",
            "--kernels",
            "4,4,4,4",
        ])
        .args([
            "--batch-size",
            "20",
            "--val-size",
            "100",
            "--backend",
            "cpu",
            "--quiet",
            "--skip-verify",
            "--hw-interval",
            "0",
        ])
        .arg("--data-dir")
        .arg(&data)
        .args(work_dirs(work.path()))
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    while !std::fs::read_to_string(&log)
        .unwrap_or_default()
        .contains("\"type\":\"batch\"")
    {
        assert!(
            std::time::Instant::now() < deadline,
            "no batch within 120 s"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();

    let mut args = serve_in(&data, work.path());
    args.push("--skip-verify".into());
    let server = spawn_server(args);
    let shot = work.path().join("interrupted.png");
    let out = run_e2e(
        "interrupted.mjs",
        [server.base.as_str(), "killed", shot.to_str().unwrap()],
    );
    assert!(out.contains("\"status\":\"interrupted\""), "{out}");
}

/// The tracking controls in the real page: log y, the x axes, the lr and
/// images/s charts, rename/tag/filter, delete to the trash and restore.
#[test]
fn tracking_controls_work_in_the_page_and_meta_stays_beside_the_log() {
    let work = tempfile::tempdir().unwrap();
    let data = work.path().join("data");
    write_synthetic(&data, 1200, 100);
    for id in ["tracked", "other"] {
        let out = bin()
            .args([
                "train",
                "--run-id",
                id,
                "--epochs",
                "2",
                "--kernels",
                "4,4,4,4",
            ])
            .args([
                "--batch-size",
                "20",
                "--val-size",
                "100",
                "--backend",
                "cpu",
            ])
            .args(["--quiet", "--skip-verify", "--hw-interval", "0"])
            .arg("--data-dir")
            .arg(&data)
            .args(work_dirs(work.path()))
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", stderr(&out));
    }
    // What produced it is in its run_started: this binary, this command.
    let started = read_events(&work.path().join("runs/tracked/events.jsonl"))
        .into_iter()
        .find_map(|e| match e.kind {
            mnist_events::EventKind::RunStarted(r) => Some(r),
            _ => None,
        })
        .unwrap();
    let prov = started.provenance.expect("provenance recorded");
    assert_eq!(prov.version, env!("CARGO_PKG_VERSION"));
    assert_eq!(prov.command_line[1], "train");
    assert!(
        prov.command_line.contains(&"tracked".to_string()),
        "{:?}",
        prov.command_line
    );
    assert_eq!(prov.burn_version, "0.21.0");
    assert!(!prov.host.is_empty());
    assert!(prov.data_sha256.is_empty(), "--skip-verify checks no hash");
    if std::path::Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/.git")).exists() {
        assert_eq!(
            prov.git_commit.as_deref().map(str::len),
            Some(40),
            "{prov:?}"
        );
    }
    write_long_run(&work.path().join("runs"), "other", "long", 20_000);
    // Eighteen more, with other learning rates and kernels, for a 20-run compare.
    for i in 0..18 {
        write_variant(
            &work.path().join("runs"),
            "other",
            &format!("sweep-{i:02}"),
            i,
        );
    }
    let log = work.path().join("runs/tracked/events.jsonl");
    let log_before = std::fs::read(&log).unwrap();
    let mut args = serve_in(&data, work.path());
    args.push("--skip-verify".into());
    let server = spawn_server(args);
    let shot = work.path().join("tracking.png");
    let out = run_e2e(
        "tracking.mjs",
        [
            server.base.as_str(),
            "tracked",
            shot.to_str().unwrap(),
            "long",
        ],
    );
    assert!(out.contains("\"restored\":true"), "{out}");
    // The user's words sit beside the log, which is untouched.
    let meta: serde_json::Value =
        serde_json::from_slice(&std::fs::read(work.path().join("runs/tracked/meta.json")).unwrap())
            .unwrap();
    assert_eq!(meta["name"], "baseline <b>bold</b>");
    assert_eq!(meta["tags"], serde_json::json!(["small", "cnn"]));
    assert_eq!(std::fs::read(&log).unwrap(), log_before);
    assert!(
        work.path().join("ckpt/tracked").is_dir(),
        "checkpoints restored"
    );
    assert!(!work.path().join("runs/.trash/tracked").exists());
    let (code, runs) = get(&format!("{}/api/runs", server.base));
    assert_eq!(code, 200);
    assert!(runs.contains("\"notes\":\"first try\""), "{runs}");
    // Every run in one CSV, one column per config field.
    let (code, csv) = get(&format!("{}/api/runs.csv", server.base));
    assert_eq!(code, 200);
    let head: Vec<&str> = csv.lines().next().unwrap().split(',').collect();
    for field in [
        "run_id",
        "name",
        "kernels",
        "lr",
        "batch_size",
        "test_accuracy",
    ] {
        assert!(head.contains(&field), "{head:?}");
    }
    // The 21 written here and the page's 2-run sweep.
    assert_eq!(csv.lines().count(), 1 + 23, "{csv}");
    let sweep = out
        .split("\"sweep\":\"")
        .nth(1)
        .unwrap()
        .split('"')
        .next()
        .unwrap();
    assert_eq!(csv.matches(&format!(",{sweep},")).count(), 2, "{csv}");
    assert!(csv.contains("\nsweep-07,"), "{csv}");
    // The report the page downloaded, from the command line too.
    let file = work.path().join("tracked.html");
    let out = bin()
        .args(["report", "tracked", "-o"])
        .arg(&file)
        .arg("--runs-dir")
        .arg(work.path().join("runs"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let html = std::fs::read_to_string(&file).unwrap();
    assert!(
        html.contains("baseline \\u003cb>bold\\u003c/b>"),
        "the name, escaped"
    );
    let out = bin()
        .args(["report", "nope", "--run-dir"])
        .arg(work.path().join("runs"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(stderr(&out).contains("no run nope"), "{}", stderr(&out));
}

/// A copy of `template`'s run as `id`, with the `i`-th learning rate and
/// kernels of a small grid and a test accuracy that follows them.
fn write_variant(runs: &std::path::Path, template: &str, id: &str, i: usize) {
    let text = std::fs::read_to_string(runs.join(template).join("events.jsonl")).unwrap();
    let lr = [1e-3, 3e-4, 2e-3][i % 3];
    let k = [4, 8, 16][(i / 3) % 3];
    let mut out = String::new();
    for line in text.lines() {
        let mut e: serde_json::Value = serde_json::from_str(line).unwrap();
        e["run_id"] = id.into();
        if e["type"] == "run_started" {
            e["config"]["lr"] = lr.into();
            e["config"]["kernels"] = serde_json::json!([k, k, 8, 8]);
        }
        if e["type"] == "batch" {
            e["loss"] = (e["loss"].as_f64().unwrap() * (1.0 + i as f64 / 10.0)).into();
        }
        if e["type"] == "eval" {
            e["accuracy"] = (0.9 + i as f64 / 200.0).into();
        }
        out += &e.to_string();
        out.push('\n');
    }
    std::fs::create_dir_all(runs.join(id)).unwrap();
    std::fs::write(runs.join(id).join("events.jsonl"), out).unwrap();
}

/// A run of `steps` batches made from `template`'s events (its first batch
/// repeated, the loss falling, one spike of 50 at step 12,345), for charts
/// of long runs without training one.
pub fn write_long_run(runs: &std::path::Path, template: &str, id: &str, steps: u64) {
    let text = std::fs::read_to_string(runs.join(template).join("events.jsonl")).unwrap();
    let events: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let started = events.iter().find(|e| e["type"] == "run_started").unwrap();
    let batch = events.iter().find(|e| e["type"] == "batch").unwrap();
    let finished = events.iter().find(|e| e["type"] == "run_finished").unwrap();
    let mut out = String::new();
    let mut push = |mut e: serde_json::Value, seq: u64| {
        e["seq"] = seq.into();
        e["run_id"] = id.into();
        out += &e.to_string();
        out.push('\n');
    };
    push(started.clone(), 1);
    let t0 = started["ts_ms"].as_u64().unwrap();
    for step in 1..=steps {
        let mut b = batch.clone();
        b["step"] = step.into();
        b["epoch"] = (1 + (step - 1) / 1000).into();
        b["batch"] = (1 + (step - 1) % 1000).into();
        b["batches"] = 1000.into();
        b["ts_ms"] = (t0 + step * 10).into();
        let loss = if step == 12_345 {
            50.0
        } else {
            2.0 / (1.0 + step as f64 / 500.0)
        };
        b["loss"] = loss.into();
        push(b, step + 1);
    }
    let mut f = finished.clone();
    f["ts_ms"] = (t0 + steps * 10 + 5).into();
    push(f, steps + 2);
    std::fs::create_dir_all(runs.join(id)).unwrap();
    std::fs::write(runs.join(id).join("events.jsonl"), out).unwrap();
}

/// `serve` follows the runs folder: a `train` started from a shell into
/// the same folder shows on the open page within a moment, streams its
/// batches live and ends there as completed; the server cannot stop it
/// (another process trains it) and says so.
#[test]
fn a_train_started_from_a_shell_appears_on_the_page_and_streams_live() {
    let work = tempfile::tempdir().unwrap();
    let data = work.path().join("data");
    write_synthetic(&data, 6000, 100);
    let mut args = serve_in(&data, work.path());
    args.push("--skip-verify".into());
    args.extend(["--hw-interval".into(), "0".into()]);
    let server = spawn_server(args);
    let bin_path = env!("CARGO_BIN_EXE_mnist-monitor");
    let runs = work.path().join("runs");
    let shot = work.path().join("follow.png");
    let mut e2e_args: Vec<std::ffi::OsString> = vec![
        server.base.clone().into(),
        runs.clone().into(),
        shot.into(),
        "--".into(),
        bin_path.into(),
    ];
    for a in [
        "train",
        "--run-id",
        "from-shell",
        "--epochs",
        "3",
        "--kernels",
        "4,4,4,4",
        "--batch-size",
        "10",
        "--val-size",
        "100",
        "--backend",
        "cpu",
        "--quiet",
        "--skip-verify",
        "--hw-interval",
        "0",
    ] {
        e2e_args.push(a.into());
    }
    e2e_args.extend(["--data-dir".into(), data.into_os_string()]);
    e2e_args.extend(work_dirs(work.path()));
    let out = run_e2e("follow.mjs", e2e_args);
    let result: serde_json::Value =
        serde_json::from_str(out.trim().lines().last().unwrap()).unwrap();
    assert_eq!(result["streamed"], true, "{out}");
    assert!(result["batches_on_page"].as_u64().unwrap() >= 100, "{out}");
    // The page asks once the run has ended: refused, saying so (while it
    // trains, the answer names the other process).
    assert_eq!(result["stop"][0], 409, "{out}");
    let why = result["stop"][1].as_str().unwrap();
    assert!(
        why.contains("another process") || why.contains("already finished"),
        "{out}"
    );
    eprintln!(
        "the shell run appeared on the page {} ms after its log",
        result["appear_ms"]
    );
    // The server's run list has it, completed, with its results.
    let (_, list) = get(&format!("{}/api/runs", server.base));
    let list: serde_json::Value = serde_json::from_str(&list).unwrap();
    let row = list["runs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["run_id"] == "from-shell")
        .unwrap();
    assert_eq!(row["status"], "completed", "{row}");
    assert!(row["test_accuracy"].is_number(), "{row}");
}

/// Inside the network on the page: a short real run on real MNIST with
/// layer statistics every 10 steps; `tests/e2e/layers.mjs` opens the Layers
/// panel (a six-row heatmap that drew, a hover's value, another statistic,
/// a layer's histograms opening on the latest epoch), inspects a sample
/// digit (four conv layers of tiles, conv1's filters, the saliency) and,
/// from a diagnosed alert appended to the run's log as the trainer writes
/// one after a checkpoint, opens the Fork panel on that checkpoint at a
/// tenth of the rate.
#[test]
fn the_layers_panel_and_inspect_show_a_real_run() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let shots = std::env::var("CARGO_TARGET_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|_| root.join("target"))
        .join("e2e");
    std::fs::create_dir_all(&shots).unwrap();
    for name in [
        "layers.png",
        "histograms.png",
        "inspect.png",
        "diagnosis.png",
    ] {
        let _ = std::fs::remove_file(shots.join(name));
    }
    let work = tempfile::tempdir().unwrap();
    let data = real_mnist_dir();
    let out = bin()
        .args(["train", "--run-id", "layered", "--epochs", "2"])
        .args([
            "--limit-train",
            "3200",
            "--val-size",
            "500",
            "--limit-test",
            "500",
        ])
        .args(["--backend", "cpu", "--layer-stats-every", "10"])
        .args(["--quiet", "--hw-interval", "0"])
        .arg("--data-dir")
        .arg(&data)
        .args(work_dirs(work.path()))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let log = work.path().join("runs/layered/events.jsonl");
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(text.contains("\"type\":\"layers\""), "no layer samples");
    assert!(text.contains("\"type\":\"histograms\""), "no histograms");
    // A diagnosed alert before run_finished, after epoch 1's checkpoint.
    let mut events: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let mut finished = events.pop().unwrap();
    assert_eq!(finished["type"], "run_finished");
    let seq = finished["seq"].as_u64().unwrap();
    let step = finished["steps"].as_u64().unwrap();
    let alert = serde_json::json!({
        "seq": seq, "ts_ms": finished["ts_ms"].as_u64().unwrap() - 1, "run_id": "layered",
        "type": "alert", "rule": "loss_spike", "severity": "warning",
        "message": format!("the loss jumped at step {step}"),
        "diagnosis": {
            "step": step, "lr": 0.001, "layer": "fc1", "rise": 35.2, "rose_at_step": step - 10,
            "dead_share": 0.42, "suggestion": "lower the learning rate (--lr 0.0001)",
            "last_good_checkpoint": { "epoch": 1, "step": step / 2 },
        },
    });
    finished["seq"] = (seq + 1).into();
    events.push(alert);
    events.push(finished);
    let lines: Vec<String> = events.iter().map(|e| e.to_string() + "\n").collect();
    std::fs::write(&log, lines.concat()).unwrap();

    let server = spawn_server(serve_in(&data, work.path()));
    let out = run_e2e(
        "layers.mjs",
        [
            server.base.as_str(),
            "layered",
            shots.to_str().unwrap(),
            "diagnosed",
        ],
    );
    drop(server);
    let result: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(result["histogram_sets"], 2, "{out}");
    assert_eq!(result["inspect"]["filters"], 32, "{out}");
    assert_eq!(result["diagnosis"], true, "{out}");
    for name in [
        "layers.png",
        "histograms.png",
        "inspect.png",
        "diagnosis.png",
    ] {
        let len = std::fs::metadata(shots.join(name))
            .map(|m| m.len())
            .unwrap_or(0);
        assert!(len > 10_000, "no real screenshot {name} ({len} bytes)");
    }
}
