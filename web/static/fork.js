// Forks: the viewed run's checkpoints in a Fork panel (pick an epoch from
// the list, or click a chart while the panel is open: the nearest
// checkpointed epoch), a form prefilled with the run's configuration whose
// changes start a new run from that checkpoint (POST /api/runs/{id}/fork;
// a refused field's reason beside it), the child then opened. A viewed
// fork names its parent (a link) and shows the parent's curve up to the
// fork step under its own; "compare lineage" overlays the parent, its
// forks and the viewed run's own forks.

import { $, esc } from './util.js';
import { viewed } from './viewed.js';
import { ask } from './api.js';
import { details, onDetails } from './details.js';
import { compare, addCompare, removeCompare, runLabel } from './compare.js';
import { scheduleDraw, xMode } from './charts.js';
import { extraField } from './form.js';
import { stream } from './stream.js';
import { openWhenLive } from './steer.js';
import { xToEpoch, epochToX, nearestEpoch, fieldValue, forkChanges, lineageRuns, parentText } from './steerlib.js';

// The fields shown at once; the rest of the schema's under "More settings".
const MAIN = ['lr', 'epochs', 'optimizer', 'batch_size', 'schedule', 'momentum'];

const st = Object.seal({
  filledFor: null,   // the run whose configuration fills the form
  auto: null,        // {child, parent}: the parent overlaid for its fork
  open: null,        // (id) => the page opens run id
});

const panel = () => $('#fork-panel');
const form = () => $('#fork-form');
const shown = () => !panel().hidden && panel().open;
const epochs = () => details.data?.checkpoint_epochs || [];

// The fields, from the server's one table of configuration fields.
async function buildFields() {
  let schema;
  try { schema = await (await fetch('/api/config/schema')).json(); } catch (_) { return; }
  const main = $('#fork-fields'), more = $('#fork-more');
  for (const field of schema.fields) {
    if (field.name === 'kernels') continue;   // a fork keeps its parent's model
    const [label, error] = extraField(field);
    error.removeAttribute('data-error');
    error.dataset.forkError = field.name;
    const cell = document.createElement('div');
    cell.append(label, error);
    (MAIN.includes(field.name) ? main : more).append(cell);
  }
  fill(true);
}

// The form from the viewed run's configuration (once per run: edits stay).
function fill(force = false) {
  const cfg = details.data?.config;
  if (!cfg || (!force && st.filledFor === details.runId)) return;
  st.filledFor = details.runId;
  for (const el of form().querySelectorAll('[data-field]')) {
    const v = cfg[el.name];
    if (el.type === 'checkbox') el.checked = !!v;
    else el.value = v == null ? '' : String(v);
  }
  $('#fork-kernels').textContent = `kernels ${(cfg.kernels || []).join(',')}: a fork keeps its parent's model`;
  clearErrors();
}

function clearErrors() {
  for (const el of form().querySelectorAll('[data-fork-error]')) el.textContent = '';
  for (const el of form().querySelectorAll('.invalid')) el.classList.remove('invalid');
  $('#fork-msg').textContent = '';
  $('#fork-msg').className = 'error';
}

function renderEpochs() {
  const sel = $('#fork-epoch'), list = epochs();
  const key = `${details.runId}\n${list.join(',')}`;
  if (sel.dataset.epochs === key) return;
  // The same run's pick stays; another run's starts at its newest checkpoint.
  const keep = sel.dataset.run === details.runId ? sel.value : null;
  sel.dataset.epochs = key;
  sel.dataset.run = details.runId;
  sel.innerHTML = list.map((e) => `<option value="${e}">epoch ${e}</option>`).join('');
  sel.value = list.includes(Number(keep)) ? keep : String(list[list.length - 1] ?? '');
  $('#fork-count').textContent = list.length ? `${list.length} checkpoint${list.length > 1 ? 's' : ''}: epoch${list.length > 1 ? 's' : ''} ${list.length > 6 ? `${list[0]}–${list[list.length - 1]}` : list.join(', ')}` : '';
}

// The viewed run's parent and forks, the parent's curve overlaid.
function renderLineage() {
  const p = stream.started?.parent || details.data?.parent || null;
  const kids = details.runId === viewed.runId ? details.children : [];
  const line = $('#lineage');
  line.hidden = !viewed.runId || (!p && !kids.length);
  const link = (id) => `<a href="#" class="link" data-open="${esc(id)}">${esc(runLabel(id))}</a>`;
  const parts = [];
  if (p) {
    parts.push(`${esc(parentText(p)).replace(esc(p.run_id), link(p.run_id))}, optimizer state ${p.optimizer_state ? 'kept' : 'reset'}`);
  }
  if (kids.length) parts.push(`forks: ${kids.slice(0, 8).map((r) => link(r.run_id)).join(', ')}${kids.length > 8 ? ` and ${kids.length - 8} more` : ''}`);
  line.innerHTML = `<span class="glyph">↳</span> ${parts.join(' · ')} <button type="button" class="link" id="compare-lineage" title="overlay the parent, its forks and this run's forks">compare lineage</button>`;
  // A fork continues its parent's curve: the parent up to the fork step.
  if (st.auto && st.auto.child !== viewed.runId) {
    if (compare.get(st.auto.parent)?.auto) removeCompare(st.auto.parent);
    st.auto = null;
  }
  if (p && viewed.runId && !st.auto && p.run_id !== viewed.runId) {
    st.auto = { child: viewed.runId, parent: p.run_id };
    if (!compare.has(p.run_id)) addCompare(p.run_id, { until: p.step, auto: true });
  }
}

