//! `mnist-monitor`: the thin binary over the workspace's crates.
//!
//! Parses the command line and hands each subcommand to the crate that owns
//! it; see README.md for the commands and the architecture.

mod cli;
mod predict_cmd;
mod progress;
mod remote_cmd;
mod stats_cmd;
mod train_cmd;

use clap::Parser;

fn main() {
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
    let code = match cli.command {
        cli::Command::Train(args) => train_cmd::run(*args),
        cli::Command::Serve(args) => serve(args),
        cli::Command::Warmup(args) => train_cmd::warmup(*args),
        cli::Command::Stats(args) => stats_cmd::run(args),
        cli::Command::Predict(args) => predict_cmd::run(args),
        cli::Command::Remote(cli::RemoteCommand::Train(args)) => remote_cmd::train(args),
        cli::Command::Remote(cli::RemoteCommand::Watch(args)) => remote_cmd::watch(args),
        cli::Command::Backends { json } => backends(json),
        cli::Command::Model { kernels, json } => model(kernels, json),
    };
    std::process::exit(code);
}

fn serve(args: cli::ServeArgs) -> i32 {
    let verify = if args.skip_verify {
        mnist_data::Verify::Skip
    } else {
        mnist_data::Verify::Sha256
    };
    let hardware = args
        .watch
        .monitor(vec![args.run_dir.clone(), args.checkpoint_dir.clone()]);
    if let Some(url) = &args.watch.alert_webhook {
        // Checked now, not when the first run starts.
        if let Err(e) = mnist_alerts::WebhookSink::new(url) {
            eprintln!("error: --alert-webhook: {e}");
            return 2;
        }
    }
    let (token, allowed_origins) = match (args.access.token(), args.access.allowed_origins()) {
        (Ok(t), Ok(o)) => (t, o),
        (Err(e), _) | (_, Err(e)) => {
            eprintln!("error: {e}");
            return 2;
        }
    };
    let state = mnist_server::AppState::new(mnist_server::ServerOptions {
        data_dir: args.data_dir,
        runs_dir: args.run_dir,
        checkpoints_dir: args.checkpoint_dir,
        verify,
        token,
        allowed_origins,
        can_start_runs: true,
        hardware,
        stop_on_nan: args.watch.stop_on_nan,
        alert_webhook: args.watch.alert_webhook,
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
    });
    state.show_latest_run();
    let token = state.opts.token.clone();
    let result = mnist_server::run_blocking(state, args.bind, |addr| {
        let query = token.map(|_| "?token=<your token>").unwrap_or_default();
        eprintln!("mnist-monitor serving on http://{addr}/{query}");
    });
    match result {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("error: --bind {}: {e}", args.bind);
            2
        }
    }
}

fn backends(json: bool) -> i32 {
    let all = mnist_train::probe_all();
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&all).expect("serialises")
        );
    } else {
        for b in all {
            let state = match (&b.device, &b.reason) {
                (Some(d), _) => format!("available: {d}"),
                (None, Some(r)) => format!("unavailable: {r}"),
                _ => "unavailable".into(),
            };
            println!("{:5} {state}", b.name);
        }
    }
    0
}

fn model(kernels: [usize; 4], json: bool) -> i32 {
    let config = mnist_model::CnnConfig::new().with_kernels(kernels);
    if let Err(e) = config.validate() {
        eprintln!("error: --kernels: {e}");
        return 2;
    }
    let summary = config.summary();
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&summary).expect("serialises")
        );
    } else {
        print!("{}", progress::format_summary(&summary));
    }
    0
}
