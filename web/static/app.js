// mnist-monitor page: one websocket per viewed run, the run's events drive
// every panel. Batch points are buffered and drawn at most once per frame,
// so the page keeps up with thousands of batches per second.

import { hardware, startHardware } from './hardware.js';
import { fleet, startFleet } from './fleet.js';
import { slurm, startSlurm, showRunTask } from './slurm.js';
import { runs, initRuns, renderRuns, reloadRuns, scheduleReload, setFilter, firstRuns, fetchRun, shownQuery, queryParams, ranOn } from './runs.js';
import { parallel, initParallel, drawCompared, drawShown, invalidateColumns, redrawParallel } from './parallel.js';
import { initCleanup } from './prune.js';

import { $, esc, fmt, pct, dur, reproduceCommand, confusionHtml, perClassHtml, sampleHtml, modelRowsHtml, provenanceRows, dlHtml } from './util.js';

// ---------- run state ----------
// Every batch series the server folds (see SERIES in crates/server/src/state.rs):
// the charts' metrics plus `epoch` (position in epochs) and `ts_ms`, the other x axes.
const SERIES_KEYS = ['loss', 'accuracy', 'f1_macro', 'lr', 'images_per_sec', 'epoch', 'ts_ms'];

const view = {
  follow: true,        // follow /ws/runs/current, or show one run
  runId: null,
  lastSeq: 0,
  ws: null,
  retry: 0,
  started: null,       // run_started payload
  status: null,
  last: null,          // last batch
  series: null,        // the viewed run's series (see fromServer), set below
  evals: [],           // eval events
  compare: new Map(),  // runId -> {runId, color, series}: runs overlaid
  phase: null,         // what a run does before its first batch
  alerts: 0,           // alerts seen for this run
  zoom: null,          // [min, max] of the x axis the user zoomed to
  hw: [],              // the run's hardware samples ({ts_ms, cpu_percent, rss_bytes, gpu_percent, gpu_memory_bytes})
  zoomFetches: 0,      // finer series fetched for a zoom (the e2e test reads it)
  seriesReady: null,   // the pending refetchSeries, if any
  exited: false,       // the monitor said it is exiting
};

function resetRun(runId) {
  view.runId = runId;
  showRunTask();
  view.lastSeq = 0;
  view.started = null;
  view.status = null;
  view.last = null;
  view.series = emptySeries();
  view.evals = [];
  view.zoom = null;
  view.hw = [];
  $('#log').innerHTML = '';
  view.alerts = 0;
  view.phase = null;
  $('#alert-count').hidden = true;
  $('#samples').innerHTML = '';
  $('#confusion').innerHTML = '';
  $('#per-class').innerHTML = '';
  $('#eval-title').textContent = '';
  $('#provenance').hidden = true;
  renderStatus();
  renderRuns();
  scheduleDraw();
}

// ---------- websocket ----------
function connect() {
  const proto = location.protocol === 'https:' ? 'wss' : 'ws';
  let path;
  if (view.follow) {
    const q = view.runId && view.lastSeq ? `?since=${view.lastSeq}&run=${encodeURIComponent(view.runId)}` : '';
    path = `/ws/runs/current${q}`;
  } else {
    const q = view.lastSeq ? `?since=${view.lastSeq}` : '';
    path = `/ws/runs/${encodeURIComponent(view.runId)}${q}`;
  }
  const ws = new WebSocket(`${proto}://${location.host}${path}`);
  view.ws = ws;
  ws.onopen = () => { view.retry = 0; view.exited = false; setConn('live', 'ok'); $('#banner').hidden = true; };
  ws.onmessage = (m) => handle(JSON.parse(m.data));
  ws.onclose = (e) => {
    if (view.ws !== ws) return;          // replaced on purpose
    if (!view.follow && view.status && view.status !== 'running' && e.code === 1000) { setConn('run ended', ''); return; }
    const wait = Math.min(5000, 500 * 2 ** view.retry++);
    setConn('disconnected', 'bad');
    const banner = $('#banner');
    banner.hidden = false;
    // Once the monitor said it was exiting (`train --serve` after its run),
    // the failed retries that follow are expected: keep saying so.
    if (e.reason === 'server exiting') view.exited = true;
    banner.textContent = view.exited
      ? `The monitor exited (its run is over): this page keeps what it showed, and reconnects if the monitor comes back (next try in ${(wait / 1000).toFixed(1)} s).`
      : `Disconnected from the server — reconnecting in ${(wait / 1000).toFixed(1)} s; nothing is lost, the page resumes from event ${view.lastSeq}.`;
    setTimeout(connect, wait);
  };
}

function reconnectTo(follow, runId) {
  view.follow = follow;
  const old = view.ws;
  view.ws = null;
  if (old) old.close();
  resetRun(runId);
  $('#follow').hidden = follow;
  // Its name, tags and notes, and the compare panel, at once (its summary
  // fetched when no block of the table held it).
  showMeta();
  renderComparePanel();
  connect();
}

function setConn(text, cls) {
  const el = $('#conn');
  el.textContent = text;
  el.className = 'pill ' + cls;
}

function handle(msg) {
  switch (msg.type) {
    case 'snapshot': {
      resetRun(msg.run_id);
      for (const e of msg.events) apply(e);
      view.series = fromServer(msg.series);
      view.hw = msg.hardware || [];
      // The snapshot is smoothed with the server's default: ask for ours.
      if (view.series.alpha !== smoothing()) refetchSeries();
      if (msg.last_batch) view.last = msg.last_batch;
      view.lastSeq = msg.last_seq;
      // The server's word on the status: a log without `run_finished`
      // is a dead run ("interrupted"), whatever its `run_started` said.
      view.status = msg.status || (msg.live ? 'running' : 'interrupted');
      renderStatus();
      scheduleDraw();
      break;
    }
    case 'idle':
      resetRun(null);
      $('#run-title').textContent = 'no run yet: configure one and press Start';
      break;
    case 'run_changed':
      scheduleReload();
      break;
    case 'runs_changed':
      // A run appeared in the runs folder (a `train` from a shell), left it
      // or changed status: the rows in view again, at most twice a second.
      scheduleReload();
      break;
    case 'error':
      setConn(msg.error, 'bad');
      break;
    default:
      if (msg.seq <= view.lastSeq) return;   // never apply an event twice
      view.lastSeq = msg.seq;
      apply(msg);
  }
}

