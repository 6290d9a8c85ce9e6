// The tracking controls, each exercised in the real page: the y log toggle,
// the x axis (step, epoch, time since start), the learning-rate and
// images/s charts, renaming and tagging a run, filtering by tag, deleting
// it to the trash and restoring it, and the favicon.
// With LONG_RUN_ID (a run of 20,000 steps with a loss spike at step 12,345):
// the snapshot keeps the spike, and zooming fetches the range at full
// resolution.
// Usage: node tests/e2e/tracking.mjs BASE_URL RUN_ID SCREENSHOT.png [LONG_RUN_ID]
import { readFileSync } from 'node:fs';
import { fail, launch } from './browser.mjs';

const [base, runId, screenshot, longRun] = process.argv.slice(2);
const browser = await launch();
const out = {};
// The runs table asks the server for each filter and sort: type, then wait
// until the page shows the answer.
const settled = (page) => page.waitForFunction(() => !window.mnistMonitor.runs.pending, null, { timeout: 10000 })
  .catch(() => fail('the runs table never showed the answer to its query'));
const filter = async (page, text) => { await page.fill('#runs-filter', text); await settled(page); };
try {
  const page = await browser.newPage({ viewport: { width: 1400, height: 1300 }, acceptDownloads: true });
  const notFound = [];
  page.on('response', (r) => { if (r.status() === 404) notFound.push(r.url()); });
  page.on('pageerror', (e) => fail(`the page threw: ${e.message}\n${e.stack}`));
  await page.goto(base + '/', { waitUntil: 'load' });
  await page.waitForSelector(`#runs-table tr[data-run="${runId}"]`, { timeout: 15000 });
  // Editing the form: the Model panel shows the form's model, and follows it.
  await page.fill('input[name=k1]', '7');
  await page.waitForFunction(() => document.querySelector('#model-source')?.textContent.includes('preview') &&
    document.querySelector('#model-table')?.textContent.includes('1→7'), null, { timeout: 5000 })
    .catch(async () => fail(`the preview did not follow the kernels: ${await page.textContent('#model-table')}`));
  await page.fill('input[name=k1]', '0');
  await page.waitForFunction(() => document.querySelector('#model-source')?.textContent.includes('1..=512'), null, { timeout: 5000 })
    .catch(async () => fail(`a bad kernel count is not explained: ${await page.textContent('#model-source')}`));
  await page.fill('input[name=k1]', '32');
  await page.click(`#runs-table tr[data-run="${runId}"] td:nth-child(2)`);
  await page.waitForFunction((id) => document.querySelector('#run-title')?.textContent.includes(id), runId, { timeout: 15000 });
  const chart = (key) => page.evaluate((k) => {
    const u = window.mnistMonitor.charts[k];
    if (!u) return null;
    const xs = u.data[0].filter((v) => v != null);
    return { n: xs.length, first: xs[0], last: xs[xs.length - 1], distr: u.scales.y.distr, points: u.data[1].filter((v) => v != null).length };
  }, key);
  await page.waitForFunction(() => (window.mnistMonitor.charts.loss?.data[0].length || 0) > 5, null, { timeout: 15000 });
  out.step = await chart('loss');
  // How to train it again, and what produced it.
  out.reproduce = await page.textContent('#repro-cmd');
  for (const part of ['mnist-monitor train', '--kernels 4,4,4,4', '--seed 42', '--batch-size 20', '--epochs 2']) {
    if (!out.reproduce.includes(part)) fail(`the reproduce command lacks ${part}: ${out.reproduce}`);
  }
  const prov = await page.textContent('#prov-info');
  if (!prov.includes('started by') || !prov.includes('--run-id')) fail(`provenance: ${prov}`);
  for (const k of ['lr', 'images_per_sec']) {
    const c = await chart(k);
    if (!c || c.points < 5) fail(`the ${k} chart has no points: ${JSON.stringify(c)}`);
  }

  await page.selectOption('#y-scale', 'log');
  await page.waitForFunction(() => window.mnistMonitor.charts.loss?.scales.y.distr === 3, null, { timeout: 5000 });
  out.log = await chart('loss');
  if (out.log.points < out.step.points) fail(`log scale lost loss points: ${JSON.stringify(out.log)}`);

  await page.selectOption('#x-axis', 'epoch');
  await page.waitForFunction(() => (window.mnistMonitor.charts.loss?.data[0].length || 0) > 5, null, { timeout: 5000 });
  out.epoch = await chart('loss');
  if (!(out.epoch.last <= 2.0001 && out.epoch.last > 1.5 && out.epoch.first > 0)) fail(`epoch axis of a 2-epoch run: ${JSON.stringify(out.epoch)}`);

  await page.selectOption('#x-axis', 'relative');
  await page.waitForFunction(() => (window.mnistMonitor.charts.loss?.data[0].length || 0) > 5, null, { timeout: 5000 });
  out.relative = await chart('loss');
  if (!(out.relative.first >= 0 && out.relative.first < 5 && out.relative.last > out.relative.first)) fail(`relative time axis: ${JSON.stringify(out.relative)}`);
  // Log x too (time since start begins at 0, which a log axis drops).
  await page.selectOption('#x-scale', 'log');
  await page.waitForFunction(() => window.mnistMonitor.charts.loss?.scales.x.distr === 3, null, { timeout: 5000 });
  out.logX = await chart('loss');
  if (!(out.logX.n > 5 && out.logX.first > 0)) fail(`log x: ${JSON.stringify(out.logX)}`);
  await page.selectOption('#x-scale', 'linear');
  await page.selectOption('#x-axis', 'step');
  await page.selectOption('#y-scale', 'linear');

  // Rename and tag the run, then filter by the tag.
  await page.waitForSelector('#run-meta:not([hidden])', { timeout: 5000 });
  await page.fill('#run-meta input[name=name]', 'baseline <b>bold</b>');
  await page.fill('#run-meta input[name=tags]', 'small, cnn');
  // The Notes box is dark like the page, not white.
  const notesBg = await page.$eval('#run-meta textarea[name=notes]', (t) => getComputedStyle(t).backgroundColor);
  if (notesBg === 'rgb(255, 255, 255)') fail(`the Notes box is white on the dark page`);
  await page.fill('#run-meta textarea[name=notes]', 'first try');
  await page.click('#run-meta button[type=submit]');
  await page.waitForFunction((id) => document.querySelector(`#runs-table tr[data-run="${id}"]`)?.textContent.includes('baseline <b>bold</b>'), runId, { timeout: 5000 });
  if (await page.$('#runs-table b')) fail('a run name was written into the page as HTML');
  await filter(page, 'small');
  await page.waitForFunction(() => document.querySelectorAll('#runs-table tr[data-run]').length === 1, null, { timeout: 5000 });
  out.filtered = await page.$$eval('#runs-table tr[data-run]', (rows) => rows.map((r) => r.dataset.run));
  if (out.filtered[0] !== runId) fail(`filtering by tag shows ${out.filtered}`);
  await page.screenshot({ path: screenshot, fullPage: true });
  await filter(page, '');

  // Delete to the trash, then restore.
  const answers = [];
  page.on('response', async (r) => { if (r.request().method() !== 'GET') answers.push(`${r.request().method()} ${r.url()} ${r.status()} ${await r.text().catch(() => '')}`); });
  await page.click('#meta-delete');
  await page.waitForFunction((id) => !document.querySelector(`#runs-table tr[data-run="${id}"]`), runId, { timeout: 5000 })
    .catch(async () => fail(`the deleted run is still listed; the form says: ${await page.textContent('#meta-error')}; answers: ${answers.join(' | ')}`));
  await page.waitForSelector(`#trash-table [data-restore="${runId}"]`, { state: 'attached', timeout: 5000 });
  out.trashed = true;
  await page.click('#trash summary');
  await page.click(`#trash-table [data-restore="${runId}"]`);
  await page.waitForSelector(`#runs-table tr[data-run="${runId}"]`, { timeout: 5000 });
  out.restored = true;

  // Each chart as a PNG.
  const downloads = [];
  page.on('download', (d) => downloads.push(d.suggestedFilename()));
  await page.click('#save-charts');
  await page.waitForFunction(() => true, null, { timeout: 1000 });
  for (let i = 0; i < 50 && downloads.length < 5; i++) await page.waitForTimeout(100);
  if (downloads.length !== 5 || !downloads.every((n) => n.endsWith('.png'))) fail(`chart PNGs: ${downloads}`);
  // And as SVGs: vectors, one polyline per drawn line.
  const svgs = [];
  page.on('download', async (d) => { if (d.suggestedFilename().endsWith('.svg')) svgs.push(readFileSync(await d.path(), 'utf8')); });
  await page.click('#save-svgs');
  for (let i = 0; i < 50 && svgs.length < 5; i++) await page.waitForTimeout(100);
  if (svgs.length !== 5 || !svgs.every((s) => s.startsWith('<svg') && s.includes('<polyline'))) fail(`chart SVGs: ${svgs.length} ${svgs.map((s) => s.slice(0, 60))}`);

  await compareTwenty(page);
  await reportOffline(page);
  await sweepFromPage(page);
  if (longRun) await zoomLongRun(page);

  const icon = await page.evaluate(async () => (await fetch('/favicon.svg')).status);
  if (icon !== 200) fail(`favicon: ${icon}`);
  if (notFound.length) fail(`the page asked for missing files: ${notFound.join(', ')}`);
  console.log(JSON.stringify(out));
} finally {
  await browser.close();
}

