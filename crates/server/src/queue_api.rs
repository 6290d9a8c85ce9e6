//! The queue's endpoints: `GET /api/queue` lists it (with what each run
//! waits for); `DELETE /api/queue/{id}` cancels a queued run;
//! `POST /api/queue/{id}/move` with `{"position": N}` (1 is next) reorders
//! it. The queue itself is [`crate::queue`], run by the scheduler.

use crate::error::{ApiError, ApiResult};
use crate::machine::ServerMachine;
use crate::queue::Queued;
use crate::AppState;
use actix_web::{web, HttpResponse};
use serde::Deserialize;

/// Registers the queue's endpoints.
pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/api/queue", web::get().to(list))
        .route("/api/queue/{id}", web::delete().to(cancel))
        .route("/api/queue/{id}/move", web::post().to(reorder));
}

/// A queued run as listed: its entry, its place and what it waits for.
#[derive(serde::Serialize)]
struct Listed {
    #[serde(flatten)]
    item: Queued,
    /// 1 is next.
    position: usize,
    /// The device it needs and who holds it (`GET /api/queue` only).
    #[serde(skip_serializing_if = "Option::is_none")]
    waiting_for: Option<String>,
}

/// `{"queued": [...]}`: the queue's answer.
#[derive(serde::Serialize)]
struct Listing {
    queued: Vec<Listed>,
}

fn listing(items: Vec<Queued>, reasons: &[(String, String)]) -> Listing {
    let queued = items
        .into_iter()
        .enumerate()
        .map(|(i, item)| Listed {
            waiting_for: reasons
                .iter()
                .find(|(id, _)| *id == item.run_id)
                .map(|(_, why)| why.clone()),
            position: i + 1,
            item,
        })
        .collect();
    Listing { queued }
}

/// `GET /api/queue`: the queued runs in order, each with what it waits for
/// (`waiting_for`: the device it needs and who holds it).
async fn list(state: web::Data<AppState>) -> ApiResult {
    let state = state.into_inner();
    let body = web::block(move || {
        let machine = ServerMachine(state.clone());
        let reasons = state.scheduler.waiting_for(&machine);
        listing(state.scheduler.queued(), &reasons)
    })
    .await?;
    Ok(HttpResponse::Ok().json(body))
}

async fn cancel(state: web::Data<AppState>, id: web::Path<String>) -> ApiResult {
    let removed = state
        .scheduler
        .cancel(&id)
        .map_err(|e| ApiError::Internal(e.to_string()))?;
    match removed {
        Some(_) => {
            state.runs_changed.send_modify(|v| *v += 1);
            Ok(HttpResponse::Ok().json(listing(state.scheduler.queued(), &[])))
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
    let len = state.scheduler.queued().len();
    if !(1..=len.max(1)).contains(&body.position) {
        let message = format!("must be in 1..={} (got {})", len.max(1), body.position);
        return Err(ApiError::field("position", message));
    }
    let moved = state
        .scheduler
        .move_to(&id, body.position)
        .map_err(|e| ApiError::Internal(e.to_string()))?;
    if !moved {
        return Err(ApiError::NotFound(format!("no queued run {id}")));
    }
    state.runs_changed.send_modify(|v| *v += 1);
    Ok(HttpResponse::Ok().json(listing(state.scheduler.queued(), &[])))
}
