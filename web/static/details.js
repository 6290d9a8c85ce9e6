// The viewed run's details from the server (GET /api/runs/{id}: its
// configuration, checkpoints, parent, whether this server trains it and
// may resume it) and its forks (GET /api/runs?q=parent:ID), asked when the
// viewed run changes, starts, ends or writes a checkpoint, at most once a
// second (its forks at most every ten seconds: a filter over every run);
// the Steer strip and the Fork panel draw from them.

import { viewed } from './viewed.js';

export const details = Object.seal({
  runId: null,     // the run these are of
  data: null,      // GET /api/runs/{id}'s answer, or null (none yet, or not listed: queued)
  children: [],    // the summaries of the runs forked from it
  loads: 0,        // answers applied (the e2e tests read it)
});

const MIN_GAP_MS = 1000;
const CHILDREN_GAP_MS = 10000;
const listeners = [];
let inFlight = false, again = false, timer = null, lastAt = 0;
let childrenOf = null, childrenAt = 0;

// `fn()` after each answer (and when the viewed run changes).
export function onDetails(fn) {
  listeners.push(fn);
}

function notify() {
  for (const fn of listeners) fn();
}

// Another run on the page: what was known of the old one goes, the new
// one's details are asked now.
export function resetDetails() {
  if (details.runId === viewed.runId) { loadDetails(); return; }
  details.runId = viewed.runId;
  details.data = null;
  details.children = [];
  childrenOf = null;
  notify();
  lastAt = 0;
  loadDetails();
}

// The details again, soon (a burst of checkpoints asks once a second).
export function loadDetails() {
  if (inFlight) { again = true; return; }
  if (timer) return;
  timer = setTimeout(fetchNow, Math.max(0, lastAt + MIN_GAP_MS - Date.now()));
}

async function fetchNow() {
  timer = null;
  const id = viewed.runId;
  if (!id) return;
  inFlight = true;
  lastAt = Date.now();
  let data = null, children = details.runId === id ? details.children : [];
  try {
    const res = await fetch(`/api/runs/${encodeURIComponent(id)}`);
    if (res.ok) data = await res.json();
    if (childrenOf !== id || Date.now() - childrenAt > CHILDREN_GAP_MS) children = await fetchChildren(id);
  } catch (_) { /* the reconnect banner says what's wrong */ }
  inFlight = false;
  if (viewed.runId === id) {
    details.runId = id;
    details.data = data;
    details.children = children;
    details.loads++;
    notify();
  }
  if (again) { again = false; loadDetails(); }
}

// The runs forked from run `id`, oldest first.
async function fetchChildren(id) {
  const term = /[\s"]/.test(id) ? `parent:"${id}"` : `parent:${id}`;
  const q = new URLSearchParams({ q: term, sort: 'started', order: 'asc', limit: 100 });
  const list = await fetch(`/api/runs?${q}`);
  if (!list.ok) return [];
  childrenOf = id;
  childrenAt = Date.now();
  return ((await list.json()).runs || []).filter((r) => r.parent && r.parent.run_id === id);
}
