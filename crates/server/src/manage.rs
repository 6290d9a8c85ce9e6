//! Run management: a run's name, notes and tags, and deleting a run to a
//! trash folder it can be restored from.
//!
//! The user's words about a run live in `runs/<id>/meta.json`, beside its
//! log and never inside it (the log is what the trainer recorded). Deleting
//! moves `runs/<id>` and `checkpoints/<id>` into `runs/.trash/<id>/` (a
//! hidden folder, so the runs list skips it); restoring moves them back.

use crate::error::{ApiError, ApiResult};
use crate::meta::{MAX_NAME, MAX_NOTES, MAX_TAG, MAX_TAGS, META_FILE};
use crate::protocol::{Restored, RunMeta, Trashed, TrashedRun};
use crate::trash::{move_dir, move_to_trash, TrashError, TRASH};
use crate::AppState;
use actix_web::{web, HttpResponse};
use serde::Deserialize;
use std::path::PathBuf;

/// Registers `PATCH` and `DELETE /api/runs/{id}`, `GET /api/trash` and
/// `POST /api/trash/{id}/restore`.
pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/api/runs/{id}", web::patch().to(patch))
        .route("/api/runs/{id}", web::delete().to(delete))
        .route("/api/trash", web::get().to(trash))
        .route("/api/trash/{id}/restore", web::post().to(restore))
        .service(
            // The previewed steps come back with the confirmation: a
            // cleanup of thousands of runs is a few hundred KB of them.
            web::resource("/api/prune")
                .app_data(
                    web::JsonConfig::default()
                        .limit(8 << 20)
                        .error_handler(crate::error::json_error),
                )
                .route(web::post().to(prune)),
        );
}

/// `PATCH /api/runs/{id}` with any of `name` (null clears it), `notes`, `tags`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct MetaPatch {
    #[serde(default, deserialize_with = "serde_with_null::deserialize")]
    name: Option<Option<String>>,
    notes: Option<String>,
    tags: Option<Vec<String>>,
}

/// Tells "absent" from "null" for `name`.
mod serde_with_null {
    use serde::{Deserialize, Deserializer};
    /// A present `name`, `null` included, as `Some` (an absent one is `None`
    /// through `#[serde(default)]`).
    pub fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Option<Option<String>>, D::Error> {
        Option::<String>::deserialize(d).map(Some)
    }
}

fn check_patch(p: &MetaPatch) -> Result<(), ApiError> {
    let mut errors = Vec::new();
    if let Some(Some(name)) = &p.name {
        if name.chars().count() > MAX_NAME {
            errors.push(mnist_train::FieldError::new(
                "name",
                format!(
                    "must be at most {MAX_NAME} characters (got {})",
                    name.chars().count()
                ),
            ));
        }
    }
    if let Some(notes) = &p.notes {
        if notes.chars().count() > MAX_NOTES {
            errors.push(mnist_train::FieldError::new(
                "notes",
                format!("must be at most {MAX_NOTES} characters"),
            ));
        }
    }
    if let Some(tags) = &p.tags {
        let bad = tags
            .iter()
            .find(|t| t.trim().is_empty() || t.chars().count() > MAX_TAG);
        if tags.len() > MAX_TAGS || bad.is_some() {
            errors.push(mnist_train::FieldError::new(
                "tags",
                format!("at most {MAX_TAGS} tags, each 1..={MAX_TAG} characters"),
            ));
        }
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(ApiError::Invalid(errors))
    }
}

fn run_dir(state: &AppState, id: &str) -> Result<PathBuf, ApiError> {
    let dir = state.opts.runs_dir.join(id);
    if crate::valid_run_id(id) && dir.join(mnist_events::LOG_FILE).is_file() {
        Ok(dir)
    } else {
        Err(ApiError::no_run(id))
    }
}

async fn patch(
    state: web::Data<AppState>,
    id: web::Path<String>,
    body: web::Json<MetaPatch>,
) -> ApiResult {
    let p = body.into_inner();
    check_patch(&p)?;
    run_dir(&state, &id)?;
    let runs_dir = &state.opts.runs_dir;
    let mut meta = RunMeta::load(runs_dir, &id);
    if let Some(name) = p.name {
        meta.name = name.map(|n| n.trim().to_string()).filter(|n| !n.is_empty());
    }
    if let Some(notes) = p.notes {
        meta.notes = notes;
    }
    if let Some(tags) = p.tags {
        let mut tags: Vec<String> = tags.into_iter().map(|t| t.trim().to_string()).collect();
        tags.dedup();
        meta.tags = tags;
    }
    meta.save(runs_dir, &id)
        .map_err(|e| ApiError::Internal(format!("cannot save {id}'s {META_FILE}: {e}")))?;
    state.index.refresh_meta(&id);
    Ok(HttpResponse::Ok().json(meta))
}

