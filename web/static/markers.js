// Marks on every chart of the viewed run (a uPlot plugin): each control
// event (pause, resume, a new learning rate, …) as a thin dashed vertical
// line at its place on the chosen x axis, drawn on the canvas (so a saved
// PNG keeps it), with a small glyph on top that names it on hover; and the
// epoch a fork would start from while the Fork panel is open. A click
// (not a drag) on a chart is handed to whoever asked (the Fork panel).

import { esc } from './util.js';
import { viewed } from './viewed.js';
import { controlMarks, stackRows } from './steerlib.js';

let xMode = () => 'step';
let extraMarks = () => [];
let clicked = null;

// mode(): the charts' x axis; extra(series, mode): more marks (the fork's
// epoch); click(u, x): a click at x on chart u.
export function initMarkers({ mode, extra, click }) {
  if (mode) xMode = mode;
  if (extra) extraMarks = extra;
  if (click) clicked = click;
}

// The plugin each chart of the run is made with.
export function markerPlugin() {
  return { hooks: { init: [watchClicks], draw: [drawMarks] } };
}

function watchClicks(u) {
  let down = null;
  u.over.addEventListener('mousedown', (ev) => { down = [ev.clientX, ev.clientY]; });
  u.over.addEventListener('click', (ev) => {
    if (!down || Math.abs(ev.clientX - down[0]) > 3 || Math.abs(ev.clientY - down[1]) > 3 || !clicked) return;
    const rect = u.over.getBoundingClientRect();
    clicked(u, u.posToVal(ev.clientX - rect.left, 'x'));
  });
}

function drawMarks(u) {
  const s = viewed.series;
  let box = u.over.querySelector(':scope > .marks');
  if (!box) {
    box = document.createElement('div');
    box.className = 'marks';
    u.over.appendChild(box);
  }
  if (!s) { box.innerHTML = ''; return; }
  const mode = xMode();
  const r = devicePixelRatio || 1;
  const { left, top, width, height } = u.bbox;
  const all = [...controlMarks(viewed.controls, s, mode), ...extraMarks(s, mode)];
  const shown = [];
  for (const m of all) {
    const px = u.valToPos(m.x, 'x', true);
    if (Number.isFinite(px) && px >= left - 1 && px <= left + width + 1) shown.push({ ...m, px });
  }
  const ctx = u.ctx;
  ctx.save();
  ctx.lineWidth = Math.max(1, r);
  for (const m of shown) {
    ctx.strokeStyle = m.color;
    ctx.globalAlpha = m.solid ? 0.9 : 0.75;
    ctx.setLineDash(m.solid ? [] : [4 * r, 3 * r]);
    ctx.beginPath();
    ctx.moveTo(Math.round(m.px) + 0.5, top);
    ctx.lineTo(Math.round(m.px) + 0.5, top + height);
    ctx.stroke();
  }
  ctx.restore();
  const rows = stackRows(shown.map((m) => m.px / r), 12);
  // A glyph at an edge stays whole inside the plot.
  const at = (px) => Math.min(Math.max((px - left) / r, 6), width / r - 6);
  box.innerHTML = shown.map((m, i) =>
    `<span class="mark" data-action="${esc(m.action)}" style="left:${at(m.px).toFixed(1)}px;top:${rows[i] * 13}px;color:${esc(m.color)}" title="${esc(m.title)}">${esc(m.glyph)}</span>`).join('');
}
