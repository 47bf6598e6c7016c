// The dashboard's entry point: state, the connection, the panels and the draw loop.
//
// Data flows one way (STYLE 15): Connection -> reduce() -> state -> every panel's
// update(state). User input goes out as hub commands; what the page shows comes back
// from the hub's pushes (so several browsers agree). Binary scope frames skip the
// reducer: they land in `scopes` and the draw loop paints what changed.

import { Connection } from "./conn.js";
import { decodeScopes, SCOPE } from "./frames.js";
import { initialState, reduce } from "./state.js";
import { mountHeader } from "./ui/header.js";
import { mountAgents } from "./ui/agents.js";
import { mountRouting } from "./ui/routing.js";
import { mountRoom } from "./ui/room.js";
import { mountScenes } from "./ui/scenes.js";
import { mountEvents } from "./ui/events.js";
import { mountLogin } from "./ui/login.js";

let state = initialState();
const panels = [];
let renderQueued = false;

/** Latest scope and spectrum per agent id: {scope, spectrum, rate, dirty}. */
const scopes = new Map();

function dispatch(message) {
  perf.messages += 1;
  const next = reduce(state, message);
  if (next === state) return;
  state = next;
  if (message.type === "event") afterEvent(message.event);
  if (!renderQueued) {
    renderQueued = true;
    requestAnimationFrame(render);
  }
}

// Frame timings (ms) for benchmarks: the last PERF_FRAMES renders and draws.
const PERF_FRAMES = 240;
const perf = { render: [], draw: [], messages: 0, binary: 0 };

function keep(list, value) {
  if (list.length >= PERF_FRAMES) list.shift();
  list.push(value);
}

function percentile(list, p) {
  if (!list.length) return null;
  const sorted = list.slice().sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.floor(p * sorted.length))];
}

function render() {
  renderQueued = false;
  const t0 = performance.now();
  for (const panel of panels) {
    try {
      panel.update(state);
    } catch (err) {
      console.error("panel update failed", err);
    }
  }
  keep(perf.render, performance.now() - t0);
}

function onBinary(buffer) {
  perf.binary += 1;
  let frames;
  try {
    frames = decodeScopes(buffer);
  } catch (err) {
    console.warn(err.message);
    return;
  }
  const ids = (state.scope && state.scope.agents) || [];
  for (const f of frames) {
    const id = ids[f.index];
    if (id === undefined) continue;
    const entry = scopes.get(id) || { scope: null, spectrum: null, rate: f.rate, dirty: false };
    if (f.kind === SCOPE) entry.scope = f.data;
    else entry.spectrum = f.data;
    entry.rate = f.rate;
    entry.dirty = true;
    scopes.set(id, entry);
  }
}

// -- weights: watch only the agents whose weights panel is open ----------------------

const watched = new Set();

async function sendWatch() {
  if (!conn.isOpen) return;
  try {
    // A hidden tab watches nothing (nobody sees the bars; the hub need not read them).
    await conn.request("watch_weights", { agents: document.hidden ? [] : [...watched] });
  } catch (err) {
    console.warn(`watching weights failed: ${err.message}`);
  }
}

function watchWeights(id, on) {
  const had = watched.has(id);
  if (on) watched.add(id);
  else watched.delete(id);
  if (had !== on) sendWatch();
}

// -- reads after (re)connecting and after events that do not carry their data --------

async function refresh(what) {
  try {
    if (what === "routes") dispatch({ type: "routes", routes: await conn.request("routes") });
    else if (what === "couplings") dispatch({ type: "couplings", couplings: await conn.request("couplings") });
    else if (what === "scenes") dispatch({ type: "scenes", scenes: await conn.request("scenes") });
    else if (what === "events") dispatch({ type: "events", events: await conn.request("events") });
    else if (what === "room") dispatch({ type: "room", layout: await conn.request("room_layout") });
  } catch (err) {
    console.warn(`reading ${what} failed: ${err.message}`);
  }
}

function afterEvent(event) {
  if (event.kind === "ring_added") refresh("routes");
  if (event.kind === "scene_recalled") refresh("couplings");
  if (event.kind === "room_changed" && !("room_layout" in event)) refresh("room");
}

const conn = new Connection({
  onMessage: dispatch,
  onBinary,
  onOpen: () => {
    refresh("events");
    refresh("scenes");
    refresh("room");
    if (watched.size) sendWatch();
  },
});

const ctx = {
  request: (cmd, args) => conn.request(cmd, args),
  dispatch,
  getState: () => state,
  scopes,
  watchWeights,
};

function mountAll() {
  const root = document.getElementById("app");
  panels.push(mountHeader(document.getElementById("header"), ctx));
  panels.push(mountLogin(document.getElementById("login"), ctx));
  panels.push(mountAgents(root.querySelector("#agents"), ctx));
  panels.push(mountRouting(root.querySelector("#routing"), ctx));
  panels.push(mountRoom(root.querySelector("#room"), ctx));
  panels.push(mountScenes(root.querySelector("#scenes"), ctx));
  panels.push(mountEvents(root.querySelector("#events"), ctx));
  const loop = (now) => {
    const t0 = performance.now();
    for (const panel of panels) {
      if (!panel.draw) continue;
      try {
        panel.draw(now);
      } catch (err) {
        console.error("panel draw failed", err);
      }
    }
    keep(perf.draw, performance.now() - t0);
    requestAnimationFrame(loop);
  };
  requestAnimationFrame(loop);
  render();
}

mountAll();
conn.start();
document.addEventListener("visibilitychange", () => { if (watched.size) sendWatch(); });

// For tests, benchmarks and the curious: the live state (read-only by convention).
// perf(): per-frame milliseconds of the last PERF_FRAMES renders (state -> DOM) and
// draws (canvases), as {render: {p50, p99, max}, draw: {...}, messages, binary}.
window.anamnesis = {
  get state() { return state; },
  conn,
  scopes,
  dispatch,
  perf: () => {
    const stats = (l) => ({ p50: percentile(l, 0.5), p99: percentile(l, 0.99), max: l.length ? Math.max(...l) : null, n: l.length });
    return { render: stats(perf.render), draw: stats(perf.draw), messages: perf.messages, binary: perf.binary };
  },
};
