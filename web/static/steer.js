// Steering the viewed run while it trains here (POST /api/runs/{id}/control):
// the Steer strip's Pause/Resume, a new learning rate (and schedule), an
// evaluation, a checkpoint and a stop after the epoch, each applied by the
// trainer at its next batch boundary: the strip says what was asked until
// the run's `control` event says it was done, and the server's refusal
// (400, 409) in red. And the Resume button of an interrupted, stopped or
// failed run with a checkpoint (POST /api/runs/{id}/resume), after which
// the page follows the run as it goes on.

import { $ } from './util.js';
import { viewed } from './viewed.js';
import { ask } from './api.js';
import { details, onDetails } from './details.js';
import { scheduleReload } from './runs.js';
import { stream, reconnectTo, scheduleStatus } from './stream.js';
import { canSteer, canResumeRun, controlBody, pendingText, refusalText } from './steerlib.js';

const st = Object.seal({
  runId: null,     // the run the strip's messages are about
  pending: null,   // {action} accepted and not yet applied
  pendingTimer: null,
  opening: null,   // {id, from, seq}: a run waited for to go live, then opened
});

// Whether this server trains the viewed run: its details say; before they
// come, a followed run (the current one) does.
function controlsHere() {
  if (details.runId === viewed.runId && details.data) return details.data.can_control;
  return stream.follow;
}

function say(el, text, kind = '') {
  el.textContent = text;
  el.className = `steer-msg ${kind}`;
}

export function renderSteer() {
  if (st.runId !== viewed.runId) {
    st.runId = viewed.runId;
    st.pending = null;
    say($('#steer-msg'), '');
    say($('#resume-msg'), '');
    // Another run: the strip's values were for the old one.
    $('#steer-lr').classList.remove('invalid');
    $('#steer-lr').value = '';
    $('#steer-schedule').value = '';
    $('#steer-split').value = 'val';
  }
  const status = stream.status;
  $('#steer').hidden = !viewed.runId || !canSteer(status, controlsHere());
  const paused = status === 'paused';
  const toggle = $('#steer-pause');
  toggle.textContent = paused ? '▶ Resume' : '‖ Pause';
  toggle.title = paused ? 'go on training' : 'hold the run between batches (its device stays its own)';
  toggle.classList.toggle('primary', paused);
  toggle.disabled = !!st.pending && (st.pending.action === 'pause' || st.pending.action === 'resume');
  const lr = stream.last?.lr;
  $('#steer-lr').placeholder = lr != null ? String(Number(lr.toPrecision(3))) : 'new rate';
  $('#steer-lr').title = lr != null ? `the new learning rate (now ${Number(lr.toPrecision(3))})` : 'the new learning rate';
  const resumable = !!viewed.runId && details.runId === viewed.runId && canResumeRun(status, details.data?.can_resume);
  const opening = !!st.opening && st.opening.id === viewed.runId;
  $('#resume-box').hidden = !(resumable || opening);
  $('#resume-run').disabled = opening;
  const ckpts = details.data?.checkpoint_epochs || [];
  $('#resume-note').textContent = opening ? '' : ckpts.length
    ? `the run is ${status}: it continues from its newest checkpoint (epoch ${ckpts[ckpts.length - 1]}), its log and steps going on`
    : `the run is ${status}: it continues from its newest checkpoint`;
}

// A control applied by the trainer (live or replayed): what the strip
// said was asked is done.
export function controlApplied(e) {
  if (!st.pending || st.pending.action !== e.action || st.runId !== viewed.runId) return;
  clearTimeout(st.pendingTimer);
  st.pending = null;
  say($('#steer-msg'), `✓ ${e.message}`, 'done');
  if (e.action === 'set_lr') $('#steer-lr').value = '';
  renderSteer();
}