/// `DELETE /api/runs/{id}`: the run and its checkpoints to the trash.
async fn delete(state: web::Data<AppState>, id: web::Path<String>) -> ApiResult {
    if state.scheduler.is_queued(&id) {
        return Err(ApiError::conflict(format!(
            "run {id} is queued, not trained yet: cancel it with DELETE /api/queue/{id}"
        )));
    }
    run_dir(&state, &id)?;
    let training_here = state.training_ids().contains(&id);
    if training_here
        || state
            .current_hub()
            .is_some_and(|h| h.run_id == *id && !h.is_finished())
    {
        return Err(ApiError::conflict(format!(
            "run {id} is training: stop it before deleting it"
        )));
    }
    move_to_trash(&state.opts.runs_dir, &state.opts.checkpoints_dir, &id).map_err(|e| match e {
        TrashError::Taken(m) => ApiError::conflict(m),
        TrashError::Io(m) => ApiError::Internal(m),
    })?;
    state.index.remove(&id);
    state.forget_run(&id);
    Ok(HttpResponse::Ok().json(Trashed {
        run_id: id.into_inner(),
        trashed: true,
    }))
}

/// `POST /api/prune`: `{"policy": {…}, "dry_run": true}` (the default)
/// answers what the policy would let go and the disk it frees;
/// `"dry_run": false` does it (see [`crate::prune`]).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PruneBody {
    policy: crate::prune::Policy,
    #[serde(default = "dry_run_default")]
    dry_run: bool,
    /// The steps the person previewed and confirmed: carried out only if
    /// the plan made now is the same (else a 409 and nothing done).
    expect: Option<Vec<crate::prune::Action>>,
}

fn dry_run_default() -> bool {
    true
}

async fn prune(state: web::Data<AppState>, body: web::Json<PruneBody>) -> ApiResult {
    let body = body.into_inner();
    body.policy
        .check()
        .map_err(|e| ApiError::field(e.field, e.message))?;
    let state = state.into_inner();
    let out = web::block(move || {
        crate::prune::run(&state, &body.policy, body.dry_run, body.expect.as_deref())
    })
    .await?
    .map_err(|changed| ApiError::conflict(changed.to_string()))?;
    Ok(HttpResponse::Ok().json(out))
}

/// `GET /api/trash`: the deleted runs, newest first, with their names.
async fn trash(state: web::Data<AppState>) -> HttpResponse {
    let dir = state.opts.runs_dir.join(TRASH);
    let mut runs: Vec<_> = std::fs::read_dir(&dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let id = e.file_name().into_string().ok()?;
            let meta = RunMeta::load(&dir.join(&id), "run");
            Some(TrashedRun {
                run_id: id,
                name: meta.name,
                tags: meta.tags,
            })
        })
        .collect();
    runs.sort_by(|a, b| b.run_id.cmp(&a.run_id));
    HttpResponse::Ok().json(runs)
}

/// `POST /api/trash/{id}/restore`: back where it was.
async fn restore(state: web::Data<AppState>, id: web::Path<String>) -> ApiResult {
    let trash = state.opts.runs_dir.join(TRASH).join(id.as_str());
    if !crate::valid_run_id(&id) || !trash.join("run").is_dir() {
        return Err(ApiError::NotFound(format!("no run {id} in the trash")));
    }
    let back = state.opts.runs_dir.join(id.as_str());
    if back.exists() {
        return Err(ApiError::conflict(format!(
            "a run {id} exists again: rename it before restoring"
        )));
    }
    let io = |e: std::io::Error| ApiError::Internal(format!("cannot restore run {id}: {e}"));
    move_dir(&trash.join("run"), &back).map_err(io)?;
    move_dir(
        &trash.join("checkpoints"),
        &state.opts.checkpoints_dir.join(id.as_str()),
    )
    .map_err(io)?;
    let _ = std::fs::remove_dir(&trash);
    Ok(HttpResponse::Ok().json(Restored {
        run_id: id.into_inner(),
        restored: true,
    }))
}
