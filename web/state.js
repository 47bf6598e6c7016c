// The dashboard's view state and the pure reducer that turns hub messages into it.
//
// One-way data flow (STYLE 15): conn.js receives JSON messages from the hub's
// WebSocket (hub/api.py's protocol) and the replies of reads; app.js hands every
// one to `reduce(state, message)`, which returns a new state (the old one is never
// changed) and the panels render from it. Nothing here touches the DOM, the network
// or the clock (times come inside the messages), so it is tested with `node --test`.
//
// Messages the hub pushes:           hello, agent, event, telemetry, weights, room
// Messages the page makes itself:     conn {status}, routes {routes}, couplings {couplings},
//                                     scenes {scenes},
//                                     events {events}, agents {agents}, room {layout}
// Binary scope frames do not go through here (frames.js + scopes in app.js): at 30 Hz
// × 8 agents they would only churn the state.

/** Events kept for the log (newest last). */
export const MAX_EVENTS = 200;
/** Prediction-error values kept per agent for the sparkline (30 Hz telemetry: 4 s). */
export const ERROR_HISTORY = 120;

/** The state before the first message. */
export function initialState() {
  return {
    conn: { status: "connecting", attempt: 0 }, // connecting | open | closed | unauthorized
    name: "",
    agents: {},        // id -> agent JSON as the hub sends it (status, params, specs ...)
    routes: {},        // route id -> {id, from, to, gain, delay_ms, lowpass_hz, highpass_hz, shape}
    couplings: {},     // coupling id "a~>b" -> {id, from, to, mode, kappa, rate_hz, gain, noise, mask, stats}
    telemetry: {},     // id -> latest frame {rms, peak, error_rms, blowups, xruns, ...}
    errorHistory: {},  // id -> [error_rms, ...] oldest first, at most ERROR_HISTORY
    weights: {},       // id -> {weights: [...], t: unix s}
    room: null,        // layout {room, agents, recomputing, responses_ms} or null
    scope: null,       // {agents: [ids by index], frames, hz} or null
    listen: null,      // [{source, channels, sample_rate}] the hub can stream, or null (unknown)
    scenes: [],        // scene names, sorted
    events: [],        // {t, kind, message, agent, ...}, newest last
    panicked: false,   // the last panic/unpanic the hub announced
    description: null, // what to listen for in the piece (the config's), or null
    overload: null,    // {message, speed} while the hub cannot keep up with real time
    storage: null,     // the hub's message while its database refuses writes (a full disk)
    recording: null,   // file name while the hub records, else null
    version: 0,        // bumped by every change (panels may skip work when equal)
  };
}

const byName = (a, b) => (a < b ? -1 : a > b ? 1 : 0);

function withEvent(state, event) {
  const events = state.events.length >= MAX_EVENTS
    ? state.events.slice(state.events.length - MAX_EVENTS + 1) : state.events.slice();
  events.push(event);
  return events;
}

function routesWithout(routes, keep) {
  const out = {};
  for (const [id, r] of Object.entries(routes)) if (keep(id, r)) out[id] = r;
  return out;
}

function indexRoutes(list) {
  const out = {};
  for (const r of list || []) if (r && typeof r.id === "string") out[r.id] = r;
  return out;
}

function indexAgents(list, previous) {
  const out = {};
  for (const a of list || []) {
    if (!a || typeof a.id !== "string") continue;
    // Keep what a later push may leave out (specs) from what we knew.
    out[a.id] = { ...(previous[a.id] || {}), ...a };
  }
  return out;
}

/** Apply one event's meaning (routes, scenes, panic, recording, room) besides logging it. */
function applyEvent(state, event) {
  const s = { ...state, events: withEvent(state, event) };
  switch (event.kind) {
    case "route_added":
    case "route_changed":
      if (event.route && typeof event.route.id === "string") {
        s.routes = { ...state.routes, [event.route.id]: event.route };
      }
      break;
    case "route_deleted":
      s.routes = routesWithout(state.routes, (id) => id !== event.route);
      break;
    case "ring_deleted":
      s.routes = routesWithout(state.routes, (id) => !id.startsWith(event.ring + ":"));
      break;
    case "coupling_added":
    case "coupling_changed":
      if (event.coupling && typeof event.coupling.id === "string") {
        s.couplings = { ...state.couplings, [event.coupling.id]: event.coupling };
      }
      break;
    case "coupling_deleted":
      s.couplings = routesWithout(state.couplings, (id) => id !== event.coupling);
      break;
    case "panic":
      s.panicked = true;
      break;
    case "overload":
      s.overload = { message: String(event.message || "overloaded"), speed: event.speed ?? null };
      break;
    case "overload_end":
      s.overload = null;
      break;
    case "store_failed":
      s.storage = String(event.message || "the hub's database refuses writes");
      break;
    case "store_ok":
      s.storage = null;
      break;
    case "unpanic":
      s.panicked = false;
      break;
    case "record_start":
      s.recording = event.file || "recording";
      break;
    case "record_stop":
      s.recording = null;
      break;
    case "scene_saved":
      if (typeof event.scene === "string" && !state.scenes.includes(event.scene)) {
        s.scenes = [...state.scenes, event.scene].sort(byName);
      }
      break;
    case "scene_deleted":
      s.scenes = state.scenes.filter((n) => n !== event.scene);
      break;
    case "room_changed":
      s.room = { ...(state.room || { agents: {}, recomputing: false, responses_ms: null }),
                 room: event.room ?? null };
      break;
    case "params":
      // The agent push that follows carries the values; nothing to do here.
      break;
    default:
      break;
  }
  return s;
}