async function compareLineage() {
  const id = viewed.runId;
  const p = stream.started?.parent || details.data?.parent || null;
  let siblings = [];
  if (p) {
    try {
      const q = new URLSearchParams({ q: `parent:${p.run_id}`, sort: 'started', order: 'asc', limit: 100 });
      siblings = ((await (await fetch(`/api/runs?${q}`)).json()).runs || []).map((r) => r.run_id);
    } catch (_) { /* the parent alone */ }
  }
  if (viewed.runId !== id) return;
  for (const r of lineageRuns(id, p?.run_id, siblings, details.children.map((c) => c.run_id))) {
    if (!compare.has(r)) addCompare(r, r === p?.run_id ? { until: p.step } : {});
  }
}

function render() {
  const list = epochs();
  panel().hidden = !viewed.runId || details.runId !== viewed.runId || !list.length;
  if (!panel().hidden) { fill(); renderEpochs(); }
  renderLineage();
  scheduleDraw();
}

async function start(ev) {
  ev.preventDefault();
  clearErrors();
  const id = viewed.runId, cfg = details.data?.config || {};
  const values = {};
  for (const el of form().querySelectorAll('[data-field]')) values[el.name] = fieldValue(el.dataset.kind, el.value, el.checked);
  const body = { epoch: Number($('#fork-epoch').value), config: forkChanges(cfg, values), optimizer_state: form().elements.optimizer_state.value };
  const msg = $('#fork-msg');
  $('#fork-start').disabled = true;
  let r;
  try { r = await ask('POST', `/api/runs/${encodeURIComponent(id)}/fork`, body); } catch (err) {
    msg.textContent = `cannot reach the server: ${err.message}`;
    $('#fork-start').disabled = false;
    return;
  }
  $('#fork-start').disabled = false;
  if (r.status === 201 || r.status === 202) {
    msg.className = 'note';
    msg.textContent = r.status === 202 ? `fork ${r.body.run_id} queued (position ${r.body.position}): it opens when it starts…` : `fork ${r.body.run_id} started: opening it…`;
    openWhenLive(r.body.run_id);
    return;
  }
  const errors = r.body.errors || [];
  for (const e of errors) {
    const slot = form().querySelector(`[data-fork-error="${CSS.escape(e.field)}"]`);
    if (!slot) continue;
    slot.textContent = e.message;
    const input = e.field === 'epoch' ? $('#fork-epoch') : form().elements[e.field];
    if (input) input.classList.add('invalid');
  }
  if (!errors.length || errors.some((e) => !form().querySelector(`[data-fork-error="${CSS.escape(e.field)}"]`))) {
    msg.textContent = errors.length ? errors.map((e) => `${e.field}: ${e.message}`).join('; ') : r.body.error || `the server answered ${r.status}`;
  }
}

// markers.js: the epoch picked, as a solid mark on every chart while the
// panel is open.
export function forkMarks(series, mode) {
  const e = Number($('#fork-epoch').value);
  if (!shown() || !e) return [];
  const x = epochToX(series, mode, e);
  return x == null ? [] : [{ x, action: 'fork', glyph: '⋔', color: '#56b6c2', title: `a fork starts from the checkpoint of epoch ${e}`, solid: true }];
}

// markers.js: a click on a chart while the panel is open picks the
// nearest checkpointed epoch.
export function chartClicked(u, x) {
  if (!shown() || !viewed.series) return;
  const e = nearestEpoch(epochs(), xToEpoch(viewed.series, xMode(), x));
  if (e == null) return;
  $('#fork-epoch').value = String(e);
  scheduleDraw();
}

// The Fork panel opened on the checkpoint of `epoch` with `values` (an
// alert's diagnosis: a lower rate) filled in; what stands in the way, or
// null when it opened.
export function forkFrom(epoch, values = {}) {
  if (panel().hidden) return 'the run has no checkpoint to fork from yet';
  if (!epochs().includes(epoch)) return `the checkpoint of epoch ${epoch} is gone (kept: ${epochs().join(', ')})`;
  fill();
  renderEpochs();
  panel().open = true;
  $('#fork-epoch').value = String(epoch);
  for (const [name, v] of Object.entries(values)) {
    const el = form().elements[name];
    if (el) el.value = String(v);
  }
  panel().scrollIntoView({ block: 'nearest', behavior: 'smooth' });
  scheduleDraw();
  return null;
}

// open(id): the page opens run id (a parent's link).
export function initFork({ open }) {
  st.open = open;
  buildFields();
  onDetails(render);
  form().addEventListener('submit', start);
  panel().addEventListener('toggle', scheduleDraw);
  $('#fork-epoch').addEventListener('change', scheduleDraw);
  $('#lineage').addEventListener('click', (ev) => {
    const a = ev.target.closest('[data-open]');
    if (a) { ev.preventDefault(); st.open(a.dataset.open); return; }
    if (ev.target.closest('#compare-lineage')) compareLineage();
  });
}
