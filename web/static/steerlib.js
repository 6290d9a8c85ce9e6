// Steering a run, the DOM-free part: where a control event's mark goes on
// each x axis, how marks that meet are stacked, which checkpointed epoch a
// click on a chart means, what a fork changes, which runs a lineage holds,
// the runs table's tree indentation, when the Steer strip and the Resume
// button show, and the server's refusals as text. Checked by
// web/test/steer.test.mjs; nothing here reads `document` or `window`.

import { xMapper } from './series.js';

// How each control action looks on the charts and in the strip.
export const CONTROL_LOOK = {
  pause: { glyph: '‖', color: '#f5b041', label: 'pause' },
  resume: { glyph: '▶', color: '#f5b041', label: 'resume' },
  set_lr: { glyph: 'η', color: '#c678dd', label: 'new learning rate' },
  eval: { glyph: '✓', color: '#3ecf8e', label: 'evaluation' },
  checkpoint: { glyph: '◆', color: '#8a96a3', label: 'checkpoint' },
  stop_after_epoch: { glyph: '■', color: '#ff5d5d', label: 'stop after the epoch' },
};

// `ys` at `v` of increasing `xs`, linearly between two of them, clamped
// at both ends; null for empty columns.
export function interp(xs, ys, v) {
  const n = xs.length;
  if (!n || v == null || Number.isNaN(v)) return null;
  if (v <= xs[0]) return ys[0];
  if (v >= xs[n - 1]) return ys[n - 1];
  let lo = 0, hi = n - 1;
  while (lo < hi) { const mid = (lo + hi) >> 1; if (xs[mid] < v) lo = mid + 1; else hi = mid; }
  if (xs[lo] === v) return ys[lo];
  const a = lo - 1;
  return ys[a] + (ys[lo] - ys[a]) * (v - xs[a]) / (xs[lo] - xs[a]);
}

// A control event's x on the chosen axis (step, epoch, wall, relative): its
// step on the step and epoch axes (the series' own mapping), its own time
// on the time axes, so that a pause shows as the gap between its pause
// and resume marks. Null when the series cannot place it.
export function controlX(c, series, mode) {
  if (mode === 'step') return c.step;
  if (mode === 'epoch') return xMapper(series, 'epoch')(c.step);
  if (mode === 'wall') return c.ts_ms / 1000;
  if (!series.ts_ms.length) return null;
  return (c.ts_ms - series.ts_ms[0]) / 1000;
}

// The marks of a run's control events: {x, action, glyph, color, title}.
export function controlMarks(controls, series, mode) {
  const out = [];
  for (const c of controls) {
    const x = controlX(c, series, mode);
    if (x == null || Number.isNaN(x)) continue;
    const look = CONTROL_LOOK[c.action] || { glyph: '•', color: '#8a96a3' };
    out.push({ x, action: c.action, glyph: look.glyph, color: look.color, title: c.message || c.action });
  }
  return out;
}

// The row of each mark's glyph (0 on top): a glyph closer than `gap`
// pixels to one already placed goes one row down. `pxs` in any order;
// the rows come back in the same order.
export function stackRows(pxs, gap = 10) {
  const order = pxs.map((px, i) => [px, i]).sort((a, b) => a[0] - b[0]);
  const rows = new Array(pxs.length).fill(0);
  const placed = [];   // [px, row] placed so far
  for (const [px, i] of order) {
    const near = new Set(placed.filter(([p]) => px - p < gap).map(([, r]) => r));
    let row = 0;
    while (near.has(row)) row++;
    rows[i] = row;
    placed.push([px, row]);
  }
  return rows;
}

// A position in epochs (1.5: half-way through the second) of an x on the
// chosen axis, through the series' steps or times.
export function xToEpoch(series, mode, x) {
  if (mode === 'epoch') return x;
  if (mode === 'step') return interp(series.step, series.epoch, x);
  if (!series.ts_ms.length) return null;
  const ms = mode === 'wall' ? x * 1000 : series.ts_ms[0] + x * 1000;
  return interp(series.ts_ms, series.epoch, ms);
}

