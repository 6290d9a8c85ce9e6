//! `mnist-monitor`: the thin binary over the workspace's crates.
//!
//! Parses the command line and hands each subcommand to the crate that owns
//! it; see README.md for the commands and the architecture.

mod cli;
mod control_cmd;
mod http;
mod index_cmd;
mod predict_cmd;
mod progress;
mod prune_cmd;
mod remote_cmd;
mod reproduce;
mod slurm_cmd;
mod stats_cmd;
mod sweep_cmd;
mod train_cmd;

use anyhow::Context;
use clap::Parser;
use std::process::ExitCode;

/// The one way out: a command's exit code, or its error printed once
/// (`error: …`, with what it was doing) and exit code 2.
fn main() -> ExitCode {
    // NVML and nvidia-smi number GPUs in PCI bus order; CUDA's default is
    // "fastest first", so `cuda:1` could be another GPU than nvidia-smi's 1
    // (and than the one `auto` picked from NVML's readings). Set before
    // anything starts CUDA, while this process has one thread.
    if std::env::var_os("CUDA_DEVICE_ORDER").is_none() {
        std::env::set_var("CUDA_DEVICE_ORDER", "PCI_BUS_ID");
    }
    quiet_headless_vulkan();
    mnist_kernels::tune_allocator();
    let cli = cli::Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("MNIST_MONITOR_LOG")
                // CubeCL logs a warning for every failed device probe; the
                // probe's result is reported properly, so keep that quiet.
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn,cubecl_common=error")),
        )
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr)
        .init();
    match run(cli.command) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {}", describe(&e));
            ExitCode::from(2)
        }
    }
}

/// `export`: the run's checkpoint (an epoch's, or its best) as a file for
/// other tools.
fn export(args: cli::ExportArgs) -> anyhow::Result<ExitCode> {
    let dir = mnist_train::export::checkpoint_dir(
        &args.checkpoint.checkpoint_dir,
        &args.run_id,
        args.epoch,
    )?;
    let predictor = mnist_train::infer::Predictor::load(&dir)?;
    let format: mnist_train::export::Format = args.format.into();
    let bytes = format.write(&predictor)?;
    std::fs::write(&args.output, &bytes)
        .with_context(|| format!("cannot write {}", args.output.display()))?;
    eprintln!(
        "wrote {} ({} bytes): run {} epoch {}",
        args.output.display(),
        bytes.len(),
        predictor.state.run_id,
        predictor.state.epoch
    );
    Ok(ExitCode::SUCCESS)
}

/// An error and its causes, each said once: a cause whose words its
/// error's message already holds (thiserror's `{source}` in the message)
/// is not repeated after it.
fn describe(e: &anyhow::Error) -> String {
    let mut out = e.to_string();
    for cause in e.chain().skip(1) {
        let cause = cause.to_string();
        if !out.contains(&cause) {
            out.push_str(": ");
            out.push_str(&cause);
        }
    }
    out
}

/// On a headless machine (no `XDG_RUNTIME_DIR`, no Wayland session) the
/// Vulkan loader's Wayland surface support prints "error: XDG_RUNTIME_DIR is
/// invalid or not set in the environment." for every device probe, though
/// nothing here draws on a display. A private, empty runtime folder (0700,
/// as the XDG spec asks) keeps it quiet. Called while this process has one
/// thread, before anything loads Vulkan.
fn quiet_headless_vulkan() {
    let valid =
        std::env::var_os("XDG_RUNTIME_DIR").is_some_and(|d| std::path::Path::new(&d).is_dir());
    if valid || std::env::var_os("WAYLAND_DISPLAY").is_some() {
        return;
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::{MetadataExt, PermissionsExt};
        let uid = std::fs::metadata("/proc/self").map_or(0, |m| m.uid());
        let dir = std::env::temp_dir().join(format!("mnist-monitor-runtime-{uid}"));
        let _ = std::fs::create_dir(&dir);
        let ours = std::fs::metadata(&dir).is_ok_and(|m| m.is_dir() && m.uid() == uid);
        if ours && std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)).is_ok() {
            std::env::set_var("XDG_RUNTIME_DIR", &dir);
        }
    }
}

