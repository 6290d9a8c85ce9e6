// mnist-monitor page: the entry point, which wires the modules together.
// One websocket per viewed run (stream.js), whose events drive every
// panel; the curves (charts.js) drawn at most once per frame from the
// series (series.js, the server's fold); the state the modules share in
// viewed.js, the rest kept by each module.

import { $ } from './util.js';
import { viewed, loadSeriesTable } from './viewed.js';
import { emptySeries } from './series.js';
import { stream, initStream, connect, reconnectTo } from './stream.js';
import { charts, initCharts, smoothing, zoomFetches, xMode } from './charts.js';
import { hwCharts } from './hwcharts.js';
import { initChartFiles } from './chartfiles.js';
import { initPanels } from './panels.js';
import { initForm, loadSchema, loadBackends } from './form.js';
import { compare, initCompare, addCompare, removeCompare, renderComparePanel, overlaySweep } from './compare.js';
import { initManage, showMeta, loadTrash } from './manage.js';
import { initQueue, loadQueue } from './queue.js';
import { hardware, startHardware } from './hardware.js';
import { fleet, startFleet } from './fleet.js';
import { slurm, startSlurm } from './slurm.js';
import { runs, initRuns, renderRuns, reloadRuns } from './runs.js';
import { parallel, initParallel, invalidateColumns, redrawParallel } from './parallel.js';
import { initCleanup } from './prune.js';
import { details } from './details.js';
import { initMarkers } from './markers.js';
import { initSteer } from './steer.js';
import { initFork, forkMarks, chartClicked } from './fork.js';
import { layers, initLayers } from './layers.js';
import { inspect, initInspect } from './inspect.js';
import { diagnosis, initDiagnosis } from './diagnosis.js';

const openRun = (id) => reconnectTo(false, id);

// For the end-to-end tests and the curious: the page's state from the
// console. `view` reads the modules' state (it holds none); `runs`: the
// table's state (known summaries, total, pending query); `parallel`: the
// parallel coordinates' lines and mode.
const view = Object.defineProperties({}, Object.fromEntries(Object.entries({
  follow: () => stream.follow,
  runId: () => viewed.runId,
  ws: () => stream.ws,
  lastSeq: () => stream.lastSeq,
  started: () => stream.started,
  status: () => stream.status,
  last: () => stream.last,
  phase: () => stream.phase,
  alerts: () => stream.alerts,
  series: () => viewed.series,
  evals: () => viewed.evals,
  controls: () => viewed.controls,
  details: () => details.data,
  zoom: () => viewed.zoom,
  zoomFetches,
  compare: () => compare,
}).map(([k, get]) => [k, { get, enumerable: true }])));
// `layers`: the Layers panel's columns and geometry; `inspect`: the
// Inspect panel's answer; `diagnosis`: the newest diagnosed alert.
window.mnistMonitor = { view, charts, hwCharts, hardware, fleet, slurm, runs, parallel, layers, inspect, diagnosis, openRun };

// After each list answer: what depends on the runs (the viewed run's name
// and tags, the trash, the queue, the compare panel, a sweep's overlay).
function runsLoaded() {
  invalidateColumns();
  showMeta();
  loadTrash();
  loadQueue();
  renderComparePanel();
  overlaySweep();
}

initStream();
initSteer();
initFork({ open: openRun });
initLayers();
initInspect();
initDiagnosis({ open: openRun });
// Every chart's control marks, and a click on one for the Fork panel.
initMarkers({ mode: xMode, extra: forkMarks, click: chartClicked });
initPanels();
initForm();
initQueue();
initManage();
initCompare();
initChartFiles();
initRuns({
  viewed: () => viewed.runId,
  compare: () => compare,
  open: openRun,
  toggleCompare: (id, on) => (on ? addCompare(id) : removeCompare(id)),
  loaded: runsLoaded,
});
initParallel({ open: openRun });
// After a cleanup: the runs that went leave the page (overlays, the viewed
// run), then the table, its count and disk line, and the trash anew.
initCleanup({
  cleaned: (trashed) => {
    for (const id of trashed) {
      runs.known.delete(id);
      if (compare.has(id)) removeCompare(id);
    }
    if (trashed.includes(viewed.runId)) reconnectTo(true, null);
    reloadRuns();
    loadTrash();
  },
});
$('#refresh-runs').addEventListener('click', () => reloadRuns());
window.addEventListener('resize', () => { renderRuns(); redrawParallel(); });

loadSchema();
loadBackends();
startHardware();
startFleet();
startSlurm();
// The series (which, their titles) before anything that shows one.
await loadSeriesTable();
initCharts();
viewed.series = emptySeries(viewed.table, smoothing());
reloadRuns();
connect();
