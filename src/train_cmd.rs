//! `mnist-monitor train`.

use crate::cli::TrainArgs;
use crate::progress::Progress;
use crate::reproduce::Original;
use anyhow::Context;
use mnist_data::{missing_files, Verify};
use mnist_events::RunStatus;
use mnist_events::{Stop, StopReason};
use mnist_train::{RunError, RunOptions, TrainConfig};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// The configuration `args` describe: the `--config` file (if any) with the
/// flags on top, validated; the error names every bad field and where it
/// came from (the flag, or the file when no flag replaced it).
pub fn config_from(args: &TrainArgs, original: Option<&Original>) -> anyhow::Result<TrainConfig> {
    let base = match &args.config {
        None if original.is_some() => original.map(|o| o.config.clone()).unwrap_or_default(),
        None => TrainConfig::default(),
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("--config {}", path.display()))?;
            TrainConfig::from_toml(&text).map_err(|errors| {
                lines(errors.iter().map(|e| {
                    format!(
                        "--config {}: field {}: {}",
                        path.display(),
                        e.field,
                        e.message
                    )
                }))
            })?
        }
    };
    let flag_errors = |errors: Vec<mnist_train::FieldError>| {
        lines(
            errors
                .iter()
                .map(|e| format!("{}: {}", e.flag(), e.message)),
        )
    };
    let config = args.fields.apply(&base).map_err(flag_errors)?;
    config.validate().map_err(|errors| {
        lines(errors.iter().map(|e| match &args.config {
            // A value that came from the file and no flag replaced.
            Some(path) if !args.fields.sets(&e.field) => {
                format!(
                    "--config {}: field {}: {}",
                    path.display(),
                    e.field,
                    e.message
                )
            }
            _ => format!("{}: {}", e.flag(), e.message),
        }))
    })?;
    Ok(config)
}

/// The run `--reproduce` names, read from its log.
fn original_of(args: &TrainArgs) -> anyhow::Result<Option<Original>> {
    args.reproduce
        .as_deref()
        .map(|id| crate::reproduce::load(args.dirs.run_dir(), id))
        .transpose()
}

/// Several problems as one error, one `error:` line each when printed.
fn lines(problems: impl Iterator<Item = String>) -> anyhow::Error {
    anyhow::anyhow!(problems.collect::<Vec<_>>().join("\nerror: "))
}

