// One layer's histograms over time, under the Layers panel: a column per
// kind (weights, gradients, ReLU output), each with the chosen epoch's
// histogram as bars (the first epoch's outline behind it, the y scale
// fixed over the run so heights compare) and every epoch as a heatmap of
// epoch × bin (oldest on top, the chosen one framed). An epoch slider
// steps through them; it opens on the latest and follows new ones while
// it stays there. Bins are fixed per layer and run, so the columns line up.

import { $, esc } from './util.js';
import { HIST_KINDS, histSeries, histGrid, histCellAt, binEdges, countShade, colorAt, fmtVal } from './layerlib.js';

// The layer shown (null: none), the set chosen (null: the latest), log counts.
export const hist = Object.seal({ layer: null, index: null, log: true, shown: null });

const KIND_COLOR = { weights: '#4aa3ff', grads: '#f5b041', activations: '#3ecf8e' };
const BARS_H = 110;
const TIME_H = 120;

let cols = null;     // the Layers panel's columns, as last rendered
let built = null;    // the layer whose columns are built

export function closeHists() {
  hist.layer = null;
  hist.index = null;
  built = null;
}

// The histograms of `hist.layer` from the panel's columns.
export function renderHists(c) {
  cols = c;
  const box = $('#layer-hists');
  const sets = c.histograms;
  if (!hist.layer) {
    built = null;
    hist.shown = null;
    box.innerHTML = c.step.length ? '<p class="muted">Click a layer (a heatmap row or a legend entry) to see its histograms over time.</p>' : '';
    return;
  }
  if (!sets.length) {
    built = null;
    box.innerHTML = `<p class="muted">${esc(hist.layer)}: no histograms yet (taken at each epoch's end).</p>`;
    return;
  }
  if (built !== hist.layer) build(box);
  const n = sets.length;
  const i = hist.index == null ? n - 1 : Math.min(hist.index, n - 1);
  const slider = $('#hist-epoch');
  slider.max = String(n - 1);
  slider.value = String(i);
  slider.disabled = n < 2;
  const set = sets[i];
  hist.shown = { index: i, epoch: set.epoch, step: set.step, latest: i === n - 1 };
  $('#hist-epoch-label').textContent = `epoch ${set.epoch} · step ${set.step.toLocaleString()}${i === n - 1 ? ' (latest)' : ''} · ${i + 1} of ${n}`;
  for (const [kind] of HIST_KINDS) drawKind(kind, i);
}

function build(box) {
  built = hist.layer;
  box.innerHTML = `<div class="hist-head"><h3>${esc(hist.layer)} · histograms <span class="muted">bins fixed for the run; bars: the chosen epoch over the first (outline), counts ${hist.log ? 'on a log scale' : 'linear'}</span></h3>`
    + '<label class="inline hist-slider">epoch <input id="hist-epoch" type="range" min="0" max="0" step="1" aria-label="histogram epoch"> <span id="hist-epoch-label"></span></label>'
    + `<label class="inline"><input id="hist-log" type="checkbox" class="check"${hist.log ? ' checked' : ''}> log counts</label>`
    + '<button id="hist-close" type="button" class="link">close</button></div>'
    + '<div class="hist-cols">' + HIST_KINDS.map(([kind, title]) => `<div class="hist-col" data-kind="${kind}"><h3>${esc(title)}</h3>`
      + `<canvas class="hist-bars" aria-label="${esc(title)} histogram"></canvas><div class="hist-axis"><span class="lo"></span><span class="zero"></span><span class="hi"></span></div>`
      + `<canvas class="hist-time" aria-label="${esc(title)} histograms over time (epoch × bin)"></canvas><p class="hist-note muted"></p></div>`).join('') + '</div>';
  // At the last set the slider follows new ones.
  $('#hist-epoch').addEventListener('input', (ev) => {
    const v = Number(ev.target.value);
    hist.index = v >= cols.histograms.length - 1 ? null : v;
    renderHists(cols);
  });
  $('#hist-log').addEventListener('change', (ev) => { hist.log = ev.target.checked; built = null; renderHists(cols); });
  $('#hist-close').addEventListener('click', () => box.dispatchEvent(new CustomEvent('layers:close')));
  for (const col of box.querySelectorAll('.hist-col')) {
    const kind = col.dataset.kind, time = col.querySelector('.hist-time'), bars = col.querySelector('.hist-bars');
    time.addEventListener('mousemove', (ev) => hoverTime(kind, time, ev));
    time.addEventListener('click', (ev) => {
      const cell = cellOf(kind, time, ev);
      if (cell) { hist.index = cell.row >= cols.histograms.length - 1 ? null : cell.row; renderHists(cols); }
    });
    bars.addEventListener('mousemove', (ev) => hoverBars(kind, bars, ev));
  }
}

function sizeCanvas(canvas, h) {
  const r = devicePixelRatio || 1, w = canvas.parentElement.clientWidth || 300;
  canvas.style.width = `${w}px`;
  canvas.style.height = `${h}px`;
  canvas.width = Math.round(w * r);
  canvas.height = Math.round(h * r);
  const ctx = canvas.getContext('2d');
  ctx.setTransform(r, 0, 0, r, 0, 0);
  return [ctx, w];
}

