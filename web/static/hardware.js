// The machine panel: CPU, memory, network, disk and NVIDIA GPUs with their
// processes and users, live from /ws/hardware (independent of which run is
// shown), with sparklines of the last few minutes.

import { $, esc, bytes } from './util.js';
const HISTORY = 300;
const samples = [];
let retry = 0;

export const hardware = { samples, connected: false };

// A sparkline on a canvas: values scaled to [0, max] (or their own max).
function spark(canvas, values, max, color) {
  const dpr = window.devicePixelRatio || 1;
  const w = canvas.clientWidth || 120, h = canvas.clientHeight || 28;
  if (canvas.width !== w * dpr) { canvas.width = w * dpr; canvas.height = h * dpr; }
  const ctx = canvas.getContext('2d');
  ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
  ctx.clearRect(0, 0, w, h);
  const vs = values.filter((v) => v != null && Number.isFinite(v));
  if (!vs.length) return;
  const top = max ?? Math.max(...vs, 1e-9);
  ctx.beginPath();
  values.forEach((v, i) => {
    const x = values.length === 1 ? w : (i / (values.length - 1)) * w;
    const y = h - 1 - (Math.min(v ?? 0, top) / top) * (h - 2);
    i ? ctx.lineTo(x, y) : ctx.moveTo(x, y);
  });
  ctx.strokeStyle = color;
  ctx.lineWidth = 1.2;
  ctx.stroke();
  ctx.lineTo(w, h); ctx.lineTo(0, h); ctx.closePath();
  ctx.globalAlpha = 0.15; ctx.fillStyle = color; ctx.fill(); ctx.globalAlpha = 1;
}

function tile(id, label) {
  return `<div class="hw-tile"><dt>${label}</dt><dd id="hw-${id}">–</dd><canvas id="hw-${id}-spark"></canvas></div>`;
}

function layout() {
  $('#hw-tiles').innerHTML = tile('cpu', 'CPU') + tile('mem', 'Memory') + tile('net', 'Network')
    + tile('proc', 'This process') + tile('disk', 'Disk (runs)');
}

const netRate = (s, key) => s.network.filter((n) => n.interface !== 'lo').reduce((a, n) => a + n[key], 0);

function render() {
  const s = samples[samples.length - 1];
  if (!s) return;
  $('#hw-host').textContent = `${s.host} · ${s.cpu.cores} cores · ${s.cpu.model} · every ${s.interval_s.toFixed(1)} s`;
  $('#hw-cpu').textContent = `${s.cpu.usage_percent.toFixed(0)}% · load ${s.cpu.load_avg[0].toFixed(2)}`;
  $('#hw-cpu').title = s.cpu.per_core_percent.map((p, i) => `core ${i}: ${p.toFixed(0)}%`).join('\n');
  const m = s.memory;
  $('#hw-mem').textContent = `${bytes(m.used_bytes)} / ${bytes(m.total_bytes)}`;
  $('#hw-net').textContent = `↓ ${bytes(netRate(s, 'rx_bytes_per_sec'))}/s ↑ ${bytes(netRate(s, 'tx_bytes_per_sec'))}/s`;
  $('#hw-proc').textContent = `${bytes(s.process.rss_bytes)} · ${s.process.cpu_percent.toFixed(0)}% CPU`;
  const disk = s.disks.find((d) => d.holds && d.holds.length) || s.disks[0];
  $('#hw-disk').textContent = disk ? `${bytes(disk.available_bytes)} free of ${bytes(disk.total_bytes)}` : '–';
  spark($('#hw-cpu-spark'), samples.map((x) => x.cpu.usage_percent), 100, '#4aa3ff');
  spark($('#hw-mem-spark'), samples.map((x) => x.memory.used_bytes), m.total_bytes, '#3ecf8e');
  spark($('#hw-net-spark'), samples.map((x) => netRate(x, 'rx_bytes_per_sec') + netRate(x, 'tx_bytes_per_sec')), null, '#f5b041');
  spark($('#hw-proc-spark'), samples.map((x) => x.process.cpu_percent), 100 * s.cpu.cores, '#c792ea');
  spark($('#hw-disk-spark'), samples.map((x) => {
    const d = x.disks.find((d) => d.holds && d.holds.length) || x.disks[0];
    return d ? d.read_bytes_per_sec + d.write_bytes_per_sec : 0;
  }), null, '#8a96a3');
  renderGpus(s);
}

