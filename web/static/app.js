// mnist-monitor page: one websocket per viewed run, the run's events drive
// every panel. Batch points are buffered and drawn at most once per frame,
// so the page keeps up with thousands of batches per second.

import { hardware, startHardware } from './hardware.js';
import { fleet, startFleet } from './fleet.js';

import { $, esc, fmt, pct, dur } from './util.js';

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
  series: emptySeries(),
  evals: [],           // eval events
  compare: null,       // {runId, series}
  phase: null,         // what a run does before its first batch
  alerts: 0,           // alerts seen for this run
  zoom: null,          // [min, max] of the x axis the user zoomed to
  zoomFetches: 0,      // finer series fetched for a zoom (the e2e test reads it)
  exited: false,       // the monitor said it is exiting
};

function resetRun(runId) {
  view.runId = runId;
  view.lastSeq = 0;
  view.started = null;
  view.status = null;
  view.last = null;
  view.series = emptySeries();
  view.evals = [];
  view.zoom = null;
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
      view.series = alignSeries(msg.series);
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
      loadRuns();
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
      renderModel(e.model);
      renderProvenance(e);
      loadRuns();
      break;
    case 'batch':
      view.last = e;
      pushBatch(view.series, e);
      scheduleDraw();
      break;
    case 'eval':
      view.evals.push(e);
      renderEval(e);
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
    case 'run_finished':
      view.status = e.status;
      if (e.error) log('error', e.error);
      notifyEnd(e);
      loadRuns();
      break;
  }
  scheduleStatus();
}

// The command that trains this run again (same config, same seed), and
// what produced it: version, commit, host, the command line, data hashes.
function reproduceCommand(config) {
  const flags = Object.entries(config || {}).flatMap(([k, v]) => {
    const flag = `--${k.replace(/_/g, '-')}`;
    if (v === null || v === false) return [];
    if (v === true) return [flag];
    return [flag, Array.isArray(v) ? v.join(',') : String(v)];
  });
  return ['mnist-monitor', 'train', ...flags].join(' ');
}