function apply(e) {
  switch (e.type) {
    case 'run_started':
      view.started = e;
      view.status = 'running';
      // A resume re-trains the steps after its checkpoint: keep one value per step.
      if (e.resumed_from_step != null) cutAfter(e.resumed_from_step);
      $('#run-title').textContent = `run ${e.run_id}`;
      renderModel(e.model, `the model of run ${e.run_id}`);
      view.modelFromRun = true;
      renderProvenance(e);
      scheduleReload();
      break;
    case 'batch':
      view.last = e;
      pushRow(view.series, batchRow(e));
      scheduleDraw();
      break;
    case 'eval':
      view.evals.push(e);
      renderEval(e);
      // The runs table and the compare panel show the latest results.
      if (Date.now() - e.ts_ms < 60000) scheduleReload();
      scheduleDraw();
      break;
    case 'samples':
      renderSamples(e);
      break;
    case 'checkpoint':
      log('info', `epoch ${e.epoch}: checkpoint saved${e.best ? ' (best so far)' : ''}`);
      break;
    case 'log':
      log(e.level, e.message);
      break;
    case 'phase':
      // Shown in Status until the first batch (GPU kernels compiling).
      view.phase = e.phase === 'compiling' ? e.message : null;
      log('info', e.message);
      break;
    case 'alert':
      showAlert(e);
      break;
    case 'hardware':
      pushHw(e);
      break;
    case 'run_finished':
      view.status = e.status;
      if (e.error) log('error', e.error);
      notifyEnd(e);
      scheduleReload();
      break;
  }
  scheduleStatus();
}

function renderProvenance(e) {
  $('#provenance').hidden = false;
  $('#repro-cmd').textContent = reproduceCommand(e.config);
  const p = e.provenance;
  const rows = provenanceRows(p);
  if (p) rows.push(['data', Object.keys(p.data_sha256 || {}).length ? 'MNIST, SHA-256 checked' : 'not checked (--skip-verify)']);
  $('#prov-info').innerHTML = dlHtml(rows);
}
$('#copy-repro').addEventListener('click', async () => {
  try { await navigator.clipboard.writeText($('#repro-cmd').textContent); $('#copy-repro').textContent = 'copied'; } catch (_) { /* no clipboard on plain http off loopback */ }
});

// A browser notification when a run ends, if the user allowed them (and
// only for an end seen live, not one replayed from a run's history).
function notifyEnd(e) {
  if (!('Notification' in window) || Notification.permission !== 'granted') return;
  if (Date.now() - e.ts_ms > 60000) return;
  const acc = e.test_accuracy != null ? `, test accuracy ${pct(e.test_accuracy)}` : '';
  new Notification(`mnist-monitor: run ${e.status}`, { body: `${view.runId}${acc}${e.error ? ` — ${e.error}` : ''}`, tag: `run-${view.runId}` });
}
if ('Notification' in window && Notification.permission === 'default') {
  $('#notify').hidden = false;
  $('#notify').addEventListener('click', async () => {
    await Notification.requestPermission();
    $('#notify').hidden = Notification.permission !== 'default';
  });
}

// Each chart as a PNG file (the canvas uPlot drew, with its title).
$('#save-charts').addEventListener('click', () => {
  for (const [key] of METRICS) {
    const u = charts[key];
    if (!u) continue;
    const a = document.createElement('a');
    a.href = u.ctx.canvas.toDataURL('image/png');
    a.download = `${view.runId || 'run'}-${key}.png`;
    a.click();
  }
});

// Each chart as an SVG file: its lines and points as vectors, the axes'
// ticks and the legend as text, for papers and slides.
function chartSvg(u, title) {
  const { left, top, width, height } = u.bbox;
  const r = devicePixelRatio || 1;
  const W = Math.round((left + width) / r) + 20, H = Math.round((top + height) / r) + 40;
  const px = (v, axis) => u.valToPos(v, axis);
  let body = `<rect width="${W}" height="${H}" fill="#171d24"/><text x="${W / 2}" y="16" fill="#dde3ea" font-size="13" text-anchor="middle">${esc(title)}</text>`;
  body += `<rect x="${left / r}" y="${top / r}" width="${width / r}" height="${height / r}" fill="none" stroke="#2a323c"/>`;
  const [xMin, xMax] = [u.scales.x.min, u.scales.x.max], [yMin, yMax] = [u.scales.y.min, u.scales.y.max];
  for (const [v, axis] of [[xMin, 'x'], [xMax, 'x'], [yMin, 'y'], [yMax, 'y']]) {
    const p = px(v, axis);
    body += axis === 'x'
      ? `<text x="${(left / r) + p}" y="${(top + height) / r + 14}" fill="#8a96a3" font-size="10" text-anchor="middle">${esc(yTick(v))}</text>`
      : `<text x="${left / r - 4}" y="${(top / r) + p + 3}" fill="#8a96a3" font-size="10" text-anchor="end">${esc(yTick(v))}</text>`;
  }
  u.series.forEach((s, i) => {
    if (i === 0 || !s.show) return;
    const xs = u.data[0], ys = u.data[i];
    const pts = [];
    for (let j = 0; j < xs.length; j++) {
      if (ys[j] == null || xs[j] < xMin || xs[j] > xMax) continue;
      pts.push([(left / r) + px(xs[j], 'x'), (top / r) + px(ys[j], 'y')]);
    }
    const stroke = typeof s._stroke === 'string' ? s._stroke : (typeof s.stroke === 'function' ? s.stroke(u, i) : s.stroke);
    if (s.width === 0) body += pts.map(([x, y]) => `<circle cx="${x.toFixed(1)}" cy="${y.toFixed(1)}" r="3" fill="${stroke}"/>`).join('');
    else body += `<polyline fill="none" stroke="${stroke}" stroke-width="${s.width || 1}" points="${pts.map(([x, y]) => `${x.toFixed(1)},${y.toFixed(1)}`).join(' ')}"/>`;
    body += `<text x="${left / r + 8 + (i - 1) * 90}" y="${H - 6}" fill="${stroke}" font-size="10">${esc(s.label)}</text>`;
  });
  return `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" font-family="sans-serif">${body}</svg>`;
}

$('#save-svgs').addEventListener('click', () => {
  for (const [key, title] of METRICS) {
    const u = charts[key];
    if (!u) continue;
    const blob = new Blob([chartSvg(u, title)], { type: 'image/svg+xml' });
    const a = document.createElement('a');
    a.href = URL.createObjectURL(blob);
    a.download = `${view.runId || 'run'}-${key}.svg`;
    a.click();
    setTimeout(() => URL.revokeObjectURL(a.href), 1000);
  }
});

// Drops the points after `step`, which a resumed run trains again.
function cutAfter(step) {
  const keep = view.series.step.findIndex((x) => x > step);
  if (keep >= 0) {
    for (const k of ['step', ...ALL_KEYS]) view.series[k].length = keep;
    // The moving average went through the dropped steps: the server's again.
    refetchSeries();
  }
  view.evals = view.evals.filter((e) => e.step <= step);
  if (view.last && view.last.step > step) view.last = null;
}

// Alerts: a banner for the newest, every one in the log, a count in Status.
function showAlert(e) {
  view.alerts = (view.alerts || 0) + 1;
  const count = $('#alert-count');
  count.hidden = false;
  count.textContent = `${view.alerts} alert${view.alerts > 1 ? 's' : ''}`;
  const text = `${e.rule}: ${e.message}${e.action ? ` — ${e.action}` : ''}`;
  log(e.severity === 'critical' ? 'critical' : 'warning', `alert ${text}`);
  // Old alerts replayed from a run's history go to the log only.
  if (Date.now() - e.ts_ms < 60000) {
    const banner = $('#alert-banner');
    banner.className = e.severity === 'critical' ? 'critical' : '';
    $('#alert-text').textContent = `Alert (${e.severity}) ${text}`;
    banner.hidden = false;
  }
}
$('#alert-dismiss').addEventListener('click', () => { $('#alert-banner').hidden = true; });

