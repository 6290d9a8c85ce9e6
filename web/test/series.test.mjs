// The page's series fold (web/static/series.js) against the server's:
// golden vectors in web/test/golden/. `series.json` is written by the Rust
// side from crates/server/src/state.rs (the server's own fold); the
// hand-made `series.sample.json` has the same format. Every file there is
// checked. Run: node --test web/test/
import test from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, readdirSync } from 'node:fs';

import {
  seriesTable, emptySeries, fromServer, batchRow, pushRow, bucketExtremes, compact, cutAfter, sm,
} from '../static/series.js';

const dir = new URL('./golden/', import.meta.url);
const files = readdirSync(dir).filter((f) => /^series.*\.json$/.test(f)).sort();

// The series table for a golden file's keys: every array of its series
// body (but `step`), those in `smoothed` with a moving average.
function tableOf(body) {
  const smoothed = Object.keys(body.smoothed);
  const keys = Object.keys(body).filter((k) => k !== 'step' && Array.isArray(body[k]));
  return seriesTable({
    series: keys.map((key) => ({ key, title: key, smoothed: smoothed.includes(key), chart: smoothed.includes(key) })),
    max_points: 2000,
    default_smoothing: 0.8,
  });
}

// Equal within 1e-9 relative; null (NaN) only equals null.
function close(got, want, what) {
  if (want == null || got == null) {
    assert.equal(got ?? null, want ?? null, what);
    return;
  }
  const tol = 1e-9 * Math.max(Math.abs(want), Math.abs(got), 1e-300);
  assert.ok(Math.abs(got - want) <= tol, `${what}: ${got} ≠ ${want}`);
}

function closeAll(got, want, what) {
  assert.equal(got.length, want.length, `${what}: ${got.length} values, want ${want.length}`);
  got.forEach((v, i) => close(v, want[i], `${what}[${i}]`));
}

// The page's series equals the server's body: steps, every series, the
// moving averages and their state.
function sameAsServer(t, s, body, what) {
  assert.deepEqual(s.step, body.step, `${what}: steps`);
  for (const k of t.keys) closeAll(s[k], body[k], `${what}: ${k}`);
  for (const k of t.smoothed) {
    closeAll(s[sm(k)], body.smoothed[k], `${what}: smoothed ${k}`);
    closeAll(s.ema[k], body.ema[k], `${what}: ema state of ${k}`);
  }
}

// Batches through the page's live path: batchRow + pushRow.
function live(t, alpha, batches, s = emptySeries(t, alpha)) {
  for (const b of batches) pushRow(t, s, batchRow(t, b));
  return s;
}

for (const file of files) {
  // A fresh copy for each test: fromServer takes the body's arrays as they are.
  const text = readFileSync(new URL(file, dir), 'utf8');
  const golden = () => JSON.parse(text);
  const t = tableOf(golden().series);

  test(`${file}: live batches fold into the server's series`, () => {
    const g = golden();
    assert.ok(g.batches.length > 0 && t.smoothed.length > 0);
    assert.equal(g.series.smoothing, g.smoothing);
    sameAsServer(t, live(t, g.smoothing, g.batches), g.series, 'live');
  });

  test(`${file}: fromServer keeps the server's series, and live batches continue its moving average`, () => {
    const g = golden();
    const s = fromServer(t, g.series);
    assert.equal(s.alpha, g.smoothing);
    sameAsServer(t, s, g.series, 'fromServer');
    // The same batches again, after the last step: continued from the
    // server's state, exactly as the page's own fold of every batch.
    const last = g.series.step[g.series.step.length - 1];
    const more = g.batches.map((b) => ({ ...b, step: b.step + last }));
    live(t, g.smoothing, more, s);
    const whole = live(t, g.smoothing, [...g.batches, ...more]);
    assert.deepEqual(s.step, whole.step);
    for (const k of t.smoothed) {
      closeAll(s[sm(k)], whole[sm(k)], `smoothed ${k}`);
      closeAll(s.ema[k], whole.ema[k], `ema ${k}`);
    }
  });

  test(`${file}: bucketing keeps the indices the server's bucket_extremes keeps`, () => {
    const g = golden();
    const s = live(t, g.smoothing, g.batches);
    assert.deepEqual(bucketExtremes(t, s, g.bucketed.max), g.bucketed.keep);
    // Everything when it fits.
    assert.deepEqual(bucketExtremes(t, s, s.step.length), [...s.step.keys()]);
  });

  test(`${file}: a resume's cut, then its batches, give the server's series`, () => {
    const g = golden(), r = g.resumed;
    const s = live(t, g.smoothing, g.batches);
    assert.equal(cutAfter(t, s, r.from_step), true, 'a series with every step computes its average again');
    assert.ok(s.step.every((x) => x <= r.from_step));
    live(t, g.smoothing, r.batches, s);
    sameAsServer(t, s, r.series, 'resumed');
    // The same from the server's series of the first batches.
    const f = fromServer(t, g.series);
    assert.equal(cutAfter(t, f, r.from_step), true);
    live(t, g.smoothing, r.batches, f);
    sameAsServer(t, f, r.series, 'resumed from the server\'s series');
  });

  test(`${file}: a cut series reduced to buckets says it needs the server's average`, () => {
    const g = golden();
    const s = live(t, g.smoothing, g.batches);
    compact(t, s);
    assert.equal(s.whole, false);
    const before = s.step.length;
    assert.equal(cutAfter(t, s, g.resumed.from_step), false);
    assert.ok(s.step.length < before && s.step.every((x) => x <= g.resumed.from_step));
    // Nothing after the step: nothing cut, the average stands.
    assert.equal(cutAfter(t, s, 1e12), true);
  });
}

test('a golden file is there to check against', () => {
  assert.ok(files.length > 0, 'no web/test/golden/series*.json');
});

test('compaction keeps the server\'s picks and the newest point', () => {
  const t = tableOf(JSON.parse(readFileSync(new URL(files[0], dir), 'utf8')).series);
  const s = emptySeries(t, 0.9);
  for (let step = 1; step <= 1000; step++) {
    const row = { step, epoch: step / 100, ts_ms: step * 10 };
    for (const k of t.smoothed) row[k] = step === 500 && k === 'loss' ? null : Math.sin(step / 7) + step / 1000;
    pushRow(t, s, row, 999);
  }
  // 1,000 points past the limit of 999: buckets of about 32 steps.
  assert.ok(s.step.length < 1000 / 2, `${s.step.length} points kept`);
  assert.equal(s.step[s.step.length - 1], 1000, 'the newest point stays');
  assert.ok(s.step.includes(500) && s.loss[s.step.indexOf(500)] === null, 'a NaN loss stays visible');
  assert.ok(s.step.every((x, i) => i === 0 || x > s.step[i - 1]), 'in step order');
  // Every column kept at the same points, the moving average's too.
  for (const k of t.all) assert.equal(s[k].length, s.step.length, k);
});
