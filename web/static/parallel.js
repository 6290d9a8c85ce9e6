// Parallel coordinates of the runs' hyperparameters against test accuracy,
// on a canvas: every run the filter matches (GET /api/runs/columns, coloured
// by accuracy), or the compared runs in their colours. One vertical axis per
// hyperparameter (log where it spans decades), one line per run; lines of
// one colour are stroked as one path, so thousands draw in a few ms.

import { $, pct } from './util.js';

// [label, the columns endpoint's key, the value from a summary, scale].
const PAR_AXES = [
  ['conv1', 'k1', (r) => r.config?.kernels?.[0], 'log'],
  ['conv2', 'k2', (r) => r.config?.kernels?.[1], 'log'],
  ['conv3', 'k3', (r) => r.config?.kernels?.[2], 'log'],
  ['conv4', 'k4', (r) => r.config?.kernels?.[3], 'log'],
  ['lr', 'lr', (r) => r.config?.lr, 'log'],
  ['batch', 'batch_size', (r) => r.config?.batch_size, 'log'],
  ['optimizer', 'optimizer', (r) => r.config?.optimizer, 'cat'],
  ['epochs', 'epochs', (r) => r.config?.epochs, 'lin'],
  ['test acc', 'acc', (r) => r.test_accuracy ?? r.val_accuracy, 'lin'],
];
const ACC = PAR_AXES.length - 1;
const H = 230, TOP = 34, BOTTOM = 20, LEFT = 40, RIGHT = 40;
const THROTTLE_MS = 2000;   // columns refetched at most this often when only the runs changed
const HUES = 27;            // accuracy colour buckets (90 %..100 %), plus one for none

// What the tests read: lines drawn, whose, and how long the last draw took.
export const parallel = { lines: 0, mode: 'shown', ms: 0 };

const st = {
  open: null,
  want: null,        // {mode, key, params} or {mode: 'compared', items}
  cols: null,        // {key, data}: the last columns answer
  stale: true,
  asked: 0, shownAsk: 0, lastFetch: 0, timer: null,
  inflight: null,    // the key of the columns being fetched
  geom: null,        // what the last draw placed, for hovering
  base: document.createElement('canvas'),
  hover: -1,
};

const canvas = () => $('#parallel');

// The runs changed: the columns are asked again (at most every 2 s).
export function invalidateColumns() { st.stale = true; }

// The compared runs ([{run, color}]) in their colours.
export function drawCompared(items) {
  st.want = { mode: 'compared', items };
  const runs = items.filter((i) => i.run.config && i.run.config.kernels);
  const data = {
    n: runs.length,
    ids: runs.map((i) => i.run.run_id),
    names: runs.map((i) => i.run.name || i.run.run_id),
    cols: PAR_AXES.map(([, , get]) => runs.map((i) => get(i.run) ?? null)),
    colors: runs.map((i) => i.color),
  };
  draw(data, 'compared');
}

// Every run the query (URLSearchParams of q, sort, order) matches.
export function drawShown(params) {
  const key = params.toString();
  st.want = { mode: 'shown', key, params };
  const have = st.cols && st.cols.key === key;
  if (have) draw(st.cols.data, 'shown');
  if (have && !st.stale) return;
  if (st.inflight === key && !st.stale) return;   // asked already
  const wait = have ? Math.max(0, st.lastFetch + THROTTLE_MS - Date.now()) : 0;
  clearTimeout(st.timer);
  st.timer = setTimeout(fetchColumns, wait);
}

async function fetchColumns() {
  const w = st.want;
  if (!w || w.mode !== 'shown') return;
  const ask = ++st.asked;
  st.lastFetch = Date.now();
  st.stale = false;
  st.inflight = w.key;
  const q = new URLSearchParams(w.params);
  q.set('keys', PAR_AXES.map(([, k]) => k).join(','));
  let body;
  try {
    const res = await fetch(`/api/runs/columns?${q}`);
    if (!res.ok) throw new Error(String(res.status));
    body = await res.json();
  } catch (_) {
    if (ask === st.asked) { st.inflight = null; st.stale = true; }
    return;
  } finally {
    if (ask === st.asked) st.inflight = null;
  }
  if (ask < st.shownAsk) return;
  st.shownAsk = ask;
  const data = {
    n: body.run_ids.length,
    ids: body.run_ids,
    names: body.run_ids.map((id, i) => body.names?.[i] || id),
    cols: PAR_AXES.map(([, k]) => body.columns[k] || []),
    colors: null,
  };
  st.cols = { key: w.key, data };
  if (st.want.mode === 'shown' && st.want.key === w.key) draw(data, 'shown');
}

