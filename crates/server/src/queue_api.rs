//! The queue's endpoints: `GET /api/queue` lists it (with what each run
//! waits for); `DELETE /api/queue/{id}` cancels a queued run;
//! `POST /api/queue/{id}/move` with `{"position": N}` (1 is next) reorders
//! it. The queue itself is [`crate::queue`], run by [`crate::scheduler`].

use crate::error::{ApiError, ApiResult};
use crate::queue::Queue;
use crate::AppState;
use actix_web::{web, HttpResponse};
use mnist_events::LockExt;
use serde::Deserialize;

/// Registers the queue's endpoints.
pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/api/queue", web::get().to(list))
        .route("/api/queue/{id}", web::delete().to(cancel))
        .route("/api/queue/{id}/move", web::post().to(reorder));
}

fn listing(queue: &Queue) -> serde_json::Value {
    let items: Vec<_> = queue
        .items()
        .iter()
        .enumerate()
        .map(|(i, q)| {
            let mut v = serde_json::to_value(q).expect("serialises");
            v["position"] = (i + 1).into();
            v
        })
        .collect();
    serde_json::json!({ "queued": items })
}

/// `GET /api/queue`: the queued runs in order, each with what it waits for
/// (`waiting_for`: the device it needs and who holds it).
async fn list(state: web::Data<AppState>) -> ApiResult {
    let state = state.into_inner();
    let body = web::block(move || {
        let reasons = crate::scheduler::waiting_for(&state);
        let mut body = listing(&state.queue.locked());
        if let Some(items) = body["queued"].as_array_mut() {
            for item in items {
                let id = item["run_id"].as_str().unwrap_or_default().to_string();
                if let Some((_, why)) = reasons.iter().find(|(r, _)| *r == id) {
                    item["waiting_for"] = why.clone().into();
                }
            }
        }
        body
    })
    .await?;
    Ok(HttpResponse::Ok().json(body))
}

async fn cancel(state: web::Data<AppState>, id: web::Path<String>) -> ApiResult {
    let removed = state
        .queue
        .locked()
        .remove(&id)
        .map_err(|e| ApiError::Internal(e.to_string()))?;
    match removed {
        Some(_) => {
            state.runs_changed.send_modify(|v| *v += 1);
            Ok(HttpResponse::Ok().json(listing(&state.queue.locked())))
        }
        None => Err(ApiError::NotFound(format!("no queued run {id}"))),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Move {
    position: usize,
}

async fn reorder(
    state: web::Data<AppState>,
    id: web::Path<String>,
    body: web::Json<Move>,
) -> ApiResult {
    let len = state.queue.locked().items().len();
    if !(1..=len.max(1)).contains(&body.position) {
        let message = format!("must be in 1..={} (got {})", len.max(1), body.position);
        return Err(ApiError::field("position", message));
    }
    let moved = state
        .queue
        .locked()
        .move_to(&id, body.position)
        .map_err(|e| ApiError::Internal(e.to_string()))?;
    if !moved {
        return Err(ApiError::NotFound(format!("no queued run {id}")));
    }
    state.runs_changed.send_modify(|v| *v += 1);
    Ok(HttpResponse::Ok().json(listing(&state.queue.locked())))
}
