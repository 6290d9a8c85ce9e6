//! Sweeps: `mnist-monitor sweep` training a grid here, and the same grid
//! queued on a running `serve` (`POST /api/sweeps`, `sweep --server`).

use crate::common::*;
use serde_json::{json, Value};

fn tags(work: &std::path::Path, run_id: &str) -> Value {
    let meta = std::fs::read_to_string(work.join("runs").join(run_id).join("meta.json")).unwrap();
    serde_json::from_str::<Value>(&meta).unwrap()["tags"].clone()
}

#[test]
fn a_four_config_sweep_trains_every_combination_tagged_with_its_id() {
    let work = tempfile::tempdir().unwrap();
    let data = work.path().join("data");
    write_synthetic(&data, 400, 60);
    let mut cmd = bin();
    cmd.args([
        "sweep",
        "--grid",
        "lr=0.001,0.003",
        "--grid",
        "kernels=4,4,4,4:8,8,8,8",
        "--",
    ])
    .args([
        "--epochs",
        "1",
        "--batch-size",
        "20",
        "--val-size",
        "60",
        "--backend",
        "cpu",
    ])
    .args(["--quiet", "--json", "--skip-verify", "--hw-interval", "0"])
    .arg("--data-dir")
    .arg(&data)
    .args(work_dirs(work.path()));
    let out = cmd.output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let summaries: Vec<Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(summaries.len(), 4);
    let combos: Vec<(f64, u64)> = summaries
        .iter()
        .map(|s| {
            (
                s["config"]["lr"].as_f64().unwrap(),
                s["config"]["kernels"][0].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(combos, [(0.001, 4), (0.001, 8), (0.003, 4), (0.003, 8)]);
    let sweep_id = summaries[0]["run_id"]
        .as_str()
        .unwrap()
        .rsplit_once('-')
        .unwrap()
        .0
        .to_string();
    assert!(sweep_id.starts_with("sweep-"), "{sweep_id}");
    for s in &summaries {
        assert_eq!(s["status"], "completed", "{s}");
        assert_eq!(
            s["config"]["epochs"], 1,
            "the base flags apply to every run"
        );
        assert_eq!(
            tags(work.path(), s["run_id"].as_str().unwrap()),
            json!([sweep_id])
        );
    }
    // Refused before anything trains, naming what is wrong.
    for (args, says) in [
        (vec!["--grid", "lr=0.001,30"], "sweep value 30"),
        (vec!["--grid", "learning=1"], "no field \"learning\""),
        (
            vec!["--grid", "lr=0.1,0.2", "--random", "5"],
            "--random must be in 1..=2",
        ),
        (
            vec!["--grid", "lr=0.1,0.2", "--", "--lr", "0.5"],
            "--lr is swept",
        ),
    ] {
        let out = bin().arg("sweep").args(&args).output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        assert!(stderr(&out).contains(says), "{args:?}: {}", stderr(&out));
    }
}

#[test]
fn a_sweep_queued_on_a_server_runs_one_after_another() {
    let work = tempfile::tempdir().unwrap();
    let data = work.path().join("data");
    write_synthetic(&data, 400, 60);
    let mut args = serve_in(&data, work.path());
    args.push("--skip-verify".into());
    let server = spawn_server(args);
    let base = json!({"epochs": 1, "batch_size": 20, "val_size": 60, "backend": "cpu", "kernels": [4, 4, 4, 4]});
    // Through the API: three drawn at random from a 2×3 grid.
    let (code, body) = post(
        &format!("{}/api/sweeps", server.base),
        &json!({"base": base, "specs": ["lr=0.001,0.003", "batch_size=10,20,30"], "random": 3, "seed": 5}),
    );
    assert_eq!(code, 202, "{body}");
    let sweep_id = body["sweep_id"].as_str().unwrap().to_string();
    let runs: Vec<String> = body["runs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["run_id"].as_str().unwrap().into())
        .collect();
    assert_eq!(runs.len(), 3);
    assert_eq!(body["compare"], format!("/?sweep={sweep_id}"));
    // Bad ones are refused whole, naming the field.
    let (code, bad) = post(
        &format!("{}/api/sweeps", server.base),
        &json!({"specs": ["lr=0.1,99"]}),
    );
    assert_eq!(code, 400, "{bad}");
    assert_eq!(bad["errors"][0]["field"], "lr", "{bad}");
    // From the command line, to the same server: queued behind the first.
    let out = bin()
        .args([
            "sweep",
            "--grid",
            "kernels=4,4,4,4:6,6,6,6",
            "--server",
            &server.base,
            "--",
        ])
        .args([
            "--epochs",
            "1",
            "--batch-size",
            "20",
            "--val-size",
            "60",
            "--backend",
            "cpu",
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let cli: Value = serde_json::from_slice(&out.stdout).unwrap();
    let more: Vec<String> = cli["runs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["run_id"].as_str().unwrap().into())
        .collect();
    assert_eq!(more.len(), 2);
    let mut started = Vec::new();
    for id in runs.iter().chain(&more) {
        let run = wait_ended(&server.base, id);
        assert_eq!(run["status"], "completed", "{run}");
        started.push(run["summary"]["started_ms"].as_u64().unwrap());
    }
    assert!(
        started.windows(2).all(|w| w[0] <= w[1]),
        "one after another, in order: {started:?}"
    );
    assert_eq!(tags(work.path(), &runs[0]), json!([sweep_id]));
    assert_eq!(tags(work.path(), &more[0]), json!([cli["sweep_id"]]));
}
