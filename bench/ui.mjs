// UI bench: how fast the page opens a long run and zooms into it.
//
// Trains a tiny real run (its events are the template), writes a run of
// --steps batch events from it (loss falling, one spike), starts `serve`,
// and in headless Chromium measures: time from navigation to the charts
// drawn, time from a zoom drag to the range drawn at full resolution, and
// the page's JS heap.
//
//   node bench/ui.mjs [--bin target/release/mnist-monitor] [--steps 200000] [--compare-steps 20000]
import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync, mkdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createRequire } from 'node:module';
const require = createRequire(new URL('../web/package.json', import.meta.url));
const { chromium } = require('playwright-core');

const arg = (name, dflt) => {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? process.argv[i + 1] : dflt;
};
const bin = arg('bin', `${process.env.CARGO_TARGET_DIR || 'target'}/release/mnist-monitor`);
const steps = Number(arg('steps', '200000'));
const data = arg('data', 'datasets/mnist');
const work = mkdtempSync(join(tmpdir(), 'ui-bench-'));
const dirs = ['--run-dir', join(work, 'runs'), '--checkpoint-dir', join(work, 'ckpt')];

const trained = spawnSync(bin, ['train', '--run-id', 'template', '--epochs', '1', '--kernels', '4,4,4,4',
  '--limit-train', '200', '--limit-test', '100', '--val-size', '100', '--backend', 'cpu', '--quiet',
  '--hw-interval', '0', '--data-dir', data, ...dirs], { stdio: 'inherit' });
if (trained.status !== 0) throw new Error('the template run failed');

const events = readFileSync(join(work, 'runs/template/events.jsonl'), 'utf8').trim().split('\n').map(JSON.parse);
const find = (type) => events.find((e) => e.type === type);
const [started, batch, finished] = [find('run_started'), find('batch'), find('run_finished')];
const lines = [JSON.stringify({ ...started, run_id: 'long', seq: 1 })];
for (let step = 1; step <= steps; step++) {
  const loss = step === Math.floor(steps * 0.6) ? 50 : 2 / (1 + step / 500);
  lines.push(JSON.stringify({ ...batch, run_id: 'long', seq: step + 1, step, epoch: 1 + Math.floor((step - 1) / 1000),
    batch: 1 + (step - 1) % 1000, batches: 1000, ts_ms: started.ts_ms + step * 10, loss }));
}
lines.push(JSON.stringify({ ...finished, run_id: 'long', seq: steps + 2, ts_ms: started.ts_ms + steps * 10 + 5 }));
mkdirSync(join(work, 'runs/long'));
writeFileSync(join(work, 'runs/long/events.jsonl'), lines.join('\n') + '\n');
// Twenty more runs of --compare-steps steps each, for the 20-run overlay
// (each loss curve its own; the page gets min/max buckets, never the logs).
const compareSteps = Number(arg('compare-steps', '20000'));
for (let r = 0; r < 20; r++) {
  const id = `c${String(r).padStart(2, '0')}`;
  const cfg = { ...started.config, lr: [1e-3, 3e-4, 2e-3, 5e-4][r % 4], kernels: [4 * (1 + (r % 5)), 8, 8, 8] };
  const out = [JSON.stringify({ ...started, config: cfg, run_id: id, seq: 1 })];
  for (let step = 1; step <= compareSteps; step++) {
    out.push(JSON.stringify({ ...batch, run_id: id, seq: step + 1, step, epoch: 1 + Math.floor((step - 1) / 1000),
      batch: 1 + (step - 1) % 1000, batches: 1000, ts_ms: started.ts_ms + step * 10,
      loss: (2 + r / 10) / (1 + step / (300 + 20 * r)) + 0.05 * Math.sin(step * (r + 1)) }));
  }
  out.push(JSON.stringify({ ...finished, run_id: id, seq: compareSteps + 2, ts_ms: started.ts_ms + compareSteps * 10 + 5 }));
  mkdirSync(join(work, 'runs', id));
  writeFileSync(join(work, 'runs', id, 'events.jsonl'), out.join('\n') + '\n');
}

