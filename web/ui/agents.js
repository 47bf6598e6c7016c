// Agent cards: state, levels, scope, spectrum, prediction error, controls, weights.
//
// A card per agent, made once and updated in place. Controls come from the agent's
// parameter specs (params.js): log sliders for lr and ridge, a checkbox for learn
// (unchecked = the weights freeze) and mute, gain in dB. A slider sends `set_params`
// at most 10 times a second while it moves and its final value on release; what it
// shows afterwards is what the hub pushes back (the agent's own /state), so every
// browser shows the same value.

import { agentIds } from "../state.js";
import {
  formatNumber, formatValue, fromSlider, labelOf, oscAddresses, SLIDER_STEPS, specsOf, toSlider,
} from "../params.js";
import { h, throttle } from "../util.js";
import { drawScope, drawSpectrum, drawSparkline } from "./draw.js";
import { WeightsPanel } from "./weights.js";
import { SnapshotsPanel } from "./snapshots.js";

/** How long (ms) after the user's last touch a control ignores pushed values. */
const EDIT_HOLD_MS = 700;

function dbfs(x) {
  return 20 * Math.log10(Math.max(x, 1e-7));
}

function meterWidth(x) {
  return `${Math.max(0, Math.min(100, (dbfs(x) + 60) / 60 * 100)).toFixed(1)}%`;
}

class Card {
  constructor(id, ctx) {
    this.id = id;
    this.ctx = ctx;
    this.controls = new Map();   // name -> {spec, input, output, editedAt, send}
    this.specKey = "";
    this.name = h("h3", { class: "agent-id" });
    this.name.textContent = id;
    this.model = h("span", { class: "model", testid: `model-${id}` });
    this.status = h("span", { class: "status", testid: `status-${id}` });
    this.adopt = h("button", { class: "adopt", testid: `adopt-${id}`, hidden: true }, "Adopt");
    this.adopt.addEventListener("click", async () => {
      this.adopt.disabled = true;
      try {
        await ctx.request("adopt", { agent: id });
        this.error("");
      } catch (err) {
        this.error(`adopt: ${err.message}`);
      } finally {
        this.adopt.disabled = false;
      }
    });
    // An agent that is gone for good (offline, or pending and never adopted) can be
    // forgotten; the hub refuses one of the installation's own (its config lists it).
    this.forget = h("button", { class: "forget", testid: `forget-${id}`, hidden: true,
                                title: "Forget this agent and its routes (it is gone for good)" }, "Forget");
    this.forget.addEventListener("click", async () => {
      this.forget.disabled = true;
      try {
        await ctx.request("forget", { agent: id });
        this.error("");
      } catch (err) {
        this.error(`forget: ${err.message}`);
      } finally {
        this.forget.disabled = false;
      }
    });
    this.host = h("span", { class: "host" });
    this.counts = h("span", { class: "counts", testid: `counts-${id}` });
    this.rmsBar = h("span", { class: "rms" });
    this.peakBar = h("span", { class: "peak" });
    this.meter = h("div", { class: "meter", testid: `meter-${id}`, title: "output RMS and peak (dBFS)",
                            dataset: { rms: "0", peak: "0" } }, this.rmsBar, this.peakBar);
    this.level = h("span", { class: "level-text" });
    this.scope = h("canvas", { class: "scope", testid: `scope-${id}`, title: "scope: the last 21 ms of output" });
    this.spectrum = h("canvas", { class: "spectrum", testid: `spectrum-${id}`, title: "spectrum, 20 Hz – 24 kHz (log), −100..0 dB" });
    this.spark = h("canvas", { class: "spark", testid: `error-${id}`, title: "prediction error RMS, last 6 s" });
    this.errorText = h("span", { class: "error-rms", testid: `error-rms-${id}` });
    this.controlsBox = h("div", { class: "controls" });
    this.weights = new WeightsPanel(id, ctx);
    this.snapshots = new SnapshotsPanel(id, ctx, async (what, promise) => {
      try {
        await promise;
        this.error("");
      } catch (err) {
        this.error(`${what}: ${err.message}`);
      }
    });
    this.message = h("div", { class: "card-error", role: "status" });
    this.el = h("article", { class: "card", testid: `card-${id}` },
      h("header", {}, this.name, this.model, this.status, this.adopt, this.forget),
      h("div", { class: "meta" }, this.host, this.counts),
      h("div", { class: "levels" }, this.meter, this.level),
      h("div", { class: "viz" }, this.scope, this.spectrum),
      h("div", { class: "err" }, this.spark, this.errorText),
      this.controlsBox,
      this.weights.el,
      this.snapshots.el,
      this.message);
    this.lastHistory = null;
    this.lastAgent = null;
    this.lastTelemetry = null;
    this.valuesDirty = true;
    this.online = false;
    this.visible = true;     // until the IntersectionObserver says otherwise
  }

