use super::*;
use mnist_events::*;

fn ev(seq: u64, ts_ms: u64, kind: EventKind) -> Event {
    Event {
        seq,
        ts_ms,
        run_id: "r".into(),
        kind,
    }
}

fn started(backend: &str) -> EventKind {
    EventKind::RunStarted(Box::new(RunStarted {
        config: serde_json::Value::Null,
        model: ModelSummary {
            input_shape: vec![],
            layers: vec![],
            total_params: 0,
        },
        backend: backend.into(),
        device: "d".into(),
        device_index: None,
        device_reason: None,
        train_size: 1,
        val_size: 1,
        test_size: 1,
        batches_per_epoch: 1,
        resumed_from_epoch: None,
        resumed_from_step: None,
        label_overrides: None,
        provenance: None,
        parent: None,
    }))
}

fn batch(loss: f64) -> EventKind {
    EventKind::Batch(BatchMetrics {
        epoch: 1,
        batch: 3,
        batches: 10,
        step: 3,
        size: 64,
        loss,
        accuracy: 0.1,
        f1_macro: 0.1,
        epoch_loss: loss,
        epoch_accuracy: 0.1,
        epoch_f1_macro: 0.1,
        lr: 10.0,
        images_per_sec: 1.0,
        elapsed_s: 1.0,
    })
}

fn val(epoch: usize, loss: f64) -> EventKind {
    EventKind::Eval(EvalMetrics {
        split: Split::Val,
        epoch,
        step: 0,
        images: 1,
        loss,
        accuracy: 0.5,
        f1_macro: 0.5,
        mse: 0.0,
        per_class: vec![],
        confusion: vec![],
        seconds: 0.0,
    })
}

fn hw(ts_ms: u64, gpu_util: u32, temp: u32, mem_used: u64) -> EventKind {
    EventKind::Hardware(HardwareSnapshot {
        sampled_at_ms: ts_ms,
        host: "h".into(),
        interval_s: 1.0,
        cpu: CpuStats {
            model: String::new(),
            cores: 2,
            physical_cores: None,
            usage_percent: 0.0,
            per_core_percent: vec![],
            load_avg: [0.0; 3],
        },
        memory: MemoryStats {
            total_bytes: 100,
            used_bytes: mem_used,
            available_bytes: 100 - mem_used,
            swap_total_bytes: 0,
            swap_used_bytes: 0,
        },
        process: ProcessStats {
            pid: 1,
            rss_bytes: 0,
            cpu_percent: 0.0,
        },
        disks: vec![],
        network: vec![],
        gpus: vec![GpuStats {
            utilization_percent: Some(gpu_util),
            memory_used_bytes: Some(10),
            memory_total_bytes: Some(100),
            temperature_celsius: Some(temp),
            ..Default::default()
        }],
        gpu_error: None,
    })
}

fn rules(engine: &mut AlertEngine, kinds: Vec<(u64, EventKind)>) -> Vec<String> {
    kinds
        .into_iter()
        .enumerate()
        .flat_map(|(i, (ts, k))| engine.check(&ev(i as u64 + 1, ts, k)))
        .map(|a| a.rule)
        .collect()
}

#[test]
fn nan_loss_fires_once_and_sets_the_stop_flag() {
    let stop = mnist_events::Stop::new();
    let mut e = AlertEngine::new(AlertRules::default(), Some(stop.clone()));
    let fired = e.check(&ev(1, 0, batch(f64::NAN)));
    assert_eq!(fired.len(), 1);
    assert_eq!(fired[0].rule, "loss_not_finite");
    assert_eq!(fired[0].severity, AlertSeverity::Critical);
    assert!(fired[0].action.as_deref().unwrap().contains("stopped"));
    assert_eq!(stop.reason(), Some(mnist_events::StopReason::LossNotFinite));
    assert!(
        e.check(&ev(2, 0, batch(f64::INFINITY))).is_empty(),
        "fires once while it lasts"
    );
    assert!(e.check(&ev(3, 0, batch(1.0))).is_empty());
    assert_eq!(
        e.check(&ev(4, 0, batch(f64::NAN))).len(),
        1,
        "re-armed after a finite loss"
    );
}