const server = spawn(bin, ['serve', '--bind', '127.0.0.1:0', '--hw-interval', '0', '--data-dir', data, ...dirs]);
const base = await new Promise((resolve, reject) => {
  let err = '';
  server.stderr.on('data', (d) => {
    err += d;
    const m = err.match(/serving on (http:\/\/[^/\s]+)/);
    if (m) resolve(m[1]);
  });
  server.on('exit', () => reject(new Error(`serve exited: ${err}`)));
});

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  args: ['--no-sandbox', '--disable-gpu', '--no-first-run', '--disable-background-networking'],
});
try {
  const page = await browser.newPage({ viewport: { width: 1400, height: 1000 } });
  // The server folds the log once, on first request: time that apart.
  let t = Date.now();
  await fetch(`${base}/api/runs/long`);
  const foldMs = Date.now() - t;
  // And the 20 compare runs (the run list folds every log once).
  t = Date.now();
  await fetch(`${base}/api/runs`);
  const foldListMs = Date.now() - t;
  t = Date.now();
  await page.goto(`${base}/?run=long`, { waitUntil: 'load' });
  await page.click('#runs-table tr[data-run="long"] td:nth-child(2)');
  await page.waitForFunction(() => (window.mnistMonitor.charts.loss?.data[0].length || 0) > 100 &&
    window.mnistMonitor.view.runId === 'long', null, { timeout: 60000 });
  const openMs = Date.now() - t;
  await page.locator('#chart-loss').scrollIntoViewIfNeeded();
  // Two drags: to 10% of the run around the spike, then to 600 steps
  // there (every step shown); each timed until the range is drawn.
  const spike = Math.floor(steps * 0.6);
  const zoomMs = [];
  for (const [lo, hi] of [[spike - steps / 20, spike + steps / 20], [spike - 300, spike + 300]]) {
    const box = await page.evaluate(([lo, hi]) => {
      const u = window.mnistMonitor.charts.loss;
      const r = u.over.getBoundingClientRect();
      return { x0: r.left + u.valToPos(lo, 'x'), x1: r.left + u.valToPos(hi, 'x'), y: r.top + r.height / 2 };
    }, [lo, hi]);
    const before = await page.evaluate(() => window.mnistMonitor.view.zoomFetches);
    t = Date.now();
    await page.mouse.move(box.x0, box.y);
    await page.mouse.down();
    await page.mouse.move(box.x1, box.y, { steps: 3 });
    await page.mouse.up();
    await page.waitForFunction((n) => window.mnistMonitor.view.zoomFetches > n, before, { timeout: 10000 });
    await page.evaluate(() => new Promise((r) => requestAnimationFrame(() => requestAnimationFrame(r))));
    zoomMs.push(Date.now() - t);
  }
  const shown = await page.evaluate(([lo, hi]) => window.mnistMonitor.view.series.step.filter((x) => x >= lo && x <= hi).length, [spike - 250, spike + 250]);
  const zoomed = await page.evaluate(() => [window.mnistMonitor.view.zoom, window.mnistMonitor.view.series.step.length]);
  const cdp = await page.context().newCDPSession(page);
  await cdp.send('Performance.enable');
  const heapMb = async () => {
    await cdp.send('HeapProfiler.collectGarbage');
    const { metrics } = await cdp.send('Performance.getMetrics');
    return +(metrics.find((m) => m.name === 'JSHeapUsedSize').value / 2 ** 20).toFixed(1);
  };
  const heap = await heapMb();
  // Overlay 20 runs ("compare all shown" on a filter that shows them).
  await page.locator('#runs-filter').scrollIntoViewIfNeeded();
  // `id:~c`: the ids holding a c (c00..c19; a plain `c` matches every
  // "completed" run too). The server filters; wait for its answer.
  await page.fill('#runs-filter', 'id:~c');
  await page.waitForFunction(() => !window.mnistMonitor.runs.pending &&
    document.querySelectorAll('#runs-table tr[data-run^="c"]').length === 20 &&
    document.querySelectorAll('#runs-table tr[data-run]').length === 20, null, { timeout: 10000 });
  t = Date.now();
  await page.click('#compare-shown');
  await page.waitForFunction(() => window.mnistMonitor.view.compare.size === 20 &&
    [...window.mnistMonitor.view.compare.values()].every((c) => c.series.step.length > 0) &&
    window.mnistMonitor.charts.loss?.series.length === 25, null, { timeout: 60000 });
  await page.evaluate(() => new Promise((r) => requestAnimationFrame(() => requestAnimationFrame(r))));
  const overlayMs = Date.now() - t;
  const heap20 = await heapMb();
  const { metrics: m20 } = await cdp.send('Performance.getMetrics');
  console.log(JSON.stringify({ steps, fold_ms: foldMs, fold_list_ms: foldListMs, open_ms: openMs, zoom_ms: zoomMs, steps_shown_of_501_around_spike: shown, zoomed_to: zoomed, js_heap_mb: heap,
    compare_runs: 20, compare_steps_each: compareSteps, overlay_ms: overlayMs, js_heap_mb_20_overlaid: heap20,
    js_heap_total_mb_20_overlaid: +(m20.find((m) => m.name === 'JSHeapTotalSize').value / 2 ** 20).toFixed(1) }));
} finally {
  await browser.close();
  server.kill();
}
