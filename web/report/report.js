// The report's script: draws a run from the JSON inside this file (no
// network). The helpers above it ($, esc, fmt, pct, dur, reproduceCommand,
// the table builders) are web/static/util.js, inlined.
const run = JSON.parse(document.getElementById('run-data').textContent);
const started = run.started || {};
const summary = run.summary || {};
const title = (run.meta && run.meta.name) || run.run_id;

$('#title').textContent = title;
$('#status').textContent = summary.status || '';
$('#status').className = `pill ${summary.status || ''}`;
$('#generated').textContent = `report of run ${run.run_id}, written ${new Date(run.generated_ms).toLocaleString()} by ${run.generator}`;

const finished = run.finished || {};
const headline = [
  ['test accuracy', pct(summary.test_accuracy)],
  ['test macro F1', fmt(summary.test_f1_macro)],
  ['val accuracy', pct(summary.val_accuracy)],
  ['last batch loss', fmt(summary.last_loss)],
  ['epochs', `${summary.epochs_completed ?? '–'} / ${started.config?.epochs ?? '?'}`],
  ['steps', summary.steps ?? '–'],
  ['training time', dur(finished.train_seconds)],
  ['started', summary.started_ms ? new Date(summary.started_ms).toLocaleString() : '–'],
  ['backend', `${started.backend || '–'}${started.device_index != null ? `:${started.device_index}` : ''} · ${started.device || ''}`],
  ['parameters', summary.params != null ? summary.params.toLocaleString() : '–'],
];
$('#headline').innerHTML = headline.map(([k, v]) => `<div><dt>${esc(k)}</dt><dd>${esc(v)}</dd></div>`).join('');
$('#tags').innerHTML = ((run.meta && run.meta.tags) || []).map((t) => `<span class="tag">${esc(t)}</span>`).join('');
$('#notes').textContent = (run.meta && run.meta.notes) || '';
if (summary.error) $('#notes').textContent += ` Error: ${summary.error}`;

// ---------- charts ----------
const METRICS = [['loss', 'Loss'], ['accuracy', 'Accuracy'], ['f1_macro', 'Macro F1'], ['lr', 'Learning rate'], ['images_per_sec', 'Images/s']];
const series = run.series || {};
const steps = series.step || [];
window.reportCharts = {};
for (const [key, name] of METRICS) {
  const el = document.createElement('div');
  $('#charts').appendChild(el);
  const evals = (split) => new Map((run.evals || []).filter((e) => e.split === split).map((e) => [e.step, e[key]]));
  const val = evals('val'), test = evals('test');
  const xs = [...new Set([...steps, ...val.keys(), ...test.keys()])].sort((a, b) => a - b);
  const at = new Map(steps.map((s, i) => [s, i]));
  const col = (arr) => xs.map((x) => (at.has(x) ? arr[at.get(x)] : null));
  const data = [
    xs,
    col(series[key] || []),
    col((series.smoothed && series.smoothed[key]) || []),
    xs.map((x) => (val.has(x) && val.get(x) !== undefined ? val.get(x) : null)),
    xs.map((x) => (test.has(x) && test.get(x) !== undefined ? test.get(x) : null)),
  ];
  window.reportCharts[key] = new uPlot({
    title: name, width: Math.max(300, Math.floor((document.body.clientWidth - 90) / 3)), height: 220,
    series: [
      {},
      { label: 'batch', stroke: 'rgba(74,163,255,0.28)', width: 1, spanGaps: true, points: { show: false } },
      { label: 'smoothed', stroke: '#4aa3ff', width: 2, spanGaps: true, points: { show: false } },
      { label: 'val', stroke: '#f5b041', width: 0, points: { show: true, size: 8, fill: '#f5b041' } },
      { label: 'test', stroke: '#3ecf8e', width: 0, points: { show: true, size: 9, fill: '#3ecf8e' } },
    ],
    scales: { x: { time: false } },
    axes: [{ stroke: '#8a96a3', grid: { stroke: '#232b34' }, label: 'step' }, { stroke: '#8a96a3', grid: { stroke: '#232b34' }, size: 62 }],
    legend: { live: false },
  }, data, el);
}

// ---------- evaluation ----------
const evals = run.evals || [];
const last = evals.filter((e) => e.split === 'test').pop() || evals[evals.length - 1];
if (last) {
  $('#eval-title').textContent = `${last.split} after epoch ${last.epoch}: accuracy ${pct(last.accuracy)}, F1 ${fmt(last.f1_macro)}, loss ${fmt(last.loss)}`;
  $('#confusion').innerHTML = confusionHtml(last.confusion);
  $('#per-class').innerHTML = perClassHtml(last.per_class);
}
$('#evals').innerHTML = '<tr><th>split</th><th>epoch</th><th>step</th><th>loss</th><th>accuracy</th><th>macro F1</th></tr>' +
  evals.map((e) => `<tr><td>${esc(e.split)}</td><td>${esc(e.epoch)}</td><td>${esc(e.step)}</td><td>${fmt(e.loss)}</td><td>${pct(e.accuracy)}</td><td>${fmt(e.f1_macro)}</td></tr>`).join('');
$('#samples').innerHTML = ((run.samples && run.samples.samples) || []).map(sampleHtml).join('');

// ---------- configuration, model, provenance ----------
const show = (v) => (v == null ? '–' : Array.isArray(v) ? v.join(',') : String(v));
$('#config').innerHTML = Object.entries(started.config || {}).map(([k, v]) => `<tr><td>${esc(k)}</td><td>${esc(show(v))}</td></tr>`).join('');
$('#repro').textContent = reproduceCommand(started.config);
const model = started.model;
if (model) {
  $('#model-total').textContent = `${model.total_params.toLocaleString()} parameters`;
  $('#model').innerHTML = modelRowsHtml(model);
}
const p = started.provenance;
const prov = provenanceRows(p);
for (const [file, hash] of Object.entries((p && p.data_sha256) || {})) prov.push([file, `SHA-256 ${hash}`]);
$('#provenance').innerHTML = dlHtml(prov);
document.body.dataset.ready = 'true';
