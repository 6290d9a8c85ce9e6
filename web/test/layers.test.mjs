// Inside the network, the page's DOM-free part (web/static/layerlib.js),
// on real-shaped data: golden/layers.sample.json holds a real run's
// GET /api/runs/{id}/layers answer up to step 40 (3 epochs of 100 steps on
// MNIST, layer_stats_every 10; its first two histogram sets) and the
// `layers` and `histograms` events that came after it in its log.
// Run: node --test web/test/
import test from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';

import {
  readStat, emptyCols, fromAnswer, pushLayers, pushHistograms, cutAfter, halve, colorAt, colorScale, xDomain, xToPx,
  heatColumns, pickSample, heatCellAt, fmtVal, histSeries, histGrid, histCellAt, binEdges, countShade, diagnosisRows,
  forkLr, overlayPixels, tileScale, LAYER_COLORS,
} from '../static/layerlib.js';

const SAMPLE = JSON.parse(readFileSync(new URL('./golden/layers.sample.json', import.meta.url), 'utf8'));
const ANSWER = SAMPLE.answer;
const LAYERS = ['conv1', 'conv2', 'conv3', 'conv4', 'fc1', 'fc2'];

test('the answer as columns: six layers, every statistic, a value per layer and step, copied', () => {
  const c = fromAnswer(ANSWER);
  assert.deepEqual(c.layers, LAYERS);
  assert.deepEqual(c.step, [1, 2, 4, 8, 10, 20, 30, 40]);
  assert.deepEqual(c.statistics.map((s) => s.key), ['grad_norm', 'weight_norm', 'update_ratio', 'act_mean', 'act_std', 'dead']);
  for (const s of c.statistics) {
    assert.equal(c.values[s.key].length, 6, s.key);
    for (const row of c.values[s.key]) assert.equal(row.length, 8, s.key);
  }
  // fc2's output is the logits: no activation statistics.
  assert.ok(c.values.dead[5].every((v) => v == null));
  assert.ok(c.values.dead[0].every((v) => v != null && v >= 0 && v <= 1));
  // Growing the columns leaves the answer alone.
  c.step.push(99);
  c.values.grad_norm[0].push(1);
  assert.equal(ANSWER.step.length, 8);
  assert.equal(ANSWER.values.grad_norm[0].length, 8);
  assert.equal(LAYER_COLORS.length >= 6, true);
});

test('a layer sample read like the server: activation statistics under their own keys, non-finite as null', () => {
  const l = SAMPLE.live_layers[0].layers[0];
  assert.equal(readStat('grad_norm', l), l.grad_norm);
  assert.equal(readStat('act_mean', l), l.activations.mean);
  assert.equal(readStat('act_std', l), l.activations.std);
  assert.equal(readStat('dead', l), l.activations.dead);
  const fc2 = SAMPLE.live_layers[0].layers[5];
  assert.equal(fc2.activations, undefined);
  assert.equal(readStat('dead', fc2), null);
  assert.equal(readStat('grad_norm', { grad_norm: null }), null);
});

test('live layers events merge after the fetched columns; repeats are skipped', () => {
  const c = fromAnswer(ANSWER);
  for (const e of SAMPLE.live_layers) assert.equal(pushLayers(c, e), true);
  assert.deepEqual(c.step, [1, 2, 4, 8, 10, 20, 30, 40, 50, 60, 70]);
  assert.equal(c.total, ANSWER.total + 3);
  assert.equal(c.values.grad_norm[3][8], SAMPLE.live_layers[0].layers[3].grad_norm);
  assert.equal(c.values.act_std[1][10], SAMPLE.live_layers[2].layers[1].activations.std);
  assert.equal(c.values.dead[5][9], null);
  for (const k of Object.keys(c.values)) for (const row of c.values[k]) assert.equal(row.length, 11);
  // An event the answer (or an earlier push) held already: skipped.
  assert.equal(pushLayers(c, SAMPLE.live_layers[1]), false);
  assert.equal(pushLayers(c, { ...SAMPLE.live_layers[0], step: 40 }), false);
  assert.equal(c.step.length, 11);
});

