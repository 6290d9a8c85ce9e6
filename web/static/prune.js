// The Runs card's "Clean up": a cleanup policy (POST /api/prune, see
// crates/server/src/prune.rs) previewed as a dry run, then carried out after
// a confirmation in the page that says what the preview listed. Changing a
// rule after the preview disables "Clean up…" until the next preview, so
// what is confirmed is always the policy that was previewed.

import { $, esc, bytes } from './util.js';

const FIELDS = ['keep_best', 'metric', 'trash_after_days', 'empty_trash_after_days', 'best_checkpoint_only'];

const st = {
  hooks: null,
  previewed: null,   // {policy, plan} of the last preview, while the inputs still say that policy
  busy: false,
};

const form = () => $('#cleanup-form');
const plural = (n, one, many = one + 's') => `${n.toLocaleString()} ${n === 1 ? one : many}`;

// The policy the inputs say; a field left empty is a rule that is off.
// Numbers are sent as typed: the server says what is wrong with them.
function policyOf(f) {
  const policy = {};
  const num = (name) => {
    const v = f.elements[name].value.trim();
    return v === '' ? undefined : Number(v);
  };
  const k = num('keep_best');
  if (k !== undefined) { policy.keep_best = k; policy.metric = f.elements.metric.value; }
  const t = num('trash_after_days');
  if (t !== undefined) policy.trash_after_days = t;
  const e = num('empty_trash_after_days');
  if (e !== undefined) policy.empty_trash_after_days = e;
  if (f.elements.best_checkpoint_only.checked) policy.best_checkpoint_only = true;
  return policy;
}

// What the page can tell before asking: a field the browser could not read
// as a number (`abc`, `1e`), or a keep count that is not a whole number.
function localErrors(f) {
  const errs = [];
  for (const name of ['keep_best', 'trash_after_days', 'empty_trash_after_days']) {
    const el = f.elements[name];
    if (el.validity.badInput) errs.push({ field: name, message: 'not a number' });
  }
  const k = f.elements.keep_best.value.trim();
  if (k !== '' && !Number.isInteger(Number(k))) errs.push({ field: 'keep_best', message: `must be a whole number (got ${k})` });
  return errs;
}

function clearErrors() {
  const f = form();
  for (const el of f.querySelectorAll('[data-cleanup-error]')) el.textContent = '';
  for (const el of f.querySelectorAll('.invalid')) el.classList.remove('invalid');
  $('#cleanup-error').textContent = '';
}

// A 400's errors next to their fields (red, the field framed); one that
// names no field of the form (`policy`: no rule given, `body`) below the buttons.
function showErrors(errors) {
  const f = form();
  for (const err of errors) {
    const slot = FIELDS.includes(err.field) ? f.querySelector(`[data-cleanup-error="${err.field}"]`) : null;
    const target = slot || $('#cleanup-error');
    target.textContent = target.textContent ? `${target.textContent}; ${err.message}` : err.message;
    if (slot && f.elements[err.field]) f.elements[err.field].classList.add('invalid');
  }
}

// POST /api/prune: the answer, or throws {errors} (a 400) or Error.
// `expect`: the previewed steps; the server does nothing (409) unless its
// plan now is exactly that.
async function prune(policy, dryRun, expect) {
  let res, body;
  try {
    res = await fetch('/api/prune', { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ policy, dry_run: dryRun, expect }) });
    body = await res.json().catch(() => ({}));
  } catch (err) {
    throw { errors: [{ field: null, message: `cannot reach the server: ${err.message || err}` }] };
  }
  if (res.ok) return body;
  throw { errors: body.errors?.length ? body.errors : [{ field: null, message: body.error || `the server answered ${res.status}` }] };
}

// The steps of a plan (or of what was done), to compare two.
const stepsKey = (actions) => actions.map((a) => `${a.action} ${a.run_id}`).join('\n');

const count = (actions, kind) => actions.filter((a) => a.action === kind).length;

// "12 runs to the trash (8.3 MiB), 3.1 MiB freed now", and what frees it.
function summary(plan) {
  const a = plan.actions;
  const trash = count(a, 'trash'), empty = count(a, 'empty_trash'), drops = a.filter((x) => x.action === 'drop_checkpoints');
  const how = [];
  if (empty) how.push(`${plural(empty, 'run')} deleted from the trash`);
  if (drops.length) how.push(`${plural(drops.reduce((n, d) => n + d.epochs.length, 0), 'checkpoint')} of ${plural(drops.length, 'run')} dropped`);
  return `${plural(trash, 'run')} to the trash (${bytes(plan.trash_bytes)}), ${bytes(plan.freed_bytes)} freed now` +
    (how.length ? ` (${how.join(', ')})` : '');
}

