//! `POST /api/sweeps`: a sweep's runs, expanded and checked
//! ([`mnist_sweep`]), queued one after another under one sweep id (each
//! run tagged with it), so the page's compare view can open on them.

use crate::error::{ApiError, ApiResult};
use crate::protocol::{SweepQueued, SweepRequest, SweepRun};
use crate::scheduler::{Submission, Submitted};
use crate::AppState;
use actix_web::{web, HttpResponse};
use mnist_sweep::{Grid, SweepError};
use mnist_train::TrainConfig;
use serde_json::Value;

/// Registers `POST /api/sweeps`.
pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/api/sweeps", web::post().to(start));
}

fn sweep_error(e: SweepError) -> ApiError {
    match e {
        SweepError::Invalid(errors) => ApiError::Invalid(errors),
        SweepError::Spec { .. } => ApiError::field("grid", e.to_string()),
        SweepError::Random(m) => ApiError::field("random", m),
        SweepError::Size(m) => ApiError::field("grid", m),
    }
}

async fn start(state: web::Data<AppState>, body: web::Json<SweepRequest>) -> ApiResult {
    if !state.opts.mode.starts_runs() {
        return Err(ApiError::Forbidden(
            "this server only watches a run started from the command line".into(),
        ));
    }
    let base = if body.base.is_null() {
        TrainConfig::default()
    } else {
        TrainConfig::from_json(&body.base).map_err(ApiError::Invalid)?
    };
    let mut grid = Grid::default();
    for spec in &body.specs {
        grid.add_spec(spec).map_err(sweep_error)?;
    }
    for (field, values) in &body.grid {
        let values = match values {
            Value::Array(v) => v.clone(),
            one => vec![one.clone()],
        };
        grid.set(field, values);
    }
    let configs = mnist_sweep::expand(&base, &grid, body.random, body.seed).map_err(sweep_error)?;
    let state = state.into_inner();
    for config in &configs {
        crate::api::prepared(&state, config).await?;
    }
    let sweep_id = mnist_sweep::new_sweep_id();
    let mut runs = Vec::with_capacity(configs.len());
    for config in configs {
        let submission = Submission {
            sweep: Some(sweep_id.clone()),
            ..Submission::new(config.clone())
        };
        let (run_id, submitted) = crate::api::enqueue(&state, submission)?;
        let position = match submitted {
            Submitted::Started => None,
            Submitted::Queued(p) => Some(p),
        };
        runs.push(SweepRun {
            run_id,
            position,
            config,
        });
    }
    Ok(HttpResponse::Accepted().json(SweepQueued {
        compare: format!("/?sweep={sweep_id}"),
        sweep_id,
        runs,
    }))
}
