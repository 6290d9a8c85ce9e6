// The Inspect panel: a digit of the test set (its index, or a click on a
// sample prediction of the Evaluation card) through the viewed run's newest
// checkpoint (GET /api/runs/{id}/inspect), drawn by inspectview.js. A
// digit of your own is drawn on the review page's sandbox, which inspects
// it the same way (the link opens it on the viewed run).

import { $ } from './util.js';
import { viewed } from './viewed.js';
import { onDetails } from './details.js';
import { renderInspect } from './inspectview.js';

// What the panel shows (the e2e tests read it as mnistMonitor.inspect).
export const inspect = Object.seal({
  runId: null,    // the run inspected
  index: null,    // the test image
  answer: null,   // the server's answer
  busy: false,
  shown: 0,       // answers drawn
});

let token = 0;
let pageRun;     // the run the panel was last cleared for

const say = (text, kind = 'error') => {
  const el = $('#inspect-msg');
  el.textContent = text;
  el.className = kind;
};

export async function inspectIndex(index) {
  const id = viewed.runId;
  if (!id) { say('no run on the page'); return; }
  if (!Number.isInteger(index) || index < 0) { say('index: a whole number from 0'); $('#inspect-index').classList.add('invalid'); return; }
  $('#inspect-index').classList.remove('invalid');
  const mine = ++token;
  inspect.busy = true;
  say('inspecting…', 'note');
  let res, body;
  try {
    res = await fetch(`/api/runs/${encodeURIComponent(id)}/inspect?split=test&index=${index}`);
    body = await res.json().catch(() => ({}));
  } catch (err) {
    if (mine === token) { inspect.busy = false; say(`cannot reach the server: ${err.message}`); }
    return;
  }
  if (mine !== token || viewed.runId !== id) return;
  inspect.busy = false;
  if (!res.ok) {
    say(body.error || `the server answered ${res.status}`);
    if ((body.errors || []).some((e) => e.field === 'index')) $('#inspect-index').classList.add('invalid');
    return;
  }
  say('', '');
  inspect.runId = id;
  inspect.index = index;
  inspect.answer = body;
  renderInspect($('#inspect-view'), body, `test #${index}`);
  inspect.shown++;
}

// Another run on the page: the old one's inspection goes.
function runChanged() {
  if (pageRun === viewed.runId) return;
  pageRun = viewed.runId;
  token++;
  inspect.runId = null;
  inspect.answer = null;
  inspect.busy = false;
  $('#inspect-view').innerHTML = '';
  say('', '');
  $('#inspect-draw').href = viewed.runId ? `review.html?run=${encodeURIComponent(viewed.runId)}#pad` : 'review.html';
}

export function initInspect() {
  const go = () => inspectIndex(Number($('#inspect-index').value));
  $('#inspect-go').addEventListener('click', go);
  $('#inspect-index').addEventListener('keydown', (ev) => { if (ev.key === 'Enter') { ev.preventDefault(); go(); } });
  // A sample prediction: open the panel on it.
  $('#samples').addEventListener('click', (ev) => {
    const s = ev.target.closest('.sample[data-index]');
    if (!s) return;
    $('#inspect-panel').open = true;
    $('#inspect-index').value = s.dataset.index;
    inspectIndex(Number(s.dataset.index));
    $('#inspect-card').scrollIntoView({ block: 'start', behavior: 'smooth' });
  });
  onDetails(runChanged);
  runChanged();
}