test('live events into empty columns (the answer not there yet) keep the layer order', () => {
  const c = emptyCols();
  c.statistics = ANSWER.statistics;
  pushLayers(c, SAMPLE.live_layers[0]);
  pushLayers(c, SAMPLE.live_layers[1]);
  assert.deepEqual(c.layers, LAYERS);
  assert.deepEqual(c.values.weight_norm.map((r) => r.length), [2, 2, 2, 2, 2, 2]);
});

test('past the limit the columns are halved, the newest kept; a resume cuts what came after its step', () => {
  const c = fromAnswer(ANSWER);
  const base = SAMPLE.live_layers[0];
  for (let s = 41; s <= 60; s++) pushLayers(c, { ...base, step: s }, 20);
  assert.ok(c.step.length <= 20, `${c.step.length}`);
  assert.equal(c.step[c.step.length - 1], 60);
  for (const k of Object.keys(c.values)) for (const row of c.values[k]) assert.equal(row.length, c.step.length);
  const d = fromAnswer(ANSWER);
  halve(d);
  assert.deepEqual(d.step, [2, 8, 20, 40]);
  assert.deepEqual(d.values.grad_norm[0], [1, 3, 5, 7].map((i) => ANSWER.values.grad_norm[0][i]));
  const e = fromAnswer(ANSWER);
  pushHistograms(e, SAMPLE.live_histograms[0]);
  cutAfter(e, 150);
  assert.deepEqual(e.step, [1, 2, 4, 8, 10, 20, 30, 40]);
  assert.deepEqual(e.histograms.map((h) => h.step), [100]);
  cutAfter(e, 8);
  assert.deepEqual(e.step, [1, 2, 4, 8]);
  assert.equal(e.values.update_ratio[2].length, 4);
});

test('live histograms append in step order, repeats skipped', () => {
  const c = fromAnswer(ANSWER);
  assert.deepEqual(c.histograms.map((h) => h.epoch), [1, 2]);
  assert.equal(pushHistograms(c, SAMPLE.live_histograms[0]), true);
  assert.equal(pushHistograms(c, SAMPLE.live_histograms[0]), false);
  assert.deepEqual(c.histograms.map((h) => [h.epoch, h.step]), [[1, 100], [2, 200], [3, 300]]);
});

test('the colour scale: log over every layer\'s positive values, linear for dead units, nulls without colour', () => {
  const c = fromAnswer(ANSWER);
  const g = colorScale(c.values.grad_norm, true);
  const all = c.values.grad_norm.flat().filter((v) => v != null);
  assert.equal(g.min, Math.min(...all));
  assert.equal(g.max, Math.max(...all));
  assert.equal(g.t(g.min), 0);
  assert.equal(g.t(g.max), 1);
  // The geometric mean is half way on a log scale.
  assert.ok(Math.abs(g.t(Math.sqrt(g.min * g.max)) - 0.5) < 1e-12);
  assert.equal(g.t(null), null);
  assert.equal(g.t(0), null);
  assert.equal(g.t(-1), null);
  const d = colorScale(c.values.dead, false);
  assert.ok(Math.abs(d.t((d.min + d.max) / 2) - 0.5) < 1e-12);
  assert.equal(d.t(0) === null, false);
  // Nothing to scale; a constant.
  assert.equal(colorScale([[null, null]], true).min, null);
  assert.equal(colorScale([[null]], true).t(1), null);
  assert.equal(colorScale([[2, 2]], false).t(2), 0.5);
  // Viridis: dark violet to yellow, clamped.
  assert.deepEqual(colorAt(0), [68, 1, 84]);
  assert.deepEqual(colorAt(1), [253, 231, 37]);
  assert.deepEqual(colorAt(2), colorAt(1));
  assert.deepEqual(colorAt(-1), colorAt(0));
});

