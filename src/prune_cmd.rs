//! `mnist-monitor prune`: the policy's plan over the runs folder's index,
//! printed (the default) or carried out (`--yes`).

use crate::cli::PruneArgs;
use mnist_hardware::format::bytes;
use mnist_server::index::RunIndex;
use mnist_server::prune::{self, Action, Plan, World};
use std::process::ExitCode;

/// Runs the command: exit 0 when every step was done (or only planned),
/// 1 when a step was left.
pub fn run(args: PruneArgs) -> anyhow::Result<ExitCode> {
    let policy = args.policy.policy().map_err(anyhow::Error::msg)?;
    if !args.runs.run_dir().is_dir() {
        anyhow::bail!(
            "--run-dir {}: no such folder",
            args.runs.run_dir().display()
        );
    }
    let folders = args.runs.folders();
    let index = RunIndex::open(folders.clone());
    index.reconcile(&|_| false, &|_| {});
    let rows: Vec<_> = index.with_rows(|r| r.values().map(|r| r.summary.clone()).collect());
    let is_running = |id: &str| prune::may_train(&index, id);
    let world = World {
        folders: &folders,
        now_ms: mnist_events::now_ms(),
        is_running: &is_running,
    };
    let plan = prune::plan(&policy, &rows, &world);
    let done = args.yes.then(|| prune::execute(&plan, &world));
    if let Some(done) = &done {
        prune::follow_in_index(&index, done);
    }
    let left = done
        .iter()
        .flatten()
        .filter(|d| d.skipped.is_some())
        .count();
    if args.json {
        let out = prune::Outcome {
            dry_run: !args.yes,
            plan,
            done,
        };
        println!("{}", serde_json::to_string(&out).expect("serialises"));
    } else {
        print_plan(&plan, done.as_deref());
    }
    Ok(if left > 0 {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

fn describe(a: &Action) -> String {
    match a {
        Action::Trash {
            run_id,
            reason,
            bytes: b,
        } => {
            format!("trash  {run_id}  {}  ({reason})", bytes(*b as f64))
        }
        Action::EmptyTrash { run_id, bytes: b } => {
            format!(
                "delete {run_id}  {}  (in the trash long enough)",
                bytes(*b as f64)
            )
        }
        Action::DropCheckpoints {
            run_id,
            epochs,
            kept,
            bytes: b,
        } => format!(
            "drop   {run_id}  {}  (checkpoints of epochs {:?}; keeps its best, epoch {kept})",
            bytes(*b as f64),
            epochs
        ),
    }
}

fn print_plan(plan: &Plan, done: Option<&[prune::Done]>) {
    match done {
        None => {
            for a in &plan.actions {
                println!("{}", describe(a));
            }
            println!(
                "would move {} to the trash and free {} now ({} steps); run again with --yes to do it",
                bytes(plan.trash_bytes as f64),
                bytes(plan.freed_bytes as f64),
                plan.actions.len()
            );
        }
        Some(done) => {
            for d in done {
                match &d.skipped {
                    None => println!("done   {}", describe(&d.action)),
                    Some(why) => println!("left   {}: {why}", describe(&d.action)),
                }
            }
            println!(
                "moved {} to the trash, freed {}",
                bytes(plan.trash_bytes as f64),
                bytes(plan.freed_bytes as f64)
            );
        }
    }
}
