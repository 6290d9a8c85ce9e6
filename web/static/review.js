// The review page: the samples the model disagrees with most, relabelled
// from the keyboard (saved at once to labels-overrides.json), and a canvas to
// try the model on digits of your own.

import { $, esc } from './util.js';
import { renderInspect } from './inspectview.js';
// looking: the drawing is inspected after each stroke; inspection: the last answer.
const state = { run: null, split: 'test', samples: [], focus: 0, offset: 0, total: 0, reviewed: 0, looking: false, inspection: null, inspected: false };
window.mnistReview = state;

for (let d = 0; d < 10; d++) {
  for (const id of ['#f-label', '#f-pred']) $(id).insertAdjacentHTML('beforeend', `<option>${d}</option>`);
}

async function loadRuns() {
  const params = new URLSearchParams(location.search);
  const wanted = params.get('run');
  // The newest runs with a trained epoch (the server filters and sorts),
  // and the one the address names.
  const ask = async (q, limit) => (await (await fetch(`/api/runs?${new URLSearchParams({ q, limit })}`)).json()).runs || [];
  const runs = await ask('epochs_done>0', 200);
  if (wanted && !runs.some((r) => r.run_id === wanted)) runs.unshift(...await ask(`id:"${wanted}"`, 1));
  $('#run').innerHTML = runs
    .map((r) => `<option value="${esc(r.run_id)}">${esc(r.run_id)} · ${esc(r.status)}${r.test_accuracy != null ? ' · test ' + (100 * r.test_accuracy).toFixed(2) + '%' : ''}</option>`).join('');
  if (wanted) $('#run').value = wanted;
  if (params.get('split')) $('#split').value = params.get('split');
  state.run = $('#run').value || null;
  state.split = $('#split').value;
}

function query(offset) {
  const q = new URLSearchParams({ split: state.split, limit: '60', offset: String(offset) });
  if ($('#f-label').value) q.set('label', $('#f-label').value);
  if ($('#f-pred').value) q.set('predicted', $('#f-pred').value);
  return q;
}

async function load(append = false) {
  if (!state.run) { $('#review-info').textContent = 'no trained run yet'; return; }
  $('#review-info').textContent = 'ranking… (the first time takes a few seconds)';
  const offset = append ? state.samples.length : 0;
  const r = await fetch(`/api/runs/${encodeURIComponent(state.run)}/review?${query(offset)}`);
  const body = await r.json();
  if (!r.ok) { $('#review-info').textContent = body.error || JSON.stringify(body.errors); return; }
  state.samples = append ? state.samples.concat(body.samples) : body.samples;
  state.total = body.total;
  state.reviewed = body.reviewed;
  if (!append) state.focus = 0;
  $('#review-info').textContent = `${body.total} samples, ranked by the loss of their label · ${body.checkpoint}`;
  render();
}

function decisionText(d) {
  if (!d) return '';
  if (d.decision === 'relabel') return `→ ${d.label}`;
  if (d.decision === 'keep') return 'keep';
  return 'unusable';
}

function render() {
  $('#grid').innerHTML = state.samples.map((s, i) => {
    const d = s.decision;
    const p = s.probs[s.predicted];
    return `<div class="cell ${d ? esc(d.decision) : ''} ${i === state.focus ? 'focus' : ''}" data-i="${i}" data-index="${esc(s.index)}">`
      + `<img src="data:image/png;base64,${esc(s.png_base64)}" alt="${esc(state.split)} #${esc(s.index)}">`
      + `<div>#${esc(s.index)} · label <b>${esc(s.label)}</b> · model <b>${esc(s.predicted)}</b> ${(100 * p).toFixed(0)}%</div>`
      + `<div class="loss">loss ${s.loss.toFixed(2)}</div><div class="decision">${esc(decisionText(d))}</div></div>`;
  }).join('');
  $('#progress').textContent = `reviewed ${state.reviewed} / ${state.total}`;
  const el = $(`.cell[data-i="${state.focus}"]`);
  if (el) el.scrollIntoView({ block: 'nearest' });
}

async function decide(decision, label) {
  const s = state.samples[state.focus];
  if (!s) return;
  const r = await fetch('/api/overrides', {
    method: 'POST', headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ split: state.split, index: s.index, decision, label, by: 'web' }),
  });
  const body = await r.json();
  if (!r.ok) { $('#review-info').textContent = `not saved: ${body.error || JSON.stringify(body.errors)}`; return; }
  s.decision = body.entry;
  state.reviewed = body.reviewed;
  state.focus = Math.min(state.focus + 1, state.samples.length - 1);
  render();
}

function columns() {
  const cells = [...document.querySelectorAll('.cell')];
  if (cells.length < 2) return 1;
  const top = cells[0].offsetTop;
  const n = cells.findIndex((c) => c.offsetTop !== top);
  return n < 0 ? cells.length : n;
}

