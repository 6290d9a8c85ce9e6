// The run queue: runs waiting for a device (a Start while one trains, a
// sweep's runs), moved up or cancelled from the table.

import { $, esc } from './util.js';
import { send } from './api.js';
import { log } from './stream.js';

// The queue as the server last listed it.
let items = [];

export async function loadQueue() {
  let body;
  try { body = await send('GET', '/api/queue'); } catch (_) { return; }
  items = body.queued || [];
  $('#queue-box').hidden = !items.length;
  const show = (v) => (Array.isArray(v) ? v.join(',') : v);
  $('#queue-table').innerHTML = '<tr><th>#</th><th>run</th><th>kernels</th><th>opt</th><th>lr</th><th>batch</th><th>epochs</th><th>sweep</th><th>waiting for</th><th></th></tr>' +
    items.map((q) => `<tr data-queued="${esc(q.run_id)}"><td>${q.position}</td><td>${esc(q.run_id)}</td><td>${esc(show(q.config.kernels))}</td>` +
      `<td>${esc(q.config.optimizer)}</td><td>${esc(q.config.lr)}</td><td>${esc(q.config.batch_size)}</td><td>${esc(q.config.epochs)}</td><td>${esc(q.sweep || '')}</td><td class="muted">${esc(q.waiting_for || '')}</td>` +
      `<td>${q.position > 1 ? `<button type="button" class="link" data-up="${esc(q.run_id)}" title="start it sooner">↑</button>` : ''}` +
      `<button type="button" class="link" data-cancel="${esc(q.run_id)}">cancel</button></td></tr>`).join('');
}

export function initQueue() {
  $('#queue-table').addEventListener('click', async (ev) => {
    const up = ev.target.closest('[data-up]'), cancel = ev.target.closest('[data-cancel]');
    try {
      if (up) {
        const q = items.find((x) => x.run_id === up.dataset.up);
        await send('POST', `/api/queue/${encodeURIComponent(up.dataset.up)}/move`, { position: q.position - 1 });
      } else if (cancel) {
        await send('DELETE', `/api/queue/${encodeURIComponent(cancel.dataset.cancel)}`);
      } else return;
    } catch (err) { log('warn', err.message); }
    loadQueue();
  });
}
