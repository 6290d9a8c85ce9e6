// The report's script: draws a run from the JSON inside this file (no
// network). The helpers above it ($, esc, fmt, pct, dur, reproduceCommand)
// are web/static/util.js, inlined.
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
  ['backend', `${started.backend || '–'} · ${started.device || ''}`],
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
  const max = Math.max(1, ...last.confusion.flatMap((row, t) => row.filter((_, p) => p !== t)));
  const diagMax = Math.max(1, ...last.confusion.map((row, t) => row[t]));
  $('#confusion').innerHTML = '<tr><th></th>' + [...Array(10).keys()].map((k) => `<th>${k}</th>`).join('') + '</tr>' +
    last.confusion.map((row, t) => `<tr><th>${t}</th>` + row.map((n, p) => {
      const a = p === t ? 0.15 + 0.7 * (n / diagMax) : n ? 0.15 + 0.85 * (n / max) : 0;
      return `<td style="background:${p === t ? `rgba(62,207,142,${a})` : `rgba(255,93,93,${a})`}">${n || ''}</td>`;
    }).join('') + '</tr>').join('');
  $('#per-class').innerHTML = '<tr><th>class</th><th>precision</th><th>recall</th><th>F1</th><th>n</th></tr>' +
    last.per_class.map((c) => `<tr><td>${esc(c.class)}</td><td>${fmt(c.precision, 3)}</td><td>${fmt(c.recall, 3)}</td><td>${fmt(c.f1, 3)}</td><td>${esc(c.support)}</td></tr>`).join('');
}
$('#evals').innerHTML = '<tr><th>split</th><th>epoch</th><th>step</th><th>loss</th><th>accuracy</th><th>macro F1</th></tr>' +
  evals.map((e) => `<tr><td>${esc(e.split)}</td><td>${esc(e.epoch)}</td><td>${esc(e.step)}</td><td>${fmt(e.loss)}</td><td>${pct(e.accuracy)}</td><td>${fmt(e.f1_macro)}</td></tr>`).join('');
$('#samples').innerHTML = ((run.samples && run.samples.samples) || []).map((s) =>
  `<div class="sample ${s.label === s.predicted ? 'right' : 'wrong'}" title="test #${esc(s.index)}: label ${esc(s.label)}"><img alt="digit ${esc(s.label)}" src="data:image/png;base64,${esc(s.png_base64)}"><div>${esc(s.predicted)} · ${(100 * s.confidence).toFixed(0)}%</div></div>`).join('');

// ---------- configuration, model, provenance ----------
const show = (v) => (v == null ? '–' : Array.isArray(v) ? v.join(',') : String(v));
$('#config').innerHTML = Object.entries(started.config || {}).map(([k, v]) => `<tr><td>${esc(k)}</td><td>${esc(show(v))}</td></tr>`).join('');
$('#repro').textContent = reproduceCommand(started.config);
const model = started.model;
if (model) {
  $('#model-total').textContent = `${model.total_params.toLocaleString()} parameters`;
  $('#model').innerHTML = '<tr><th>layer</th><th>kind</th><th>output</th><th>params</th></tr>' +
    model.layers.map((l) => `<tr><td>${esc(l.name)}</td><td>${esc(l.kind)}</td><td>${esc(l.output_shape.join('×'))}</td><td>${l.params.toLocaleString()}</td></tr>`).join('');
}
const p = started.provenance;
const prov = p ? [
  ['version', `${p.version}${p.git_commit ? ` (${p.git_commit.slice(0, 12)}${p.git_dirty ? ', uncommitted changes' : ''})` : ''}`],
  ['built with', `Burn ${p.burn_version}${p.features.length ? `, ${p.features.join(', ')}` : ''}`],
  ['host', p.host],
  ['started by', p.command_line.join(' ')],
  ...Object.entries(p.data_sha256 || {}).map(([f, h]) => [f, `SHA-256 ${h}`]),
] : [['provenance', 'not recorded (a run from an older version)']];
$('#provenance').innerHTML = prov.map(([k, v]) => `<dt>${esc(k)}</dt><dd>${esc(v)}</dd>`).join('');
document.body.dataset.ready = 'true';
