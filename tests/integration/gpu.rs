//! The GPU code path without a GPU: Burn's wgpu backend on Mesa's lavapipe
//! (a software Vulkan driver that `.ci/run` installs, and that many desktop
//! Linux systems have). Shapes are tiny: lavapipe compiles every kernel on
//! the CPU. The kernel caches live under the build directory, so reruns on
//! one machine skip the compiling.

use crate::common::*;
use base64::Engine;
use mnist_events::EventKind;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

fn lavapipe_installed() -> bool {
    Path::new("/usr/share/vulkan/icd.d/lvp_icd.x86_64.json").exists()
        || Path::new("/usr/share/vulkan/icd.d/lvp_icd.aarch64.json").exists()
}

/// The tests' kernel cache: kept between runs like `target/`.
fn kernel_cache() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target"));
    target.join("test-kernel-cache")
}

fn backends() -> Vec<Value> {
    let out = bin().args(["backends", "--json"]).output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    serde_json::from_slice(&out.stdout).unwrap()
}

/// On a headless machine the Vulkan loader's Wayland support used to print
/// "error: XDG_RUNTIME_DIR is invalid or not set in the environment." four
/// times before `backends` answered.
#[test]
fn backends_on_a_headless_machine_prints_only_its_answer() {
    let out = bin()
        .args(["backends"])
        .env_remove("XDG_RUNTIME_DIR")
        .env_remove("WAYLAND_DISPLAY")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(!err.contains("XDG_RUNTIME_DIR"), "{err}");
    assert!(String::from_utf8_lossy(&out.stdout).contains("cpu   available"));
}

/// `auto` never picks a software renderer: lavapipe trained at 11 images/s
/// after 9 minutes of compiling, against 1,300/s on the CPU backend.
#[test]
fn auto_skips_a_software_adapter_and_backends_says_why() {
    let all = backends();
    let wgpu = all.iter().find(|b| b["name"] == "wgpu").unwrap();
    if lavapipe_installed() {
        assert_eq!(wgpu["available"], true, "{wgpu}");
        assert_eq!(wgpu["software"], true, "{wgpu}");
        let reason = wgpu["reason"].as_str().unwrap();
        assert!(
            reason.contains("auto skips it") && reason.contains("--backend wgpu"),
            "{reason}"
        );
    } else {
        assert_eq!(wgpu["available"], false, "{wgpu}");
        let reason = wgpu["reason"].as_str().unwrap();
        assert!(
            reason.contains("Vulkan driver") && !reason.contains("unwrap"),
            "{reason}"
        );
    }
    let work = tempfile::tempdir().unwrap();
    let data = work.path().join("data");
    write_synthetic(&data, 200, 20);
    let out = bin()
        .args([
            "train",
            "--epochs",
            "1",
            "--kernels",
            "2,2,2,2",
            "--batch-size",
            "50",
        ])
        .args([
            "--val-size",
            "20",
            "--json",
            "--quiet",
            "--hw-interval",
            "0",
            "--skip-verify",
        ])
        .arg("--data-dir")
        .arg(&data)
        .args(work_dirs(work.path()))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let s = summary(&out);
    if !all
        .iter()
        .any(|b| b["name"] != "cpu" && b["available"] == true && b["software"] == false)
    {
        assert_eq!(s["backend"], "cpu", "{s}");
        assert!(
            s["device"].as_str().unwrap().starts_with("cpu"),
            "the device, not a sentence: {s}"
        );
    }
}

fn wgpu_train(data: &Path, work: &Path, extra: &[&str]) -> Command {
    let mut cmd = bin();
    cmd.args([
        "train",
        "--backend",
        "wgpu",
        "--kernels",
        "2,2,2,2",
        "--batch-size",
        "8",
    ])
    .args([
        "--val-size",
        "8",
        "--limit-train",
        "20",
        "--limit-test",
        "16",
    ])
    .args([
        "--hw-interval",
        "0",
        "--quiet",
        "--skip-verify",
        "--data-dir",
    ])
    .arg(data)
    .args(work_dirs(work))
    .args(extra)
    .env("MNIST_MONITOR_KERNEL_CACHE", kernel_cache());
    cmd
}

/// The wgpu tests need an adapter: lavapipe at least.
fn assert_wgpu_adapter() {
    assert!(
        lavapipe_installed()
            || backends()
                .iter()
                .any(|b| b["name"] == "wgpu" && b["available"] == true),
        "no wgpu adapter: apt-get install mesa-vulkan-drivers (as .ci/run does)"
    );
}