test('the x domain: from before the first sample to the last, the zoom when zoomed, log kept positive', () => {
  assert.deepEqual(xDomain([1, 2, 4, 8], null, false), [0, 8]);
  assert.deepEqual(xDomain([100, 110, 120], null, false), [90, 120]);
  assert.deepEqual(xDomain([1, 2, 4], null, true), [0.5, 4]);
  assert.deepEqual(xDomain([5, 9], [3, 7], false), [3, 7]);
  assert.deepEqual(xDomain([], null, false), [0, 1]);
  const px = xToPx([1, 100], 200, true);
  assert.ok(Math.abs(px(10) - 100) < 1e-9);
  assert.equal(xToPx([0, 10], 100, false)(5), 50);
});

test('heatmap columns: each sample spans the x since the one before; several per pixel, or one over many', () => {
  const steps = ANSWER.step;   // 1, 2, 4, 8, 10, 20, 30, 40
  const cols = heatColumns(steps, xDomain(steps, null, false), 40, false);   // a pixel a step
  assert.deepEqual(cols[0], [0, 0]);            // step 0..1: sample 1
  assert.deepEqual(cols[2], [2, 2]);            // step 2..3: the sample of step 4
  assert.deepEqual(cols[15], [5, 5]);           // step 15..16: the sample of step 20
  assert.deepEqual(cols[39], [7, 7]);
  // Every column holds a sample: no gap.
  assert.ok(cols.every((c) => c));
  // Four pixels for 40 steps: the first pixel holds steps 0..10 (5 samples).
  const narrow = heatColumns(steps, [0, 40], 4, false);
  assert.deepEqual(narrow, [[0, 4], [5, 5], [6, 6], [7, 7]]);
  // Zoomed to steps 10..30: samples before or after are left out.
  const zoomed = heatColumns(steps, [10, 30], 20, false);
  assert.deepEqual(zoomed[0], [5, 5]);
  assert.deepEqual(zoomed[19], [6, 6]);
  // A sample with no place (null x) is skipped.
  assert.deepEqual(heatColumns([1, null, 3], [0, 3], 3, false), [[0, 0], [2, 2], [2, 2]]);
});

test('the cell under the pointer: row by height, the column\'s largest value (the colour shown)', () => {
  const c = fromAnswer(ANSWER);
  const vals = c.values.grad_norm;
  const columns = heatColumns(c.step, [0, 40], 4, false);
  const geom = { left: 62, top: 0, width: 4, rowH: 22, rows: 6, columns, pick: (row, a, b) => pickSample(vals[row], a, b) };
  const first = vals[1].slice(0, 5);
  const best = first.indexOf(Math.max(...first));
  assert.deepEqual(heatCellAt(geom, 62.5, 22 * 1 + 3), { row: 1, sample: best });
  assert.deepEqual(heatCellAt(geom, 65.5, 22 * 5 + 21), { row: 5, sample: 7 });
  assert.deepEqual(heatCellAt(geom, 10, 30), { row: 1, sample: null });   // the row's label
  assert.equal(heatCellAt(geom, 70, 30), null);                           // right of the plot
  assert.equal(heatCellAt(geom, 63, 22 * 6 + 1), null);                   // below the last row
  // No value anywhere in the span: the last sample (its hover says –).
  assert.equal(pickSample([null, null, null], 0, 2), 2);
  assert.equal(fmtVal(null), '–');
  assert.equal(fmtVal(0.000123), '0.000123');
  assert.equal(fmtVal(0.0001), '0.0001');
  assert.equal(fmtVal(0.0000123), '1.23e-5');
  assert.equal(fmtVal(0.0123456), '0.0123');
  assert.equal(fmtVal(123456), '1.23e+5');
});

