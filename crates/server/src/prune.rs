//! Cleanup of old runs (`mnist-monitor prune`, `POST /api/prune`,
//! `serve --prune-every`): a [`Policy`] turns the run index's rows into a
//! [`Plan`] of what would go and the disk it frees; [`execute`] carries out
//! exactly that plan, checking each step again (a run that started
//! training, or got tagged `keep`, since the plan was made is left alone).
//!
//! Runs go to the trash (`runs/.trash/<id>`, restorable from the page),
//! never straight away; only emptying the trash and dropping checkpoints
//! free disk. A run tagged `keep`, and one that trains, is never touched.

use crate::protocol::RunMeta;
use crate::protocol::{RunSummary, Status};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::path::PathBuf;

/// The tag that keeps a run from any cleanup.
pub const KEEP_TAG: &str = "keep";

/// A log written this recently belongs to a run that may still train,
/// even when no server follows it (a `train` from a shell).
pub const RECENT_SECS: u64 = 120;

/// What to clean up. Each rule is off unless given.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Policy {
    /// Keep the best K runs of each sweep by `metric`; the rest go to the trash.
    pub keep_best: Option<usize>,
    /// What "best" means for `keep_best`: a result key of the runs
    /// filter (`acc`, `val_acc`, `test_acc`, `f1`: higher is better;
    /// `loss`: lower is better). Default `acc`.
    pub metric: Option<String>,
    /// Failed and stopped runs that ended more than this many days ago go to the trash.
    pub trash_after_days: Option<f64>,
    /// Runs in the trash for more than this many days are deleted for good.
    pub empty_trash_after_days: Option<f64>,
    /// Completed runs keep only their best checkpoint.
    pub best_checkpoint_only: bool,
}

/// The metrics `keep_best` ranks by, and whether higher is better.
pub const METRICS: [(&str, bool); 6] = [
    ("acc", true),
    ("val_acc", true),
    ("test_acc", true),
    ("f1", true),
    ("loss", false),
    ("steps", true),
];

/// A policy that cannot be applied: the field and what is allowed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct PolicyError {
    /// The policy field (the flag without `--`, with `_`).
    pub field: &'static str,
    /// What is wrong and what is allowed.
    pub message: String,
}

impl Policy {
    /// Checks every field; a policy with no rule at all is an error too.
    pub fn check(&self) -> Result<(), PolicyError> {
        let err = |field, message: String| Err(PolicyError { field, message });
        if let Some(k) = self.keep_best {
            if !(1..=100_000).contains(&k) {
                return err("keep_best", format!("must be in 1..=100000 (got {k})"));
            }
        }
        if let Some(m) = &self.metric {
            if !METRICS.iter().any(|(n, _)| n == m) {
                let names: Vec<&str> = METRICS.iter().map(|(n, _)| *n).collect();
                return err(
                    "metric",
                    format!("must be one of {} (got {m})", names.join(", ")),
                );
            }
        }
        for (field, days) in [
            ("trash_after_days", self.trash_after_days),
            ("empty_trash_after_days", self.empty_trash_after_days),
        ] {
            if let Some(d) = days {
                if !(0.0..=36_500.0).contains(&d) {
                    return err(field, format!("must be in 0..=36500 days (got {d})"));
                }
            }
        }
        let any = self.keep_best.is_some()
            || self.trash_after_days.is_some()
            || self.empty_trash_after_days.is_some()
            || self.best_checkpoint_only;
        if !any {
            return err(
                "policy",
                "nothing to do: give keep_best, trash_after_days, empty_trash_after_days or best_checkpoint_only".into(),
            );
        }
        Ok(())
    }

    fn metric(&self) -> (&str, bool) {
        let name = self.metric.as_deref().unwrap_or("acc");
        METRICS
            .iter()
            .find(|(n, _)| *n == name)
            .map_or(("acc", true), |(n, up)| (*n, *up))
    }
}

/// One step of a plan.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum Action {
    /// Move the run and its checkpoints to the trash.
    Trash {
        /// The run.
        run_id: String,
        /// Why the policy lets it go.
        reason: String,
        /// What it holds on disk (freed when the trash is emptied).
        bytes: u64,
    },
    /// Delete a run from the trash for good.
    EmptyTrash {
        /// The trashed run.
        run_id: String,
        /// What that frees.
        bytes: u64,
    },
    /// Delete a run's checkpoints but its best.
    DropCheckpoints {
        /// The run.
        run_id: String,
        /// The epochs whose checkpoints go.
        epochs: Vec<usize>,
        /// The epoch kept.
        kept: usize,
        /// What that frees.
        bytes: u64,
    },
}

