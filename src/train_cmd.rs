//! `mnist-monitor train`.

use crate::cli::TrainArgs;
use crate::progress::Progress;
use mnist_data::{missing_files, Verify};
use mnist_events::RunStatus;
use mnist_events::{Stop, StopReason};
use mnist_train::{RunError, RunOptions, TrainConfig};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// The configuration `args` describe: the `--config` file (if any) with the
/// flags on top, validated; `Err` is the exit code after printing why.
fn config_from(args: &TrainArgs) -> Result<TrainConfig, i32> {
    let base = match &args.config {
        None => TrainConfig::default(),
        Some(path) => {
            let text = std::fs::read_to_string(path).map_err(|e| {
                eprintln!("error: --config {}: {e}", path.display());
                2
            })?;
            TrainConfig::from_toml(&text).map_err(|errors| {
                for e in errors {
                    eprintln!(
                        "error: --config {}: field {}: {}",
                        path.display(),
                        e.field,
                        e.message
                    );
                }
                2
            })?
        }
    };
    let config = args.apply(base);
    if let Err(errors) = config.validate() {
        for e in errors {
            match &args.config {
                // A value that came from the file and no flag replaced.
                Some(path) if !args.sets(&e.field) => {
                    eprintln!(
                        "error: --config {}: field {}: {}",
                        path.display(),
                        e.field,
                        e.message
                    )
                }
                _ => eprintln!("error: {}: {}", e.flag(), e.message),
            }
        }
        return Err(2);
    }
    Ok(config)
}

/// Exit codes: 0 completed, 1 failed, 2 bad input, 130 stopped by Ctrl-C.
pub fn run(args: TrainArgs) -> i32 {
    let config = match config_from(&args) {
        Ok(c) => c,
        Err(code) => return code,
    };

    // Ctrl-C, and SIGTERM or SIGHUP (what `kill`, systemd, Docker and a
    // closed terminal send), stop after the current batch with a proper
    // `run_finished`; a second one quits at once.
    let stop = Stop::new();
    let handler_stop = stop.clone();
    let signalled = AtomicBool::new(false);
    let _ = ctrlc::set_handler(move || {
        if signalled.swap(true, Ordering::SeqCst) {
            eprintln!("second stop signal: exiting now");
            std::process::exit(130);
        }
        handler_stop.request(StopReason::User);
        eprintln!("stopping after this batch (Ctrl-C again to quit at once)");
    });

    let verify = if args.skip_verify {
        Verify::Skip
    } else {
        Verify::Sha256
    };
    let download =
        !args.no_download && verify == Verify::Sha256 && !missing_files(&args.data_dir).is_empty();
    let mut sinks: Vec<Box<dyn mnist_events::EventSink>> = Vec::new();
    if !args.quiet {
        sinks.push(Box::new(Progress::new()));
    }
    let run_id = args
        .resume
        .clone()
        .or(args.run_id.clone())
        .unwrap_or_else(mnist_train::new_run_id);
    let hardware = args
        .watch
        .monitor(vec![args.run_dir.clone(), args.checkpoint_dir.clone()]);
    let mut serving = None;
    if let Some(addr) = args.serve {
        match serve_run(&args, addr, &run_id, &stop, hardware.clone()) {
            Ok((sink, server)) => {
                sinks.push(sink);
                serving = Some(server);
            }
            Err(e) => {
                eprintln!("error: --serve {addr}: {e}");
                return 2;
            }
        }
    }
    let opts = RunOptions {
        data_dir: args.data_dir.clone(),
        verify,
        download,
        runs_dir: args.run_dir.clone(),
        checkpoints_dir: args.checkpoint_dir.clone(),
        run_id: Some(run_id),
        resume: args.resume.clone(),
        stop,
        sinks,
        data: None,
        hardware,
        alerts: Some(mnist_alerts::AlertRules::default()),
        stop_on_nan: args.watch.stop_on_nan,
        alert_webhook: args.watch.alert_webhook.clone(),
    };
    if args.resume.is_some() && config != TrainConfig::default() {
        eprintln!("note: --resume continues with the run's stored configuration; other training flags are ignored");
    }
    let result = mnist_train::run(config, opts);
    if let Some(server) = serving {
        // Viewers get the end of the run before the process goes.
        server.shutdown(std::time::Duration::from_secs(5));
    }
    match result {
        Ok(summary) => {
            if args.json {
                println!(
                    "{}",
                    serde_json::to_string(&summary).expect("summary serialises")
                );
            }
            match summary.status {
                RunStatus::Completed => 0,
                RunStatus::Stopped => {
                    eprintln!(
                        "resume with: mnist-monitor train --resume {} (continues after the last saved epoch)",
                        summary.run_id
                    );
                    130
                }
                RunStatus::Failed => 1,
            }
        }
        Err(RunError::Config(errors)) => {
            for e in errors {
                eprintln!("error: {}: {}", e.flag(), e.message);
            }
            2
        }
        Err(e) => {
            eprintln!("error: {e}");
            2
        }
    }
}

