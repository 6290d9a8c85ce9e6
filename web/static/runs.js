// The runs table: filtered and sorted by the server (GET /api/runs?q=&sort=
// &order=&offset=&limit=), fetched in blocks as it scrolls, and virtualised:
// only the rows in view (and a margin) are in the DOM, between two spacer
// rows that give the scroll box the height of every matching run. Every
// summary fetched is kept by id in `runs.known`, for the rest of the page
// (labels, the compare panel, the run's name and tags). By default in
// lineage order (`sort=tree`): each run followed by its forks, indented by
// their depth.

import { $, esc, fmt, pct, bytes } from './util.js';
import { treePrefix, parentText } from './steerlib.js';

const BLOCK = 200;      // rows per fetch
const MARGIN = 25;      // rows drawn above and below the visible ones
const RELOAD_MS = 500;  // a burst of `runs_changed` reloads at most twice a second

// `cuda:1` for a run on a device with an index, else its backend (`cpu`).
export const ranOn = (r) => (r.device_index != null ? `${r.backend}:${r.device_index}` : r.backend);

const num = (v, d = 4) => (v == null ? '–' : fmt(v, d));
// The table's columns: header (its data-sort name), the server's sort key,
// how to read the value from a summary, how to show it.
const RUN_COLUMNS = [
  ['status', 'status', (r) => r.status],
  ['kernels', 'kernels', (r) => (r.config?.kernels || []).join(',')],
  ['opt', 'opt', (r) => r.config?.optimizer],
  ['lr', 'lr', (r) => r.config?.lr, (v) => (v == null ? '–' : String(v))],
  ['batch', 'batch', (r) => r.config?.batch_size],
  ['epochs', 'epochs_done', (r) => r.epochs_completed, (v, r) => `${v}/${r.config?.epochs ?? '?'}`],
  ['backend', 'ran_on', (r) => (r.backend == null ? null : ranOn(r))],
  ['params', 'params', (r) => r.params, (v) => (v == null ? '–' : v.toLocaleString())],
  ['loss', 'loss', (r) => r.last_loss, (v) => num(v)],
  ['acc', 'acc', (r) => r.test_accuracy ?? r.val_accuracy, (v) => pct(v)],
  ['F1', 'f1', (r) => r.test_f1_macro, (v) => num(v, 3)],
  ['started', 'started', (r) => r.started_ms, (v) => (v ? new Date(v).toLocaleString() : '–')],
];
const SORT_KEY = Object.fromEntries([['run', 'id'], ...RUN_COLUMNS.map(([name, key]) => [name, key])]);
const NCOLS = RUN_COLUMNS.length + 1;

// What the rest of the page (and the tests) read.
export const runs = {
  known: new Map(),     // run_id -> the latest summary fetched
  total: 0,             // runs matching the shown query
  all: 0,               // runs in the folder
  indexing: null,       // {done, total} while the server indexes the logs
  disk: null,           // {run_bytes, checkpoint_bytes}
  pending: false,       // a query (filter, sort) asked and not shown yet
  error: null,          // the filter's error, if the last query was refused
  loads: 0,             // list requests made (the e2e tests read it)
  sort: { col: 'started', dir: -1 },
  tree: true,           // lineage order (roots by start time, as `sort` says)
};

const st = {
  hooks: null,
  asked: 0,        // the last replacing load asked …
  shownAsk: 0,     // … and the newest one shown: older answers are dropped
  shown: null,     // {key, q, sort, order, blocks: Map(index -> rows), filling: Set}
  rowH: 25,        // measured from the first row drawn
  window: '',      // the rows last drawn, to skip redrawing the same
  filterTimer: null,
  reloadTimer: null,
  lastReload: 0,
  indexTimer: null,
};