export function redrawParallel() {
  if (!st.want) return;
  if (st.want.mode === 'compared') drawCompared(st.want.items);
  else if (st.cols) draw(st.cols.data, 'shown');
}

// Where each axis puts a value: t in [0, 1] (NaN when missing).
function scaleOf(values, kind) {
  if (kind === 'cat') {
    const cats = [...new Set(values.filter((v) => v != null).map(String))].sort();
    const index = new Map(cats.map((c, i) => [c, i]));
    const at = (v) => (v == null ? NaN : cats.length > 1 ? index.get(String(v)) / (cats.length - 1) : 0.5);
    return { at, ticks: cats.map((c, i) => [c, cats.length > 1 ? i / (cats.length - 1) : 0.5]) };
  }
  const f = kind === 'log' ? Math.log10 : (v) => v;
  let lo = Infinity, hi = -Infinity, vlo = null, vhi = null;
  for (const v of values) {
    if (typeof v !== 'number' || !isFinite(v) || (kind === 'log' && v <= 0)) continue;
    const x = f(v);
    if (x < lo) { lo = x; vlo = v; }
    if (x > hi) { hi = x; vhi = v; }
  }
  const at = (v) => (typeof v !== 'number' || (kind === 'log' && v <= 0) ? NaN : hi > lo ? (f(v) - lo) / (hi - lo) : 0.5);
  const label = (v) => String(Number(v.toPrecision(kind === 'log' ? 2 : 3)));
  return { at, ticks: vlo == null ? [] : vlo === vhi ? [[label(vlo), 0.5]] : [[label(vlo), 0], [label(vhi), 1]] };
}

const hueOf = (b) => `hsl(${Math.round((b / (HUES - 1)) * 130)}, 70%, 55%)`;
// 90 %..100 % test accuracy from red to green, grey without one.
const bucketOf = (a) => (typeof a !== 'number' ? -1 : Math.round(Math.max(0, Math.min(1, (a - 0.9) / 0.1)) * (HUES - 1)));

function draw(data, mode) {
  const t0 = performance.now();
  const el = canvas();
  const dpr = window.devicePixelRatio || 1;
  const W = el.clientWidth || 900;
  const base = st.base;
  base.width = el.width = Math.round(W * dpr);
  base.height = el.height = Math.round(H * dpr);
  el.style.height = `${H}px`;
  const ctx = base.getContext('2d');
  ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
  ctx.fillStyle = '#0c1116';
  ctx.fillRect(0, 0, W, H);
  const n = data.n, axes = PAR_AXES.length;
  const step = (W - LEFT - RIGHT) / (axes - 1);
  const scales = PAR_AXES.map(([, , , kind], i) => scaleOf(data.cols[i], kind));
  const yOf = (t) => TOP + (1 - t) * (H - TOP - BOTTOM);
  // Every line's y on every axis (NaN: no value, skipped).
  const ys = new Float32Array(n * axes);
  for (let a = 0; a < axes; a++) {
    const col = data.cols[a], at = scales[a].at;
    for (let i = 0; i < n; i++) ys[i * axes + a] = yOf(at(col[i]));
  }
  // Lines grouped by colour: one path, one stroke each; the most accurate on top.
  const groups = new Map();
  for (let i = 0; i < n; i++) {
    const c = data.colors ? data.colors[i] : bucketOf(data.cols[ACC][i]);
    if (!groups.has(c)) groups.set(c, []);
    groups.get(c).push(i);
  }
  const order = [...groups.keys()];
  if (!data.colors) order.sort((a, b) => a - b);
  // Many lines: one device pixel wide (Skia's hairlines, far cheaper to
  // rasterise than wider strokes on a HiDPI screen).
  ctx.lineWidth = n > 500 ? 1 / dpr : 1.6;
  ctx.globalAlpha = n > 2000 ? 0.35 : n > 300 ? 0.55 : 0.85;
  ctx.lineJoin = 'round';
  // A path is stroked once, so a segment twice in it looks as once: each
  // distinct segment (to a quarter pixel) is drawn once. Runs of a grid
  // share most of theirs, which makes thousands of lines cheap.
  for (const c of order) {
    ctx.strokeStyle = data.colors ? c : c < 0 ? '#555' : hueOf(c);
    ctx.beginPath();
    const seen = new Set();
    for (const i of groups.get(c)) {
      let pa = -1, py = 0;
      for (let a = 0; a < axes; a++) {
        const y = ys[i * axes + a];
        if (Number.isNaN(y)) continue;
        if (pa >= 0) {
          const k = `${pa} ${a} ${Math.round(py * 4)} ${Math.round(y * 4)}`;
          if (!seen.has(k)) {
            seen.add(k);
            ctx.moveTo(LEFT + pa * step, py);
            ctx.lineTo(LEFT + a * step, y);
          }
        }
        pa = a;
        py = y;
      }
    }
    ctx.stroke();
  }
  ctx.globalAlpha = 1;
  // Axes, names and the ends of each scale over the lines.
  ctx.strokeStyle = '#3a4450';
  ctx.lineWidth = 1;
  ctx.textBaseline = 'middle';
  PAR_AXES.forEach(([name], a) => {
    const x = Math.round(LEFT + a * step) + 0.5;
    ctx.beginPath();
    ctx.moveTo(x, TOP);
    ctx.lineTo(x, H - BOTTOM);
    ctx.stroke();
    ctx.fillStyle = '#dde3ea';
    ctx.font = '11px system-ui, sans-serif';
    ctx.textAlign = 'center';
    ctx.fillText(name, x, 12);
    ctx.fillStyle = '#8a96a3';
    ctx.font = '10px system-ui, sans-serif';
    ctx.textAlign = a === axes - 1 ? 'right' : 'left';
    ctx.strokeStyle = '#0c1116';
    ctx.lineWidth = 3;
    for (const [label, t] of scales[a].ticks) {
      const tx = a === axes - 1 ? x - 4 : x + 4;
      ctx.strokeText(label, tx, yOf(t));
      ctx.fillText(label, tx, yOf(t));
    }
    ctx.strokeStyle = '#3a4450';
    ctx.lineWidth = 1;
  });
  const vis = el.getContext('2d');
  vis.setTransform(1, 0, 0, 1, 0, 0);
  vis.drawImage(base, 0, 0);
  st.geom = { data, ys, axes, step, W, dpr };
  st.hover = -1;
  parallel.lines = n;
  parallel.mode = mode;
  parallel.ms = +(performance.now() - t0).toFixed(1);
  $('#parallel-note').textContent = mode === 'compared'
    ? `${n} compared runs`
    : `${n.toLocaleString()} runs shown, coloured by test accuracy (90 % red → 100 % green)`;
}