function log(level, text) {
  const div = document.createElement('div');
  div.className = level;
  div.textContent = `${level}: ${text}`;
  $('#log').prepend(div);
}

// ---------- status ----------
let statusQueued = false;
function scheduleStatus() {
  if (statusQueued) return;
  statusQueued = true;
  requestAnimationFrame(() => { statusQueued = false; renderStatus(); });
}

function renderStatus() {
  const s = view.started, b = view.last;
  const cfg = s ? s.config : null;
  const pill = $('#run-status');
  pill.textContent = view.status || '';
  pill.className = 'pill ' + ({ running: 'ok', completed: 'ok', failed: 'bad', stopped: 'warn', interrupted: 'warn' }[view.status] || '');
  $('#stop').disabled = !(view.status === 'running' && view.follow);
  $('#s-backend').textContent = s ? `${ranOn(s)} · ${s.device}` : '–';
  // What was picked and why (`auto picked cuda:1 (…) over cuda:0 (…)`).
  $('#s-backend').title = s?.device_reason || '';
  const phase = view.status === 'running' && !b ? view.phase : null;
  $('#s-phase').hidden = !phase;
  $('#s-phase').textContent = phase ? `⏳ ${phase}` : '';
  if (!b || !cfg) {
    for (const id of ['#s-epoch', '#s-batch', '#s-elapsed', '#s-eta', '#s-ips', '#s-loss']) $(id).textContent = '–';
    $('#progress-bar').style.width = '0';
  } else {
    const total = cfg.epochs * b.batches;
    const done = b.step;
    const frac = Math.min(1, done / total);
    $('#progress-bar').style.width = (100 * frac).toFixed(1) + '%';
    $('#s-epoch').textContent = `${b.epoch} / ${cfg.epochs}`;
    $('#s-batch').textContent = `${b.batch} / ${b.batches}`;
    $('#s-elapsed').textContent = dur(b.elapsed_s);
    const rate = done / Math.max(b.elapsed_s, 1e-9);
    $('#s-eta').textContent = view.status === 'running' ? dur((total - done) / rate) : '–';
    $('#s-ips').textContent = Math.round(b.images_per_sec).toLocaleString();
    $('#s-loss').textContent = fmt(b.epoch_loss);
  }
  const lastVal = [...view.evals].reverse().find((e) => e.split === 'val');
  const lastTest = [...view.evals].reverse().find((e) => e.split === 'test');
  $('#s-val').textContent = lastVal ? pct(lastVal.accuracy) : '–';
  $('#s-test').textContent = lastTest ? pct(lastTest.accuracy) : '–';
}

// ---------- charts ----------
const charts = {};
const METRICS = [
  ['loss', 'Loss', 'chart-loss'],
  ['accuracy', 'Accuracy', 'chart-accuracy'],
  ['f1_macro', 'Macro F1', 'chart-f1'],
  ['lr', 'Learning rate', 'chart-lr'],
  ['images_per_sec', 'Images/s', 'chart-ips'],
];
// The smoothed series (SMOOTHED in crates/server/src/state.rs), kept as `s_<key>`.
const SMOOTH_KEYS = METRICS.map(([k]) => k);
const SM = (k) => `s_${k}`;
const ALL_KEYS = [...SERIES_KEYS, ...SMOOTH_KEYS.map(SM)];
// Past this many points the live tail is bucketed (min/max per metric), so
// the page stays smooth after a day of training.
const LIVE_LIMIT = 8000, BUCKET = 32;
// Distinct colours for compared runs (the viewed run is blue).
const PALETTE = ['#c678dd', '#e5c07b', '#56b6c2', '#e06c75', '#98c379', '#d19a66', '#61afef', '#ff79c6', '#8be9fd', '#f1fa8c',
  '#bd93f9', '#ffb86c', '#50fa7b', '#ff5555', '#a9dc76', '#fc9867', '#78dce8', '#ab9df2', '#ffd866', '#7f9f7f'];

function smoothing() { return Number($('#smoothing').value); }

function emptySeries(alpha = smoothing()) {
  const s = { step: [], alpha, ema: {} };
  for (const k of ALL_KEYS) s[k] = [];
  for (const k of SMOOTH_KEYS) s.ema[k] = [0, 0];
  return s;
}

// A `series` answer (or a snapshot's series): every series on one step
// axis, the moving average computed by the server on every step, and its
// state after the last one, which live batches continue.
function fromServer(body) {
  const s = emptySeries(body.smoothing);
  s.step = body.step || [];
  for (const k of SERIES_KEYS) s[k] = body[k] || [];
  for (const k of SMOOTH_KEYS) {
    s[SM(k)] = (body.smoothed && body.smoothed[k]) || [];
    s.ema[k] = (body.ema && body.ema[k]) ? [...body.ema[k]] : [0, 0];
  }
  return s;
}

// TensorBoard's debiased moving average, continued one value at a time.
function emaPush(series, key, v) {
  if (v == null || !isFinite(v)) return null;
  const st = series.ema[key], a = series.alpha;
  st[0] = st[0] * a + (1 - a) * v;
  st[1] = st[1] * a + (1 - a);
  return st[0] / st[1];
}

// A batch event as a row of the series: the epoch axis is the position in
// epochs (1.5 is half-way through the second).
function batchRow(e) {
  const row = { step: e.step, ts_ms: e.ts_ms, epoch: e.epoch - 1 + e.batch / Math.max(1, e.batches) };
  for (const k of SMOOTH_KEYS) row[k] = e[k];
  return row;
}

function rowAt(series, i) {
  const row = { step: series.step[i] };
  for (const k of SERIES_KEYS) row[k] = series[k][i];
  return row;
}

function pushRow(series, row) {
  const n = series.step.length;
  if (n && row.step <= series.step[n - 1]) return;   // already in the series
  series.step.push(row.step);
  for (const k of SERIES_KEYS) series[k].push(row[k]);
  for (const k of SMOOTH_KEYS) series[SM(k)].push(emaPush(series, k, row[k]));
  if (series.step.length > (view.zoom ? 2 * LIVE_LIMIT : LIVE_LIMIT)) compact(series);
}

