// The Layers panel: the viewed run's per-layer statistics (GET
// /api/runs/{id}/layers when the panel opens or the run changes, then its
// live `layers` and `histograms` events) as a layer × step heatmap of the
// chosen statistic (a canvas; hover for the value, click a row for the
// layer's histograms) over a uPlot chart of the same statistic, one line
// per layer, on the training curves' x axis and zoom. Redrawn at most four
// times a second however fast samples come. The histograms: histview.js.

import { $, esc } from './util.js';
import { viewed } from './viewed.js';
import { xMapper } from './series.js';
import { xMode, logX, zoomHooks, unzoomOnDblclick, yTick, onDraw } from './charts.js';
import { markerPlugin } from './markers.js';
import {
  LAYER_COLORS, emptyCols, fromAnswer, pushLayers, pushHistograms, cutAfter, colorScale, colorAt, cssColor,
  xDomain, heatColumns, pickSample, heatCellAt, fmtVal,
} from './layerlib.js';
import { hist, renderHists, closeHists } from './histview.js';

const GAP_MS = 250;      // at most four redraws a second
const ROW_H = 22;        // a heatmap row
const NULL_CELL = '#0c1116';

// What the panel holds (the e2e tests read it as mnistMonitor.layers).
export const layers = Object.seal({
  runId: null,      // the run the columns are of
  cols: emptyCols(),
  stat: 'grad_norm',
  loading: false,   // an answer is awaited: live events wait in `pending`
  pending: [],
  stale: true,      // events went by while the panel was closed: ask again on opening
  error: null,
  geom: null,       // the heatmap's last geometry (hover, the tests)
  draws: 0,
  fetches: 0,
  hist,             // the histograms' state (histview.js)
});

const st = { token: 0, timer: null, lastDraw: 0, chart: null, chartKey: null, zoomKey: null };

const panel = () => $('#layers-panel');
const isOpen = () => panel().open;
const statInfo = () => layers.cols.statistics.find((s) => s.key === layers.stat) || null;

// The viewed run changed (or its snapshot came again): its columns anew.
export function resetLayers() {
  if (layers.runId !== viewed.runId) {
    layers.runId = viewed.runId;
    layers.cols = emptyCols();
    closeHists();
  }
  layers.stale = true;
  if (isOpen()) load(); else scheduleRedraw();
}

// A live `layers` or `histograms` event of the viewed run.
export function layersEvent(e) {
  if (!isOpen()) { layers.stale = true; return; }
  if (layers.loading) { layers.pending.push(e); return; }
  if (take(e)) scheduleRedraw();
}

// A resumed run trains the steps after `step` again.
export function layersCut(step) {
  cutAfter(layers.cols, step);
  layers.pending = layers.pending.filter((e) => e.step <= step);
  scheduleRedraw();
}

const take = (e) => (e.type === 'histograms' ? pushHistograms(layers.cols, e) : pushLayers(layers.cols, e));

async function load() {
  const id = viewed.runId, token = ++st.token;
  layers.pending = [];
  layers.error = null;
  if (!id) { layers.loading = false; scheduleRedraw(); return; }
  layers.loading = true;
  let answer = null;
  try {
    const res = await fetch(`/api/runs/${encodeURIComponent(id)}/layers`);
    const body = await res.json().catch(() => ({}));
    if (res.ok) answer = body; else layers.error = body.error || `the server answered ${res.status}`;
  } catch (err) { layers.error = `cannot reach the server: ${err.message}`; }
  if (token !== st.token) return;
  if (answer) {
    layers.cols = fromAnswer(answer);
    for (const e of layers.pending) take(e);
    layers.stale = false;
  }
  layers.pending = [];
  layers.loading = false;
  layers.fetches++;
  renderStatSelect();
  redrawNow();
}

export function scheduleRedraw() {
  if (st.timer) return;
  st.timer = setTimeout(() => { st.timer = null; redrawNow(); }, Math.max(0, st.lastDraw + GAP_MS - Date.now()));
}

