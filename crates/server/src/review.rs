//! Reviewing labels and trying the model: the review queue
//! (`GET /api/runs/{id}/review`), label decisions (`/api/overrides`) and
//! predictions for a drawn or uploaded digit (`POST /api/predict`).
//!
//! Models and rankings are cached per checkpoint: ranking the 10,000 test
//! digits takes seconds on a CPU, paging and filtering afterwards is free.

use crate::history::list_runs;
use crate::AppState;
use actix_web::{web, HttpResponse};
use base64::Engine;
use mnist_data::overrides::{self, Decision, LabelOverrides, Override};
use mnist_train::infer::{argmax, png_to_mnist, rank, Predictor, Ranked};
use serde::Deserialize;
use serde_json::json;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

/// Loaded models and finished rankings.
#[derive(Default)]
pub struct ReviewCache {
    predictors: Mutex<HashMap<PathBuf, Arc<Mutex<Predictor>>>>,
    rankings: Mutex<HashMap<(PathBuf, String), Arc<Vec<Ranked>>>>,
}

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/api/runs/{id}/review", web::get().to(review))
        .route("/api/overrides", web::get().to(get_overrides))
        .route("/api/overrides", web::post().to(set_override))
        .route("/api/predict", web::post().to(predict));
}

fn bad(field: &str, message: impl Into<String>) -> HttpResponse {
    HttpResponse::BadRequest()
        .json(json!({"errors": [{"field": field, "message": message.into()}]}))
}

fn predictor(
    state: &AppState,
    checkpoint: &std::path::Path,
) -> Result<Arc<Mutex<Predictor>>, String> {
    let dir = mnist_train::infer::resolve_checkpoint(checkpoint)?;
    let mut cache = state.review.predictors.lock().unwrap();
    if let Some(p) = cache.get(&dir) {
        return Ok(p.clone());
    }
    let p = Arc::new(Mutex::new(Predictor::load(&dir)?));
    cache.insert(dir, p.clone());
    Ok(p)
}

/// `checkpoint` names an epoch directory of the run (`epoch-0003`); absent,
/// the run's best.
fn run_checkpoint(
    state: &AppState,
    run_id: &str,
    checkpoint: Option<&str>,
) -> Result<PathBuf, HttpResponse> {
    // Epoch directory names follow the same rule as run ids: no path tricks.
    let valid = crate::valid_run_id;
    if !valid(run_id) {
        return Err(HttpResponse::NotFound().json(json!({"error": format!("no run {run_id}")})));
    }
    let mut dir = state.opts.checkpoints_dir.join(run_id);
    if let Some(c) = checkpoint {
        if !valid(c) {
            return Err(bad(
                "checkpoint",
                "must be an epoch directory name such as epoch-0003",
            ));
        }
        dir = dir.join(c);
    }
    Ok(dir)
}

#[derive(Deserialize)]
struct ReviewQuery {
    split: Option<String>,
    limit: Option<usize>,
    offset: Option<usize>,
    checkpoint: Option<String>,
    /// Only samples labelled this class.
    label: Option<u8>,
    /// Only samples predicted as this class.
    predicted: Option<u8>,
}

