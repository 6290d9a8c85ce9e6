// The viewed run's events: one websocket per viewed run (/ws/runs/current
// while following, else /ws/runs/{id}), resumed after a drop from the last
// event applied; each event goes to the panels it drives. Also the Status
// card those events fill: progress, figures, the log, alerts.

import { $, fmt, pct, dur } from './util.js';
import { viewed } from './viewed.js';
import { emptySeries, fromServer, batchRow, pushRow, cutAfter } from './series.js';
import { scheduleDraw, smoothing, refetchSeries, liveLimit } from './charts.js';
import { pushHw, setHw } from './hwcharts.js';
import { renderEval, renderSamples, renderRunModel, renderProvenance, resetPanels } from './panels.js';
import { renderComparePanel } from './compare.js';
import { showMeta } from './manage.js';
import { renderRuns, scheduleReload, ranOn } from './runs.js';
import { showRunTask } from './slurm.js';
import { details, resetDetails, loadDetails } from './details.js';
import { renderSteer, controlApplied } from './steer.js';
import { resetLayers, layersEvent, layersCut } from './layers.js';
import { showDiagnosis, resetDiagnosis } from './diagnosis.js';

// The connection, and what the viewed run's events said.
export const stream = Object.seal({
  follow: true,    // follow /ws/runs/current, or show one run
  ws: null,        // the websocket in use
  lastSeq: 0,      // the last event applied: a reconnect resumes after it
  retry: 0,        // failed connections in a row (the backoff)
  exited: false,   // the monitor said it is exiting
  started: null,   // the run_started event
  status: null,    // running, paused, completed, failed, stopped, interrupted
  last: null,      // the last batch event
  phase: null,     // what the run does before its first batch
  alerts: 0,       // alerts seen for this run
});

let statusQueued = false;

function resetRun(runId) {
  viewed.runId = runId;
  showRunTask();
  stream.lastSeq = 0;
  stream.started = null;
  stream.status = null;
  stream.last = null;
  viewed.series = emptySeries(viewed.table, smoothing());
  viewed.evals = [];
  viewed.controls = [];
  viewed.zoom = null;
  setHw([]);
  $('#log').innerHTML = '';
  stream.alerts = 0;
  stream.phase = null;
  $('#alert-count').hidden = true;
  resetPanels();
  resetDetails();
  resetLayers();
  resetDiagnosis();
  renderStatus();
  renderRuns();
  scheduleDraw();
}

// ---------- websocket ----------
export function connect() {
  const proto = location.protocol === 'https:' ? 'wss' : 'ws';
  let path;
  if (stream.follow) {
    const q = viewed.runId && stream.lastSeq ? `?since=${stream.lastSeq}&run=${encodeURIComponent(viewed.runId)}` : '';
    path = `/ws/runs/current${q}`;
  } else {
    const q = stream.lastSeq ? `?since=${stream.lastSeq}` : '';
    path = `/ws/runs/${encodeURIComponent(viewed.runId)}${q}`;
  }
  const ws = new WebSocket(`${proto}://${location.host}${path}`);
  stream.ws = ws;
  ws.onopen = () => { stream.retry = 0; stream.exited = false; setConn('live', 'ok'); $('#banner').hidden = true; };
  ws.onmessage = (m) => handle(JSON.parse(m.data));
  ws.onclose = (e) => {
    if (stream.ws !== ws) return;          // replaced on purpose
    if (!stream.follow && stream.status && !training() && e.code === 1000) { setConn('run ended', ''); return; }
    const wait = Math.min(5000, 500 * 2 ** stream.retry++);
    setConn('disconnected', 'bad');
    const banner = $('#banner');
    banner.hidden = false;
    // Once the monitor said it was exiting (`train --serve` after its run),
    // the failed retries that follow are expected: keep saying so.
    if (e.reason === 'server exiting') stream.exited = true;
    banner.textContent = stream.exited
      ? `The monitor exited (its run is over): this page keeps what it showed, and reconnects if the monitor comes back (next try in ${(wait / 1000).toFixed(1)} s).`
      : `Disconnected from the server — reconnecting in ${(wait / 1000).toFixed(1)} s; nothing is lost, the page resumes from event ${stream.lastSeq}.`;
    setTimeout(connect, wait);
  };
}