async function control(action) {
  const id = viewed.runId;
  const msg = $('#steer-msg'), lrInput = $('#steer-lr');
  const body = controlBody(action, { lr: lrInput.value, schedule: $('#steer-schedule').value, split: $('#steer-split').value });
  lrInput.classList.remove('invalid');
  if (action === 'set_lr' && body.lr == null) {
    lrInput.classList.add('invalid');
    say(msg, 'lr: enter the new learning rate', 'error');
    return;
  }
  // The trainer may apply it (and its event arrive) before the answer does.
  const seen = viewed.controls.length;
  let r;
  try { r = await ask('POST', `/api/runs/${encodeURIComponent(id)}/control`, body); } catch (err) {
    say(msg, `cannot reach the server: ${err.message}`, 'error');
    return;
  }
  if (viewed.runId !== id) return;
  const done = r.status === 202 && viewed.controls.slice(seen).find((c) => c.action === action);
  if (done) {
    st.pending = { action };
    controlApplied(done);
    return;
  }
  if (r.status === 202) {
    st.pending = { action };
    say(msg, pendingText(body), 'note');
    // A run that ends before its next batch never applies it.
    clearTimeout(st.pendingTimer);
    st.pendingTimer = setTimeout(() => { if (st.pending?.action === action) { st.pending = null; renderSteer(); } }, 20000);
  } else {
    say(msg, refusalText(r.status, r.body), 'error');
    if ((r.body.errors || []).some((e) => e.field === 'lr')) lrInput.classList.add('invalid');
  }
  renderSteer();
}

async function resumeRun() {
  const id = viewed.runId, msg = $('#resume-msg');
  $('#resume-run').disabled = true;
  say(msg, '');
  let r;
  try { r = await ask('POST', `/api/runs/${encodeURIComponent(id)}/resume`, {}); } catch (err) {
    say(msg, `cannot reach the server: ${err.message}`, 'error');
    $('#resume-run').disabled = false;
    return;
  }
  if (r.status === 201 || r.status === 202) {
    say(msg, r.status === 202 ? `queued (position ${r.body.position}): it continues when a device is free…` : 'resuming from its checkpoint…', 'note');
    openWhenLive(r.body.run_id || id, details.data?.last_seq ?? 0);
  } else {
    say(msg, refusalText(r.status, r.body), 'error');
    $('#resume-run').disabled = false;
  }
  renderSteer();
}

// Opens run `id` once it has gone on past event `seq` (a resumed run) or
// exists at all (a fork, `seq` null), asking twice a second; given up when
// the page moves to another run meanwhile (a followed run's switch to it
// included: then it is shown already).
export function openWhenLive(id, seq = null) {
  const from = viewed.runId;
  st.opening = { id, from, seq };
  const poll = async () => {
    if (st.opening?.id !== id || viewed.runId !== from) { if (st.opening?.id === id) st.opening = null; renderSteer(); return; }
    // A followed run that went on is shown live already.
    if (seq != null && viewed.runId === id && (stream.status === 'running' || stream.status === 'paused')) { st.opening = null; renderSteer(); return; }
    let data = null;
    try {
      const res = await fetch(`/api/runs/${encodeURIComponent(id)}`);
      if (res.ok) data = await res.json();
    } catch (_) { /* asked again */ }
    if (data && (seq == null || data.last_seq > seq || data.status === 'running' || data.status === 'paused')) {
      if (st.opening?.id !== id || viewed.runId !== from) { renderSteer(); return; }
      st.opening = null;
      say($('#resume-msg'), '');
      reconnectTo(false, id);
      scheduleReload();
      return;
    }
    setTimeout(poll, 500);
  };
  poll();
}

export function initSteer() {
  $('#steer-pause').addEventListener('click', () => control(stream.status === 'paused' ? 'resume' : 'pause'));
  $('#steer-set-lr').addEventListener('click', () => control('set_lr'));
  $('#steer-lr').addEventListener('keydown', (ev) => { if (ev.key === 'Enter') { ev.preventDefault(); control('set_lr'); } });
  $('#steer-eval').addEventListener('click', () => control('eval'));
  $('#steer-checkpoint').addEventListener('click', () => control('checkpoint'));
  $('#steer-stop-epoch').addEventListener('click', () => control('stop_after_epoch'));
  $('#resume-run').addEventListener('click', resumeRun);
  onDetails(() => { renderSteer(); scheduleStatus(); });
}