const box = () => $('#runs-scroll');
const want = () => ({ q: $('#runs-filter').value.trim(), sort: runs.tree ? 'tree' : SORT_KEY[runs.sort.col] || 'started', order: runs.sort.dir > 0 ? 'asc' : 'desc' });
const keyOf = (p) => JSON.stringify([p.q, p.sort, p.order]);
const listUrl = (p, offset, limit) => `/api/runs?${new URLSearchParams({ q: p.q, sort: p.sort, order: p.order, offset, limit })}`;
export const queryParams = (p = st.shown || want()) => new URLSearchParams({ q: p.q, sort: p.sort, order: p.order });

function remember(list) {
  for (const r of list) runs.known.set(r.run_id, r);
}

// A replacing load: the query the inputs say (a new filter or sort: from
// the top; the same query again: the block in view), shown unless a newer
// one was shown first; the other cached blocks are dropped.
async function load() {
  const p = want();
  const k = keyOf(p);
  const same = st.shown && st.shown.key === k;
  let offset = 0, limit = BLOCK;
  if (same) {
    const [first, last] = visibleRange();
    offset = Math.floor(first / BLOCK) * BLOCK;
    limit = Math.max(BLOCK, Math.ceil((last + 1) / BLOCK) * BLOCK - offset);
  }
  const ask = ++st.asked;
  runs.loads++;
  let res, body;
  try {
    res = await fetch(listUrl(p, offset, limit));
    body = await res.json();
  } catch (_) {
    if (ask === st.asked) runs.pending = false;
    return;
  }
  if (ask < st.shownAsk) return;
  if (!res.ok) {
    // A filter the server does not understand: say why, keep the last good rows.
    if (ask !== st.asked) return;
    runs.pending = false;
    const err = (body.errors || []).find((e) => e.field === 'q') || (body.errors || [])[0];
    showError(err ? err.message : body.error || `the server answered ${res.status}`);
    return;
  }
  st.shownAsk = ask;
  if (ask === st.asked) runs.pending = false;
  showError(null);
  const blocks = new Map();
  for (let i = 0; i * BLOCK < body.runs.length; i++) blocks.set(offset / BLOCK + i, body.runs.slice(i * BLOCK, (i + 1) * BLOCK));
  st.shown = { key: k, ...p, blocks, filling: new Set() };
  counts(body);
  remember(body.runs);
  if (!same) box().scrollTop = 0;
  renderHead();
  renderRuns();
  st.hooks.loaded({ queryChanged: !same });
  // While the server indexes the logs, the list grows: ask again.
  clearTimeout(st.indexTimer);
  if (body.indexing) st.indexTimer = setTimeout(reloadRuns, 1000);
}

function counts(body) {
  runs.total = body.total;
  runs.all = body.all;
  runs.indexing = body.indexing;
  runs.disk = body.disk;
  const ix = body.indexing ? ` · indexing ${body.indexing.done.toLocaleString()}/${body.indexing.total.toLocaleString()}` : '';
  $('#runs-count').textContent = `${body.total.toLocaleString()} of ${body.all.toLocaleString()}${ix}`;
  const d = body.disk;
  $('#runs-disk').textContent = d ? `on disk: runs ${bytes(d.run_bytes)} · checkpoints ${bytes(d.checkpoint_bytes)}` : '';
}

function showError(msg) {
  runs.error = msg;
  $('#runs-error').textContent = msg || '';
  $('#runs-filter').classList.toggle('invalid', !!msg);
}

// A block of the shown query that scrolled into view.
async function fill(s, b) {
  s.filling.add(b);
  let body;
  try {
    const res = await fetch(listUrl(s, b * BLOCK, BLOCK));
    if (!res.ok) throw new Error(String(res.status));
    body = await res.json();
  } catch (_) {
    setTimeout(() => s.filling.delete(b), 1000);   // tried again on a later scroll
    return;
  }
  if (st.shown !== s) return;    // a newer query or reload replaced it
  s.filling.delete(b);
  s.blocks.set(b, body.runs);
  remember(body.runs);
  if (body.total !== runs.total) { counts(body); scheduleReload(); }
  st.window = '';
  renderRuns();
}

