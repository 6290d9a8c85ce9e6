// Sweeps submitted to Slurm (`sweep --executor slurm`): each array task's
// state from the cluster (pending and why, running where, how it ended)
// beside its run, cancel per task or the whole job (scancel), and the
// shown run's task in the status line. Polled from /api/slurm; hidden when
// this runs folder has no Slurm sweep.

import { $, esc } from './util.js';
import { viewed } from './viewed.js';
export const slurm = { sweeps: [], error: null, cancelError: '' };
let lastBody = '';

const FINAL_OK = new Set(['COMPLETED']);
const ACTIVE = new Set(['PENDING', 'RUNNING', 'CONFIGURING', 'COMPLETING', 'SUSPENDED', 'REQUEUED']);
const pillClass = (s) => (s == null ? '' : FINAL_OK.has(s) || s === 'RUNNING' ? 'ok' : ACTIVE.has(s) ? 'warn' : 'bad');
const stateText = (t) => (t.state == null ? 'ended' : t.state.toLowerCase());

function taskRow(sweep, t) {
  const title = t.state == null ? 'Slurm no longer lists this task: its run tells how it ended' : '';
  const cancel = t.state != null && ACTIVE.has(t.state)
    ? `<button type="button" class="link" data-slurm-cancel="${esc(sweep.sweep_id)}" data-task="${t.task}">cancel</button>` : '';
  return `<tr data-slurm-run="${esc(t.run_id)}"><td>${esc(sweep.job_id)}_${t.task}</td>`
    + `<td><button type="button" class="link" data-open-run="${esc(t.run_id)}">${esc(t.run_id)}</button></td>`
    + `<td><span class="pill ${pillClass(t.state)}" title="${title}">${esc(stateText(t))}</span></td>`
    + `<td>${esc(t.node ?? '–')}</td><td>${esc(t.elapsed ?? '–')}</td><td class="muted">${esc(t.state === 'PENDING' ? t.reason ?? '' : '')}</td><td>${cancel}</td></tr>`;
}

function sweepHtml(sweep) {
  const o = sweep.options || {};
  const opts = ['partition', 'gres', 'time', 'cpus_per_task', 'mem', 'account'].filter((k) => o[k] != null).map((k) => `${k.replace(/_/g, '-')} ${esc(o[k])}`).join(' · ');
  const counts = {};
  for (const t of sweep.tasks) counts[stateText(t)] = (counts[stateText(t)] || 0) + 1;
  const summary = Object.entries(counts).map(([s, n]) => `${n} ${s}`).join(', ');
  const open = sweep.tasks.some((t) => t.state != null && ACTIVE.has(t.state));
  return `<div class="slurm-sweep" data-sweep="${esc(sweep.sweep_id)}"><h3>${esc(sweep.sweep_id)} <span class="muted">Slurm job ${esc(sweep.job_id)} · ${esc(summary)}${opts ? ' · ' + opts : ''} · submitted ${new Date(sweep.submitted_at * 1000).toLocaleString()}</span> `
    + `<a class="link" href="/?sweep=${encodeURIComponent(sweep.sweep_id)}">compare its runs</a>`
    + (open ? ` <button type="button" class="link" data-slurm-cancel="${esc(sweep.sweep_id)}">cancel the job</button>` : '') + '</h3>'
    + '<table class="slurm-table"><tr><th>task</th><th>run</th><th>Slurm state</th><th>node</th><th>time</th><th>waiting for</th><th></th></tr>'
    + sweep.tasks.map((t) => taskRow(sweep, t)).join('') + '</table></div>';
}

function render() {
  const box = $('#slurm');
  box.hidden = !slurm.sweeps.length && !slurm.error;
  $('#slurm-error').textContent = slurm.error ? `Slurm could not be asked: ${slurm.error}` : slurm.cancelError;
  // Newest sweep first.
  $('#slurm-body').innerHTML = slurm.sweeps.slice().reverse().map(sweepHtml).join('');
  showRunTask();
}

// The shown run's Slurm task, next to its status.
export function showRunTask() {
  const pill = $('#run-slurm');
  const runId = viewed.runId;
  for (const s of slurm.sweeps) {
    const t = s.tasks.find((x) => x.run_id === runId);
    if (t) {
      pill.hidden = false;
      pill.className = `pill ${pillClass(t.state)}`;
      pill.textContent = `Slurm ${s.job_id}_${t.task} ${stateText(t)}${t.node ? ' on ' + t.node : ''}`;
      return;
    }
  }
  pill.hidden = true;
}

async function poll() {
  try {
    const text = await (await fetch('/api/slurm')).text();
    // Rebuild the panel only when something changed (it is polled).
    if (text !== lastBody) {
      lastBody = text;
      const body = JSON.parse(text);
      slurm.sweeps = body.sweeps || [];
      slurm.error = body.error || null;
      render();
    }
  } catch (_) { /* the connection banner covers a dead server */ }
  setTimeout(poll, 3000);
}

$('#slurm-body').addEventListener('click', async (ev) => {
  const open = ev.target.closest('[data-open-run]');
  if (open) { window.mnistMonitor.openRun(open.dataset.openRun); return; }
  const cancel = ev.target.closest('[data-slurm-cancel]');
  if (!cancel) return;
  const task = cancel.dataset.task;
  const what = task == null ? `every task of ${cancel.dataset.slurmCancel}` : `task ${task}`;
  if (!window.confirm(`Cancel ${what} with scancel?`)) return;
  const r = await fetch(`/api/slurm/${encodeURIComponent(cancel.dataset.slurmCancel)}/cancel`, {
    method: 'POST', headers: { 'content-type': 'application/json' },
    body: JSON.stringify(task == null ? {} : { task: Number(task) }),
  });
  slurm.cancelError = r.ok ? '' : (await r.json().catch(() => ({}))).error || `cancel failed (${r.status})`;
  render();
});

export function startSlurm() { poll(); }