function renderStatSelect() {
  const sel = $('#layer-stat'), stats = layers.cols.statistics;
  const key = stats.map((s) => s.key).join(',');
  if (sel.dataset.keys !== key) {
    sel.dataset.keys = key;
    sel.innerHTML = stats.map((s) => `<option value="${esc(s.key)}">${esc(s.title)}${s.log ? ' (log)' : ''}</option>`).join('');
  }
  if (stats.length && !stats.some((s) => s.key === layers.stat)) layers.stat = stats[0].key;
  sel.value = layers.stat;
  const info = statInfo();
  $('#layer-help').textContent = info ? info.help : '';
}

// Each sample's x on the charts' axis (null where it has none) and which
// samples are placeable (increasing x; positive on a log axis).
function sampleXs() {
  const mode = xMode(), log = logX();
  const toX = viewed.series && viewed.series.step.length ? xMapper(viewed.series, mode) : (mode === 'step' ? (s) => s : () => null);
  let prev = -Infinity;
  return layers.cols.step.map((s) => {
    const x = toX(s);
    if (x == null || !Number.isFinite(x) || (log && x <= 0) || x < prev) return null;
    prev = x;
    return x;
  });
}

function redrawNow() {
  st.lastDraw = Date.now();
  st.zoomKey = JSON.stringify(viewed.zoom);
  if (!isOpen()) return;
  const c = layers.cols, info = statInfo();
  const msg = $('#layers-msg');
  const empty = !c.step.length;
  msg.hidden = !(empty || layers.error);
  msg.textContent = layers.error ? layers.error
    : !viewed.runId ? 'no run on the page'
    : layers.loading ? 'loading the layer statistics…'
    : 'no layer statistics yet: a run samples them every layer_stats_every steps (0 turns them off; runs from before 0.x have none)';
  $('#layer-count').textContent = empty ? '' : `${c.total.toLocaleString()} sample${c.total === 1 ? '' : 's'}${c.step.length < c.total ? `, ${c.step.length.toLocaleString()} shown` : ''} · ${c.histograms.length} histogram set${c.histograms.length === 1 ? '' : 's'}`;
  $('#layer-heat').hidden = empty;
  $('#layer-chart').hidden = empty;
  $('#layer-legend').hidden = empty;
  if (empty || !info) {
    if (st.chart) { st.chart.destroy(); st.chart = null; st.chartKey = null; }
    layers.geom = null;
    renderHists(c);
    return;
  }
  const xs = sampleXs();
  const domain = xDomain(xs.filter((x) => x != null), viewed.zoom, logX());
  drawChart(xs, domain, info);
  drawHeat(xs, domain, info);
  renderLegend();
  renderHists(c);
  layers.draws++;
}

// ---------- the line chart ----------

function drawChart(xs, domain, info) {
  const el = $('#layer-chart'), c = layers.cols, mode = xMode();
  const key = [info.key, c.layers.join(','), mode, logX(), hist.layer].join('|');
  if (st.chart && st.chartKey !== key) { st.chart.destroy(); st.chart = null; }
  if (!st.chart) {
    st.chartKey = key;
    const series = [{}, ...c.layers.map((name, i) => ({
      label: name, stroke: LAYER_COLORS[i % LAYER_COLORS.length], width: hist.layer === name ? 2.6 : 1.4,
      points: { show: false }, spanGaps: true, alpha: hist.layer && hist.layer !== name ? 0.55 : 1,
    }))];
    const xLabel = { step: 'step', epoch: 'epoch', wall: 'time', relative: 'time since start (s)' }[mode];
    st.chart = new uPlot({
      title: `${info.title} per layer`, width: el.clientWidth || 600, height: 220, series,
      scales: { x: { time: mode === 'wall', ...(logX() && mode !== 'wall' ? { distr: 3 } : {}) }, y: info.log ? { distr: 3 } : {} },
      axes: [
        { stroke: '#8a96a3', grid: { stroke: '#232b34' }, label: xLabel },
        { stroke: '#8a96a3', grid: { stroke: '#232b34' }, size: 62, values: (u, splits) => splits.map(yTick) },
      ],
      legend: { show: false },
      cursor: { drag: { x: true, y: false } },
      hooks: zoomHooks(),
      plugins: [markerPlugin()],
    }, series.map(() => []), el);
    unzoomOnDblclick(el);
  }
  const keep = xs.map((x) => x != null);
  const vals = c.values[info.key] || [];
  const data = [xs.filter((_, i) => keep[i]), ...c.layers.map((_, l) => (vals[l] || []).filter((_, i) => keep[i]).map((v) => (info.log && !(v > 0) ? null : v)))];
  st.chart.setData(data);
  st.chart.setScale('x', { min: domain[0], max: domain[1] });
}