// Follows what trains now (`follow`), or shows run `runId`.
export function reconnectTo(follow, runId) {
  stream.follow = follow;
  const old = stream.ws;
  stream.ws = null;
  if (old) old.close();
  resetRun(runId);
  $('#follow').hidden = follow;
  // Its name, tags and notes, and the compare panel, at once (its summary
  // fetched when no block of the table held it).
  showMeta();
  renderComparePanel();
  connect();
}

// Whether a trainer holds the viewed run (running or paused).
const training = () => stream.status === 'running' || stream.status === 'paused';

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
      viewed.series = fromServer(viewed.table, msg.series);
      setHw(msg.hardware || []);
      // The snapshot is smoothed with the server's default: ask for ours.
      if (viewed.series.alpha !== smoothing()) refetchSeries();
      if (msg.last_batch) stream.last = msg.last_batch;
      stream.lastSeq = msg.last_seq;
      // The server's word on the status: a log without `run_finished`
      // is a dead run ("interrupted"), whatever its `run_started` said.
      stream.status = msg.status || (msg.live ? 'running' : 'interrupted');
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
      if (msg.seq <= stream.lastSeq) return;   // never apply an event twice
      stream.lastSeq = msg.seq;
      apply(msg);
  }
}

function apply(e) {
  switch (e.type) {
    case 'run_started':
      stream.started = e;
      stream.status = 'running';
      // A resume re-trains the steps after its checkpoint: keep one value per step.
      if (e.resumed_from_step != null) { cutRun(e.resumed_from_step); layersCut(e.resumed_from_step); }
      $('#run-title').textContent = `run ${e.run_id}`;
      renderRunModel(e);
      renderProvenance(e);
      scheduleReload();
      loadDetails();
      break;
    case 'batch':
      stream.last = e;
      pushRow(viewed.table, viewed.series, batchRow(viewed.table, e), liveLimit());
      scheduleDraw();
      break;
    case 'eval':
      viewed.evals.push(e);
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
      loadDetails();
      break;
    case 'control':
      // Pause, resume, a new rate, …: a mark on every chart, a line in the log.
      viewed.controls.push(e);
      if (e.action === 'pause') stream.status = 'paused';
      else if (e.action === 'resume' && stream.status === 'paused') stream.status = 'running';
      log('control', e.message);
      controlApplied(e);
      scheduleDraw();
      break;
    case 'log':
      log(e.level, e.message);
      break;
    case 'phase':
      // Shown in Status until the first batch (GPU kernels compiling).
      stream.phase = e.phase === 'compiling' ? e.message : null;
      log('info', e.message);
      break;
    case 'alert':
      showAlert(e);
      break;
    case 'hardware':
      pushHw(e);
      break;
    case 'layers':
    case 'histograms':
      // Per-layer statistics (the Layers panel): not in the snapshot, live after it.
      layersEvent(e);
      return;
    case 'run_finished':
      stream.status = e.status;
      if (e.error) log('error', e.error);
      notifyEnd(e);
      scheduleReload();
      loadDetails();
      break;
  }
  scheduleStatus();
}

// Drops what came after `step`, which a resumed run trains again. The
// moving average went through the dropped steps: computed again when the
// page holds every step, else the server's.
function cutRun(step) {
  if (!cutAfter(viewed.table, viewed.series, step)) refetchSeries();
  viewed.evals = viewed.evals.filter((e) => e.step <= step);
  viewed.controls = viewed.controls.filter((e) => e.step <= step);
  if (stream.last && stream.last.step > step) stream.last = null;
}

