// End-to-end test of the page in a real headless Chromium (Debian's), driven
// by playwright-core. Usage: node tests/e2e/page.mjs BASE_URL SCREENSHOT.png
// Exits non-zero with a message on the first failed expectation.
import { fail, launch } from './browser.mjs';

const [base, screenshot] = process.argv.slice(2);

const browser = await launch();
try {
  const page = await browser.newPage({ viewport: { width: 1500, height: 1250 } });
  const errors = [];
  page.on('pageerror', (e) => errors.push(String(e)));
  await page.goto(base, { waitUntil: 'load' });
  await page.waitForSelector('#conn.ok', { timeout: 15000 });

  // A bad value is shown next to its field, and nothing starts.
  await page.fill('input[name=batch_size]', '0');
  await page.click('#start');
  await page.waitForFunction(() => document.querySelector('[data-error=batch_size]').textContent.includes('1..=65536'), null, { timeout: 10000 });
  if (!(await page.$('input[name=batch_size].invalid'))) fail('the bad field is not marked');

  // A real run: small preset, CPU, a few hundred images.
  await page.click('[data-preset="16,32,32,32"]');
  await page.fill('input[name=batch_size]', '32');
  await page.fill('input[name=epochs]', '3');
  await page.fill('input[name=limit_train]', '1600');
  await page.fill('input[name=limit_test]', '500');
  await page.selectOption('select[name=backend]', 'cpu');
  await page.click('#start');
  await page.waitForFunction(() => document.querySelector('[data-error=batch_size]').textContent === '', null, { timeout: 10000 });

  // Chart points arrive batch by batch.
  await page.waitForFunction(() => {
    const legend = document.querySelectorAll('#chart-loss .u-over');
    return legend.length && document.querySelector('#s-batch').textContent.includes('/');
  }, null, { timeout: 60000 });
  // Start pressed again while it trains: the run is queued, shown, cancelled.
  await page.click('#start');
  await page.waitForFunction(() => document.querySelector('#form-message').textContent.includes('queued (position 1)'), null, { timeout: 10000 })
    .catch(async () => fail(`a second start was not queued: ${await page.textContent('#form-message')}`));
  await page.waitForSelector('#queue-table tr[data-queued]', { timeout: 5000 });
  await page.click('#queue-table [data-cancel]');
  await page.waitForFunction(() => document.querySelector('#queue-box').hidden, null, { timeout: 5000 })
    .catch(() => fail('cancelling the queued run left it in the queue'));
  await page.waitForFunction(() => Number((document.querySelector('#s-batch').textContent.split('/')[0] || '0').trim()) >= 5, null, { timeout: 60000 });
  if ((await page.textContent('#s-backend')).indexOf('cpu') < 0) fail('backend not shown');
  // Sample images and the confusion matrix after the first evaluation.
  await page.waitForSelector('#samples .sample img', { timeout: 120000 });
  const samples = await page.$$eval('#samples .sample', (els) => els.map((e) => e.className));
  if (samples.length !== 16) fail(`expected 16 samples, saw ${samples.length}`);
  if (!(await page.$$eval('#confusion td', (tds) => tds.length === 100))) fail('confusion matrix is not 10x10');
  if (!(await page.textContent('#model-total')).includes('parameters')) fail('model panel is empty');
  // The machine panel: live CPU/memory figures, sparkline history, and the
  // GPU table or the reason there is none.
  await page.waitForFunction(() => /\d+% · load/.test(document.querySelector('#hw-cpu').textContent)
    && window.mnistMonitor.hardware.samples.length >= 2, null, { timeout: 20000 });
  if (!/GiB/.test(await page.textContent('#hw-mem'))) fail('memory tile is empty');
  // The machine over the run, on the charts' x axis (steps here).
  await page.waitForFunction(() => (window.mnistMonitor.hwCharts.cpu_percent?.data[0].length || 0) >= 2, null, { timeout: 20000 })
    .catch(() => fail('no CPU chart over the run'));
  const hwX = await page.evaluate(() => { const d = window.mnistMonitor.hwCharts.rss_bytes.data; return { x: d[0][d[0].length - 1], y: d[1][d[1].length - 1], steps: window.mnistMonitor.view.series.step.slice(-1)[0] }; });
  if (!(hwX.y > 0.01 && hwX.x >= 1 && hwX.x <= hwX.steps + 1)) fail(`the memory chart is not on the step axis: ${JSON.stringify(hwX)}`);
  const gpuText = await page.textContent('#hw-gpus');
  if (!gpuText.includes('no NVIDIA GPU') && !(await page.$('.gpu-table tr[data-gpu]'))) fail(`GPU panel: "${gpuText}"`);

  // Drawn series: uPlot keeps the data; the loss chart must hold points.
  const points = await page.evaluate(() => window.mnistMonitor.charts.loss.data[0].length);
  if (points < 5) fail(`the loss chart holds ${points} points`);
  // The moving average the page continued on live batches is the server's,
  // computed on every step: the curve cannot change where the snapshot
  // and the live tail meet.
  const smooth = await page.evaluate(async () => {
    const v = window.mnistMonitor.view, s = v.series;
    const body = await (await fetch(`/api/runs/${encodeURIComponent(v.runId)}/series?points=20000&smoothing=${s.alpha}`)).json();
    const server = new Map(body.step.map((x, i) => [x, body.smoothed.loss[i]]));
    let compared = 0, worst = 0;
    s.step.forEach((x, i) => {
      if (!server.has(x) || s.s_loss[i] == null) return;
      compared++;
      worst = Math.max(worst, Math.abs(s.s_loss[i] - server.get(x)) / Math.max(1e-12, Math.abs(server.get(x))));
    });
    return { compared, worst };
  });
  if (smooth.compared < 5 || smooth.worst > 1e-9) fail(`the page's smoothing differs from the server's: ${JSON.stringify(smooth)}`);
  await page.screenshot({ path: screenshot, fullPage: true });
  if (errors.length) fail(`page errors: ${errors.join('; ')}`);
  console.log('page e2e ok');
} finally {
  await browser.close();
}