/// A tiny run trained on wgpu end to end: batches and evaluations, a
/// checkpoint, a kill and a resume on wgpu, and the wgpu checkpoint
/// predicting on the CPU what the run predicted on the GPU.
#[test]
fn wgpu_trains_resumes_and_its_checkpoint_predicts_the_same_on_cpu() {
    assert_wgpu_adapter();
    let work = tempfile::tempdir().unwrap();
    let data = work.path().join("data");
    write_synthetic(&data, 100, 30);
    let log = work.path().join("runs/gpu/events.jsonl");
    let mut child = wgpu_train(&data, work.path(), &["--epochs", "3", "--run-id", "gpu"])
        .spawn()
        .unwrap();
    // Kill it once epoch 1 is checkpointed (3 steps an epoch).
    let deadline = Instant::now() + Duration::from_secs(1200);
    loop {
        let events = mnist_events::read_events(&log).unwrap_or_default();
        if events
            .iter()
            .any(|e| matches!(e.kind, EventKind::Checkpoint(_)))
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no checkpoint on wgpu within 20 minutes"
        );
        assert!(
            child.try_wait().unwrap().is_none(),
            "the wgpu run ended early"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    child.kill().unwrap();
    child.wait().unwrap();

    let out = wgpu_train(&data, work.path(), &["--resume", "gpu", "--json"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let s = summary(&out);
    assert_eq!(
        (s["backend"].as_str(), s["epochs"].as_u64()),
        (Some("wgpu"), Some(3)),
        "{s}"
    );
    assert!(
        s["device"].as_str().unwrap().contains("software") || !lavapipe_installed(),
        "{s}"
    );
    let events = read_events(&log);
    let kinds = |name: &str| events.iter().filter(|e| e.kind.name() == name).count();
    assert!(
        kinds("batch") >= 9 && kinds("eval") >= 3 && kinds("checkpoint") >= 3,
        "{:?}",
        events.len()
    );
    assert!(events.iter().any(
        |e| matches!(&e.kind, EventKind::Phase(p) if p.phase == mnist_events::PhaseKind::Compiling)
    ));
    let losses: Vec<f64> = events
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::Batch(b) => Some(b.loss),
            _ => None,
        })
        .collect();
    assert!(losses.iter().all(|l| l.is_finite()), "{losses:?}");

    // The checkpoint of epoch 3 on the CPU predicts what the run's last
    // samples event (computed on wgpu) says.
    let samples = events
        .iter()
        .rev()
        .find_map(|e| match &e.kind {
            EventKind::Samples(s) if s.epoch == 3 => Some(s.samples.clone()),
            _ => None,
        })
        .expect("samples after epoch 3");
    let mut args = serve_in(&data, work.path());
    args.push("--skip-verify".into());
    let server = spawn_server(args);
    for sample in &samples {
        let png = base64::engine::general_purpose::STANDARD
            .decode(&sample.png_base64)
            .unwrap();
        let pixels: Vec<u8> = image::load_from_memory(&png).unwrap().to_luma8().into_raw();
        let (code, out) = post(
            &format!("{}/api/predict", server.base),
            &serde_json::json!({"pixels": pixels, "run_id": "gpu", "checkpoint": "epoch-0003"}),
        );
        assert_eq!(code, 200, "{out}");
        let p = out["probs"][sample.predicted as usize].as_f64().unwrap();
        assert!(
            (p - sample.confidence).abs() < 1e-3,
            "sample {}: the CPU gives p = {p} to digit {}, wgpu gave {}",
            sample.index,
            sample.predicted,
            sample.confidence
        );
    }
}

/// What CubeCL compiled and tuned, in the order of its debug log: each
/// compiled kernel (its whole entry: id and source, where a constant baked
/// into a kernel would show) and each autotune key (without the winner,
/// which is a race of timings).
#[derive(Debug)]
struct Compiled {
    kernels: Vec<String>,
    autotune_keys: Vec<String>,
}

impl Compiled {
    fn read(log: &Path) -> Self {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        let kernels = text
            .split("[START_KERNEL_COMPILATION]")
            .skip(1)
            .map(|k| {
                k.split("[END_KERNEL_COMPILATION]")
                    .next()
                    .unwrap()
                    .to_string()
            })
            .collect();
        let autotune_keys = text
            .lines()
            .filter_map(|l| l.strip_prefix("Fastest result "))
            .map(|l| l.split_once('-').map_or(l, |(_, key)| key).to_string())
            .collect();
        Compiled {
            kernels,
            autotune_keys,
        }
    }

    /// What this log holds past the first `before.kernels.len()` kernels
    /// and `before.autotune_keys.len()` keys.
    fn since(&self, before: &Compiled) -> Compiled {
        Compiled {
            kernels: self.kernels[before.kernels.len()..].to_vec(),
            autotune_keys: self.autotune_keys[before.autotune_keys.len()..].to_vec(),
        }
    }

    /// The kernels and keys of this log that `other` never met.
    fn absent_from(&self, other: &Compiled) -> Compiled {
        let absent = |mine: &[String], theirs: &[String]| -> Vec<String> {
            let theirs: std::collections::HashSet<&String> = theirs.iter().collect();
            mine.iter()
                .filter(|k| !theirs.contains(k))
                .cloned()
                .collect()
        };
        Compiled {
            kernels: absent(&self.kernels, &other.kernels),
            autotune_keys: absent(&self.autotune_keys, &other.autotune_keys),
        }
    }
}

/// A tiny wgpu run paused once its first epoch is checkpointed (every kernel
/// of a step, an evaluation and a checkpoint has run by then), its rate
/// changed (when `lr` is given), resumed to the end: what CubeCL compiled
/// and tuned in the whole run and after the pause, and the run's events.
/// Each run has a kernel cache of its own, empty: what it compiles and
/// tunes depends on nothing another test left.
fn after_the_pause(lr: Option<f64>) -> (Compiled, Compiled, Vec<mnist_events::Event>) {
    let work = tempfile::tempdir().unwrap();
    let data = work.path().join("data");
    write_synthetic(&data, 100, 30);
    let cubecl_log = work.path().join("cubecl.log");
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let serve = format!("127.0.0.1:{port}");
    let mut child = wgpu_train(
        &data,
        work.path(),
        &["--epochs", "3", "--run-id", "lr", "--serve", &serve],
    )
    .env("CUBECL_DEBUG_LOG", &cubecl_log)
    .env("MNIST_MONITOR_KERNEL_CACHE", work.path().join("kernels"))
    .spawn()
    .unwrap();
    let log = work.path().join("runs/lr/events.jsonl");
    let deadline = Instant::now() + Duration::from_secs(1200);
    let wait_for = |what: &str, found: &dyn Fn(&[mnist_events::Event]) -> bool| loop {
        if found(&mnist_events::read_events(&log).unwrap_or_default()) {
            return;
        }
        assert!(Instant::now() < deadline, "no {what} within 20 minutes");
        std::thread::sleep(Duration::from_millis(50));
    };
    wait_for("checkpoint", &|events| {
        events
            .iter()
            .any(|e| matches!(e.kind, EventKind::Checkpoint(_)))
    });
    let control = |body: Value| {
        let (code, answer) = post(&format!("{base}/api/runs/lr/control"), &body);
        assert_eq!(code, 202, "{body}: {answer}");
    };
    control(serde_json::json!({"action": "pause"}));
    wait_for("applied pause", &|events| {
        events.iter().any(|e| {
            matches!(&e.kind, EventKind::Control(c)
                if matches!(c.action, mnist_events::ControlAction::Pause))
        })
    });
    let before = Compiled::read(&cubecl_log);
    assert!(!before.kernels.is_empty(), "CubeCL logged no compilation");
    if let Some(lr) = lr {
        control(serde_json::json!({"action": "set_lr", "lr": lr}));
    }
    control(serde_json::json!({"action": "resume"}));
    assert!(child.wait().unwrap().success());
    let all = Compiled::read(&cubecl_log);
    let since = all.since(&before);
    (all, since, read_events(&log))
}

/// A new learning rate is a scalar: changing it mid-run on wgpu (lavapipe)
/// compiles and autotunes nothing new. CubeCL logs every kernel it
/// compiles (with its source) and every autotune key (`CUBECL_DEBUG_LOG`).
/// Every kernel and key the steered run met after its pause, the same run
/// paused and resumed without a new rate met too. (Not counts after the
/// pause: when a run's later fused kernels first compile depends on when
/// the pause lands, a race of timings.)
#[test]
fn a_new_learning_rate_compiles_nothing_on_wgpu() {
    assert_wgpu_adapter();
    let (plain, _, _) = after_the_pause(None);
    let (_, steered, events) = after_the_pause(Some(0.0005));
    let trained_at_new_rate = events
        .iter()
        .filter(|e| matches!(&e.kind, EventKind::Batch(b) if b.lr == 0.0005))
        .count();
    assert!(trained_at_new_rate >= 3, "the new rate trained on");
    let new = steered.absent_from(&plain);
    assert!(
        new.kernels.is_empty(),
        "{} kernels compiled for the new rate, first:\n{}",
        new.kernels.len(),
        new.kernels[0].chars().take(3000).collect::<String>()
    );
    assert!(
        new.autotune_keys.is_empty(),
        "autotuned for the new rate: {:?}",
        new.autotune_keys
    );
}
