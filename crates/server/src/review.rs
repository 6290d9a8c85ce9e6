//! Reviewing labels and trying the model: the review queue
//! (`GET /api/runs/{id}/review`), label decisions (`/api/overrides`) and
//! predictions for a drawn or uploaded digit (`POST /api/predict`).
//!
//! Models and rankings are cached per checkpoint: ranking the 10,000 test
//! digits takes seconds on a CPU, paging and filtering afterwards is free.

use crate::error::{ApiError, ApiResult};
use crate::history::list_runs;
use crate::protocol::{OverrideSaved, OverridesAnswer, Prediction, ReviewPage, ReviewSample};
use crate::AppState;
use actix_web::{web, HttpResponse};
use base64::Engine;
use mnist_data::overrides::{self, Decision, LabelOverrides, Override};
use mnist_events::LockExt;
use mnist_train::infer::{argmax, png_to_mnist, rank, Predictor, Ranked};
use serde::Deserialize;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

/// A ranking's checkpoint directory and split.
type RankingKey = (PathBuf, String);

/// Loaded models and finished rankings.
#[derive(Default)]
pub struct ReviewCache {
    predictors: Mutex<HashMap<PathBuf, Arc<Mutex<Predictor>>>>,
    rankings: Mutex<HashMap<RankingKey, Arc<Vec<Ranked>>>>,
}

/// Registers the review queue, label override and prediction routes.
pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/api/runs/{id}/review", web::get().to(review))
        .route("/api/overrides", web::get().to(get_overrides))
        .route("/api/overrides", web::post().to(set_override))
        .route("/api/predict", web::post().to(predict));
}

fn bad(field: &str, message: impl Into<String>) -> ApiError {
    ApiError::field(field, message)
}

pub(crate) fn predictor(
    state: &AppState,
    checkpoint: &std::path::Path,
) -> Result<Arc<Mutex<Predictor>>, mnist_train::infer::LoadError> {
    let dir = mnist_train::infer::resolve_checkpoint(checkpoint)?;
    let mut cache = state.review.predictors.locked();
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
) -> Result<PathBuf, ApiError> {
    // Epoch directory names follow the same rule as run ids: no path tricks.
    let valid = crate::valid_run_id;
    if !valid(run_id) {
        return Err(ApiError::no_run(run_id));
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

type Ranking = (Arc<mnist_data::Mnist>, PathBuf, Arc<Vec<Ranked>>);

/// The split ranked by the checkpoint in `dir` (computed once per
/// checkpoint and split, then cached); blocking: call from `web::block`.
fn ranking(state: &AppState, dir: &std::path::Path, split: &str) -> Result<Ranking, ApiError> {
    let data = crate::machine::load_data(state).map_err(ApiError::Unavailable)?;
    let predictor = predictor(state, dir).map_err(|e| ApiError::NotFound(e.to_string()))?;
    let checkpoint = predictor.locked().checkpoint.clone();
    let key = (checkpoint.clone(), split.to_string());
    if let Some(r) = state.review.rankings.locked().get(&key).cloned() {
        return Ok((data, checkpoint, r));
    }
    let (pixels, labels) = match split {
        "train" => (&data.train_images, &data.train_labels),
        _ => (&data.test_images, &data.test_labels),
    };
    let ranked = Arc::new(rank(&predictor.locked(), pixels, labels, 0));
    state.review.rankings.locked().insert(key, ranked.clone());
    Ok((data, checkpoint, ranked))
}

async fn review(
    state: web::Data<AppState>,
    id: web::Path<String>,
    q: web::Query<ReviewQuery>,
) -> ApiResult {
    let split = q.split.clone().unwrap_or_else(|| "test".into());
    if split != "test" && split != "train" {
        return Err(bad(
            "split",
            format!("must be \"test\" or \"train\" (got {split:?})"),
        ));
    }
    let limit = q.limit.unwrap_or(100);
    if !(1..=1000).contains(&limit) {
        return Err(bad("limit", format!("must be in 1..=1000 (got {limit})")));
    }
    for (field, v) in [("label", q.label), ("predicted", q.predicted)] {
        if v.is_some_and(|v| v > 9) {
            return Err(bad(field, "must be a digit 0..=9"));
        }
    }
    let dir = run_checkpoint(&state, &id, q.checkpoint.as_deref())?;
    let state = state.into_inner();
    let (worker, split2) = (state.clone(), split.clone());
    let (data, checkpoint, ranked) = web::block(move || ranking(&worker, &dir, &split2)).await??;
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
            ReviewSample {
                split: &split,
                index: r.index,
                png_base64: mnist_train::samples::png_base64(px),
                label: r.label,
                predicted: r.predicted,
                probs: r.probs,
                loss: r.loss,
                margin: r.margin,
                decision: decisions.entries.get(&overrides::key(&split, r.index)),
            }
        })
        .collect();
    let reviewed = decisions
        .entries
        .keys()
        .filter(|k| k.starts_with(&format!("{split}:")))
        .count();
    Ok(HttpResponse::Ok().json(ReviewPage {
        run_id: id.into_inner(),
        checkpoint: checkpoint.display().to_string(),
        split: &split,
        total: filtered.len(),
        reviewed,
        samples,
    }))
}