/// This binary and this machine, for a run's `run_started`: version, git
/// commit (from `build.rs`), features, Burn's version, host, command line.
fn provenance() -> mnist_events::Provenance {
    let features = [
        ("cuda", cfg!(feature = "cuda")),
        ("wgpu", cfg!(feature = "wgpu")),
    ];
    mnist_events::Provenance {
        version: env!("CARGO_PKG_VERSION").into(),
        git_commit: option_env!("MNIST_MONITOR_GIT_COMMIT").map(Into::into),
        git_dirty: option_env!("MNIST_MONITOR_GIT_DIRTY").map(|d| d == "true"),
        features: features
            .iter()
            .filter(|(_, on)| *on)
            .map(|(name, _)| name.to_string())
            .collect(),
        burn_version: mnist_train::BURN_VERSION.into(),
        host: mnist_hardware::host_name(),
        command_line: std::env::args().collect(),
        data_sha256: Default::default(),
    }
}

fn run(command: cli::Command) -> anyhow::Result<ExitCode> {
    match command {
        cli::Command::Train(args) => train_cmd::run(*args),
        cli::Command::Serve(args) => serve(args),
        cli::Command::Warmup(args) => train_cmd::warmup(*args),
        cli::Command::Stats(args) => stats_cmd::run(args),
        cli::Command::Predict(args) => predict_cmd::run(args),
        cli::Command::Remote(cli::RemoteCommand::Train(args)) => remote_cmd::train(args),
        cli::Command::Remote(cli::RemoteCommand::Watch(args)) => remote_cmd::watch(args),
        cli::Command::Backends { json } => Ok(backends(json)),
        cli::Command::Model { kernels, json } => model(kernels, json),
        cli::Command::Report(args) => report(args),
        cli::Command::Control(args) => control_cmd::run(args),
        cli::Command::Index(args) => index_cmd::run(args),
        cli::Command::Export(args) => export(args),
        cli::Command::Prune(args) => prune_cmd::run(args),
        cli::Command::Sweep(args) => sweep_cmd::run(args),
        cli::Command::Exporter(args) => exporter(args),
    }
}

fn serve(args: cli::ServeArgs) -> anyhow::Result<ExitCode> {
    // Checked now, not when the first run starts.
    let webhook = args.watch.webhook()?;
    let opts = args
        .dirs
        .server_options(mnist_server::ServerMode::Full, &args.access)?;
    let prune = match (args.prune_every, args.prune.any()) {
        (Some(hours), _) => Some((args.prune.policy().map_err(anyhow::Error::msg)?, hours)),
        (None, true) => anyhow::bail!("the prune policy flags need --prune-every HOURS"),
        (None, false) => None,
    };
    let hardware = args
        .watch
        .monitor(vec![opts.runs_dir.clone(), opts.checkpoints_dir.clone()]);
    let state = mnist_server::AppState::new(mnist_server::ServerOptions {
        hardware,
        stop_on_nan: args.watch.stop_on_nan,
        alert_webhook: webhook,
        alert_rules: args.watch.rules(),
        provenance: Some(provenance()),
        fleet_prometheus: args.fleet_prometheus.clone().map(|url| {
            mnist_server::prom_fleet::PromFleet::start(
                url,
                args.fleet_job.clone(),
                std::time::Duration::from_secs_f64(args.fleet_interval),
            )
        }),
        fleet: (!args.hosts.is_empty()).then(|| {
            mnist_remote::fleet::Fleet::start(
                args.hosts.clone(),
                mnist_remote::ConnectOptions {
                    interactive: false,
                    ..Default::default()
                },
                args.fleet_remote_bin.clone(),
                std::time::Duration::from_secs_f64(args.fleet_interval),
            )
        }),
        ..opts
    });
    state.show_latest_run();
    // Runs written by other processes (a shell's `train`, a Slurm job)
    // appear and stream live, like TensorBoard's logdir.
    mnist_server::follow::start(state.clone()).context("cannot start following the runs folder")?;
    // Sweeps submitted with `sweep --executor slurm`: their tasks' states.
    mnist_server::slurm::start(state.clone()).context("cannot start asking Slurm")?;
    state.dispatch_queue();
    if let Some((policy, hours)) = prune {
        let every = std::time::Duration::from_secs_f64(hours * 3600.0);
        mnist_server::prune::every(state.clone(), policy, every).context("cannot start pruning")?;
    }
    let token = state.opts.token.clone();
    mnist_server::run_blocking(state, args.bind, |addr| {
        let query = token.map(|_| "?token=<your token>").unwrap_or_default();
        eprintln!("mnist-monitor serving on http://{addr}/{query}");
    })
    .with_context(|| format!("--bind {}", args.bind))?;
    Ok(ExitCode::SUCCESS)
}