  error(text) {
    this.message.textContent = text;
  }

  buildControls(agent) {
    const specs = specsOf(agent);
    const key = JSON.stringify(specs.map((s) => [s.name, s.kind, s.min, s.max, s.scale]));
    if (key === this.specKey) return;
    this.specKey = key;
    this.controls.clear();
    const rows = [];
    for (const spec of specs) {
      const row = this.controlFor(spec);
      if (row) rows.push(row);
    }
    this.controlsBox.replaceChildren(...rows);
  }

  controlFor(spec) {
    const id = this.id;
    const testid = `param-${id}-${spec.name}`;
    // In words for the artist (params.js LABELS); the OSC address (and its aliases: Unlearn's
    // /lambda answers /lr too) in small print and in the tooltip, with the unit.
    const label = labelOf(spec);
    const osc = oscAddresses(spec).join(" · ");
    const title = `${spec.description || label}` +
      ` (OSC ${oscAddresses(spec).join(", ")}${spec.unit ? `; in ${spec.unit}` : ""})`;
    const nameOf = (text) => h("span", { class: "name", testid: `${testid}-label` },
      h("span", { class: "label-text" }, text), h("small", { class: "osc-name" }, osc));
    const send = throttle((value) => this.send(spec.name, value), 100);
    const entry = { spec, editedAt: 0, send, input: null, output: null };
    let input;
    let output = null;
    if (spec.kind === "bool") {
      input = h("input", { type: "checkbox", testid, title });
      input.addEventListener("change", () => {
        entry.editedAt = performance.now();
        send(input.checked ? 1 : 0);
        send.flush();
      });
      entry.input = input;
      this.controls.set(spec.name, entry);
      const text = spec.name === "learn" ? "learning (off = freeze)" : label;
      return h("label", { class: "param bool", title }, input, nameOf(text));
    }
    if (spec.kind === "choice") {
      input = h("select", { testid, title }, ...(spec.choices || []).map((c) => h("option", { value: c }, c)));
      input.addEventListener("change", () => {
        entry.editedAt = performance.now();
        send(input.value);
        send.flush();
      });
      entry.input = input;
      this.controls.set(spec.name, entry);
      return h("label", { class: "param choice", title }, nameOf(label), input);
    }
    // float, int, array (one value for every element): a slider
    input = h("input", { type: "range", min: 0, max: SLIDER_STEPS, step: 1, testid, title,
                         "aria-label": `${label} of ${id}`, dataset: { scale: spec.scale } });
    output = h("output", { testid: `${testid}-value` });
    const value = () => fromSlider(Number(input.value), spec);
    input.addEventListener("input", () => {
      entry.editedAt = performance.now();
      output.textContent = formatValue(value(), spec);
      send(value());
    });
    input.addEventListener("change", () => {
      entry.editedAt = performance.now();
      send(value());
      send.flush();
    });
    entry.input = input;
    entry.output = output;
    this.controls.set(spec.name, entry);
    const name = spec.kind === "array" ? `${label} (all ${spec.size || ""})`.replace(" )", ")") : label;
    return h("label", { class: "param range", title }, nameOf(name), input, output);
  }

  async send(name, value) {
    try {
      await this.ctx.request("set_params", { agent: this.id, params: { [name]: value } });
      this.error("");
    } catch (err) {
      this.error(`${name}: ${err.message}`);
    }
  }

  update(agent, state) {
    // Telemetry renders come 30 times a second: touch only what changed.
    if (agent !== this.lastAgent) {
      this.lastAgent = agent;
      this.valuesDirty = true;
      const status = agent.status || (agent.online ? "online" : "offline");
      this.el.dataset.status = status;
      this.status.textContent = status;
      this.status.dataset.status = status;
      this.model.textContent = agent.model || "?";
      this.adopt.hidden = status !== "pending";
      // Forget is for an agent gone for good: not while it plays (the hub would refuse:
      // it would announce itself again at once), nor for one of the config's own.
      const own = !!(state.room && state.room.agents && this.id in state.room.agents);
      this.forget.hidden = own || agent.online === true || !(status === "offline" || status === "pending");
      this.host.textContent = agent.host ? `${agent.host}:${agent.osc_port ?? "?"}` : "no address yet";
      this.buildControls(agent);
      this.online = status === "online";
      for (const entry of this.controls.values()) entry.input.disabled = !this.online;
    }
    if (!this.forget.hidden && (this.valuesDirty || state.routes !== this.lastRoutes)) {
      this.lastRoutes = state.routes;
      const n = Object.values(state.routes || {}).filter((r) => r.from === this.id || r.to === this.id).length;
      this.forget.title = `Forget ${this.id}: it is gone for good` +
        (n === 1 ? " (the route or ring edge naming it goes too)"
          : n > 1 ? ` (the ${n} routes or ring edges naming it go too)` : "");
    }
    if (this.valuesDirty) this.valuesDirty = !this.showValues(agent);
    const t = state.telemetry[this.id];
    if (t !== this.lastTelemetry) {
      this.lastTelemetry = t;
      this.showTelemetry(t || {});
    }
    const history = state.errorHistory[this.id];
    if (history !== this.lastHistory) {
      this.lastHistory = history;
      this.sparkDirty = true;
    }
    this.weights.update(state, this.online);
  }