/// Exit codes: 0 completed, 1 failed, 130 stopped (Ctrl-C, SIGTERM);
/// bad input is an error (2, from `main`).
pub fn run(args: TrainArgs) -> anyhow::Result<ExitCode> {
    let original = original_of(&args)?;
    let config = config_from(&args, original.as_ref())?;
    if let Some(o) = &original {
        eprintln!(
            "reproducing run {} with its configuration and seed {}{}",
            o.run_id,
            config.seed,
            if config == o.config {
                String::new()
            } else {
                " (changed by the flags given)".into()
            }
        );
    }

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

    let mut sinks: Vec<Box<dyn mnist_events::EventSink>> = Vec::new();
    if let Some(sweep) = &args.sweep {
        sinks.push(Box::new(mnist_server::meta::sweep_tagger(
            args.dirs.run_dir().to_path_buf(),
            sweep.clone(),
        )));
    }
    if !args.quiet {
        sinks.push(Box::new(Progress::new()));
    }
    let run_id = args
        .resume
        .clone()
        .or(args.run_id.clone())
        .unwrap_or_else(mnist_train::new_run_id);
    let hardware = args.watch.monitor(vec![
        args.dirs.run_dir().to_path_buf(),
        args.dirs.checkpoint_dir().to_path_buf(),
    ]);
    let controls = mnist_events::Controls::new();
    let mut serving = None;
    if let Some(addr) = args.serve {
        let (sink, server) = serve_run(&args, addr, &run_id, (&stop, &controls), hardware.clone())
            .with_context(|| format!("--serve {addr}"))?;
        sinks.push(sink);
        serving = Some(server);
    }
    let mut opts = run_options(&args, run_id, stop, sinks, hardware)?;
    // Steerable only through the page it serves.
    opts.controls = serving.is_some().then_some(controls);
    opts.replay = original
        .as_ref()
        .map(Original::controls)
        .unwrap_or_default();
    if args.resume.is_some() && config != TrainConfig::default() {
        eprintln!("note: --resume continues with the run's stored configuration; other training flags are ignored");
    }
    let result = mnist_train::run(config, opts);
    if let Some(server) = serving {
        // Viewers get the end of the run before the process goes.
        server.shutdown(std::time::Duration::from_secs(5));
    }
    let summary = result.map_err(run_error)?;
    index_run(&args.dirs.runs, &summary.run_id);
    let comparison = original.as_ref().map(|o| {
        let log = mnist_events::log_path(args.dirs.run_dir(), &summary.run_id);
        let rerun = mnist_events::read_events(&log).unwrap_or_default();
        let c = crate::reproduce::compare(o, &summary.run_id, &rerun);
        eprintln!("{}", c.describe());
        c
    });
    if args.json {
        let out = JsonSummary {
            summary: &summary,
            reproduce: comparison.as_ref(),
        };
        println!(
            "{}",
            serde_json::to_string(&out).expect("summary serialises")
        );
    }
    if comparison.is_some_and(|c| !c.matches) && summary.status == RunStatus::Completed {
        return Ok(ExitCode::from(4));
    }
    Ok(match summary.status {
        RunStatus::Completed => ExitCode::SUCCESS,
        RunStatus::Stopped => {
            eprintln!(
                "resume with: mnist-monitor train --resume {} (continues after the last saved epoch)",
                summary.run_id
            );
            ExitCode::from(130)
        }
        RunStatus::Failed => ExitCode::from(1),
    })
}

/// What `train --json` prints when the run ends: its summary, and with
/// `--reproduce` how it compares with the original.
#[derive(serde::Serialize)]
struct JsonSummary<'a> {
    #[serde(flatten)]
    summary: &'a mnist_train::RunSummary,
    #[serde(skip_serializing_if = "Option::is_none")]
    reproduce: Option<&'a crate::reproduce::Comparison>,
}

/// Writes the finished run's row into the runs folder's index, so that a
/// `serve` started later lists it without reading its log.
pub fn index_run(dirs: &crate::cli::RunDirs, run_id: &str) {
    if let Err(e) = mnist_server::index::index_run(&dirs.folders(), run_id) {
        tracing::warn!("run {run_id}: cannot write its index entry: {e}");
    }
}

/// The options of a run of `args` (where it reads and writes, what watches
/// it), for `train` and each run of a local `sweep`.
pub fn run_options(
    args: &TrainArgs,
    run_id: String,
    stop: Stop,
    sinks: Vec<Box<dyn mnist_events::EventSink>>,
    hardware: Option<Arc<mnist_hardware::Monitor>>,
) -> anyhow::Result<RunOptions> {
    Ok(RunOptions {
        run_id: Some(run_id),
        resume: args.resume.clone(),
        stop,
        sinks,
        hardware,
        alerts: Some(args.watch.rules()),
        stop_on_nan: args.watch.stop_on_nan,
        alert_webhook: args.watch.webhook()?,
        provenance: Some(crate::provenance()),
        ..data_options(args)
    })
}

/// Where a run of `args` reads its data and writes its log and checkpoints,
/// and whether the data is checked, or downloaded when missing.
fn data_options(args: &TrainArgs) -> RunOptions {
    let verify = args.dirs.verify();
    RunOptions {
        data_dir: args.dirs.data_dir.clone(),
        verify,
        download: !args.no_download
            && verify == Verify::Sha256
            && !missing_files(&args.dirs.data_dir).is_empty(),
        runs_dir: args.dirs.run_dir().to_path_buf(),
        checkpoints_dir: args.dirs.checkpoint_dir().to_path_buf(),
        ..RunOptions::default()
    }
}