async fn get_overrides(state: web::Data<AppState>) -> ApiResult {
    let path = overrides::path_in(&state.opts.data_dir);
    let o = LabelOverrides::load(&path).map_err(|e| ApiError::Internal(e.to_string()))?;
    Ok(HttpResponse::Ok().json(OverridesAnswer {
        path: path.display().to_string(),
        entries: o.entries,
    }))
}

#[derive(Deserialize)]
struct OverrideBody {
    split: String,
    index: usize,
    decision: Decision,
    label: Option<u8>,
    by: Option<String>,
}

async fn set_override(state: web::Data<AppState>, body: web::Json<OverrideBody>) -> ApiResult {
    let b = body.into_inner();
    if b.split != "train" && b.split != "test" {
        return Err(bad("split", "must be \"train\" or \"test\""));
    }
    match (b.decision, b.label) {
        (Decision::Relabel, None) => return Err(bad("label", "a relabel needs a label 0..=9")),
        (_, Some(l)) if l > 9 => {
            return Err(bad("label", format!("must be a digit 0..=9 (got {l})")))
        }
        _ => {}
    }
    let state = state.into_inner();
    let saved = web::block(move || -> Result<OverrideSaved, ApiError> {
        let data = crate::machine::load_data(&state).map_err(ApiError::Unavailable)?;
        let labels = if b.split == "train" {
            &data.train_labels
        } else {
            &data.test_labels
        };
        let Some(&original) = labels.get(b.index) else {
            let message = format!("must be below {} for {}", labels.len(), b.split);
            return Err(bad("index", message));
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
        .map_err(|e| ApiError::Internal(e.to_string()))?;
        Ok(OverrideSaved {
            key,
            entry,
            reviewed,
        })
    })
    .await??;
    Ok(HttpResponse::Ok().json(saved))
}

#[derive(Deserialize)]
struct PredictBody {
    #[serde(flatten)]
    digit: Digit,
    run_id: Option<String>,
    checkpoint: Option<String>,
}

/// A digit a request gives: its pixels, or a picture.
#[derive(Deserialize)]
pub(crate) struct Digit {
    /// 784 values 0–255, already MNIST-style (light digit on dark, centred).
    pixels: Option<Vec<f64>>,
    /// Any PNG: centred and scaled the MNIST way first.
    png_base64: Option<String>,
}

/// The 784 MNIST-style pixels a request gives, from either form.
pub(crate) async fn predict_input(b: &Digit) -> Result<Vec<u8>, ApiError> {
    match (&b.pixels, &b.png_base64) {
        (Some(p), None) => {
            if p.len() != 784 {
                let message = format!("must be 784 values (28×28), got {}", p.len());
                return Err(bad("pixels", message));
            }
            if p.iter().any(|v| !(0.0..=255.0).contains(v)) {
                return Err(bad("pixels", "values must be in 0..=255"));
            }
            Ok(p.iter().map(|v| v.round() as u8).collect())
        }
        (None, Some(png)) => {
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(png.trim_start_matches("data:image/png;base64,"))
                .map_err(|e| bad("png_base64", format!("not base64: {e}")))?;
            // Decoding is CPU work: keep it off the async workers.
            web::block(move || png_to_mnist(&bytes))
                .await?
                .map_err(|e| bad("png_base64", e.to_string()))
        }
        _ => Err(bad(
            "body",
            "give exactly one of \"pixels\" (784 values) or \"png_base64\"",
        )),
    }
}

async fn predict(state: web::Data<AppState>, body: web::Json<PredictBody>) -> ApiResult {
    let b = body.into_inner();
    let input = predict_input(&b.digit).await?;
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
                return Err(ApiError::NotFound(
                    "no trained checkpoint yet: train a run first".into(),
                ))
            }
        },
    };
    let dir = run_checkpoint(&state, &run_id, b.checkpoint.as_deref())?;
    let state = state.into_inner();
    let (probs, checkpoint, ms, input) = web::block(move || -> Result<_, ApiError> {
        let p = predictor(&state, &dir).map_err(|e| ApiError::NotFound(e.to_string()))?;
        let started = std::time::Instant::now();
        let p = p.locked();
        let probs = p.probabilities(&input).remove(0);
        Ok((
            probs,
            p.checkpoint.clone(),
            started.elapsed().as_secs_f64() * 1000.0,
            input,
        ))
    })
    .await??;
    Ok(HttpResponse::Ok().json(Prediction {
        run_id,
        checkpoint: checkpoint.display().to_string(),
        predicted: argmax(&probs),
        probs,
        input_png_base64: mnist_train::samples::png_base64(&input),
        ms,
    }))
}
