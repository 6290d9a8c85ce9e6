// Inside the network, the page's DOM-free part: the viewed run's layer
// statistics as columns (GET /api/runs/{id}/layers, then live `layers` and
// `histograms` events merged in), the heatmap's colour scale and geometry
// (which sample a pixel column shows, which cell the pointer is on), the
// histograms of one layer over time, an alert's diagnosis in words and the
// saliency overlay's pixels. Tested in web/test/layers.test.mjs.

// One colour per layer (lines, legend), in forward order.
export const LAYER_COLORS = ['#4aa3ff', '#3ecf8e', '#f5b041', '#c9a6f0', '#ff7b72', '#56b6c2'];

// The histogram kinds a layer has, in the page's order, and their titles.
export const HIST_KINDS = [['weights', 'Weights'], ['grads', 'Gradients'], ['activations', 'Activations (ReLU output)']];

// Past this many samples the live columns are halved (the newest kept).
export const MAX_SAMPLES = 4000;
export const MAX_HISTOGRAMS = 400;

// A statistic's value in a `layers` event's layer entry: the answer's keys
// name the activation statistics act_mean, act_std, dead.
const ACT = { act_mean: 'mean', act_std: 'std', dead: 'dead' };
export function readStat(key, sample) {
  const v = key in ACT ? sample.activations?.[ACT[key]] : sample[key];
  return typeof v === 'number' && Number.isFinite(v) ? v : null;
}

// The columns of no run yet.
export function emptyCols() {
  return { layers: [], statistics: [], total: 0, step: [], lr: [], values: {}, histograms: [] };
}

// The server's answer as the page's columns (copied: live events grow them).
export function fromAnswer(a) {
  const values = {};
  for (const s of a.statistics) values[s.key] = a.layers.map((_, i) => [...(a.values[s.key]?.[i] || a.step.map(() => null))]);
  return {
    layers: [...a.layers], statistics: a.statistics, total: a.total, step: [...a.step], lr: [...a.lr], values,
    histograms: [...a.histograms],
  };
}

const lastOf = (arr) => (arr.length ? arr[arr.length - 1] : -Infinity);

// A live `layers` event onto the columns: appended when it is newer than
// the last sample (one the fetched answer already held is skipped);
// halved past `limit`. Returns whether it was taken.
export function pushLayers(cols, e, limit = MAX_SAMPLES) {
  if (e.step <= lastOf(cols.step)) return false;
  if (!cols.layers.length) cols.layers = e.layers.map((l) => l.name);
  cols.step.push(e.step);
  cols.lr.push(e.lr ?? null);
  cols.total++;
  for (const s of cols.statistics) {
    const per = cols.values[s.key] || (cols.values[s.key] = cols.layers.map(() => cols.step.slice(1).map(() => null)));
    cols.layers.forEach((name, i) => {
      const l = e.layers.find((x) => x.name === name);
      per[i].push(l ? readStat(s.key, l) : null);
    });
  }
  if (cols.step.length > limit) halve(cols);
  return true;
}

// Every other sample (the newest always kept).
export function halve(cols) {
  const n = cols.step.length;
  const keep = (_, i) => (n - 1 - i) % 2 === 0;
  cols.step = cols.step.filter(keep);
  cols.lr = cols.lr.filter(keep);
  for (const k of Object.keys(cols.values)) cols.values[k] = cols.values[k].map((row) => row.filter(keep));
}

// A live `histograms` event: appended when newer than the last set.
export function pushHistograms(cols, e, limit = MAX_HISTOGRAMS) {
  if (e.step <= lastOf(cols.histograms.map((h) => h.step))) return false;
  cols.histograms.push({ step: e.step, epoch: e.epoch, layers: e.layers });
  if (cols.histograms.length > limit) {
    const n = cols.histograms.length;
    cols.histograms = cols.histograms.filter((_, i) => (n - 1 - i) % 2 === 0);
  }
  return true;
}

// Drops what came after `step` (a resumed run trains it again).
export function cutAfter(cols, step) {
  const keep = cols.step.map((s) => s <= step);
  const f = (_, i) => keep[i];
  cols.step = cols.step.filter(f);
  cols.lr = cols.lr.filter(f);
  for (const k of Object.keys(cols.values)) cols.values[k] = cols.values[k].map((row) => row.filter(f));
  cols.histograms = cols.histograms.filter((h) => h.step <= step);
}

// ---------- colour ----------

// Viridis, sampled: dark violet (low) to yellow (high).
const VIRIDIS = [[68, 1, 84], [72, 40, 120], [62, 74, 137], [49, 104, 142], [38, 130, 142], [31, 158, 137],
  [53, 183, 121], [109, 205, 89], [180, 222, 44], [253, 231, 37]];

