// The Resume button of a run whose server was killed mid-run (restarted
// since): the run shows as interrupted with the button, a click continues
// it from its checkpoint, and the page follows it (its log and steps going
// on) until it completes.
// Usage: node tests/e2e/resume_button.mjs BASE_URL RUN_ID [SCREENSHOT.png]
import { fail, launch } from './browser.mjs';

const [base, runId, screenshot] = process.argv.slice(2);
const browser = await launch();
try {
  const page = await browser.newPage({ viewport: { width: 1400, height: 1100 } });
  const errors = [];
  page.on('pageerror', (e) => errors.push(`${e.message}\n${e.stack}`));
  await page.goto(base + '/', { waitUntil: 'load' });
  const state = () => page.evaluate(() => {
    const v = window.mnistMonitor.view;
    return { run: v.runId, status: v.status, step: v.last?.step, resumed: v.started?.resumed_from_step, msg: document.querySelector('#resume-msg').textContent };
  });
  const waitFor = (what, fn, arg, timeout = 30000) => page.waitForFunction(fn, arg, { timeout })
    .catch(async () => fail(`${what}: ${JSON.stringify(await state())}`));
  // Open the run from the Runs table.
  await page.waitForSelector(`#runs-table tr[data-run="${runId}"]`, { timeout: 15000 });
  await page.click(`#runs-table tr[data-run="${runId}"] td:nth-child(2)`);
  await waitFor('the run shows as interrupted', (id) => window.mnistMonitor.view.runId === id && window.mnistMonitor.view.status === 'interrupted'
    && (window.mnistMonitor.view.last?.step || 0) > 0, runId);
  await waitFor('the Resume button shows', () => !document.querySelector('#resume-box').hidden && !document.querySelector('#resume-run').disabled);
  if (!(await page.isDisabled('#stop'))) fail('Stop is enabled for an interrupted run');
  if (!(await page.$eval('#steer', (el) => el.hidden))) fail('the Steer strip shows for an interrupted run');
  const before = (await state()).step;
  await page.click('#resume-run');
  // The page follows the run as it goes on, to its end.
  await waitFor('the run goes on', (s) => ['running', 'paused', 'completed'].includes(window.mnistMonitor.view.status)
    && window.mnistMonitor.view.started?.resumed_from_step != null && (window.mnistMonitor.view.last?.step || 0) > s, before, 60000);
  await waitFor('the run completes', () => window.mnistMonitor.view.status === 'completed', null, 180000);
  const after = await state();
  if (!(after.resumed <= before && after.step > before)) fail(`the steps do not go on: before ${before}, after ${JSON.stringify(after)}`);
  if (!(await page.textContent('#run-status')).includes('completed')) fail(`the status pill: ${await page.textContent('#run-status')}`);
  if (!(await page.$eval('#resume-box', (el) => el.hidden))) fail('the Resume button stays after the run completed');
  if (screenshot) await page.screenshot({ path: screenshot });
  if (errors.length) fail(`page errors: ${errors.join('; ')}`);
  console.log(JSON.stringify({ status: after.status, before, resumed_from_step: after.resumed, steps: after.step }));
} finally {
  await browser.close();
}
