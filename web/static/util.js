// Helpers shared by every script of the page.

export const $ = (sel) => document.querySelector(sel);

// Everything the server sends that goes into HTML passes through `esc`:
// run ids are folder names, and a folder can be named `<img onerror=…>`.
export const esc = (s) => String(s ?? '').replace(/[&<>"']/g, (c) => ({
  '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;',
}[c]));

export const fmt = (v, d = 4) => (v == null || Number.isNaN(v) ? '–' : Number(v).toFixed(d));
export const pct = (v) => (v == null ? '–' : (100 * v).toFixed(2) + '%');
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