// The first 20 runs the filter shows (of 21) overlaid: one curve each in its
// own colour, the table of what differs, the parallel coordinates (a canvas:
// `mnistMonitor.parallel` says what it drew); sorting.
async function compareTwenty(page) {
  await filter(page, '');
  await page.click(`#runs-table tr[data-run="${runId}"] td:nth-child(2)`);
  await page.click('#compare-shown');
  await page.waitForFunction(() => {
    const c = window.mnistMonitor.view.compare;
    return c.size === 20 && [...c.values()].every((x) => x.series.step.length > 0);
  }, null, { timeout: 15000 }).catch(async () => fail(`compare: ${await page.evaluate(() => window.mnistMonitor.view.compare.size)} runs`));
  await page.waitForFunction(() => window.mnistMonitor.charts.loss?.series.length === 25, null, { timeout: 5000 });
  const c = await page.evaluate(() => {
    const u = window.mnistMonitor.charts.loss;
    const colours = new Set(u.series.slice(5).map((s) => s._stroke || s.stroke));
    const drawn = u.data.slice(5).filter((col) => col.some((v) => v != null)).length;
    return { colours: colours.size, drawn };
  });
  if (c.colours !== 20 || c.drawn !== 20) fail(`20 overlaid runs need 20 colours and curves: ${JSON.stringify(c)}`);
  const head = await page.$$eval('#diff-table tr:first-child th', (t) => t.map((x) => x.textContent));
  const rows = await page.$$eval('#diff-table tr[data-diff]', (r) => r.length);
  if (!head.includes('lr') || !head.includes('kernels') || head.includes('optimizer') || rows < 20) fail(`diff table: ${head} with ${rows} rows`);
  await page.waitForFunction(() => window.mnistMonitor.parallel.mode === 'compared' && window.mnistMonitor.parallel.lines >= 20, null, { timeout: 5000 })
    .catch(async () => fail(`parallel coordinates: ${JSON.stringify(await page.evaluate(() => window.mnistMonitor.parallel))}`));
  out.compareHeapMB = await page.evaluate(() => (performance.memory ? performance.memory.usedJSHeapSize / 2 ** 20 : null));
  if (out.compareHeapMB != null && out.compareHeapMB > 300) fail(`20 overlaid runs use ${out.compareHeapMB} MB`);
  // Sort by learning rate, both ways.
  const lrs = async () => page.$$eval('#runs-table tr[data-run]', (r) => r.map((x) => Number(x.children[4].textContent)));
  await page.click('#runs-table th[data-sort="lr"]');
  await settled(page);
  const up = await lrs();
  await page.click('#runs-table th[data-sort="lr"]');
  await settled(page);
  const down = await lrs();
  const sorted = (a, dir) => a.every((v, i) => i === 0 || (v - a[i - 1]) * dir >= 0);
  if (!sorted(up, 1) || !sorted(down, -1) || up[0] === up[up.length - 1]) fail(`sorting by lr: ${up} / ${down}`);
  // The filter reads config columns too.
  await filter(page, '0.0003');
  const shown = await page.$$eval('#runs-table tr[data-run]', (r) => r.length);
  if (!(shown >= 6 && shown < 21)) fail(`filtering by lr shows ${shown}`);
  await filter(page, '');
  // Another smoothing: every overlaid run and the viewed one asked again.
  await page.fill('#smoothing', '0.3');
  await page.dispatchEvent('#smoothing', 'input');
  await page.waitForFunction(() => window.mnistMonitor.view.series.alpha === 0.3 &&
    [...window.mnistMonitor.view.compare.values()].every((x) => x.series.alpha === 0.3), null, { timeout: 10000 });
  await page.screenshot({ path: screenshot.replace(/\.png$/, '-compare.png'), fullPage: true });
  await page.click('#compare-clear');
  await page.waitForFunction(() => window.mnistMonitor.charts.loss?.series.length === 5, null, { timeout: 5000 });
  out.compared = 20;
}