// ---------- the heatmap ----------

function drawHeat(xs, domain, info) {
  const canvas = $('#layer-heatmap'), box = $('#layer-heat'), c = layers.cols;
  const r = devicePixelRatio || 1;
  const cssW = box.clientWidth || 600, rows = c.layers.length, height = rows * ROW_H;
  // The plot lines up with the chart's below it.
  const left = st.chart ? st.chart.bbox.left / r : 62;
  const width = Math.max(10, Math.floor(st.chart ? st.chart.bbox.width / r : cssW - left - 10));
  canvas.style.width = `${cssW}px`;
  canvas.style.height = `${height}px`;
  canvas.width = Math.round(cssW * r);
  canvas.height = Math.round(height * r);
  const ctx = canvas.getContext('2d');
  ctx.setTransform(r, 0, 0, r, 0, 0);
  ctx.clearRect(0, 0, cssW, height);
  const vals = c.values[info.key] || c.layers.map(() => []);
  const scale = colorScale(vals, info.log);
  const columns = heatColumns(xs, domain, width, logX());
  // One pixel per column and row, scaled up without smoothing.
  const off = document.createElement('canvas');
  off.width = width;
  off.height = rows;
  const img = off.getContext('2d').createImageData(width, rows);
  for (let row = 0; row < rows; row++) {
    for (let col = 0; col < width; col++) {
      const span = columns[col];
      if (!span) continue;
      const t = scale.t(vals[row][pickSample(vals[row], span[0], span[1])]);
      if (t == null) continue;
      const [R, G, B] = colorAt(t), p = 4 * (row * width + col);
      img.data[p] = R; img.data[p + 1] = G; img.data[p + 2] = B; img.data[p + 3] = 255;
    }
  }
  off.getContext('2d').putImageData(img, 0, 0);
  ctx.fillStyle = NULL_CELL;
  ctx.fillRect(left, 0, width, height);
  ctx.imageSmoothingEnabled = false;
  ctx.drawImage(off, left, 0, width, height);
  ctx.font = '12px system-ui, sans-serif';
  ctx.textBaseline = 'middle';
  for (let row = 0; row < rows; row++) {
    const y = row * ROW_H;
    // A thin gap between rows; a row with no value says why.
    ctx.fillStyle = '#171d24';
    if (row) ctx.fillRect(left, y, width, 1);
    const name = c.layers[row], on = name === hist.layer;
    ctx.textAlign = 'right';
    ctx.fillStyle = on ? '#4aa3ff' : '#8a96a3';
    ctx.font = `${on ? '600 ' : ''}12px system-ui, sans-serif`;
    ctx.fillText(name, left - 8, y + ROW_H / 2);
    ctx.fillStyle = LAYER_COLORS[row % LAYER_COLORS.length];
    ctx.fillRect(left - 5, y + 5, 2, ROW_H - 10);
    if (!vals[row].some((v) => v != null)) {
      ctx.textAlign = 'left';
      ctx.fillStyle = '#5d6975';
      ctx.font = 'italic 11px system-ui, sans-serif';
      ctx.fillText(info.key.startsWith('act') || info.key === 'dead' ? 'no ReLU output (the logits)' : 'no value', left + 8, y + ROW_H / 2);
    }
    if (on) {
      ctx.strokeStyle = '#4aa3ff';
      ctx.lineWidth = 1.5;
      ctx.strokeRect(left + 0.75, y + 0.75, width - 1.5, ROW_H - 1.5);
    }
  }
  layers.geom = { left, top: 0, width, rowH: ROW_H, rows, columns, pick: (row, a, b) => pickSample(vals[row], a, b), cssW, height };
  $('#layer-scale-lo').textContent = fmtVal(scale.min);
  $('#layer-scale-hi').textContent = fmtVal(scale.max);
  $('#layer-scale').title = `${info.title}: ${info.log ? 'log' : 'linear'} colour scale over every layer`;
  $('#layer-scale').hidden = scale.min == null;
}

