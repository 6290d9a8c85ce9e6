// The viewed run's panels that its events fill in one go: the latest
// evaluation (sample predictions, confusion matrix, per-class table), the
// model's layers, and how to reproduce the run.

import { $, fmt, pct, reproduceCommand, confusionHtml, perClassHtml, sampleHtml, modelRowsHtml, provenanceRows, dlHtml } from './util.js';

// Whether the Model panel shows a run's model (else the form's preview,
// which a run's start replaces and the form's edits show again).
let modelFromRun = false;
export const showsRunModel = () => modelFromRun;

// Empty, for a run that has not said anything yet.
export function resetPanels() {
  $('#samples').innerHTML = '';
  $('#confusion').innerHTML = '';
  $('#per-class').innerHTML = '';
  $('#eval-title').textContent = '';
  $('#provenance').hidden = true;
}

export function renderSamples(e) {
  $('#samples').innerHTML = e.samples.map(sampleHtml).join('');
}

export function renderEval(e) {
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

// The model of a run, from its run_started event.
export function renderRunModel(e) {
  renderModel(e.model, `the model of run ${e.run_id}`);
  modelFromRun = true;
}

// The server's summary of the form's configuration (POST /api/model).
export function renderPreviewModel(body) {
  modelFromRun = false;
  renderModel(body.model, `preview of the form's configuration · training needs about ${body.memory} of memory`);
}

// The form's kernels the server refused to build a model of.
export function renderModelError(message) {
  $('#model-source').textContent = `the form's kernels: ${message}`;
  $('#model-table').innerHTML = '';
  $('#model-total').textContent = '';
}

export function renderProvenance(e) {
  $('#provenance').hidden = false;
  $('#repro-cmd').textContent = reproduceCommand(e.config);
  const p = e.provenance;
  const rows = provenanceRows(p);
  if (p) rows.push(['data', Object.keys(p.data_sha256 || {}).length ? 'MNIST, SHA-256 checked' : 'not checked (--skip-verify)']);
  $('#prov-info').innerHTML = dlHtml(rows);
}

export function initPanels() {
  $('#copy-repro').addEventListener('click', async () => {
    try { await navigator.clipboard.writeText($('#repro-cmd').textContent); $('#copy-repro').textContent = 'copied'; } catch (_) { /* no clipboard on plain http off loopback */ }
  });
}
