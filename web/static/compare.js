// Compared runs: their moving averages overlaid on the charts (the viewed
// run is blue), the panel of what differs between them and their results,
// the parallel coordinates; and a sweep's runs, overlaid as they start.

import { $, esc, fmt, pct } from './util.js';
import { viewed } from './viewed.js';
import { emptySeries } from './series.js';
import { scheduleDraw, fetchSeries, smoothing } from './charts.js';
import { needRun } from './manage.js';
import { drawCompared, drawShown } from './parallel.js';
import { runs, renderRuns, setFilter, firstRuns, shownQuery, queryParams } from './runs.js';
import { log } from './stream.js';

// runId -> {runId, color, series, until, auto}: the runs overlaid, in the
// order ticked; `until`: the last step shown (a fork's parent, up to the
// fork), `auto`: overlaid by the page (a fork's parent), not the user.
export const compare = new Map();

// The sweep the page opened on (`?sweep=ID`): its runs are overlaid while
// the runs filter still shows it.
let sweepFocus = null;

// Distinct colours for compared runs (the viewed run is blue).
const PALETTE = ['#c678dd', '#e5c07b', '#56b6c2', '#e06c75', '#98c379', '#d19a66', '#61afef', '#ff79c6', '#8be9fd', '#f1fa8c',
  '#bd93f9', '#ffb86c', '#50fa7b', '#ff5555', '#a9dc76', '#fc9867', '#78dce8', '#ab9df2', '#ffd866', '#7f9f7f'];
// Compared runs carry the server's series (min/max buckets of 600 points,
// from the index for finished runs), never the runs' whole logs.
const COMPARE_POINTS = 600;

const num = (v, d = 4) => (v == null ? '–' : fmt(v, d));

// The overlaid runs, as a key: the charts are remade when it changes.
export const compareKey = () => [...compare.keys()].join('\n');

export function runLabel(runId) {
  const r = runs.known.get(runId);
  return r && r.name ? r.name : runId;
}

function nextColor() {
  const used = new Set([...compare.values()].map((c) => c.color));
  return PALETTE.find((c) => !used.has(c)) || PALETTE[compare.size % PALETTE.length];
}

// The server's series of an overlaid run (up to its `until`).
const overlaySeries = (c) => fetchSeries(c.runId, { points: COMPARE_POINTS, ...(c.until != null ? { to: c.until } : {}) });

export async function addCompare(runId, { until = null, auto = false } = {}) {
  if (compare.has(runId)) return;
  const entry = { runId, color: nextColor(), series: emptySeries(viewed.table, smoothing()), until, auto };
  compare.set(runId, entry);
  needRun(runId);
  try { entry.series = await overlaySeries(entry); } catch (err) { log('warn', err.message); }
  afterCompareChange();
}

export function removeCompare(runId) {
  compare.delete(runId);
  afterCompareChange();
}

// Every overlay again (another smoothing).
export async function refetchCompare() {
  await Promise.all([...compare.values()].map(async (c) => {
    try { c.series = await overlaySeries(c); } catch (_) { /* keeps the old curve */ }
  }));
  scheduleDraw();
}

function afterCompareChange() {
  $('#compare-label').textContent = compare.size ? `${compare.size} run${compare.size > 1 ? 's' : ''} overlaid` : '';
  renderRuns();
  renderComparePanel();
  scheduleDraw();
}

// The compared runs (and the viewed one): their colours, the configuration
// fields that differ between them, their results, and the parallel
// coordinates of hyperparameters against test accuracy (every run the
// filter matches when fewer than two are compared).
export function renderComparePanel() {
  const picked = [...compare.values()].map((c) => ({ run: runs.known.get(c.runId), color: c.color })).filter((x) => x.run);
  const viewedRun = runs.known.get(viewed.runId);
  if (viewedRun && !compare.has(viewed.runId)) picked.unshift({ run: viewedRun, color: '#4aa3ff' });
  $('#compare-card').hidden = !runs.all;
  const keys = [...new Set(picked.flatMap((p) => Object.keys(p.run.config || {})))].sort();
  const differ = keys.filter((k) => new Set(picked.map((p) => JSON.stringify(p.run.config?.[k] ?? null))).size > 1);
  const show = (v) => (v == null ? '–' : Array.isArray(v) ? v.join(',') : String(v));
  $('#diff-table').innerHTML = picked.length < 2
    ? '<tr><td class="muted">Tick two or more runs to see what differs between them.</td></tr>'
    : `<tr><th>run</th>${differ.map((k) => `<th>${esc(k)}</th>`).join('')}<th>steps</th><th>loss</th><th>test acc</th></tr>` +
      picked.map(({ run, color }) => `<tr data-diff="${esc(run.run_id)}"><td><span class="swatch" style="background:${esc(color)}"></span> ${esc(run.name || run.run_id)}</td>` +
        differ.map((k) => `<td>${esc(show(run.config?.[k]))}</td>`).join('') +
        `<td>${esc(run.steps)}</td><td>${num(run.last_loss)}</td><td>${pct(run.test_accuracy)}</td></tr>`).join('') +
      (differ.length ? '' : `<tr><td class="muted" colspan="4">same configuration</td></tr>`);
  if (picked.length >= 2) drawCompared(picked);
  else if (runs.all) drawShown(queryParams());
}

// ---------- sweeps ----------
// Shows a sweep: the runs filter on its id (`sweep:ID`) and every run of it
// overlaid, those that start later too.
export function focusSweep(id) {
  sweepFocus = id;
  history.replaceState(null, '', `?sweep=${encodeURIComponent(id)}`);
  setFilter(`sweep:${id}`);
}

// While the filter still shows the focused sweep, its first runs overlaid.
export async function overlaySweep() {
  if (!sweepFocus || shownQuery() !== `sweep:${sweepFocus}`) return;
  for (const r of await firstRuns(PALETTE.length)) if (!compare.has(r.run_id) && compare.size < PALETTE.length) addCompare(r.run_id);
}

// The panel's buttons; a page opened on a sweep (`?sweep=ID`) shows it.
export function initCompare() {
  $('#compare-shown').addEventListener('click', async () => {
    for (const r of await firstRuns(PALETTE.length)) if (!compare.has(r.run_id)) addCompare(r.run_id);
  });
  $('#compare-clear').addEventListener('click', () => { compare.clear(); afterCompareChange(); });
  const sweep = new URLSearchParams(location.search).get('sweep');
  if (sweep) { sweepFocus = sweep; $('#runs-filter').value = `sweep:${sweep}`; }
}