// [first, last] row indices in view, with the margin.
function visibleRange() {
  const el = box();
  const headH = el.querySelector('thead')?.offsetHeight || 0;
  const top = Math.max(0, el.scrollTop - headH);
  const height = Math.max(el.clientHeight, 360);
  const first = Math.max(0, Math.floor(top / st.rowH) - MARGIN);
  const last = Math.min(runs.total - 1, Math.ceil((top + height) / st.rowH) + MARGIN);
  return [first, Math.max(first - 1, last)];
}

function renderHead() {
  const head = [['run', null], ...RUN_COLUMNS].map(([name]) => {
    const arrow = runs.sort.col === name ? (runs.sort.dir > 0 ? ' ▲' : ' ▼') : '';
    return `<th data-sort="${name}">${name}${arrow}</th>`;
  }).join('');
  $('#runs-table thead').innerHTML = `<tr>${head}</tr>`;
}

function rowHtml(r) {
  const h = st.hooks;
  const sel = r.run_id === h.viewed() ? ' class="selected"' : '';
  const c = h.compare().get(r.run_id);
  const id = esc(r.run_id);
  const title = r.name ? `${esc(r.name)} <span class="muted">${id}</span>` : id;
  const tags = (r.tags || []).map((t) => `<span class="tag">${esc(t)}</span>`).join('');
  const swatch = c ? `<span class="swatch" style="background:${esc(c.color)}"></span>` : '';
  const cells = RUN_COLUMNS.map(([, , get, show]) => { const v = get(r); return `<td>${esc(show ? show(v, r) : (v ?? '–'))}</td>`; });
  const tip = esc([r.name, r.run_id, ...(r.tags || []), r.parent && parentText(r.parent)].filter(Boolean).join(' · '));
  // In the lineage tree a fork sits under its parent, indented.
  const t = treePrefix(r.depth || 0);
  const indent = t.glyph ? `<span class="tree" style="padding-left:${t.pad}px">${t.glyph}</span>` : '';
  const depth = r.depth ? ` data-depth="${r.depth}"` : '';
  return `<tr${sel} data-run="${id}"${depth}><td title="${tip}">${indent}<input type="checkbox" data-compare="${id}" title="overlay this run's curves"${c ? ' checked' : ''}>${swatch} ${title} ${tags}</td>${cells.join('')}</tr>`;
}

const spacer = (h) => (h > 0 ? `<tr class="spacer" style="height:${h}px"><td colspan="${NCOLS}"></td></tr>` : '');

// The rows in view from the cached blocks (a placeholder for those not
// fetched yet, which are asked for), between the spacers.
export function renderRuns(force = true) {
  const s = st.shown;
  const tbody = $('#runs-table tbody');
  if (!s) return;
  const [first, last] = visibleRange();
  const win = `${first}:${last}:${runs.total}`;
  if (!force && win === st.window) return;
  st.window = win;
  let html = spacer(first * st.rowH);
  const missing = new Set();
  for (let i = first; i <= last; i++) {
    const b = Math.floor(i / BLOCK);
    const r = s.blocks.get(b)?.[i - b * BLOCK];
    if (r) html += rowHtml(r);
    else {
      html += `<tr class="placeholder"><td colspan="${NCOLS}" class="muted">…</td></tr>`;
      if (!s.blocks.has(b)) missing.add(b);
    }
  }
  html += spacer((runs.total - 1 - last) * st.rowH);
  tbody.innerHTML = html || `<tr class="empty"><td colspan="${NCOLS}" class="muted">${runs.all ? 'no run matches the filter' : 'no runs yet'}</td></tr>`;
  for (const b of missing) if (!s.filling.has(b)) fill(s, b);
  // The rows' height, measured once (fonts, zoom): the spacers use it.
  const row = tbody.querySelector('tr[data-run]');
  if (row) {
    const h = row.getBoundingClientRect().height;
    if (h > 4 && Math.abs(h - st.rowH) > 0.5) { st.rowH = h; st.window = ''; requestAnimationFrame(() => renderRuns()); }
  }
}

