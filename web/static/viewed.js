// What the page's modules share: the run on the page, its series, its
// evaluations and the zoom. Every field is declared here (the object is
// sealed); each module keeps the rest of its state to itself. DOM-free.

import { seriesTable } from './series.js';

export const viewed = Object.seal({
  // The series table (series.js seriesTable) from GET /api/series/schema:
  // which series a run has, which are smoothed and charted, their titles.
  table: null,
  // The run on the page: its id (null before any run).
  runId: null,
  // Its batch series (series.js): the snapshot's, then live batches.
  series: null,
  // Its eval events, in order (the charts' val/test points, Status).
  evals: [],
  // [min, max] of the x axis the user zoomed the charts to, or null.
  zoom: null,
});

// TEMPORARY FALLBACK, to be removed once every server answers GET
// /api/series/schema: the table as crates/server/src/state.rs had it
// (SERIES, SMOOTHED, MAX_POINTS, DEFAULT_SMOOTHING) when this was written.
export const FALLBACK_SCHEMA = {
  series: [
    { key: 'loss', title: 'Loss', smoothed: true, chart: true },
    { key: 'accuracy', title: 'Accuracy', smoothed: true, chart: true },
    { key: 'f1_macro', title: 'Macro F1', smoothed: true, chart: true },
    { key: 'lr', title: 'Learning rate', smoothed: true, chart: true },
    { key: 'images_per_sec', title: 'Images/s', smoothed: true, chart: true },
    { key: 'epoch', title: 'Epoch', smoothed: false, chart: false },
    { key: 'ts_ms', title: 'Time', smoothed: false, chart: false },
  ],
  max_points: 2000,
  default_smoothing: 0.8,
};

// The series table, asked once at start (again each second while the
// server cannot be reached): sets `viewed.table`.
export async function loadSeriesTable() {
  let schema;
  for (;;) {
    try {
      const res = await fetch('/api/series/schema');
      if (res.ok) { schema = await res.json(); break; }
      // TEMPORARY FALLBACK (see FALLBACK_SCHEMA): a server without the
      // endpoint (404). Until then any answer but a server error falls back.
      if (res.status < 500) { schema = FALLBACK_SCHEMA; break; }
    } catch (_) { /* the reconnect banner says what's wrong */ }
    await new Promise((ok) => setTimeout(ok, 1000));
  }
  viewed.table = seriesTable(schema);
  return viewed.table;
}
