//! `mnist-monitor sweep`: every combination of a grid of settings (or N
//! drawn at random), trained here one after another, or queued on a
//! running `serve`. The runs are named `<sweep id>-NN` and tagged with the
//! sweep id, so the page's compare view shows them together
//! (`/?sweep=ID`).

use crate::cli::{Cli, Command, Executor, SweepArgs, TrainArgs};
use crate::progress::Progress;
use clap::Parser;
use mnist_events::{RunStatus, Stop, StopReason};
use mnist_server::protocol::{SweepQueued, SweepRequest};
use mnist_sweep::Grid;
use std::process::ExitCode;

/// Exit codes: 0 when every run completed, 1 when one failed, 130 when
/// stopped (Ctrl-C stops the run in progress and the sweep).
pub fn run(args: SweepArgs) -> anyhow::Result<ExitCode> {
    let train = train_args(&args.train)?;
    let mut grid = Grid::default();
    for spec in &args.grid {
        grid.add_spec(spec)?;
    }
    for (field, _) in &grid.0 {
        if train.fields.sets(field) {
            anyhow::bail!(
                "--{} is swept (--grid {field}=…): remove it from the train flags",
                field.replace('_', "-")
            );
        }
    }
    if args.executor != Executor::Slurm && args.slurm.any() {
        anyhow::bail!("--partition, --gres, --time, --cpus-per-task, --mem, --account and --max-parallel go with --executor slurm");
    }
    if args.executor == Executor::Slurm {
        // A typo in a Slurm option fails before anything is written.
        args.slurm.options().check()?;
    }
    let base = crate::train_cmd::config_from(&train, None)?;
    let configs = mnist_sweep::expand(&base, &grid, args.random, args.random_seed)?;
    match (&args.server, args.executor) {
        (Some(url), _) => queue_on_server(url, &args, &base, &grid),
        (None, Executor::Slurm) => {
            crate::slurm_cmd::submit(&args.slurm, &train, &args.train, configs)
        }
        (None, Executor::Here) => train_here(&train, configs),
    }
}

/// The `train` flags after `--`, parsed (and checked) as `train` would.
fn train_args(flags: &[String]) -> anyhow::Result<TrainArgs> {
    let argv = ["mnist-monitor", "train"]
        .into_iter()
        .map(String::from)
        .chain(flags.iter().cloned());
    match Cli::try_parse_from(argv) {
        Ok(Cli {
            command: Command::Train(args),
        }) => {
            if args.resume.is_some()
                || args.reproduce.is_some()
                || args.run_id.is_some()
                || args.sweep.is_some()
                || args.serve.is_some()
            {
                anyhow::bail!("the train flags of a sweep cannot name a run (--run-id, --resume, --reproduce, --sweep) or --serve it");
            }
            Ok(*args)
        }
        Ok(_) => unreachable!("parsed as train"),
        Err(e) => anyhow::bail!(
            "the train flags after `--`: {}",
            e.render().to_string().trim()
        ),
    }
}

/// Trains the configurations one after another in this process.
fn train_here(
    train: &TrainArgs,
    configs: Vec<mnist_train::TrainConfig>,
) -> anyhow::Result<ExitCode> {
    let sweep_id = mnist_sweep::new_sweep_id();
    eprintln!("{sweep_id}: {} runs, one after another", configs.len());
    let stop = Stop::new();
    let handler_stop = stop.clone();
    let _ = ctrlc::set_handler(move || {
        handler_stop.request(StopReason::User);
        eprintln!("stopping the sweep after this batch");
    });
    let dirs = &train.dirs;
    let hardware = train.watch.monitor(vec![
        dirs.run_dir().to_path_buf(),
        dirs.checkpoint_dir().to_path_buf(),
    ]);
    // Read (and check) the data set once for every run.
    let data = if mnist_data::missing_files(&dirs.data_dir).is_empty() {
        Some(std::sync::Arc::new(mnist_data::load_dir(
            &dirs.data_dir,
            dirs.verify(),
        )?))
    } else {
        None
    };
    let mut failed = 0;
    for (i, config) in configs.into_iter().enumerate() {
        let run_id = format!("{sweep_id}-{:02}", i + 1);
        let mut sinks: Vec<Box<dyn mnist_events::EventSink>> = vec![Box::new(
            mnist_server::meta::sweep_tagger(dirs.run_dir().to_path_buf(), sweep_id.clone()),
        )];
        if !train.quiet {
            sinks.push(Box::new(Progress::new()));
        }
        let mut opts = crate::train_cmd::run_options(
            train,
            run_id.clone(),
            stop.clone(),
            sinks,
            hardware.clone(),
        )?;
        opts.data = data.clone();
        opts.provenance = opts.provenance.map(|mut p| {
            p.command_line = std::env::args().collect();
            p
        });
        let summary = mnist_train::run(config, opts).map_err(crate::train_cmd::run_error)?;
        crate::train_cmd::index_run(&dirs.runs, &run_id);
        eprintln!(
            "{run_id}: {}{}",
            match summary.status {
                RunStatus::Completed => "completed",
                RunStatus::Stopped => "stopped",
                RunStatus::Failed => "failed",
            },
            summary.test_accuracy.map_or(String::new(), |a| format!(
                ", test accuracy {:.2}%",
                a * 100.0
            ))
        );
        if train.json {
            println!(
                "{}",
                serde_json::to_string(&summary).expect("summary serialises")
            );
        }
        match summary.status {
            RunStatus::Completed => {}
            RunStatus::Failed => failed += 1,
            RunStatus::Stopped => return Ok(ExitCode::from(130)),
        }
    }
    eprintln!("{sweep_id}: done; compare its runs on the page at /?sweep={sweep_id}");
    Ok(if failed > 0 {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

/// Sends the sweep to a running `serve`, which queues its runs.
fn queue_on_server(
    url: &str,
    args: &SweepArgs,
    base: &mnist_train::TrainConfig,
    grid: &Grid,
) -> anyhow::Result<ExitCode> {
    let body = SweepRequest {
        base: serde_json::to_value(base).expect("config serialises"),
        grid: grid
            .0
            .iter()
            .map(|(f, v)| (f.clone(), serde_json::Value::Array(v.clone())))
            .collect(),
        random: args.random,
        seed: args.random_seed,
        ..SweepRequest::default()
    };
    let token = crate::http::token(args.token_file.as_deref())?;
    let answer: SweepQueued = crate::http::post_json(url, "/api/sweeps", token.as_deref(), &body)?;
    eprintln!(
        "{}: {} runs queued on {url}; watch them at {}{}",
        answer.sweep_id,
        answer.runs.len(),
        url.trim_end_matches('/'),
        answer.compare
    );
    println!(
        "{}",
        serde_json::to_string(&answer).expect("the answer serialises")
    );
    Ok(ExitCode::SUCCESS)
}
