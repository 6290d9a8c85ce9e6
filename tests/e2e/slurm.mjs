// A sweep submitted to a real Slurm shows on the page: the Slurm panel lists
// each of its tasks with the state the cluster reports and its run, and a
// task's run, opened from there, shows its Slurm task beside its status.
// Usage: node tests/e2e/slurm.mjs BASE_URL SWEEP_ID SCREENSHOT.png
import { fail, launch } from './browser.mjs';

const [base, sweepId, screenshot] = process.argv.slice(2);
const browser = await launch();
try {
  const page = await browser.newPage({ viewport: { width: 1400, height: 1400 } });
  page.on('pageerror', (e) => fail(`the page threw: ${e.message}`));
  await page.goto(`${base}/?sweep=${encodeURIComponent(sweepId)}`, { waitUntil: 'load' });
  const box = `#slurm .slurm-sweep[data-sweep="${sweepId}"]`;
  await page.waitForSelector(box, { timeout: 15000 }).catch(() => fail('the Slurm panel never listed the sweep'));
  const rows = await page.$$eval(`${box} tr[data-slurm-run]`, (trs) => trs.map((tr) => ({
    run: tr.dataset.slurmRun, state: tr.querySelector('.pill').textContent, node: tr.children[3].textContent,
  })));
  if (rows.length !== 4) fail(`the panel shows ${rows.length} tasks: ${JSON.stringify(rows)}`);
  for (const r of rows) if (r.state !== 'completed' || r.node !== 'localhost') fail(`a task shows ${JSON.stringify(r)}`);
  // The sweep's four runs are in the runs table, filtered to the sweep.
  for (const r of rows) {
    await page.waitForSelector(`#runs-table tr[data-run="${r.run}"]`, { timeout: 10000 }).catch(() => fail(`${r.run} is not in the runs table`));
  }
  // Open one from the panel: the status line names its Slurm task.
  await page.click(`${box} [data-open-run="${rows[2].run}"]`);
  await page.waitForFunction((id) => window.mnistMonitor.view.runId === id && window.mnistMonitor.view.status === 'completed', rows[2].run, { timeout: 15000 })
    .catch(() => fail('the run opened from the panel did not load'));
  const pill = await page.textContent('#run-slurm');
  if (!/^Slurm \d+_2 completed on localhost$/.test(pill)) fail(`the run's Slurm pill says ${JSON.stringify(pill)}`);
  await page.screenshot({ path: screenshot, fullPage: true });
  // The panel and the run's status line alone, for the README.
  await page.locator('#slurm').screenshot({ path: screenshot.replace(/\.png$/, '-panel.png') });
  console.log(JSON.stringify({ rows, pill }));
} finally {
  await browser.close();
}
