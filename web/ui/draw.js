// Canvas drawing of scopes, spectra and sparklines (called from the draw loop only
// when new data arrived; each is one path over at most the canvas width in points).

const INK = "#7fd1b9";
const INK2 = "#e0b050";
const GRID = "rgba(255,255,255,0.12)";

// CSS sizes of the canvases, kept by a ResizeObserver so that drawing never reads
// layout (a read after the frame's DOM writes would force a synchronous layout).
const sizes = new WeakMap();
const observer = typeof ResizeObserver === "undefined" ? null : new ResizeObserver((entries) => {
  for (const e of entries) sizes.set(e.target, [e.contentRect.width, e.contentRect.height]);
});

function cssSize(canvas) {
  let size = sizes.get(canvas);
  if (!size) {
    size = [canvas.clientWidth, canvas.clientHeight];
    sizes.set(canvas, size);
    if (observer) observer.observe(canvas);
  }
  return size;
}

/** Size the canvas backing store to its CSS box (device pixels); its 2D context. */
export function fitCanvas(canvas) {
  const dpr = window.devicePixelRatio || 1;
  const [cw, ch] = cssSize(canvas);
  const w = Math.max(1, Math.round(cw * dpr));
  const hgt = Math.max(1, Math.round(ch * dpr));
  if (canvas.width !== w || canvas.height !== hgt) {
    canvas.width = w;
    canvas.height = hgt;
  }
  const g = canvas.getContext("2d");
  g.setTransform(1, 0, 0, 1, 0, 0);
  g.clearRect(0, 0, w, hgt);
  return g;
}

/** Samples (full scale ±1) as a line, min/max per pixel column. */
export function drawScope(canvas, data) {
  const g = fitCanvas(canvas);
  const w = canvas.width;
  const hh = canvas.height;
  g.strokeStyle = GRID;
  g.beginPath();
  g.moveTo(0, hh / 2);
  g.lineTo(w, hh / 2);
  g.stroke();
  g.strokeStyle = INK;
  g.lineWidth = Math.max(1, w / 400);
  g.beginPath();
  const n = data.length;
  const per = n / w;
  for (let x = 0; x < w; x++) {
    let lo = Infinity;
    let hi = -Infinity;
    const end = Math.min(n, Math.floor((x + 1) * per) + 1);
    for (let i = Math.floor(x * per); i < end; i++) {
      const v = data[i];
      if (v < lo) lo = v;
      if (v > hi) hi = v;
    }
    const y0 = hh / 2 - Math.max(-1, Math.min(1, hi)) * (hh / 2 - 1);
    const y1 = hh / 2 - Math.max(-1, Math.min(1, lo)) * (hh / 2 - 1);
    if (x === 0) g.moveTo(x, y0);
    g.lineTo(x, y0);
    g.lineTo(x, y1);
  }
  g.stroke();
}

/** Magnitudes (linear, bins 0..rate/2) on a log-frequency axis 20 Hz .. rate/2, −100..0 dB. */
export function drawSpectrum(canvas, mags, rate) {
  const g = fitCanvas(canvas);
  const w = canvas.width;
  const hh = canvas.height;
  const bins = mags.length;
  const nyquist = rate / 2;
  const fLo = 20;
  const ratio = Math.log(nyquist / fLo);
  g.fillStyle = "rgba(224,176,80,0.35)";
  g.strokeStyle = INK2;
  g.lineWidth = Math.max(1, w / 400);
  g.beginPath();
  g.moveTo(0, hh);
  for (let x = 0; x < w; x++) {
    const f0 = fLo * Math.exp(ratio * x / w);
    const f1 = fLo * Math.exp(ratio * (x + 1) / w);
    let k0 = Math.floor(f0 / nyquist * (bins - 1));
    const k1 = Math.max(k0 + 1, Math.ceil(f1 / nyquist * (bins - 1)));
    let m = 0;
    for (; k0 < Math.min(k1, bins); k0++) if (mags[k0] > m) m = mags[k0];
    const db = 20 * Math.log10(Math.max(m, 1e-5));
    const y = hh * Math.min(1, Math.max(0, -db / 100));
    g.lineTo(x, y);
  }
  g.lineTo(w, hh);
  g.closePath();
  g.fill();
  g.stroke();
}

/** A sparkline of positive values (log scale between the history's min and max). */
export function drawSparkline(canvas, values) {
  const g = fitCanvas(canvas);
  const w = canvas.width;
  const hh = canvas.height;
  if (values.length < 2) return;
  let lo = Infinity;
  let hi = -Infinity;
  for (const v of values) {
    const l = Math.log10(Math.max(v, 1e-9));
    if (l < lo) lo = l;
    if (l > hi) hi = l;
  }
  if (hi - lo < 0.5) { const mid = (hi + lo) / 2; lo = mid - 0.25; hi = mid + 0.25; }
  g.strokeStyle = "#c89be8";
  g.lineWidth = Math.max(1, w / 300);
  g.beginPath();
  values.forEach((v, i) => {
    const x = (i / (values.length - 1)) * (w - 1);
    const y = hh - 1 - ((Math.log10(Math.max(v, 1e-9)) - lo) / (hi - lo)) * (hh - 2);
    if (i === 0) g.moveTo(x, y);
    else g.lineTo(x, y);
  });
  g.stroke();
}
