// The batch series of a run as the page holds them: the same fold as the
// server's (`SERIES`, `Ema`, `bucket_extremes` and `cut_after` in
// crates/server/src/state.rs), checked against the server's own output by
// web/test/series.test.mjs (golden vectors in web/test/golden/).
//
// DOM-free: nothing here reads `document` or `window`, so node imports it.
// Every function takes the series table `t` (seriesTable below) that the
// server describes at GET /api/series/schema.
//
// A series is an object of parallel arrays on one step axis:
//   step            the optimiser steps, increasing
//   <key>           each series of the table (`loss`, …, `epoch`, `ts_ms`);
//                   null stands for NaN (JSON has no NaN)
//   s_<key>         each smoothed series' moving average at those steps
//   alpha           the smoothing weight of the moving average
//   ema             {key: [sum, weight]}: the moving average's state after
//                   the last step, which live batches continue
//   whole           true while it holds every step from the run's first
//                   (then a resume's cut can recompute the average itself)

/// The name of a smoothed series' column.
export const sm = (k) => `s_${k}`;

/// The table the page uses, from the server's answer
/// `{series: [{key, title, smoothed, chart}], max_points, default_smoothing}`:
/// `keys` every series, `smoothed` those with a moving average, `charts`
/// those drawn ({key, title}), `all` every column but `step`.
export function seriesTable(schema) {
  const keys = schema.series.map((s) => s.key);
  const smoothed = schema.series.filter((s) => s.smoothed).map((s) => s.key);
  return {
    keys,
    smoothed,
    charts: schema.series.filter((s) => s.chart).map(({ key, title }) => ({ key, title })),
    all: [...keys, ...smoothed.map(sm)],
    maxPoints: schema.max_points,
    defaultSmoothing: schema.default_smoothing,
  };
}

export function emptySeries(t, alpha) {
  const s = { step: [], alpha, ema: {}, whole: true };
  for (const k of t.all) s[k] = [];
  for (const k of t.smoothed) s.ema[k] = [0, 0];
  return s;
}

// A `series` answer (or a snapshot's series): every series on one step
// axis, the moving average computed by the server on every step, and its
// state after the last one, which live batches continue.
export function fromServer(t, body) {
  const s = emptySeries(t, body.smoothing);
  s.step = body.step || [];
  for (const k of t.keys) s[k] = body[k] || [];
  for (const k of t.smoothed) {
    s[sm(k)] = (body.smoothed && body.smoothed[k]) || [];
    s.ema[k] = (body.ema && body.ema[k]) ? [...body.ema[k]] : [0, 0];
  }
  // Every step from the first: the whole range, not reduced to buckets.
  s.whole = body.total != null && body.in_range === body.total && s.step.length === body.total;
  return s;
}

// TensorBoard's debiased moving average, continued one value at a time
// (`Ema::push`: a non-finite value is skipped and has no average).
export function emaPush(series, key, v) {
  if (v == null || !isFinite(v)) return null;
  const st = series.ema[key], a = series.alpha;
  st[0] = st[0] * a + (1 - a) * v;
  st[1] = st[1] * a + (1 - a);
  return st[0] / st[1];
}

// A batch event as a row of the series: the epoch axis is the position in
// epochs (1.5 is half-way through the second), as the server's `SERIES`.
export function batchRow(t, e) {
  const row = { step: e.step };
  for (const k of t.keys) row[k] = k === 'epoch' ? e.epoch - 1 + e.batch / Math.max(1, e.batches) : e[k];
  return row;
}

export function rowAt(t, series, i) {
  const row = { step: series.step[i] };
  for (const k of t.keys) row[k] = series[k][i];
  return row;
}

// Appends a row (a step already in the series is skipped) with its moving
// averages; past `limit` points the series is compacted.
export function pushRow(t, series, row, limit = Infinity) {
  const n = series.step.length;
  if (n && row.step <= series.step[n - 1]) return;   // already in the series
  series.step.push(row.step);
  for (const k of t.keys) series[k].push(row[k]);
  for (const k of t.smoothed) series[sm(k)].push(emaPush(series, k, row[k]));
  if (series.step.length > limit) compact(t, series);
}