// The shown query's blocks again (the runs changed: a new run, a rename, a
// deletion): at once, then at most twice a second through a burst.
export function reloadRuns() {
  clearTimeout(st.reloadTimer);
  st.reloadTimer = null;
  st.lastReload = Date.now();
  return load();
}

export function scheduleReload() {
  if (st.reloadTimer) return;
  const wait = Math.max(0, st.lastReload + RELOAD_MS - Date.now());
  st.reloadTimer = setTimeout(reloadRuns, wait);
}

// Puts `text` in the filter and asks for it now (a sweep's runs).
export function setFilter(text) {
  $('#runs-filter').value = text;
  clearTimeout(st.filterTimer);
  runs.pending = true;
  return reloadRuns();
}

export const shownQuery = () => (st.shown ? st.shown.q : want().q);

// The first `n` runs of the shown query and sort.
export async function firstRuns(n) {
  const s = st.shown;
  if (!s) return [];
  const b0 = s.blocks.get(0);
  if (b0 && (b0.length >= n || b0.length >= runs.total)) return b0.slice(0, n);
  try {
    const body = await (await fetch(listUrl(s, 0, n))).json();
    remember(body.runs);
    return body.runs;
  } catch (_) { return []; }
}

// A run's summary, from the server when no block held it yet.
const asking = new Map();
export function fetchRun(id) {
  if (asking.has(id)) return asking.get(id);
  // `id:ID`, quoted when it holds spaces; an id with a `"` cannot be
  // written as one term: its longest part without either, `id:~PART`.
  const part = id.split(/[\s"]+/).reduce((a, b) => (b.length > a.length ? b : a), '');
  const q = !/[\s"]/.test(id) ? `id:${id}` : !id.includes('"') ? `id:"${id}"` : `id:~${part}`;
  const p = (async () => {
    try {
      const body = await (await fetch(`/api/runs?${new URLSearchParams({ q, limit: id.includes('"') ? 100 : 1 })}`)).json();
      const r = (body.runs || []).find((x) => x.run_id === id) || null;
      if (r) runs.known.set(id, r);
      return r;
    } catch (_) { return null; } finally { asking.delete(id); }
  })();
  asking.set(id, p);
  return p;
}

// hooks: viewed() the viewed run's id, compare() the Map of overlaid runs,
// open(id), toggleCompare(id, on), loaded({queryChanged}) after rows arrive.
export function initRuns(hooks) {
  st.hooks = hooks;
  $('#runs-table').innerHTML = '<thead></thead><tbody></tbody>';
  renderHead();
  let queued = false;
  box().addEventListener('scroll', () => {
    if (queued) return;
    queued = true;
    requestAnimationFrame(() => { queued = false; renderRuns(false); });
  }, { passive: true });
  $('#runs-table').addEventListener('click', (ev) => {
    const check = ev.target.closest('[data-compare]');
    if (check) { hooks.toggleCompare(check.dataset.compare, check.checked); return; }
    const th = ev.target.closest('th[data-sort]');
    if (th) {
      const col = th.dataset.sort;
      runs.sort = runs.sort.col === col ? { col, dir: -runs.sort.dir } : { col, dir: 1 };
      // Another column than the start time leaves the lineage order.
      if (col !== 'started') { runs.tree = false; $('#runs-tree').checked = false; }
      runs.pending = true;
      renderHead();
      reloadRuns();
      return;
    }
    const row = ev.target.closest('tr[data-run]');
    if (row) hooks.open(row.dataset.run);
  });
  $('#runs-tree').addEventListener('change', (ev) => {
    runs.tree = ev.target.checked;
    if (runs.tree) runs.sort = { col: 'started', dir: -1 };
    runs.pending = true;
    renderHead();
    reloadRuns();
  });
  // Typing asks the server once the keys rest.
  $('#runs-filter').addEventListener('input', () => {
    runs.pending = true;
    clearTimeout(st.filterTimer);
    st.filterTimer = setTimeout(reloadRuns, 150);
  });
}
