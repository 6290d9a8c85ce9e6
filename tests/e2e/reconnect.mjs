// The page survives a server restart, in a real headless Chromium.
// Usage: node tests/e2e/reconnect.mjs MNIST_MONITOR_BIN DATA_DIR WORK_DIR
//
// Starts `serve`, trains a tiny run from the API, opens the page, kills the
// server (SIGKILL, as a crash would), checks that the page says it is
// disconnected, starts the server again on the same port and checks that the
// page reconnects by itself with the run's curves intact, then follows a new
// run started after the restart.
import { createRequire } from 'node:module';
import { spawn } from 'node:child_process';
import { createServer } from 'node:net';
import { join } from 'node:path';
const require = createRequire(new URL('../../web/package.json', import.meta.url));
const { chromium } = require('playwright-core');

const [bin, dataDir, work] = process.argv.slice(2);
const fail = (msg) => { console.error(`FAIL: ${msg}`); process.exitCode = 1; throw new Error(msg); };

const port = await new Promise((resolve) => {
  const s = createServer();
  s.listen(0, '127.0.0.1', () => { const { port } = s.address(); s.close(() => resolve(port)); });
});
const base = `http://127.0.0.1:${port}`;

function startServer() {
  const child = spawn(bin, ['serve', '--bind', `127.0.0.1:${port}`, '--data-dir', dataDir,
    '--run-dir', join(work, 'runs'), '--checkpoint-dir', join(work, 'ckpt')],
    { stdio: ['ignore', 'ignore', 'pipe'] });
  let err = '';
  const ready = new Promise((resolve, reject) => {
    child.stderr.on('data', (d) => { err += d; if (err.includes('serving on')) resolve(); });
    child.on('exit', (code) => reject(new Error(`server exited ${code}: ${err}`)));
  });
  return { child, ready };
}

async function startRun() {
  const res = await fetch(`${base}/api/runs`, {
    method: 'POST', headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ kernels: [16, 32, 32, 32], batch_size: 32, epochs: 1, limit_train: 640,
      limit_val: 200, limit_test: 200, backend: 'cpu' }),
  });
  if (res.status !== 201) fail(`POST /api/runs: ${res.status} ${await res.text()}`);
  return (await res.json()).run_id;
}

async function waitFinished(runId) {
  for (let i = 0; i < 600; i++) {
    const r = await (await fetch(`${base}/api/runs/${runId}`)).json();
    if (r.status && r.status !== 'running') return r;
    await new Promise((ok) => setTimeout(ok, 200));
  }
  fail(`run ${runId} did not finish`);
}

let server = startServer();
await server.ready;
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  args: ['--no-sandbox', '--disable-gpu', '--no-first-run', '--disable-background-networking'],
});
try {
  const first = await startRun();
  const page = await browser.newPage({ viewport: { width: 1400, height: 1000 } });
  const errors = [];
  page.on('pageerror', (e) => errors.push(String(e)));
  await page.goto(`${base}/`, { waitUntil: 'load' });
  await page.waitForSelector('#conn.ok', { timeout: 15000 });
  await waitFinished(first);
  await page.waitForFunction((id) => window.mnistMonitor.view.runId === id
    && window.mnistMonitor.view.status !== 'running', first, { timeout: 30000 });
  const before = await page.evaluate(() => ({
    points: window.mnistMonitor.charts.loss.data[0].length, seq: window.mnistMonitor.view.lastSeq }));
  if (before.points < 10) fail(`expected the run's 20 batches on the chart, saw ${before.points}`);

  // A crash: the page must say it lost the server.
  server.child.kill('SIGKILL');
  await page.waitForSelector('#conn.bad', { timeout: 15000 });
  const banner = await page.textContent('#banner');
  if (!banner.includes('Disconnected') || !(await page.isVisible('#banner'))) fail(`no disconnected banner: "${banner}"`);

  // Back up on the same port: the page reconnects by itself, resuming after
  // its last seq, and keeps the curves it had.
  server = startServer();
  await server.ready;
  await page.waitForSelector('#conn.ok', { timeout: 20000 });
  if (await page.isVisible('#banner')) fail('the banner stayed after reconnecting');
  const after = await page.evaluate(() => ({
    points: window.mnistMonitor.charts.loss.data[0].length, seq: window.mnistMonitor.view.lastSeq,
    runId: window.mnistMonitor.view.runId }));
  if (after.runId !== first) fail(`after the restart the page shows ${after.runId}, not ${first}`);
  if (after.points !== before.points || after.seq !== before.seq) {
    fail(`curves changed across the restart: ${JSON.stringify(before)} -> ${JSON.stringify(after)}`);
  }

  // And it follows a run started after the restart.
  const second = await startRun();
  await page.waitForFunction((id) => window.mnistMonitor.view.runId === id
    && window.mnistMonitor.charts.loss.data[0].length > 0, second, { timeout: 60000 });
  await waitFinished(second);
  if (errors.length) fail(`page errors: ${errors.join('; ')}`);
  console.log('reconnect e2e ok');
} finally {
  await browser.close();
  server.child.kill('SIGKILL');
}