/// What a policy would do now.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Plan {
    /// The steps, in the order they are carried out.
    pub actions: Vec<Action>,
    /// Disk moved to the trash (freed when it is emptied).
    pub trash_bytes: u64,
    /// Disk freed now.
    pub freed_bytes: u64,
}

/// What [`plan`] needs to know besides the rows.
pub struct World<'a> {
    /// The runs and checkpoints folders.
    pub folders: &'a crate::index::Folders,
    /// Unix time now, ms.
    pub now_ms: u64,
    /// Whether a run trains now (this server's, a followed one, or a log
    /// written in the last [`RECENT_SECS`]).
    pub is_running: &'a dyn Fn(&str) -> bool,
}

fn kept(row: &RunSummary) -> bool {
    row.meta
        .tags
        .iter()
        .any(|t| t.eq_ignore_ascii_case(KEEP_TAG))
}

fn untouchable(row: &RunSummary, world: &World) -> bool {
    kept(row) || row.status.is_training() || (world.is_running)(&row.run_id)
}

fn run_bytes(row: &RunSummary) -> u64 {
    row.disk.run_bytes + row.disk.checkpoint_bytes
}

/// The plan of `policy` (checked) over `rows`: the runs of the index.
pub fn plan(policy: &Policy, rows: &[RunSummary], world: &World) -> Plan {
    // In id order, so the same folder always gives the same plan.
    let mut rows: Vec<&RunSummary> = rows.iter().collect();
    rows.sort_by(|a, b| a.run_id.cmp(&b.run_id));
    let mut actions = Vec::new();
    let mut trashed: std::collections::HashSet<&str> = Default::default();
    if let Some(k) = policy.keep_best {
        let (metric, higher) = policy.metric();
        let mut sweeps: HashMap<&str, Vec<&RunSummary>> = HashMap::new();
        for r in rows.iter().copied() {
            if let Some(s) = &r.sweep {
                sweeps.entry(s.as_str()).or_default().push(r);
            }
        }
        let mut names: Vec<&&str> = sweeps.keys().collect();
        names.sort();
        for sweep in names {
            let mut runs = sweeps[*sweep].clone();
            let score = |r: &RunSummary| match crate::query::cell(r, metric) {
                crate::query::Cell::Num(v) if v.is_finite() => Some(if higher { v } else { -v }),
                _ => None,
            };
            // Best first; runs without the metric last; ties by id.
            runs.sort_by(|a, b| {
                score(b)
                    .partial_cmp(&score(a))
                    .unwrap_or(std::cmp::Ordering::Equal)
                    .then_with(|| a.run_id.cmp(&b.run_id))
            });
            for r in runs.into_iter().skip(k) {
                if untouchable(r, world) || !r.status.is_final() {
                    continue;
                }
                trashed.insert(&r.run_id);
                actions.push(Action::Trash {
                    run_id: r.run_id.clone(),
                    reason: format!("not among the best {k} of {sweep} by {metric}"),
                    bytes: run_bytes(r),
                });
            }
        }
    }
    if let Some(days) = policy.trash_after_days {
        let cutoff = world.now_ms.saturating_sub((days * 86_400_000.0) as u64);
        for r in rows.iter().copied() {
            let ended = r.finished_ms.unwrap_or(r.started_ms);
            let over = matches!(r.status, Status::Failed | Status::Stopped);
            if over
                && ended < cutoff
                && !untouchable(r, world)
                && !trashed.contains(r.run_id.as_str())
            {
                trashed.insert(&r.run_id);
                actions.push(Action::Trash {
                    run_id: r.run_id.clone(),
                    reason: format!(
                        "{} more than {days} day{} ago",
                        r.status.as_str(),
                        if days == 1.0 { "" } else { "s" }
                    ),
                    bytes: run_bytes(r),
                });
            }
        }
    }
    if policy.best_checkpoint_only {
        for r in rows.iter().copied() {
            if r.status != Status::Completed
                || untouchable(r, world)
                || trashed.contains(r.run_id.as_str())
            {
                continue;
            }
            if let Some(a) = drop_checkpoints(world.folders, &r.run_id) {
                actions.push(a);
            }
        }
    }
    if let Some(days) = policy.empty_trash_after_days {
        actions.extend(old_trash(world.folders, days, world.now_ms));
    }
    let (mut trash_bytes, mut freed_bytes) = (0, 0);
    for a in &actions {
        match a {
            Action::Trash { bytes, .. } => trash_bytes += bytes,
            Action::EmptyTrash { bytes, .. } | Action::DropCheckpoints { bytes, .. } => {
                freed_bytes += bytes
            }
        }
    }
    Plan {
        actions,
        trash_bytes,
        freed_bytes,
    }
}