// The colour of t in [0, 1] as [r, g, b].
export function colorAt(t) {
  const x = Math.min(1, Math.max(0, t)) * (VIRIDIS.length - 1);
  const i = Math.min(VIRIDIS.length - 2, Math.floor(x)), f = x - i;
  return VIRIDIS[i].map((c, k) => Math.round(c + (VIRIDIS[i + 1][k] - c) * f));
}
export const cssColor = (rgb) => `rgb(${rgb.join(',')})`;

// The colour scale of a statistic over `rows` (arrays of values, nulls
// skipped): {min, max, log, t(v)}, t(v) in [0, 1] or null where v has no
// colour (null, or not positive on a log scale). A constant maps to 0.5.
export function colorScale(rows, log) {
  let min = Infinity, max = -Infinity;
  for (const row of rows) {
    for (const v of row) {
      if (v == null || !Number.isFinite(v) || (log && v <= 0)) continue;
      if (v < min) min = v;
      if (v > max) max = v;
    }
  }
  if (min === Infinity) return { min: null, max: null, log, t: () => null };
  const f = log ? Math.log10 : (v) => v;
  const a = f(min), b = f(max);
  const t = (v) => {
    if (v == null || !Number.isFinite(v) || (log && v <= 0)) return null;
    return b > a ? Math.min(1, Math.max(0, (f(v) - a) / (b - a))) : 0.5;
  };
  return { min, max, log, t };
}

// ---------- the heatmap's geometry ----------

// The x range the heatmap and the line chart share: the zoom, else from
// before the first sample (sample i covers the x since sample i - 1) to
// the last. `xs`: each sample's x, increasing.
export function xDomain(xs, zoom, log) {
  if (zoom) return [zoom[0], zoom[1]];
  if (!xs.length) return [0, 1];
  const first = xs[0], last = xs[xs.length - 1];
  const next = xs.length > 1 ? xs[1] : first + 1;
  let lo = log ? (first > 0 && next > 0 ? (first * first) / next : first) : first - (next - first);
  if (!log && first >= 0 && lo < 0) lo = 0;
  return [lo, last > lo ? last : lo + 1];
}

// x -> pixel in [0, width] over the domain, linear or log.
export function xToPx(domain, width, log) {
  const [lo, hi] = domain;
  if (log && lo > 0) {
    const a = Math.log(lo), b = Math.log(hi);
    return (x) => (x > 0 ? ((Math.log(x) - a) / (b - a)) * width : -Infinity);
  }
  return (x) => ((x - lo) / (hi - lo)) * width;
}

// Which samples each of `width` pixel columns shows: [first, last] sample
// indices whose span (the x since the sample before, to its own) meets the
// column, or null where none does.
export function heatColumns(xs, domain, width, log) {
  const px = xToPx(domain, width, log);
  const out = new Array(width).fill(null);
  let prev = px(domain[0]);
  for (let i = 0; i < xs.length; i++) {
    if (xs[i] == null) continue;
    const right = px(xs[i]);
    const left = i === 0 ? Math.min(prev, right) : prev;
    prev = right;
    // A span that only touches the plot's edge is outside it.
    if (right < 0 || (right <= 0 && left < 0) || left >= width) continue;
    const a = Math.max(0, Math.floor(left)), b = Math.min(width - 1, Math.max(a, Math.ceil(right) - 1));
    for (let c = a; c <= b; c++) {
      if (out[c]) out[c][1] = i; else out[c] = [i, i];
    }
  }
  return out;
}

// The sample of [a, b] a column shows for one layer: the largest value
// (a spike stays visible however many samples share a pixel), or the
// last sample when none has a value.
export function pickSample(row, a, b) {
  let best = null;
  for (let i = a; i <= b; i++) if (row[i] != null && (best == null || row[i] > row[best])) best = i;
  return best ?? b;
}

// The cell under a point of the heatmap: geometry {left, top, width,
// rowH, rows, columns (heatColumns)}; {row, sample} or null.
export function heatCellAt(geom, x, y) {
  const row = Math.floor((y - geom.top) / geom.rowH);
  if (row < 0 || row >= geom.rows) return null;
  const c = Math.floor(x - geom.left);
  if (c < 0) return { row, sample: null };
  if (c >= geom.width) return null;
  const span = geom.columns[c];
  if (!span) return { row, sample: null };
  return { row, sample: geom.pick ? geom.pick(row, span[0], span[1]) : span[1] };
}