/// Starts the web monitor on its own thread, showing this run, and returns
/// the sink that feeds it.
fn serve_run(
    args: &TrainArgs,
    addr: std::net::SocketAddr,
    run_id: &str,
    stop: &Stop,
    hardware: Option<Arc<mnist_hardware::Monitor>>,
) -> std::io::Result<(Box<dyn mnist_events::EventSink>, mnist_server::Serving)> {
    let state = mnist_server::AppState::new(mnist_server::ServerOptions {
        data_dir: args.data_dir.clone(),
        runs_dir: args.run_dir.clone(),
        checkpoints_dir: args.checkpoint_dir.clone(),
        verify: if args.skip_verify {
            Verify::Skip
        } else {
            Verify::Sha256
        },
        token: args.access.token().map_err(std::io::Error::other)?,
        allowed_origins: args
            .access
            .allowed_origins()
            .map_err(std::io::Error::other)?,
        can_start_runs: false,
        hardware,
        stop_on_nan: args.watch.stop_on_nan,
        alert_webhook: None,
        fleet: None,
    });
    let hub = mnist_server::hub::RunHub::live(run_id);
    state.set_current(mnist_server::CurrentRun {
        hub: hub.clone(),
        stop: stop.clone(),
    });
    let serving = mnist_server::spawn(state, addr)?;
    // Machine-readable for `remote train`, which parses this line.
    eprintln!("mnist-monitor serving on http://{}/", serving.addr);
    Ok((Box::new(mnist_server::hub::HubSink(hub)), serving))
}

/// `mnist-monitor warmup [TRAIN FLAGS]`: trains two steps of the
/// configuration (a full batch and a filled-up one) and evaluates once, in
/// a scratch directory, so that the GPU backend compiles and autotunes every
/// kernel the real run needs and caches them (see
/// `mnist_train::kernel_cache`): the next run of this configuration reaches
/// its first batch in seconds.
pub fn warmup(args: TrainArgs) -> i32 {
    let config = match config_from(&args) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let config = TrainConfig {
        epochs: 1,
        limit_train: Some(config.batch_size + 1),
        limit_val: (config.val_size > 0).then_some(1),
        limit_test: Some(1),
        keep_checkpoints: 1,
        ..config
    };
    let scratch = std::env::temp_dir().join(format!("mnist-monitor-warmup-{}", std::process::id()));
    let verify = if args.skip_verify {
        Verify::Skip
    } else {
        Verify::Sha256
    };
    let mut sinks: Vec<Box<dyn mnist_events::EventSink>> = Vec::new();
    if !args.quiet {
        sinks.push(Box::new(Progress::new()));
    }
    let opts = RunOptions {
        data_dir: args.data_dir.clone(),
        verify,
        download: !args.no_download
            && verify == Verify::Sha256
            && !missing_files(&args.data_dir).is_empty(),
        runs_dir: scratch.join("runs"),
        checkpoints_dir: scratch.join("checkpoints"),
        sinks,
        alerts: None,
        ..RunOptions::default()
    };
    let started = std::time::Instant::now();
    let result = mnist_train::run(config.clone(), opts);
    let _ = std::fs::remove_dir_all(&scratch);
    match result {
        Ok(summary) if summary.status == RunStatus::Completed => {
            let cache = mnist_train::kernel_cache::configure()
                .map_or_else(|| "none".to_string(), |d| d.display().to_string());
            println!(
                "warmed {} on {} for kernels {:?}, batch {}, {:?} in {:.1} s; kernel cache: {cache}",
                summary.backend,
                summary.device,
                config.kernels,
                config.batch_size,
                config.optimizer,
                started.elapsed().as_secs_f64()
            );
            0
        }
        Ok(summary) => {
            eprintln!(
                "error: warmup {:?}: {}",
                summary.status,
                summary.error.unwrap_or_default()
            );
            1
        }
        Err(e) => {
            eprintln!("error: {e}");
            2
        }
    }
}
