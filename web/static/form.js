// The configuration form: its limits, defaults and help from the server's
// one table of configuration fields (GET /api/config/schema), the fields
// it has no place for under "More settings", presets, the backends, the
// errors the server found, Start, a sweep over a grid of it, and the
// model it would train, previewed as it is edited.

import { $, esc } from './util.js';
import { send } from './api.js';
import { focusSweep } from './compare.js';
import { renderPreviewModel, renderModelError, showsRunModel } from './panels.js';
import { loadQueue } from './queue.js';
import { stream, reconnectTo } from './stream.js';

const form = () => $('#run-form');
let previewTimer = null;

// The configuration the form says, as POST /api/runs takes it.
export function formConfig() {
  const f = form().elements;
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
  for (const el of form().querySelectorAll('[data-field]')) {
    if (el.type === 'checkbox') { if (el.checked) cfg[el.name] = true; continue; }
    if (el.value === '') continue;
    cfg[el.name] = el.dataset.kind === 'choice' ? el.value : Number(el.value);
  }
  return cfg;
}

// The model of the configuration in the form, before a run starts: the
// server builds its summary (shapes, parameters, activation memory) from
// the same table the run would use. Edits show it, a run's start replaces
// it; the first one (`unlessRun`) gives way to a run's model that arrived
// while it was asked.
async function previewModel(unlessRun = false) {
  let res, body;
  try {
    res = await fetch('/api/model', { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(formConfig()) });
    body = await res.json();
  } catch (_) { return; }
  if (!res.ok) {
    const bad = (body.errors || []).find((e) => e.field === 'kernels');
    if (bad && !(unlessRun && showsRunModel())) renderModelError(bad.message);
    return;
  }
  if (unlessRun && showsRunModel()) return;
  renderPreviewModel(body);
}

function schedulePreview() {
  clearTimeout(previewTimer);
  previewTimer = setTimeout(() => previewModel(), 200);
}

function applyField(el, field) {
  if (field.min !== undefined) el.min = field.min;
  if (field.max !== undefined && field.max < Number.MAX_SAFE_INTEGER) el.max = field.max;
  if (field.type === 'number' && !field.min_inclusive) el.step = 'any';
  el.title = `${field.help} (${field.range})`;
}

export function extraField(field) {
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

export async function loadSchema() {
  let schema;
  try { schema = await (await fetch('/api/config/schema')).json(); } catch (_) { return; }
  const more = $('#more-fields');
  for (const field of schema.fields) {
    if (field.name === 'kernels') {
      [1, 2, 3, 4].forEach((i) => {
        const el = form().elements[`k${i}`];
        applyField(el, field);
        el.value = field.default[i - 1];
      });
      continue;
    }
    const el = form().elements[field.name];
    if (!el) { more.append(...extraField(field)); continue; }
    applyField(el, field);
    if (field.type === 'choice' && el.options.length <= 1 && field.name !== 'backend') {
      el.innerHTML = field.choices.map((c) => `<option>${esc(c)}</option>`).join('');
    }
    if (field.type === 'flag') el.checked = !!field.default;
    else if (field.type !== 'choice' && field.default !== null) el.value = field.default;
    else if (field.type === 'choice' && field.name !== 'backend') el.value = field.default;
  }
  if (!showsRunModel()) previewModel(true);
}

export async function loadBackends() {
  try {
    const list = await (await fetch('/api/backends')).json();
    const sel = form().elements.backend;
    for (const b of list) {
      const o = document.createElement('option');
      o.value = b.name;
      o.textContent = b.available ? `${b.name} (${b.device})` : `${b.name} — ${b.reason}`;
      o.disabled = !b.available;
      sel.appendChild(o);
    }
  } catch (_) { /* the reconnect banner says what's wrong */ }
}

function clearErrors() {
  for (const el of document.querySelectorAll('[data-error]')) el.textContent = '';
  for (const el of form().querySelectorAll('.invalid')) el.classList.remove('invalid');
  $('#form-message').textContent = '';
  $('#form-message').classList.remove('note');
}

function note(text) {
  $('#form-message').textContent = text;
  $('#form-message').classList.add('note');
}

async function start(ev) {
  ev.preventDefault();
  clearErrors();
  $('#start').disabled = true;
  try {
    const res = await fetch('/api/runs', { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(formConfig()) });
    const body = await res.json().catch(() => ({}));
    if (res.status === 201) {
      if (!stream.follow) reconnectTo(true, null);
    } else if (res.status === 202) {
      note(`queued (position ${body.position}): it starts when the runs before it end`);
      loadQueue();
    } else if (res.status === 400 && body.errors) {
      for (const err of body.errors) {
        const slot = document.querySelector(`[data-error="${err.field}"]`) || $('#form-message');
        slot.textContent = err.message;
        const names = err.field === 'kernels' ? ['k1', 'k2', 'k3', 'k4'] : [err.field];
        for (const n of names) if (form().elements[n]) form().elements[n].classList.add('invalid');
      }
    } else {
      $('#form-message').textContent = body.error || `the server answered ${res.status}`;
    }
  } catch (err) {
    $('#form-message').textContent = `cannot reach the server: ${err}`;
  } finally {
    $('#start').disabled = false;
  }
}

// The form's configuration with each combination of the grid, queued as
// one sweep; the page then shows the sweep's runs, overlaid as they come.
async function startSweep() {
  $('#sweep-error').textContent = '';
  const specs = $('#sweep-grid').value.split('\n').map((l) => l.trim()).filter(Boolean);
  const random = $('#sweep-random').value === '' ? undefined : Number($('#sweep-random').value);
  try {
    const body = await send('POST', '/api/sweeps', { base: formConfig(), specs, random });
    // Follow what trains now: its start and end refresh the sweep's runs.
    if (!stream.follow) reconnectTo(true, null);
    focusSweep(body.sweep_id);
    note(`sweep ${body.sweep_id}: ${body.runs.length} runs queued`);
  } catch (err) { $('#sweep-error').textContent = err.message; }
}

export function initForm() {
  form().addEventListener('input', schedulePreview);
  for (const b of document.querySelectorAll('[data-preset]')) {
    b.addEventListener('click', () => {
      b.dataset.preset.split(',').forEach((v, i) => { form().elements[`k${i + 1}`].value = v; });
      schedulePreview();
    });
  }
  form().addEventListener('submit', start);
  $('#sweep-start').addEventListener('click', startSweep);
}
