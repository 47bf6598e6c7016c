// The weights of one agent as a multislider: one bar per weight, live (~3 Hz pushes of
// `watch_weights`, only while the panel is open), drawn on a canvas and draggable.
//
// Dragging paints values into a draft (bars between two pointer positions are filled
// in, so a fast stroke leaves no gaps) and sends the whole vector with `set_weights`
// at most 10 times a second, plus once on release. The agent goes on learning from
// the written weights unless its learn control is off (freeze).

import { h, throttle } from "../util.js";
import { fitCanvas } from "./draw.js";

const NICE = [0.1, 0.2, 0.5, 1, 2, 5, 10, 20, 50, 100, 200, 500, 1000];
/** How long (ms) the draft stays on screen after release (until the pushes catch up). */
const HOLD_MS = 800;

/** The display range ±R: the smallest "nice" R holding every |w|. */
export function niceRange(weights) {
  let m = 0;
  for (const w of weights) if (Math.abs(w) > m) m = Math.abs(w);
  return NICE.find((r) => r >= m) ?? m;
}

export class WeightsPanel {
  constructor(id, ctx) {
    this.id = id;
    this.ctx = ctx;
    this.canvas = h("canvas", { class: "weights", testid: `weights-${id}`,
                                title: "weights: drag to draw new values", dataset: { range: "1", count: "0" } });
    this.info = h("span", { class: "weights-info" });
    this.summary = h("summary", { testid: `weights-toggle-${id}` }, "Weights ", this.info);
    this.el = h("details", { class: "weights-panel", testid: `weights-panel-${id}` }, this.summary, this.canvas);
    this.live = null;        // latest pushed weights
    this.draft = null;       // the user's drawing while dragging / just after
    this.heldUntil = 0;
    this.range = 1;
    this.dirty = true;
    this.lastIndex = -1;
    this.online = false;
    this.sendThrottled = throttle((weights) => this.send(weights), 100);
    this.el.addEventListener("toggle", () => {
      this.ctx.watchWeights(this.id, this.el.open);
      if (this.el.open) {
        this.dirty = true;
        if (!this.live) this.fetchOnce();
      }
    });
    this.canvas.addEventListener("pointerdown", (ev) => this.down(ev));
    this.canvas.addEventListener("pointermove", (ev) => this.move(ev));
    this.canvas.addEventListener("pointerup", (ev) => this.up(ev));
    this.canvas.addEventListener("pointercancel", (ev) => this.up(ev));
    this.canvas.style.touchAction = "none";
  }

  async fetchOnce() {
    try {
      const r = await fetch(`/api/agents/${encodeURIComponent(this.id)}/weights`);
      if (r.ok && !this.live) {
        this.ctx.dispatch({ type: "weights", agent: this.id, weights: (await r.json()).weights, t: Date.now() / 1000 });
      }
    } catch { /* the pushes will come */ }
  }

  close() {
    if (this.el.open) this.ctx.watchWeights(this.id, false);
  }

  async send(weights) {
    try {
      await this.ctx.request("set_weights", { agent: this.id, weights });
      this.info.textContent = this.info.textContent.replace(/ · .*$/, "");
    } catch (err) {
      this.info.textContent = `${this.live ? this.live.length : 0} · ${err.message}`;
    }
  }

  update(state, online) {
    this.online = online;
    const w = state.weights[this.id];
    if (w && w.weights !== this.live) {
      this.live = w.weights;
      this.dirty = true;
      this.info.textContent = `${this.live.length}`;
    }
  }

  shown() {
    if (this.draft && (this.dragging || performance.now() < this.heldUntil)) return this.draft;
    this.draft = null;
    return this.live;
  }

  position(ev) {
    const rect = this.canvas.getBoundingClientRect();
    const n = this.draft.length;
    const x = Math.min(Math.max(ev.clientX - rect.left, 0), rect.width - 1e-6);
    const y = Math.min(Math.max(ev.clientY - rect.top, 0), rect.height);
    const index = Math.floor((x / rect.width) * n);
    const value = (0.5 - y / rect.height) * 2 * this.range;
    return [index, value];
  }

  down(ev) {
    if (!this.live || !this.live.length || !this.online) return;
    this.canvas.setPointerCapture(ev.pointerId);
    this.dragging = true;
    this.draft = this.live.slice();
    this.lastIndex = -1;
    this.move(ev);
  }

  move(ev) {
    if (!this.dragging) return;
    const [index, value] = this.position(ev);
    if (this.lastIndex >= 0 && this.lastIndex !== index) {
      // Fill the bars the pointer skipped, on a straight line between the two points.
      const from = this.lastIndex;
      const v0 = this.draft[from];
      const step = index > from ? 1 : -1;
      for (let i = from + step; i !== index; i += step) {
        this.draft[i] = v0 + ((i - from) / (index - from)) * (value - v0);
      }
    }
    this.draft[index] = value;
    this.lastIndex = index;
    this.dirty = true;
    this.sendThrottled(this.draft.slice());
  }

  up(ev) {
    if (!this.dragging) return;
    this.dragging = false;
    if (this.canvas.hasPointerCapture(ev.pointerId)) this.canvas.releasePointerCapture(ev.pointerId);
    this.sendThrottled.flush();
    this.heldUntil = performance.now() + HOLD_MS;
  }

  draw() {
    if (!this.el.open) return;
    const weights = this.shown();
    if (!weights) return;
    if (!this.dirty && !(this.draft === null && this.heldUntil)) return;
    if (this.draft === null) this.heldUntil = 0;
    this.dirty = false;
    if (!this.dragging) this.range = niceRange(weights);
    this.canvas.dataset.range = String(this.range);
    this.canvas.dataset.count = String(weights.length);
    const g = fitCanvas(this.canvas);
    const w = this.canvas.width;
    const hh = this.canvas.height;
    const n = weights.length;
    const bar = w / n;
    g.fillStyle = "rgba(255,255,255,0.15)";
    g.fillRect(0, hh / 2, w, 1);
    g.fillStyle = this.draft ? "#e0b050" : "#7fd1b9";
    for (let i = 0; i < n; i++) {
      const v = Math.max(-1, Math.min(1, weights[i] / this.range));
      const y = hh / 2 - v * hh / 2;
      g.fillRect(i * bar, Math.min(y, hh / 2), Math.max(1, bar - (bar > 3 ? 1 : 0)), Math.max(1, Math.abs(hh / 2 - y)));
    }
  }
}