function renderProvenance(e) {
  $('#provenance').hidden = false;
  $('#repro-cmd').textContent = reproduceCommand(e.config);
  const p = e.provenance;
  const rows = p ? [
    ['version', `${p.version}${p.git_commit ? ` (${p.git_commit.slice(0, 12)}${p.git_dirty ? ', uncommitted changes' : ''})` : ''}`],
    ['built with', `Burn ${p.burn_version}${p.features.length ? `, ${p.features.join(', ')}` : ''}`],
    ['host', p.host],
    ['started by', p.command_line.join(' ')],
    ['data', Object.keys(p.data_sha256 || {}).length ? 'MNIST, SHA-256 checked' : 'not checked (--skip-verify)'],
  ] : [['provenance', 'not recorded (a run from an older version)']];
  $('#prov-info').innerHTML = rows.map(([k, v]) => `<dt>${esc(k)}</dt><dd>${esc(v)}</dd>`).join('');
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

// Drops the points after `step`, which a resumed run trains again.
function cutAfter(step) {
  const keep = view.series.step.findIndex((x) => x > step);
  if (keep >= 0) for (const k of Object.keys(view.series)) view.series[k].length = keep;
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
  $('#s-backend').textContent = s ? `${s.backend} · ${s.device}` : '–';
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

function emptySeries() {
  const s = { step: [] };
  for (const k of SERIES_KEYS) s[k] = [];
  return s;
}

function pushBatch(series, e) {
  series.step.push(e.step);
  series.loss.push(e.loss);
  series.accuracy.push(e.accuracy);
  series.f1_macro.push(e.f1_macro);
  series.lr.push(e.lr);
  series.images_per_sec.push(e.images_per_sec);
  series.epoch.push(e.epoch - 1 + e.batch / Math.max(1, e.batches));
  series.ts_ms.push(e.ts_ms);
}

// The server's min/max buckets keep each series' own extremes, so their
// steps differ: put them on the union of steps, null where a series has no
// point (lines span the gaps), and the x axes (epoch, time) interpolated.
function alignSeries(body) {
  const steps = new Set();
  for (const k of SERIES_KEYS) for (const p of body[k] || []) steps.add(p[0]);
  const out = { step: [...steps].sort((a, b) => a - b) };
  for (const k of SERIES_KEYS) {
    const m = new Map((body[k] || []).map((p) => [p[0], p[1]]));
    out[k] = out.step.map((x) => (m.has(x) ? m.get(x) : null));
  }
  for (const k of ['epoch', 'ts_ms']) out[k] = fillByInterpolation(out.step, out[k]);
  return out;
}

function fillByInterpolation(xs, ys) {
  const known = [];
  ys.forEach((y, i) => { if (y != null) known.push(i); });
  if (!known.length) return ys;
  // One pass: `k` is the first known index after i (the gaps are walked in order).
  let k = 0;
  return ys.map((y, i) => {
    if (y != null) return y;
    while (k < known.length && known[k] < i) k++;
    if (k === 0) return ys[known[0]];
    if (k === known.length) return ys[known[known.length - 1]];
    const a = known[k - 1], b = known[k];
    return ys[a] + (ys[b] - ys[a]) * (xs[i] - xs[a]) / (xs[b] - xs[a]);
  });
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

function smooth(values, alpha) {
  // TensorBoard-style debiased exponential moving average.
  const out = new Array(values.length);
  let last = 0, weight = 0;
  for (let i = 0; i < values.length; i++) {
    const v = values[i];
    if (v == null || !isFinite(v)) { out[i] = null; continue; }
    last = last * alpha + (1 - alpha) * v;
    weight = weight * alpha + (1 - alpha);
    out[i] = last / weight;
  }
  return out;
}

// y ticks with three significant digits: uPlot's default rounds a learning
// rate's 0.0015 and 0.002 to the same "0.002".
function yTick(v) {
  if (v == null) return '';
  return Math.abs(v) >= 1000 ? Math.round(v).toLocaleString() : String(Number(v.toPrecision(3)));
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
    { label: 'compare', stroke: '#c678dd', width: 2, points: { show: false } },
  ].map((s, i) => (i ? { ...s, spanGaps: true } : s));
  const xLabel = { step: 'step', epoch: 'epoch', wall: 'time', relative: 'time since start' }[mode];
  const xValues = mode === 'relative' ? (u, splits) => splits.map((v) => dur(v)) : undefined;
  const width = el.clientWidth || 400;
  const chart = new uPlot({
    title, width, height: 220, series,
    scales: { x: { time: mode === 'wall' }, y: logY ? { distr: 3 } : {} },
    axes: [
      { stroke: '#8a96a3', grid: { stroke: '#232b34' }, label: xLabel, ...(xValues ? { values: xValues } : {}) },
      { stroke: '#8a96a3', grid: { stroke: '#232b34' }, size: 62, values: (u, splits) => splits.map(yTick) },
    ],
    legend: { live: false },
    cursor: { drag: { x: true, y: false } },
    hooks: { setSelect: [(u) => { if (u.select.width > 2) zoomTo(u.posToVal(u.select.left, 'x'), u.posToVal(u.select.left + u.select.width, 'x')); }] },
  }, [[], [], [], [], [], []], el);
  // Double-click: back to the whole run.
  el.addEventListener('dblclick', () => { view.zoom = null; scheduleDraw(); });
  return chart;
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

function draw() {
  const alpha = Number($('#smoothing').value);
  const xs = view.series.step;
  const toX = xMapper(view.series);
  const cmpX = view.compare ? xMapper(view.compare.series) : null;
  const logY = $('#y-scale').value === 'log';
  // A log axis has no place for zero or less.
  const y = (arr) => (logY ? arr.map((v) => (v != null && v > 0 ? v : null)) : arr);
  for (const [key, title, id] of METRICS) {
    if (!charts[key]) charts[key] = makeChart(key, title, document.getElementById(id));
    const raw = view.series[key];
    const sm = smooth(raw, alpha);
    // Evaluations land on the step after which they ran; merge their x values in.
    const val = new Map(evalPoints('val', key));
    const test = new Map(evalPoints('test', key));
    const cmp = view.compare ? view.compare.series : null;
    const cmpMap = cmp && cmp.smoothed[key] ? new Map(cmp.step.map((x, i) => [x, cmp.smoothed[key][i]])) : null;
    let x = xs;
    const extra = [...val.keys(), ...test.keys(), ...(cmp ? cmp.step : [])].filter((s) => !xsHas(xs, s));
    let idx = null;
    if (extra.length) {
      const all = Array.from(new Set([...xs, ...extra])).sort((a, b) => a - b);
      const pos = new Map(xs.map((s, i) => [s, i]));
      idx = all.map((s) => pos.get(s));
      x = all;
    }
    const pick = (arr) => (idx ? idx.map((i) => (i == null ? null : arr[i])) : arr);
    // Compare points sit at their own run's x (its own time, its own epochs).
    const own = new Set([...xs, ...val.keys(), ...test.keys()]);
    const xv = x.map((s) => (own.has(s) || !cmpX ? toX(s) : cmpX(s)));
    const order = xv.map((_, i) => i).sort((a, b) => xv[a] - xv[b]);
    const sorted = (arr) => order.map((i) => arr[i]);
    const data = [
      sorted(xv),
      sorted(y(pick(raw))),
      sorted(y(pick(sm))),
      sorted(y(x.map((s) => (val.has(s) ? val.get(s) : null)))),
      sorted(y(x.map((s) => (test.has(s) ? test.get(s) : null)))),
      sorted(y(x.map((s) => (cmpMap && cmpMap.has(s) ? cmpMap.get(s) : null)))),
    ];
    charts[key].setData(data);
    // Keep the zoom while live points arrive (setData rescales to all).
    if (view.zoom) charts[key].setScale('x', { min: view.zoom[0], max: view.zoom[1] });
  }
}

// Zoom: every chart to the range; on the step axis, the server's series for
// the range at full resolution (or min/max buckets of it) replaces the
// coarser points there, so no spike the buckets kept is lost and every
// point inside shows once zoomed in far enough.
async function zoomTo(min, max) {
  view.zoom = [min, max];
  scheduleDraw();
  if ($('#x-axis').value !== 'step' || !view.runId) return;
  const from = Math.max(0, Math.floor(min)), to = Math.ceil(max);
  const runId = view.runId;
  let body;
  try {
    body = await (await fetch(`/api/runs/${encodeURIComponent(runId)}/series?from=${from}&to=${to}&points=2000`)).json();
  } catch (_) { return; }
  if (view.runId !== runId || !body.loss) return;
  view.series = mergeRange(view.series, alignSeries(body), from, to);
  view.zoomFetches++;
  scheduleDraw();
}

function mergeRange(outer, inner, from, to) {
  const out = emptySeries();
  const copy = (src, i) => { out.step.push(src.step[i]); for (const k of SERIES_KEYS) out[k].push(src[k][i]); };
  let i = 0;
  for (; i < outer.step.length && outer.step[i] < from; i++) copy(outer, i);
  for (let j = 0; j < inner.step.length; j++) copy(inner, j);
  for (; i < outer.step.length; i++) if (outer.step[i] > to) copy(outer, i);
  return out;
}

function xsHas(xs, s) {
  // xs is sorted: binary search.
  let lo = 0, hi = xs.length - 1;
  while (lo <= hi) {
    const mid = (lo + hi) >> 1;
    if (xs[mid] === s) return true;
    if (xs[mid] < s) lo = mid + 1; else hi = mid - 1;
  }
  return false;
}

$('#smoothing').addEventListener('input', (e) => {
  $('#smoothing-value').textContent = Number(e.target.value).toFixed(2);
  if (view.compare) view.compare.series.smoothed = smoothAll(view.compare.series);
  scheduleDraw();
});
// Scales are fixed when a uPlot chart is made: remake the charts.
for (const id of ['#x-axis', '#y-scale']) {
  $(id).addEventListener('change', () => {
    view.zoom = null;
    for (const k of Object.keys(charts)) { charts[k].destroy(); delete charts[k]; }
    scheduleDraw();
  });
}
window.addEventListener('resize', () => {
  for (const [key, , id] of METRICS) if (charts[key]) charts[key].setSize({ width: document.getElementById(id).clientWidth, height: 220 });
});

// ---------- evaluation panels ----------
function renderSamples(e) {
  const box = $('#samples');
  box.innerHTML = '';
  for (const s of e.samples) {
    const ok = s.label === s.predicted;
    const div = document.createElement('div');
    div.className = 'sample ' + (ok ? 'right' : 'wrong');
    div.title = `test #${s.index}: label ${s.label}, predicted ${s.predicted} (${(100 * s.confidence).toFixed(1)}%)`;
    div.innerHTML = `<img alt="digit ${esc(s.label)}" src="data:image/png;base64,${esc(s.png_base64)}"><div>${esc(s.predicted)} · ${(100 * s.confidence).toFixed(0)}%</div>`;
    box.appendChild(div);
  }
}

function renderEval(e) {
  $('#eval-title').textContent = `${e.split} after epoch ${e.epoch}: accuracy ${pct(e.accuracy)}, F1 ${fmt(e.f1_macro)}, loss ${fmt(e.loss)}, MSE ${fmt(e.mse, 5)}`;
  const max = Math.max(1, ...e.confusion.flatMap((row, t) => row.filter((_, p) => p !== t)));
  const diagMax = Math.max(1, ...e.confusion.map((row, t) => row[t]));
  let html = '<tr><th></th>' + [...Array(10).keys()].map((k) => `<th>${k}</th>`).join('') + '</tr>';
  e.confusion.forEach((row, t) => {
    html += `<tr><th>${t}</th>` + row.map((n, p) => {
      const a = p === t ? 0.15 + 0.7 * (n / diagMax) : n ? 0.15 + 0.85 * (n / max) : 0;
      const color = p === t ? `rgba(62,207,142,${a})` : `rgba(255,93,93,${a})`;
      return `<td style="background:${color}" title="true ${t}, predicted ${p}: ${n}">${n || ''}</td>`;
    }).join('') + '</tr>';
  });
  $('#confusion').innerHTML = html;
  $('#per-class').innerHTML = '<tr><th>class</th><th>precision</th><th>recall</th><th>F1</th><th>n</th></tr>' +
    e.per_class.map((c) => `<tr><td>${esc(c.class)}</td><td>${fmt(c.precision, 3)}</td><td>${fmt(c.recall, 3)}</td><td>${fmt(c.f1, 3)}</td><td>${esc(c.support)}</td></tr>`).join('');
}

function renderModel(m) {
  $('#model-total').textContent = `${m.total_params.toLocaleString()} parameters`;
  $('#model-table').innerHTML = '<tr><th>layer</th><th>kind</th><th>output</th><th>params</th></tr>' +
    m.layers.map((l) => `<tr><td>${esc(l.name)}</td><td style="text-align:left">${esc(l.kind)}</td><td>${esc(l.output_shape.join('×'))}</td><td>${l.params.toLocaleString()}</td></tr>`).join('') +
    `<tr><th>total</th><th></th><th></th><th>${m.total_params.toLocaleString()}</th></tr>`;
}

// ---------- form ----------
const form = $('#run-form');
for (const b of document.querySelectorAll('[data-preset]')) {
  b.addEventListener('click', () => {
    b.dataset.preset.split(',').forEach((v, i) => { form.elements[`k${i + 1}`].value = v; });
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
    else { el.type = 'number'; if (field.default !== null) el.value = field.default; else el.placeholder = 'all'; }
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
}

function clearErrors() {
  for (const el of document.querySelectorAll('[data-error]')) el.textContent = '';
  for (const el of form.querySelectorAll('.invalid')) el.classList.remove('invalid');
  $('#form-message').textContent = '';
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
async function loadRuns() {
  let runs;
  try { runs = await (await fetch('/api/runs')).json(); } catch (_) { return; }
  view.runs = runs;
  const filter = $('#runs-filter').value.trim().toLowerCase();
  const matches = (r) => !filter || [r.run_id, r.name || '', ...(r.tags || [])].some((t) => t.toLowerCase().includes(filter));
  const rows = runs.filter(matches).map((r) => {
    const cfg = r.config || {};
    const sel = r.run_id === view.runId ? ' class="selected"' : '';
    const checked = view.compare && view.compare.runId === r.run_id ? ' checked' : '';
    const id = esc(r.run_id);
    const title = r.name ? `${esc(r.name)} <span class="muted">${id}</span>` : id;
    const tags = (r.tags || []).map((t) => `<span class="tag">${esc(t)}</span>`).join('');
    return `<tr${sel} data-run="${id}"><td><input type="checkbox" data-compare="${id}" title="overlay this run's curves"${checked}> ${title} ${tags}</td>` +
      `<td>${esc(r.status)}</td><td>${esc((cfg.kernels || []).join(','))}</td><td>${esc(cfg.optimizer)}</td><td>${esc(r.epochs_completed)}</td><td>${pct(r.test_accuracy ?? r.val_accuracy)}</td></tr>`;
  });
  showMeta();
  loadTrash();
  $('#runs-table').innerHTML = '<tr><th>run</th><th>status</th><th>kernels</th><th>opt</th><th>ep</th><th>acc</th></tr>' + rows.join('');
}

function smoothAll(series) {
  const alpha = Number($('#smoothing').value);
  const out = {};
  for (const [key] of METRICS) out[key] = smooth(series[key], alpha);
  return out;
}

async function setCompare(runId) {
  if (!runId) { view.compare = null; $('#compare-label').textContent = ''; scheduleDraw(); return; }
  // The server's folded series (min/max buckets), not the run's whole log.
  const body = await (await fetch(`/api/runs/${encodeURIComponent(runId)}/series`)).json();
  const series = alignSeries(body);
  series.smoothed = smoothAll(series);
  view.compare = { runId, series };
  $('#compare-label').textContent = `purple: ${runId}`;
  scheduleDraw();
}

$('#runs-table').addEventListener('click', (ev) => {
  const box = ev.target.closest('[data-compare]');
  if (box) {
    for (const other of document.querySelectorAll('[data-compare]')) if (other !== box) other.checked = false;
    setCompare(box.checked ? box.dataset.compare : null);
    return;
  }
  const row = ev.target.closest('[data-run]');
  if (row) reconnectTo(false, row.dataset.run);
});
$('#refresh-runs').addEventListener('click', loadRuns);
$('#runs-filter').addEventListener('input', loadRuns);

// ---------- run management: name, tags, notes, trash ----------
function showMeta() {
  const form = $('#run-meta');
  const run = (view.runs || []).find((r) => r.run_id === view.runId);
  form.hidden = !run;
  if (!run || form.dataset.run === run.run_id) return;
  form.dataset.run = run.run_id;
  $('#meta-run').textContent = run.run_id;
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
    loadRuns();
  } catch (err) { $('#meta-error').textContent = err.message; }
});

$('#meta-delete').addEventListener('click', async () => {
  const id = $('#run-meta').dataset.run;
  try {
    await send('DELETE', `/api/runs/${encodeURIComponent(id)}`);
    $('#run-meta').dataset.run = '';
    reconnectTo(true, null);
    loadRuns();
  } catch (err) { $('#meta-error').textContent = err.message; }
});

async function loadTrash() {
  let runs;
  try { runs = await send('GET', '/api/trash'); } catch (_) { return; }
  $('#trash').hidden = !runs.length;
  $('#trash-table').innerHTML = runs.map((r) =>
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
window.mnistMonitor = { view, charts, hardware, fleet };

loadSchema();
loadBackends();
loadRuns();
connect();
startHardware();
startFleet();