#[test]
fn a_forks_or_resumed_runs_diagnosis_points_to_the_checkpoint_it_started_from() {
    let mut fork = started("cpu");
    if let EventKind::RunStarted(r) = &mut fork {
        r.parent = Some(mnist_events::Parent {
            run_id: "parent-run".into(),
            epoch: 3,
            step: 300,
            optimizer_state: true,
        });
    }
    let mut e = AlertEngine::new(AlertRules::default(), None);
    e.check(&ev(1, 0, fork));
    let fired = e.check(&ev(2, 0, batch(f64::NAN)));
    let d = fired[0].diagnosis.as_ref().unwrap();
    let good = d.last_good_checkpoint.as_ref().unwrap();
    assert_eq!(
        (good.run_id.as_deref(), good.epoch, good.step),
        (Some("parent-run"), 3, 300)
    );
    assert!(
        fired[0]
            .message
            .contains("fork run parent-run from epoch 3's checkpoint"),
        "{}",
        fired[0].message
    );

    let mut resumed = started("cpu");
    if let EventKind::RunStarted(r) = &mut resumed {
        (r.resumed_from_epoch, r.resumed_from_step) = (Some(2), Some(200));
    }
    let mut e = AlertEngine::new(AlertRules::default(), None);
    e.check(&ev(1, 0, resumed));
    let fired = e.check(&ev(2, 0, batch(f64::NAN)));
    let good = fired[0]
        .diagnosis
        .as_ref()
        .unwrap()
        .last_good_checkpoint
        .clone();
    assert_eq!(
        good,
        Some(mnist_events::GoodCheckpoint {
            epoch: 2,
            step: 200,
            run_id: None
        })
    );
}

#[test]
fn without_stop_on_nan_the_run_goes_on() {
    let mut e = AlertEngine::new(AlertRules::default(), None);
    let fired = e.check(&ev(1, 0, batch(f64::NAN)));
    assert_eq!(fired[0].action, None);
}

#[test]
fn loss_rising_needs_n_consecutive_rises() {
    let mut e = AlertEngine::new(AlertRules::default(), None);
    let fired = rules(
        &mut e,
        vec![
            (0, val(1, 0.5)),
            (0, val(2, 0.4)),
            (0, val(3, 0.45)),
            (0, val(4, 0.5)),
        ],
    );
    assert!(fired.is_empty(), "two rises are not three: {fired:?}");
    let fired = rules(&mut e, vec![(0, val(5, 0.6))]);
    assert_eq!(fired, vec!["loss_rising"]);
    assert!(
        rules(&mut e, vec![(0, val(6, 0.7))]).is_empty(),
        "once per streak"
    );
}

#[test]
fn hot_gpu_fires_with_hysteresis() {
    let mut e = AlertEngine::new(AlertRules::default(), None);
    let fired = rules(
        &mut e,
        vec![
            (0, hw(0, 90, 80, 10)),
            (1000, hw(1000, 90, 86, 10)),
            (2000, hw(2000, 90, 84, 10)),
            (3000, hw(3000, 90, 87, 10)),
        ],
    );
    assert_eq!(
        fired,
        vec!["gpu_temperature"],
        "84 °C is within the 5 °C hysteresis"
    );
    let fired = rules(
        &mut e,
        vec![(4000, hw(4000, 90, 70, 10)), (5000, hw(5000, 90, 88, 10))],
    );
    assert_eq!(fired, vec!["gpu_temperature"]);
}

#[test]
fn host_memory_above_95_percent() {
    let mut e = AlertEngine::new(AlertRules::default(), None);
    assert_eq!(
        rules(&mut e, vec![(0, hw(0, 50, 40, 96))]),
        vec!["host_memory"]
    );
    assert!(rules(&mut e, vec![(0, hw(0, 50, 40, 97))]).is_empty());
}

/// `seconds` hardware samples, one a second, with the GPU `util`% busy.
fn gpu_at(util: u32, seconds: u64) -> Vec<(u64, EventKind)> {
    (0..seconds)
        .map(|s| (s * 1000, hw(s * 1000, util, 40, 10)))
        .collect()
}

#[test]
fn idle_gpu_only_counts_while_a_gpu_run_trains() {
    let mut e = AlertEngine::new(AlertRules::default(), None);
    // Idle with no run: nothing.
    assert!(rules(&mut e, gpu_at(0, 40)).is_empty());
    // A CPU run leaves the GPU idle on purpose.
    let _ = e.check(&ev(1, 0, started("cpu")));
    assert!(rules(&mut e, gpu_at(0, 40)).is_empty());
    let _ = e.check(&ev(1, 0, started("cuda")));
    let fired = rules(&mut e, gpu_at(3, 40));
    assert_eq!(fired, vec!["gpu_idle"], "fires once, after 30 s");
    let mut e2 = AlertEngine::new(AlertRules::default(), None);
    let _ = e2.check(&ev(1, 0, started("cuda")));
    let mut busy_every_20s: Vec<(u64, EventKind)> = Vec::new();
    for s in 0..60u64 {
        busy_every_20s.push((
            s * 1000,
            hw(s * 1000, if s % 20 == 0 { 90 } else { 0 }, 40, 10),
        ));
    }
    assert!(
        rules(&mut e2, busy_every_20s).is_empty(),
        "a busy sample resets the idle clock"
    );
}