const isNaNish = (v) => v == null || Number.isNaN(v);

// The server's `bucket_extremes`: the indices of the series' points to keep
// for about `max` points: all of them when they fit, else, over `max / 4`
// buckets of consecutive points, those where a smoothed series has its
// minimum or maximum (NaN counts as a maximum, so a NaN loss stays
// visible), in step order.
export function bucketExtremes(t, series, max) {
  const n = series.step.length;
  if (n <= max || max < 4) return [...Array(n).keys()];
  const buckets = Math.floor(max / 4), out = [];
  for (let b = 0; b < buckets; b++) {
    const lo = Math.floor(b * n / buckets);
    const hi = Math.max(Math.floor((b + 1) * n / buckets), lo + 1);
    const picked = new Set();
    for (const k of t.smoothed) {
      const ys = series[k];
      let imin = lo, imax = lo;
      for (let i = lo; i < hi; i++) {
        const v = ys[i], vmin = ys[imin], vmax = ys[imax];
        if (isNaNish(v) ? false : isNaNish(vmin) || v < vmin) imin = i;
        if (isNaNish(v) ? !isNaNish(vmax) : !isNaNish(vmax) && v > vmax) imax = i;
      }
      picked.add(imin).add(imax);
    }
    out.push(...[...picked].sort((a, b) => a - b));
  }
  return out;
}

// The live series past its limit: points in buckets of about BUCKET steps,
// kept by the server's rule, and the newest point, where the curve ends.
const BUCKET = 32;
export function compact(t, series) {
  const n = series.step.length;
  const keep = bucketExtremes(t, series, 4 * Math.ceil(n / BUCKET));
  if (keep[keep.length - 1] !== n - 1) keep.push(n - 1);
  for (const k of ['step', ...t.all]) series[k] = keep.map((i) => series[k][i]);
  series.whole = false;
}

// Drops the points after `step`, which a resumed run trains again (the
// server's `cut_after`). The moving average went through the dropped
// steps: when the series holds every step it is computed again over the
// kept ones; returns false when it could not be (the caller then asks the
// server for the series).
export function cutAfter(t, series, step) {
  const keep = series.step.findIndex((x) => x > step);
  if (keep < 0) return true;
  for (const k of ['step', ...t.all]) series[k].length = keep;
  if (!series.whole) return false;
  for (const k of t.smoothed) {
    series.ema[k] = [0, 0];
    for (const v of series[k]) emaPush(series, k, v);
  }
  return true;
}

// `outer` with the points of steps `from..=to` replaced by those of
// `inner` (a zoom's finer series of the range); the moving average's state
// stays outer's.
export function mergeRange(t, outer, inner, from, to) {
  const out = emptySeries(t, outer.alpha);
  out.ema = outer.ema;
  out.whole = false;
  const copy = (src, i) => { out.step.push(src.step[i]); for (const k of t.all) out[k].push(src[k][i]); };
  let i = 0;
  for (; i < outer.step.length && outer.step[i] < from; i++) copy(outer, i);
  for (let j = 0; j < inner.step.length; j++) copy(inner, j);
  for (; i < outer.step.length; i++) if (outer.step[i] > to) copy(outer, i);
  return out;
}

// ---------- the x axes ----------
// `mode`: step, epoch, wall (s since 1970) or relative (s since the run's
// first batch).

// The chosen x axis for a step of `series`, interpolated between the
// steps the series holds.
export function xMapper(series, mode) {
  if (mode === 'step') return (step) => step;
  const key = mode === 'epoch' ? 'epoch' : 'ts_ms';
  const xs = series.step, ys = series[key];
  const t0 = series.ts_ms.length ? series.ts_ms[0] : 0;
  const scale = mode === 'epoch' ? (v) => v : mode === 'wall' ? (v) => v / 1000 : (v) => (v - t0) / 1000;
  return (step) => {
    if (!xs.length) return null;
    let lo = 0, hi = xs.length - 1;
    while (lo < hi) { const mid = (lo + hi) >> 1; if (xs[mid] < step) lo = mid + 1; else hi = mid; }
    if (xs[lo] === step || lo === 0) return scale(ys[lo]);
    const a = lo - 1;
    return scale(ys[a] + (ys[lo] - ys[a]) * (step - xs[a]) / (xs[lo] - xs[a]));
  };
}

