// The machine over the run: the viewed run's hardware samples (CPU,
// process memory, GPU busy and memory) as charts on the training curves'
// x axis, a sample's time mapped to the step, epoch or time of the batches
// around it.

import { $ } from './util.js';
import { viewed } from './viewed.js';
import { hwPoint, halveHw, tsMapper } from './series.js';
import { scheduleDraw, yTick, xMode, logX, zoomHooks, unzoomOnDblclick } from './charts.js';
import { markerPlugin } from './markers.js';

const HW_METRICS = [
  ['cpu_percent', 'CPU %', 'chart-cpu', (v) => v],
  ['rss_bytes', 'Process memory (GiB)', 'chart-rss', (v) => v / 2 ** 30],
  ['gpu_percent', 'GPU busy % (busiest)', 'chart-gpu', (v) => v],
  ['gpu_memory_bytes', 'GPU memory (GiB)', 'chart-gpumem', (v) => v / 2 ** 30],
];
// A day of samples at most: past it, halved.
const MAX_SAMPLES = 6000;

// metric -> its uPlot chart (the e2e tests read them).
export const hwCharts = {};

// The viewed run's samples ({ts_ms, cpu_percent, rss_bytes, gpu_percent,
// gpu_memory_bytes}, see series.js hwPoint).
let samples = [];

// The samples of a snapshot (the server's, already folded), or none.
export function setHw(list) {
  samples = list;
}

// A live `hardware` event.
export function pushHw(h) {
  samples.push(hwPoint(h));
  if (samples.length > MAX_SAMPLES) samples = halveHw(samples);
  scheduleDraw();
}

export function destroyHwCharts() {
  for (const k of Object.keys(hwCharts)) { hwCharts[k].destroy(); delete hwCharts[k]; }
}

export function drawHardware() {
  const has = (k) => samples.some((p) => p[k] != null);
  $('#hw-charts-title').hidden = !samples.length;
  const mode = xMode(), log = logX();
  const toX = tsMapper(viewed.series, mode);
  for (const [key, title, id, scale] of HW_METRICS) {
    const el = document.getElementById(id);
    el.hidden = !has(key);
    if (el.hidden) continue;
    if (!hwCharts[key]) {
      hwCharts[key] = new uPlot({
        title, width: el.clientWidth || 400, height: 160,
        series: [{}, { label: title, stroke: '#8be9fd', width: 1.5, points: { show: false }, spanGaps: true }],
        scales: { x: { time: mode === 'wall', ...(log && mode !== 'wall' ? { distr: 3 } : {}) } },
        axes: [{ stroke: '#8a96a3', grid: { stroke: '#232b34' } }, { stroke: '#8a96a3', grid: { stroke: '#232b34' }, size: 62, values: (u, s) => s.map(yTick) }],
        legend: { show: false },
        cursor: { drag: { x: true, y: false } },
        hooks: zoomHooks(),
        plugins: [markerPlugin()],
      }, [[], []], el);
      unzoomOnDblclick(el);
    }
    const pts = samples.filter((p) => p[key] != null).map((p) => [toX(p.ts_ms), scale(p[key])]).filter(([x]) => x != null && (!log || x > 0));
    hwCharts[key].setData([pts.map((p) => p[0]), pts.map((p) => p[1])]);
    if (viewed.zoom) hwCharts[key].setScale('x', { min: viewed.zoom[0], max: viewed.zoom[1] });
  }
}
