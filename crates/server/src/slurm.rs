//! Slurm task states beside the runs' curves.
//!
//! A sweep submitted with `sweep --executor slurm` leaves
//! `<runs>/.slurm/<sweep id>/job.json` (see `mnist_slurm`): which array
//! task trains which run. Every [`POLL`] this module reads those records
//! and, for jobs with a task not yet over, asks Slurm (`squeue`, then
//! `sacct`) for their states, on a thread of its own. The runs themselves
//! are followed like any other run ([`crate::follow`]); the page shows each
//! task's state (pending tasks have no run yet) from `GET /api/slurm`,
//! refreshed on `runs_changed`, and cancels tasks with `scancel` through
//! `POST /api/slurm/{sweep}/cancel` or a run's Stop.

use crate::error::{ApiError, ApiResult};
use crate::protocol::{SweepView, TaskView};
use crate::AppState;
use actix_web::{web, HttpResponse};
use mnist_events::LockExt;
use mnist_slurm::{SlurmError, SweepJob, TaskState};
use serde::Deserialize;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

/// How often Slurm is asked, while a task of a known sweep is not over.
/// `squeue` is a request to the cluster's controller; every few seconds
/// from one server is what cluster admins tolerate.
pub const POLL: Duration = Duration::from_secs(3);

/// A task Slurm no longer lists this long after its submission has ended
/// and been purged (or never existed): stop asking about it.
const FORGOTTEN_AFTER_S: f64 = 30.0;

/// What the server knows of the sweeps submitted to Slurm.
#[derive(Default)]
pub(crate) struct Board {
    jobs: Vec<SweepJob>,
    /// The latest state of each task, by (job id, task).
    states: HashMap<(String, u32), TaskState>,
    /// Tasks Slurm forgot (purged after they ended): not asked about again.
    forgotten: std::collections::HashSet<(String, u32)>,
    /// Why Slurm could not be asked (no `squeue` here, the controller down).
    error: Option<String>,
}

impl Board {
    fn task_view(&self, job: &SweepJob, task: u32) -> TaskView {
        let known = self.states.get(&(job.job_id.clone(), task));
        TaskView {
            task,
            run_id: job.runs[task as usize].clone(),
            state: known.map(|s| s.state.clone()),
            reason: known.and_then(|s| s.reason.clone()),
            node: known.and_then(|s| s.node.clone()),
            elapsed: known.and_then(|s| s.elapsed.clone()),
        }
    }

    fn views(&self) -> Vec<SweepView> {
        self.jobs
            .iter()
            .map(|job| SweepView {
                sweep_id: job.sweep_id.clone(),
                job_id: job.job_id.clone(),
                submitted_at: job.submitted_at,
                options: job.options.clone(),
                tasks: (0..job.runs.len() as u32)
                    .map(|t| self.task_view(job, t))
                    .collect(),
            })
            .collect()
    }

    /// The Slurm task that trains `run_id`: its sweep's record, the task and its last known state.
    pub(crate) fn task_of(&self, run_id: &str) -> Option<(SweepJob, u32, Option<String>)> {
        self.jobs.iter().find_map(|job| {
            let task = job.task_of(run_id)?;
            let state = self
                .states
                .get(&(job.job_id.clone(), task))
                .map(|s| s.state.clone());
            Some((job.clone(), task, state))
        })
    }

    /// Whether a task of `job` may still change (asked about next poll).
    fn open(&self, job: &SweepJob) -> bool {
        (0..job.runs.len() as u32).any(|t| {
            let key = (job.job_id.clone(), t);
            !self.forgotten.contains(&key)
                && self
                    .states
                    .get(&key)
                    .is_none_or(|s| !mnist_slurm::is_final(&s.state))
        })
    }
}

/// Starts polling Slurm for `state`'s runs folder on a thread of its own.
pub fn start(state: Arc<AppState>) -> std::io::Result<std::thread::JoinHandle<()>> {
    std::thread::Builder::new()
        .name("slurm-poller".into())
        .spawn(move || loop {
            poll(&state);
            std::thread::sleep(POLL);
        })
}

/// One look at the sweeps' records and, if a task may have moved, at Slurm.
pub fn poll(state: &Arc<AppState>) {
    let jobs = SweepJob::load_all(&state.opts.runs_dir);
    let open: Vec<SweepJob> = {
        let mut board = state.slurm.locked();
        board.jobs = jobs;
        board
            .jobs
            .iter()
            .filter(|j| board.open(j))
            .cloned()
            .collect()
    };
    if open.is_empty() {
        return;
    }
    let answer = mnist_slurm::query(&open.iter().collect::<Vec<_>>());
    let changed = {
        let mut board = state.slurm.locked();
        fold(&mut board, &open, answer)
    };
    if changed {
        state.runs_changed.send_modify(|v| *v += 1);
    }
}

