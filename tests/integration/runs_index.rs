//! Thousands of runs: the run index (`runs/.index`), the runs list served
//! paged, filtered and sorted, and `prune`, through the real binary.

use crate::common::*;
use serde_json::{json, Value};
use std::path::Path;
use std::time::{Duration, Instant, SystemTime};

/// What the test knows about a run it wrote.
#[derive(Clone)]
pub struct Written {
    pub id: String,
    pub lr: f64,
    pub acc: f64,
    pub status: &'static str,
    pub tags: Vec<String>,
}

fn line(out: &mut String, id: &str, seq: u64, ts: u64, mut e: Value) {
    e["seq"] = json!(seq);
    e["ts_ms"] = json!(ts);
    e["run_id"] = json!(id);
    out.push_str(&e.to_string());
    out.push('\n');
}

/// A run's log as our trainer writes it: `run_started`, `steps` batches,
/// an evaluation, and (unless interrupted) a test evaluation and
/// `run_finished` with `status`.
pub fn run_log(id: &str, lr: f64, acc: f64, steps: u64, status: &str, t0: u64) -> String {
    let mut out = String::new();
    let config = json!({"kernels": [4, 8, 8, 8], "optimizer": if lr > 1e-3 { "sgd" } else { "adam" },
        "lr": lr, "batch_size": 64, "epochs": 1, "seed": 42});
    line(
        &mut out,
        id,
        1,
        t0,
        json!({"type": "run_started", "config": config, "backend": "cpu", "device": "cpu",
        "model": {"input_shape": [1, 28, 28], "layers": [], "total_params": 1234},
        "train_size": 100, "val_size": 10, "test_size": 10, "batches_per_epoch": steps}),
    );
    for step in 1..=steps {
        line(
            &mut out,
            id,
            1 + step,
            t0 + step * 10,
            json!({"type": "batch", "epoch": 1, "batch": step, "batches": steps, "step": step,
            "size": 64, "loss": 2.0 / step as f64, "accuracy": acc, "f1_macro": acc,
            "epoch_loss": 1.0, "epoch_accuracy": acc, "epoch_f1_macro": acc, "lr": lr,
            "images_per_sec": 1000.0, "elapsed_s": step as f64 / 100.0}),
        );
    }
    let t = t0 + steps * 10 + 5;
    let eval = |split: &str| {
        json!({"type": "eval", "split": split, "epoch": 1, "step": steps, "loss": 0.1,
        "images": 10, "accuracy": acc, "f1_macro": acc, "mse": 0.01, "per_class": [], "confusion": [],
        "seconds": 0.1})
    };
    line(&mut out, id, steps + 2, t, eval("val"));
    if status != "interrupted" {
        line(&mut out, id, steps + 3, t + 1, eval("test"));
        line(
            &mut out,
            id,
            steps + 4,
            t + 2,
            json!({"type": "run_finished", "status": status, "epochs_completed": 1,
            "steps": steps, "train_seconds": 1.0, "test_accuracy": acc}),
        );
    }
    out
}

/// Writes `n` runs of `steps` steps into `runs`: a spread of learning rates
/// and accuracies, every 10th failed, every 15th stopped, every 20th
/// interrupted, three sweeps of the runs whose index is divisible by 3,
/// every 7th tagged `keep`; their logs dated an hour (and more) ago.
pub fn write_runs(runs: &Path, n: usize, steps: u64) -> Vec<Written> {
    let t0 = 1_790_000_000_000u64;
    (0..n)
        .map(|i| {
            let id = format!("run-{i:05}");
            let lr = [1e-4, 3e-4, 1e-3, 3e-3][i % 4];
            let acc = 0.95 + (i % 50) as f64 / 1000.0;
            let status = match i {
                i if i % 20 == 19 => "interrupted",
                i if i % 10 == 9 => "failed",
                i if i % 15 == 14 => "stopped",
                _ => "completed",
            };
            let mut tags = Vec::new();
            if i % 3 == 0 {
                tags.push(format!("sweep-{}", i % 9 / 3));
            }
            if i % 7 == 0 {
                tags.push("keep".into());
            }
            let dir = runs.join(&id);
            std::fs::create_dir_all(&dir).unwrap();
            let log = dir.join("events.jsonl");
            std::fs::write(
                &log,
                run_log(&id, lr, acc, steps, status, t0 + i as u64 * 60_000),
            )
            .unwrap();
            if !tags.is_empty() {
                let meta = json!({"name": null, "notes": "", "tags": tags});
                std::fs::write(dir.join("meta.json"), meta.to_string()).unwrap();
            }
            let old = SystemTime::now() - Duration::from_secs(3600 + i as u64);
            for f in [log, dir.join("meta.json")] {
                if let Ok(file) = std::fs::File::options().write(true).open(&f) {
                    file.set_modified(old).unwrap();
                }
            }
            Written {
                id,
                lr,
                acc,
                status,
                tags,
            }
        })
        .collect()
}