document.addEventListener('keydown', (e) => {
  if (e.target.tagName === 'SELECT' || e.target.tagName === 'INPUT') return;
  const n = state.samples.length;
  if (/^[0-9]$/.test(e.key)) decide('relabel', Number(e.key));
  else if (e.key === 'k') decide('keep');
  else if (e.key === 'x') decide('exclude');
  else if (e.key === 'ArrowRight') state.focus = Math.min(n - 1, state.focus + 1);
  else if (e.key === 'ArrowLeft') state.focus = Math.max(0, state.focus - 1);
  else if (e.key === 'ArrowDown') state.focus = Math.min(n - 1, state.focus + columns());
  else if (e.key === 'ArrowUp') state.focus = Math.max(0, state.focus - columns());
  else return;
  e.preventDefault();
  render();
});
$('#grid').addEventListener('click', (e) => {
  const cell = e.target.closest('.cell');
  if (cell) { state.focus = Number(cell.dataset.i); render(); }
});
$('#more').addEventListener('click', () => load(true));
for (const id of ['#split', '#f-label', '#f-pred']) $(id).addEventListener('change', () => { state.split = $('#split').value; load(); });
$('#run').addEventListener('change', () => { state.run = $('#run').value; load(); if (state.looking) inspectDrawing(); });

// ---------- sandbox ----------
const pad = $('#pad');
const ctx = pad.getContext('2d');
function clearPad() {
  ctx.fillStyle = '#fff';
  ctx.fillRect(0, 0, pad.width, pad.height);
  $('#sb-result').textContent = '';
  $('#bars').innerHTML = '';
}
clearPad();
let drawing = false, last = null, pending = null;
const pos = (e) => { const r = pad.getBoundingClientRect(); return [(e.clientX - r.left) * pad.width / r.width, (e.clientY - r.top) * pad.height / r.height]; };
pad.addEventListener('pointerdown', (e) => { drawing = true; last = pos(e); pad.setPointerCapture(e.pointerId); });
pad.addEventListener('pointermove', (e) => {
  if (!drawing) return;
  const p = pos(e);
  ctx.strokeStyle = '#000'; ctx.lineWidth = 18; ctx.lineCap = 'round'; ctx.lineJoin = 'round';
  ctx.beginPath(); ctx.moveTo(...last); ctx.lineTo(...p); ctx.stroke();
  last = p;
  classifySoon();
});
pad.addEventListener('pointerup', () => { drawing = false; classifySoon(); });
$('#clear').addEventListener('click', clearPad);
$('#sb-look').addEventListener('click', () => { state.looking = true; inspectDrawing(); });

function classifySoon() {
  if (pending) return;
  pending = setTimeout(async () => { pending = null; await classify(); }, 120);
}

async function classify() {
  const png = pad.toDataURL('image/png').split(',')[1];
  const body = { png_base64: png };
  if (state.run) body.run_id = state.run;
  const r = await fetch('/api/predict', { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
  const out = await r.json();
  if (!r.ok) { $('#sb-result').textContent = out.error || JSON.stringify(out.errors); return; }
  state.prediction = out;
  $('#sb-input').src = `data:image/png;base64,${out.input_png_base64}`;
  $('#sb-result').textContent = `${out.predicted} (${(100 * out.probs[out.predicted]).toFixed(1)}%)`;
  $('#sb-model').textContent = `${out.checkpoint.split('/').slice(-2).join('/')} · ${out.ms.toFixed(1)} ms`;
  $('#sb-look').disabled = false;
  if (state.looking) inspectDrawing();
  $('#bars').innerHTML = out.probs.map((p, d) => `<div class="bar ${d === out.predicted ? 'top' : ''}"><span>${d}</span>`
    + `<div><div class="fill" style="width:${(100 * p).toFixed(1)}%"></div></div><span>${(100 * p).toFixed(1)}%</span></div>`).join('');
}

// The drawing inside the network (POST /api/runs/{id}/inspect): once asked,
// again after each stroke.
let inspecting = 0;
async function inspectDrawing() {
  const msg = $('#sb-inspect-msg');
  if (!state.run) { msg.textContent = 'no trained run to inspect with'; return; }
  const mine = ++inspecting;
  const png = pad.toDataURL('image/png').split(',')[1];
  let r, out;
  try {
    r = await fetch(`/api/runs/${encodeURIComponent(state.run)}/inspect`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ png_base64: png }) });
    out = await r.json().catch(() => ({}));
  } catch (err) { msg.textContent = `cannot reach the server: ${err.message}`; return; }
  if (mine !== inspecting) return;
  if (!r.ok) { msg.textContent = out.error || `the server answered ${r.status}`; return; }
  msg.textContent = '';
  state.inspection = out;
  $('#sb-inspect-card').hidden = false;
  renderInspect($('#sb-inspect'), out, 'your drawing');
  if (!state.inspected) { state.inspected = true; $('#sb-inspect-card').scrollIntoView({ block: 'start', behavior: 'smooth' }); }
}

fetch('/api/overrides').then((r) => r.json()).then((o) => { if (o.path) $('#ov-path').textContent = o.path; });
await loadRuns();
await load();
