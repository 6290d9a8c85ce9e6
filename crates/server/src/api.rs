//! The JSON HTTP API.

use crate::error::{ApiError, ApiResult};
use crate::hub::RunHub;
use crate::machine;
use crate::protocol::{
    ConfigSchema, ControlAccepted, FleetAnswer, Health, IndexHealth, ModelPreview, RunColumns,
    Status, Stopping,
};
use crate::queue::Origin;
use crate::scheduler::{Submission, SubmitError, Submitted};
use crate::AppState;
use actix_web::{web, HttpResponse};
use mnist_events::LockExt;
use mnist_train::TrainConfig;
use serde::Deserialize;
use std::sync::Arc;

/// Registers the run API: health, backends, config schema, fleet, and
/// listing, starting, stopping and reading runs (events, series, CSV).
pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/api/health", web::get().to(health))
        .route("/api/backends", web::get().to(backends))
        .route("/api/config/schema", web::get().to(config_schema))
        .route("/api/series/schema", web::get().to(series_schema))
        .route("/api/fleet", web::get().to(fleet))
        .route("/api/model", web::post().to(model_preview))
        .route("/api/runs", web::get().to(list))
        .route("/api/runs.csv", web::get().to(runs_csv))
        .route("/api/runs/columns", web::get().to(run_columns))
        .route("/api/runs", web::post().to(start))
        .route("/api/runs/{id}", web::get().to(show))
        .route("/api/runs/{id}/stop", web::post().to(stop))
        .route("/api/runs/{id}/control", web::post().to(control))
        .route("/api/runs/{id}/resume", web::post().to(resume))
        .route("/api/runs/{id}/fork", web::post().to(fork))
        .route("/api/runs/{id}/events", web::get().to(events))
        .route("/api/runs/{id}/series", web::get().to(series))
        .route("/api/runs/{id}/layers", web::get().to(layers))
        .route("/api/runs/{id}/metrics.csv", web::get().to(metrics_csv))
        .route("/api/runs/{id}/report.html", web::get().to(report))
        .route("/api/runs/{id}/model.{format}", web::get().to(model_file));
}