// A browser notification when a run ends, if the user allowed them (and
// only for an end seen live, not one replayed from a run's history).
function notifyEnd(e) {
  if (!('Notification' in window) || Notification.permission !== 'granted') return;
  if (Date.now() - e.ts_ms > 60000) return;
  const acc = e.test_accuracy != null ? `, test accuracy ${pct(e.test_accuracy)}` : '';
  new Notification(`mnist-monitor: run ${e.status}`, { body: `${viewed.runId}${acc}${e.error ? ` — ${e.error}` : ''}`, tag: `run-${viewed.runId}` });
}

// Alerts: a banner for the newest, every one in the log, a count in Status.
function showAlert(e) {
  stream.alerts += 1;
  showDiagnosis(e);
  const count = $('#alert-count');
  count.hidden = false;
  count.textContent = `${stream.alerts} alert${stream.alerts > 1 ? 's' : ''}`;
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

// A line in the run's log (newest first).
export function log(level, text) {
  const div = document.createElement('div');
  div.className = level;
  div.textContent = `${level}: ${text}`;
  $('#log').prepend(div);
}

// ---------- status ----------
export function scheduleStatus() {
  if (statusQueued) return;
  statusQueued = true;
  requestAnimationFrame(() => { statusQueued = false; renderStatus(); });
}

function renderStatus() {
  const s = stream.started, b = stream.last;
  const cfg = s ? s.config : null;
  const pill = $('#run-status');
  pill.textContent = stream.status || '';
  pill.className = 'pill ' + ({ running: 'ok', paused: 'warn', completed: 'ok', failed: 'bad', stopped: 'warn', interrupted: 'warn' }[stream.status] || '');
  $('#stop').disabled = !(training() && (stream.follow || details.data?.can_control));
  $('#s-backend').textContent = s ? `${ranOn(s)} · ${s.device}` : '–';
  // What was picked and why (`auto picked cuda:1 (…) over cuda:0 (…)`).
  $('#s-backend').title = s?.device_reason || '';
  const phase = training() && !b ? stream.phase : null;
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
    // elapsed_s counts from this attempt's start: a resume's or a fork's
    // steps before it were trained by another.
    const from = s.resumed_from_step ?? s.parent?.step ?? 0;
    const rate = Math.max(0, done - from) / Math.max(b.elapsed_s, 1e-9);
    $('#s-eta').textContent = stream.status === 'running' ? dur((total - done) / rate) : '–';
    $('#s-ips').textContent = Math.round(b.images_per_sec).toLocaleString();
    $('#s-loss').textContent = fmt(b.epoch_loss);
  }
  const lastVal = [...viewed.evals].reverse().find((e) => e.split === 'val');
  const lastTest = [...viewed.evals].reverse().find((e) => e.split === 'test');
  $('#s-val').textContent = lastVal ? pct(lastVal.accuracy) : '–';
  $('#s-test').textContent = lastTest ? pct(lastTest.accuracy) : '–';
  renderSteer();
}

// The buttons of the Status card: Stop, follow, notifications, an alert's dismissal.
export function initStream() {
  $('#stop').addEventListener('click', async () => {
    if (!viewed.runId) return;
    $('#stop').disabled = true;
    const res = await fetch(`/api/runs/${encodeURIComponent(viewed.runId)}/stop`, { method: 'POST' });
    if (res.status !== 202) log('warn', (await res.json().catch(() => ({}))).error || `stop: ${res.status}`);
  });
  $('#follow').addEventListener('click', () => reconnectTo(true, null));
  $('#alert-dismiss').addEventListener('click', () => { $('#alert-banner').hidden = true; });
  if ('Notification' in window && Notification.permission === 'default') {
    $('#notify').hidden = false;
    $('#notify').addEventListener('click', async () => {
      await Notification.requestPermission();
      $('#notify').hidden = Notification.permission !== 'default';
    });
  }
}
