// mnist-monitor page: one websocket per viewed run, the run's events drive
// every panel. Batch points are buffered and drawn at most once per frame,
// so the page keeps up with thousands of batches per second.

import { hardware, startHardware } from './hardware.js';
import { fleet, startFleet } from './fleet.js';

import { $, esc, fmt, pct, dur } from './util.js';

// ---------- run state ----------
const view = {
  follow: true,        // follow /ws/runs/current, or show one run
  runId: null,
  lastSeq: 0,
  ws: null,
  retry: 0,
  started: null,       // run_started payload
  status: null,
  last: null,          // last batch
  series: { step: [], loss: [], accuracy: [], f1_macro: [] },
  evals: [],           // eval events
  compare: null,       // {runId, series}
  phase: null,         // what a run does before its first batch
  alerts: 0,           // alerts seen for this run
  exited: false,       // the monitor said it is exiting
};

function resetRun(runId) {
  view.runId = runId;
  view.lastSeq = 0;
  view.started = null;
  view.status = null;
  view.last = null;
  view.series = { step: [], loss: [], accuracy: [], f1_macro: [] };
  view.evals = [];
  $('#log').innerHTML = '';
  view.alerts = 0;
  view.phase = null;
  $('#alert-count').hidden = true;
  $('#samples').innerHTML = '';
  $('#confusion').innerHTML = '';
  $('#per-class').innerHTML = '';
  $('#eval-title').textContent = '';
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
      const s = msg.series;
      view.series.step = s.loss.map((p) => p[0]);
      view.series.loss = s.loss.map((p) => p[1]);
      view.series.accuracy = s.accuracy.map((p) => p[1]);
      view.series.f1_macro = s.f1_macro.map((p) => p[1]);
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
      loadRuns();
      break;
    case 'batch':
      view.last = e;
      view.series.step.push(e.step);
      view.series.loss.push(e.loss);
      view.series.accuracy.push(e.accuracy);
      view.series.f1_macro.push(e.f1_macro);
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
      loadRuns();
      break;
  }
  scheduleStatus();
}

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
];

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

function makeChart(key, title, el) {
  const series = [
    {},
    { label: 'batch', stroke: 'rgba(74,163,255,0.28)', width: 1, points: { show: false } },
    { label: 'smoothed', stroke: '#4aa3ff', width: 2, points: { show: false } },
    { label: 'val', stroke: '#f5b041', width: 0, points: { show: true, size: 8, fill: '#f5b041' } },
    { label: 'test', stroke: '#3ecf8e', width: 0, points: { show: true, size: 9, fill: '#3ecf8e' } },
    { label: 'compare', stroke: '#c678dd', width: 2, points: { show: false } },
  ];
  const width = el.clientWidth || 400;
  return new uPlot({
    title, width, height: 220, series,
    scales: { x: { time: false } },
    axes: [
      { stroke: '#8a96a3', grid: { stroke: '#232b34' }, label: 'step' },
      { stroke: '#8a96a3', grid: { stroke: '#232b34' }, size: 52 },
    ],
    legend: { live: false },
    cursor: { drag: { x: true, y: false } },
  }, [[], [], [], [], [], []], el);
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
  for (const [key, title, id] of METRICS) {
    if (!charts[key]) charts[key] = makeChart(key, title, document.getElementById(id));
    const raw = view.series[key];
    const sm = smooth(raw, alpha);
    // Evaluations land on the step after which they ran; merge their x values in.
    const val = new Map(evalPoints('val', key));
    const test = new Map(evalPoints('test', key));
    const cmp = view.compare ? view.compare.series : null;
    const cmpMap = cmp ? new Map(cmp.step.map((x, i) => [x, cmp.smoothed[key][i]])) : null;
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
    const data = [
      x,
      pick(raw),
      pick(sm),
      x.map((s) => (val.has(s) ? val.get(s) : null)),
      x.map((s) => (test.has(s) ? test.get(s) : null)),
      x.map((s) => (cmpMap && cmpMap.has(s) ? cmpMap.get(s) : null)),
    ];
    charts[key].setData(data);
  }
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
  return cfg;
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
  const rows = runs.map((r) => {
    const cfg = r.config || {};
    const sel = r.run_id === view.runId ? ' class="selected"' : '';
    const checked = view.compare && view.compare.runId === r.run_id ? ' checked' : '';
    const id = esc(r.run_id);
    return `<tr${sel} data-run="${id}"><td><input type="checkbox" data-compare="${id}" title="overlay this run's curves"${checked}> ${id}</td>` +
      `<td>${esc(r.status)}</td><td>${esc((cfg.kernels || []).join(','))}</td><td>${esc(cfg.optimizer)}</td><td>${esc(r.epochs_completed)}</td><td>${pct(r.test_accuracy ?? r.val_accuracy)}</td></tr>`;
  });
  $('#runs-table').innerHTML = '<tr><th>run</th><th>status</th><th>kernels</th><th>opt</th><th>ep</th><th>acc</th></tr>' + rows.join('');
}

function smoothAll(series) {
  const alpha = Number($('#smoothing').value);
  return { loss: smooth(series.loss, alpha), accuracy: smooth(series.accuracy, alpha), f1_macro: smooth(series.f1_macro, alpha) };
}

async function setCompare(runId) {
  if (!runId) { view.compare = null; $('#compare-label').textContent = ''; scheduleDraw(); return; }
  // The server's folded series (min/max buckets), not the run's whole log.
  const body = await (await fetch(`/api/runs/${encodeURIComponent(runId)}/series`)).json();
  const series = {
    step: body.loss.map((p) => p[0]),
    loss: body.loss.map((p) => p[1]),
    accuracy: body.accuracy.map((p) => p[1]),
    f1_macro: body.f1_macro.map((p) => p[1]),
  };
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
$('#follow').addEventListener('click', () => reconnectTo(true, null));

// For the end-to-end test and the curious: the page's state from the console.
window.mnistMonitor = { view, charts, hardware, fleet };

loadBackends();
loadRuns();
connect();
startHardware();
startFleet();
