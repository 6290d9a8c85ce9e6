// The training curves: a uPlot chart per charted series of the table (loss,
// accuracy, …) with the viewed run's batches, their moving average, its
// evaluations and the compared runs' averages, on the chosen x axis; drawn
// at most once per frame, so the page keeps up with thousands of batches
// per second. Also the zoom (drag; double-click: the whole run) and the
// viewed run's series asked again from the server (another smoothing, a
// resume, a zoom's finer points). Every chart carries the run's control
// marks (markers.js).

import { $, dur } from './util.js';
import { viewed } from './viewed.js';
import { sm, fromServer, pushRow, rowAt, mergeRange, xMapper, joinColumns } from './series.js';
import { compare, compareKey, runLabel, refetchCompare } from './compare.js';
import { drawHardware, destroyHwCharts } from './hwcharts.js';
import { markerPlugin } from './markers.js';

// series key -> its uPlot chart (the e2e tests read them).
export const charts = {};

const st = {
  drawQueued: false,
  smoothingTimer: null,
  zoomFetches: 0,      // finer series fetched for a zoom (the e2e tests read it)
  seriesReady: null,   // the pending refetchSeries, if any
};

// Past this many points the live tail is bucketed (min/max per metric), so
// the page stays smooth after a day of training; twice as many while zoomed.
const LIVE_LIMIT = 8000;
export const liveLimit = () => (viewed.zoom ? 2 * LIVE_LIMIT : LIVE_LIMIT);

export const zoomFetches = () => st.zoomFetches;
export const smoothing = () => Number($('#smoothing').value);
export const xMode = () => $('#x-axis').value;
export const logX = () => $('#x-scale').value === 'log';

// y ticks with three significant digits: uPlot's default rounds a learning
// rate's 0.0015 and 0.002 to the same "0.002".
export function yTick(v) {
  if (v == null) return '';
  return Math.abs(v) >= 1000 ? Math.round(v).toLocaleString() : String(Number(v.toPrecision(3)));
}

// What every chart over the run shares: a drag zooms every chart to its x
// range, a double-click goes back to the whole run.
export const zoomHooks = () => ({ setSelect: [(u) => { if (u.select.width > 2) zoomTo(u.posToVal(u.select.left, 'x'), u.posToVal(u.select.left + u.select.width, 'x')); }] });
export function unzoomOnDblclick(el) {
  el.addEventListener('dblclick', () => { viewed.zoom = null; scheduleDraw(); });
}

const chartEl = (key) => document.getElementById(`chart-${key}`);

function makeChart(key, title, el) {
  const mode = xMode();
  const logY = $('#y-scale').value === 'log';
  const series = [
    {},
    { label: 'batch', stroke: 'rgba(74,163,255,0.28)', width: 1, points: { show: false } },
    { label: 'smoothed', stroke: '#4aa3ff', width: 2, points: { show: false } },
    { label: 'val', stroke: '#f5b041', width: 0, points: { show: true, size: 8, fill: '#f5b041' } },
    { label: 'test', stroke: '#3ecf8e', width: 0, points: { show: true, size: 9, fill: '#3ecf8e' } },
    ...[...compare.values()].map((c) => ({ label: runLabel(c.runId), stroke: c.color, width: 1.5, points: { show: false } })),
  ].map((s, i) => (i ? { ...s, spanGaps: true } : s));
  const xLabel = { step: 'step', epoch: 'epoch', wall: 'time', relative: 'time since start' }[mode];
  const xValues = mode === 'relative' ? (u, splits) => splits.map((v) => dur(v)) : undefined;
  const width = el.clientWidth || 400;
  const chart = new uPlot({
    title, width, height: 220, series,
    scales: { x: { time: mode === 'wall', ...(logX() && mode !== 'wall' ? { distr: 3 } : {}) }, y: logY ? { distr: 3 } : {} },
    axes: [
      { stroke: '#8a96a3', grid: { stroke: '#232b34' }, label: xLabel, ...(xValues ? { values: xValues } : {}) },
      { stroke: '#8a96a3', grid: { stroke: '#232b34' }, size: 62, values: (u, splits) => splits.map(yTick) },
    ],
    legend: { live: false, show: compare.size === 0 },
    cursor: { drag: { x: true, y: false } },
    hooks: zoomHooks(),
    plugins: [markerPlugin()],
  }, series.map(() => []), el);
  chart.compareKey = compareKey();
  unzoomOnDblclick(el);
  return chart;
}

// Called after each draw (the Layers panel follows the zoom).
const drawHooks = [];
export const onDraw = (fn) => drawHooks.push(fn);

export function scheduleDraw() {
  if (st.drawQueued) return;
  st.drawQueued = true;
  requestAnimationFrame(() => { st.drawQueued = false; draw(); });
}

function evalPoints(split, key) {
  return viewed.evals.filter((e) => e.split === split).map((e) => [e.step, e[key]]);
}

