// A run killed with `kill -9` (its log ends without `run_finished`) shows
// as interrupted on the page: the status says so, Stop is disabled, and
// there is no ETA. Usage: node tests/e2e/interrupted.mjs BASE_URL RUN_ID SCREENSHOT.png
import { fail, launch } from './browser.mjs';

const [base, runId, screenshot] = process.argv.slice(2);
const browser = await launch();
try {
  const page = await browser.newPage({ viewport: { width: 1400, height: 1000 } });
  await page.goto(base + '/', { waitUntil: 'load' });
  // `serve` shows the newest logged run: the killed one.
  await page.waitForFunction((id) => document.querySelector('#run-title')?.textContent.includes(id), runId, { timeout: 15000 });
  await page.waitForFunction(() => document.querySelector('#s-epoch')?.textContent !== '–', null, { timeout: 15000 });
  const status = await page.textContent('#run-status');
  if (status !== 'interrupted') fail(`the killed run shows as "${status}"`);
  if (!(await page.isDisabled('#stop'))) fail('Stop is enabled for a dead run');
  const eta = await page.textContent('#s-eta');
  if (eta !== '–') fail(`a dead run shows an ETA: ${eta}`);
  await page.screenshot({ path: screenshot });
  console.log(JSON.stringify({ status, eta }));
} finally {
  await browser.close();
}