// A time (ms) on the chosen x axis, through the batches' times (the
// hardware samples over the run).
export function tsMapper(series, mode) {
  const ts = series.ts_ms, t0 = ts.length ? ts[0] : 0;
  if (mode === 'wall') return (t) => t / 1000;
  if (mode === 'relative') return (t) => (t - t0) / 1000;
  const ys = mode === 'epoch' ? series.epoch : series.step;
  return (t) => {
    if (!ts.length) return null;
    if (t <= ts[0]) return ys[0];
    if (t >= ts[ts.length - 1]) return ys[ys.length - 1];
    let lo = 0, hi = ts.length - 1;
    while (lo < hi) { const mid = (lo + hi) >> 1; if (ts[mid] < t) lo = mid + 1; else hi = mid; }
    const a = lo - 1;
    return ys[a] + (ys[lo] - ys[a]) * (t - ts[a]) / Math.max(1, ts[lo] - ts[a]);
  };
}

// Columns of (x, y) pairs, each sorted by x, onto one x axis (uPlot's
// data): a merge that puts the columns' equal x values on one row, while a
// column's own repeated x (batches logged in the same millisecond) keeps a
// row each. On a log x axis (`logX`) an x of zero or less has no place.
export function joinColumns(cols, logX = false) {
  if (logX) cols = cols.map((c) => ({ xs: c.xs.map((x) => (x > 0 ? x : null)), ys: c.ys }));
  const heads = cols.map(() => 0);
  const ux = [], out = cols.map(() => []);
  for (;;) {
    let x = Infinity;
    for (let k = 0; k < cols.length; k++) {
      const xs = cols[k].xs;
      while (heads[k] < xs.length && (xs[heads[k]] == null || Number.isNaN(xs[heads[k]]))) heads[k]++;
      if (heads[k] < xs.length && xs[heads[k]] < x) x = xs[heads[k]];
    }
    if (x === Infinity) break;
    ux.push(x);
    cols.forEach((c, k) => {
      if (heads[k] < c.xs.length && c.xs[heads[k]] === x) { out[k].push(c.ys[heads[k]]); heads[k]++; } else out[k].push(null);
    });
  }
  return [ux, ...out];
}

// ---------- hardware samples over a run ----------

// A `hardware` event as a sample of the run (HwPoint::of in state.rs).
export function hwPoint(h) {
  const gpus = h.gpus || [];
  return {
    ts_ms: h.sampled_at_ms,
    cpu_percent: h.cpu.usage_percent,
    rss_bytes: h.process.rss_bytes,
    gpu_percent: gpus.length ? Math.max(0, ...gpus.map((g) => g.utilization_percent ?? 0)) : null,
    gpu_memory_bytes: gpus.length ? gpus.reduce((a, g) => a + (g.memory_used_bytes ?? 0), 0) : null,
  };
}

// Half the samples: the larger of each pair, at the later one's time.
export function halveHw(samples) {
  const out = [], mx = (x, y) => (x == null ? y : y == null ? x : Math.max(x, y));
  for (let i = 0; i + 1 < samples.length; i += 2) {
    const a = samples[i], b = samples[i + 1];
    out.push({ ts_ms: b.ts_ms, cpu_percent: mx(a.cpu_percent, b.cpu_percent), rss_bytes: mx(a.rss_bytes, b.rss_bytes), gpu_percent: mx(a.gpu_percent, b.gpu_percent), gpu_memory_bytes: mx(a.gpu_memory_bytes, b.gpu_memory_bytes) });
  }
  return out;
}