/// `mnist-monitor exporter`: `/metrics` only, for a Prometheus to scrape
/// (the fleet view reads it back with `serve --fleet-prometheus`).
fn exporter(args: cli::ExporterArgs) -> anyhow::Result<ExitCode> {
    let opts = args
        .access
        .server_options(mnist_server::ServerMode::Exporter)?;
    let hardware = (args.hw_interval > 0.0).then(|| {
        mnist_hardware::Monitor::start(
            std::time::Duration::from_secs_f64(args.hw_interval),
            vec![args.run.run_dir.clone()],
        )
    });
    let state = mnist_server::AppState::new(mnist_server::ServerOptions {
        runs_dir: args.run.run_dir.clone(),
        hardware,
        ..opts
    });
    state.show_latest_run();
    mnist_server::follow::start(state.clone()).context("cannot start following the runs folder")?;
    mnist_server::run_blocking(state, args.bind, |addr| {
        eprintln!("mnist-monitor exporter serving on http://{addr}/metrics");
    })
    .with_context(|| format!("--bind {}", args.bind))?;
    Ok(ExitCode::SUCCESS)
}

fn backends(json: bool) -> ExitCode {
    mnist_train::set_up_kernel_cache();
    let all = mnist_train::probe_all();
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&all).expect("serialises")
        );
    } else {
        for b in all {
            let state = match (&b.device, &b.reason) {
                (Some(d), Some(r)) => format!("available: {d} ({r})"),
                (Some(d), None) => format!("available: {d}"),
                (None, Some(r)) => format!("unavailable: {r}"),
                _ => "unavailable".into(),
            };
            println!("{:5} {state}", b.name);
        }
    }
    ExitCode::SUCCESS
}

/// `report RUN_ID -o FILE`: the run's self-contained HTML report.
fn report(args: cli::ReportArgs) -> anyhow::Result<ExitCode> {
    let html = mnist_server::report::from_runs_dir(&args.run.run_dir, &args.run_id)?;
    let output = args
        .output
        .unwrap_or_else(|| format!("{}-report.html", args.run_id).into());
    if output.as_os_str() == "-" {
        use std::io::Write;
        std::io::stdout().write_all(html.as_bytes())?;
    } else {
        std::fs::write(&output, &html)
            .map_err(|e| anyhow::anyhow!("cannot write {}: {e}", output.display()))?;
        eprintln!("wrote {} ({} KB)", output.display(), html.len() / 1024);
    }
    Ok(ExitCode::SUCCESS)
}

fn model(kernels: [usize; 4], json: bool) -> anyhow::Result<ExitCode> {
    let config = mnist_model::CnnConfig::new().with_kernels(kernels);
    config.validate()?;
    let summary = config.summary();
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&summary).expect("serialises")
        );
    } else {
        print!("{}", progress::format_summary(&summary));
    }
    Ok(ExitCode::SUCCESS)
}
