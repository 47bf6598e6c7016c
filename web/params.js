// Parameter specs and slider scales (pure; no DOM).
//
// An agent's JSON may carry `specs` {name: {kind, min, max, default, scale, unit,
// description, choices, size}} (agents/models/base.py ParamSpec.describe(), as the
// hub sends them; scale "log" or "lin"). An agent the hub has no description of (a
// model kind it does not know) gets controls guessed from its parameter values and
// the names every agent has.

/** Slider positions: an <input type=range> runs 0..SLIDER_STEPS. */
export const SLIDER_STEPS = 1000;

/** What every agent has besides its model's parameters (agents/control.py). */
const KNOWN = {
  lr: { kind: "float", min: 0, max: 50, scale: "log", unit: "", description: "learning rate" },
  ridge: { kind: "float", min: 0, max: 1, scale: "log", unit: "", description: "ridge λ" },
  learn: { kind: "bool", min: 0, max: 1, description: "1 = learn, 0 = freeze the weights" },
  interp: { kind: "float", min: 0, max: 1, scale: "lin", description: "α between the weight sets" },
  gain: { kind: "float", min: -60, max: 12, scale: "lin", unit: "dB", description: "output gain" },
  mute: { kind: "bool", min: 0, max: 1, description: "1 = mute the speaker" },
};

/**
 * What an artist reads beside a control, by parameter name (agents/models: AutoRegNN's
 * lr, ridge, learn, act_mix, interp; Unlearn's and the neuron's lambda_, mu, nu, s, r, a,
 * input_gain, activation, shape, delays, time_scale; every agent's gain and mute). The
 * OSC name (and its aliases) stays in the tooltip and in small print for OSC users; the
 * unit comes with the value (the spec's `unit`). The seeds call both AutoRegNN's lr and
 * Unlearn's λ the learning rate, so both are labelled so.
 */
export const LABELS = {
  lr: "learning rate",
  lambda: "learning rate λ",
  ridge: "ridge (pull to zero)",
  learn: "learning",
  interp: "between weight sets",
  act_mix: "sine share of each hidden unit",
  gain: "output gain",
  mute: "mute",
  mu: "own cost μ",
  nu: "activity reward ν",
  s: "limit-cycle pull",
  r: "limit-cycle radius",
  a: "friction",
  input_gain: "input gain",
  activation: "activation",
  shape: "activation steepness",
  delays: "delay times",
  time_scale: "time scale",
};

/** The OSC name of a parameter: its spec name without Python's trailing "_" (lambda_). */
export function oscName(spec) {
  return String((spec && spec.name) || "").replace(/_$/, "");
}

/**
 * The readable label of a parameter spec ({name, ...}): LABELS, else its name; one
 * element of an array parameter ("act_mix[3]") reads "sine share of each hidden unit [3]".
 */
export function labelOf(spec) {
  const name = oscName(spec);
  const element = /^(.*?)_?\[(\d+)\]$/.exec(name);
  if (element && LABELS[element[1]]) return `${LABELS[element[1]]} [${element[2]}]`;
  return LABELS[name] || name;
}

/** The OSC addresses a parameter answers to: "/lambda" and its aliases ("/lr"). */
export function oscAddresses(spec) {
  const aliases = Array.isArray(spec && spec.aliases) ? spec.aliases.map(String) : [];
  return [oscName(spec), ...aliases].filter((n, i, all) => n && all.indexOf(n) === i).map((n) => `/${n}`);
}

/** Display order: the learning controls first (then Unlearn's and the neuron's in their
 * models' own order), the safety controls last. */
const ORDER = ["lr", "lambda", "ridge", "learn", "interp", "act_mix", "mu", "nu", "s", "r", "a",
  "input_gain", "activation", "shape", "delays", "time_scale"];
const LAST = ["gain", "mute"];

function normalise(name, spec) {
  const s = { name, kind: "float", scale: "lin", unit: "", description: "", ...spec };
  if (s.kind === "choice" && !Array.isArray(s.choices)) s.choices = [];
  return s;
}