async fn review(
    state: web::Data<AppState>,
    id: web::Path<String>,
    q: web::Query<ReviewQuery>,
) -> HttpResponse {
    let split = q.split.clone().unwrap_or_else(|| "test".into());
    if split != "test" && split != "train" {
        return bad(
            "split",
            format!("must be \"test\" or \"train\" (got {split:?})"),
        );
    }
    let limit = q.limit.unwrap_or(100);
    if !(1..=1000).contains(&limit) {
        return bad("limit", format!("must be in 1..=1000 (got {limit})"));
    }
    for (field, v) in [("label", q.label), ("predicted", q.predicted)] {
        if v.is_some_and(|v| v > 9) {
            return bad(field, "must be a digit 0..=9");
        }
    }
    let dir = match run_checkpoint(&state, &id, q.checkpoint.as_deref()) {
        Ok(d) => d,
        Err(r) => return r,
    };
    let state = state.into_inner();
    let split2 = split.clone();
    let worker = state.clone();
    let result = web::block(move || -> Result<_, (u16, String)> {
        let data = crate::api::load_data(&worker).map_err(|e| (503, e))?;
        let predictor = predictor(&worker, &dir).map_err(|e| (404, e))?;
        let checkpoint = predictor.lock().unwrap().checkpoint.clone();
        let key = (checkpoint.clone(), split2.clone());
        let cached = worker.review.rankings.lock().unwrap().get(&key).cloned();
        let ranked = match cached {
            Some(r) => r,
            None => {
                let (pixels, labels) = match split2.as_str() {
                    "train" => (&data.train_images, &data.train_labels),
                    _ => (&data.test_images, &data.test_labels),
                };
                let r = Arc::new(rank(&predictor.lock().unwrap(), pixels, labels, 0));
                worker
                    .review
                    .rankings
                    .lock()
                    .unwrap()
                    .insert(key, r.clone());
                r
            }
        };
        Ok((data, checkpoint, ranked))
    })
    .await;
    let (data, checkpoint, ranked) = match result {
        Ok(Ok(x)) => x,
        Ok(Err((404, e))) => return HttpResponse::NotFound().json(json!({"error": e})),
        Ok(Err((_, e))) => return HttpResponse::ServiceUnavailable().json(json!({"error": e})),
        Err(e) => return HttpResponse::InternalServerError().json(json!({"error": e.to_string()})),
    };
    let decisions =
        LabelOverrides::load(&overrides::path_in(&state.opts.data_dir)).unwrap_or_default();
    let filtered: Vec<&Ranked> = ranked
        .iter()
        .filter(|r| {
            q.label.is_none_or(|l| r.label == l) && q.predicted.is_none_or(|p| r.predicted == p)
        })
        .collect();
    let pixels = if split == "train" {
        &data.train_images
    } else {
        &data.test_images
    };
    let samples: Vec<_> = filtered
        .iter()
        .skip(q.offset.unwrap_or(0))
        .take(limit)
        .map(|r| {
            let px = &pixels[r.index * 784..(r.index + 1) * 784];
            json!({
                "split": split,
                "index": r.index,
                "png_base64": mnist_train::samples::png_base64(px),
                "label": r.label,
                "predicted": r.predicted,
                "probs": r.probs,
                "loss": r.loss,
                "margin": r.margin,
                "decision": decisions.entries.get(&overrides::key(&split, r.index)),
            })
        })
        .collect();
    let reviewed = decisions
        .entries
        .keys()
        .filter(|k| k.starts_with(&format!("{split}:")))
        .count();
    HttpResponse::Ok().json(json!({
        "run_id": *id,
        "checkpoint": checkpoint.display().to_string(),
        "split": split,
        "total": filtered.len(),
        "reviewed": reviewed,
        "samples": samples,
    }))
}

async fn get_overrides(state: web::Data<AppState>) -> HttpResponse {
    let path = overrides::path_in(&state.opts.data_dir);
    match LabelOverrides::load(&path) {
        Ok(o) => HttpResponse::Ok()
            .json(json!({"path": path.display().to_string(), "entries": o.entries})),
        Err(e) => HttpResponse::InternalServerError().json(json!({"error": e})),
    }
}

#[derive(Deserialize)]
struct OverrideBody {
    split: String,
    index: usize,
    decision: Decision,
    label: Option<u8>,
    by: Option<String>,
}

async fn set_override(state: web::Data<AppState>, body: web::Json<OverrideBody>) -> HttpResponse {
    let b = body.into_inner();
    if b.split != "train" && b.split != "test" {
        return bad("split", "must be \"train\" or \"test\"");
    }
    match (b.decision, b.label) {
        (Decision::Relabel, None) => return bad("label", "a relabel needs a label 0..=9"),
        (_, Some(l)) if l > 9 => return bad("label", format!("must be a digit 0..=9 (got {l})")),
        _ => {}
    }
    let state = state.into_inner();
    let saved = web::block(
        move || -> Result<serde_json::Value, (u16, String, String)> {
            let data = crate::api::load_data(&state).map_err(|e| (503, "data".into(), e))?;
            let labels = if b.split == "train" {
                &data.train_labels
            } else {
                &data.test_labels
            };
            let Some(&original) = labels.get(b.index) else {
                return Err((
                    400,
                    "index".into(),
                    format!("must be below {} for {}", labels.len(), b.split),
                ));
            };
            let path = overrides::path_in(&state.opts.data_dir);
            let entry = Override {
                decision: b.decision,
                label: if b.decision == Decision::Relabel {
                    b.label
                } else {
                    None
                },
                original,
                by: b
                    .by
                    .filter(|s| !s.is_empty())
                    .unwrap_or_else(|| "web".into()),
                at_ms: mnist_events::now_ms(),
            };
            let key = overrides::key(&b.split, b.index);
            // Locked across processes: another server may share the data dir.
            let reviewed = LabelOverrides::update(&path, |all| {
                all.entries.insert(key.clone(), entry.clone());
                all.entries
                    .keys()
                    .filter(|k| k.starts_with(&format!("{}:", b.split)))
                    .count()
            })
            .map_err(|e| (500, "file".into(), e))?;
            Ok(json!({"key": key, "entry": entry, "reviewed": reviewed}))
        },
    )
    .await;
    match saved {
        Ok(Ok(v)) => HttpResponse::Ok().json(v),
        Ok(Err((400, field, msg))) => bad(&field, msg),
        Ok(Err((503, _, msg))) => HttpResponse::ServiceUnavailable().json(json!({"error": msg})),
        Ok(Err((_, _, msg))) => HttpResponse::InternalServerError().json(json!({"error": msg})),
        Err(e) => HttpResponse::InternalServerError().json(json!({"error": e.to_string()})),
    }
}

