// The many-runs bench's browser figure: headless Chromium (as the e2e tests
// drive it) opens the page and waits for the Runs table's first row.
//   node bench/many_runs/page_open.mjs http://127.0.0.1:PORT/ [timeout_ms]
// Prints `page open to a filled Runs table: N ms` (from goto to the first
// `#runs-table tr[data-run]`) and the rows the table then holds.
import { createRequire } from 'node:module';
const require = createRequire(new URL('../../web/package.json', import.meta.url));
const { chromium } = require('playwright-core');

const url = process.argv[2];
const timeout = Number(process.argv[3] || 30000);
if (!url) { console.error('usage: node page_open.mjs URL [timeout_ms]'); process.exit(2); }

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
         '--disable-component-update', '--disable-sync'],
});
let code = 0;
try {
  const page = await browser.newPage({ viewport: { width: 1400, height: 900 } });
  const errors = [];
  page.on('pageerror', (e) => errors.push(String(e)));
  const t0 = performance.now();
  await page.goto(url, { waitUntil: 'commit', timeout });
  await page.waitForSelector('#runs-table tr[data-run]', { state: 'attached', timeout });
  const ms = performance.now() - t0;
  const rows = await page.locator('#runs-table tr[data-run]').count();
  console.log(`page open to a filled Runs table: ${ms.toFixed(0)} ms`);
  console.log(`  (${rows} rows in the table${errors.length ? `; page errors: ${errors.slice(0, 3).join(' | ')}` : ''})`);
} catch (e) {
  console.log(`page open to a filled Runs table: n/a (${String(e.message || e).split('\n')[0]})`);
  code = 1;
} finally {
  await browser.close();
}
process.exit(code);
