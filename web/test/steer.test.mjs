// Steering a run, the page's DOM-free part (web/static/steerlib.js): where
// a control's mark goes on each x axis, marks stacked where they meet, the
// checkpoint a chart click means, a fork's changes, a lineage, the runs
// table's tree, when the strip and Resume show, requests and refusals.
// Run: node --test web/test/
import test from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';

import { seriesTable, emptySeries, pushRow } from '../static/series.js';
import {
  interp, controlX, controlMarks, stackRows, xToEpoch, epochToX, nearestEpoch, fieldValue, forkChanges,
  lineageRuns, treePrefix, parentText, canSteer, canResumeRun, controlBody, pendingText, refusalText, CONTROL_LOOK,
} from '../static/steerlib.js';

const SCHEMA = JSON.parse(readFileSync(new URL('./golden/series.json', import.meta.url), 'utf8')).schema;
const table = seriesTable(SCHEMA);

// 3 epochs of 10 steps, a batch each 100 ms from t = 10 s, then a 5 s
// pause after step 15 (its batches 5 s later).
function run() {
  const s = emptySeries(table, 0.5);
  for (let step = 1; step <= 30; step++) {
    const ts = 10000 + 100 * step + (step > 15 ? 5000 : 0);
    pushRow(table, s, { step, epoch: step / 10, ts_ms: ts, loss: 1, accuracy: 0.5, f1_macro: 0.5, lr: 0.1, images_per_sec: 100 });
  }
  return s;
}
const pause = { action: 'pause', step: 15, epoch: 2, ts_ms: 11520, message: 'paused at step 15 (page)' };
const resume = { action: 'resume', step: 15, epoch: 2, ts_ms: 16520, paused_seconds: 5, message: 'resumed at step 15 after 5.0 s paused (page)' };
const setLr = { action: 'set_lr', lr: 3e-4, step: 25, epoch: 3, ts_ms: 17020, message: 'learning rate 1.000e-1 → 3.000e-4 from step 26 (page)' };

test('interp: between two points, exact ones, clamped at both ends, empty', () => {
  assert.equal(interp([0, 10], [0, 1], 5), 0.5);
  assert.equal(interp([0, 10, 20], [0, 1, 3], 10), 1);
  assert.equal(interp([0, 10], [0, 1], -3), 0);
  assert.equal(interp([0, 10], [0, 1], 99), 1);
  assert.equal(interp([], [], 1), null);
  assert.equal(interp([1], [2], null), null);
});

test('a control mark on each x axis: its step, its epoch, its own time', () => {
  const s = run();
  assert.equal(controlX(setLr, s, 'step'), 25);
  assert.equal(controlX(setLr, s, 'epoch'), 2.5);
  assert.equal(controlX(pause, s, 'epoch'), 1.5);
  assert.equal(controlX(setLr, s, 'wall'), 17.02);
  // Relative to the first batch (10.1 s): the pause and the resume 5 s
  // apart, the gap the paused time leaves on the time axes.
  assert.ok(Math.abs(controlX(pause, s, 'relative') - 1.42) < 1e-9);
  assert.ok(Math.abs(controlX(resume, s, 'relative') - controlX(pause, s, 'relative') - 5) < 1e-9);
  // On the step and epoch axes both marks are at the same place.
  assert.equal(controlX(resume, s, 'step'), controlX(pause, s, 'step'));
  assert.equal(controlX(pause, emptySeries(table, 0.5), 'relative'), null);
});

test('control marks: glyph, colour and the message as their title; unplaceable ones left out', () => {
  const marks = controlMarks([pause, resume, setLr, { action: 'checkpoint', step: 3, ts_ms: 1, message: 'checkpoint at step 3' }], run(), 'step');
  assert.deepEqual(marks.map((m) => [m.x, m.action, m.glyph]), [[15, 'pause', '‖'], [15, 'resume', '▶'], [25, 'set_lr', 'η'], [3, 'checkpoint', '◆']]);
  assert.equal(marks[2].title, setLr.message);
  assert.equal(marks[2].color, CONTROL_LOOK.set_lr.color);
  assert.deepEqual(controlMarks([pause], emptySeries(table, 0.5), 'epoch'), []);
  assert.equal(controlMarks([{ action: 'future', step: 2, ts_ms: 1, message: 'm' }], run(), 'step')[0].glyph, '•');
});

test('marks that meet stack their glyphs; apart ones stay on top', () => {
  assert.deepEqual(stackRows([100, 100, 300], 10), [0, 1, 0]);
  assert.deepEqual(stackRows([300, 100, 105, 108], 10), [0, 0, 1, 2]);
  assert.deepEqual(stackRows([0, 10, 20], 10), [0, 0, 0]);
  assert.deepEqual(stackRows([], 10), []);
});

test('a chart click: the x on each axis to a position in epochs, then the nearest checkpoint', () => {
  const s = run();
  assert.equal(xToEpoch(s, 'epoch', 1.7), 1.7);
  assert.equal(xToEpoch(s, 'step', 12), 1.2);
  assert.equal(xToEpoch(s, 'step', 12.5), 1.25);
  assert.equal(xToEpoch(s, 'wall', 10.3), 0.3);
  assert.equal(xToEpoch(s, 'relative', 0.2), 0.3);   // 0.2 s after the first batch (10.1 s)
  assert.equal(xToEpoch(s, 'step', 999), 3);          // past the end: the last
  assert.equal(nearestEpoch([1, 2, 3], 1.4), 1);
  assert.equal(nearestEpoch([1, 2, 3], 1.6), 2);
  assert.equal(nearestEpoch([1, 2, 3], 1.5), 1);      // a tie: the earlier
  assert.equal(nearestEpoch([2, 5], 99), 5);
  assert.equal(nearestEpoch([], 1), null);
  assert.equal(nearestEpoch([1], null), null);
});