// "Move 12 runs to the trash, delete 2 runs from the trash for good and free 3.1 MiB?"
function question(plan) {
  const a = plan.actions;
  const trash = count(a, 'trash'), empty = count(a, 'empty_trash'), drops = a.filter((x) => x.action === 'drop_checkpoints');
  const verbs = [];
  if (trash) verbs.push(`move ${plural(trash, 'run')} to the trash`);
  if (empty) verbs.push(`delete ${plural(empty, 'run')} from the trash for good`);
  if (drops.length) verbs.push(`delete ${plural(drops.reduce((n, d) => n + d.epochs.length, 0), 'checkpoint')} of ${plural(drops.length, 'completed run')} (each keeps its best)`);
  if (plan.freed_bytes) verbs.push(`free ${bytes(plan.freed_bytes)}`);
  const text = verbs.length > 1 ? `${verbs.slice(0, -1).join(', ')} and ${verbs[verbs.length - 1]}` : verbs[0];
  return text[0].toUpperCase() + text.slice(1) + '?';
}

const ACTION = { trash: 'to the trash', empty_trash: 'delete for good', drop_checkpoints: 'drop checkpoints' };

function why(a, policy) {
  if (a.action === 'trash') return a.reason || '';
  if (a.action === 'empty_trash') return `in the trash more than ${policy.empty_trash_after_days} days`;
  if (a.action === 'drop_checkpoints') return `epoch${a.epochs.length === 1 ? '' : 's'} ${a.epochs.join(', ')}; keeps epoch ${a.kept}, its best`;
  return a.reason || '';
}

// The steps (a preview), or what became of each (`done`: the answer's list).
function showSteps(actions, policy, done) {
  const table = $('#cleanup-table');
  $('#cleanup-steps').classList.remove('stale');
  $('#cleanup-steps').hidden = !actions.length;
  if (!actions.length) { table.innerHTML = ''; return; }
  table.innerHTML = `<tr><th>action</th><th>run</th><th>why</th><th>size</th>${done ? '<th>done</th>' : ''}</tr>` +
    actions.map((a) => {
      const outcome = !done ? '' : a.skipped == null
        ? '<td class="ok">done</td>'
        : `<td class="skipped" title="${esc(a.skipped)}">skipped: ${esc(a.skipped)}</td>`;
      return `<tr data-step="${esc(a.action)}" data-run="${esc(a.run_id)}"${done ? ` data-done="${a.skipped == null ? 'done' : 'skipped'}"` : ''}>` +
        `<td>${esc(ACTION[a.action] || a.action)}</td><td class="run">${esc(a.run_id)}</td>` +
        `<td class="why" title="${esc(why(a, policy))}">${esc(why(a, policy))}</td><td>${esc(bytes(a.bytes))}</td>${outcome}</tr>`;
    }).join('');
}

function setSummary(text, cls = '') {
  const el = $('#cleanup-summary');
  el.textContent = text;
  el.className = cls;
  el.hidden = !text;
}

function refreshButtons() {
  const ready = !!st.previewed && st.previewed.plan.actions.length > 0;
  $('#cleanup-go').disabled = st.busy || !ready;
  $('#cleanup-preview').disabled = st.busy;
  $('#cleanup-yes').disabled = st.busy;
  $('#cleanup-cancel').disabled = st.busy;
}

function hideConfirm() {
  $('#cleanup-confirm').hidden = true;
}

// The rules changed: the preview no longer says what they would do.
function invalidate() {
  if (!st.previewed && $('#cleanup-confirm').hidden) return;
  st.previewed = null;
  hideConfirm();
  if (!$('#cleanup-summary').hidden && !$('#cleanup-summary').classList.contains('done')) {
    setSummary('The rules changed: preview again to see what they let go.', 'stale');
    $('#cleanup-steps').classList.add('stale');
  }
  refreshButtons();
}