// A number for a label: 3 significant digits, small and large ones in e-notation.
export function fmtVal(v) {
  if (v == null || !Number.isFinite(v)) return '–';
  const a = Math.abs(v);
  if (a !== 0 && (a < 1e-4 || a >= 1e5)) return v.toExponential(2);
  return String(Number(v.toPrecision(3)));
}

// ---------- histograms over time ----------

// One layer's histograms of one kind over time: {lo, hi, bins, rows: [{epoch,
// step, counts, below, above, notFinite, total, max}], max}, or null when
// the layer has none of that kind (fc2's activations).
export function histSeries(histograms, layer, kind) {
  const rows = [];
  let lo = null, hi = null, bins = 0, max = 0;
  for (const set of histograms) {
    const h = set.layers.find((l) => l.name === layer)?.[kind];
    if (!h) continue;
    if (lo == null) { lo = h.lo; hi = h.hi; bins = h.counts.length; }
    const m = Math.max(0, ...h.counts);
    const total = h.counts.reduce((a, c) => a + c, 0) + (h.below || 0) + (h.above || 0) + (h.not_finite || 0);
    rows.push({ epoch: set.epoch, step: set.step, counts: h.counts, below: h.below || 0, above: h.above || 0, notFinite: h.not_finite || 0, total, max: m });
    if (m > max) max = m;
  }
  return rows.length ? { lo, hi, bins, rows, max } : null;
}

// The over-time view's layout: `n` rows (oldest on top) of `bins` cells in
// width × (at most) maxHeight pixels: {rowH, height, cellW}.
export function histGrid(n, bins, width, maxHeight) {
  const rowH = Math.max(2, Math.min(14, Math.floor(maxHeight / Math.max(1, n))));
  return { rowH, height: rowH * n, cellW: width / Math.max(1, bins) };
}

// The cell of the over-time view under (x, y): {row, bin} or null.
export function histCellAt(grid, n, bins, x, y) {
  const row = Math.floor(y / grid.rowH), bin = Math.floor(x / grid.cellW);
  return row >= 0 && row < n && bin >= 0 && bin < bins ? { row, bin } : null;
}

// A bin's edges.
export const binEdges = (lo, hi, bins, i) => [lo + ((hi - lo) * i) / bins, lo + ((hi - lo) * (i + 1)) / bins];

// A count's shade in the over-time view: log(1 + count) over log(1 + max).
export const countShade = (c, max) => (max > 0 && c > 0 ? Math.log1p(c) / Math.log1p(max) : 0);

// ---------- an alert's diagnosis ----------

// The diagnosis as [label, text] rows for the Status card.
export function diagnosisRows(d) {
  if (!d) return [];
  const rows = [['when', `step ${d.step}${d.lr != null ? `, learning rate ${fmtVal(d.lr)}` : ''}`]];
  if (d.layer) {
    const rise = d.rise == null ? 'became non-finite' : `rose ${fmtVal(d.rise)}× over its baseline`;
    rows.push(['layer', `${d.layer}: its gradient norm ${rise}${d.rose_at_step != null ? ` from step ${d.rose_at_step}` : ''}`]);
  }
  if (d.dead_share != null) rows.push(['dead units', `${(100 * d.dead_share).toFixed(1)}% of the ReLU units`]);
  if (d.suggestion) rows.push(['suggestion', d.suggestion]);
  if (d.last_good_checkpoint) rows.push(['last good checkpoint', `epoch ${d.last_good_checkpoint.epoch} (step ${d.last_good_checkpoint.step})`]);
  return rows;
}

// The rate a fork from the last good checkpoint is offered: ten times
// lower than the diagnosis's (else the run's), two significant digits.
export function forkLr(d, configLr) {
  const lr = d?.lr != null && Number.isFinite(d.lr) && d.lr > 0 ? d.lr : configLr;
  return lr > 0 ? Number((lr / 10).toPrecision(2)) : null;
}

// ---------- the saliency overlay ----------

// The input (grey) darkened, the saliency over it in warm colours: RGBA
// pixels from two RGBA images of the same size.
export function overlayPixels(input, saliency) {
  const out = new Uint8ClampedArray(input.length);
  for (let p = 0; p < input.length; p += 4) {
    const g = input[p] * 0.55, s = saliency[p] / 255;
    out[p] = g * (1 - s) + 255 * s;
    out[p + 1] = g * (1 - s) + 255 * s * s * 0.85;
    out[p + 2] = g * (1 - s) + 40 * s * s;
    out[p + 3] = 255;
  }
  return out;
}

// A feature map's tile size: a whole multiple of its side near 44 px.
export const tileScale = (side) => Math.max(1, Math.round(44 / Math.max(1, side)));