test('histograms over time: one layer and kind, oldest first, bins fixed, fc2 without activations', () => {
  const c = fromAnswer(ANSWER);
  pushHistograms(c, SAMPLE.live_histograms[0]);
  const w = histSeries(c.histograms, 'conv2', 'weights');
  assert.deepEqual(w.rows.map((r) => r.epoch), [1, 2, 3]);
  assert.equal(w.bins, 40);
  const first = c.histograms[0].layers[1].weights;
  assert.equal(w.lo, first.lo);
  assert.equal(w.hi, first.hi);
  // Every set's bins are the run's: the same lo and hi.
  for (const set of c.histograms) assert.equal(set.layers[1].weights.lo, first.lo);
  assert.equal(w.rows[0].total, first.counts.reduce((a, b) => a + b, 0) + first.below + first.above + first.not_finite);
  assert.equal(w.max, Math.max(...w.rows.flatMap((r) => r.counts)));
  assert.equal(histSeries(c.histograms, 'fc2', 'activations'), null);
  assert.equal(histSeries(c.histograms, 'fc2', 'grads').rows.length, 3);
  assert.equal(histSeries([], 'conv1', 'weights'), null);
  // The over-time grid: rows of at most 14 px, at least 2, within the height.
  assert.deepEqual(histGrid(3, 40, 400, 120), { rowH: 14, height: 42, cellW: 10 });
  assert.deepEqual(histGrid(200, 40, 400, 120), { rowH: 2, height: 400, cellW: 10 });
  assert.equal(histGrid(30, 40, 400, 120).rowH, 4);
  const g = histGrid(3, 40, 400, 120);
  assert.deepEqual(histCellAt(g, 3, 40, 25, 15), { row: 1, bin: 2 });
  assert.equal(histCellAt(g, 3, 40, 25, 43), null);
  assert.equal(histCellAt(g, 3, 40, 401, 1), null);
  assert.deepEqual(binEdges(-1, 1, 4, 1), [-0.5, 0]);
  assert.equal(countShade(0, 100), 0);
  assert.equal(countShade(100, 100), 1);
  assert.ok(countShade(10, 100) > 0.5);   // a log shade: small counts still show
});

test('a diagnosis in words, and the fork it offers: ten times lower a rate', () => {
  const d = {
    step: 1234, lr: 0.05, layer: 'fc1', rise: 35.2, rose_at_step: 1200, dead_share: 0.421,
    suggestion: 'lower the learning rate', last_good_checkpoint: { epoch: 3, step: 900 },
  };
  assert.deepEqual(diagnosisRows(d), [
    ['when', 'step 1234, learning rate 0.05'],
    ['layer', 'fc1: its gradient norm rose 35.2× over its baseline from step 1200'],
    ['dead units', '42.1% of the ReLU units'],
    ['suggestion', 'lower the learning rate'],
    ['last good checkpoint', 'epoch 3 (step 900)'],
  ]);
  // A rise that went non-finite is null on the wire.
  assert.equal(diagnosisRows({ step: 5, lr: 1, layer: 'conv1', rise: null, suggestion: 's' })[1][1], 'conv1: its gradient norm became non-finite');
  assert.deepEqual(diagnosisRows({ step: 5, lr: null, suggestion: 's' }), [['when', 'step 5'], ['suggestion', 's']]);
  assert.deepEqual(diagnosisRows(null), []);
  assert.equal(forkLr(d, 0.001), 0.005);
  assert.equal(forkLr({ lr: null }, 0.003), 0.0003);
  assert.equal(forkLr({ lr: 0.0123 }, 1), 0.0012);
  assert.equal(forkLr({}, undefined), null);
});

test('the saliency overlay: the input darkened, saliency in warm colours, opaque', () => {
  const input = new Uint8ClampedArray([255, 255, 255, 255, 0, 0, 0, 255, 200, 200, 200, 255]);
  const sal = new Uint8ClampedArray([0, 0, 0, 255, 255, 255, 255, 255, 128, 128, 128, 255]);
  const out = overlayPixels(input, sal);
  assert.deepEqual([...out.slice(0, 4)], [140, 140, 140, 255]);   // no saliency: 55% grey
  assert.deepEqual([...out.slice(4, 8)], [255, 217, 40, 255]);    // full saliency: yellow
  assert.ok(out[8] > out[9] && out[9] > out[10]);                 // half: warm
  assert.equal(tileScale(26), 2);
  assert.equal(tileScale(10), 4);
  assert.equal(tileScale(8), 6);
});