/// All but the best checkpoint of run `id` (the best as its newest
/// checkpoint's state names it), if there is more than one.
fn drop_checkpoints(folders: &crate::index::Folders, id: &str) -> Option<Action> {
    let dir = folders.checkpoints.join(id);
    let all = mnist_train::checkpoint::list(&dir).ok()?;
    if all.len() < 2 {
        return None;
    }
    let (_, newest) = all.last()?;
    let best = mnist_train::checkpoint::read_state(newest).ok()?.best_epoch;
    if !all.iter().any(|(e, _)| *e == best) {
        return None; // the best was deleted already: keep what there is
    }
    let gone: Vec<&(usize, PathBuf)> = all.iter().filter(|(e, _)| *e != best).collect();
    Some(Action::DropCheckpoints {
        run_id: id.to_string(),
        epochs: gone.iter().map(|(e, _)| *e).collect(),
        kept: best,
        bytes: gone
            .iter()
            .map(|(_, p)| crate::protocol::Disk::bytes_of(p))
            .sum(),
    })
}

/// Trashed runs moved there more than `days` ago.
fn old_trash(folders: &crate::index::Folders, days: f64, now_ms: u64) -> Vec<Action> {
    let trash = folders.runs.join(crate::trash::TRASH);
    let cutoff = now_ms.saturating_sub((days * 86_400_000.0) as u64);
    let mut out: Vec<Action> = std::fs::read_dir(&trash)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let id = e.file_name().into_string().ok()?;
            let moved = e.metadata().ok()?.modified().ok()?;
            let moved_ms = moved
                .duration_since(std::time::UNIX_EPOCH)
                .ok()?
                .as_millis() as u64;
            (crate::valid_run_id(&id) && moved_ms < cutoff).then(|| Action::EmptyTrash {
                bytes: crate::protocol::Disk::bytes_of(&e.path()),
                run_id: id,
            })
        })
        .collect();
    out.sort_by(|a, b| match (a, b) {
        (Action::EmptyTrash { run_id: a, .. }, Action::EmptyTrash { run_id: b, .. }) => a.cmp(b),
        _ => std::cmp::Ordering::Equal,
    });
    out
}

/// What [`execute`] did with one step.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Done {
    /// The step.
    #[serde(flatten)]
    pub action: Action,
    /// None when done, else why it was left.
    pub skipped: Option<String>,
}

/// Carries out `plan`, checking each step again first; returns each step
/// with what became of it.
pub fn execute(plan: &Plan, world: &World) -> Vec<Done> {
    plan.actions
        .iter()
        .map(|a| Done {
            action: a.clone(),
            skipped: carry_out(a, world).err(),
        })
        .collect()
}

fn carry_out(action: &Action, world: &World) -> Result<(), String> {
    let f = world.folders;
    match action {
        Action::Trash { run_id, .. } => {
            let meta = RunMeta::load(&f.runs, run_id);
            if meta.tags.iter().any(|t| t.eq_ignore_ascii_case(KEEP_TAG)) {
                return Err("tagged keep since the plan was made".into());
            }
            if (world.is_running)(run_id) {
                return Err("it trains now".into());
            }
            crate::trash::move_to_trash(&f.runs, &f.checkpoints, run_id).map_err(|e| e.to_string())
        }
        Action::EmptyTrash { run_id, .. } => {
            let dir = f.runs.join(crate::trash::TRASH).join(run_id);
            std::fs::remove_dir_all(&dir)
                .map_err(|e| format!("cannot delete {}: {e}", dir.display()))
        }
        Action::DropCheckpoints {
            run_id,
            epochs,
            kept,
            ..
        } => {
            let dir = f.checkpoints.join(run_id);
            if !dir
                .join(mnist_train::checkpoint::epoch_dir_name(*kept))
                .is_dir()
            {
                return Err(format!(
                    "its best checkpoint (epoch {kept}) is gone: nothing dropped"
                ));
            }
            for e in epochs {
                let path = dir.join(mnist_train::checkpoint::epoch_dir_name(*e));
                std::fs::remove_dir_all(&path)
                    .map_err(|err| format!("cannot delete {}: {err}", path.display()))?;
            }
            Ok(())
        }
    }
}

