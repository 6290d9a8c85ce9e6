// Helpers shared by every script of the page.

export const $ = (sel) => document.querySelector(sel);

// Everything the server sends that goes into HTML passes through `esc`:
// run ids are folder names, and a folder can be named `<img onerror=…>`.
export const esc = (s) => String(s ?? '').replace(/[&<>"']/g, (c) => ({
  '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;',
}[c]));

export const fmt = (v, d = 4) => (v == null || Number.isNaN(v) ? '–' : Number(v).toFixed(d));
export const pct = (v) => (v == null ? '–' : (100 * v).toFixed(2) + '%');
// Bytes in binary units: `1.4 GiB`.
export const bytes = (b) => {
  if (b == null) return '–';
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let u = 0;
  while (b >= 1024 && u < units.length - 1) { b /= 1024; u++; }
  return `${b.toFixed(u ? 1 : 0)} ${units[u]}`;
};
export const dur = (s) => {
  if (s == null || !isFinite(s)) return '–';
  s = Math.max(0, Math.round(s));
  const h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60), r = s % 60;
  return h ? `${h}h${String(m).padStart(2, '0')}m` : m ? `${m}m${String(r).padStart(2, '0')}s` : `${r}s`;
};

// The command that trains a run again (same config, same seed); the page's
// "Reproduce this run" and the HTML report show it.
export const reproduceCommand = (config) => {
  const flags = Object.entries(config || {}).flatMap(([k, v]) => {
    const flag = `--${k.replace(/_/g, '-')}`;
    if (v === null || v === false) return [];
    if (v === true) return [flag];
    return [flag, Array.isArray(v) ? v.join(',') : String(v)];
  });
  return ['mnist-monitor', 'train', ...flags].join(' ');
};

// The evaluation, model and provenance tables: the page and the HTML
// report (which inlines this file) draw them the same way.

// The 10×10 confusion matrix (true ↓, predicted →): the diagonal green,
// mistakes red, each shaded by its count.
export const confusionHtml = (confusion) => {
  const max = Math.max(1, ...confusion.flatMap((row, t) => row.filter((_, p) => p !== t)));
  const diagMax = Math.max(1, ...confusion.map((row, t) => row[t]));
  return '<tr><th></th>' + [...Array(10).keys()].map((k) => `<th>${k}</th>`).join('') + '</tr>' +
    confusion.map((row, t) => `<tr><th>${t}</th>` + row.map((n, p) => {
      const a = p === t ? 0.15 + 0.7 * (n / diagMax) : n ? 0.15 + 0.85 * (n / max) : 0;
      const color = p === t ? `rgba(62,207,142,${a})` : `rgba(255,93,93,${a})`;
      return `<td style="background:${color}" title="true ${t}, predicted ${p}: ${n}">${n || ''}</td>`;
    }).join('') + '</tr>').join('');
};

export const perClassHtml = (perClass) => '<tr><th>class</th><th>precision</th><th>recall</th><th>F1</th><th>n</th></tr>' +
  perClass.map((c) => `<tr><td>${esc(c.class)}</td><td>${fmt(c.precision, 3)}</td><td>${fmt(c.recall, 3)}</td><td>${fmt(c.f1, 3)}</td><td>${esc(c.support)}</td></tr>`).join('');

// One sample prediction: the digit, the answer and its confidence, framed
// green when right and red when wrong.
export const sampleHtml = (s) => `<div class="sample ${s.label === s.predicted ? 'right' : 'wrong'}" data-index="${esc(s.index)}" title="test #${esc(s.index)}: label ${esc(s.label)}, predicted ${esc(s.predicted)} (${(100 * s.confidence).toFixed(1)}%)">` +
  `<img alt="digit ${esc(s.label)}" src="data:image/png;base64,${esc(s.png_base64)}"><div>${esc(s.predicted)} · ${(100 * s.confidence).toFixed(0)}%</div></div>`;

export const modelRowsHtml = (m) => '<tr><th>layer</th><th>kind</th><th>output</th><th>params</th></tr>' +
  m.layers.map((l) => `<tr><td>${esc(l.name)}</td><td style="text-align:left">${esc(l.kind)}</td><td>${esc(l.output_shape.join('×'))}</td><td>${l.params.toLocaleString()}</td></tr>`).join('');

// What produced a run (`run_started.provenance`) as [label, value] rows,
// the data files' hashes left to the caller.
export const provenanceRows = (p) => (p ? [
  ['version', `${p.version}${p.git_commit ? ` (${p.git_commit.slice(0, 12)}${p.git_dirty ? ', uncommitted changes' : ''})` : ''}`],
  ['built with', `Burn ${p.burn_version}${p.features.length ? `, ${p.features.join(', ')}` : ''}`],
  ['host', p.host],
  ['started by', p.command_line.join(' ')],
] : [['provenance', 'not recorded (a run from an older version)']]);

export const dlHtml = (rows) => rows.map(([k, v]) => `<dt>${esc(k)}</dt><dd>${esc(v)}</dd>`).join('');
