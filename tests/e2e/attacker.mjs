// Another web site against a running monitor, in a real headless Chromium.
// Usage: node tests/e2e/attacker.mjs MONITOR_BASE RUN_ID
//
// 1. A page served from another port of the same host (same-site, so
//    SameSite cookies do not keep it out) tries to stop the run with a
//    no-cors POST, to read /api/runs, and to open the run's websocket.
// 2. The monitor's own page lists a run whose folder name is HTML; the
//    name must show as text and run nothing.
// Prints one JSON line with what the attacker got; exits non-zero on a
// failed expectation.
import http from 'node:http';
import { createRequire } from 'node:module';
const require = createRequire(new URL('../../web/package.json', import.meta.url));
const { chromium } = require('playwright-core');

const [monitor, runId] = process.argv.slice(2);
const fail = (msg) => { console.error(`FAIL: ${msg}`); process.exit(1); };

const evil = `<!doctype html><title>cute cats</title><script>
(async () => {
  const m = ${JSON.stringify(monitor)}, r = {};
  try { await fetch(m + '/api/runs/${runId}/stop', { method: 'POST', mode: 'no-cors' }); r.post = 'sent'; } catch (e) { r.post = 'error'; }
  try { const res = await fetch(m + '/api/runs', { mode: 'cors' }); r.read = 'read ' + (await res.text()).length; } catch (e) { r.read = 'blocked'; }
  r.ws = await new Promise((done) => {
    const ws = new WebSocket(m.replace('http', 'ws') + '/ws/runs/current');
    ws.onmessage = (e) => done('read ' + e.data.slice(0, 40));
    ws.onerror = () => done('refused');
    setTimeout(() => done('timeout'), 5000);
  });
  window.result = r;
})();
</script>`;
const site = http.createServer((req, res) => { res.setHeader('content-type', 'text/html'); res.end(evil); });
await new Promise((ok) => site.listen(0, '127.0.0.1', ok));

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
         '--disable-component-update', '--disable-sync'],
});
try {
  const page = await browser.newPage();
  await page.goto(`http://127.0.0.1:${site.address().port}/`);
  await page.waitForFunction(() => window.result, null, { timeout: 15000 });
  const result = await page.evaluate(() => window.result);
  if (result.read !== 'blocked') fail(`the other site read /api/runs: ${JSON.stringify(result)}`);
  if (result.ws !== 'refused') fail(`the other site's websocket was not refused: ${JSON.stringify(result)}`);

  // The monitor's own page: a run named like HTML is shown as text.
  const own = await browser.newPage();
  const errors = [];
  own.on('pageerror', (e) => errors.push(String(e)));
  await own.goto(monitor + '/', { waitUntil: 'load' });
  await own.waitForFunction(() => document.querySelector('#runs-table')?.textContent.includes('<img'), null, { timeout: 15000 });
  if (await own.evaluate(() => window.pwned)) fail('a run folder name ran script in the page');
  if (await own.$('#runs-table img')) fail('a run folder name became an element');
  if (errors.length) fail(`page errors: ${errors.join('; ')}`);
  console.log(JSON.stringify(result));
} finally {
  await browser.close();
  site.close();
}