/// `name` with everything but letters, digits, `-`, `_` and `.` replaced,
/// for a download's file name (a run folder may be named anything).
fn file_name_safe(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "-_.".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// `GET /api/series/schema`: the series table the page builds its charts
/// from ([`crate::series::SERIES`]).
async fn series_schema() -> HttpResponse {
    HttpResponse::Ok().json(crate::series::schema())
}

/// The training configuration's fields, types, ranges and defaults
/// (`mnist_train::config::FIELDS`): the web form takes its limits from here.
async fn config_schema() -> HttpResponse {
    HttpResponse::Ok().json(ConfigSchema {
        fields: mnist_train::config::schema(),
    })
}

/// Every `--hosts` host: up/down, its last stats snapshot (GPUs, their
/// processes and users), or why it is down.
async fn fleet(state: web::Data<AppState>) -> HttpResponse {
    if let Some(f) = &state.opts.fleet_prometheus {
        return HttpResponse::Ok().json(f.snapshot());
    }
    match &state.opts.fleet {
        Some(f) => HttpResponse::Ok().json(FleetAnswer::ssh(f.snapshot())),
        None => HttpResponse::Ok().json(FleetAnswer::none()),
    }
}

async fn health(state: web::Data<AppState>) -> HttpResponse {
    let current = state.current_hub();
    let training_runs = state.training_ids();
    HttpResponse::Ok().json(Health {
        status: "ok",
        version: env!("CARGO_PKG_VERSION"),
        current_run: current.as_ref().map(|h| h.run_id.clone()),
        training: current.is_some_and(|h| !h.is_finished()) || !training_runs.is_empty(),
        training_runs,
        fleet: state.opts.fleet.is_some() || state.opts.fleet_prometheus.is_some(),
        can_start_runs: state.opts.mode.starts_runs(),
        index: IndexHealth {
            runs: state.index.len(),
            building: state.index.progress(),
        },
        logged_cache: state.logged_usage(),
    })
}

async fn backends(state: web::Data<AppState>) -> HttpResponse {
    let state = state.into_inner();
    let list = web::block(move || state.backends().to_vec())
        .await
        .unwrap_or_default();
    HttpResponse::Ok().json(list)
}

/// `GET /api/runs?q=&sort=&order=&offset=&limit=`: one page of the runs
/// that match the filter ([`crate::query`]), sorted on the server, with
/// how many match and how many there are.
async fn list(state: web::Data<AppState>, q: web::Query<ListQuery>) -> ApiResult {
    let ask = q.into_inner().parse()?;
    let state = state.into_inner();
    let page = web::block(move || runs_page(&state, &ask)).await?;
    Ok(HttpResponse::Ok().json(page))
}

/// `GET /api/runs.csv?q=&sort=&order=`: every matching run, one row each:
/// its name and tags, status, every configuration field (one column per
/// field of the config table) and its results, streamed in chunks.
async fn runs_csv(state: web::Data<AppState>, q: web::Query<ListQuery>) -> ApiResult {
    let ask = q.into_inner().parse()?;
    let state = state.into_inner();
    let (_, _, body) = web::block(move || {
        with_matches(&state, &ask, |m, _| {
            m.chunks(256)
                .map(|chunk| {
                    chunk
                        .iter()
                        .map(|r| crate::state::runs_csv_row(r))
                        .collect::<String>()
                })
                .collect::<Vec<String>>()
        })
    })
    .await?;
    let chunks: Vec<String> = std::iter::once(crate::state::runs_csv_head())
        .chain(body)
        .collect();
    let stream = futures_util::stream::iter(
        chunks
            .into_iter()
            .map(|c| Ok::<_, std::convert::Infallible>(web::Bytes::from(c))),
    );
    Ok(HttpResponse::Ok()
        .content_type("text/csv")
        .insert_header((
            "content-disposition",
            "attachment; filename=\"mnist-monitor-runs.csv\"",
        ))
        .streaming(stream))
}

/// `GET /api/runs/columns?q=&keys=lr,acc,…`: for every matching run (in
/// the list's order), the values of a few keys, column by column: what the
/// page's parallel coordinates draw for thousands of runs without their
/// whole rows.
async fn run_columns(state: web::Data<AppState>, q: web::Query<ListQuery>) -> ApiResult {
    let keys = q.keys.clone().unwrap_or_default();
    let keys: Vec<&'static str> = keys
        .split(',')
        .filter(|k| !k.is_empty())
        .map(|k| {
            crate::query::key(k).ok_or_else(|| {
                ApiError::field("keys", format!("no key `{k}` (see the filter's keys)"))
            })
        })
        .collect::<Result<_, _>>()?;
    if keys.len() > 32 {
        return Err(ApiError::field("keys", "at most 32 keys"));
    }
    let ask = q.into_inner().parse()?;
    let state = state.into_inner();
    let (_, _, answer) = web::block(move || {
        with_matches(&state, &ask, |m, _| {
            let column = |k: &str| m.iter().map(|r| crate::query::cell(r, k)).collect();
            RunColumns {
                total: m.len(),
                run_ids: m.iter().map(|r| r.run_id.clone()).collect(),
                names: m.iter().map(|r| r.meta.name.clone()).collect(),
                columns: keys.iter().map(|k| ((*k).to_string(), column(k))).collect(),
            }
        })
    })
    .await?;
    Ok(HttpResponse::Ok().json(answer))
}

#[derive(Deserialize)]
struct EpochQuery {
    epoch: Option<usize>,
}

/// `GET /api/runs/{id}/model.safetensors?epoch=N` (or `model.onnx`): the
/// run's best checkpoint (or epoch N's) in PyTorch's names and layout, or
/// as ONNX, as a download (see `mnist_train::export`).
async fn model_file(
    state: web::Data<AppState>,
    path: web::Path<(String, String)>,
    q: web::Query<EpochQuery>,
) -> ApiResult {
    use mnist_train::export::{checkpoint_dir, ExportError, Format};
    let (id, format) = path.into_inner();
    let format = match format.as_str() {
        "safetensors" => Format::Safetensors,
        "onnx" => Format::Onnx,
        other => {
            let message = format!("no model.{other}: ask for model.safetensors or model.onnx");
            return Err(ApiError::NotFound(message));
        }
    };
    let dir = checkpoint_dir(&state.opts.checkpoints_dir, &id, q.epoch).map_err(|e| match e {
        ExportError::BadRunId(_) => ApiError::no_run(&id),
        e => ApiError::NotFound(e.to_string()),
    })?;
    let (epoch, bytes) = web::block(move || {
        let p = mnist_train::infer::Predictor::load(&dir).map_err(|e| e.to_string())?;
        let bytes = format.write(&p).map_err(|e| e.to_string())?;
        Ok::<_, String>((p.state.epoch, bytes))
    })
    .await?
    .map_err(ApiError::Unavailable)?;
    Ok(HttpResponse::Ok()
        .content_type("application/octet-stream")
        .insert_header((
            "content-disposition",
            format!(
                "attachment; filename=\"{}-epoch-{epoch}.{}\"",
                file_name_safe(&id),
                format.extension()
            ),
        ))
        .body(bytes))
}

/// The runs list's query string, as sent.
#[derive(Deserialize)]
struct ListQuery {
    q: Option<String>,
    sort: Option<String>,
    order: Option<String>,
    offset: Option<String>,
    limit: Option<String>,
    keys: Option<String>,
}

/// Longest runs filter, in bytes.
const MAX_QUERY: usize = 2000;
/// Most terms in a runs filter.
const MAX_TERMS: usize = 32;

/// Most rows one page of `GET /api/runs` returns.
pub const MAX_PAGE: usize = 1000;

/// `sort=tree`: each run followed by the runs forked from it, with their
/// depth ([`crate::query::tree_rows`]).
const TREE: &str = "tree";

/// A runs list request, checked.
pub(crate) struct ListAsk {
    filter: crate::query::Filter,
    sort: &'static str,
    descending: bool,
    offset: usize,
    limit: usize,
}

impl ListQuery {
    fn parse(self) -> Result<ListAsk, ApiError> {
        let q = self.q.as_deref().unwrap_or("");
        // Checked before parsing: every term costs a look at every run.
        if q.len() > MAX_QUERY || q.split_whitespace().count() > MAX_TERMS {
            let message = format!("at most {MAX_TERMS} terms and {MAX_QUERY} characters");
            return Err(ApiError::field("q", message));
        }
        let filter =
            crate::query::Filter::parse(q).map_err(|e| ApiError::field("q", e.to_string()))?;
        let sort = match self.sort.as_deref().filter(|s| !s.is_empty()) {
            None => "started",
            Some(TREE) => TREE,
            Some(s) => crate::query::key(s).ok_or_else(|| {
                ApiError::field("sort", format!("no key `{s}`: sort by a config field, a result or id, name, status, started"))
            })?,
        };
        let descending = match self.order.as_deref() {
            None | Some("") => sort == "started" || sort == TREE,
            Some("desc") => true,
            Some("asc") => false,
            Some(o) => {
                return Err(ApiError::field(
                    "order",
                    format!("must be asc or desc (got {o})"),
                ))
            }
        };
        let int = |name: &str, v: Option<String>, default: usize, max: usize| match v {
            None => Ok(default),
            Some(v) => v
                .parse::<usize>()
                .ok()
                .filter(|n| *n <= max)
                .ok_or_else(|| {
                    ApiError::field(name, format!("must be an integer in 0..={max} (got {v})"))
                }),
        };
        Ok(ListAsk {
            filter,
            sort,
            descending,
            offset: int("offset", self.offset, 0, 1_000_000_000)?,
            limit: int("limit", self.limit, 100, MAX_PAGE)?,
        })
    }
}

/// One page of the runs list (`GET /api/runs`).
#[derive(serde::Serialize)]
pub(crate) struct RunsPage {
    /// Runs that match the filter.
    total: usize,
    /// Runs in the folder.
    all: usize,
    offset: usize,
    limit: usize,
    /// The key sorted by, and `asc` or `desc`.
    sort: &'static str,
    order: &'static str,
    /// While the index is being built from the logs: how far it got (the
    /// runs not folded yet are not listed).
    indexing: Option<crate::index::Progress>,
    /// What every run in the folder holds on disk, summed.
    disk: DiskTotal,
    runs: Vec<crate::protocol::ListedRun>,
}

/// Disk used by all runs (the runs list's footer).
#[derive(serde::Serialize, Default)]
struct DiskTotal {
    /// Logs and meta.
    run_bytes: u64,
    /// Checkpoints.
    checkpoint_bytes: u64,
}

/// The rows of the runs this server trains or follows now, folded live
/// (the index holds their state as of their last evaluation), with their
/// meta and disk use.
fn live_rows(state: &AppState) -> Vec<crate::protocol::RunSummary> {
    let mut hubs: Vec<Arc<RunHub>> = state.scheduler.training_hubs();
    hubs.extend(state.followed.locked().hubs());
    hubs.extend(
        state
            .current_hub()
            .filter(|h| h.with_state(|s| s.is_live())),
    );
    let mut seen = std::collections::HashSet::new();
    hubs.retain(|h| seen.insert(h.run_id.clone()));
    hubs.iter()
        .map(|h| {
            let mut row = h.with_state(|s| s.summary());
            let disk = state
                .index
                .row(&h.run_id)
                .map(|r| r.summary.disk)
                .unwrap_or_default();
            row.attach(
                crate::protocol::RunMeta::load(&state.opts.runs_dir, &h.run_id),
                disk,
            );
            row
        })
        .collect()
}

/// The runs matching `ask`, sorted (with each one's depth in the lineage
/// tree for `sort=tree`): the index's rows, those of live runs replaced by
/// their live state. `read` sees them under the index's lock
/// (nothing is copied but what it takes); with how many runs there are and
/// the disk they use.
fn with_matches<T>(
    state: &AppState,
    ask: &ListAsk,
    read: impl FnOnce(&[&crate::protocol::RunSummary], Option<&[usize]>) -> T,
) -> (usize, DiskTotal, T) {
    let live = live_rows(state);
    state.index.with_rows(|rows| {
        let live_ids: std::collections::HashSet<&str> =
            live.iter().map(|r| r.run_id.as_str()).collect();
        let mut refs: Vec<&crate::protocol::RunSummary> = live
            .iter()
            .chain(
                rows.values()
                    .map(|r| &r.summary)
                    .filter(|r| !live_ids.contains(r.run_id.as_str())),
            )
            .collect();
        let all = refs.len();
        let disk = refs.iter().fold(DiskTotal::default(), |d, r| DiskTotal {
            run_bytes: d.run_bytes + r.disk.run_bytes,
            checkpoint_bytes: d.checkpoint_bytes + r.disk.checkpoint_bytes,
        });
        if !ask.filter.is_empty() {
            refs.retain(|r| ask.filter.matches(r));
        }
        if ask.sort != TREE {
            crate::query::sort_rows(&mut refs, ask.sort, ask.descending, |r| r);
            return (all, disk, read(&refs, None));
        }
        let (refs, depths): (Vec<_>, Vec<_>) = crate::query::tree_rows(&refs, ask.descending)
            .into_iter()
            .unzip();
        (all, disk, read(&refs, Some(&depths)))
    })
}

/// One page of the matching runs (`GET /api/runs`).
fn runs_page(state: &AppState, ask: &ListAsk) -> RunsPage {
    let (all, disk, (total, runs)) = with_matches(state, ask, |m, depths| {
        let listed = m.iter().enumerate().skip(ask.offset).take(ask.limit);
        let runs = listed.map(|(i, r)| crate::protocol::ListedRun {
            summary: (*r).clone(),
            depth: depths.map(|d| d[i]),
        });
        (m.len(), runs.collect())
    });
    RunsPage {
        total,
        all,
        offset: ask.offset,
        limit: ask.limit.min(MAX_PAGE),
        sort: ask.sort,
        order: if ask.descending { "desc" } else { "asc" },
        indexing: state.index.progress(),
        disk,
        runs,
    }
}

/// `POST /api/model`: the model a configuration would train (the form's
/// preview), checked like `POST /api/runs`, and its activation memory.
async fn model_preview(body: web::Json<serde_json::Value>) -> ApiResult {
    let config = TrainConfig::from_json(&body).map_err(ApiError::Invalid)?;
    let train = config.limit_train.unwrap_or(60_000).min(60_000);
    let test = config.limit_test.unwrap_or(10_000).min(10_000);
    let bytes = mnist_train::memory::estimate(&config, train, test);
    Ok(HttpResponse::Ok().json(ModelPreview {
        model: config.model().summary(),
        memory_bytes: bytes,
        memory: mnist_train::memory::gib(bytes),
    }))
}

/// `GET /api/runs/{id}/report.html`: the run as one self-contained HTML
/// file (see [`crate::report`]), as a download.
async fn report(state: web::Data<AppState>, id: web::Path<String>) -> ApiResult {
    let hub = state.hub(&id).ok_or_else(|| ApiError::no_run(&id))?;
    let meta = crate::protocol::RunMeta::load(&state.opts.runs_dir, &id);
    let html = hub.with_state(|s| crate::report::html(s, &meta));
    Ok(HttpResponse::Ok()
        .content_type("text/html; charset=utf-8")
        .insert_header(("content-security-policy", crate::report::REPORT_CSP))
        .insert_header((
            "content-disposition",
            format!(
                "attachment; filename=\"{}-report.html\"",
                file_name_safe(&id)
            ),
        ))
        .body(html))
}

async fn show(state: web::Data<AppState>, id: web::Path<String>) -> ApiResult {
    let hub = state.hub(&id).ok_or_else(|| ApiError::no_run(&id))?;
    let mut details = hub.with_state(|s| s.details());
    details.meta = crate::protocol::RunMeta::load(&state.opts.runs_dir, &id);
    let checkpoints = state.opts.checkpoints_dir.join(id.as_str());
    details.checkpoint_epochs = mnist_train::checkpoint::list(&checkpoints)
        .unwrap_or_default()
        .into_iter()
        .map(|(epoch, _)| epoch)
        .collect();
    details.can_control =
        details.status.is_training() && matches!(trainer_of(&state, &id, ""), Ok((_, Some(_))));
    details.can_resume = state.opts.mode.starts_runs()
        && !details.status.is_training()
        && details.status != Status::Completed
        && !state.scheduler.is_queued(&id)
        && matches!(mnist_train::checkpoint::latest(&checkpoints), Ok(Some(_)));
    Ok(HttpResponse::Ok().json(details))
}

/// The query of `GET /api/runs/{id}/layers`.
#[derive(Deserialize)]
struct LayersQuery {
    from: Option<u64>,
    to: Option<u64>,
    points: Option<usize>,
}

/// `GET /api/runs/{id}/layers?from=STEP&to=STEP&points=N`: the run's layer
/// statistics as columns (per statistic, per layer, a value per sample,
/// at most N samples evenly thinned) and its histograms, for the page's
/// Layers panel (see [`crate::layers`]).
async fn layers(
    state: web::Data<AppState>,
    id: web::Path<String>,
    q: web::Query<LayersQuery>,
) -> ApiResult {
    let points = q.points.unwrap_or(crate::layers::MAX_SAMPLES);
    if !(2..=20_000).contains(&points) {
        let message = format!("must be in 2..=20000 (got {points})");
        return Err(ApiError::field("points", message));
    }
    let hub = state.hub(&id).ok_or_else(|| ApiError::no_run(&id))?;
    let (from, to) = (q.from.unwrap_or(0), q.to.unwrap_or(u64::MAX));
    let answer = hub.with_state(|s| s.layers().answer(from, to, points));
    Ok(HttpResponse::Ok().json(answer))
}

#[derive(Deserialize)]
struct SeriesQuery {
    from: Option<u64>,
    to: Option<u64>,
    points: Option<usize>,
    smoothing: Option<f64>,
}

/// `GET /api/runs/{id}/series?from=STEP&to=STEP&points=N&smoothing=A`: the
/// batch series between two steps at full resolution, or reduced to about N
/// points by min/max buckets (no spike is hidden), with their moving
/// average computed on every step: what the page fetches on zoom and
/// what compare overlays, without the run's whole log.
async fn series(
    state: web::Data<AppState>,
    id: web::Path<String>,
    q: web::Query<SeriesQuery>,
) -> ApiResult {
    let points = q.points.unwrap_or(crate::series::MAX_POINTS);
    if !(2..=20_000).contains(&points) {
        let message = format!("must be in 2..=20000 (got {points})");
        return Err(ApiError::field("points", message));
    }
    let (from, to) = (q.from.unwrap_or(0), q.to.unwrap_or(u64::MAX));
    let smoothing = q.smoothing.unwrap_or(crate::series::DEFAULT_SMOOTHING);
    if !(0.0..=0.999).contains(&smoothing) {
        let message = format!("must be in 0..=0.999 (got {smoothing})");
        return Err(ApiError::field("smoothing", message));
    }
    let whole = (from, to) == (0, u64::MAX);
    if whole
        && points == crate::index::INDEX_POINTS
        && smoothing == crate::series::DEFAULT_SMOOTHING
    {
        if let Some(bytes) = indexed_series(&state, &id) {
            return Ok(HttpResponse::Ok()
                .content_type("application/json")
                .body(bytes));
        }
    }
    let hub = state.hub(&id).ok_or_else(|| ApiError::no_run(&id))?;
    Ok(HttpResponse::Ok().json(hub.with_state(|s| s.series(from, to, points, smoothing))))
}

/// The run's series as the index keeps them (what compare overlays), when
/// the run is not live and its log is the one they were folded from: no
/// log is read.
fn indexed_series(state: &AppState, id: &str) -> Option<Vec<u8>> {
    let live = state.training_ids().iter().any(|t| t == id)
        || state.is_followed(id)
        || state
            .current_hub()
            .is_some_and(|h| h.run_id == id && !h.is_finished());
    if live || !crate::valid_run_id(id) {
        return None;
    }
    let folders = state.index.folders();
    let row = state.index.row(id)?;
    (folders.stamp(id)? == row.stamp).then(|| crate::index::read_series(folders, id))?
}

#[derive(Deserialize)]
struct Since {
    #[serde(default)]
    since: u64,
}

async fn events(
    state: web::Data<AppState>,
    id: web::Path<String>,
    q: web::Query<Since>,
) -> ApiResult {
    let hub = state.hub(&id).ok_or_else(|| ApiError::no_run(&id))?;
    let mut body = String::new();
    for e in hub.events_since(q.since) {
        body += &serde_json::to_string(&*e).expect("event serialises");
        body.push('\n');
    }
    Ok(HttpResponse::Ok()
        .content_type("application/x-ndjson")
        .body(body))
}

async fn metrics_csv(state: web::Data<AppState>, id: web::Path<String>) -> ApiResult {
    let hub = state.hub(&id).ok_or_else(|| ApiError::no_run(&id))?;
    Ok(HttpResponse::Ok()
        .content_type("text/csv")
        .insert_header((
            "content-disposition",
            format!(
                "attachment; filename=\"{}-metrics.csv\"",
                file_name_safe(&id)
            ),
        ))
        .body(hub.with_state(|s| s.csv())))
}

async fn stop(state: web::Data<AppState>, id: web::Path<String>) -> ApiResult {
    // A Slurm task's run stops the Slurm way: scancel (SIGTERM, then the
    // run ends as stopped after its batch), while the task may still run.
    let task = state.slurm.locked().task_of(&id);
    if let Some((job, task, slurm_state)) = task {
        let run_over = state.hub(&id).is_some_and(|h| h.is_finished());
        let task_over = match slurm_state.as_deref() {
            Some(s) => mnist_slurm::is_final(s),
            // Slurm forgot it: it ended long ago, unless its run still writes.
            None => !state.is_followed(&id) || run_over,
        };
        if run_over || task_over {
            return Err(ApiError::conflict(format!(
                "run {id} (Slurm task {}_{task}) is already over",
                job.job_id
            )));
        }
        crate::slurm::scancel(&state, &job, Some(task)).await?;
        return Ok(HttpResponse::Accepted().json(Stopping {
            run_id: id.into_inner(),
            stopping: true,
            slurm: Some(format!("{}_{task}", job.job_id)),
        }));
    }
    let (stop, _) = trainer_of(
        &state,
        &id,
        "stop it there (Ctrl-C, or kill -TERM its process)",
    )?;
    stop.request(mnist_events::StopReason::User);
    Ok(HttpResponse::Accepted().json(Stopping {
        run_id: id.into_inner(),
        stopping: true,
        slurm: None,
    }))
}

/// The stop and control handles of run `id`'s trainer in this server; a
/// 409 for a run that is over or that another process trains (`there`
/// says how to reach that one), a 404 for no such run.
fn trainer_of(
    state: &AppState,
    id: &str,
    there: &str,
) -> Result<(mnist_events::Stop, Option<mnist_events::Controls>), ApiError> {
    if state.is_followed(id) {
        return Err(ApiError::conflict(format!(
            "run {id} is trained by another process (followed in the runs folder): {there}"
        )));
    }
    let found = state
        .scheduler
        .trainer(id)
        .map(|t| (t.finished, t.stop, t.controls));
    match found {
        Some((false, stop, controls)) => Ok((stop, controls)),
        Some((true, _, _)) => Err(ApiError::conflict(format!("run {id} has already finished"))),
        None if state.hub(id).is_some() => Err(ApiError::conflict(format!(
            "run {id} is not training in this server"
        ))),
        None => Err(ApiError::no_run(id)),
    }
}

/// `POST /api/runs/{id}/control` with `{"action": "pause"|"resume"|
/// "set_lr"|"eval"|"checkpoint"|"stop_after_epoch", …}`: 202 once the
/// trainer has it (applied at its next batch boundary, recorded as a
/// `control` event); 400 naming the field for a bad value, 409 for a run
/// that does not train here.
async fn control(
    state: web::Data<AppState>,
    id: web::Path<String>,
    body: web::Json<serde_json::Value>,
) -> ApiResult {
    let (action, source) = mnist_train::control::parse(&body).map_err(ApiError::Invalid)?;
    let there = "control it through that process's own --serve port";
    let controls = match trainer_of(&state, &id, there)? {
        (_, Some(controls)) => controls,
        (_, None) => {
            return Err(ApiError::conflict(format!(
                "run {id} is not trained by this server: {there}"
            )))
        }
    };
    let name = action.name();
    controls.send(action, source);
    Ok(HttpResponse::Accepted().json(ControlAccepted {
        run_id: id.into_inner(),
        action: name.into(),
        applied: "at the next batch boundary".into(),
    }))
}

/// `POST /api/runs`: 201 with the run's id when it starts now; 202 with
/// its id and queue position while another run trains (see [`crate::queue`]).
async fn start(state: web::Data<AppState>, body: web::Json<serde_json::Value>) -> ApiResult {
    may_start_runs(&state)?;
    let config = TrainConfig::from_json(&body).map_err(ApiError::Invalid)?;
    let state = state.into_inner();
    prepared(&state, &config).await?;
    submit(&state, Submission::new(config))
}

/// A 403 on a server that only watches (`train --serve`, `exporter`).
fn may_start_runs(state: &AppState) -> Result<(), ApiError> {
    match state.opts.mode.starts_runs() {
        true => Ok(()),
        false => Err(ApiError::Forbidden(
            "this server only watches a run started from the command line".into(),
        )),
    }
}

/// The backend and data checks of [`machine::prepare`], off the async
/// threads (driver probes, reading 50 MB).
pub(crate) async fn prepared(state: &Arc<AppState>, config: &TrainConfig) -> Result<(), ApiError> {
    let state = state.clone();
    let config = config.clone();
    web::block(move || machine::prepare(&state, &config))
        .await?
        .map_err(|e| match e {
            machine::PrepareError::Field(e) => ApiError::Invalid(vec![e]),
            machine::PrepareError::Data(why) => ApiError::Unavailable(why),
        })
}

/// Puts a run on the scheduler's queue.
pub(crate) fn enqueue(
    state: &Arc<AppState>,
    submission: Submission,
) -> Result<(String, Submitted), ApiError> {
    let machine = machine::ServerMachine(state.clone());
    state
        .scheduler
        .submit(&machine, submission)
        .map_err(|e| match e {
            SubmitError::Busy(_) => ApiError::conflict(e.to_string()),
            SubmitError::Write(e) => ApiError::Internal(e.to_string()),
        })
}

/// The answer to a run put on the queue.
#[derive(serde::Serialize)]
struct RunQueued {
    run_id: String,
    /// Whether it waits for a device (202) rather than training now (201).
    queued: bool,
    /// Its place in the queue (1 is next), while it waits.
    #[serde(skip_serializing_if = "Option::is_none")]
    position: Option<usize>,
}

/// 201 when the run started at once, 202 with its place in the queue
/// while it waits for a device.
fn submit(state: &Arc<AppState>, submission: Submission) -> ApiResult {
    let (run_id, submitted) = enqueue(state, submission)?;
    Ok(match submitted {
        Submitted::Started => HttpResponse::Created().json(RunQueued {
            run_id,
            queued: false,
            position: None,
        }),
        Submitted::Queued(position) => HttpResponse::Accepted().json(RunQueued {
            run_id,
            queued: true,
            position: Some(position),
        }),
    })
}

/// `POST /api/runs/{id}/resume`: an interrupted, stopped or failed run
/// continues from its newest checkpoint (its log and step count go on, as
/// `train --resume` does), queued on a free device like any run.
async fn resume(state: web::Data<AppState>, id: web::Path<String>) -> ApiResult {
    may_start_runs(&state)?;
    let state = state.into_inner();
    let hub = state.hub(&id).ok_or_else(|| ApiError::no_run(&id))?;
    let status = hub.with_state(|s| s.status());
    if status.is_training() || status == crate::protocol::Status::Completed {
        return Err(ApiError::conflict(format!(
            "run {id} is {}: only an interrupted, stopped or failed run resumes",
            status.as_str()
        )));
    }
    let dir = state.opts.checkpoints_dir.join(id.as_str());
    let config = match mnist_train::checkpoint::latest(&dir) {
        Ok(Some((_, checkpoint))) => checkpoint.config,
        _ => {
            return Err(ApiError::conflict(format!(
                "run {id} has no checkpoint to resume from (one is written after each epoch)"
            )))
        }
    };
    prepared(&state, &config).await?;
    submit(
        &state,
        Submission {
            origin: Origin::Resume,
            run_id: Some(id.to_string()),
            ..Submission::new(config)
        },
    )
}

/// The body of `POST /api/runs/{id}/fork`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ForkAsk {
    /// The parent's epoch whose checkpoint the child starts from.
    epoch: usize,
    /// The fields the child changes (the parent's configuration otherwise).
    #[serde(default)]
    config: serde_json::Map<String, serde_json::Value>,
    /// `keep` (the default) or `reset` the optimiser's state.
    #[serde(default)]
    optimizer_state: Option<String>,
}

