// A `train` started from a shell, not by the server, shows on a running
// `serve`'s page and streams live: the page is open first, then this
// script starts the training process writing into the server's runs folder.
// Prints the latency from the log's creation to the run's row in the page.
// Usage: node tests/e2e/follow.mjs BASE_URL RUNS_DIR SCREENSHOT.png -- TRAIN COMMAND…
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { fail, launch } from './browser.mjs';

const args = process.argv.slice(2);
const [base, runsDir, screenshot] = args;
const command = args.slice(args.indexOf('--') + 1);
const runId = command[command.indexOf('--run-id') + 1];
const browser = await launch();
const out = {};
let child;
try {
  const page = await browser.newPage({ viewport: { width: 1400, height: 1300 } });
  page.on('pageerror', (e) => fail(`the page threw: ${e.message}`));
  await page.goto(base + '/', { waitUntil: 'load' });
  await page.waitForFunction(() => window.mnistMonitor && window.mnistMonitor.view.ws?.readyState === 1, null, { timeout: 15000 });
  child = spawn(command[0], command.slice(1), { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  child.stderr.on('data', (d) => { stderr += d; });
  const exited = new Promise((resolve) => child.on('exit', (code) => resolve(code)));
  const log = join(runsDir, runId, 'events.jsonl');
  const started = Date.now();
  while (!existsSync(log)) {
    if (Date.now() - started > 60000) fail(`no log after 60 s: ${stderr}`);
    await new Promise((r) => setTimeout(r, 20));
  }
  const logAt = Date.now();
  await page.waitForSelector(`#runs-table tr[data-run="${runId}"]`, { timeout: 10000 })
    .catch(() => fail('the shell run never appeared in the runs table'));
  out.appear_ms = Date.now() - logAt;
  // The page follows it (nothing else trains here) and its batches stream in.
  await page.waitForFunction((id) => window.mnistMonitor.view.runId === id && window.mnistMonitor.view.status === 'running', runId, { timeout: 10000 })
    .catch(async () => fail(`the page did not follow the shell run: ${await page.evaluate(() => JSON.stringify([window.mnistMonitor.view.runId, window.mnistMonitor.view.status]))}`));
  const first = await page.evaluate(() => window.mnistMonitor.view.series.step.length);
  await page.waitForFunction((n) => window.mnistMonitor.view.series.step.length > n + 5, first, { timeout: 60000 })
    .catch(() => fail('no batches streamed after the run appeared'));
  out.streamed = true;
  await page.screenshot({ path: screenshot, fullPage: true });
  const code = await exited;
  if (code !== 0) fail(`train exited ${code}: ${stderr}`);
  await page.waitForFunction(() => window.mnistMonitor.view.status === 'completed', null, { timeout: 15000 })
    .catch(async () => fail(`the end did not reach the page: ${await page.evaluate(() => window.mnistMonitor.view.status)}`));
  out.batches_on_page = await page.evaluate(() => window.mnistMonitor.view.series.step.length);
  // The runs table follows (its list is fetched again when the run ends).
  await page.waitForFunction((id) => document.querySelector(`#runs-table tr[data-run="${id}"]`)?.textContent.includes('completed'), runId, { timeout: 10000 })
    .catch(async () => fail(`the runs table says: ${await page.textContent(`#runs-table tr[data-run="${runId}"]`)}`));
  // Stopping it from the page is refused with the reason: another process trains it.
  const stop = await page.evaluate(async (id) => { const r = await fetch(`/api/runs/${id}/stop`, { method: 'POST' }); return [r.status, (await r.json()).error]; }, runId);
  out.stop = stop;
  console.log(JSON.stringify(out));
} finally {
  if (child && child.exitCode === null) child.kill('SIGKILL');
  await browser.close();
}
