// Inside the network, in a real headless Chromium, on a finished real run
// with layer statistics: the Layers panel opens on a heatmap of six layer
// rows that drew (each row coloured across the plot), a hover names the
// layer, the step and the value; another statistic (dead units) leaves
// fc2's row empty (no ReLU); a click on a layer's row shows its weights',
// gradients' and activations' histograms, opening on the latest epoch, and
// the slider steps back to the first; fc2's legend entry shows no
// activations. Then a sample prediction's click inspects that digit: four
// conv layers of tiles (one per channel), conv1's filters, the saliency
// drawn over the input; a bad index is refused naming it. With DIAGNOSED
// (the run's log carries a diagnosed alert whose last good checkpoint is
// epoch 1 at lr 0.001), the Status card shows the diagnosis and its button
// opens the Fork panel on epoch 1 with lr 0.0001.
// Screenshots: layers.png, histograms.png, inspect.png (and diagnosis.png).
// Usage: node tests/e2e/layers.mjs BASE_URL RUN_ID SCREENSHOT_DIR [diagnosed]
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { fail, launch } from './browser.mjs';

const [base, runId, shots, diagnosed] = process.argv.slice(2);
mkdirSync(shots, { recursive: true });
const out = {};
const browser = await launch();
try {
  const page = await browser.newPage({ viewport: { width: 1500, height: 1200 } });
  const errors = [];
  page.on('pageerror', (e) => errors.push(`${e.message}\n${e.stack}`));
  await page.goto(base + '/', { waitUntil: 'load' });
  await page.waitForSelector('#conn.ok', { timeout: 15000 });
  const view = (fn, arg) => page.evaluate(fn, arg);
  const state = () => view(() => {
    const l = window.mnistMonitor.layers;
    return { run: window.mnistMonitor.view.runId, stat: l.stat, steps: l.cols.step.length, hists: l.cols.histograms.length, draws: l.draws, error: l.error, hist: l.hist.shown, msg: document.querySelector('#layers-msg').textContent, inspect: document.querySelector('#inspect-msg').textContent };
  });
  const waitFor = (what, fn, arg, timeout = 20000) => page.waitForFunction(fn, arg, { timeout })
    .catch(async () => fail(`${what}: ${JSON.stringify(await state())}`));

  await view((id) => window.mnistMonitor.openRun(id), runId);
  await waitFor('the run opens with its samples', (id) => window.mnistMonitor.view.runId === id && document.querySelectorAll('#samples .sample').length > 0, runId);

  // The Layers panel: fetched on opening, drawn.
  await page.click('#layers-panel > summary');
  await waitFor('the layers drawn', () => window.mnistMonitor.layers.draws > 0 && window.mnistMonitor.layers.geom);
  await page.locator('#layers-card').scrollIntoViewIfNeeded();
  const heat = () => view(() => {
    const l = window.mnistMonitor.layers, g = l.geom, c = document.querySelector('#layer-heatmap');
    const r = c.width / g.cssW, ctx = c.getContext('2d');
    // Per row: the share of the plot's columns not left the empty colour.
    const rows = [];
    for (let row = 0; row < g.rows; row++) {
      const y = Math.round((row + 0.15) * g.rowH * r);   // above a row's words
      const px = ctx.getImageData(Math.round(g.left * r), y, Math.round(g.width * r), 1).data;
      let coloured = 0;
      for (let p = 0; p < px.length; p += 4) if (px[p + 3] && !(px[p] === 12 && px[p + 1] === 17 && px[p + 2] === 22)) coloured++;
      rows.push(coloured / (px.length / 4));
    }
    return { rows, layers: l.cols.layers, steps: l.cols.step.length, total: l.cols.total, hists: l.cols.histograms.length, stats: l.cols.statistics.map((s) => s.key) };
  });
  const h1 = await heat();
  out.layers = h1.layers;
  out.samples = h1.total;
  out.histogram_sets = h1.hists;
  if (h1.rows.length !== 6 || h1.layers.join() !== 'conv1,conv2,conv3,conv4,fc1,fc2') fail(`heatmap rows: ${JSON.stringify(h1)}`);
  if (h1.rows.some((share) => share < 0.9)) fail(`a heatmap row did not draw across the plot: ${JSON.stringify(h1.rows)}`);
  if (h1.steps < 5) fail(`too few samples: ${h1.steps}`);
  const options = await page.$$eval('#layer-stat option', (os) => os.map((o) => o.value));
  if (options.join() !== h1.stats.join()) fail(`the statistic select lists ${options}, the answer ${h1.stats}`);
  const chartLines = await view(() => window.mnistMonitor.layers.cols.layers.length);
  if (chartLines !== 6 || !(await page.$('#layer-chart .uplot'))) fail('no per-layer chart');
  const chips = await page.$$eval('#layer-legend .layer-chip', (cs) => cs.map((c) => c.dataset.layer));
  if (chips.length !== 6) fail(`legend: ${chips}`);

  // Hover a cell: the layer, its step and its value.
  const geom = await view(() => { const g = window.mnistMonitor.layers.geom; return { left: g.left, width: g.width, rowH: g.rowH }; });
  const box = await page.locator('#layer-heatmap').boundingBox();
  const at = (row, frac) => [box.x + geom.left + geom.width * frac, box.y + geom.rowH * (row + 0.5)];
  await page.mouse.move(...at(2, 0.6));
  await waitFor('the hover tip', () => !document.querySelector('#heat-tip').hidden);
  const tip = await page.textContent('#heat-tip');
  if (!/^conv3 · step [\d,]+ · gradient norm [\d.e+-]+/.test(tip)) fail(`hover tip: ${tip}`);
  out.tip = tip;
  await page.locator('#layers-card').screenshot({ path: join(shots, 'layers.png') });

  // Another statistic: dead units, on a linear scale; fc2 has no ReLU.
  await page.selectOption('#layer-stat', 'dead');
  await waitFor('dead units drawn', () => window.mnistMonitor.layers.stat === 'dead' && document.querySelector('#layer-chart .u-title')?.textContent.startsWith('Dead units'));
  const h2 = await heat();
  if (h2.rows[5] > 0 || h2.rows.slice(0, 5).some((s) => s < 0.9)) fail(`dead units: rows ${JSON.stringify(h2.rows)}`);
  await page.mouse.move(...at(0, 0.9));
  await waitFor('the dead-units tip', () => /^conv1 · step .* · dead units [\d.e+-]+/.test(document.querySelector('#heat-tip').textContent));
  await page.selectOption('#layer-stat', 'grad_norm');

  // A layer's row: its histograms, on the latest epoch.
  await page.mouse.click(...at(1, 0.3));
  await waitFor('conv2\'s histograms', () => window.mnistMonitor.layers.hist.shown && document.querySelectorAll('#layer-hists .hist-col canvas.hist-bars:not([hidden])').length === 3);
  const hs = await view(() => ({
    shown: window.mnistMonitor.layers.hist.shown, layer: window.mnistMonitor.layers.hist.layer,
    label: document.querySelector('#hist-epoch-label').textContent, value: document.querySelector('#hist-epoch').value, max: document.querySelector('#hist-epoch').max,
    last: window.mnistMonitor.layers.cols.histograms.at(-1).epoch,
    rows: [...document.querySelectorAll('#layer-hists .hist-time')].map((c) => Number(c.dataset.rows)),
    drew: [...document.querySelectorAll('#layer-hists .hist-bars')].map((c) => {
      const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
      let n = 0;
      for (let p = 0; p < d.length; p += 4) if (d[p] + d[p + 1] + d[p + 2] > 150) n++;
      return n;
    }),
  }));
  out.histograms = hs;
  if (hs.layer !== 'conv2' || !hs.shown.latest || hs.shown.epoch !== hs.last || hs.value !== hs.max || !hs.label.includes('(latest)')) fail(`histograms did not open on the latest: ${JSON.stringify(hs)}`);
  if (hs.rows.some((n) => n !== h1.hists) || hs.drew.some((n) => n < 50)) fail(`histograms over time: ${JSON.stringify(hs)}`);
  await page.locator('#layer-hists').scrollIntoViewIfNeeded();
  await page.locator('#layers-card').screenshot({ path: join(shots, 'histograms.png') });
  // The slider back to the first epoch.
  await page.$eval('#hist-epoch', (s) => { s.value = '0'; s.dispatchEvent(new Event('input')); });
  const first = await page.textContent('#hist-epoch-label');
  if (!first.startsWith('epoch 1 ') || first.includes('latest')) fail(`the slider's first epoch: ${first}`);
  // fc2 (from the legend): weights and gradients, no activations.
  await page.click('#layer-legend .layer-chip[data-layer="fc2"]');
  await waitFor('fc2\'s histograms', () => window.mnistMonitor.layers.hist.layer === 'fc2' && document.querySelector('#layer-hists .hist-col[data-kind="activations"]')?.classList.contains('none'));
  if (!(await page.textContent('#layer-hists .hist-col[data-kind="activations"] .hist-note')).includes('no ReLU')) fail('fc2\'s missing activations are not explained');
  if (!(await view(() => window.mnistMonitor.layers.hist.shown.latest))) fail('another layer does not open on the latest epoch');

  // Inspect a sample prediction.
  const index = await page.getAttribute('#samples .sample:nth-child(3)', 'data-index');
  await page.click('#samples .sample:nth-child(3)');
  await waitFor('the inspection', () => window.mnistMonitor.inspect.shown > 0 && document.querySelectorAll('#inspect-view .insp-layer').length === 4, null, 30000);
  await waitFor('the overlay and images loaded', () => document.querySelector('#inspect-view .insp-overlay').dataset.drawn === '1'
    && [...document.querySelectorAll('#inspect-view img')].every((i) => i.complete && i.naturalWidth > 0));
  const ins = await view(() => {
    const a = window.mnistMonitor.inspect.answer;
    return {
      index: window.mnistMonitor.inspect.index, epoch: a.epoch, predicted: a.predicted, label: a.label,
      layers: [...document.querySelectorAll('#inspect-view .insp-layer')].map((l) => [l.dataset.layer, l.querySelectorAll('.tiles img').length]),
      shapes: a.layers.map((l) => l.shape[0]),
      filters: [...document.querySelectorAll('#inspect-view .tiles.filters img')].map((i) => i.naturalWidth),
      saliency: document.querySelector('#inspect-view .insp-saliency').naturalWidth,
      input: document.querySelector('#inspect-view .insp-input').naturalWidth,
      pixelated: getComputedStyle(document.querySelector('#inspect-view .insp-layer .tiles img')).imageRendering,
      meta: document.querySelector('#inspect-view .insp-meta').textContent,
      bars: document.querySelectorAll('#inspect-view .insp-bars .bar').length,
    };
  });
  out.inspect = { index: ins.index, layers: ins.layers, filters: ins.filters.length, epoch: ins.epoch, predicted: ins.predicted, label: ins.label };
  if (String(ins.index) !== index) fail(`inspected #${ins.index}, clicked #${index}`);
  if (ins.layers.map((l) => l[0]).join() !== 'conv1,conv2,conv3,conv4' || ins.layers.some(([, n], i) => n !== ins.shapes[i] || n < 4)) fail(`feature maps: ${JSON.stringify(ins)}`);
  if (ins.filters.length !== ins.shapes[0] || ins.filters.some((w) => w !== 3)) fail(`conv1's filters: ${JSON.stringify(ins.filters)}`);
  if (ins.saliency !== 28 || ins.input !== 28 || ins.bars !== 10 || ins.pixelated !== 'pixelated') fail(`inspect images: ${JSON.stringify(ins)}`);
  if (!/checkpoint of epoch \d+ \(step [\d,]+\) · [\d.]+ ms/.test(ins.meta)) fail(`inspect meta: ${ins.meta}`);
  await page.locator('#inspect-card').screenshot({ path: join(shots, 'inspect.png') });
  // An index past the test set: the server's reason, the input marked.
  await page.fill('#inspect-index', '10000');
  await page.click('#inspect-go');
  await waitFor('a bad index refused', () => /index/.test(document.querySelector('#inspect-msg').textContent) && document.querySelector('#inspect-index').classList.contains('invalid'));

  if (diagnosed) {
    await waitFor('the diagnosis', () => !document.querySelector('#diagnosis').hidden && document.querySelector('#diagnosis-fork'));
    const text = await page.textContent('#diagnosis');
    for (const part of ['fc1', 'rose 35.2×', '42.0% of the ReLU units', 'lower the learning rate', 'epoch 1']) if (!text.includes(part)) fail(`the diagnosis lacks "${part}": ${text}`);
    await waitFor('the Fork panel available', () => !document.querySelector('#fork-panel').hidden);
    await page.click('#diagnosis-fork');
    await waitFor('the Fork panel on epoch 1 at a tenth of the rate', () => document.querySelector('#fork-panel').open
      && document.querySelector('#fork-epoch').value === '1' && document.querySelector('#fork-form').elements.lr.value === '0.0001');
    out.diagnosis = true;
    await page.locator('#status').screenshot({ path: join(shots, 'diagnosis.png') });
  }
  if (errors.length) fail(`page errors: ${errors.join('; ')}`);
  console.log(JSON.stringify(out));
} finally {
  await browser.close();
}
