// Steering a run from the page, in a real headless Chromium: a long tiny
// CPU run started through the API is paused from the Steer strip (status
// "paused", no batch for a second, no ETA), resumed (batches again), given
// a new learning rate (a refused one first: the server's reason in red),
// whose mark lands on the loss and learning-rate charts while the rate
// chart's last values become it; an evaluation and a checkpoint are asked;
// "stop after epoch" stops it (and the Resume button offers to go on).
// Then the Fork panel forks its checkpoint of epoch 1 with another rate
// and fewer epochs (a refused epochs value first): the child opens, its
// first step is the parent's epoch-1 step + 1, it names its parent and
// shows the parent's curve, and the Runs table lists it indented under
// its parent. Screenshots: steer-paused.png, steer-lr-marker.png,
// fork.png, tree.png in SCREENSHOT_DIR.
// Usage: node tests/e2e/steer.mjs BASE_URL SCREENSHOT_DIR
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { fail, launch } from './browser.mjs';

const [base, shots] = process.argv.slice(2);
mkdirSync(shots, { recursive: true });
const CONFIG = {
  kernels: [4, 4, 4, 4], batch_size: 20, epochs: 1000, backend: 'cpu', limit_train: 6000, limit_test: 200,
  val_size: 100, keep_checkpoints: 1000,
};
const out = {};
const browser = await launch();
try {
  const page = await browser.newPage({ viewport: { width: 1500, height: 1300 } });
  const errors = [];
  page.on('pageerror', (e) => errors.push(`${e.message}\n${e.stack}`));
  await page.goto(base + '/', { waitUntil: 'load' });
  await page.waitForSelector('#conn.ok', { timeout: 15000 });
  const view = (fn, arg) => page.evaluate(fn, arg);
  const waitFor = (what, fn, arg, timeout = 30000) => page.waitForFunction(fn, arg, { timeout })
    .catch(async () => fail(`${what}: ${JSON.stringify(await view(() => {
      const v = window.mnistMonitor.view;
      return { run: v.runId, status: v.status, step: v.last?.step, controls: v.controls.map((c) => c.message), steer: document.querySelector('#steer-msg').textContent, fork: document.querySelector('#fork-msg')?.textContent };
    }))}`));
  const step = () => view(() => window.mnistMonitor.view.last?.step ?? 0);

  // A long tiny run; the page follows it.
  const started = await view(async (cfg) => {
    const res = await fetch('/api/runs', { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(cfg) });
    return { status: res.status, body: await res.json() };
  }, CONFIG);
  if (started.status !== 201) fail(`the run did not start: ${JSON.stringify(started)}`);
  const runId = started.body.run_id;
  out.run = runId;
  await waitFor('the run trains on the page', (id) => window.mnistMonitor.view.runId === id && (window.mnistMonitor.view.last?.step || 0) > 20, runId, 60000);
  await waitFor('the Steer strip shows', () => !document.querySelector('#steer').hidden);

  // Pause: the status says so, no batch comes, no ETA.
  await page.click('#steer-pause');
  await waitFor('paused', () => document.querySelector('#run-status').textContent === 'paused');
  await page.waitForTimeout(300);
  const [s1, n1] = await view(() => [window.mnistMonitor.view.last.step, window.mnistMonitor.charts.loss.data[0].length]);
  await page.waitForTimeout(1000);
  const [s2, n2] = await view(() => [window.mnistMonitor.view.last.step, window.mnistMonitor.charts.loss.data[0].length]);
  if (s1 !== s2 || n1 !== n2) fail(`batches while paused: step ${s1} → ${s2}, points ${n1} → ${n2}`);
  const eta = await page.textContent('#s-eta');
  if (eta !== '–') fail(`a paused run shows an ETA: ${eta}`);
  if ((await page.textContent('#steer-pause')).indexOf('Resume') < 0) fail('the toggle does not offer Resume while paused');
  await waitFor('the pause mark on the loss chart', () => !!document.querySelector('#chart-loss .mark[data-action=pause]'));
  if (!(await page.textContent('#log')).includes('paused')) fail(`the log lacks the pause: ${await page.textContent('#log')}`);
  out.paused_at = s1;
  await page.screenshot({ path: join(shots, 'steer-paused.png') });

  // Resume: batches again.
  await page.click('#steer-pause');
  await waitFor('running again', (s) => document.querySelector('#run-status').textContent === 'running' && window.mnistMonitor.view.last.step > s + 5, s2);
  if ((await page.textContent('#steer-pause')).indexOf('Pause') < 0) fail('the toggle does not offer Pause again');

  // A rate the server refuses: its reason beside the strip, in red.
  await page.fill('#steer-lr', '30');
  await page.click('#steer-set-lr');
  await waitFor('the refused rate explained', () => /lr: must be a number in \(0, 10\]/.test(document.querySelector('#steer-msg.error')?.textContent || ''));
  const red = await page.$eval('#steer-msg', (el) => getComputedStyle(el).color);
  if (red !== 'rgb(255, 93, 93)') fail(`the refusal is not red: ${red}`);
  // A new rate: a mark on the loss and rate charts, the rate chart's last values.
  await page.fill('#steer-lr', '0.0003');
  await page.click('#steer-set-lr');
  await waitFor('the new rate applied', () => window.mnistMonitor.view.controls.some((c) => c.action === 'set_lr' && c.lr === 0.0003));
  const at = await view(() => window.mnistMonitor.view.controls.find((c) => c.action === 'set_lr').step);
  // Well past it, so that its mark is inside the plot, not at its edge.
  await waitFor('batches under the new rate', (s) => window.mnistMonitor.view.last.step > Math.max(s + 30, s * 1.25), at);
  await waitFor('the rate mark on the loss and lr charts', () => ['loss', 'lr'].every((k) => document.querySelector(`#chart-${k} .mark[data-action=set_lr]`)));
  await waitFor('the strip says the rate was set', () => /✓ learning rate .*→/.test(document.querySelector('#steer-msg.done')?.textContent || ''));
  const lrs = await view(() => window.mnistMonitor.charts.lr.data[1].filter((v) => v != null).slice(-5));
  if (lrs.length < 5 || !lrs.every((v) => Math.abs(v - 0.0003) < 1e-12)) fail(`the lr chart's last values: ${lrs}`);
  const markX = await view(() => {
    const u = window.mnistMonitor.charts.lr, el = document.querySelector('#chart-lr .mark[data-action=set_lr]');
    return { mark: parseFloat(el.style.left), want: u.valToPos(window.mnistMonitor.view.controls.find((c) => c.action === 'set_lr').step, 'x') };
  });
  if (Math.abs(markX.mark - markX.want) > 1.5) fail(`the rate mark is not at its step: ${JSON.stringify(markX)}`);
  out.lr_set_at = at;
  await page.screenshot({ path: join(shots, 'steer-lr-marker.png') });

  // An evaluation on test and a checkpoint, between two batches.
  await page.selectOption('#steer-split', 'test');
  await page.click('#steer-eval');
  await waitFor('the test evaluation', () => window.mnistMonitor.view.controls.some((c) => c.action === 'eval'));
  await page.click('#steer-checkpoint');
  await waitFor('the checkpoint', () => window.mnistMonitor.view.controls.some((c) => c.action === 'checkpoint'));
  // The marks follow the x axis: on epochs, the rate's mark at its epoch.
  await page.selectOption('#x-axis', 'epoch');
  await waitFor('the marks on the epoch axis', (at) => {
    const v = window.mnistMonitor.view, u = window.mnistMonitor.charts.loss;
    const el = document.querySelector('#chart-loss .mark[data-action=set_lr]');
    return u && u.scales.x.max < v.last.step / 10 && el && Math.abs(u.posToVal(parseFloat(el.style.left), 'x') - at / v.last.batches) < 0.05;
  }, at);
  await page.selectOption('#x-axis', 'step');

  // Stop after the epoch: stopped, the strip gone, Resume offered.
  await page.click('#steer-stop-epoch');
  await waitFor('stopped after the epoch', () => document.querySelector('#run-status').textContent === 'stopped', null, 60000);
  await waitFor('the strip hides and Resume shows', () => document.querySelector('#steer').hidden && !document.querySelector('#resume-box').hidden);
  out.stopped_at = await step();

  // Fork epoch 1: the Fork panel lists the checkpoints; a chart click picks one.
  await waitFor('the Fork panel', () => !document.querySelector('#fork-panel').hidden && !!document.querySelector('#fork-epoch option[value="1"]'));
  await page.click('#fork-panel > summary');
  const box = await page.$eval('#chart-loss .u-over', (el) => { const r = el.getBoundingClientRect(); return { x: r.left, y: r.top, w: r.width, h: r.height }; });
  await page.mouse.click(box.x + box.w * 0.05, box.y + box.h / 2);
  await waitFor('a chart click picks a checkpoint', () => document.querySelector('#fork-epoch').value !== '' && !!document.querySelector('#chart-loss .mark[data-action=fork]'));
  await page.selectOption('#fork-epoch', '1');
  const lrField = await page.inputValue('#fork-form [name=lr]');
  if (Number(lrField) !== 0.001) fail(`the fork form is not the parent's configuration: lr ${lrField}`);
  await page.fill('#fork-form [name=lr]', '0.0005');
  await page.fill('#fork-form [name=epochs]', '1');
  await page.click('#fork-start');
  await waitFor('a refused epochs value beside its field', () => (document.querySelector('[data-fork-error=epochs]')?.textContent || '').includes('more than'));
  await page.fill('#fork-form [name=epochs]', '3');
  await page.click('#fork-start');
  await waitFor('the child opens', (id) => window.mnistMonitor.view.runId !== id && window.mnistMonitor.view.started?.parent?.run_id === id && window.mnistMonitor.view.series.step.length > 0, runId, 60000);
  const child = await view(() => ({ id: window.mnistMonitor.view.runId, parent: window.mnistMonitor.view.started.parent, first: window.mnistMonitor.view.series.step[0], lr: window.mnistMonitor.view.started.config.lr }));
  out.child = child;
  const epoch1 = await view(async (id) => {
    const s = await (await fetch(`/api/runs/${encodeURIComponent(id)}/series?points=20000&to=5000`)).json();
    let last = null;
    s.step.forEach((x, i) => { if (s.epoch[i] <= 1 + 1e-9) last = x; });
    return last;
  }, runId);
  if (child.parent.epoch !== 1 || child.parent.step !== epoch1 || child.first !== epoch1 + 1) fail(`the child does not go on from epoch 1 (step ${epoch1}): ${JSON.stringify(child)}`);
  if (child.lr !== 0.0005) fail(`the child's lr: ${child.lr}`);
  await waitFor('"forked from" names the parent', (id) => {
    const t = document.querySelector('#lineage').textContent;
    return !document.querySelector('#lineage').hidden && t.includes('forked from') && t.includes(id) && t.includes('epoch 1');
  }, runId);
  await waitFor("the parent's curve overlaid up to the fork", (id) => {
    const c = window.mnistMonitor.view.compare.get(id);
    return c && c.series.step.length > 0 && c.series.step[c.series.step.length - 1] <= window.mnistMonitor.view.started.parent.step;
  }, runId);
  await waitFor('the child trains on', () => window.mnistMonitor.view.series.step.length > 100, null, 60000);
  await page.screenshot({ path: join(shots, 'fork.png') });

  // The Runs table: the child right under its parent, indented.
  await waitFor('the child under its parent in the Runs table', ([p, c]) => {
    const rows = [...document.querySelectorAll('#runs-table tr[data-run]')];
    const i = rows.findIndex((r) => r.dataset.run === p);
    return i >= 0 && rows[i + 1]?.dataset.run === c && rows[i + 1].dataset.depth === '1' && !!rows[i + 1].querySelector('.tree');
  }, [runId, child.id]);
  const tip = await page.$eval(`#runs-table tr[data-run="${child.id}"] td`, (td) => td.title);
  if (!tip.includes(`forked from ${runId}`)) fail(`the child's row does not name its parent: ${tip}`);
  await page.$eval('#history', (el) => el.scrollIntoView());
  await (await page.$('#history')).screenshot({ path: join(shots, 'tree.png') });
  if (errors.length) fail(`page errors: ${errors.join('; ')}`);
  console.log(JSON.stringify(out));
} finally {
  await browser.close();
}
