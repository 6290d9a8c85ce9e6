// The Runs card's "Clean up", in the real page: the rules "keep the best 3
// of each sweep" and "trash failed and stopped runs older than 1 day"
// previewed (the page lists the steps a dry run POSTed from here plans, in
// its order, and no run tagged keep), "Clean up…" disabled once a rule
// changes until the next preview, the inline confirmation (Cancel deletes
// nothing), then confirmed: every planned run leaves the runs list for the
// trash, and the table's count drops by as many.
// The caller prepares the runs folder (sweeps, failed and stopped runs that
// ended days ago, some runs tagged keep) and serves it; nothing may train.
// Usage: node tests/e2e/prune.mjs BASE_URL SCREENSHOT.png
// Prints one JSON line of what it saw; exits 1 with the reason on a failure.
import { fail, launch } from './browser.mjs';

const [base, screenshot] = process.argv.slice(2);
if (!base || !screenshot) fail('usage: node tests/e2e/prune.mjs BASE_URL SCREENSHOT.png');

const api = async (path, init) => {
  const res = await fetch(base + path, init);
  const body = await res.json().catch(() => null);
  if (!res.ok) fail(`${init?.method || 'GET'} ${path}: ${res.status} ${JSON.stringify(body)}`);
  return body;
};
const list = (params) => api(`/api/runs?${new URLSearchParams(params)}`);
// `id:ID` as one term of the filter (quoted when the id holds a space).
const idTerm = (id) => (/\s/.test(id) ? `id:"${id}"` : `id:${id}`);
const allRuns = async () => (await list({ limit: 0 })).all;