// The report the page offers, saved and opened from disk with every
// network request refused: the curves are there.
async function reportOffline(page) {
  const [download] = await Promise.all([page.waitForEvent('download'), page.click('#meta-report')]);
  const file = screenshot.replace(/\.png$/, '-report.html');
  await download.saveAs(file);
  const offline = await browser.newPage();
  const asked = [];
  offline.on('request', (r) => { if (!r.url().startsWith('file:') && !r.url().startsWith('data:')) asked.push(r.url()); });
  await offline.route('**/*', (route) => (route.request().url().startsWith('file:') ? route.continue() : route.abort()));
  await offline.goto('file://' + file);
  await offline.waitForSelector('body[data-ready=true]', { timeout: 10000 }).catch(() => fail('the report did not render offline'));
  const r = await offline.evaluate(() => ({
    points: window.reportCharts.loss.data[1].filter((v) => v != null).length,
    title: document.querySelector('#title').textContent,
    samples: document.querySelectorAll('#samples img').length,
    confusion: document.querySelectorAll('#confusion td').length,
  }));
  if (asked.length) fail(`the report fetched ${asked}`);
  if (r.points < 5 || r.samples < 1 || r.confusion !== 100 || !r.title.includes('baseline')) fail(`report: ${JSON.stringify(r)}`);
  out.report = r;
  await offline.close();
}