/// Folds Slurm's answer into the board; true when anything the page shows changed.
fn fold(board: &mut Board, open: &[SweepJob], answer: Result<Vec<TaskState>, SlurmError>) -> bool {
    let states = match answer {
        Ok(states) => states,
        Err(e) => {
            let error = Some(e.to_string());
            let changed = board.error != error;
            board.error = error;
            return changed;
        }
    };
    let mut changed = board.error.take().is_some();
    let now = mnist_events::now_ms() as f64 / 1000.0;
    for job in open {
        for task in 0..job.runs.len() as u32 {
            let key = (job.job_id.clone(), task);
            match states
                .iter()
                .find(|s| s.job_id == job.job_id && s.task == task)
            {
                Some(s) if board.states.get(&key) != Some(s) => {
                    board.states.insert(key, s.clone());
                    changed = true;
                }
                Some(_) => {}
                None if now - job.submitted_at > FORGOTTEN_AFTER_S => {
                    // A last state that was not final is stale now: the
                    // run's own log tells how it ended.
                    if board
                        .states
                        .get(&key)
                        .is_some_and(|s| !mnist_slurm::is_final(&s.state))
                    {
                        board.states.remove(&key);
                        changed = true;
                    }
                    board.forgotten.insert(key);
                }
                None => {}
            }
        }
    }
    changed
}

/// Registers `GET /api/slurm` and `POST /api/slurm/{sweep}/cancel`.
pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/api/slurm", web::get().to(list))
        .route("/api/slurm/{sweep}/cancel", web::post().to(cancel));
}

/// `GET /api/slurm`: every sweep submitted to Slurm from this runs folder,
/// with each task's state; `error` says why Slurm could not be asked.
async fn list(state: web::Data<AppState>) -> HttpResponse {
    let board = state.slurm.locked();
    HttpResponse::Ok().json(crate::protocol::SlurmSweeps {
        sweeps: board.views(),
        error: board.error.clone(),
    })
}

/// The body of a cancel: `{"task": N}` for one task; an empty body (or
/// `{}`) cancels the whole job.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct CancelBody {
    task: Option<u32>,
}

/// Reads a cancel's body strictly: anything but nothing or a well-formed
/// `{"task": N}` is a 400 naming `task`, never "cancel everything".
fn cancel_body(bytes: &[u8]) -> Result<CancelBody, ApiError> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(CancelBody::default());
    }
    serde_json::from_slice(bytes).map_err(|e| {
        ApiError::field(
            "task",
            format!("the body must be empty (the whole job) or {{\"task\": N}} with N a task's index: {e}"),
        )
    })
}

/// `POST /api/slurm/{sweep}/cancel` with `{"task": N}` or no body: `scancel`
/// of the task or of the whole job array; 409 when what it names is over.
async fn cancel(
    state: web::Data<AppState>,
    sweep: web::Path<String>,
    body: web::Bytes,
) -> ApiResult {
    let task = cancel_body(&body)?.task;
    let (job, states) = {
        let board = state.slurm.locked();
        let job = board.jobs.iter().find(|j| j.sweep_id == *sweep).cloned();
        let job = job.ok_or_else(|| {
            ApiError::NotFound(format!("no Slurm sweep {sweep} in this runs folder"))
        })?;
        let states: Vec<Option<String>> = (0..job.runs.len() as u32)
            .map(|t| board.task_view(&job, t).state)
            .collect();
        (job, states)
    };
    if let Some(t) = task.filter(|&t| t as usize >= job.runs.len()) {
        let last = job.runs.len() - 1;
        let message = format!("task {t} is not in sweep {}: 0–{last}", job.sweep_id);
        return Err(ApiError::field("task", message));
    }
    // Over: a final state, or forgotten by Slurm (ended long ago).
    let open = |s: &Option<String>| s.as_deref().is_some_and(|s| !mnist_slurm::is_final(s));
    let any_open = match task {
        Some(t) => open(&states[t as usize]),
        None => states.iter().any(open),
    };
    if !any_open {
        return Err(ApiError::conflict(format!(
            "nothing to cancel: {} of sweep {} is over",
            task.map_or("every task".into(), |t| format!("task {t}")),
            job.sweep_id
        )));
    }
    scancel(&state, &job, task).await?;
    Ok(
        HttpResponse::Accepted().json(crate::protocol::SlurmCancelling {
            sweep_id: job.sweep_id,
            job_id: job.job_id,
            task,
            cancelling: true,
        }),
    )
}