const policy = { keep_best: 3, metric: 'acc', trash_after_days: 1 };
const out = { policy };
const browser = await launch();
try {
  const page = await browser.newPage({ viewport: { width: 1400, height: 1300 } });
  page.on('pageerror', (e) => fail(`the page threw: ${e.message}\n${e.stack}`));
  const before = await allRuns();
  out.runs_before = before;
  const keep = new Set((await list({ q: 'tag:keep', limit: 1000 })).runs.map((r) => r.run_id));
  out.tagged_keep = keep.size;

  await page.goto(base + '/', { waitUntil: 'load' });
  await page.waitForSelector('#runs-table tr[data-run]', { timeout: 20000 }).catch(() => fail('the runs table never filled'));
  await page.click('#cleanup > summary');
  await page.waitForSelector('#cleanup-form input[name=keep_best]', { state: 'visible', timeout: 5000 })
    .catch(() => fail('opening "Clean up" shows no rules'));
  if (!(await page.isDisabled('#cleanup-go'))) fail('"Clean up…" is enabled before any preview');
  await page.fill('#cleanup-form input[name=keep_best]', '3');
  await page.selectOption('#cleanup-form select[name=metric]', 'acc');
  await page.fill('#cleanup-form input[name=trash_after_days]', '1');

  // The plan, asked from here: what the page must list.
  const dry = await api('/api/prune', { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ policy, dry_run: true }) });
  if (dry.dry_run !== true || dry.done !== null) fail(`a dry run answered ${JSON.stringify({ dry_run: dry.dry_run, done: dry.done })}`);
  const planned = dry.plan.actions.map((a) => a.run_id);
  if (!planned.length) fail('the dry run plans nothing: the folder needs sweeps of more than 3 finished runs, or failed and stopped runs that ended days ago');
  if (dry.plan.actions.some((a) => a.action !== 'trash')) fail(`steps other than trash for keep_best and trash_after_days: ${JSON.stringify(dry.plan.actions)}`);
  out.planned = planned.length;
  out.reasons = [...new Set(dry.plan.actions.map((a) => a.reason.replace(/ of \S+ by /, ' of SWEEP by ')))];
  out.trash_bytes = dry.plan.trash_bytes;

  const steps = () => page.$$eval('#cleanup-table tr[data-run]', (rows) => rows.map((r) => ({ run: r.dataset.run, text: r.querySelector('td.run').textContent, done: r.dataset.done || null })));
  const preview = async () => {
    await page.click('#cleanup-preview');
    await page.waitForFunction(() => document.querySelector('#cleanup-table tr[data-run]') && !document.querySelector('#cleanup-table tr[data-done]') &&
      !document.querySelector('#cleanup-preview').disabled, null, { timeout: 10000 })
      .catch(async () => fail(`the preview lists nothing: ${await page.textContent('#cleanup-summary')} ${await page.textContent('#cleanup-error')}`));
  };
  await preview();
  const shown = await steps();
  if (JSON.stringify(shown.map((s) => s.run)) !== JSON.stringify(planned)) {
    fail(`the preview lists ${JSON.stringify(shown.map((s) => s.run))}, the dry run plans ${JSON.stringify(planned)}`);
  }
  if (shown.some((s) => s.text !== s.run)) fail(`a run cell does not show its id as text: ${JSON.stringify(shown.find((s) => s.text !== s.run))}`);
  const kept = planned.filter((id) => keep.has(id));
  if (kept.length) fail(`runs tagged keep in the plan: ${kept.join(', ')}`);
  out.summary = (await page.textContent('#cleanup-summary')).trim();
  const n = planned.length;
  if (!out.summary.startsWith(`${n.toLocaleString('en-US')} run${n === 1 ? '' : 's'} to the trash`)) fail(`the summary line: ${out.summary}`);
  if (await page.isDisabled('#cleanup-go')) fail('"Clean up…" stays disabled after a preview with steps');

  // A rule changed after the preview: no confirming until it is previewed again.
  await page.fill('#cleanup-form input[name=keep_best]', '4');
  if (!(await page.isDisabled('#cleanup-go'))) fail('"Clean up…" stays enabled after a rule changed');
  await page.fill('#cleanup-form input[name=keep_best]', '3');
  if (!(await page.isDisabled('#cleanup-go'))) fail('"Clean up…" enabled again without a new preview');
  await preview();
  if (JSON.stringify((await steps()).map((s) => s.run)) !== JSON.stringify(planned)) fail('the second preview lists other runs');

  // The confirmation, then Cancel: nothing goes.
  await page.click('#cleanup-go');
  await page.waitForSelector('#cleanup-confirm', { state: 'visible', timeout: 5000 }).catch(() => fail('"Clean up…" asks nothing'));
  out.question = (await page.textContent('#cleanup-question')).trim();
  if (!out.question.startsWith(`Move ${n.toLocaleString('en-US')} run${n === 1 ? '' : 's'} to the trash`)) fail(`the confirmation says: ${out.question}`);
  await page.click('#cleanup-cancel');
  await page.waitForSelector('#cleanup-confirm', { state: 'hidden', timeout: 5000 }).catch(() => fail('Cancel leaves the confirmation open'));
  await page.waitForTimeout(300);
  if ((await allRuns()) !== before) fail(`Cancel deleted runs: ${before} before, ${await allRuns()} after`);
  if ((await api('/api/trash')).some((t) => planned.includes(t.run_id))) fail('Cancel moved planned runs to the trash');

  // Confirmed: the same policy carried out.
  await page.click('#cleanup-go');
  await page.waitForSelector('#cleanup-confirm', { state: 'visible', timeout: 5000 });
  await page.click('#cleanup-yes');
  await page.waitForSelector('#cleanup-table tr[data-done]', { timeout: 20000 })
    .catch(async () => fail(`no done list after confirming: ${await page.textContent('#cleanup-summary')} ${await page.textContent('#cleanup-error')}`));
  const done = await steps();
  out.done_summary = (await page.textContent('#cleanup-summary')).trim();
  const skipped = await page.$$eval('#cleanup-table tr[data-done=skipped]', (rows) => rows.map((r) => `${r.dataset.run}: ${r.querySelector('td.skipped')?.textContent}`));
  if (skipped.length) fail(`steps skipped: ${skipped.join('; ')}`);
  if (JSON.stringify(done.map((s) => s.run)) !== JSON.stringify(planned)) fail(`done ${JSON.stringify(done.map((s) => s.run))}, planned ${JSON.stringify(planned)}`);
  if (!(await page.isDisabled('#cleanup-go'))) fail('"Clean up…" stays enabled after cleaning up');

  const trash = new Set((await api('/api/trash')).map((t) => t.run_id));
  for (const id of planned) {
    const left = await list({ q: idTerm(id), limit: 1 });
    if (left.total !== 0) fail(`run ${id} is still listed after the cleanup`);
    if (!trash.has(id)) fail(`run ${id} is not in the trash`);
  }
  const after = await allRuns();
  if (after !== before - n) fail(`${after} runs after trashing ${n} of ${before}`);
  out.runs_after = after;
  const want = `${after.toLocaleString('en-US')} of ${after.toLocaleString('en-US')}`;
  await page.waitForFunction((w) => document.querySelector('#runs-count').textContent.startsWith(w), want, { timeout: 10000 })
    .catch(async () => fail(`#runs-count shows "${await page.textContent('#runs-count')}", not "${want}"`));
  out.runs_count = await page.textContent('#runs-count');
  await page.waitForFunction((ids) => { const b = new Set([...document.querySelectorAll('#trash-table [data-restore]')].map((x) => x.dataset.restore)); return ids.every((id) => b.has(id)); }, planned, { timeout: 10000 })
    .catch(() => fail('the Trash list does not show the trashed runs'));
  out.disk = await page.textContent('#runs-disk');

  const card = await page.$('#history');
  await card.scrollIntoViewIfNeeded();
  await card.screenshot({ path: screenshot });
  out.screenshot = screenshot;
  console.log(JSON.stringify(out));
} catch (err) {
  fail(err.stack || String(err));
} finally {
  await browser.close();
}