// A 2-run sweep from the page's form: queued, tagged, and the page opens on
// it (the filter on the sweep id, its runs overlaid as they start).
async function sweepFromPage(page) {
  await page.evaluate(() => window.scrollTo(0, 0));
  for (let i = 1; i <= 4; i++) await page.fill(`input[name=k${i}]`, '4');
  await page.fill('input[name=epochs]', '1');
  await page.fill('input[name=batch_size]', '20');
  await page.selectOption('select[name=backend]', 'cpu');
  await page.click('#more-fields summary');
  await page.fill('#more-fields [name=val_size]', '100');
  await page.click('#sweep summary');
  await page.fill('#sweep-grid', 'lr=0.001,0.002');
  await page.click('#sweep-start');
  await page.waitForFunction(() => /sweep .*: 2 runs queued/.test(document.querySelector('#form-message').textContent), null, { timeout: 15000 })
    .catch(async () => fail(`the sweep was not queued: ${await page.textContent('#form-message')} ${await page.textContent('#sweep-error')}`));
  const id = await page.evaluate(() => new URLSearchParams(location.search).get('sweep'));
  if (!id || !id.startsWith('sweep-') || (await page.inputValue('#runs-filter')) !== `sweep:${id}`) fail(`the page did not open on the sweep: ${id}`);
  await page.waitForFunction(() => window.mnistMonitor.view.compare.size === 2 &&
    document.querySelectorAll('#runs-table tr[data-run]').length === 2, null, { timeout: 60000 })
    .catch(async () => fail(`the sweep's runs were not overlaid: ${await page.evaluate(() => window.mnistMonitor.view.compare.size)}`));
  out.sweep = id;
  await page.click('#compare-clear');
  await filter(page, '');
}

async function zoomLongRun(page) {
  await page.click(`#runs-table tr[data-run="${longRun}"] td:nth-child(2)`);
  await page.waitForFunction((id) => document.querySelector('#run-title')?.textContent.includes(id), longRun, { timeout: 15000 });
  await page.waitForFunction(() => (window.mnistMonitor.charts.loss?.data[0].length || 0) > 100, null, { timeout: 15000 });
  const before = await page.evaluate(() => {
    const s = window.mnistMonitor.view.series;
    const inRange = s.step.filter((x) => x >= 12000 && x <= 12600).length;
    return { points: s.step.length, inRange, maxLoss: Math.max(...s.loss.filter((v) => v != null)) };
  });
  if (before.maxLoss < 49) fail(`the snapshot's buckets hid the loss spike: ${JSON.stringify(before)}`);
  if (before.points > 14100) fail(`the snapshot was not reduced: ${before.points} points`);
  // Drag across steps 12,000..12,600 on the loss chart.
  await page.$eval('#chart-loss', (el) => el.scrollIntoView());
  const box = await page.evaluate(() => {
    const u = window.mnistMonitor.charts.loss;
    const r = u.over.getBoundingClientRect();
    return { x0: r.left + u.valToPos(12000, 'x'), x1: r.left + u.valToPos(12600, 'x'), y: r.top + r.height / 2 };
  });
  const started = Date.now();
  await page.mouse.move(box.x0, box.y);
  await page.mouse.down();
  await page.mouse.move(box.x1, box.y, { steps: 5 });
  await page.mouse.up();
  await page.waitForFunction(() => window.mnistMonitor.view.zoomFetches > 0, null, { timeout: 5000 });
  const after = await page.evaluate(() => {
    const s = window.mnistMonitor.view.series;
    const u = window.mnistMonitor.charts.loss;
    const lo = Math.ceil(u.scales.x.min), hi = Math.floor(u.scales.x.max);
    return { lo, hi, inRange: s.step.filter((x) => x >= lo && x <= hi).length, xmin: u.scales.x.min, xmax: u.scales.x.max };
  });
  out.zoom = { before, after, ms: Date.now() - started };
  if (after.inRange !== after.hi - after.lo + 1) fail(`zoom should show every step it spans: ${JSON.stringify(out.zoom)}`);
  if (after.inRange < 10 * before.inRange / 2) fail(`zoom brought no finer data: ${JSON.stringify(out.zoom)}`);
  if (!(after.xmin > 11900 && after.xmax < 12700)) fail(`the chart did not zoom: ${JSON.stringify(after)}`);
}