function hover(ev) {
  const tip = $('#heat-tip'), g = layers.geom, info = statInfo();
  const cell = g && info ? heatCellAt(g, ev.offsetX, ev.offsetY) : null;
  $('#layer-heatmap').style.cursor = cell ? 'pointer' : 'default';
  if (!cell) { tip.hidden = true; return; }
  const c = layers.cols, name = c.layers[cell.row];
  if (cell.sample == null) {
    tip.textContent = `${name}: click for its histograms`;
  } else {
    const v = c.values[info.key]?.[cell.row]?.[cell.sample];
    const lr = c.lr[cell.sample];
    tip.textContent = `${name} · step ${c.step[cell.sample].toLocaleString()} · ${info.title.toLowerCase()} ${fmtVal(v)}${lr != null ? ` · lr ${fmtVal(lr)}` : ''}`;
  }
  tip.hidden = false;
  const x = Math.min(ev.offsetX + 12, (g.cssW || 600) - tip.offsetWidth - 4);
  tip.style.left = `${Math.max(0, x)}px`;
  tip.style.top = `${cell.row * g.rowH + g.rowH + 2}px`;
}

function renderLegend() {
  const c = layers.cols, info = statInfo();
  const last = (l) => {
    const row = c.values[info.key]?.[l] || [];
    for (let i = row.length - 1; i >= 0; i--) if (row[i] != null) return row[i];
    return null;
  };
  $('#layer-legend').innerHTML = c.layers.map((name, i) =>
    `<button type="button" class="layer-chip${name === hist.layer ? ' on' : ''}" data-layer="${esc(name)}" title="${esc(name)}: its histograms">`
    + `<i style="background:${LAYER_COLORS[i % LAYER_COLORS.length]}"></i>${esc(name)} <span class="muted">${fmtVal(last(i))}</span></button>`).join('');
}

function selectLayer(name) {
  hist.layer = hist.layer === name ? null : name;
  hist.index = null;   // the latest
  redrawNow();
  if (hist.layer) $('#layer-hists').scrollIntoView({ block: 'nearest' });
}

// The colour bar's gradient, once.
function paintScaleBar() {
  const stops = Array.from({ length: 10 }, (_, i) => `${cssColor(colorAt(i / 9))} ${(100 * i / 9).toFixed(0)}%`);
  $('#layer-scale i').style.background = `linear-gradient(90deg, ${stops.join(', ')})`;
}

export function initLayers() {
  paintScaleBar();
  panel().addEventListener('toggle', () => {
    if (!isOpen()) return;
    if (layers.stale || layers.runId !== viewed.runId) { layers.runId = viewed.runId; load(); } else redrawNow();
  });
  $('#layer-stat').addEventListener('change', (ev) => { layers.stat = ev.target.value; renderStatSelect(); redrawNow(); });
  const canvas = $('#layer-heatmap');
  canvas.addEventListener('mousemove', hover);
  canvas.addEventListener('mouseleave', () => { $('#heat-tip').hidden = true; });
  canvas.addEventListener('click', (ev) => {
    const cell = layers.geom && heatCellAt(layers.geom, ev.offsetX, ev.offsetY);
    if (cell) selectLayer(layers.cols.layers[cell.row]);
  });
  $('#layer-legend').addEventListener('click', (ev) => {
    const chip = ev.target.closest('[data-layer]');
    if (chip) selectLayer(chip.dataset.layer);
  });
  $('#layer-hists').addEventListener('layers:close', () => { hist.layer = null; redrawNow(); });
  // The charts' x axis changed: the chart is made again.
  for (const id of ['#x-axis', '#x-scale']) $(id).addEventListener('change', () => { if (st.chart) { st.chart.destroy(); st.chart = null; } scheduleRedraw(); });
  // A zoom (or its end) on any chart.
  onDraw(() => { if (isOpen() && JSON.stringify(viewed.zoom) !== st.zoomKey) scheduleRedraw(); });
  window.addEventListener('resize', () => {
    if (st.chart) st.chart.setSize({ width: $('#layer-chart').clientWidth, height: 220 });
    scheduleRedraw();
  });
}
