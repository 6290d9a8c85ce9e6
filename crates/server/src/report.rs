//! One run as one self-contained HTML file: `GET /api/runs/{id}/report.html`
//! and `mnist-monitor report RUN_ID -o FILE`.
//!
//! Everything the report shows travels inside the file: uPlot and its
//! styles, the report's script, the run's data as JSON and the sample
//! digits as `data:` PNGs, so it opens from disk with the network off (a
//! mail attachment, a lab wiki, long after the server is gone). The data
//! are the run's folded state ([`RunState`]): the curves at the snapshot's
//! resolution with their moving average, every evaluation, the latest
//! samples, the configuration, the model and the provenance.

use crate::protocol::{ReportData, RunMeta};
use crate::series::{DEFAULT_SMOOTHING, MAX_POINTS};
use crate::state::RunState;
use mnist_events::EventKind;

const TEMPLATE: &str = include_str!("../../../web/report/report.html");
const SCRIPT: &str = include_str!("../../../web/report/report.js");
const STYLE: &str = include_str!("../../../web/report/report.css");
const UPLOT_JS: &str = include_str!("../../../web/static/vendor/uPlot.iife.min.js");
const UPLOT_CSS: &str = include_str!("../../../web/static/vendor/uPlot.min.css");
const UTIL_JS: &str = include_str!("../../../web/static/util.js");

/// The `Content-Security-Policy` the served report carries: its inline
/// script and styles run, nothing is fetched, and `sandbox` gives it an
/// origin of its own, so it can never call the server's API.
pub const REPORT_CSP: &str = "default-src 'none'; script-src 'unsafe-inline'; \
    style-src 'unsafe-inline'; img-src data:; base-uri 'none'; form-action 'none'; \
    frame-ancestors 'none'; sandbox allow-scripts";

/// What the report shows of `state`.
pub fn data<'a>(state: &'a RunState, meta: &'a RunMeta) -> ReportData<'a> {
    let last = |is: fn(&EventKind) -> bool| state.events().filter(|e| is(&e.kind)).last();
    ReportData {
        run_id: state.run_id(),
        meta,
        summary: state.summary(),
        started: last(|k| matches!(k, EventKind::RunStarted(_))),
        finished: last(|k| matches!(k, EventKind::RunFinished(_))),
        evals: state
            .events()
            .filter(|e| matches!(e.kind, EventKind::Eval(_)))
            .collect(),
        samples: last(|k| matches!(k, EventKind::Samples(_))),
        alerts: state.alert_counts(),
        series: state.series(0, u64::MAX, MAX_POINTS, DEFAULT_SMOOTHING),
        hardware: state.hardware(MAX_POINTS),
        generated_ms: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64),
        generator: format!("mnist-monitor {}", env!("CARGO_PKG_VERSION")),
    }
}

/// Why `mnist-monitor report` could not write a report.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    /// No `events.jsonl` for the run in the runs folder.
    #[error("no run {run_id} in {runs_dir} (no {runs_dir}/{run_id}/events.jsonl); `ls {runs_dir}` lists the runs")]
    NoRun {
        /// The run asked for.
        run_id: String,
        /// Where it was looked for.
        runs_dir: String,
    },
    /// The log exists but could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The log.
        path: String,
        /// Why.
        source: std::io::Error,
    },
}

/// The report of the run logged in `runs_dir/run_id`, from its log and
/// `meta.json` (what the server would serve, without a server).
pub fn from_runs_dir(runs_dir: &std::path::Path, run_id: &str) -> Result<String, ReportError> {
    let path = mnist_events::log_path(runs_dir, run_id);
    if !crate::valid_run_id(run_id) || !path.is_file() {
        return Err(ReportError::NoRun {
            run_id: run_id.into(),
            runs_dir: runs_dir.display().to_string(),
        });
    }
    let events = mnist_events::read_events(&path).map_err(|source| ReportError::Read {
        path: path.display().to_string(),
        source,
    })?;
    let hub = crate::hub::RunHub::from_log(run_id, events);
    let meta = RunMeta::load(runs_dir, run_id);
    Ok(hub.with_state(|s| html(s, &meta)))
}

/// The report of `state` as one HTML document.
pub fn html(state: &RunState, meta: &RunMeta) -> String {
    let data = data(state, meta);
    let title = meta
        .name
        .clone()
        .unwrap_or_else(|| state.run_id().to_string());
    // `<` never appears raw inside the inline scripts (a run name could
    // hold `</script>`): JSON and the text are escaped.
    let json = serde_json::to_string(&data)
        .expect("report data serialises")
        .replace('<', "\\u003c");
    let util = UTIL_JS.replace("export const", "const");
    TEMPLATE
        .replace("{{TITLE}}", &escape_html(&title))
        .replace("{{UPLOT_CSS}}", UPLOT_CSS)
        .replace("{{STYLE}}", STYLE)
        .replace("{{UPLOT_JS}}", UPLOT_JS)
        .replace("{{SCRIPT}}", &format!("{util}\n{SCRIPT}"))
        .replace("{{DATA}}", &json)
}

fn escape_html(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::sync::Arc;

    #[test]
    fn the_report_is_one_file_that_fetches_nothing_and_escapes_names() {
        let mut state = RunState::new("r1", false);
        let started: mnist_events::Event = serde_json::from_value(json!({
            "seq": 1, "ts_ms": 1, "run_id": "r1", "type": "run_started",
            "config": {"kernels": [4, 4, 4, 4]}, "backend": "cpu", "device": "cpu",
            "model": {"input_shape": [1, 28, 28], "layers": [], "total_params": 1},
            "train_size": 1, "val_size": 0, "test_size": 1, "batches_per_epoch": 1,
        }))
        .unwrap();
        state.fold(&Arc::new(started));
        let meta = RunMeta {
            name: Some("</script><script>alert(1)</script>".into()),
            ..Default::default()
        };
        let html = html(&state, &meta);
        assert_eq!(
            html.matches("</script>").count(),
            html.matches("<script").count()
        );
        for remote in ["src=\"http", "href=\"http", "src=\"/", "href=\"/", "fetch("] {
            assert!(!html.contains(remote), "the report refers to {remote}");
        }
        assert!(html.contains("uPlot"), "uPlot is inside");
        assert!(
            html.contains("\\u003c/script>"),
            "the name is escaped in the data"
        );
    }
}