function draw() {
  const s = viewed.series;
  if (!s) return;   // before the series table
  const mode = xMode();
  const toX = xMapper(s, mode);
  const logY = $('#y-scale').value === 'log';
  // A log axis has no place for zero or less.
  const y = (arr) => (logY ? arr.map((v) => (v != null && v > 0 ? v : null)) : arr);
  const ownX = s.step.map(toX);
  const cmps = [...compare.values()].map((c) => ({ ...c, xs: c.series.step.map(xMapper(c.series, mode)) }));
  for (const { key, title } of viewed.table.charts) {
    if (charts[key] && charts[key].compareKey !== compareKey()) { charts[key].destroy(); delete charts[key]; }
    if (!charts[key]) charts[key] = makeChart(key, title, chartEl(key));
    // Evaluations land on the step after which they ran.
    const ev = (split) => {
      const pts = evalPoints(split, key);
      return { xs: pts.map((p) => toX(p[0])), ys: y(pts.map((p) => p[1])) };
    };
    const data = joinColumns([
      { xs: ownX, ys: y(s[key]) },
      { xs: ownX, ys: y(s[sm(key)]) },
      ev('val'),
      ev('test'),
      ...cmps.map((c) => ({ xs: c.xs, ys: y(c.series[sm(key)]) })),
    ], logX());
    charts[key].setData(data);
    // Keep the zoom while live points arrive (setData rescales to all).
    if (viewed.zoom) charts[key].setScale('x', { min: viewed.zoom[0], max: viewed.zoom[1] });
  }
  drawHardware();
  for (const fn of drawHooks) fn();
}

// A run's series from the server, smoothed as the slider says.
export async function fetchSeries(runId, query) {
  const q = new URLSearchParams({ smoothing: smoothing(), ...query });
  const res = await fetch(`/api/runs/${encodeURIComponent(runId)}/series?${q}`);
  if (!res.ok) throw new Error(`series of ${runId}: ${res.status}`);
  return fromServer(viewed.table, await res.json());
}

// The viewed run's whole series again (another smoothing, or after a
// resume cut it): the live batches that arrived meanwhile are kept.
export function refetchSeries() {
  st.seriesReady = refetchNow();
  return st.seriesReady;
}

async function refetchNow() {
  const runId = viewed.runId;
  if (!runId) return;
  let fresh;
  try { fresh = await fetchSeries(runId, {}); } catch (_) { return; }
  if (viewed.runId !== runId) return;
  const old = viewed.series, t = viewed.table;
  const last = fresh.step.length ? fresh.step[fresh.step.length - 1] : -1;
  for (let i = 0; i < old.step.length; i++) {
    if (old.step[i] > last) pushRow(t, fresh, rowAt(t, old, i), liveLimit());
  }
  viewed.series = fresh;
  scheduleDraw();
  // The finer points of a zoom went with the old series: fetch them again.
  if (viewed.zoom) zoomTo(...viewed.zoom, false);
}

// Zoom: every chart to the range; on the step axis, the server's series for
// the range at full resolution (or min/max buckets of it) replaces the
// coarser points there, so no spike the buckets kept is lost and every
// point inside shows once zoomed in far enough.
async function zoomTo(min, max, wait = true) {
  viewed.zoom = [min, max];
  scheduleDraw();
  if (xMode() !== 'step' || !viewed.runId) return;
  // A series asked again (another smoothing) first, so both agree.
  if (wait && st.seriesReady) await st.seriesReady;
  const from = Math.max(0, Math.floor(min)), to = Math.ceil(max);
  const runId = viewed.runId;
  let inner;
  try { inner = await fetchSeries(runId, { from, to, points: viewed.table.maxPoints }); } catch (_) { return; }
  if (viewed.runId !== runId || inner.alpha !== viewed.series.alpha) return;
  viewed.series = mergeRange(viewed.table, viewed.series, inner, from, to);
  st.zoomFetches++;
  scheduleDraw();
}

// A chart's place for each charted series, and the controls: smoothing,
// the x axis and the scales.
export function initCharts() {
  const row = $('#metric-charts');
  for (const { key } of viewed.table.charts) {
    if (chartEl(key)) continue;
    const el = document.createElement('div');
    el.id = `chart-${key}`;
    el.className = 'chart';
    row.appendChild(el);
  }
  // The server's default smoothing, unless the slider was moved already.
  const slider = $('#smoothing');
  if (slider.value === slider.defaultValue && viewed.table.defaultSmoothing != null) {
    slider.value = viewed.table.defaultSmoothing;
    $('#smoothing-value').textContent = Number(slider.value).toFixed(2);
  }
  slider.addEventListener('input', (e) => {
    $('#smoothing-value').textContent = Number(e.target.value).toFixed(2);
    // The server smooths every step; ask again once the slider rests.
    clearTimeout(st.smoothingTimer);
    st.smoothingTimer = setTimeout(() => { refetchSeries(); refetchCompare(); }, 150);
  });
  // Scales are fixed when a uPlot chart is made: remake the charts.
  for (const id of ['#x-axis', '#y-scale', '#x-scale']) {
    $(id).addEventListener('change', () => {
      viewed.zoom = null;
      for (const k of Object.keys(charts)) { charts[k].destroy(); delete charts[k]; }
      destroyHwCharts();
      scheduleDraw();
    });
  }
  window.addEventListener('resize', () => {
    for (const { key } of viewed.table.charts) if (charts[key]) charts[key].setSize({ width: chartEl(key).clientWidth, height: 220 });
  });
}