/// `POST /api/runs/{id}/fork` with `{"epoch": N, "config": {changed
/// fields}, "optimizer_state": "keep"|"reset"}`: a new run (201 or 202 with
/// its id) that starts from the parent's checkpoint of epoch N, its steps
/// continuing the parent's, its `run_started` naming the parent.
async fn fork(
    state: web::Data<AppState>,
    id: web::Path<String>,
    body: web::Json<serde_json::Value>,
) -> ApiResult {
    may_start_runs(&state)?;
    let ask: ForkAsk = serde_json::from_value(body.into_inner())
        .map_err(|e| ApiError::field("body", format!("not a fork request: {e}")))?;
    let keep_optimizer = match ask.optimizer_state.as_deref() {
        None | Some("keep") => true,
        Some("reset") => false,
        Some(other) => {
            let message = format!("must be \"keep\" or \"reset\" (got {other:?})");
            return Err(ApiError::field("optimizer_state", message));
        }
    };
    let state = state.into_inner();
    if state.hub(&id).is_none() {
        return Err(ApiError::no_run(&id));
    }
    let from = mnist_train::ForkFrom {
        run_id: id.to_string(),
        epoch: ask.epoch,
        keep_optimizer,
    };
    let checkpoints = &state.opts.checkpoints_dir;
    let invalid = |e: mnist_train::RunError| match e {
        mnist_train::RunError::Config(errors) => ApiError::Invalid(errors),
        e => ApiError::field("epoch", e.to_string()),
    };
    let (_, parent) = mnist_train::fork_source(&from, checkpoints).map_err(invalid)?;
    let mut config = serde_json::to_value(parent.config).expect("config serialises");
    if let Some(fields) = config.as_object_mut() {
        fields.extend(ask.config);
    }
    let config = TrainConfig::from_json(&config).map_err(ApiError::Invalid)?;
    mnist_train::fork_point(&from, &config, checkpoints).map_err(invalid)?;
    prepared(&state, &config).await?;
    submit(
        &state,
        Submission {
            origin: Origin::Fork(from),
            ..Submission::new(config)
        },
    )
}