// Where the end of epoch `e` is on the chosen axis (its last step, its time).
export function epochToX(series, mode, e) {
  if (mode === 'epoch') return e;
  if (mode === 'step') return interp(series.epoch, series.step, e);
  const ms = interp(series.epoch, series.ts_ms, e);
  if (ms == null) return null;
  return mode === 'wall' ? ms / 1000 : (ms - series.ts_ms[0]) / 1000;
}

// The checkpointed epoch nearest to a position in epochs (the earlier on
// a tie), or null.
export function nearestEpoch(epochs, pos) {
  if (!epochs || !epochs.length || pos == null || Number.isNaN(pos)) return null;
  return epochs.reduce((best, e) => (Math.abs(e - pos) < Math.abs(best - pos) ? e : best));
}

// A field of a form as the configuration holds it: a flag's tick, a
// choice's value, a number (null when left empty, which an optional field
// reads as "all").
export function fieldValue(kind, raw, checked) {
  if (kind === 'flag') return !!checked;
  if (kind === 'choice') return raw;
  return raw === '' || raw == null ? null : Number(raw);
}

// What a fork's `config` sends: the fields of `values` that differ from
// the parent's configuration.
export function forkChanges(parentConfig, values) {
  const out = {};
  for (const [k, v] of Object.entries(values)) {
    if (JSON.stringify(v ?? null) !== JSON.stringify(parentConfig?.[k] ?? null)) out[k] = v;
  }
  return out;
}

// The runs "compare lineage" overlays for run `id`: its parent, the
// parent's forks and its own, never itself, each once, at most `max`.
export function lineageRuns(id, parentId, siblings, children, max = 20) {
  const out = [];
  for (const r of [parentId, ...siblings, ...children]) {
    if (r && r !== id && !out.includes(r)) out.push(r);
  }
  return out.slice(0, max);
}

// A row's place in the runs table's lineage tree: its indentation (px)
// and glyph; a root has neither.
export function treePrefix(depth) {
  return depth > 0 ? { pad: 4 + (depth - 1) * 14, glyph: '↳' } : { pad: 0, glyph: '' };
}

// The line that names a fork's parent.
export const parentText = (p) => `forked from ${p.run_id} at epoch ${p.epoch} (step ${p.step})`;

// The Steer strip shows while a trainer here holds the run.
export const canSteer = (status, canControl) => (status === 'running' || status === 'paused') && !!canControl;

// The Resume button shows for an ended run with a checkpoint the server
// may continue.
export const canResumeRun = (status, canResume) =>
  ['interrupted', 'stopped', 'failed'].includes(status) && !!canResume;

// A control request's body from the strip's values.
export function controlBody(action, opts = {}) {
  const body = { action, source: 'page' };
  if (action === 'set_lr') {
    body.lr = opts.lr === '' || opts.lr == null ? null : Number(opts.lr);
    if (opts.schedule) body.schedule = opts.schedule;
  }
  if (action === 'eval' && opts.split && opts.split !== 'val') body.split = opts.split;
  return body;
}

// What the strip says while an accepted request waits for its batch boundary.
export const pendingText = (body) => ({
  pause: 'pause asked: the run holds after its current batch…',
  resume: 'resume asked…',
  set_lr: `learning rate ${body.lr}${body.schedule ? ` (${body.schedule})` : ''} asked: from the next step…`,
  eval: `an evaluation on ${body.split || 'val'} asked…`,
  checkpoint: 'a checkpoint asked…',
  stop_after_epoch: 'asked to stop after this epoch…',
}[body.action] || `${body.action} asked…`);

// A refusal as text: each field's error (`lr: must be …`), else the
// server's reason, else its status.
export function refusalText(status, body) {
  const errors = (body && body.errors) || [];
  if (errors.length) return errors.map((e) => (e.field && e.field !== 'body' ? `${e.field}: ${e.message}` : e.message)).join('; ');
  return (body && body.error) || `the server answered ${status}`;
}