// Buckets of BUCKET steps keep the steps where any metric has its minimum
// or maximum (the server's rule), with every series' value there.
function compact(series) {
  const n = series.step.length, keep = [];
  for (let lo = 0; lo < n; lo += BUCKET) {
    const hi = Math.min(n, lo + BUCKET), picked = new Set([hi - 1]);
    for (const k of SMOOTH_KEYS) {
      const ys = series[k];
      let imin = -1, imax = -1;
      for (let i = lo; i < hi; i++) {
        const v = ys[i];
        if (v == null) { imax = i; continue; }   // a NaN loss stays visible
        if (imin < 0 || v < ys[imin]) imin = i;
        if (imax < 0 || (ys[imax] != null && v > ys[imax])) imax = i;
      }
      if (imin >= 0) picked.add(imin);
      if (imax >= 0) picked.add(imax);
    }
    keep.push(...[...picked].sort((a, b) => a - b));
  }
  for (const k of ['step', ...ALL_KEYS]) series[k] = keep.map((i) => series[k][i]);
}

// The chosen x axis for a step of `series`: step, epoch, wall time (s since
// 1970) or time since the run's first batch (s).
function xMapper(series) {
  const mode = $('#x-axis').value;
  if (mode === 'step') return (step) => step;
  const key = mode === 'epoch' ? 'epoch' : 'ts_ms';
  const xs = series.step, ys = series[key];
  const t0 = series.ts_ms.length ? series.ts_ms[0] : 0;
  const scale = mode === 'epoch' ? (v) => v : mode === 'wall' ? (v) => v / 1000 : (v) => (v - t0) / 1000;
  return (step) => {
    if (!xs.length) return null;
    let lo = 0, hi = xs.length - 1;
    while (lo < hi) { const mid = (lo + hi) >> 1; if (xs[mid] < step) lo = mid + 1; else hi = mid; }
    if (xs[lo] === step || lo === 0) return scale(ys[lo]);
    const a = lo - 1;
    return scale(ys[a] + (ys[lo] - ys[a]) * (step - xs[a]) / (xs[lo] - xs[a]));
  };
}

// y ticks with three significant digits: uPlot's default rounds a learning
// rate's 0.0015 and 0.002 to the same "0.002".
function yTick(v) {
  if (v == null) return '';
  return Math.abs(v) >= 1000 ? Math.round(v).toLocaleString() : String(Number(v.toPrecision(3)));
}

function runLabel(runId) {
  const r = runs.known.get(runId);
  return r && r.name ? r.name : runId;
}

function makeChart(key, title, el) {
  const mode = $('#x-axis').value;
  const logY = $('#y-scale').value === 'log';
  const series = [
    {},
    { label: 'batch', stroke: 'rgba(74,163,255,0.28)', width: 1, points: { show: false } },
    { label: 'smoothed', stroke: '#4aa3ff', width: 2, points: { show: false } },
    { label: 'val', stroke: '#f5b041', width: 0, points: { show: true, size: 8, fill: '#f5b041' } },
    { label: 'test', stroke: '#3ecf8e', width: 0, points: { show: true, size: 9, fill: '#3ecf8e' } },
    ...[...view.compare.values()].map((c) => ({ label: runLabel(c.runId), stroke: c.color, width: 1.5, points: { show: false } })),
  ].map((s, i) => (i ? { ...s, spanGaps: true } : s));
  const xLabel = { step: 'step', epoch: 'epoch', wall: 'time', relative: 'time since start' }[mode];
  const xValues = mode === 'relative' ? (u, splits) => splits.map((v) => dur(v)) : undefined;
  const width = el.clientWidth || 400;
  const chart = new uPlot({
    title, width, height: 220, series,
    scales: { x: { time: mode === 'wall', ...($('#x-scale').value === 'log' && mode !== 'wall' ? { distr: 3 } : {}) }, y: logY ? { distr: 3 } : {} },
    axes: [
      { stroke: '#8a96a3', grid: { stroke: '#232b34' }, label: xLabel, ...(xValues ? { values: xValues } : {}) },
      { stroke: '#8a96a3', grid: { stroke: '#232b34' }, size: 62, values: (u, splits) => splits.map(yTick) },
    ],
    legend: { live: false, show: view.compare.size === 0 },
    cursor: { drag: { x: true, y: false } },
    hooks: { setSelect: [(u) => { if (u.select.width > 2) zoomTo(u.posToVal(u.select.left, 'x'), u.posToVal(u.select.left + u.select.width, 'x')); }] },
  }, series.map(() => []), el);
  chart.compareKey = compareKey();
  // Double-click: back to the whole run.
  el.addEventListener('dblclick', () => { view.zoom = null; scheduleDraw(); });
  return chart;
}

function compareKey() { return [...view.compare.keys()].join('\n'); }

// ---------- the machine over the run ----------
// The run's hardware samples on the charts' x axis (a sample's time mapped
// to the step, epoch or time of the batches around it).
const HW_METRICS = [
  ['cpu_percent', 'CPU %', 'chart-cpu', (v) => v],
  ['rss_bytes', 'Process memory (GiB)', 'chart-rss', (v) => v / 2 ** 30],
  ['gpu_percent', 'GPU busy % (busiest)', 'chart-gpu', (v) => v],
  ['gpu_memory_bytes', 'GPU memory (GiB)', 'chart-gpumem', (v) => v / 2 ** 30],
];
const hwCharts = {};

// The same fold as HwPoint::of in crates/server/src/state.rs.
function pushHw(h) {
  const gpus = h.gpus || [];
  view.hw.push({
    ts_ms: h.sampled_at_ms,
    cpu_percent: h.cpu.usage_percent,
    rss_bytes: h.process.rss_bytes,
    gpu_percent: gpus.length ? Math.max(0, ...gpus.map((g) => g.utilization_percent ?? 0)) : null,
    gpu_memory_bytes: gpus.length ? gpus.reduce((a, g) => a + (g.memory_used_bytes ?? 0), 0) : null,
  });
  // A day of samples: halve by keeping the larger of each pair.
  if (view.hw.length > 6000) {
    const out = [];
    for (let i = 0; i + 1 < view.hw.length; i += 2) {
      const a = view.hw[i], b = view.hw[i + 1], mx = (x, y) => (x == null ? y : y == null ? x : Math.max(x, y));
      out.push({ ts_ms: b.ts_ms, cpu_percent: mx(a.cpu_percent, b.cpu_percent), rss_bytes: mx(a.rss_bytes, b.rss_bytes), gpu_percent: mx(a.gpu_percent, b.gpu_percent), gpu_memory_bytes: mx(a.gpu_memory_bytes, b.gpu_memory_bytes) });
    }
    view.hw = out;
  }
  scheduleDraw();
}

// A time (ms) on the chosen x axis, through the batches' times.
function tsMapper(series) {
  const mode = $('#x-axis').value;
  const ts = series.ts_ms, t0 = ts.length ? ts[0] : 0;
  if (mode === 'wall') return (t) => t / 1000;
  if (mode === 'relative') return (t) => (t - t0) / 1000;
  const ys = mode === 'epoch' ? series.epoch : series.step;
  return (t) => {
    if (!ts.length) return null;
    if (t <= ts[0]) return ys[0];
    if (t >= ts[ts.length - 1]) return ys[ys.length - 1];
    let lo = 0, hi = ts.length - 1;
    while (lo < hi) { const mid = (lo + hi) >> 1; if (ts[mid] < t) lo = mid + 1; else hi = mid; }
    const a = lo - 1;
    return ys[a] + (ys[lo] - ys[a]) * (t - ts[a]) / Math.max(1, ts[lo] - ts[a]);
  };
}

