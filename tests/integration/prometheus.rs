//! `/metrics` scraped by a real Prometheus server (Debian's `prometheus`,
//! installed by `.ci/run`) and read back through its HTTP query API.

use crate::common::*;
use serde_json::{json, Value};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

struct Prometheus(Child);

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `prometheus` scraping `targets` (host:port) every second as job
/// `mnist-monitor`, its data in `work`; the process (killed when dropped)
/// and its base URL.
fn start_prometheus(
    prometheus: &str,
    work: &std::path::Path,
    targets: &[&str],
) -> (Prometheus, String) {
    let port = free_port();
    let targets = targets
        .iter()
        .map(|t| format!("'{t}'"))
        .collect::<Vec<_>>()
        .join(", ");
    let config = work.join("prometheus.yml");
    std::fs::write(
        &config,
        format!("global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nscrape_configs:\n  - job_name: mnist-monitor\n    static_configs:\n      - targets: [{targets}]\n"),
    )
    .unwrap();
    let child = Command::new(prometheus)
        .arg(format!("--config.file={}", config.display()))
        .arg(format!(
            "--storage.tsdb.path={}",
            work.join("tsdb").display()
        ))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start prometheus");
    (Prometheus(child), format!("http://127.0.0.1:{port}"))
}

/// The value of an instant query's single series, once it has one.
fn query(prom: &str, q: &str) -> Option<(Value, f64)> {
    // Prometheus takes a moment to listen: a refused connection is "not yet".
    let body = ureq::get(&format!("{prom}/api/v1/query"))
        .query("query", q)
        .call()
        .ok()?
        .into_string()
        .ok()?;
    let v: Value = serde_json::from_str(&body).ok()?;
    let first = v["data"]["result"].as_array()?.first()?.clone();
    let value: f64 = first["value"][1].as_str()?.parse().ok()?;
    Some((first["metric"].clone(), value))
}

fn wait_for(prom: &str, q: &str, ok: impl Fn(f64) -> bool) -> (Value, f64) {
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        if let Some((labels, v)) = query(prom, q) {
            if ok(v) {
                return (labels, v);
            }
        }
        assert!(
            Instant::now() < deadline,
            "Prometheus never answered {q} as expected (last: {:?})",
            query(prom, q)
        );
        std::thread::sleep(Duration::from_millis(300));
    }
}

