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
  // Its control events, in order (pause, set_lr, …: the charts' marks).
  controls: [],
  // [min, max] of the x axis the user zoomed the charts to, or null.
  zoom: null,
});


// The series table, asked once at start (again each second while the
// server cannot be reached): sets `viewed.table`.
export async function loadSeriesTable() {
  let schema;
  for (;;) {
    try {
      const res = await fetch('/api/series/schema');
      if (res.ok) { schema = await res.json(); break; }
    } catch (_) { /* the reconnect banner says what's wrong */ }
    await new Promise((ok) => setTimeout(ok, 1000));
  }
  viewed.table = seriesTable(schema);
  return viewed.table;
}