function drawHardware() {
  const has = (k) => view.hw.some((p) => p[k] != null);
  $('#hw-charts-title').hidden = !view.hw.length;
  const toX = tsMapper(view.series);
  const logX = $('#x-scale').value === 'log';
  for (const [key, title, id, scale] of HW_METRICS) {
    const el = document.getElementById(id);
    el.hidden = !has(key);
    if (el.hidden) continue;
    if (!hwCharts[key]) {
      hwCharts[key] = new uPlot({
        title, width: el.clientWidth || 400, height: 160,
        series: [{}, { label: title, stroke: '#8be9fd', width: 1.5, points: { show: false }, spanGaps: true }],
        scales: { x: { time: $('#x-axis').value === 'wall', ...(logX && $('#x-axis').value !== 'wall' ? { distr: 3 } : {}) } },
        axes: [{ stroke: '#8a96a3', grid: { stroke: '#232b34' } }, { stroke: '#8a96a3', grid: { stroke: '#232b34' }, size: 62, values: (u, s) => s.map(yTick) }],
        legend: { show: false },
        cursor: { drag: { x: true, y: false } },
        hooks: { setSelect: [(u) => { if (u.select.width > 2) zoomTo(u.posToVal(u.select.left, 'x'), u.posToVal(u.select.left + u.select.width, 'x')); }] },
      }, [[], []], el);
      el.addEventListener('dblclick', () => { view.zoom = null; scheduleDraw(); });
    }
    const pts = view.hw.filter((p) => p[key] != null).map((p) => [toX(p.ts_ms), scale(p[key])]).filter(([x]) => x != null && (!logX || x > 0));
    hwCharts[key].setData([pts.map((p) => p[0]), pts.map((p) => p[1])]);
    if (view.zoom) hwCharts[key].setScale('x', { min: view.zoom[0], max: view.zoom[1] });
  }
}

let drawQueued = false;
function scheduleDraw() {
  if (drawQueued) return;
  drawQueued = true;
  requestAnimationFrame(() => { drawQueued = false; draw(); });
}

function evalPoints(split, key) {
  return view.evals.filter((e) => e.split === split).map((e) => [e.step, e[key]]);
}

// Columns of (x, y) pairs, each sorted by x, onto one x axis (uPlot's
// data): a merge that puts the columns' equal x values on one row, while a
// column's own repeated x (batches logged in the same millisecond) keeps a
// row each.
function joinColumns(cols) {
  // A log x axis has no place for zero or less (time since start begins at 0).
  if ($('#x-scale').value === 'log') cols = cols.map((c) => ({ xs: c.xs.map((x) => (x > 0 ? x : null)), ys: c.ys }));
  const heads = cols.map(() => 0);
  const ux = [], out = cols.map(() => []);
  for (;;) {
    let x = Infinity;
    for (let k = 0; k < cols.length; k++) {
      const xs = cols[k].xs;
      while (heads[k] < xs.length && (xs[heads[k]] == null || Number.isNaN(xs[heads[k]]))) heads[k]++;
      if (heads[k] < xs.length && xs[heads[k]] < x) x = xs[heads[k]];
    }
    if (x === Infinity) break;
    ux.push(x);
    cols.forEach((c, k) => {
      if (heads[k] < c.xs.length && c.xs[heads[k]] === x) { out[k].push(c.ys[heads[k]]); heads[k]++; } else out[k].push(null);
    });
  }
  return [ux, ...out];
}

function draw() {
  const s = view.series;
  const toX = xMapper(s);
  const logY = $('#y-scale').value === 'log';
  // A log axis has no place for zero or less.
  const y = (arr) => (logY ? arr.map((v) => (v != null && v > 0 ? v : null)) : arr);
  const ownX = s.step.map(toX);
  const cmps = [...view.compare.values()].map((c) => ({ ...c, xs: c.series.step.map(xMapper(c.series)) }));
  for (const [key, title, id] of METRICS) {
    if (charts[key] && charts[key].compareKey !== compareKey()) { charts[key].destroy(); delete charts[key]; }
    if (!charts[key]) charts[key] = makeChart(key, title, document.getElementById(id));
    // Evaluations land on the step after which they ran.
    const ev = (split) => {
      const pts = evalPoints(split, key);
      return { xs: pts.map((p) => toX(p[0])), ys: y(pts.map((p) => p[1])) };
    };
    const data = joinColumns([
      { xs: ownX, ys: y(s[key]) },
      { xs: ownX, ys: y(s[SM(key)]) },
      ev('val'),
      ev('test'),
      ...cmps.map((c) => ({ xs: c.xs, ys: y(c.series[SM(key)]) })),
    ]);
    charts[key].setData(data);
    // Keep the zoom while live points arrive (setData rescales to all).
    if (view.zoom) charts[key].setScale('x', { min: view.zoom[0], max: view.zoom[1] });
  }
  drawHardware();
}

async function fetchSeries(runId, query) {
  const q = new URLSearchParams({ smoothing: smoothing(), ...query });
  const res = await fetch(`/api/runs/${encodeURIComponent(runId)}/series?${q}`);
  if (!res.ok) throw new Error(`series of ${runId}: ${res.status}`);
  return fromServer(await res.json());
}

// The viewed run's whole series again (another smoothing, or after a
// resume cut it): the live batches that arrived meanwhile are kept.
function refetchSeries() {
  view.seriesReady = refetchNow();
  return view.seriesReady;
}

async function refetchNow() {
  const runId = view.runId;
  if (!runId) return;
  let fresh;
  try { fresh = await fetchSeries(runId, {}); } catch (_) { return; }
  if (view.runId !== runId) return;
  const old = view.series;
  const last = fresh.step.length ? fresh.step[fresh.step.length - 1] : -1;
  for (let i = 0; i < old.step.length; i++) {
    if (old.step[i] > last) pushRow(fresh, rowAt(old, i));
  }
  view.series = fresh;
  scheduleDraw();
  // The finer points of a zoom went with the old series: fetch them again.
  if (view.zoom) zoomTo(...view.zoom, false);
}

// Zoom: every chart to the range; on the step axis, the server's series for
// the range at full resolution (or min/max buckets of it) replaces the
// coarser points there, so no spike the buckets kept is lost and every
// point inside shows once zoomed in far enough.
async function zoomTo(min, max, wait = true) {
  view.zoom = [min, max];
  scheduleDraw();
  if ($('#x-axis').value !== 'step' || !view.runId) return;
  // A series asked again (another smoothing) first, so both agree.
  if (wait && view.seriesReady) await view.seriesReady;
  const from = Math.max(0, Math.floor(min)), to = Math.ceil(max);
  const runId = view.runId;
  let inner;
  try { inner = await fetchSeries(runId, { from, to, points: 2000 }); } catch (_) { return; }
  if (view.runId !== runId || inner.alpha !== view.series.alpha) return;
  view.series = mergeRange(view.series, inner, from, to);
  view.zoomFetches++;
  scheduleDraw();
}