#[test]
fn prometheus_scrapes_training_and_hardware_gauges() {
    let prometheus = std::env::var("PROMETHEUS").unwrap_or_else(|_| "/usr/bin/prometheus".into());
    assert!(
        std::path::Path::new(&prometheus).exists(),
        "{prometheus} is missing: apt-get install prometheus (as .ci/run does)"
    );
    let work = tempfile::tempdir().unwrap();
    let data = work.path().join("data");
    write_synthetic(&data, 3000, 200);
    let mut args = serve_in(&data, work.path());
    args.extend(["--skip-verify".into(), "--hw-interval".into(), "0.5".into()]);
    let server = spawn_server(args);
    // A run long enough to be scraped while it trains.
    let (code, body) = post(
        &format!("{}/api/runs", server.base),
        &json!({"kernels": [4, 4, 4, 4], "batch_size": 10, "epochs": 30, "backend": "cpu", "val_size": 100, "limit_test": 100}),
    );
    assert_eq!(code, 201, "{body}");
    let run_id = body["run_id"].as_str().unwrap().to_string();

    let target = server.base.trim_start_matches("http://");
    let (_prom, prom) = start_prometheus(&prometheus, work.path(), &[target]);

    // The scrape succeeds: Prometheus parsed our exposition format.
    let (labels, _) = wait_for(&prom, r#"up{job="mnist-monitor"}"#, |v| v == 1.0);
    assert_eq!(labels["instance"], target);
    let (code, targets) = get(&format!("{prom}/api/v1/targets"));
    assert_eq!(code, 200);
    let targets: Value = serde_json::from_str(&targets).unwrap();
    let t = &targets["data"]["activeTargets"][0];
    assert_eq!(t["health"], "up", "{t}");
    assert_eq!(t["lastError"], "", "{t}");

    // Training gauges move while the run trains.
    let (labels, step) = wait_for(&prom, "mnist_train_step", |v| v > 0.0);
    assert_eq!(labels["run_id"], run_id.as_str());
    wait_for(&prom, "mnist_train_step", |v| v > step);
    let (_, loss) = wait_for(&prom, "mnist_train_loss", |v| v.is_finite());
    assert!(loss > 0.0);
    wait_for(&prom, r#"mnist_run_status{status="running"}"#, |v| v == 1.0);
    wait_for(&prom, "mnist_train_images_per_second", |v| v > 0.0);

    // Hardware gauges: the machine's real memory and cores.
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap();
    let kib: f64 = meminfo
        .lines()
        .find(|l| l.starts_with("MemTotal:"))
        .unwrap()
        .split_whitespace()
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let (_, mem) = wait_for(&prom, "mnist_memory_total_bytes", |v| v > 0.0);
    assert_eq!(mem, kib * 1024.0);
    let cores = std::thread::available_parallelism().unwrap().get() as f64;
    wait_for(&prom, "mnist_cpu_cores", |v| v == cores);
    wait_for(&prom, "count(mnist_cpu_core_usage_ratio)", |v| v == cores);
    wait_for(
        &prom,
        r#"mnist_network_receive_bytes_total{interface="lo"}"#,
        |v| v > 0.0,
    );
    // The GPUs `nvidia-smi` sees (none on a machine without the driver).
    let gpus = std::process::Command::new("nvidia-smi")
        .arg("--list-gpus")
        .output()
        .map(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .filter(|l| l.starts_with("GPU "))
                .count()
        })
        .unwrap_or(0) as f64;
    wait_for(&prom, "mnist_gpu_count", |v| v == gpus);

    let (code, _) = post(
        &format!("{}/api/runs/{run_id}/stop", server.base),
        &json!({}),
    );
    assert_eq!(code, 202);
    wait_for(&prom, r#"mnist_run_status{status="stopped"}"#, |v| v == 1.0);
}

/// An exporter process, killed when dropped (a failed assertion included).
struct Exporter(Child);

impl Drop for Exporter {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// An `exporter` started like `serve`: its address from its first line.
fn spawn_exporter(runs: &std::path::Path) -> (Exporter, String) {
    use std::io::{BufRead, BufReader};
    let mut child = bin()
        .args([
            "exporter",
            "--bind",
            "127.0.0.1:0",
            "--hw-interval",
            "0.5",
            "--run-dir",
        ])
        .arg(runs)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let line = lines.next().unwrap().unwrap();
    let url = line
        .split("serving on ")
        .nth(1)
        .unwrap()
        .trim()
        .trim_end_matches("/metrics")
        .to_string();
    std::thread::spawn(move || for _ in lines {});
    (Exporter(child), url)
}

/// The fleet table built from a real Prometheus scraping two exporters on
/// loopback (`serve --fleet-prometheus`), one of which then goes away; and
/// the shipped Prometheus config and Grafana dashboard are valid.
#[test]
fn the_fleet_table_comes_from_prometheus_scraping_two_exporters() {
    let prometheus = std::env::var("PROMETHEUS").unwrap_or_else(|_| "/usr/bin/prometheus".into());
    let work = tempfile::tempdir().unwrap();
    let data = work.path().join("data");
    write_synthetic(&data, 300, 60);
    // Host A has a finished run in its folder; host B none.
    let runs_a = work.path().join("a/runs");
    let out = bin()
        .args([
            "train",
            "--run-id",
            "on-a",
            "--epochs",
            "1",
            "--kernels",
            "4,4,4,4",
            "--batch-size",
            "20",
            "--val-size",
            "60",
        ])
        .args([
            "--backend",
            "cpu",
            "--quiet",
            "--skip-verify",
            "--hw-interval",
            "0",
            "--checkpoint-dir",
        ])
        .arg(work.path().join("a/ckpt"))
        .arg("--run-dir")
        .arg(&runs_a)
        .arg("--data-dir")
        .arg(&data)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let (a, url_a) = spawn_exporter(&runs_a);
    let (b, url_b) = spawn_exporter(&work.path().join("b/runs"));
    // An exporter serves /metrics (once it has a sample) and nothing else.
    assert_eq!(get(&format!("{url_a}/api/health")).0, 404);
    let deadline = Instant::now() + Duration::from_secs(20);
    while !get(&format!("{url_a}/metrics"))
        .1
        .contains("mnist_cpu_usage_ratio")
    {
        assert!(Instant::now() < deadline, "the exporter never had a sample");
        std::thread::sleep(Duration::from_millis(100));
    }

    let targets = [&url_a, &url_b].map(|u| u.trim_start_matches("http://"));
    let (_prom, prom) = start_prometheus(&prometheus, work.path(), &targets);
    let mut args = serve_in(&data, work.path());
    args.extend([
        "--fleet-prometheus".into(),
        prom.clone().into(),
        "--fleet-interval".into(),
        "1".into(),
    ]);
    let server = spawn_server(args);
    let fleet = |want: &dyn Fn(&[Value]) -> bool| -> Vec<Value> {
        let deadline = Instant::now() + Duration::from_secs(90);
        loop {
            let (_, body) = get(&format!("{}/api/fleet", server.base));
            let v: Value = serde_json::from_str(&body).unwrap();
            assert_eq!(v["source"], "prometheus", "{v}");
            let hosts = v["hosts"].as_array().cloned().unwrap_or_default();
            if want(&hosts) {
                return hosts;
            }
            assert!(
                Instant::now() < deadline,
                "the fleet never became as expected: {v}"
            );
            std::thread::sleep(Duration::from_millis(300));
        }
    };
    let hosts = fleet(&|h| {
        h.len() == 2
            && h.iter()
                .all(|h| h["state"] == "up" && h["stats"]["memory"]["total_bytes"].is_number())
    });
    let host_a = hosts
        .iter()
        .find(|h| h["host"] == url_a.trim_start_matches("http://"))
        .unwrap();
    assert_eq!(host_a["run"]["run_id"], "on-a", "{host_a}");
    assert_eq!(host_a["run"]["active"], false, "{host_a}");
    // Host B goes away: Prometheus says so, and so does the table.
    drop(b);
    let gone = url_b.trim_start_matches("http://").to_string();
    fleet(&|h| {
        h.iter()
            .any(|h| h["host"] == gone.as_str() && h["state"] == "down")
    });
    drop(a);

    // The shipped files.
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let promtool = std::path::Path::new(&prometheus).with_file_name("promtool");
    if promtool.exists() {
        let out = Command::new(&promtool)
            .args(["check", "config"])
            .arg(root.join("deploy/prometheus/prometheus.yml"))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stdout)
        );
    }
    let dashboard: Value = serde_json::from_str(
        &std::fs::read_to_string(root.join("deploy/grafana/mnist-fleet.json")).unwrap(),
    )
    .unwrap();
    let panels = dashboard["panels"].as_array().unwrap();
    assert!(panels.len() >= 8);
    for p in panels {
        let expr = p["targets"][0]["expr"].as_str().unwrap();
        assert!(expr.contains("job=\"mnist-monitor\""), "{expr}");
    }
}