fn list(base: &str, query: &str) -> Value {
    let (code, body) = get(&format!("{base}/api/runs?{query}"));
    assert_eq!(code, 200, "{query}: {body}");
    serde_json::from_str(&body).unwrap()
}

fn ids(page: &Value) -> Vec<String> {
    page["runs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["run_id"].as_str().unwrap().to_string())
        .collect()
}

/// Waits until the runs list holds `n` runs.
fn wait_total(base: &str, query: &str, n: u64) -> Value {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let page = list(base, query);
        if page["total"] == n {
            return page;
        }
        assert!(
            Instant::now() < deadline,
            "never {n} runs: {}",
            page["total"]
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn enc(q: &str) -> String {
    q.bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'_' | b'.' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[test]
fn the_runs_list_is_paged_filtered_and_sorted_on_the_server() {
    let work = tempfile::tempdir().unwrap();
    let written = write_runs(&work.path().join("runs"), 600, 30);
    let server = spawn_server(serve_in(work.path(), work.path()));
    let base = &server.base;
    let first = wait_total(base, "limit=50", 600);
    assert_eq!(first["all"], 600);
    assert_eq!(first["runs"].as_array().unwrap().len(), 50);
    assert_eq!(ids(&first)[0], "run-00599", "newest first by default");

    // Every page once: all runs, none twice.
    let mut seen = std::collections::HashSet::new();
    for offset in (0..600).step_by(200) {
        seen.extend(ids(&list(
            base,
            &format!("limit=200&offset={offset}&sort=lr"),
        )));
    }
    assert_eq!(seen.len(), 600);

    let q = "acc>0.99 lr<=0.001 status:completed";
    let want = written
        .iter()
        .filter(|w| w.acc > 0.99 && w.lr <= 0.001 && w.status == "completed")
        .count();
    let page = list(base, &format!("q={}&limit=1000", enc(q)));
    assert_eq!(page["total"], want as u64, "{q}");
    assert!(want > 10);
    let keep = written
        .iter()
        .filter(|w| w.tags.iter().any(|t| t == "keep"))
        .count();
    assert_eq!(list(base, "q=tag:keep&limit=0")["total"], keep as u64);
    let sweep1 = written
        .iter()
        .filter(|w| w.tags.iter().any(|t| t == "sweep-1"))
        .count();
    assert_eq!(
        list(base, "q=sweep:sweep-1&limit=0")["total"],
        sweep1 as u64
    );
    assert_eq!(
        list(base, "q=name:~run-0059&limit=0")["total"],
        0,
        "no names"
    );
    assert_eq!(
        list(base, "q=run-0059&limit=0")["total"],
        10,
        "plain words search the id"
    );

    let by_lr = list(base, "sort=lr&order=desc&limit=1000");
    let lrs: Vec<f64> = by_lr["runs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["config"]["lr"].as_f64().unwrap())
        .collect();
    assert!(
        lrs.windows(2).all(|w| w[0] >= w[1]),
        "sorted by lr, descending"
    );

    for (query, field, words) in [
        ("q=acc%3E%3E1", "q", "acc>>1"),
        ("q=accuracy%3E0.9", "q", "no key `accuracy`"),
        ("sort=bogus", "sort", "bogus"),
        ("limit=5000", "limit", "0..=1000"),
        ("order=up", "order", "asc or desc"),
        (&format!("q={}", "a%20".repeat(40)), "q", "at most 32 terms"),
    ] {
        let (code, body) = get(&format!("{base}/api/runs?{query}"));
        assert_eq!(code, 400, "{query}: {body}");
        let v: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(v["errors"][0]["field"], field, "{body}");
        assert!(v["error"].as_str().unwrap().contains(words), "{body}");
    }

    let (code, csv) = get(&format!("{base}/api/runs.csv?q=status:failed"));
    assert_eq!(code, 200);
    let failed = written.iter().filter(|w| w.status == "failed").count();
    assert_eq!(csv.lines().count(), failed + 1, "a header and every match");
    let (_, cols) = get(&format!(
        "{base}/api/runs/columns?keys=lr,acc,k1&q=status:stopped"
    ));
    let cols: Value = serde_json::from_str(&cols).unwrap();
    let stopped = written.iter().filter(|w| w.status == "stopped").count();
    assert_eq!(cols["run_ids"].as_array().unwrap().len(), stopped);
    assert_eq!(cols["columns"]["k1"][0], 4.0);

    // A finished run's compare series come from the index, the same as
    // folding its log would give.
    let (_, from_index) = get(&format!("{base}/api/runs/run-00042/series?points=600"));
    let (_, folded) = get(&format!(
        "{base}/api/runs/run-00042/series?points=600&from=0"
    ));
    let (a, b): (Value, Value) = (
        serde_json::from_str(&from_index).unwrap(),
        serde_json::from_str(&folded).unwrap(),
    );
    assert_eq!(a["step"], b["step"]);
    assert_eq!(a["loss"], b["loss"]);
    assert_eq!(a["total"], 30);
}

#[test]
fn the_index_survives_kill_9_mid_build_and_being_deleted() {
    let work = tempfile::tempdir().unwrap();
    let runs = work.path().join("runs");
    write_runs(&runs, 1500, 200);
    let index_dir = runs.join(".index");
    let rows = || std::fs::read_dir(index_dir.join("runs")).map_or(0, |d| d.count());
    let mut child = bin()
        .args(["index", "--json", "--run-dir"])
        .arg(&runs)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // Killed once some rows are written, well before the last.
    let deadline = Instant::now() + Duration::from_secs(60);
    while rows() < 100 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(1));
    }
    let _ = child.kill(); // SIGKILL
    let _ = child.wait();
    let written = rows();
    assert!(
        (100..1500).contains(&written),
        "killed half-way: {written} rows"
    );
    let out = bin()
        .args(["index", "--json", "--run-dir"])
        .arg(&runs)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["runs"], 1500, "{v}");
    for entry in std::fs::read_dir(index_dir.join("runs")).unwrap().flatten() {
        let name = entry.file_name().into_string().unwrap();
        if name.starts_with('.') {
            continue; // a killed writer's temporary file, cleaned up later
        }
        let row: Value = serde_json::from_slice(&std::fs::read(entry.path()).unwrap())
            .unwrap_or_else(|e| panic!("{name} is torn: {e}"));
        assert_eq!(
            format!("{}.json", row["summary"]["run_id"].as_str().unwrap()),
            name
        );
    }

    // Deleted: `serve` rebuilds it, saying how far it got, and loses nothing.
    std::fs::remove_dir_all(&index_dir).unwrap();
    let server = spawn_server(serve_in(work.path(), work.path()));
    let mut saw_progress = false;
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let page = list(&server.base, "limit=1");
        saw_progress |= page["indexing"].is_object();
        if page["total"] == 1500 && page["indexing"].is_null() {
            break;
        }
        assert!(Instant::now() < deadline, "not rebuilt: {}", page["total"]);
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(saw_progress, "the rebuild showed no progress");
}

#[test]
fn a_log_appended_after_indexing_and_a_run_copied_in_are_picked_up() {
    let work = tempfile::tempdir().unwrap();
    let runs = work.path().join("runs");
    write_runs(&runs, 40, 20);
    let out = bin()
        .args(["index", "--run-dir"])
        .arg(&runs)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let server = spawn_server(serve_in(work.path(), work.path()));
    let base = &server.base;
    wait_total(base, "limit=1", 40);
    // run-00019 was interrupted at step 20: a resumption from step 10
    // appends to its log and completes it at step 30.
    let id = "run-00019";
    let resumed = run_log(id, 1e-3, 0.99, 30, "completed", 1_800_000_000_000);
    let mut tail = String::new();
    for (i, l) in resumed.lines().enumerate() {
        let mut e: Value = serde_json::from_str(l).unwrap();
        e["seq"] = json!(1000 + i);
        if e["type"] == "run_started" {
            e["resumed_from_epoch"] = json!(1);
            e["resumed_from_step"] = json!(10);
        }
        if e["type"] == "batch" && e["step"].as_u64().unwrap() <= 10 {
            continue;
        }
        tail += &(e.to_string() + "\n");
    }
    use std::io::Write;
    std::fs::File::options()
        .append(true)
        .open(runs.join(id).join("events.jsonl"))
        .unwrap()
        .write_all(tail.as_bytes())
        .unwrap();
    let started = Instant::now();
    let deadline = started + Duration::from_secs(20);
    loop {
        let page = list(base, &format!("q=id:{id}"));
        let r = &page["runs"][0];
        if r["status"] == "completed" && r["steps"] == 30 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the appended log was not read: {r}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    // A finished run copied in (as rsync or a shared filesystem does).
    let copy = runs.join("run-copied");
    std::fs::create_dir_all(&copy).unwrap();
    let text = run_log("run-copied", 3e-3, 0.97, 20, "completed", 1_800_000_000_000);
    std::fs::write(copy.join("events.tmp"), text).unwrap();
    std::fs::rename(copy.join("events.tmp"), copy.join("events.jsonl")).unwrap();
    let appeared = Instant::now();
    wait_total(base, "q=id:run-copied", 1);
    assert!(
        appeared.elapsed() < Duration::from_secs(2),
        "{:?}",
        appeared.elapsed()
    );
    // Its row is written: a new server lists it without reading its log.
    assert!(runs.join(".index/runs/run-copied.json").is_file());
    drop(server);
    let out = bin()
        .args(["index", "--json", "--run-dir"])
        .arg(&runs)
        .output()
        .unwrap();
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        (v["runs"].as_u64(), v["folded"].as_u64()),
        (Some(41), Some(0)),
        "{v}"
    );
}

#[test]
fn two_processes_training_into_one_folder_lose_no_run() {
    let work = tempfile::tempdir().unwrap();
    let data = work.path().join("data");
    write_synthetic(&data, 200, 40);
    let server = spawn_server(serve_in(&data, work.path()));
    let sweep = |lrs: &str| {
        let mut c = bin();
        c.args(["sweep", "--grid", &format!("lr={lrs}"), "--"])
            .args([
                "--backend",
                "cpu",
                "--epochs",
                "1",
                "--batch-size",
                "16",
                "--kernels",
                "4,4,4,4",
                "--val-size",
                "40",
            ])
            .args([
                "--quiet",
                "--hw-interval",
                "0",
                "--skip-verify",
                "--data-dir",
            ])
            .arg(&data)
            .args(work_dirs(work.path()));
        c.stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap()
    };
    let (a, b) = (sweep("0.001,0.002,0.003"), sweep("0.0001,0.0002,0.0003"));
    for child in [a, b] {
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let page = wait_total(&server.base, "q=status:completed&limit=10", 6);
    let mut lrs: Vec<f64> = page["runs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["config"]["lr"].as_f64().unwrap())
        .collect();
    lrs.sort_by(f64::total_cmp);
    assert_eq!(lrs, [0.0001, 0.0002, 0.0003, 0.001, 0.002, 0.003]);
    let rows = std::fs::read_dir(work.path().join("runs/.index/runs"))
        .unwrap()
        .count();
    assert_eq!(rows, 6, "each run's row written");
}

/// `prune`: the dry run deletes nothing and lists what would go; `--yes`
/// deletes exactly that, never a `keep` run or one that trains.
#[test]
fn prune_does_exactly_what_its_dry_run_listed_and_spares_keep_and_running_runs() {
    let work = tempfile::tempdir().unwrap();
    let runs = work.path().join("runs");
    let written = write_runs(&runs, 90, 20);
    // A run training now: its log was just written, it has no end.
    let live = runs.join("run-live");
    std::fs::create_dir_all(&live).unwrap();
    std::fs::write(
        live.join("events.jsonl"),
        run_log("run-live", 1e-3, 0.5, 5, "interrupted", 0),
    )
    .unwrap();
    std::fs::write(live.join("meta.json"), r#"{"tags": ["sweep-1"]}"#).unwrap();
    let prune = |extra: &[&str]| {
        let out = bin()
            .args([
                "prune",
                "--json",
                "--keep-best",
                "3",
                "--trash-after-days",
                "1",
                "--run-dir",
            ])
            .arg(&runs)
            .arg("--checkpoint-dir")
            .arg(work.path().join("ckpt"))
            .args(extra)
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", stderr(&out));
        serde_json::from_slice::<Value>(&out.stdout).unwrap()
    };
    let folders = || {
        let mut v: Vec<String> = std::fs::read_dir(&runs)
            .unwrap()
            .flatten()
            .map(|e| e.file_name().into_string().unwrap())
            .filter(|n| !n.starts_with('.'))
            .collect();
        v.sort();
        v
    };
    let before = folders();
    let dry = prune(&[]);
    assert_eq!(dry["dry_run"], true);
    assert_eq!(folders(), before, "a dry run deletes nothing");
    let planned: Vec<String> = dry["plan"]["actions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["run_id"].as_str().unwrap().to_string())
        .collect();
    assert!(planned.len() > 20, "{planned:?}");
    for id in &planned {
        let w = written.iter().find(|w| &w.id == id).unwrap();
        assert!(!w.tags.iter().any(|t| t == "keep"), "{id} is tagged keep");
    }
    assert!(
        !planned.contains(&"run-live".to_string()),
        "a training run is never pruned"
    );
    // Every failed or stopped run not tagged keep goes; per sweep, the best
    // three by accuracy stay.
    for w in &written {
        let old_end = matches!(w.status, "failed" | "stopped");
        let keep = w.tags.iter().any(|t| t == "keep");
        if old_end && !keep {
            assert!(planned.contains(&w.id), "{} ({}) should go", w.id, w.status);
        }
    }
    assert!(dry["plan"]["trash_bytes"].as_u64().unwrap() > 0);

    let done = prune(&["--yes"]);
    assert_eq!(done["plan"], dry["plan"], "the same plan");
    assert!(
        done["done"]
            .as_array()
            .unwrap()
            .iter()
            .all(|d| d["skipped"].is_null()),
        "{done}"
    );
    let after = folders();
    let gone: Vec<&String> = before.iter().filter(|id| !after.contains(id)).collect();
    let mut want: Vec<&String> = planned.iter().collect();
    want.sort();
    assert_eq!(gone, want, "exactly what the dry run listed");
    for id in &planned {
        assert!(
            runs.join(".trash")
                .join(id)
                .join("run/events.jsonl")
                .is_file(),
            "{id} is in the trash"
        );
    }
    // Emptying the trash: nothing is older than a day yet; with 0 days all go.
    let out = bin()
        .args([
            "prune",
            "--json",
            "--empty-trash-after-days",
            "0",
            "--yes",
            "--run-dir",
        ])
        .arg(&runs)
        .output()
        .unwrap();
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        v["plan"]["actions"].as_array().unwrap().len(),
        planned.len()
    );
    assert!(v["plan"]["freed_bytes"].as_u64().unwrap() > 0);
    assert_eq!(std::fs::read_dir(runs.join(".trash")).unwrap().count(), 0);

    let out = bin()
        .args(["prune", "--keep-best", "0", "--run-dir"])
        .arg(&runs)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("--keep-best"), "{}", stderr(&out));
}

/// The same from the page's API: a dry run, then the real one, and the
/// runs list follows; a bad policy is a 400 naming the field.
#[test]
fn prune_through_the_api_and_only_the_best_checkpoint_kept() {
    let work = tempfile::tempdir().unwrap();
    let data = work.path().join("data");
    write_synthetic(&data, 200, 40);
    // A real run with three epochs' checkpoints.
    let out = bin()
        .args([
            "train",
            "--backend",
            "cpu",
            "--epochs",
            "3",
            "--batch-size",
            "16",
            "--kernels",
            "4,4,4,4",
            "--val-size",
            "40",
        ])
        .args([
            "--quiet",
            "--hw-interval",
            "0",
            "--skip-verify",
            "--run-id",
            "real",
            "--data-dir",
        ])
        .arg(&data)
        .args(work_dirs(work.path()))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    write_runs(&work.path().join("runs"), 30, 10);
    let server = spawn_server(serve_in(&data, work.path()));
    let base = &server.base;
    wait_total(base, "limit=1", 31);
    let (code, bad) = post(
        &format!("{base}/api/prune"),
        &json!({"policy": {"keep_best": 0}}),
    );
    assert_eq!(code, 400);
    assert_eq!(bad["errors"][0]["field"], "keep_best", "{bad}");
    let (code, bad) = post(&format!("{base}/api/prune"), &json!({"policy": {}}));
    assert_eq!(code, 400, "{bad}");
    let policy = json!({"trash_after_days": 1, "best_checkpoint_only": true});
    let (code, dry) = post(&format!("{base}/api/prune"), &json!({"policy": policy}));
    assert_eq!(code, 200, "{dry}");
    assert_eq!(dry["dry_run"], true);
    let actions = dry["plan"]["actions"].as_array().unwrap();
    let drop = actions
        .iter()
        .find(|a| a["action"] == "drop_checkpoints")
        .unwrap_or_else(|| panic!("{dry}"));
    assert_eq!(drop["run_id"], "real");
    assert_eq!(drop["epochs"].as_array().unwrap().len(), 2, "{drop}");
    let ckpt = work.path().join("ckpt/real");
    assert_eq!(
        std::fs::read_dir(&ckpt).unwrap().count(),
        3,
        "a dry run drops nothing"
    );
    let trashed = actions.iter().filter(|a| a["action"] == "trash").count();
    assert!(trashed > 0);
    // A confirmation of another plan than the one made now does nothing.
    let stale = json!({"policy": policy, "dry_run": false, "expect": []});
    let (code, refused) = post(&format!("{base}/api/prune"), &stale);
    assert_eq!(code, 409, "{refused}");
    assert!(
        refused["error"].as_str().unwrap().contains("preview again"),
        "{refused}"
    );
    assert_eq!(std::fs::read_dir(&ckpt).unwrap().count(), 3, "nothing done");
    let (code, done) = post(
        &format!("{base}/api/prune"),
        &json!({"policy": policy, "dry_run": false, "expect": dry["plan"]["actions"]}),
    );
    assert_eq!(code, 200, "{done}");
    assert_eq!(done["plan"], dry["plan"]);
    let left: Vec<_> = std::fs::read_dir(&ckpt).unwrap().flatten().collect();
    assert_eq!(left.len(), 1, "only the best checkpoint is left");
    assert_eq!(
        left[0].file_name().into_string().unwrap(),
        format!("epoch-{:04}", drop["kept"].as_u64().unwrap())
    );
    assert_eq!(
        list(base, "limit=0")["total"],
        31 - trashed as u64,
        "the list follows"
    );
}

/// The page with thousands of runs, in headless Chromium: the Runs table
/// fills, scrolls to the last run, filters and sorts on the server, and
/// the parallel coordinates draw every run (`tests/e2e/many_runs.mjs`).
#[test]
fn the_runs_table_scrolls_filters_and_sorts_thousands_of_runs_in_chromium() {
    let work = tempfile::tempdir().unwrap();
    let n = 2500;
    write_runs(&work.path().join("runs"), n, 20);
    let server = spawn_server(serve_in(work.path(), work.path()));
    wait_total(&server.base, "limit=0", n as u64);
    let shot = work.path().join("many-runs.png");
    let out = run_e2e(
        "many_runs.mjs",
        [
            server.base.clone(),
            n.to_string(),
            shot.display().to_string(),
        ],
    );
    let figures: Value = serde_json::from_str(out.lines().last().unwrap()).unwrap();
    assert!(
        figures["parallel"]["lines"].as_u64().unwrap() >= 1000,
        "{figures}"
    );
    assert!(
        figures["dom_rows"].as_u64().unwrap() < 200,
        "virtualised: {figures}"
    );
}

/// `serve --prune-every` prunes on its own, by the policy its flags give;
/// a policy without `--prune-every` (or a bad one) is refused at start.
#[test]
fn serve_prunes_on_a_schedule() {
    let work = tempfile::tempdir().unwrap();
    let written = write_runs(&work.path().join("runs"), 40, 10);
    let mut args = serve_in(work.path(), work.path());
    args.extend(["--prune-every", "0.001", "--trash-after-days", "1"].map(Into::into));
    let server = spawn_server(args);
    let doomed: Vec<&Written> = written
        .iter()
        .filter(|w| matches!(w.status, "failed" | "stopped") && !w.tags.iter().any(|t| t == "keep"))
        .collect();
    assert!(!doomed.is_empty());
    wait_total(&server.base, "limit=0", (40 - doomed.len()) as u64);
    for w in doomed {
        assert!(
            work.path().join("runs/.trash").join(&w.id).is_dir(),
            "{} in the trash",
            w.id
        );
    }
    let out = bin()
        .args(["serve", "--bind", "127.0.0.1:0", "--keep-best", "2"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("--prune-every"), "{}", stderr(&out));
    let out = bin()
        .args([
            "serve",
            "--bind",
            "127.0.0.1:0",
            "--prune-every",
            "1",
            "--keep-best",
            "0",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("--keep-best"), "{}", stderr(&out));
}

/// Cleanup from the page: a preview lists what the server's dry run lists
/// (never a `keep` run), Cancel deletes nothing, the confirmation does it
/// and the table follows (`tests/e2e/prune.mjs`).
#[test]
fn the_page_previews_a_cleanup_and_does_it_only_once_confirmed() {
    let work = tempfile::tempdir().unwrap();
    write_runs(&work.path().join("runs"), 120, 10);
    let server = spawn_server(serve_in(work.path(), work.path()));
    wait_total(&server.base, "limit=0", 120);
    let shot = work.path().join("prune.png");
    let out = run_e2e(
        "prune.mjs",
        [server.base.clone(), shot.display().to_string()],
    );
    let seen: Value = serde_json::from_str(out.lines().last().unwrap()).unwrap();
    let after = list(&server.base, "limit=0")["total"].as_u64().unwrap();
    assert!(after < 120, "the cleanup trashed nothing: {seen}");
    let trash = std::fs::read_dir(work.path().join("runs/.trash"))
        .unwrap()
        .count() as u64;
    assert_eq!(
        after + trash,
        120,
        "every run is listed or in the trash: {seen}"
    );
}

/// A cleanup of thousands of runs confirms its thousands of steps: the
/// confirmation's body is not refused for its size.
#[test]
fn a_large_cleanup_can_be_confirmed() {
    let work = tempfile::tempdir().unwrap();
    write_runs(&work.path().join("runs"), 3000, 2);
    let server = spawn_server(serve_in(work.path(), work.path()));
    let base = &server.base;
    wait_total(base, "limit=0", 3000);
    let policy = json!({"keep_best": 1});
    let (code, dry) = post(&format!("{base}/api/prune"), &json!({"policy": policy}));
    assert_eq!(code, 200, "{dry}");
    let steps = dry["plan"]["actions"].as_array().unwrap().len();
    assert!(steps > 500, "{steps} steps");
    assert!(dry["plan"]["actions"].to_string().len() > 64 * 1024);
    let body = json!({"policy": policy, "dry_run": false, "expect": dry["plan"]["actions"]});
    let (code, done) = post(&format!("{base}/api/prune"), &body);
    assert_eq!(code, 200, "{done}");
    assert_eq!(list(base, "limit=0")["total"], (3000 - steps) as u64);
}
