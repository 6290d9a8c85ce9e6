// The page's DOM-free chart math (web/static/series.js): the series table,
// the x axes, the join of columns onto one x axis, the hardware samples'
// fold. Run: node --test web/test/
import test from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';

import { seriesTable, emptySeries, pushRow, xMapper, tsMapper, joinColumns, hwPoint, halveHw } from '../static/series.js';
import * as shared from '../static/viewed.js';

// GET /api/series/schema's answer, as the server's tests wrote it.
const SCHEMA = JSON.parse(readFileSync(new URL('./golden/series.json', import.meta.url), 'utf8')).schema;
const table = seriesTable(SCHEMA);

// Steps 10, 20, 30 in epoch 1 of 40 batches, a second apart from t = 5 s.
function threeSteps() {
  const s = emptySeries(table, 0.5);
  for (const [i, step] of [10, 20, 30].entries()) {
    pushRow(table, s, { step, epoch: step / 40, ts_ms: 5000 + 1000 * i, loss: 1, accuracy: 0.5, f1_macro: 0.5, lr: 0.1, images_per_sec: 100 });
  }
  return s;
}

test('the series table: keys, smoothed and charted series, titles', () => {
  assert.deepEqual(table.keys, ['loss', 'accuracy', 'f1_macro', 'lr', 'images_per_sec', 'epoch', 'ts_ms']);
  assert.deepEqual(table.smoothed, ['loss', 'accuracy', 'f1_macro', 'lr', 'images_per_sec']);
  assert.deepEqual(table.charts.map((c) => c.title), ['Loss', 'Accuracy', 'Macro F1', 'Learning rate', 'Images/s']);
  assert.deepEqual(table.all.slice(-5), ['s_loss', 's_accuracy', 's_f1_macro', 's_lr', 's_images_per_sec']);
  assert.equal(table.maxPoints, 2000);
  assert.equal(table.defaultSmoothing, 0.8);
  // The shared state declares its fields once: no key added on the way.
  assert.ok(Object.isSealed(shared.viewed));
  assert.throws(() => { shared.viewed.somethingNew = 1; });
});

test('x axes: a step on the step, epoch, wall-time and relative-time axes', () => {
  const s = threeSteps();
  assert.equal(xMapper(s, 'step')(25), 25);
  assert.equal(xMapper(s, 'epoch')(20), 0.5);
  assert.equal(xMapper(s, 'epoch')(25), 0.625);          // between two steps
  assert.equal(xMapper(s, 'wall')(30), 7);
  assert.equal(xMapper(s, 'relative')(15), 0.5);
  assert.equal(xMapper(s, 'relative')(5), 0);            // before the first: the first
  assert.equal(xMapper(emptySeries(table, 0.5), 'epoch')(3), null);
});

test('x axes: a time (hardware sample) on each axis, through the batches\' times', () => {
  const s = threeSteps();
  assert.equal(tsMapper(s, 'step')(5500), 15);
  assert.equal(tsMapper(s, 'step')(1000), 10);           // before the first batch
  assert.equal(tsMapper(s, 'step')(9000), 30);           // after the last
  assert.equal(tsMapper(s, 'epoch')(6000), 0.5);
  assert.equal(tsMapper(s, 'wall')(6000), 6);
  assert.equal(tsMapper(s, 'relative')(6000), 1);
  assert.equal(tsMapper(emptySeries(table, 0.5), 'step')(6000), null);
});

test('joinColumns: equal x on one row, a column\'s repeated x a row each, no x skipped', () => {
  const [x, a, b] = joinColumns([
    { xs: [1, 2, 2, 4], ys: ['a1', 'a2', 'a2b', 'a4'] },
    { xs: [null, 2, 3], ys: ['bn', 'b2', 'b3'] },
  ]);
  assert.deepEqual(x, [1, 2, 2, 3, 4]);
  assert.deepEqual(a, ['a1', 'a2', 'a2b', null, 'a4']);
  assert.deepEqual(b, [null, 'b2', null, 'b3', null]);
  // A log axis drops x of zero or less.
  const [lx, ly] = joinColumns([{ xs: [0, 1, 2], ys: [10, 11, 12] }], true);
  assert.deepEqual(lx, [1, 2]);
  assert.deepEqual(ly, [11, 12]);
});

test('hardware samples: the server\'s fold of an event, halved by the larger of each pair', () => {
  const h = (t, cpu, gpus) => hwPoint({ sampled_at_ms: t, cpu: { usage_percent: cpu }, process: { rss_bytes: 100 * cpu }, gpus });
  const a = h(1, 10, []), b = h(2, 30, [{ utilization_percent: 50, memory_used_bytes: 5 }, { utilization_percent: null, memory_used_bytes: 7 }]);
  assert.deepEqual(a, { ts_ms: 1, cpu_percent: 10, rss_bytes: 1000, gpu_percent: null, gpu_memory_bytes: null });
  assert.deepEqual(b, { ts_ms: 2, cpu_percent: 30, rss_bytes: 3000, gpu_percent: 50, gpu_memory_bytes: 12 });
  assert.deepEqual(halveHw([a, b, h(3, 5, [])]), [{ ts_ms: 2, cpu_percent: 30, rss_bytes: 3000, gpu_percent: 50, gpu_memory_bytes: 12 }]);
});