function renderGpus(s) {
  const el = $('#hw-gpus');
  if (s.gpu_error || !s.gpus.length) {
    el.innerHTML = `<p class="muted" id="hw-gpu-error">${esc(s.gpu_error || 'no NVIDIA GPU')}</p>`;
    return;
  }
  let html = '<table class="gpu-table"><tr><th>GPU</th><th>util</th><th></th><th>memory</th><th>temp</th><th>power</th><th>clocks</th><th>processes</th></tr>';
  for (const g of s.gpus) {
    const mem = g.memory_used_bytes != null ? `${bytes(g.memory_used_bytes)} / ${bytes(g.memory_total_bytes)}` : '–';
    const procs = g.processes.length
      ? g.processes.map((p) => `<div class="proc"><b>${esc(p.user ?? '?')}</b> ${esc(p.command ?? '?')} <span class="muted">pid ${p.pid} · ${p.gpu_memory_bytes != null ? bytes(p.gpu_memory_bytes) : '?'}</span></div>`).join('')
      : '<span class="free">free</span>';
    html += `<tr data-gpu="${g.index}"><td>[${g.index}] ${esc(g.name ?? '?')}<div class="muted">${esc(g.uuid ?? '')}</div></td>`
      + `<td>${g.utilization_percent ?? '–'}%</td><td><canvas class="gpu-spark" id="gpu-spark-${g.index}"></canvas></td>`
      + `<td>${mem}</td><td>${g.temperature_celsius ?? '–'} °C</td>`
      + `<td>${g.power_watts != null ? g.power_watts.toFixed(0) : '–'} / ${g.power_limit_watts != null ? g.power_limit_watts.toFixed(0) : '–'} W</td>`
      + `<td>${g.sm_clock_mhz ?? '–'} / ${g.memory_clock_mhz ?? '–'} MHz</td><td class="procs">${procs}</td></tr>`;
  }
  el.innerHTML = html + '</table>';
  for (const g of s.gpus) {
    spark($(`#gpu-spark-${g.index}`), samples.map((x) => (x.gpus.find((y) => y.index === g.index) || {}).utilization_percent), 100, '#3ecf8e');
  }
}

let queued = false;
function schedule() {
  if (queued) return;
  queued = true;
  requestAnimationFrame(() => { queued = false; render(); });
}

// For the console and visual checks: redraw after changing `samples`.
hardware.redraw = schedule;

function connect() {
  const proto = location.protocol === 'https:' ? 'wss' : 'ws';
  const ws = new WebSocket(`${proto}://${location.host}/ws/hardware`);
  ws.onopen = () => { retry = 0; hardware.connected = true; };
  ws.onmessage = (m) => {
    const msg = JSON.parse(m.data);
    if (msg.type === 'hardware_history') {
      samples.length = 0;
      samples.push(...msg.samples);
    } else if (msg.type === 'hardware') {
      samples.push(msg);
      if (samples.length > HISTORY) samples.shift();
    } else if (msg.type === 'hardware_off') {
      $('#hw-host').textContent = 'hardware sampling is off (--hw-interval 0)';
      return;
    }
    schedule();
  };
  ws.onclose = () => {
    hardware.connected = false;
    setTimeout(connect, Math.min(5000, 500 * 2 ** retry++));
  };
}

export function startHardware() {
  layout();
  connect();
}
