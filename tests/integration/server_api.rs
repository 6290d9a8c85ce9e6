//! The web monitor's HTTP API and websockets against a real `serve` process
//! training real (tiny) runs.

use crate::common::*;
use serde_json::{json, Value};

struct TestServer {
    server: Server,
    _work: tempfile::TempDir,
}

impl std::ops::Deref for TestServer {
    type Target = Server;
    fn deref(&self) -> &Server {
        &self.server
    }
}

fn start_server() -> TestServer {
    let work = tempfile::tempdir().unwrap();
    let data = work.path().join("data");
    write_synthetic(&data, 1200, 200);
    let mut args = serve_in(&data, work.path());
    args.push("--skip-verify".into());
    let server = spawn_server(args);
    TestServer {
        server,
        _work: work,
    }
}

fn tiny_config(epochs: usize) -> Value {
    json!({"kernels": [4, 4, 4, 4], "batch_size": 20, "epochs": epochs, "backend": "cpu", "val_size": 100, "limit_test": 100})
}

/// The form's limits come from the server's one table; every error has the
/// one body shape.
#[test]
fn the_config_schema_is_the_tables_and_errors_have_one_shape() {
    let server = start_server();
    let (code, body) = get(&format!("{}/api/config/schema", server.base));
    assert_eq!(code, 200, "{body}");
    let schema: Value = serde_json::from_str(&body).unwrap();
    let fields = schema["fields"].as_array().unwrap();
    assert_eq!(fields.len(), mnist_train::config::FIELDS.len());
    let defaults = serde_json::to_value(mnist_train::TrainConfig::default()).unwrap();
    for f in fields {
        let name = f["name"].as_str().unwrap();
        assert_eq!(f["default"], defaults[name], "{name}");
        assert!(!f["help"].as_str().unwrap().is_empty(), "{name}");
    }
    let batch = fields.iter().find(|f| f["name"] == "batch_size").unwrap();
    assert_eq!(
        (
            batch["type"].as_str(),
            batch["min"].as_u64(),
            batch["max"].as_u64()
        ),
        (Some("integer"), Some(1), Some(65536))
    );
    let optimizer = fields.iter().find(|f| f["name"] == "optimizer").unwrap();
    assert_eq!(optimizer["choices"], json!(["adam", "sgd"]));

    // 400, 404, 409-free shapes: `error` always, `errors` always (empty
    // when no field is at fault).
    let (code, bad) = post(&format!("{}/api/runs", server.base), &json!({"epochs": 0}));
    assert_eq!(code, 400);
    assert_eq!(bad["errors"][0]["field"], "epochs");
    assert!(bad["error"].as_str().unwrap().contains("epochs"), "{bad}");
    let (code, missing) = get(&format!("{}/api/runs/no-such-run", server.base));
    assert_eq!(code, 404);
    let missing: Value = serde_json::from_str(&missing).unwrap();
    assert_eq!(missing["errors"], json!([]), "{missing}");
    assert!(missing["error"].as_str().unwrap().contains("no-such-run"));
    let (code, stop) = post(
        &format!("{}/api/runs/no-such-run/stop", server.base),
        &json!({}),
    );
    assert_eq!((code, stop["errors"].clone()), (404, json!([])), "{stop}");
}

