// An inspection of one digit (GET or POST /api/runs/{id}/inspect) drawn
// into an element: the input, the saliency (alone and over the input),
// the prediction with every class's probability, conv1's filters and each
// conv layer's feature maps as a grid of tiles, pixels kept square
// (image-rendering: pixelated). The main page's Inspect panel and the
// review page's sandbox both draw with it.

import { esc } from './util.js';
import { overlayPixels, tileScale, fmtVal } from './layerlib.js';

const png = (b64) => `data:image/png;base64,${b64}`;

// `what`: where the digit came from ("test #12", "your drawing").
export function renderInspect(el, a, what) {
  const pred = a.predicted, hasLabel = a.label != null;
  const verdict = hasLabel ? (a.label === pred ? 'right' : 'wrong') : '';
  const bars = a.probs.map((p, d) => `<div class="bar${d === pred ? ' top' : ''}${hasLabel && d === a.label ? ' label' : ''}"><span>${d}</span>`
    + `<div><div class="fill" style="width:${(100 * p).toFixed(1)}%"></div></div><span>${(100 * p).toFixed(1)}%</span></div>`).join('');
  const filters = (a.filters || []).map((f, i) => `<img src="${png(esc(f))}" alt="filter ${i}" title="conv1 filter ${i}">`).join('');
  el.innerHTML = `<p class="insp-meta muted">${esc(what)} · run ${esc(a.run_id)}, checkpoint of epoch ${esc(a.epoch)} (step ${Number(a.step).toLocaleString()}) · ${Number(a.ms).toFixed(1)} ms</p>`
    + '<div class="insp-top">'
    + `<figure><img class="insp-img insp-input" src="${png(esc(a.input_png))}" alt="the 28×28 input"><figcaption>input${hasLabel ? ` · label ${esc(a.label)}` : ''}</figcaption></figure>`
    + `<figure><img class="insp-img insp-saliency" src="${png(esc(a.saliency_png))}" alt="saliency"><figcaption title="|∂ score / ∂ pixel|, scaled to its max (${fmtVal(a.saliency_max)})">saliency · white matters most</figcaption></figure>`
    + '<figure><canvas class="insp-img insp-overlay" width="28" height="28" aria-label="saliency over the input"></canvas><figcaption>saliency over the input</figcaption></figure>'
    + `<div class="insp-pred"><div class="insp-answer ${verdict}"><span class="big">${esc(pred)}</span> <span class="muted">${(100 * a.probs[pred]).toFixed(1)}%${verdict === 'wrong' ? ` · label ${esc(a.label)}` : verdict ? ' · right' : ''}</span></div><div class="insp-bars">${bars}</div></div>`
    + `<div class="insp-filters"><h3>conv1's filters <span class="muted">3×3 · grey 0, light +, dark −</span></h3><div class="tiles filters">${filters}</div></div>`
    + '</div>'
    + a.layers.map((l) => {
      const [c, h, w] = l.shape, side = tileScale(h) * h, sideW = tileScale(h) * w;
      const dead = l.max.filter((m) => !(m > 0)).length;
      const tiles = l.tiles.map((t, i) => `<img src="${png(esc(t))}" style="width:${sideW}px;height:${side}px" class="${l.max[i] > 0 ? '' : 'dead'}" alt="${esc(l.layer)} channel ${i}" title="${esc(l.layer)} channel ${i} · max ${fmtVal(l.max[i])}${l.max[i] > 0 ? '' : ' (all zero)'}">`).join('');
      return `<div class="insp-layer" data-layer="${esc(l.layer)}"><h3>${esc(l.layer)} <span class="muted">${c} channels of ${h}×${w} after ReLU · each tile scaled to its own max${dead ? ` · ${dead} all zero` : ''}</span></h3><div class="tiles grid" style="grid-template-columns:repeat(${Math.min(16, c)}, ${sideW + 2}px)">${tiles}</div></div>`;
    }).join('');
  drawOverlay(el.querySelector('.insp-overlay'), png(a.input_png), png(a.saliency_png));
}

const loaded = (src) => new Promise((ok, bad) => { const i = new Image(); i.onload = () => ok(i); i.onerror = bad; i.src = src; });

// The saliency over the input on a 28×28 canvas (scaled up by CSS).
async function drawOverlay(canvas, input, saliency) {
  let a, b;
  try { [a, b] = await Promise.all([loaded(input), loaded(saliency)]); } catch (_) { return; }
  const read = (img) => {
    const c = document.createElement('canvas');
    c.width = 28; c.height = 28;
    const x = c.getContext('2d');
    x.drawImage(img, 0, 0, 28, 28);
    return x.getImageData(0, 0, 28, 28).data;
  };
  const ctx = canvas.getContext('2d');
  const out = ctx.createImageData(28, 28);
  out.data.set(overlayPixels(read(a), read(b)));
  ctx.putImageData(out, 0, 0);
  canvas.dataset.drawn = '1';
}