function mergeRange(outer, inner, from, to) {
  const out = emptySeries(outer.alpha);
  out.ema = outer.ema;
  const copy = (src, i) => { out.step.push(src.step[i]); for (const k of ALL_KEYS) out[k].push(src[k][i]); };
  let i = 0;
  for (; i < outer.step.length && outer.step[i] < from; i++) copy(outer, i);
  for (let j = 0; j < inner.step.length; j++) copy(inner, j);
  for (; i < outer.step.length; i++) if (outer.step[i] > to) copy(outer, i);
  return out;
}

let smoothingTimer = null;
$('#smoothing').addEventListener('input', (e) => {
  $('#smoothing-value').textContent = Number(e.target.value).toFixed(2);
  // The server smooths every step; ask again once the slider rests.
  clearTimeout(smoothingTimer);
  smoothingTimer = setTimeout(() => { refetchSeries(); refetchCompare(); }, 150);
});
// Scales are fixed when a uPlot chart is made: remake the charts.
for (const id of ['#x-axis', '#y-scale', '#x-scale']) {
  $(id).addEventListener('change', () => {
    view.zoom = null;
    for (const k of Object.keys(charts)) { charts[k].destroy(); delete charts[k]; }
    for (const k of Object.keys(hwCharts)) { hwCharts[k].destroy(); delete hwCharts[k]; }
    scheduleDraw();
  });
}
window.addEventListener('resize', () => {
  for (const [key, , id] of METRICS) if (charts[key]) charts[key].setSize({ width: document.getElementById(id).clientWidth, height: 220 });
});

view.series = emptySeries();

// ---------- evaluation panels ----------
function renderSamples(e) {
  $('#samples').innerHTML = e.samples.map(sampleHtml).join('');
}

function renderEval(e) {
  $('#eval-title').textContent = `${e.split} after epoch ${e.epoch}: accuracy ${pct(e.accuracy)}, F1 ${fmt(e.f1_macro)}, loss ${fmt(e.loss)}, MSE ${fmt(e.mse, 5)}`;
  $('#confusion').innerHTML = confusionHtml(e.confusion);
  $('#per-class').innerHTML = perClassHtml(e.per_class);
}

function renderModel(m, source) {
  $('#model-source').textContent = source;
  $('#model-total').textContent = `${m.total_params.toLocaleString()} parameters`;
  $('#model-table').innerHTML = modelRowsHtml(m) +
    `<tr><th>total</th><th></th><th></th><th>${m.total_params.toLocaleString()}</th></tr>`;
}

// The model of the configuration in the form, before a run starts: the
// server builds its summary (shapes, parameters, activation memory) from
// the same table the run would use. Edits show it, a run's start replaces it.
let previewTimer = null;
async function previewModel() {
  let res, body;
  try {
    res = await fetch('/api/model', { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(formConfig()) });
    body = await res.json();
  } catch (_) { return; }
  if (!res.ok) {
    const bad = (body.errors || []).find((e) => e.field === 'kernels');
    if (bad) { $('#model-source').textContent = `the form's kernels: ${bad.message}`; $('#model-table').innerHTML = ''; $('#model-total').textContent = ''; }
    return;
  }
  view.modelFromRun = false;
  renderModel(body.model, `preview of the form's configuration · training needs about ${body.memory} of memory`);
}
function schedulePreview() {
  clearTimeout(previewTimer);
  previewTimer = setTimeout(previewModel, 200);
}

// ---------- form ----------
const form = $('#run-form');
form.addEventListener('input', schedulePreview);
for (const b of document.querySelectorAll('[data-preset]')) {
  b.addEventListener('click', () => {
    b.dataset.preset.split(',').forEach((v, i) => { form.elements[`k${i + 1}`].value = v; });
    schedulePreview();
  });
}

function formConfig() {
  const f = form.elements;
  const num = (name) => (f[name].value === '' ? undefined : Number(f[name].value));
  const cfg = {
    kernels: [1, 2, 3, 4].map((i) => Number(f[`k${i}`].value)),
    optimizer: f.optimizer.value,
    lr: num('lr'),
    batch_size: num('batch_size'),
    epochs: num('epochs'),
    backend: f.backend.value,
  };
  const lt = num('limit_train'), ls = num('limit_test');
  if (lt !== undefined) cfg.limit_train = lt;
  if (ls !== undefined) cfg.limit_test = ls;
  if (f.apply_label_overrides.checked) cfg.apply_label_overrides = true;
  // The fields under "More settings", made from the schema.
  for (const el of form.querySelectorAll('[data-field]')) {
    if (el.type === 'checkbox') { if (el.checked) cfg[el.name] = true; continue; }
    if (el.value === '') continue;
    cfg[el.name] = el.dataset.kind === 'choice' ? el.value : Number(el.value);
  }
  return cfg;
}

// The form's limits, defaults and help come from the server's one table of
// configuration fields (GET /api/config/schema); fields the form has no
// place for go under "More settings".
function applyField(el, field) {
  if (field.min !== undefined) el.min = field.min;
  if (field.max !== undefined && field.max < Number.MAX_SAFE_INTEGER) el.max = field.max;
  if (field.type === 'number' && !field.min_inclusive) el.step = 'any';
  el.title = `${field.help} (${field.range})`;
}

function extraField(field) {
  const label = document.createElement('label');
  label.textContent = `${field.name.replace(/_/g, ' ')} `;
  let el;
  if (field.type === 'choice') {
    el = document.createElement('select');
    for (const c of field.choices) {
      const o = document.createElement('option');
      o.value = o.textContent = c;
      el.appendChild(o);
    }
    el.value = field.default;
  } else {
    el = document.createElement('input');
    if (field.type === 'flag') { el.type = 'checkbox'; el.className = 'check'; el.checked = !!field.default; }
    else { el.type = 'number'; if (field.default !== null) el.value = field.default; else el.placeholder = field.type === 'device' ? 'auto' : 'all'; }
  }
  el.name = field.name;
  el.dataset.field = field.name;
  el.dataset.kind = field.type;
  applyField(el, field);
  label.appendChild(el);
  const error = document.createElement('div');
  error.className = 'error';
  error.dataset.error = field.name;
  return [label, error];
}

async function loadSchema() {
  let schema;
  try { schema = await (await fetch('/api/config/schema')).json(); } catch (_) { return; }
  const more = $('#more-fields');
  for (const field of schema.fields) {
    if (field.name === 'kernels') {
      [1, 2, 3, 4].forEach((i) => {
        const el = form.elements[`k${i}`];
        applyField(el, field);
        el.value = field.default[i - 1];
      });
      continue;
    }
    const el = form.elements[field.name];
    if (!el) { more.append(...extraField(field)); continue; }
    applyField(el, field);
    if (field.type === 'choice' && el.options.length <= 1 && field.name !== 'backend') {
      el.innerHTML = field.choices.map((c) => `<option>${esc(c)}</option>`).join('');
    }
    if (field.type === 'flag') el.checked = !!field.default;
    else if (field.type !== 'choice' && field.default !== null) el.value = field.default;
    else if (field.type === 'choice' && field.name !== 'backend') el.value = field.default;
  }
  if (!view.modelFromRun) previewModel();
}

