// The newest alert's diagnosis in the Status card (loss_not_finite,
// loss_spike, grad_jump, …): when, the layer whose gradient rose first and
// by how much, the dead units, the suggestion, and where a last good
// checkpoint exists a "fork from epoch N" button that opens the Fork panel
// on it with a rate ten times lower (a fork's own parent's checkpoint, until
// the fork has saved one: the button opens the parent first). Alerts
// themselves stay in the log.

import { $, esc } from './util.js';
import { details, onDetails } from './details.js';
import { forkFrom } from './fork.js';
import { diagnosisRows, forkLr, fmtVal } from './layerlib.js';

export const diagnosis = Object.seal({ alert: null, count: 0 });
// A fork from another run's checkpoint waits for that run's details.
const pending = Object.seal({ run: null, epoch: null, lr: null, open: null });

export function resetDiagnosis() {
  diagnosis.alert = null;
  diagnosis.count = 0;
  render();
}

// An alert of the viewed run (live or from its history).
export function showDiagnosis(e) {
  if (!e.diagnosis) return;
  diagnosis.alert = e;
  diagnosis.count++;
  render();
}

function render() {
  const box = $('#diagnosis'), e = diagnosis.alert;
  box.hidden = !e;
  if (!e) { box.innerHTML = ''; return; }
  const d = e.diagnosis;
  const rows = diagnosisRows(d).map(([k, v]) => `<dt>${esc(k)}</dt><dd>${esc(v)}</dd>`).join('');
  const good = d.last_good_checkpoint;
  const lr = forkLr(d, details.data?.config?.lr);
  const of = good?.run_id ? ` ${good.run_id}` : '';
  const fork = good ? `<button type="button" id="diagnosis-fork" class="primary" data-epoch="${esc(good.epoch)}" data-run="${esc(good.run_id ?? '')}" data-lr="${lr ?? ''}" title="open the Fork panel on the checkpoint of${esc(of)} epoch ${esc(good.epoch)}${lr ? `, learning rate ${fmtVal(lr)}` : ''}">⋔ fork${esc(of)} from epoch ${esc(good.epoch)}${lr ? ` with lr ${fmtVal(lr)}` : ''}</button>` : '';
  box.className = `diagnosis ${e.severity === 'critical' ? 'critical' : 'warning'}`;
  box.innerHTML = `<div class="diagnosis-head"><b>${esc(e.rule)}</b> <span>${esc(e.message)}</span>${diagnosis.count > 1 ? ` <span class="muted">(the newest of ${diagnosis.count} diagnosed alerts)</span>` : ''}</div>`
    + `<dl>${rows}</dl><div class="diagnosis-actions">${fork}<span id="diagnosis-msg" class="muted"></span></div>`;
}

// open(id): the page opens run id (a fork's parent).
export function initDiagnosis({ open }) {
  pending.open = open;
  onDetails(forkPending);
  $('#diagnosis').addEventListener('click', (ev) => {
    const b = ev.target.closest('#diagnosis-fork');
    if (!b) return;
    const lr = b.dataset.lr ? Number(b.dataset.lr) : null;
    if (b.dataset.run) {
      Object.assign(pending, { run: b.dataset.run, epoch: Number(b.dataset.epoch), lr });
      pending.open(b.dataset.run);
      return;
    }
    const why = forkFrom(Number(b.dataset.epoch), lr != null ? { lr } : {});
    $('#diagnosis-msg').textContent = why || '';
  });
}

function forkPending() {
  if (!pending.run || details.runId !== pending.run || !details.data) return;
  const { epoch, lr } = pending;
  pending.run = null;
  const why = forkFrom(epoch, lr != null ? { lr } : {});
  if (why) $('#diagnosis-msg').textContent = why;
}