/// Runs `scancel` off the async threads, then asks Slurm again at once so
/// the page sees the new state without waiting for the next poll.
pub(crate) async fn scancel(
    state: &web::Data<AppState>,
    job: &SweepJob,
    task: Option<u32>,
) -> Result<(), ApiError> {
    let (job_id, name) = (job.job_id.clone(), job.sweep_id.clone());
    web::block(move || mnist_slurm::cancel(&job_id, &name, task))
        .await?
        .map_err(|e| match e {
            SlurmError::Missing { .. } => ApiError::Unavailable(e.to_string()),
            SlurmError::Option { field, message } => ApiError::field(field, message),
            // The controller is down or unreachable: try again later.
            SlurmError::Failed { ref message, .. } if message.contains("Unable to contact") => {
                ApiError::Unavailable(e.to_string())
            }
            other => ApiError::conflict(other.to_string()),
        })?;
    let state = state.clone().into_inner();
    web::block(move || poll(&state)).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job() -> SweepJob {
        SweepJob {
            sweep_id: "sweep-x".into(),
            job_id: "7".into(),
            cluster: None,
            submitted_at: 0.0,
            script: "job.sbatch".into(),
            options: Default::default(),
            runs: vec!["sweep-x-01".into(), "sweep-x-02".into()],
        }
    }

    fn task(t: u32, state: &str) -> TaskState {
        TaskState {
            job_id: "7".into(),
            task: t,
            state: state.into(),
            reason: None,
            node: Some("n1".into()),
            elapsed: None,
            name: "sweep-x".into(),
        }
    }

    #[test]
    fn a_cancel_body_is_nothing_or_one_task_and_anything_else_is_refused() {
        assert_eq!(cancel_body(b"").unwrap().task, None);
        assert_eq!(cancel_body(b"{}").unwrap().task, None);
        assert_eq!(cancel_body(br#"{"task": 2}"#).unwrap().task, Some(2));
        for bad in [
            &br#"{"task":"1"}"#[..],
            br#"{"task":-1}"#,
            br#"{"Task":1}"#,
            b"task=1",
            b"null",
        ] {
            assert!(
                cancel_body(bad).is_err(),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn states_fold_once_and_a_job_closes_when_every_task_is_over() {
        let mut board = Board {
            jobs: vec![job()],
            ..Default::default()
        };
        assert!(board.open(&board.jobs[0].clone()));
        let open = board.jobs.clone();
        assert!(fold(
            &mut board,
            &open,
            Ok(vec![task(0, "RUNNING"), task(1, "PENDING")])
        ));
        assert!(
            !fold(
                &mut board,
                &open,
                Ok(vec![task(0, "RUNNING"), task(1, "PENDING")])
            ),
            "nothing new"
        );
        let (job_of, task_no, state) = board.task_of("sweep-x-02").unwrap();
        assert_eq!(
            (job_of.job_id.as_str(), task_no, state.as_deref()),
            ("7", 1, Some("PENDING"))
        );
        fold(
            &mut board,
            &open,
            Ok(vec![task(0, "COMPLETED"), task(1, "CANCELLED")]),
        );
        assert!(!board.open(&open[0]));
        let views = board.views();
        assert_eq!(views[0].tasks[1].state.as_deref(), Some("CANCELLED"));
        assert_eq!(views[0].tasks[0].run_id, "sweep-x-01");
    }

    #[test]
    fn a_task_slurm_forgot_is_not_asked_about_again_and_an_error_is_shown_once() {
        let mut board = Board {
            jobs: vec![job()],
            ..Default::default()
        };
        let open = board.jobs.clone();
        fold(&mut board, &open, Ok(vec![task(0, "RUNNING")]));
        assert!(
            board.forgotten.contains(&("7".into(), 1)),
            "submitted long ago, never listed"
        );
        assert!(board.open(&open[0]), "task 0 still runs");
        assert!(fold(&mut board, &open, Ok(vec![])));
        assert!(!board.open(&open[0]), "both tasks purged by Slurm");
        assert_eq!(
            board.views()[0].tasks[0].state,
            None,
            "a stale RUNNING is dropped"
        );
        assert!(fold(
            &mut board,
            &open,
            Err(SlurmError::Missing { command: "squeue" })
        ));
        assert!(!fold(
            &mut board,
            &open,
            Err(SlurmError::Missing { command: "squeue" })
        ));
        assert!(board.error.as_deref().unwrap().contains("squeue"));
    }
}