#[derive(Deserialize)]
struct PredictBody {
    /// 784 values 0–255, already MNIST-style (light digit on dark, centred).
    pixels: Option<Vec<f64>>,
    /// Any PNG: centred and scaled the MNIST way first.
    png_base64: Option<String>,
    run_id: Option<String>,
    checkpoint: Option<String>,
}

async fn predict(state: web::Data<AppState>, body: web::Json<PredictBody>) -> HttpResponse {
    let b = body.into_inner();
    let input: Vec<u8> = match (&b.pixels, &b.png_base64) {
        (Some(p), None) => {
            if p.len() != 784 {
                return bad(
                    "pixels",
                    format!("must be 784 values (28×28), got {}", p.len()),
                );
            }
            if p.iter().any(|v| !(0.0..=255.0).contains(v)) {
                return bad("pixels", "values must be in 0..=255");
            }
            p.iter().map(|v| v.round() as u8).collect()
        }
        (None, Some(png)) => {
            let bytes = match base64::engine::general_purpose::STANDARD
                .decode(png.trim_start_matches("data:image/png;base64,"))
            {
                Ok(b) => b,
                Err(e) => return bad("png_base64", format!("not base64: {e}")),
            };
            // Decoding is CPU work: keep it off the async workers.
            match web::block(move || png_to_mnist(&bytes)).await {
                Ok(Ok(px)) => px,
                Ok(Err(e)) => return bad("png_base64", e),
                Err(e) => {
                    return HttpResponse::InternalServerError()
                        .json(json!({"error": e.to_string()}))
                }
            }
        }
        _ => {
            return bad(
                "body",
                "give exactly one of \"pixels\" (784 values) or \"png_base64\"",
            )
        }
    };
    // Which model: the given run (or the newest run with checkpoints).
    let run_id = match b.run_id.clone() {
        Some(r) => r,
        None => match list_runs(&state.opts.runs_dir)
            .into_iter()
            .map(|(id, _)| id)
            .find(|id| state.opts.checkpoints_dir.join(id).is_dir())
        {
            Some(r) => r,
            None => {
                return HttpResponse::NotFound()
                    .json(json!({"error": "no trained checkpoint yet: train a run first"}))
            }
        },
    };
    let dir = match run_checkpoint(&state, &run_id, b.checkpoint.as_deref()) {
        Ok(d) => d,
        Err(r) => return r,
    };
    let state = state.into_inner();
    let result = web::block(move || -> Result<_, String> {
        let p = predictor(&state, &dir)?;
        let started = std::time::Instant::now();
        let p = p.lock().unwrap();
        let probs = p.probabilities(&input).remove(0);
        Ok((
            probs,
            p.checkpoint.clone(),
            started.elapsed().as_secs_f64() * 1000.0,
            input,
        ))
    })
    .await;
    match result {
        Ok(Ok((probs, checkpoint, ms, input))) => HttpResponse::Ok().json(json!({
            "run_id": run_id,
            "checkpoint": checkpoint.display().to_string(),
            "predicted": argmax(&probs),
            "probs": probs,
            "input_png_base64": mnist_train::samples::png_base64(&input),
            "ms": ms,
        })),
        Ok(Err(e)) => HttpResponse::NotFound().json(json!({"error": e})),
        Err(e) => HttpResponse::InternalServerError().json(json!({"error": e.to_string()})),
    }
}
