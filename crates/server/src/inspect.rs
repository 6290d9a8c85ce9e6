//! Feature maps and saliency of one digit, from a run's newest weights:
//! `GET /api/runs/{id}/inspect?split=test&index=N` (a test or training
//! image) and `POST /api/runs/{id}/inspect` with `{"pixels": […]}` or
//! `{"png_base64": …}` (a drawing), answered with
//! [`mnist_train::inspect::Inspection`] and which checkpoint it used.

use crate::error::{ApiError, ApiResult};
use crate::AppState;
use actix_web::{web, HttpResponse};
use mnist_events::LockExt;
use serde::{Deserialize, Serialize};

/// Registers the two inspect routes.
pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/api/runs/{id}/inspect", web::get().to(inspect_image))
        .route("/api/runs/{id}/inspect", web::post().to(inspect_drawing));
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ImageQuery {
    split: Option<String>,
    index: Option<usize>,
}

/// The answer: the inspection, where it came from, how long it took.
#[derive(Serialize)]
struct Inspected {
    run_id: String,
    /// The checkpoint whose weights were used (the run's newest).
    checkpoint: String,
    /// Its epoch and step.
    epoch: usize,
    step: u64,
    /// The image's true label, for a data set image.
    #[serde(skip_serializing_if = "Option::is_none")]
    label: Option<u8>,
    #[serde(flatten)]
    inspection: mnist_train::inspect::Inspection,
    /// Milliseconds the inspection took (not counting loading weights).
    ms: f64,
}

/// `GET …/inspect?split=test|train&index=N`.
async fn inspect_image(
    state: web::Data<AppState>,
    id: web::Path<String>,
    q: web::Query<ImageQuery>,
) -> ApiResult {
    let split = q.split.clone().unwrap_or_else(|| "test".into());
    let index = q.index.unwrap_or(0);
    let state = state.into_inner();
    let data = {
        let state = state.clone();
        web::block(move || crate::machine::load_data(&state))
            .await?
            .map_err(ApiError::Unavailable)?
    };
    let (images, labels) = match split.as_str() {
        "test" => (&data.test_images, &data.test_labels),
        "train" => (&data.train_images, &data.train_labels),
        other => {
            let message = format!("must be test or train (got {other:?})");
            return Err(ApiError::field("split", message));
        }
    };
    if index >= labels.len() {
        let message = format!(
            "must be in 0..{} for the {split} split (got {index})",
            labels.len()
        );
        return Err(ApiError::field("index", message));
    }
    let pixels = images[index * 784..(index + 1) * 784].to_vec();
    inspected(state, id.into_inner(), pixels, Some(labels[index])).await
}

/// `POST …/inspect` with a drawing, as `POST /api/predict` takes it.
async fn inspect_drawing(
    state: web::Data<AppState>,
    id: web::Path<String>,
    body: web::Json<crate::review::Digit>,
) -> ApiResult {
    let pixels = crate::review::predict_input(&body).await?;
    inspected(state.into_inner(), id.into_inner(), pixels, None).await
}

/// Inspects `pixels` with run `id`'s newest checkpoint.
async fn inspected(
    state: std::sync::Arc<AppState>,
    id: String,
    pixels: Vec<u8>,
    label: Option<u8>,
) -> ApiResult {
    if !crate::valid_run_id(&id) || state.hub(&id).is_none() {
        return Err(ApiError::no_run(&id));
    }
    let dir = state.opts.checkpoints_dir.join(&id);
    let newest = match mnist_train::checkpoint::latest(&dir) {
        Ok(Some((path, _))) => path,
        _ => {
            return Err(ApiError::NotFound(format!(
                "run {id} has no checkpoint yet (one is written after each epoch, or ask for one: the checkpoint control)"
            )))
        }
    };
    let answer = web::block(move || -> Result<Inspected, ApiError> {
        let p = crate::review::predictor(&state, &newest)
            .map_err(|e| ApiError::NotFound(e.to_string()))?;
        let p = p.locked();
        let started = std::time::Instant::now();
        let inspection = mnist_train::inspect::inspect(&p, &pixels);
        Ok(Inspected {
            run_id: id,
            checkpoint: p.checkpoint.display().to_string(),
            epoch: p.state.epoch,
            step: p.state.step,
            label,
            inspection,
            ms: started.elapsed().as_secs_f64() * 1000.0,
        })
    })
    .await??;
    Ok(HttpResponse::Ok().json(answer))
}
