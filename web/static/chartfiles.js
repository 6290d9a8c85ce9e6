// The training curves as files: each chart as a PNG (the canvas uPlot
// drew, with its title) or as an SVG (its lines and points as vectors, the
// axes' ticks and the legend as text, for papers and slides).

import { $, esc } from './util.js';
import { viewed } from './viewed.js';
import { charts, yTick } from './charts.js';

function chartSvg(u, title) {
  const { left, top, width, height } = u.bbox;
  const r = devicePixelRatio || 1;
  const W = Math.round((left + width) / r) + 20, H = Math.round((top + height) / r) + 40;
  const px = (v, axis) => u.valToPos(v, axis);
  let body = `<rect width="${W}" height="${H}" fill="#171d24"/><text x="${W / 2}" y="16" fill="#dde3ea" font-size="13" text-anchor="middle">${esc(title)}</text>`;
  body += `<rect x="${left / r}" y="${top / r}" width="${width / r}" height="${height / r}" fill="none" stroke="#2a323c"/>`;
  const [xMin, xMax] = [u.scales.x.min, u.scales.x.max], [yMin, yMax] = [u.scales.y.min, u.scales.y.max];
  for (const [v, axis] of [[xMin, 'x'], [xMax, 'x'], [yMin, 'y'], [yMax, 'y']]) {
    const p = px(v, axis);
    body += axis === 'x'
      ? `<text x="${(left / r) + p}" y="${(top + height) / r + 14}" fill="#8a96a3" font-size="10" text-anchor="middle">${esc(yTick(v))}</text>`
      : `<text x="${left / r - 4}" y="${(top / r) + p + 3}" fill="#8a96a3" font-size="10" text-anchor="end">${esc(yTick(v))}</text>`;
  }
  u.series.forEach((s, i) => {
    if (i === 0 || !s.show) return;
    const xs = u.data[0], ys = u.data[i];
    const pts = [];
    for (let j = 0; j < xs.length; j++) {
      if (ys[j] == null || xs[j] < xMin || xs[j] > xMax) continue;
      pts.push([(left / r) + px(xs[j], 'x'), (top / r) + px(ys[j], 'y')]);
    }
    const stroke = typeof s._stroke === 'string' ? s._stroke : (typeof s.stroke === 'function' ? s.stroke(u, i) : s.stroke);
    if (s.width === 0) body += pts.map(([x, y]) => `<circle cx="${x.toFixed(1)}" cy="${y.toFixed(1)}" r="3" fill="${stroke}"/>`).join('');
    else body += `<polyline fill="none" stroke="${stroke}" stroke-width="${s.width || 1}" points="${pts.map(([x, y]) => `${x.toFixed(1)},${y.toFixed(1)}`).join(' ')}"/>`;
    body += `<text x="${left / r + 8 + (i - 1) * 90}" y="${H - 6}" fill="${stroke}" font-size="10">${esc(s.label)}</text>`;
  });
  return `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" font-family="sans-serif">${body}</svg>`;
}

function download(href, name) {
  const a = document.createElement('a');
  a.href = href;
  a.download = name;
  a.click();
  return a;
}

export function initChartFiles() {
  $('#save-charts').addEventListener('click', () => {
    for (const { key } of viewed.table.charts) {
      const u = charts[key];
      if (u) download(u.ctx.canvas.toDataURL('image/png'), `${viewed.runId || 'run'}-${key}.png`);
    }
  });
  $('#save-svgs').addEventListener('click', () => {
    for (const { key, title } of viewed.table.charts) {
      const u = charts[key];
      if (!u) continue;
      const a = download(URL.createObjectURL(new Blob([chartSvg(u, title)], { type: 'image/svg+xml' })), `${viewed.runId || 'run'}-${key}.svg`);
      setTimeout(() => URL.revokeObjectURL(a.href), 1000);
    }
  });
}