async function preview() {
  const f = form();
  clearErrors();
  hideConfirm();
  st.previewed = null;
  const local = localErrors(f);
  if (local.length) { showErrors(local); refreshButtons(); return; }
  const policy = policyOf(f);
  if (!Object.keys(policy).length) {
    showErrors([{ field: null, message: 'Nothing to do: give at least one rule (a number, or tick the checkpoint box).' }]);
    showSteps([], policy, false);
    setSummary('');
    refreshButtons();
    return;
  }
  st.busy = true;
  refreshButtons();
  try {
    const out = await prune(policy, true);
    st.previewed = { policy, plan: out.plan };
    showSteps(out.plan.actions, policy, false);
    setSummary(out.plan.actions.length ? summary(out.plan) : 'Nothing to clean up: no run matches these rules.');
  } catch (err) {
    showErrors(err.errors || [{ field: null, message: String(err) }]);
    showSteps([], policy, false);
    setSummary('');
  } finally {
    st.busy = false;
    refreshButtons();
  }
}

function askConfirm() {
  if (!st.previewed?.plan.actions.length) return;
  const plan = st.previewed.plan;
  $('#cleanup-question').textContent = question(plan);
  $('#cleanup-note').textContent = count(plan.actions, 'trash') ? 'Trashed runs can be restored until the trash is emptied.' : 'This cannot be undone.';
  $('#cleanup-confirm').hidden = false;
  $('#cleanup-yes').focus();
}

async function cleanUp() {
  const shown = st.previewed;
  if (!shown) return;
  hideConfirm();
  clearErrors();
  st.busy = true;
  refreshButtons();
  let out;
  try {
    // The server plans again when it carries out a policy: first make sure
    // that plan is still the one confirmed; if not, show the new one instead.
    const now = await prune(shown.policy, true);
    if (stepsKey(now.plan.actions) !== stepsKey(shown.plan.actions)) {
      st.previewed = { policy: shown.policy, plan: now.plan };
      st.busy = false;
      refreshButtons();
      showSteps(now.plan.actions, shown.policy, false);
      setSummary(now.plan.actions.length
        ? `The runs changed since the preview, nothing was done: ${summary(now.plan)}. Press "Clean up…" again to confirm this plan.`
        : 'The runs changed since the preview, nothing was done: nothing is left to clean up.', 'stale');
      return;
    }
    out = await prune(shown.policy, false, shown.plan.actions);
  } catch (err) {
    showErrors(err.errors || [{ field: null, message: String(err) }]);
    st.busy = false;
    refreshButtons();
    return;
  }
  // What was done is not a preview: a new one is needed before the next.
  st.previewed = null;
  st.busy = false;
  refreshButtons();
  const done = out.done || [];
  showSteps(done, shown.policy, true);
  const ok = done.filter((d) => d.skipped == null);
  const skipped = done.length - ok.length;
  const trashed = ok.filter((d) => d.action === 'trash');
  const freed = ok.filter((d) => d.action !== 'trash').reduce((n, d) => n + d.bytes, 0);
  // Runs that changed in the moment between the check and the cleanup: say so.
  const changed = stepsKey(done) !== stepsKey(shown.plan.actions) ? ' The runs changed since the preview: the list below is what the server did.' : '';
  setSummary(`Done: ${plural(trashed.length, 'run')} moved to the trash (${bytes(trashed.reduce((n, d) => n + d.bytes, 0))}), ${bytes(freed)} freed` +
    (skipped ? `; ${plural(skipped, 'step')} skipped (see why below).` : '.') + changed, skipped || changed ? 'done partly' : 'done');
  st.hooks.cleaned(trashed.map((d) => d.run_id));
}

// hooks: cleaned(trashedIds) after a cleanup (reload the table, the trash
// and the disk line; let go of the runs that went).
export function initCleanup(hooks) {
  st.hooks = hooks;
  const f = form();
  f.addEventListener('submit', (ev) => { ev.preventDefault(); preview(); });
  const edited = (ev) => {
    // An edited field's error goes with the value that caused it.
    const name = ev.target.name;
    if (name && ev.target.classList.contains('invalid')) {
      ev.target.classList.remove('invalid');
      const slot = f.querySelector(`[data-cleanup-error="${name}"]`);
      if (slot) slot.textContent = '';
    }
    invalidate();
  };
  f.addEventListener('input', edited);
  f.addEventListener('change', edited);
  $('#cleanup-go').addEventListener('click', askConfirm);
  $('#cleanup-cancel').addEventListener('click', () => { hideConfirm(); $('#cleanup-go').focus(); });
  $('#cleanup-yes').addEventListener('click', cleanUp);
  $('#cleanup-confirm').addEventListener('keydown', (ev) => { if (ev.key === 'Escape') { hideConfirm(); $('#cleanup-go').focus(); } });
  refreshButtons();
}
