// The viewed run's name, tags and notes (edited in place), its report and
// model downloads, its deletion to the trash, and the trash's restore.

import { $, esc } from './util.js';
import { viewed } from './viewed.js';
import { send } from './api.js';
import { scheduleDraw } from './charts.js';
import { compare, removeCompare, renderComparePanel } from './compare.js';
import { runs, fetchRun, reloadRuns } from './runs.js';
import { log, reconnectTo } from './stream.js';

// A run the page shows (viewed, compared) whose summary no block held yet.
export function needRun(id) {
  if (!id || runs.known.has(id)) return;
  fetchRun(id).then((r) => { if (r) { showMeta(); renderComparePanel(); scheduleDraw(); } });
}

export function showMeta() {
  const form = $('#run-meta');
  const run = runs.known.get(viewed.runId);
  needRun(viewed.runId);
  form.hidden = !run;
  if (!run || form.dataset.run === run.run_id) return;
  form.dataset.run = run.run_id;
  $('#meta-run').textContent = run.run_id;
  $('#meta-report').href = `/api/runs/${encodeURIComponent(run.run_id)}/report.html`;
  // Only a run with a checkpoint has a model to download.
  $('#meta-model').hidden = !(run.checkpoint_epochs || []).length;
  const model = `/api/runs/${encodeURIComponent(run.run_id)}/model`;
  $('#meta-model-st').href = `${model}.safetensors`;
  $('#meta-model-onnx').href = `${model}.onnx`;
  form.elements.name.value = run.name || '';
  form.elements.tags.value = (run.tags || []).join(', ');
  form.elements.notes.value = run.notes || '';
  $('#meta-error').textContent = '';
}

export async function loadTrash() {
  let trashed;
  try { trashed = await send('GET', '/api/trash'); } catch (_) { return; }
  $('#trash').hidden = !trashed.length;
  $('#trash-table').innerHTML = trashed.map((r) =>
    `<tr><td>${esc(r.name || r.run_id)}</td><td><button type="button" class="link" data-restore="${esc(r.run_id)}">restore</button></td></tr>`).join('');
}

export function initManage() {
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
      reloadRuns();
    } catch (err) { $('#meta-error').textContent = err.message; }
  });

  $('#meta-delete').addEventListener('click', async () => {
    const id = $('#run-meta').dataset.run;
    try {
      await send('DELETE', `/api/runs/${encodeURIComponent(id)}`);
      $('#run-meta').dataset.run = '';
      runs.known.delete(id);
      if (compare.has(id)) removeCompare(id);
      reconnectTo(true, null);
      reloadRuns();
    } catch (err) { $('#meta-error').textContent = err.message; }
  });

  $('#trash-table').addEventListener('click', async (ev) => {
    const b = ev.target.closest('[data-restore]');
    if (!b) return;
    try { await send('POST', `/api/trash/${encodeURIComponent(b.dataset.restore)}/restore`); } catch (err) { log('warn', err.message); }
    reloadRuns();
  });
}