// The line nearest the pointer (within 6 px), between the two axes around it.
function nearest(x, y) {
  const g = st.geom;
  if (!g || !g.data.n) return -1;
  const pos = (x - LEFT) / g.step;
  const a = Math.max(0, Math.min(g.axes - 2, Math.floor(pos)));
  const f = Math.max(0, Math.min(1, pos - a));
  let best = -1, bestD = 6;
  for (let i = 0; i < g.data.n; i++) {
    const y0 = g.ys[i * g.axes + a], y1 = g.ys[i * g.axes + a + 1];
    if (Number.isNaN(y0) || Number.isNaN(y1)) continue;
    const d = Math.abs(y0 + (y1 - y0) * f - y);
    if (d < bestD) { bestD = d; best = i; }
  }
  return best;
}

function highlight(i) {
  const g = st.geom, el = canvas();
  if (!g || i === st.hover) return;
  st.hover = i;
  const ctx = el.getContext('2d');
  ctx.setTransform(1, 0, 0, 1, 0, 0);
  ctx.drawImage(st.base, 0, 0);
  if (i < 0) { el.title = ''; el.style.cursor = ''; return; }
  ctx.setTransform(g.dpr, 0, 0, g.dpr, 0, 0);
  ctx.strokeStyle = g.data.colors ? g.data.colors[i] : '#ffffff';
  ctx.lineWidth = 3;
  ctx.beginPath();
  let started = false;
  for (let a = 0; a < g.axes; a++) {
    const y = g.ys[i * g.axes + a];
    if (Number.isNaN(y)) continue;
    if (started) ctx.lineTo(LEFT + a * g.step, y); else { ctx.moveTo(LEFT + a * g.step, y); started = true; }
  }
  ctx.stroke();
  el.title = `${g.data.names[i]}: test ${pct(g.data.cols[ACC][i])} (click to open)`;
  el.style.cursor = 'pointer';
}

// open(id): a click on a line opens its run.
export function initParallel({ open }) {
  st.open = open;
  const el = canvas();
  let queued = null;
  el.addEventListener('mousemove', (ev) => {
    const r = el.getBoundingClientRect();
    const p = [ev.clientX - r.left, ev.clientY - r.top];
    if (queued) { queued = p; return; }
    queued = p;
    requestAnimationFrame(() => { const [x, y] = queued; queued = null; highlight(nearest(x, y)); });
  });
  el.addEventListener('mouseleave', () => highlight(-1));
  el.addEventListener('click', (ev) => {
    const r = el.getBoundingClientRect();
    const i = nearest(ev.clientX - r.left, ev.clientY - r.top);
    if (i >= 0 && st.open) st.open(st.geom.data.ids[i]);
  });
}