function clearErrors() {
  for (const el of document.querySelectorAll('[data-error]')) el.textContent = '';
  for (const el of form.querySelectorAll('.invalid')) el.classList.remove('invalid');
  $('#form-message').textContent = '';
  $('#form-message').classList.remove('note');
}

form.addEventListener('submit', async (ev) => {
  ev.preventDefault();
  clearErrors();
  $('#start').disabled = true;
  try {
    const res = await fetch('/api/runs', { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(formConfig()) });
    const body = await res.json().catch(() => ({}));
    if (res.status === 201) {
      if (!view.follow) reconnectTo(true, null);
    } else if (res.status === 202) {
      $('#form-message').textContent = `queued (position ${body.position}): it starts when the runs before it end`;
      $('#form-message').classList.add('note');
      loadQueue();
    } else if (res.status === 400 && body.errors) {
      for (const err of body.errors) {
        const slot = document.querySelector(`[data-error="${err.field}"]`) || $('#form-message');
        slot.textContent = err.message;
        const names = err.field === 'kernels' ? ['k1', 'k2', 'k3', 'k4'] : [err.field];
        for (const n of names) if (form.elements[n]) form.elements[n].classList.add('invalid');
      }
    } else {
      $('#form-message').textContent = body.error || `the server answered ${res.status}`;
    }
  } catch (err) {
    $('#form-message').textContent = `cannot reach the server: ${err}`;
  } finally {
    $('#start').disabled = false;
  }
});

$('#stop').addEventListener('click', async () => {
  if (!view.runId) return;
  $('#stop').disabled = true;
  const res = await fetch(`/api/runs/${encodeURIComponent(view.runId)}/stop`, { method: 'POST' });
  if (res.status !== 202) log('warn', (await res.json().catch(() => ({}))).error || `stop: ${res.status}`);
});

async function loadBackends() {
  try {
    const list = await (await fetch('/api/backends')).json();
    const sel = form.elements.backend;
    for (const b of list) {
      const o = document.createElement('option');
      o.value = b.name;
      o.textContent = b.available ? `${b.name} (${b.device})` : `${b.name} — ${b.reason}`;
      o.disabled = !b.available;
      sel.appendChild(o);
    }
  } catch (_) { /* the reconnect banner says what's wrong */ }
}

// ---------- run history and comparison ----------
// The runs table (runs.js) is filtered, sorted and paged by the server;
// every summary it fetched is in `runs.known`.
const num = (v, d = 4) => (v == null ? '–' : fmt(v, d));

// The rows in view again, now (the refresh button, after an edit); events
// go through scheduleReload, at most twice a second.
function loadRuns() {
  return reloadRuns();
}

// After each list answer: what depends on the runs (the viewed run's name
// and tags, the trash, the queue, the compare panel, a sweep's overlay).
function runsLoaded() {
  invalidateColumns();
  showMeta();
  loadTrash();
  loadQueue();
  renderComparePanel();
  overlaySweep();
}

// A run the page shows (viewed, compared) whose summary no block held yet.
function needRun(id) {
  if (!id || runs.known.has(id)) return;
  fetchRun(id).then((r) => { if (r) { showMeta(); renderComparePanel(); scheduleDraw(); } });
}

// ---------- sweeps ----------
// The form's configuration with each combination of the grid, queued as
// one sweep; the page then shows the sweep's runs, overlaid as they come.
$('#sweep-start').addEventListener('click', async () => {
  $('#sweep-error').textContent = '';
  const specs = $('#sweep-grid').value.split('\n').map((l) => l.trim()).filter(Boolean);
  const random = $('#sweep-random').value === '' ? undefined : Number($('#sweep-random').value);
  try {
    const body = await send('POST', '/api/sweeps', { base: formConfig(), specs, random });
    // Follow what trains now: its start and end refresh the sweep's runs.
    if (!view.follow) reconnectTo(true, null);
    focusSweep(body.sweep_id);
    $('#form-message').textContent = `sweep ${body.sweep_id}: ${body.runs.length} runs queued`;
    $('#form-message').classList.add('note');
  } catch (err) { $('#sweep-error').textContent = err.message; }
});

// Shows a sweep: the runs filter on its id (`sweep:ID`) and every run of it
// overlaid, those that start later too.
function focusSweep(id) {
  view.sweepFocus = id;
  history.replaceState(null, '', `?sweep=${encodeURIComponent(id)}`);
  setFilter(`sweep:${id}`);
}

// While the filter still shows the focused sweep, its first runs overlaid.
async function overlaySweep() {
  if (!view.sweepFocus || shownQuery() !== `sweep:${view.sweepFocus}`) return;
  for (const r of await firstRuns(PALETTE.length)) if (!view.compare.has(r.run_id) && view.compare.size < PALETTE.length) addCompare(r.run_id);
}

// ---------- the run queue ----------
async function loadQueue() {
  let body;
  try { body = await send('GET', '/api/queue'); } catch (_) { return; }
  const items = body.queued || [];
  view.queue = items;
  $('#queue-box').hidden = !items.length;
  const show = (v) => (Array.isArray(v) ? v.join(',') : v);
  $('#queue-table').innerHTML = '<tr><th>#</th><th>run</th><th>kernels</th><th>opt</th><th>lr</th><th>batch</th><th>epochs</th><th>sweep</th><th>waiting for</th><th></th></tr>' +
    items.map((q) => `<tr data-queued="${esc(q.run_id)}"><td>${q.position}</td><td>${esc(q.run_id)}</td><td>${esc(show(q.config.kernels))}</td>` +
      `<td>${esc(q.config.optimizer)}</td><td>${esc(q.config.lr)}</td><td>${esc(q.config.batch_size)}</td><td>${esc(q.config.epochs)}</td><td>${esc(q.sweep || '')}</td><td class="muted">${esc(q.waiting_for || '')}</td>` +
      `<td>${q.position > 1 ? `<button type="button" class="link" data-up="${esc(q.run_id)}" title="start it sooner">↑</button>` : ''}` +
      `<button type="button" class="link" data-cancel="${esc(q.run_id)}">cancel</button></td></tr>`).join('');
}

$('#queue-table').addEventListener('click', async (ev) => {
  const up = ev.target.closest('[data-up]'), cancel = ev.target.closest('[data-cancel]');
  try {
    if (up) {
      const q = (view.queue || []).find((x) => x.run_id === up.dataset.up);
      await send('POST', `/api/queue/${encodeURIComponent(up.dataset.up)}/move`, { position: q.position - 1 });
    } else if (cancel) {
      await send('DELETE', `/api/queue/${encodeURIComponent(cancel.dataset.cancel)}`);
    } else return;
  } catch (err) { log('warn', err.message); }
  loadQueue();
});

