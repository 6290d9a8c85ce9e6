//! `POST /api/sweeps`: a sweep's runs, expanded and checked
//! ([`mnist_sweep`]), queued one after another under one sweep id (each
//! run tagged with it), so the page's compare view can open on them.

use crate::error::{ApiError, ApiResult};
use crate::AppState;
use actix_web::{web, HttpResponse};
use mnist_sweep::{Grid, SweepError};
use mnist_train::TrainConfig;
use serde::Deserialize;
use serde_json::{json, Value};

/// Registers `POST /api/sweeps`.
pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/api/sweeps", web::post().to(start));
}

/// The request: a base configuration, the grid (as JSON lists by field, or
/// as `field=v1,v2` lines), and optionally `random` (with `seed`).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SweepRequest {
    #[serde(default)]
    base: Value,
    #[serde(default)]
    grid: serde_json::Map<String, Value>,
    #[serde(default)]
    specs: Vec<String>,
    random: Option<usize>,
    #[serde(default)]
    seed: u64,
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
    if !state.opts.can_start_runs {
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
    {
        let state = state.clone();
        let configs = configs.clone();
        web::block(move || {
            configs
                .iter()
                .try_for_each(|c| crate::scheduler::prepare(&state, c).map(drop))
        })
        .await??;
    }
    let sweep_id = mnist_sweep::new_sweep_id();
    let mut runs = Vec::with_capacity(configs.len());
    for config in &configs {
        let (run_id, position) = crate::scheduler::enqueue(&state, config, Some(sweep_id.clone()))?;
        runs.push(json!({"run_id": run_id, "position": position, "config": config}));
    }
    state.runs_changed.send_modify(|v| *v += 1);
    crate::scheduler::dispatch(&state);
    Ok(HttpResponse::Accepted().json(json!({
        "sweep_id": sweep_id,
        "runs": runs,
        "compare": format!("/?sweep={sweep_id}"),
    })))
}