function applyTelemetry(state, frames) {
  const telemetry = { ...state.telemetry };
  const errorHistory = { ...state.errorHistory };
  for (const [id, frame] of Object.entries(frames || {})) {
    if (!frame || typeof frame !== "object") continue;
    telemetry[id] = frame;
    if (typeof frame.error_rms === "number" && Number.isFinite(frame.error_rms)) {
      const old = errorHistory[id] || [];
      const next = old.length >= ERROR_HISTORY ? old.slice(old.length - ERROR_HISTORY + 1) : old.slice();
      next.push(frame.error_rms);
      errorHistory[id] = next;
    }
  }
  return { ...state, telemetry, errorHistory };
}

/** Events from the store (oldest first, with ids) replace the in-memory log. */
function applyEventList(state, events) {
  const list = (events || []).filter((e) => e && typeof e === "object");
  let s = { ...state, events: list.slice(-MAX_EVENTS) };
  // The newest panic/unpanic and record event tells the current state after a reload.
  for (const e of list) {
    if (e.kind === "panic") s.panicked = true;
    else if (e.kind === "unpanic") s.panicked = false;
    else if (e.kind === "overload") s.overload = { message: String(e.message || "overloaded"), speed: e.speed ?? null };
    else if (e.kind === "overload_end") s.overload = null;
    else if (e.kind === "store_failed") s.storage = String(e.message || "the hub's database refuses writes");
    else if (e.kind === "store_ok") s.storage = null;
    else if (e.kind === "record_start") s.recording = e.file || "recording";
    else if (e.kind === "record_stop") s.recording = null;
  }
  return s;
}

/**
 * The next state after `message` (never mutates `state`). Unknown messages leave the
 * state as it was (the same object), so a newer hub does not break an older page.
 */
export function reduce(state, message) {
  if (!message || typeof message !== "object") return state;
  let next;
  switch (message.type) {
    case "conn":
      next = { ...state, conn: { status: message.status, attempt: message.attempt ?? 0 } };
      break;
    case "hello": {
      next = {
        ...state,
        name: typeof message.name === "string" ? message.name : state.name,
        agents: indexAgents(message.agents, state.agents),
        routes: indexRoutes(message.routes),
        couplings: indexRoutes(message.couplings),
        scope: message.scope ?? null,
        description: typeof message.description === "string" ? message.description : null,
      };
      if (message.overloaded === false) next.overload = null;
      if ("store_failing" in message) {
        next.storage = message.store_failing ? `the hub's database refuses writes: changes are not kept (${message.store_failing})` : null;
      }
      if ("room" in message) next.room = message.room ?? null;
      if (Array.isArray(message.listen)) next.listen = message.listen.filter((x) => x && typeof x.source === "string");
      if (Array.isArray(message.events)) next = applyEventList(next, message.events);
      if (Array.isArray(message.scenes)) next.scenes = message.scenes.slice().sort(byName);
      break;
    }
    case "agent": {
      const a = message.agent;
      if (!a || typeof a.id !== "string") return state;
      next = { ...state, agents: { ...state.agents, [a.id]: { ...(state.agents[a.id] || {}), ...a } } };
      break;
    }
    case "agent_removed": {
      if (typeof message.agent !== "string" || !(message.agent in state.agents)) return state;
      const agents = { ...state.agents };
      delete agents[message.agent];
      next = { ...state, agents };
      break;
    }
    case "agents":
      next = { ...state, agents: indexAgents(message.agents, state.agents) };
      break;
    case "event":
      if (!message.event || typeof message.event !== "object") return state;
      next = applyEvent(state, message.event);
      break;
    case "events":
      next = applyEventList(state, message.events);
      break;
    case "telemetry":
      next = applyTelemetry(state, message.agents);
      break;
    case "weights":
      if (typeof message.agent !== "string" || !Array.isArray(message.weights)) return state;
      next = { ...state, weights: { ...state.weights,
        [message.agent]: { weights: message.weights, t: message.t ?? null } } };
      break;
    case "room":
      next = { ...state, room: message.layout ?? null };
      break;
    case "routes":
      next = { ...state, routes: indexRoutes(message.routes) };
      break;
    case "couplings":
      next = { ...state, couplings: indexRoutes(message.couplings) };
      break;
    case "scenes":
      next = { ...state, scenes: (message.scenes || [])
        .map((s) => (typeof s === "string" ? s : s && s.name))
        .filter((s) => typeof s === "string").sort(byName) };
      break;
    default:
      return state;
  }
  next.version = state.version + 1;
  return next;
}

// ---------------------------------------------------------------------------
// Selectors (pure): what the panels ask of the state
// ---------------------------------------------------------------------------

/** Agent ids in display order (natural order: a2 before a10). */
export function agentIds(state) {
  return Object.keys(state.agents).sort((a, b) => a.localeCompare(b, undefined, { numeric: true }));
}

/** True when the panic button should offer "Unpanic": the hub said panic, or an
 * online agent reports itself panicked. */
export function isPanicked(state) {
  if (state.panicked) return true;
  return Object.entries(state.telemetry).some(
    ([id, t]) => t && t.panicked === 1 && state.agents[id] && state.agents[id].online);
}

/** The route from `a` to `b` that is not part of a ring (id "a->b"), or null. */
export function plainRoute(state, a, b) {
  return state.routes[`${a}->${b}`] || null;
}

/** Every route from `a` to `b` (plain and ring edges). */
export function routesBetween(state, a, b) {
  return Object.values(state.routes).filter((r) => r.from === a && r.to === b);
}

/** Ring names of the current routes (ids "RING:a->b"). */
export function ringNames(state) {
  const names = new Set();
  for (const id of Object.keys(state.routes)) {
    const i = id.indexOf(":");
    if (i > 0) names.add(id.slice(0, i));
  }
  return [...names].sort(byName);
}
