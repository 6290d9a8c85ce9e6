// The GPU fleet (`serve --hosts`): every host's GPUs, free or busy, and who
// is on them, polled from /api/fleet. Hidden when the server has no hosts.

import { $, esc } from './util.js';
const gib = (b) => (b == null ? '–' : (b / 2 ** 30).toFixed(1));
export const fleet = { hosts: [] };

function render(hosts) {
  let html = '<table class="fleet-table"><tr><th>host</th><th>GPU</th><th>state</th><th>util</th><th>memory GiB</th><th>temp</th><th>users</th></tr>';
  for (const h of hosts) {
    const pill = `<span class="pill ${h.state === 'up' ? 'ok' : h.state === 'down' ? 'bad' : ''}">${h.state}</span>`
      + (h.run && h.run.run_id ? `<div class="muted">${h.run.active ? 'training' : 'last run'} ${esc(h.run.run_id)}${h.run.step != null ? ` · step ${h.run.step}` : ''}${h.run.loss != null ? ` · loss ${Number(h.run.loss).toFixed(3)}` : ''}</div>` : '');
    const s = h.stats;
    if (h.state !== 'up' || !s) {
      html += `<tr data-host="${esc(h.host)}"><td>${esc(h.host)} ${pill}</td><td colspan="6" class="muted">${esc(h.error || 'connecting…')}</td></tr>`;
      continue;
    }
    if (!s.gpus.length) {
      html += `<tr data-host="${esc(h.host)}"><td>${esc(h.host)} ${pill}<div class="muted">CPU ${s.cpu.usage_percent.toFixed(0)}% · mem ${gib(s.memory.used_bytes)}/${gib(s.memory.total_bytes)} GiB</div></td><td colspan="6" class="muted">${esc(s.gpu_error || 'no GPUs')}</td></tr>`;
      continue;
    }
    s.gpus.forEach((g, i) => {
      const free = g.processes.length === 0 && (g.utilization_percent ?? 0) < 5;
      const users = g.processes.map((p) => `<b>${esc(p.user ?? '?')}</b> <span class="muted">${esc(p.command ?? '')} ${p.gpu_memory_bytes != null ? gib(p.gpu_memory_bytes) + ' GiB' : ''}</span>`).join('<br>');
      html += `<tr data-host="${esc(h.host)}">`
        + (i === 0 ? `<td rowspan="${s.gpus.length}">${esc(h.host)} ${pill}<div class="muted">CPU ${s.cpu.usage_percent.toFixed(0)}% · mem ${gib(s.memory.used_bytes)}/${gib(s.memory.total_bytes)} GiB</div></td>` : '')
        + `<td>[${g.index}] ${esc(g.name ?? '?')}</td><td><span class="pill ${free ? 'ok' : 'warn'}">${free ? 'free' : 'busy'}</span></td>`
        + `<td>${g.utilization_percent ?? '–'}%</td><td>${gib(g.memory_used_bytes)} / ${gib(g.memory_total_bytes)}</td>`
        + `<td>${g.temperature_celsius ?? '–'} °C</td><td class="users">${users || '–'}</td></tr>`;
    });
  }
  $('#fleet-body').innerHTML = html + '</table>';
}

async function poll() {
  try {
    const r = await fetch('/api/fleet');
    const body = await r.json();
    fleet.hosts = body.hosts;
    fleet.source = body.source;
    $('#fleet-source').textContent = body.source === 'prometheus'
      ? `from Prometheus ${body.prometheus || ''}${body.error ? ` — ${body.error}` : ''}` : 'polled over SSH';
    if (body.hosts.length || body.source === 'prometheus') {
      $('#fleet').hidden = false;
      render(body.hosts);
    }
  } catch (_) { /* the connection banner covers a dead server */ }
  setTimeout(poll, 3000);
}

export function startFleet() { poll(); }