#[test]
fn bad_config_is_a_400_naming_every_field_and_the_server_lives_on() {
    let server = start_server();
    let (code, body) = post(
        &format!("{}/api/runs", server.base),
        &json!({"kernels": [32, 64, 0, 64], "batch_size": 0, "lr": -1, "optimizer": "lbfgs", "epochs": 2}),
    );
    assert_eq!(code, 400, "{body}");
    let mut fields: Vec<&str> = body["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["field"].as_str().unwrap())
        .collect();
    fields.sort();
    assert_eq!(
        fields,
        ["batch_size", "kernels", "lr", "optimizer"],
        "{body}"
    );
    let kernels = body["errors"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["field"] == "kernels")
        .unwrap();
    assert!(kernels["message"].as_str().unwrap().contains("1..=512"));

    let (code, body) = post(
        &format!("{}/api/runs", server.base),
        &json!("not an object"),
    );
    assert_eq!(code, 400, "{body}");
    let (code, _) = {
        let r = ureq::post(&format!("{}/api/runs", server.base))
            .set("content-type", "application/json")
            .send_string("{oops");
        match r {
            Err(ureq::Error::Status(c, r)) => (c, r.into_string().unwrap()),
            other => panic!("{other:?}"),
        }
    };
    assert_eq!(code, 400);
    let (code, health) = get(&format!("{}/api/health", server.base));
    assert_eq!(code, 200);
    assert!(health.contains("\"status\":\"ok\""), "{health}");
}

#[test]
fn a_run_streams_over_the_websocket_and_resumes_by_seq_without_gaps() {
    let server = start_server();
    let (code, body) = post(&format!("{}/api/runs", server.base), &tiny_config(3));
    assert_eq!(code, 201, "{body}");
    let run_id = body["run_id"].as_str().unwrap().to_string();

    // One run at a time: a second one waits in the queue; cancel it.
    let (code, body) = post(&format!("{}/api/runs", server.base), &tiny_config(1));
    assert_eq!(code, 202, "{body}");
    assert_eq!(body["position"], 1, "{body}");
    let queued = body["run_id"].as_str().unwrap().to_string();
    let cancelled = ureq::delete(&format!("{}/api/queue/{queued}", server.base))
        .call()
        .unwrap();
    assert_eq!(cancelled.status(), 200);
    let (_, q) = get(&format!("{}/api/queue", server.base));
    assert!(!q.contains(&queued), "{q}");

    // First connection: everything from the start, then hang up early.
    let mut ws = ws_connect(&server.base, &format!("/ws/runs/{run_id}?since=0"));
    let mut seqs = Vec::new();
    let mut kinds = Vec::new();
    while seqs.len() < 12 {
        let Some(m) = next_message(&mut ws) else {
            break;
        };
        seqs.push(m["seq"].as_u64().unwrap());
        kinds.push(m["type"].as_str().unwrap().to_string());
    }
    drop(ws);
    // Reconnect from the last seq seen: the rest, no gap, no repeat.
    let last = *seqs.last().unwrap();
    let mut ws = ws_connect(&server.base, &format!("/ws/runs/{run_id}?since={last}"));
    while let Some(m) = next_message(&mut ws) {
        seqs.push(m["seq"].as_u64().unwrap());
        kinds.push(m["type"].as_str().unwrap().to_string());
        if m["type"] == "run_finished" {
            assert_eq!(m["status"], "completed");
            break;
        }
    }
    assert_eq!(
        seqs,
        (1..=seqs.len() as u64).collect::<Vec<_>>(),
        "seq 1..n exactly once each"
    );
    assert_eq!(kinds[0], "run_started");
    assert_eq!(kinds.last().unwrap(), "run_finished");
    let batches = kinds.iter().filter(|k| *k == "batch").count();
    assert_eq!(
        batches,
        3 * 55,
        "1,100 training images / 20 = 55 batches × 3 epochs"
    );

    // The same events over HTTP, as JSON lines and CSV.
    let (_, jsonl) = get(&format!("{}/api/runs/{run_id}/events?since=0", server.base));
    assert_eq!(jsonl.lines().count(), seqs.len());
    let (_, tail) = get(&format!(
        "{}/api/runs/{run_id}/events?since={}",
        server.base,
        seqs.len() - 2
    ));
    assert_eq!(tail.lines().count(), 2);
    let (_, csv) = get(&format!("{}/api/runs/{run_id}/metrics.csv", server.base));
    assert!(csv.starts_with("kind,split,epoch,batch,step,loss"));
    assert_eq!(csv.lines().filter(|l| l.starts_with("batch,")).count(), 165);
    assert_eq!(
        csv.lines().filter(|l| l.starts_with("eval,")).count(),
        4,
        "3 val + 1 test"
    );

    let show = wait_finished(&server.base, &run_id);
    assert_eq!(show["status"], "completed");
    assert_eq!(
        show["model"]["total_params"],
        4 * 9 + 4 + 3 * (4 * 4 * 9 + 4) + 64 * 128 + 128 + 1290
    );
    let (_, runs) = get(&format!("{}/api/runs", server.base));
    let runs: Value = serde_json::from_str(&runs).unwrap();
    assert!(runs["runs"]
        .as_array()
        .unwrap()
        .iter()
        .any(|r| r["run_id"] == run_id.as_str() && r["status"] == "completed"));
}

#[test]
fn current_gives_a_downsampled_snapshot_and_a_run_can_be_stopped() {
    let server = start_server();
    let mut ws = ws_connect(&server.base, "/ws/runs/current");
    assert_eq!(next_message(&mut ws).unwrap()["type"], "idle");

    let (code, body) = post(&format!("{}/api/runs", server.base), &tiny_config(200));
    assert_eq!(code, 201, "{body}");
    let run_id = body["run_id"].as_str().unwrap().to_string();
    assert_eq!(next_message(&mut ws).unwrap()["type"], "run_changed");
    let snapshot = next_message(&mut ws).unwrap();
    assert_eq!(snapshot["type"], "snapshot");
    assert_eq!(snapshot["run_id"], run_id.as_str());

    // Let it train a little, then stop it over the API.
    let mut batches = 0;
    while batches < 30 {
        let m = next_message(&mut ws).unwrap();
        if m["type"] == "batch" {
            batches += 1;
        }
    }
    let (code, body) = post(
        &format!("{}/api/runs/{run_id}/stop", server.base),
        &json!({}),
    );
    assert_eq!(code, 202, "{body}");
    loop {
        let m = next_message(&mut ws).expect("the socket stays open until the run ends");
        if m["type"] == "run_finished" {
            assert_eq!(m["status"], "stopped");
            break;
        }
    }
    let (code, _) = post(
        &format!("{}/api/runs/{run_id}/stop", server.base),
        &json!({}),
    );
    assert_eq!(code, 409, "stopping a finished run is a conflict");

    // A late viewer gets the whole history as one bounded snapshot.
    let mut late = ws_connect(&server.base, &format!("/ws/runs/{run_id}"));
    let snap = next_message(&mut late).unwrap();
    assert_eq!(snap["type"], "snapshot");
    assert!(snap["series"]["loss"].as_array().unwrap().len() <= 2000);
    assert!(snap["batch_count"].as_u64().unwrap() >= 30);
    assert!(snap["events"]
        .as_array()
        .unwrap()
        .iter()
        .any(|e| e["type"] == "run_started"));
}

/// `train --serve` exits when its run is over; a viewer must still get the
/// end of the run and a proper close, not a connection cut mid-stream.
#[test]
fn train_serve_viewers_get_the_end_of_the_run_before_it_exits() {
    use std::io::{BufRead, BufReader};
    let work = tempfile::tempdir().unwrap();
    let data = work.path().join("data");
    // Long enough (about 600 steps) that the viewer below connects while
    // the run is still going, even on a loaded machine.
    write_synthetic(&data, 3000, 200);
    let mut child = bin()
        .args([
            "train",
            "--serve",
            "127.0.0.1:0",
            "--skip-verify",
            "--backend",
            "cpu",
        ])
        .args([
            "--kernels",
            "4,4,4,4",
            "--batch-size",
            "10",
            "--epochs",
            "1",
        ])
        .args(["--val-size", "100", "--limit-test", "100", "--data-dir"])
        .arg(&data)
        .args(work_dirs(work.path()))
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let base = lines
        .by_ref()
        .map_while(Result::ok)
        .find_map(|l| {
            l.split("serving on ")
                .nth(1)
                .map(|u| u.trim_end_matches('/').to_string())
        })
        .expect("train --serve prints its address");
    std::thread::spawn(move || for _ in lines {});

    let mut ws = ws_connect(&base, "/ws/runs/current?since=0");
    let mut last = Value::Null;
    while let Some(m) = next_message(&mut ws) {
        if m["type"] == "run_finished" {
            last = m;
            break;
        }
    }
    assert_eq!(last["status"], "completed", "the viewer saw the run finish");
    assert_eq!(close_reason(&mut ws), "server exiting");
    assert!(child.wait().unwrap().success());
}

fn first_ts(v: &Value) -> u64 {
    v["summary"]["started_ms"].as_u64().unwrap()
}

#[test]
fn two_runs_posted_back_to_back_both_complete_the_second_queued() {
    let server = start_server();
    let (code, a) = post(&format!("{}/api/runs", server.base), &tiny_config(2));
    assert_eq!(code, 201, "{a}");
    let (code, b) = post(&format!("{}/api/runs", server.base), &tiny_config(1));
    assert_eq!(code, 202, "{b}");
    assert_eq!(b["queued"], true);
    assert_eq!(b["position"], 1);
    // A queued run is not deleted like a trained one: the answer says how.
    let b_id = b["run_id"].as_str().unwrap();
    match ureq::delete(&format!("{}/api/runs/{b_id}", server.base)).call() {
        Err(ureq::Error::Status(409, r)) => {
            let body = r.into_string().unwrap();
            assert!(
                body.contains(&format!("DELETE /api/queue/{b_id}")),
                "{body}"
            );
        }
        other => panic!("{other:?}"),
    }
    let (code, c) = post(&format!("{}/api/runs", server.base), &tiny_config(1));
    assert_eq!(code, 202, "{c}");
    assert_eq!(c["position"], 2);
    // Reorder: the third goes first; a bad position names the field.
    let c_id = c["run_id"].as_str().unwrap();
    let (code, moved) = post(
        &format!("{}/api/queue/{c_id}/move", server.base),
        &json!({"position": 1}),
    );
    assert_eq!(code, 200, "{moved}");
    assert_eq!(moved["queued"][0]["run_id"], c_id);
    let (code, bad) = post(
        &format!("{}/api/queue/{c_id}/move", server.base),
        &json!({"position": 9}),
    );
    assert_eq!(code, 400, "{bad}");
    assert_eq!(bad["errors"][0]["field"], "position");
    let a = wait_ended(&server.base, a["run_id"].as_str().unwrap());
    let c = wait_ended(&server.base, c_id);
    let b = wait_ended(&server.base, b["run_id"].as_str().unwrap());
    for run in [&a, &c, &b] {
        assert_eq!(run["status"], "completed", "{run}");
    }
    assert!(
        first_ts(&a) < first_ts(&c) && first_ts(&c) < first_ts(&b),
        "one after another, in queue order"
    );
    let (_, q) = get(&format!("{}/api/queue", server.base));
    assert_eq!(
        serde_json::from_str::<Value>(&q).unwrap()["queued"],
        json!([])
    );
}

/// One run per device: a run on the wgpu adapter (Mesa's lavapipe here, a
/// device of its own) starts beside a CPU run instead of queueing behind it,
/// while a second CPU run waits for the CPU and starts when it is free.
#[test]
fn a_gpu_run_and_a_cpu_run_train_at_once_and_the_cpu_takes_one_at_a_time() {
    assert!(
        std::path::Path::new("/usr/share/vulkan/icd.d")
            .read_dir()
            .is_ok_and(|mut d| d
                .any(|f| f.is_ok_and(|f| f.file_name().to_string_lossy().starts_with("lvp_icd")))),
        "no lavapipe: apt-get install mesa-vulkan-drivers (as .ci/run does)"
    );
    let work = tempfile::tempdir().unwrap();
    let data = work.path().join("data");
    write_synthetic(&data, 1200, 200);
    let mut args = serve_in(&data, work.path());
    args.push("--skip-verify".into());
    let mut command = bin();
    // Compiling for lavapipe takes minutes; the test never waits for it.
    command.env("MNIST_MONITOR_KERNEL_CACHE", work.path().join("kernels"));
    let server = spawn_server_with(command, args);
    let mut gpu = tiny_config(1);
    gpu["backend"] = json!("wgpu");
    gpu["kernels"] = json!([2, 2, 2, 2]);
    let (code, cpu_a) = post(&format!("{}/api/runs", server.base), &tiny_config(2));
    assert_eq!(code, 201, "{cpu_a}");
    let (code, on_gpu) = post(&format!("{}/api/runs", server.base), &gpu);
    assert_eq!(code, 201, "the GPU is free while the CPU trains: {on_gpu}");
    let (_, health) = get(&format!("{}/api/health", server.base));
    let health: Value = serde_json::from_str(&health).unwrap();
    assert_eq!(
        health["training_runs"].as_array().map(Vec::len),
        Some(2),
        "{health}"
    );
    let (code, cpu_b) = post(&format!("{}/api/runs", server.base), &tiny_config(1));
    assert_eq!(code, 202, "the CPU takes one run at a time: {cpu_b}");
    assert_eq!(cpu_b["position"], 1);
    let (_, queue) = get(&format!("{}/api/queue", server.base));
    let queue: Value = serde_json::from_str(&queue).unwrap();
    let why = queue["queued"][0]["waiting_for"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    // It may have started already if the first CPU run was that quick.
    assert!(
        why.starts_with(&format!(
            "cpu, which run {} trains on",
            cpu_a["run_id"].as_str().unwrap()
        )) || queue["queued"].as_array().unwrap().is_empty(),
        "{queue}"
    );
    let a = wait_ended(&server.base, cpu_a["run_id"].as_str().unwrap());
    let b = wait_ended(&server.base, cpu_b["run_id"].as_str().unwrap());
    assert_eq!(
        (&a["status"], &b["status"]),
        (&json!("completed"), &json!("completed"))
    );
    assert!(first_ts(&a) < first_ts(&b));
    // Pages following the current run moved on to the run still training.
    let (_, health) = get(&format!("{}/api/health", server.base));
    let health: Value = serde_json::from_str(&health).unwrap();
    assert_eq!(health["current_run"], on_gpu["run_id"], "{health}");
    let (_, gpu_run) = get(&format!(
        "{}/api/runs/{}",
        server.base,
        on_gpu["run_id"].as_str().unwrap()
    ));
    let gpu_run: Value = serde_json::from_str(&gpu_run).unwrap();
    assert_eq!(
        gpu_run["status"], "running",
        "the wgpu run still trains (compiles) beside them: {gpu_run}"
    );
}

#[test]
fn the_queue_survives_a_server_restart() {
    let work = tempfile::tempdir().unwrap();
    let data = work.path().join("data");
    write_synthetic(&data, 3000, 200);
    let mut args = serve_in(&data, work.path());
    args.push("--skip-verify".into());
    let server = spawn_server(args.clone());
    let (code, long) = post(&format!("{}/api/runs", server.base), &tiny_config(50));
    assert_eq!(code, 201, "{long}");
    let (code, next) = post(&format!("{}/api/runs", server.base), &tiny_config(1));
    assert_eq!(code, 202, "{next}");
    let next_id = next["run_id"].as_str().unwrap().to_string();
    // The server dies (kill -9) with a run training and one queued.
    let long_id = long["run_id"].as_str().unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while get(&format!("{}/api/runs/{long_id}", server.base))
        .1
        .contains("\"steps\":0")
    {
        assert!(
            std::time::Instant::now() < deadline,
            "the first run never trained"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    drop(server);
    let file = std::fs::read_to_string(work.path().join("runs/.queue.json")).unwrap();
    assert!(file.contains(&next_id), "{file}");
    let server = spawn_server(args);
    let done = wait_ended(&server.base, &next_id);
    assert_eq!(done["status"], "completed", "{done}");
    let (_, killed) = get(&format!(
        "{}/api/runs/{}",
        server.base,
        long["run_id"].as_str().unwrap()
    ));
    let killed: Value = serde_json::from_str(&killed).unwrap();
    assert_eq!(killed["status"], "interrupted", "{killed}");
}