/// Whether a process may be training run `id` without this one knowing:
/// its log was written in the last [`RECENT_SECS`] and does not end the
/// run (as the index read it, unless the log changed since).
pub fn may_train(index: &crate::index::RunIndex, id: &str) -> bool {
    let folders = index.folders();
    let recent = std::fs::metadata(folders.log(id))
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| t.elapsed().ok())
        .is_some_and(|age| age.as_secs() < RECENT_SECS);
    recent
        && index
            .row(id)
            .is_none_or(|r| !r.summary.status.is_final() || folders.stamp(id) != Some(r.stamp))
}

/// Brings `index` in line with what `done` did: trashed runs leave it,
/// runs whose checkpoints were dropped are indexed again. Returns the
/// trashed runs' ids.
pub fn follow_in_index(index: &crate::index::RunIndex, done: &[Done]) -> Vec<String> {
    let mut trashed = Vec::new();
    for d in done.iter().filter(|d| d.skipped.is_none()) {
        match &d.action {
            Action::Trash { run_id, .. } => {
                index.remove(run_id);
                trashed.push(run_id.clone());
            }
            Action::DropCheckpoints { run_id, .. } => {
                if let Ok(Some(row)) = crate::index::index_run(index.folders(), run_id) {
                    index.put(row);
                }
            }
            Action::EmptyTrash { .. } => {}
        }
    }
    trashed
}

/// What a prune answered (`POST /api/prune`, `mnist-monitor prune --json`).
#[derive(Debug, Clone, Serialize)]
pub struct Outcome {
    /// Whether only the plan was made.
    pub dry_run: bool,
    /// What the policy lets go.
    pub plan: Plan,
    /// Each step and what became of it (absent on a dry run).
    pub done: Option<Vec<Done>>,
}

/// The plan made now is not the one `expect` says was previewed (and
/// confirmed): nothing was done.
#[derive(Debug, Clone, thiserror::Error)]
#[error("the runs changed since the preview ({} steps now, {} previewed): nothing was done; preview again", .now.actions.len(), .previewed)]
pub struct Changed {
    /// The plan as it would be now.
    pub now: Plan,
    /// How many steps were previewed.
    pub previewed: usize,
}

/// Plans `policy` over the server's index and, unless `dry_run`, carries
/// it out, keeping the index and the shown run in line with what went.
/// With `expect` (the previewed steps) it does nothing unless the plan
/// made now is exactly that one.
pub fn run(
    state: &crate::AppState,
    policy: &Policy,
    dry_run: bool,
    expect: Option<&[Action]>,
) -> Result<Outcome, Changed> {
    let rows: Vec<RunSummary> = state
        .index
        .with_rows(|rows| rows.values().map(|r| r.summary.clone()).collect());
    let folders = state.index.folders().clone();
    let is_running = |id: &str| {
        state.training_ids().iter().any(|t| t == id)
            || state.followed_live(id)
            || state
                .current_hub()
                .is_some_and(|h| h.run_id == id && !h.is_finished())
            || may_train(&state.index, id)
    };
    let world = World {
        folders: &folders,
        now_ms: mnist_events::now_ms(),
        is_running: &is_running,
    };
    let plan = plan(policy, &rows, &world);
    if dry_run {
        return Ok(Outcome {
            dry_run,
            plan,
            done: None,
        });
    }
    if let Some(expect) = expect.filter(|e| *e != plan.actions.as_slice()) {
        return Err(Changed {
            previewed: expect.len(),
            now: plan,
        });
    }
    let done = execute(&plan, &world);
    for run_id in follow_in_index(&state.index, &done) {
        state.forget_run(&run_id);
    }
    state.runs_changed.send_modify(|v| *v += 1);
    Ok(Outcome {
        dry_run,
        plan,
        done: Some(done),
    })
}

/// Prunes with `policy` every `every` on a thread of its own
/// (`serve --prune-every`).
pub fn every(
    state: std::sync::Arc<crate::AppState>,
    policy: Policy,
    every: std::time::Duration,
) -> std::io::Result<std::thread::JoinHandle<()>> {
    std::thread::Builder::new()
        .name("prune".into())
        .spawn(move || loop {
            std::thread::sleep(every);
            // Nothing was previewed: no plan to hold it to.
            let Ok(out) = run(&state, &policy, false, None) else {
                continue;
            };
            let went = out
                .done
                .iter()
                .flatten()
                .filter(|d| d.skipped.is_none())
                .count();
            tracing::info!(
                "prune: {went} steps done, {} bytes freed, {} bytes to the trash",
                out.plan.freed_bytes,
                out.plan.trash_bytes
            );
        })
}