test("an epoch's end on each axis (the fork's mark)", () => {
  const s = run();
  assert.equal(epochToX(s, 'epoch', 2), 2);
  assert.equal(epochToX(s, 'step', 2), 20);
  assert.equal(epochToX(s, 'wall', 1), 11);
  assert.equal(epochToX(s, 'relative', 3), 7.9);        // 18 s − 10.1 s: the pause included
  assert.equal(epochToX(emptySeries(table, 0.5), 'wall', 1), null);
});

test("a fork's config: only the fields that differ from the parent's", () => {
  const parent = { lr: 0.001, epochs: 10, optimizer: 'adam', limit_train: 6000, limit_val: null, eval_test_every_epoch: false };
  const values = {
    lr: fieldValue('number', '0.0005'), epochs: fieldValue('integer', '10'), optimizer: fieldValue('choice', 'adam'),
    limit_train: fieldValue('optional_integer', ''), limit_val: fieldValue('optional_integer', ''),
    eval_test_every_epoch: fieldValue('flag', 'on', true),
  };
  assert.deepEqual(forkChanges(parent, values), { lr: 0.0005, limit_train: null, eval_test_every_epoch: true });
  assert.deepEqual(forkChanges(parent, { lr: 0.001 }), {});
  assert.deepEqual(forkChanges(null, { seed: 7 }), { seed: 7 });
  assert.equal(fieldValue('device', ''), null);
  assert.equal(fieldValue('flag', '', false), false);
});

test('compare lineage: the parent, its forks and the run\'s own, never the run, each once', () => {
  assert.deepEqual(lineageRuns('b', 'a', ['b', 'c'], ['d']), ['a', 'c', 'd']);
  assert.deepEqual(lineageRuns('a', null, [], ['b', 'c', 'b']), ['b', 'c']);
  assert.deepEqual(lineageRuns('a', undefined, [], []), []);
  assert.equal(lineageRuns('x', 'p', [...Array(30).keys()].map(String), [], 20).length, 20);
});

test('the runs tree: roots flush, forks indented by depth under a ↳', () => {
  assert.deepEqual(treePrefix(0), { pad: 0, glyph: '' });
  assert.deepEqual(treePrefix(undefined), { pad: 0, glyph: '' });
  assert.deepEqual(treePrefix(1), { pad: 4, glyph: '↳' });
  assert.deepEqual(treePrefix(3), { pad: 32, glyph: '↳' });
  assert.equal(parentText({ run_id: 'p', epoch: 1, step: 300 }), 'forked from p at epoch 1 (step 300)');
});

test('the strip shows while a trainer here holds the run; Resume for an ended run it may continue', () => {
  assert.equal(canSteer('running', true), true);
  assert.equal(canSteer('paused', true), true);
  assert.equal(canSteer('running', false), false);
  assert.equal(canSteer('completed', true), false);
  for (const s of ['interrupted', 'stopped', 'failed']) assert.equal(canResumeRun(s, true), true, s);
  assert.equal(canResumeRun('completed', true), false);
  assert.equal(canResumeRun('interrupted', false), false);
  assert.equal(canResumeRun('running', true), false);
});

test('control requests: the page as their source, a rate as a number, a split only when not val', () => {
  assert.deepEqual(controlBody('pause'), { action: 'pause', source: 'page' });
  assert.deepEqual(controlBody('set_lr', { lr: '0.0003', schedule: '' }), { action: 'set_lr', source: 'page', lr: 0.0003 });
  assert.deepEqual(controlBody('set_lr', { lr: '1e-3', schedule: 'cosine' }), { action: 'set_lr', source: 'page', lr: 0.001, schedule: 'cosine' });
  assert.equal(controlBody('set_lr', { lr: '' }).lr, null);
  assert.deepEqual(controlBody('eval', { split: 'val' }), { action: 'eval', source: 'page' });
  assert.deepEqual(controlBody('eval', { split: 'test' }), { action: 'eval', source: 'page', split: 'test' });
  assert.deepEqual(controlBody('stop_after_epoch', { lr: '3' }), { action: 'stop_after_epoch', source: 'page' });
  assert.match(pendingText(controlBody('set_lr', { lr: '0.0003', schedule: 'cosine' })), /0\.0003 \(cosine\)/);
  assert.match(pendingText({ action: 'eval', split: 'test' }), /test/);
});

test("refusals: each field's message, else the server's reason, else the status", () => {
  assert.equal(refusalText(400, { error: 'x', errors: [{ field: 'lr', message: 'must be a number in (0, 10] (got 30.0)' }] }), 'lr: must be a number in (0, 10] (got 30.0)');
  assert.equal(refusalText(400, { errors: [{ field: 'body', message: 'not JSON' }, { field: 'lr', message: 'bad' }] }), 'not JSON; lr: bad');
  assert.equal(refusalText(409, { error: 'run r has already finished', errors: [] }), 'run r has already finished');
  assert.equal(refusalText(502, {}), 'the server answered 502');
  assert.equal(refusalText(500, null), 'the server answered 500');
});
