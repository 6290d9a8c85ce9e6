//! `mnist-monitor index`: brings the runs folder's index up to date, or
//! rebuilds it from the logs (`--rebuild`), with a progress bar.

use crate::cli::IndexArgs;
use mnist_server::index::{RunIndex, INDEX_DIR};
use std::process::ExitCode;

/// Runs the command: exit 0 once every run is indexed.
pub fn run(args: IndexArgs) -> anyhow::Result<ExitCode> {
    let started = std::time::Instant::now();
    if args.rebuild {
        let dir = args.runs.run_dir().join(INDEX_DIR);
        match std::fs::remove_dir_all(&dir) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => anyhow::bail!("cannot delete {}: {e}", dir.display()),
        }
    }
    if !args.runs.run_dir().is_dir() {
        anyhow::bail!(
            "--run-dir {}: no such folder",
            args.runs.run_dir().display()
        );
    }
    let index = RunIndex::open(args.runs.folders());
    let bar = indicatif::ProgressBar::hidden();
    if !args.json {
        bar.set_draw_target(indicatif::ProgressDrawTarget::stderr());
        bar.set_style(
            indicatif::ProgressStyle::with_template("indexing {pos}/{len} runs {wide_bar} {eta}")
                .expect("template parses"),
        );
    }
    let changed = index.reconcile(&|_| false, &|p| {
        bar.set_length(p.total as u64);
        bar.set_position(p.done as u64);
    });
    bar.finish_and_clear();
    let seconds = started.elapsed().as_secs_f64();
    if args.json {
        let out = Indexed {
            runs: index.len(),
            folded: changed.len(),
            seconds,
        };
        println!("{}", serde_json::to_string(&out).expect("serialises"));
    } else {
        println!(
            "{} runs indexed ({} read from their logs) in {seconds:.1} s",
            index.len(),
            changed.len()
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// What `index --json` prints.
#[derive(serde::Serialize)]
struct Indexed {
    /// Runs in the index.
    runs: usize,
    /// Runs read from their logs this time.
    folded: usize,
    /// How long it took.
    seconds: f64,
}