  /** Put the agent's values into the controls; false while one is held by the user
   * (then the next update tries again). */
  showValues(agent) {
    const values = { ...(agent.desired || {}), ...(agent.params || {}) };
    const now = performance.now();
    let done = true;
    for (const [name, entry] of this.controls) {
      const v = values[name];
      if (v === undefined) continue;
      if (now - entry.editedAt < EDIT_HOLD_MS) {
        done = false;
        continue;
      }
      const { spec, input, output } = entry;
      if (spec.kind === "bool") input.checked = Number(v) === 1 || v === true;
      else if (spec.kind === "choice") input.value = String(v);
      else {
        const scalar = Array.isArray(v) ? (v.length ? v.reduce((a, b) => a + b, 0) / v.length : 0) : Number(v);
        input.value = String(toSlider(scalar, spec));
        input.dataset.value = String(scalar);
        output.textContent = formatValue(v, spec);
      }
    }
    return done;
  }

  showTelemetry(t) {
    const blowups = t.blowups ?? 0;
    const xruns = t.xruns ?? 0;
    // a latent agent (agents/models/latent.py): its model's latency and missed chunks
    const latent = t.latency_ms === undefined ? "" :
      ` · latency ${Math.round(Number(t.latency_ms))} ms · late ${(t.late ?? 0) + (t.dropped ?? 0)}`;
    this.counts.textContent = `blow-ups ${blowups} · xruns ${xruns}${latent}`;
    this.counts.dataset.blowups = String(blowups);
    this.counts.dataset.xruns = String(xruns);
    const rms = Number(t.rms) || 0;
    const peak = Number(t.peak) || 0;
    this.meter.dataset.rms = String(rms);
    this.meter.dataset.peak = String(peak);
    this.rmsBar.style.width = meterWidth(rms);
    this.peakBar.style.left = meterWidth(peak);
    this.level.textContent = `${dbfs(rms).toFixed(0)} / ${dbfs(peak).toFixed(0)} dB` +
      (t.panicked === 1 ? " · panicked" : "") + (t.muted === 1 ? " · muted" : "");
    this.errorText.textContent = t.error_rms !== undefined ? `err ${formatNumber(Number(t.error_rms))}` : "";
  }

  draw() {
    if (!this.visible) return;     // off screen: the data waits (dirty) until it shows
    const s = this.ctx.scopes.get(this.id);
    if (s && s.dirty) {
      s.dirty = false;
      if (s.scope) drawScope(this.scope, s.scope);
      if (s.spectrum) drawSpectrum(this.spectrum, s.spectrum, s.rate);
    }
    if (this.sparkDirty) {
      this.sparkDirty = false;
      drawSparkline(this.spark, this.lastHistory || []);
    }
    this.weights.draw();
  }
}

export function mountAgents(root, ctx) {
  const grid = h("div", { class: "cards", testid: "cards" });
  const empty = h("p", { class: "empty" }, "No agents yet: they appear here within seconds of starting.");
  root.append(h("h2", {}, "Agents"), empty, grid);
  const cards = new Map();
  const byElement = new WeakMap();
  // Only cards on screen paint their canvases (a phone shows one card at a time).
  const seen = typeof IntersectionObserver === "undefined" ? null : new IntersectionObserver((entries) => {
    for (const e of entries) {
      const card = byElement.get(e.target);
      if (card) card.visible = e.isIntersecting;
    }
  });
  return {
    update(state) {
      // The installation's own agents first, then those waiting for adoption.
      const pending = (id) => (state.agents[id].status === "pending" ? 1 : 0);
      const ids = agentIds(state).sort((a, b) => pending(a) - pending(b));
      empty.hidden = ids.length > 0;
      let previous = null;
      for (const id of ids) {
        let card = cards.get(id);
        if (!card) {
          card = new Card(id, ctx);
          cards.set(id, card);
          byElement.set(card.el, card);
          if (seen) seen.observe(card.el);
        }
        // Keep the order without moving nodes that are already in place.
        const want = previous ? previous.nextSibling : grid.firstChild;
        if (want !== card.el) grid.insertBefore(card.el, want);
        previous = card.el;
        card.update(state.agents[id], state);
      }
      for (const [id, card] of cards) {
        if (!state.agents[id]) {
          if (seen) seen.unobserve(card.el);
          card.el.remove();
          card.weights.close();
          cards.delete(id);
        }
      }
    },
    draw() {
      for (const card of cards.values()) card.draw();
    },
  };
}