/// A run that could not start, as the error `main` prints: invalid fields
/// by their flags.
pub fn run_error(e: RunError) -> anyhow::Error {
    match e {
        RunError::Config(errors) => lines(
            errors
                .iter()
                .map(|e| format!("{}: {}", e.flag(), e.message)),
        ),
        other => anyhow::Error::new(other),
    }
}

/// Starts the web monitor on its own thread, showing this run, and returns
/// the sink that feeds it.
fn serve_run(
    args: &TrainArgs,
    addr: std::net::SocketAddr,
    run_id: &str,
    (stop, controls): (&Stop, &mnist_events::Controls),
    hardware: Option<Arc<mnist_hardware::Monitor>>,
) -> std::io::Result<(Box<dyn mnist_events::EventSink>, mnist_server::Serving)> {
    let opts = args
        .dirs
        .server_options(mnist_server::ServerMode::Watch, &args.access)
        .map_err(std::io::Error::other)?;
    let state = mnist_server::AppState::new(mnist_server::ServerOptions {
        hardware,
        stop_on_nan: args.watch.stop_on_nan,
        alert_rules: args.watch.rules(),
        ..opts
    });
    let hub = mnist_server::hub::RunHub::live(run_id);
    state.set_current(mnist_server::CurrentRun {
        hub: hub.clone(),
        stop: stop.clone(),
        controls: Some(controls.clone()),
    });
    let serving = mnist_server::spawn(state, addr)?;
    eprintln!("mnist-monitor serving on http://{}/", serving.addr);
    if let Some(path) = &args.ready_file {
        let ready = mnist_remote::run::Ready {
            port: serving.addr.port(),
            pid: std::process::id(),
            run_id: run_id.to_string(),
        };
        mnist_remote::run::write_ready(path, &ready)?;
    }
    Ok((Box::new(mnist_server::hub::HubSink(hub)), serving))
}

/// `mnist-monitor warmup [TRAIN FLAGS]`: trains two steps of the
/// configuration (a full batch and a filled-up one) and evaluates once, in
/// a scratch directory, so that the GPU backend compiles and autotunes every
/// kernel the real run needs and caches them (see
/// `mnist_train::kernel_cache`): the next run of this configuration reaches
/// its first batch in seconds.
pub fn warmup(args: TrainArgs) -> anyhow::Result<ExitCode> {
    let original = original_of(&args)?;
    let config = config_from(&args, original.as_ref())?;
    // What warming up is for: every kernel compiled and tuned lands there.
    let cache = mnist_train::set_up_kernel_cache()
        .map_or_else(|| "none".to_string(), |d| d.display().to_string());
    let config = TrainConfig {
        epochs: 1,
        limit_train: Some(config.batch_size + 1),
        limit_val: (config.val_size > 0).then_some(1),
        limit_test: Some(1),
        keep_checkpoints: 1,
        ..config
    };
    let scratch = std::env::temp_dir().join(format!("mnist-monitor-warmup-{}", std::process::id()));
    let mut sinks: Vec<Box<dyn mnist_events::EventSink>> = Vec::new();
    if !args.quiet {
        sinks.push(Box::new(Progress::new()));
    }
    let opts = RunOptions {
        runs_dir: scratch.join("runs"),
        checkpoints_dir: scratch.join("checkpoints"),
        sinks,
        alerts: None,
        ..data_options(&args)
    };
    let started = std::time::Instant::now();
    let result = mnist_train::run(config.clone(), opts);
    let _ = std::fs::remove_dir_all(&scratch);
    let summary = result.map_err(run_error)?;
    if summary.status != RunStatus::Completed {
        anyhow::bail!(
            "warmup {:?}: {}",
            summary.status,
            summary.error.unwrap_or_default()
        );
    }
    println!(
        "warmed {} on {} for kernels {:?}, batch {}, {:?} in {:.1} s; kernel cache: {cache}",
        crate::progress::backend_device(&summary.backend, summary.device_index),
        summary.device,
        config.kernels,
        config.batch_size,
        config.optimizer,
        started.elapsed().as_secs_f64()
    );
    Ok(ExitCode::SUCCESS)
}
