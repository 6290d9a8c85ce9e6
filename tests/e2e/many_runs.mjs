// The Runs table with thousands of runs, in the real page: it fills, it
// scrolls to the last run (only the rows in view in the DOM), a filter with
// comparisons gives the count the API gives, a bad filter is explained and
// keeps the last rows, sorting by lr both ways (by the server), "compare all
// shown" overlays the first 20, the parallel coordinates draw every run.
// The caller prepares a runs folder of N >= 2,000 runs and serves it.
// Usage: node tests/e2e/many_runs.mjs BASE_URL N [SCREENSHOT.png]
// Prints one JSON line of figures; exits 1 with the reason on a failure.
import { fail, launch } from './browser.mjs';

const [base, nArg, screenshot] = process.argv.slice(2);
const n = Number(nArg);
if (!base || !(n >= 1)) fail('usage: node tests/e2e/many_runs.mjs BASE_URL N [SCREENSHOT.png]');
if (n < 2000) console.error(`note: ${n} runs; this test means 2,000 or more`);

const api = async (path) => {
  const res = await fetch(base + path);
  const body = await res.json();
  return { status: res.status, body };
};
const list = (params) => api(`/api/runs?${new URLSearchParams(params)}`);

const out = { runs: n };
const browser = await launch();
try {
  const page = await browser.newPage({ viewport: { width: 1400, height: 1100 } });
  page.on('pageerror', (e) => fail(`the page threw: ${e.message}\n${e.stack}`));
  const all = await list({ limit: 0 });
  if (all.status !== 200) fail(`GET /api/runs: ${all.status} ${JSON.stringify(all.body)}`);
  if (all.body.all !== n) fail(`the server lists ${all.body.all} runs, not ${n} (still indexing? ${JSON.stringify(all.body.indexing)})`);

  // 1. The table fills.
  const t0 = Date.now();
  await page.goto(base + '/', { waitUntil: 'commit' });
  await page.waitForSelector('#runs-table tr[data-run]', { state: 'attached', timeout: 20000 })
    .catch(() => fail('the runs table never filled'));
  out.fill_ms = Date.now() - t0;
  const state = () => page.evaluate(() => {
    const r = window.mnistMonitor.runs;
    return { total: r.total, all: r.all, pending: r.pending, error: r.error, count: document.querySelector('#runs-count').textContent, rows: document.querySelectorAll('#runs-table tr[data-run]').length };
  });
  const settled = (what) => page.waitForFunction(() => !window.mnistMonitor.runs.pending, null, { timeout: 15000 })
    .catch(async () => fail(`${what}: the table never showed the answer: ${JSON.stringify(await state())}`));
  let s = await state();
  if (s.all !== n || s.total !== n || !s.count.startsWith(`${n.toLocaleString('en-US')} of ${n.toLocaleString('en-US')}`)) fail(`the count after opening: ${JSON.stringify(s)}`);
  if (s.rows > 150) fail(`${s.rows} rows in the DOM: the table is not virtualised`);
  out.dom_rows = s.rows;
  const disk = await page.textContent('#runs-disk');
  if (!/runs .*B · checkpoints .*B/.test(disk)) fail(`the disk line: ${disk}`);

  // 2. Scrolling to the end shows the last run (newest first, so the oldest).
  const last = (await list({ sort: 'started', order: 'desc', offset: n - 1, limit: 1 })).body.runs[0].run_id;
  const t1 = Date.now();
  await page.$eval('#runs-scroll', (el) => { el.scrollTop = el.scrollHeight; });
  await page.waitForFunction((id) => {
    const rows = document.querySelectorAll('#runs-table tr[data-run]');
    return rows.length && rows[rows.length - 1].dataset.run === id;
  }, last, { timeout: 10000 }).catch(async () => fail(`after scrolling to the end the last row is ${await page.$$eval('#runs-table tr[data-run]', (r) => r.at(-1)?.dataset.run)}, not ${last}`));
  out.scroll_end_ms = Date.now() - t1;
  const visible = await page.evaluate((id) => {
    const box = document.querySelector('#runs-scroll').getBoundingClientRect();
    const row = document.querySelector(`#runs-table tr[data-run="${CSS.escape(id)}"]`).getBoundingClientRect();
    return row.bottom <= box.bottom + 1 && row.top >= box.top;
  }, last);
  if (!visible) fail('the last run is in the DOM but not in view at the end of the scroll box');
  s = await state();
  if (s.rows > 150) fail(`${s.rows} rows in the DOM after scrolling`);

  // 3. A filter of comparisons: the API's count.
  const q = 'acc>0.99 lr<=0.001';
  const expect = (await list({ q, limit: 0 })).body.total;
  const t2 = Date.now();
  await page.fill('#runs-filter', q);
  await settled(q);
  out.filter_ms = Date.now() - t2;
  s = await state();
  if (s.total !== expect || !s.count.startsWith(`${expect.toLocaleString('en-US')} of `)) fail(`filter ${q}: the page says ${JSON.stringify(s)}, the API ${expect}`);
  if (expect > 0 && s.rows === 0) fail(`filter ${q}: ${expect} runs match but no row shows`);
  const accs = await page.$$eval('#runs-table tr[data-run]', (r) => r.map((x) => parseFloat(x.children[10].textContent)));
  if (!accs.every((a) => a >= 99)) fail(`filter ${q} shows accuracies ${accs.filter((a) => !(a >= 99)).slice(0, 5)}`);
  out.filter_total = expect;

  // 4. A filter the server refuses: the reason, and the last rows kept.
  await page.fill('#runs-filter', 'acc>>1');
  await page.waitForFunction(() => document.querySelector('#runs-error')?.textContent.includes('acc>>1'), null, { timeout: 10000 })
    .catch(async () => fail(`a bad filter is not explained: "${await page.textContent('#runs-error')}"`));
  s = await state();
  if (s.total !== expect) fail(`a bad filter changed the table: ${JSON.stringify(s)}`);
  const color = await page.$eval('#runs-error', (el) => getComputedStyle(el).color);
  if (color !== 'rgb(255, 93, 93)') fail(`the filter's error is not red: ${color}`);
  out.error = await page.textContent('#runs-error');
  await page.fill('#runs-filter', '');
  await settled('clearing the filter');
  if (await page.textContent('#runs-error')) fail('the error stayed after the filter was cleared');

  // 5. Sorting by lr, both ways, by the server.
  const lrs = () => page.$$eval('#runs-table tr[data-run]', (r) => r.map((x) => Number(x.children[4].textContent)));
  const sorted = (a, dir) => a.every((v, i) => i === 0 || (v - a[i - 1]) * dir >= 0);
  for (const [order, dir] of [['asc', 1], ['desc', -1]]) {
    const t = Date.now();
    await page.click('#runs-table th[data-sort="lr"]');
    await settled(`sort by lr ${order}`);
    const got = await lrs();
    const first = (await list({ sort: 'lr', order, limit: 1 })).body.runs[0];
    const firstRow = await page.$eval('#runs-table tr[data-run]', (r) => r.dataset.run);
    const arrow = await page.textContent('#runs-table th[data-sort="lr"]');
    if (!sorted(got, dir) || got.length < 5) fail(`sort by lr ${order}: ${got.slice(0, 20)}`);
    if (firstRow !== first.run_id) fail(`sort by lr ${order}: first row ${firstRow}, the API's ${first.run_id}`);
    if (!arrow.includes(dir > 0 ? '▲' : '▼')) fail(`the lr header says ${arrow}`);
    out[`sort_lr_${order}_ms`] = Date.now() - t;
  }

  // 6. The parallel coordinates: every run of the query.
  await page.waitForFunction((want) => window.mnistMonitor.parallel.mode === 'shown' && window.mnistMonitor.parallel.lines === want, n, { timeout: 15000 })
    .catch(async () => fail(`parallel coordinates: ${JSON.stringify(await page.evaluate(() => window.mnistMonitor.parallel))}, want ${n} lines`));
  const par = await page.evaluate(() => window.mnistMonitor.parallel);
  if (par.lines < 1000) fail(`parallel coordinates draw ${par.lines} lines`);
  out.parallel = par;
  const crisp = await page.$eval('#parallel', (c) => c.width / c.clientWidth);
  if (Math.abs(crisp - (await page.evaluate(() => devicePixelRatio))) > 0.05) fail(`the canvas is ${crisp}x its CSS size`);

  // 7. Compare all shown: the first 20 of the query in this order.
  const first20 = (await list({ sort: 'lr', order: 'desc', limit: 20 })).body.runs.map((r) => r.run_id);
  const t3 = Date.now();
  await page.click('#compare-shown');
  await page.waitForFunction(() => {
    const c = window.mnistMonitor.view.compare;
    return c.size === 20 && [...c.values()].every((x) => x.series.step.length > 0);
  }, null, { timeout: 20000 }).catch(async () => fail(`compare all shown: ${await page.evaluate(() => window.mnistMonitor.view.compare.size)} runs`));
  out.compare_ms = Date.now() - t3;
  const compared = await page.evaluate(() => [...window.mnistMonitor.view.compare.keys()]);
  if (first20.some((id) => !compared.includes(id))) fail(`compare all shown overlaid ${compared}, not the first 20 by lr: ${first20}`);
  await page.waitForFunction(() => window.mnistMonitor.parallel.mode === 'compared' && window.mnistMonitor.parallel.lines >= 20, null, { timeout: 5000 })
    .catch(async () => fail(`parallel coordinates of the compared runs: ${JSON.stringify(await page.evaluate(() => window.mnistMonitor.parallel))}`));
  const checked = await page.$$eval('#runs-table tr[data-run] [data-compare]:checked', (b) => b.length);
  if (checked < 10) fail(`${checked} compared rows are ticked`);
  if (screenshot) await page.screenshot({ path: screenshot, fullPage: true });
  await page.click('#compare-clear');
  await page.waitForFunction((want) => window.mnistMonitor.parallel.mode === 'shown' && window.mnistMonitor.parallel.lines === want, n, { timeout: 10000 })
    .catch(async () => fail(`after clear: ${JSON.stringify(await page.evaluate(() => window.mnistMonitor.parallel))}`));
  out.heap_mb = await page.evaluate(() => (performance.memory ? +(performance.memory.usedJSHeapSize / 2 ** 20).toFixed(1) : null));
  console.log(JSON.stringify(out));
} finally {
  await browser.close();
}