#[test]
fn a_run_without_batches_for_the_stall_time_is_stalled_once_and_rearms() {
    let rules_60s = AlertRules {
        stall_seconds: 60.0,
        ..AlertRules::default()
    };
    let mut e = AlertEngine::new(rules_60s, None);
    let t0 = 1_000_000;
    let _ = e.check(&ev(1, t0, started("cpu")));
    let _ = e.check(&ev(2, t0 + 1000, batch(1.0)));
    let samples = |from: u64, to: u64| -> Vec<(u64, EventKind)> {
        (from..to)
            .step_by(10)
            .map(|s| (t0 + s * 1000, hw(t0 + s * 1000, 0, 40, 10)))
            .collect()
    };
    assert!(rules(&mut e, samples(0, 60)).is_empty(), "under a minute");
    let fired = e
        .check(&ev(3, t0 + 70_000, hw(t0 + 70_000, 0, 40, 10)))
        .into_iter()
        .map(|a| a.message)
        .collect::<Vec<_>>();
    assert_eq!(fired.len(), 1, "{fired:?}");
    assert!(
        fired[0].contains("no batch for 69 s (last at step 3)"),
        "{fired:?}"
    );
    assert!(rules(&mut e, samples(71, 200)).is_empty(), "fires once");
    // Progress re-arms it; another silence fires again.
    let _ = e.check(&ev(4, t0 + 200_000, batch(1.0)));
    assert!(rules(&mut e, samples(201, 250)).is_empty());
    assert_eq!(rules(&mut e, samples(261, 300)), vec!["stalled"]);
    // A finished run is not stalled.
    let mut done = AlertEngine::new(
        AlertRules {
            stall_seconds: 60.0,
            ..AlertRules::default()
        },
        None,
    );
    let _ = done.check(&ev(1, t0, started("cpu")));
    let _ = done.check(&finished(RunStatus::Completed, None));
    assert!(rules(&mut done, samples(0, 300)).is_empty());
}

fn finished(status: RunStatus, error: Option<&str>) -> Event {
    ev(
        9,
        5,
        EventKind::RunFinished(RunFinished {
            status,
            error: error.map(str::to_string),
            reason: None,
            epochs_completed: 3,
            steps: 300,
            train_seconds: 42.0,
            test_accuracy: error.is_none().then_some(0.9912),
            test_f1_macro: error.is_none().then_some(0.991),
            test_loss: None,
        }),
    )
}

#[test]
fn webhook_bodies_follow_slack_discord_or_json() {
    assert_eq!(
        WebhookFormat::Auto.for_url("https://hooks.slack.com/services/T/B/x"),
        WebhookFormat::Slack
    );
    assert_eq!(
        WebhookFormat::Auto.for_url("https://discord.com/api/webhooks/1/abc"),
        WebhookFormat::Discord
    );
    assert_eq!(
        WebhookFormat::Auto.for_url("https://discordapp.com/api/webhooks/1/abc"),
        WebhookFormat::Discord
    );
    assert_eq!(
        WebhookFormat::Auto.for_url("https://evil.example/hooks.slack.com"),
        WebhookFormat::Json
    );
    assert_eq!(
        WebhookFormat::Auto.for_url("https://discord.com/channels/1"),
        WebhookFormat::Json
    );
    assert_eq!(
        WebhookFormat::Discord.for_url("http://127.0.0.1:9/x"),
        WebhookFormat::Discord
    );
    assert!("teams"
        .parse::<WebhookFormat>()
        .unwrap_err()
        .contains("slack, discord"));

    let done = finished(RunStatus::Completed, None);
    let slack = webhook_body(WebhookFormat::Slack, &done).unwrap();
    assert_eq!(
        slack["text"],
        "mnist-monitor run r completed: test accuracy 99.12%"
    );
    assert_eq!(slack["blocks"][0]["type"], "section");
    assert!(slack["blocks"][1]["fields"]
        .as_array()
        .unwrap()
        .iter()
        .any(|f| f["text"] == "*test accuracy*\n99.12%"));
    let failed = finished(RunStatus::Failed, Some("out of memory"));
    let discord = webhook_body(WebhookFormat::Discord, &failed).unwrap();
    assert_eq!(discord["embeds"][0]["title"], "mnist-monitor run r failed");
    assert_eq!(discord["embeds"][0]["description"], "out of memory");
    assert_eq!(discord["embeds"][0]["color"], 0xff5d5d);
    assert!(discord.get("content").is_none() || discord["content"].is_null());
    let stopped = webhook_body(WebhookFormat::Json, &finished(RunStatus::Stopped, None)).unwrap();
    assert_eq!(stopped["event"], "run_finished");
    assert_eq!(stopped["run_finished"]["status"], "stopped");
    assert!(stopped["text"].as_str().unwrap().contains("stopped"));
    assert!(
        webhook_body(WebhookFormat::Slack, &ev(1, 1, batch(1.0))).is_none(),
        "batches are not notifications"
    );
}