function nextColor() {
  const used = new Set([...view.compare.values()].map((c) => c.color));
  return PALETTE.find((c) => !used.has(c)) || PALETTE[view.compare.size % PALETTE.length];
}

// Compared runs carry the server's series (min/max buckets of 600 points,
// from the index for finished runs), never the runs' whole logs.
const COMPARE_POINTS = 600;
async function addCompare(runId) {
  if (view.compare.has(runId)) return;
  const entry = { runId, color: nextColor(), series: emptySeries() };
  view.compare.set(runId, entry);
  needRun(runId);
  try { entry.series = await fetchSeries(runId, { points: COMPARE_POINTS }); } catch (err) { log('warn', err.message); }
  afterCompareChange();
}

function removeCompare(runId) {
  view.compare.delete(runId);
  afterCompareChange();
}

async function refetchCompare() {
  await Promise.all([...view.compare.values()].map(async (c) => {
    try { c.series = await fetchSeries(c.runId, { points: COMPARE_POINTS }); } catch (_) { /* keeps the old curve */ }
  }));
  scheduleDraw();
}

function afterCompareChange() {
  $('#compare-label').textContent = view.compare.size ? `${view.compare.size} run${view.compare.size > 1 ? 's' : ''} overlaid` : '';
  renderRuns();
  renderComparePanel();
  scheduleDraw();
}

// The compared runs (and the viewed one): their colours, the configuration
// fields that differ between them, their results, and the parallel
// coordinates of hyperparameters against test accuracy (every run the
// filter matches when fewer than two are compared).
function renderComparePanel() {
  const picked = [...view.compare.values()].map((c) => ({ run: runs.known.get(c.runId), color: c.color })).filter((x) => x.run);
  const viewed = runs.known.get(view.runId);
  if (viewed && !view.compare.has(view.runId)) picked.unshift({ run: viewed, color: '#4aa3ff' });
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

$('#compare-shown').addEventListener('click', async () => {
  for (const r of await firstRuns(PALETTE.length)) if (!view.compare.has(r.run_id)) addCompare(r.run_id);
});
$('#compare-clear').addEventListener('click', () => { view.compare.clear(); afterCompareChange(); });
$('#refresh-runs').addEventListener('click', loadRuns);
window.addEventListener('resize', () => { renderRuns(); redrawParallel(); });

// ---------- run management: name, tags, notes, trash ----------
function showMeta() {
  const form = $('#run-meta');
  const run = runs.known.get(view.runId);
  needRun(view.runId);
  form.hidden = !run;
  if (!run || form.dataset.run === run.run_id) return;
  form.dataset.run = run.run_id;
  $('#meta-run').textContent = run.run_id;
  $('#meta-report').href = `/api/runs/${encodeURIComponent(run.run_id)}/report.html`;
  // Only a run with a checkpoint has a model to download.
  $('#meta-model').hidden = !(run.checkpoint_epochs || []).length;
  $('#meta-model').href = `/api/runs/${encodeURIComponent(run.run_id)}/model.safetensors`;
  form.elements.name.value = run.name || '';
  form.elements.tags.value = (run.tags || []).join(', ');
  form.elements.notes.value = run.notes || '';
  $('#meta-error').textContent = '';
}

async function send(method, url, body) {
  const res = await fetch(url, { method, headers: { 'content-type': 'application/json' }, body: body && JSON.stringify(body) });
  const out = await res.json().catch(() => ({}));
  if (!res.ok) throw new Error(out.error || `the server answered ${res.status}`);
  return out;
}

$('#run-meta').addEventListener('submit', async (ev) => {
  ev.preventDefault();
  const f = ev.target.elements, id = ev.target.dataset.run;
  const tags = f.tags.value.split(',').map((t) => t.trim()).filter(Boolean);
  try {
    await send('PATCH', `/api/runs/${encodeURIComponent(id)}`, { name: f.name.value.trim() || null, tags, notes: f.notes.value });
    $('#meta-error').textContent = '';
    // Its summary anew (the table's rows may not hold it), then the rows in view.
    runs.known.delete(id);
    needRun(id);
    loadRuns();
  } catch (err) { $('#meta-error').textContent = err.message; }
});

$('#meta-delete').addEventListener('click', async () => {
  const id = $('#run-meta').dataset.run;
  try {
    await send('DELETE', `/api/runs/${encodeURIComponent(id)}`);
    $('#run-meta').dataset.run = '';
    runs.known.delete(id);
    if (view.compare.has(id)) removeCompare(id);
    reconnectTo(true, null);
    loadRuns();
  } catch (err) { $('#meta-error').textContent = err.message; }
});

async function loadTrash() {
  let trashed;
  try { trashed = await send('GET', '/api/trash'); } catch (_) { return; }
  $('#trash').hidden = !trashed.length;
  $('#trash-table').innerHTML = trashed.map((r) =>
    `<tr><td>${esc(r.name || r.run_id)}</td><td><button type="button" class="link" data-restore="${esc(r.run_id)}">restore</button></td></tr>`).join('');
}

$('#trash-table').addEventListener('click', async (ev) => {
  const b = ev.target.closest('[data-restore]');
  if (!b) return;
  try { await send('POST', `/api/trash/${encodeURIComponent(b.dataset.restore)}/restore`); } catch (err) { log('warn', err.message); }
  loadRuns();
});
$('#follow').addEventListener('click', () => reconnectTo(true, null));

// For the end-to-end test and the curious: the page's state from the console.
// `runs`: the table's state (known summaries, total, pending query); `parallel`:
// the parallel coordinates' lines and mode.
window.mnistMonitor = { view, charts, hwCharts, hardware, fleet, slurm, runs, parallel, openRun: (id) => reconnectTo(false, id) };

initRuns({
  viewed: () => view.runId,
  compare: () => view.compare,
  open: (id) => reconnectTo(false, id),
  toggleCompare: (id, on) => (on ? addCompare(id) : removeCompare(id)),
  loaded: runsLoaded,
});
initParallel({ open: (id) => reconnectTo(false, id) });
// After a cleanup: the runs that went leave the page (overlays, the viewed
// run), then the table, its count and disk line, and the trash anew.
initCleanup({
  cleaned: (trashed) => {
    for (const id of trashed) {
      runs.known.delete(id);
      if (view.compare.has(id)) removeCompare(id);
    }
    if (trashed.includes(view.runId)) reconnectTo(true, null);
    loadRuns();
    loadTrash();
  },
});
const sweepParam = new URLSearchParams(location.search).get('sweep');
if (sweepParam) { view.sweepFocus = sweepParam; $('#runs-filter').value = `sweep:${sweepParam}`; }
loadSchema();
loadBackends();
loadRuns();
connect();
startHardware();
startFleet();
startSlurm();