/** The specs of an agent as a list in display order: [{name, kind, min, max, scale, ...}]. */
export function specsOf(agent) {
  const given = agent && agent.specs && typeof agent.specs === "object" ? agent.specs : null;
  const out = {};
  if (given) {
    const entries = Array.isArray(given) ? given.map((s) => [s.name, s]) : Object.entries(given);
    for (const [name, spec] of entries) if (typeof name === "string" && spec) out[name] = normalise(name, spec);
  } else {
    const params = (agent && agent.params) || {};
    for (const [name, value] of Object.entries(params)) {
      if (KNOWN[name]) out[name] = normalise(name, KNOWN[name]);
      else if (typeof value === "number") out[name] = normalise(name, { kind: "float" });
      else if (typeof value === "string") out[name] = normalise(name, { kind: "choice", choices: [value] });
      else if (Array.isArray(value)) out[name] = normalise(name, { kind: "array", size: value.length });
    }
  }
  for (const name of LAST) if (!out[name]) out[name] = normalise(name, KNOWN[name]);
  const rank = (n) => {
    const i = ORDER.indexOf(n);
    if (i >= 0) return i;
    const j = LAST.indexOf(n);
    return j >= 0 ? 1000 + j : 100;
  };
  return Object.values(out).sort((a, b) => rank(a.name) - rank(b.name) || (a.name < b.name ? -1 : 1));
}

/** The lowest non-zero value of a log slider whose minimum is 0 or below. */
function logFloor(spec) {
  const max = Number.isFinite(spec.max) ? spec.max : 1;
  if (Number.isFinite(spec.min) && spec.min > 0) return spec.min;
  return Math.max(max * 1e-6, Number.MIN_VALUE);
}

/** Bounds a slider can show (infinite spec bounds become a finite window). */
export function bounds(spec) {
  let lo = Number.isFinite(spec.min) ? spec.min : null;
  let hi = Number.isFinite(spec.max) ? spec.max : null;
  if (lo === null && hi === null) { lo = -1; hi = 1; }
  else if (lo === null) lo = hi - Math.max(1, Math.abs(hi));
  else if (hi === null) hi = lo + Math.max(1, Math.abs(lo)) * 10;
  return [lo, hi];
}

/**
 * Slider position (0..SLIDER_STEPS) of `value`. Log sliders span [floor, max] in equal
 * ratios, floor = min if min > 0 else max·1e-6; position 0 is the minimum itself (0).
 */
export function toSlider(value, spec) {
  const [lo, hi] = bounds(spec);
  if (!Number.isFinite(value)) return 0;
  if (spec.scale === "log" && hi > 0) {
    const floor = logFloor({ ...spec, min: lo, max: hi });
    if (value <= lo || value <= 0) return 0;
    const v = Math.min(Math.max(value, floor), hi);
    const pos = Math.log(v / floor) / Math.log(hi / floor);
    // Position 0 is reserved for the minimum when that is below the floor.
    const start = lo < floor ? 1 : 0;
    return Math.round(start + pos * (SLIDER_STEPS - start));
  }
  if (hi === lo) return 0;
  const pos = (Math.min(Math.max(value, lo), hi) - lo) / (hi - lo);
  return Math.round(pos * SLIDER_STEPS);
}

/** The value at slider position `pos` (inverse of toSlider, up to the step). */
export function fromSlider(pos, spec) {
  const [lo, hi] = bounds(spec);
  const p = Math.min(Math.max(Number(pos), 0), SLIDER_STEPS);
  if (spec.scale === "log" && hi > 0) {
    const floor = logFloor({ ...spec, min: lo, max: hi });
    const start = lo < floor ? 1 : 0;
    if (p < start) return lo;
    const x = (p - start) / (SLIDER_STEPS - start);
    return floor * Math.pow(hi / floor, x);
  }
  const v = lo + (p / SLIDER_STEPS) * (hi - lo);
  return spec.kind === "int" ? Math.round(v) : v;
}

/** A short display of a parameter value (4 significant digits, unit appended). */
export function formatValue(value, spec) {
  if (Array.isArray(value)) {
    if (!value.length) return "[]";
    const mean = value.reduce((a, b) => a + Number(b), 0) / value.length;
    const unit = spec && spec.unit ? ` ${spec.unit}` : "";
    return `mean ${formatNumber(mean)}${unit} of ${value.length}`;
  }
  if (typeof value === "number") return formatNumber(value) + (spec && spec.unit ? ` ${spec.unit}` : "");
  if (value === undefined || value === null) return "–";
  return String(value);
}

/** 4 significant digits, exponent for very small or large magnitudes. */
export function formatNumber(x) {
  if (!Number.isFinite(x)) return String(x);
  if (x === 0) return "0";
  const a = Math.abs(x);
  if (a < 1e-3 || a >= 1e5) return x.toExponential(2);
  return String(Number(x.toPrecision(4)));
}