function drawKind(kind, i) {
  const col = $(`#layer-hists .hist-col[data-kind="${kind}"]`);
  const s = histSeries(cols.histograms, hist.layer, kind);
  col.classList.toggle('none', !s);
  const bars = col.querySelector('.hist-bars'), time = col.querySelector('.hist-time');
  if (!s) {
    bars.hidden = true; time.hidden = true;
    col.querySelector('.hist-axis').hidden = true;
    col.querySelector('.hist-note').textContent = kind === 'activations' ? `${hist.layer} has no ReLU: its output is the logits.` : 'none';
    return;
  }
  bars.hidden = false; time.hidden = false;
  col.querySelector('.hist-axis').hidden = false;
  // The set chosen may predate this kind's first histogram: its nearest.
  const set = cols.histograms[i];
  let r = s.rows.findIndex((row) => row.step === set.step);
  if (r < 0) r = s.rows.length - 1;
  const row = s.rows[r], color = KIND_COLOR[kind];
  const h = (c) => (hist.log ? countShade(c, s.max) : c / Math.max(1, s.max));
  // Bars: the chosen epoch, the first epoch's outline behind.
  const [ctx, w] = sizeCanvas(bars, BARS_H);
  ctx.fillStyle = '#0c1116';
  ctx.fillRect(0, 0, w, BARS_H);
  const bw = w / s.bins, top = 6, ph = BARS_H - top - 1;
  if (s.lo < 0 && s.hi > 0) {
    const x0 = (-s.lo / (s.hi - s.lo)) * w;
    ctx.fillStyle = '#2a323c';
    ctx.fillRect(Math.round(x0), 0, 1, BARS_H);
  }
  ctx.fillStyle = color;
  row.counts.forEach((c, b) => {
    const bh = h(c) * ph;
    if (bh > 0) ctx.fillRect(b * bw + 0.5, BARS_H - 1 - bh, Math.max(1, bw - 1), bh);
  });
  if (s.rows.length > 1 && r !== 0) {
    ctx.strokeStyle = 'rgba(221,227,234,0.55)';
    ctx.lineWidth = 1;
    ctx.beginPath();
    s.rows[0].counts.forEach((c, b) => {
      const y = BARS_H - 1 - h(c) * ph;
      if (b === 0) ctx.moveTo(0, y); else ctx.lineTo(b * bw, y);
      ctx.lineTo((b + 1) * bw, y);
    });
    ctx.stroke();
  }
  const axis = col.querySelector('.hist-axis');
  axis.querySelector('.lo').textContent = fmtVal(s.lo);
  axis.querySelector('.zero').textContent = s.lo < 0 && s.hi > 0 ? '0' : '';
  axis.querySelector('.hi').textContent = fmtVal(s.hi);
  // Over time: epoch × bin, the chosen row framed.
  const grid0 = histGrid(s.rows.length, s.bins, 1, TIME_H);
  const [tx, tw] = sizeCanvas(time, grid0.height);
  const grid = histGrid(s.rows.length, s.bins, tw, TIME_H);
  tx.fillStyle = '#0c1116';
  tx.fillRect(0, 0, tw, grid.height);
  s.rows.forEach((rw, k) => {
    rw.counts.forEach((c, b) => {
      const t = countShade(c, s.max);
      if (t <= 0) return;
      tx.fillStyle = `rgb(${colorAt(t).join(',')})`;
      tx.fillRect(Math.floor(b * grid.cellW), k * grid.rowH, Math.ceil(grid.cellW), grid.rowH);
    });
  });
  tx.strokeStyle = '#ffffff';
  tx.lineWidth = 1.5;
  tx.strokeRect(0.75, r * grid.rowH + 0.75, tw - 1.5, Math.max(1, grid.rowH - 1.5));
  time.dataset.rows = String(s.rows.length);
  const out = [];
  if (row.below) out.push(`${row.below.toLocaleString()} below ${fmtVal(s.lo)}`);
  if (row.above) out.push(`${row.above.toLocaleString()} above ${fmtVal(s.hi)}`);
  if (row.notFinite) out.push(`<b class="bad">${row.notFinite.toLocaleString()} not finite</b>`);
  col.querySelector('.hist-note').innerHTML = `epoch ${row.epoch}: ${row.total.toLocaleString()} values${out.length ? ` · ${out.join(' · ')}` : ''} · over time: epochs ${s.rows[0].epoch}–${s.rows[s.rows.length - 1].epoch}, top to bottom`;
}

function cellOf(kind, canvas, ev) {
  const s = histSeries(cols.histograms, hist.layer, kind);
  if (!s) return null;
  const grid = histGrid(s.rows.length, s.bins, canvas.clientWidth, TIME_H);
  const cell = histCellAt(grid, s.rows.length, s.bins, ev.offsetX, ev.offsetY);
  if (!cell) return null;
  // The row's set in the panel's list (the slider's index).
  const step = s.rows[cell.row].step;
  return { ...cell, row: cols.histograms.findIndex((h) => h.step === step), s, r: cell.row };
}

function hoverTime(kind, canvas, ev) {
  const cell = cellOf(kind, canvas, ev);
  if (!cell) { canvas.title = ''; return; }
  const rw = cell.s.rows[cell.r], [a, b] = binEdges(cell.s.lo, cell.s.hi, cell.s.bins, cell.bin);
  canvas.title = `epoch ${rw.epoch} · [${fmtVal(a)}, ${fmtVal(b)}): ${rw.counts[cell.bin].toLocaleString()} (click: show this epoch)`;
}

function hoverBars(kind, canvas, ev) {
  const s = histSeries(cols.histograms, hist.layer, kind);
  if (!s || !hist.shown) return;
  const bin = Math.floor((ev.offsetX / canvas.clientWidth) * s.bins);
  const rw = s.rows.find((x) => x.step === hist.shown.step) || s.rows[s.rows.length - 1];
  if (bin < 0 || bin >= s.bins) return;
  const [a, b] = binEdges(s.lo, s.hi, s.bins, bin);
  canvas.title = `epoch ${rw.epoch} · [${fmtVal(a)}, ${fmtVal(b)}): ${rw.counts[bin].toLocaleString()} (epoch ${s.rows[0].epoch}: ${s.rows[0].counts[bin].toLocaleString()})`;
}
