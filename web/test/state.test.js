// The reducer (state.js): hub messages -> view state, never mutating the old state.
import { test } from "node:test";
import assert from "node:assert/strict";
import { agentIds, ERROR_HISTORY, initialState, isPanicked, MAX_EVENTS, reduce, ringNames } from "../state.js";

const agent = (id, extra = {}) => ({ id, model: "autoregnn", status: "online", online: true, adopted: true,
                                     params: { lr: 0.1 }, ...extra });

function deepFreeze(o) {
  if (o && typeof o === "object" && !Object.isFrozen(o)) {
    Object.freeze(o);
    for (const v of Object.values(o)) deepFreeze(v);
  }
  return o;
}

const hello = {
  type: "hello", name: "octo",
  agents: [agent("a2"), agent("a10"), agent("a1", { specs: { lr: { min: 0, max: 50, scale: "log" } } })],
  routes: [{ id: "a1->a2", from: "a1", to: "a2", gain: 0.5, delay_ms: 0, shape: "none" },
           { id: "r:a2->a1", from: "a2", to: "a1", gain: 1, delay_ms: 5, shape: "none" }],
  scope: { agents: ["a1", "a2", "a10"], frames: 1024, hz: 30 },
  room: { room: { size: [14, 10, 4.5] }, agents: {}, recomputing: false, responses_ms: null },
};

test("hello replaces agents, routes, scope and room; ids sort naturally", () => {
  const s = reduce(deepFreeze(initialState()), hello);
  assert.equal(s.name, "octo");
  assert.deepEqual(agentIds(s), ["a1", "a2", "a10"]);
  assert.deepEqual(Object.keys(s.routes).sort(), ["a1->a2", "r:a2->a1"]);
  assert.equal(s.scope.frames, 1024);
  assert.deepEqual(s.room.room.size, [14, 10, 4.5]);
  assert.equal(s.version, 1);
  assert.deepEqual(ringNames(s), ["r"]);
});

test("an agent push merges into what was known (specs kept) and does not mutate", () => {
  const s0 = deepFreeze(reduce(initialState(), hello));
  const s1 = reduce(s0, { type: "agent", change: "params", agent: agent("a1", { params: { lr: 0.4 } }) });
  assert.equal(s1.agents.a1.params.lr, 0.4);
  assert.equal(s1.agents.a1.specs.lr.scale, "log");    // not in the push, kept
  assert.equal(s0.agents.a1.params.lr, 0.1);           // the old state is unchanged
  assert.equal(s1.agents.a2, s0.agents.a2);            // untouched branches are shared
  const s2 = reduce(s1, { type: "agent", change: "added", agent: agent("b1", { status: "pending", adopted: false }) });
  assert.equal(s2.agents.b1.status, "pending");
  assert.equal(reduce(s2, { type: "agent", agent: { nope: 1 } }), s2);
});

test("route events add, change and delete routes; ring_deleted removes its edges", () => {
  let s = deepFreeze(reduce(initialState(), hello));
  const route = { id: "a2->a10", from: "a2", to: "a10", gain: 0.25, delay_ms: 3, shape: "tanh" };
  s = reduce(s, { type: "event", event: { t: 1, kind: "route_added", message: "m", route } });
  assert.equal(s.routes["a2->a10"].gain, 0.25);
  s = reduce(s, { type: "event", event: { t: 2, kind: "route_changed", route: { ...route, gain: 0.75 } } });
  assert.equal(s.routes["a2->a10"].gain, 0.75);
  s = reduce(s, { type: "event", event: { t: 3, kind: "route_deleted", route: "a2->a10" } });
  assert.equal(s.routes["a2->a10"], undefined);
  s = reduce(s, { type: "event", event: { t: 4, kind: "ring_deleted", ring: "r" } });
  assert.deepEqual(Object.keys(s.routes), ["a1->a2"]);
  assert.equal(s.events.length, 4);
  s = reduce(s, { type: "routes", routes: [route] });
  assert.deepEqual(Object.keys(s.routes), ["a2->a10"]);
});

test("panic, record and scene events; the stored event list tells the state after a reload", () => {
  let s = reduce(initialState(), hello);
  s = reduce(s, { type: "event", event: { t: 1, kind: "panic", agents: ["a1"] } });
  assert.equal(isPanicked(s), true);
  s = reduce(s, { type: "event", event: { t: 2, kind: "unpanic" } });
  assert.equal(isPanicked(s), false);
  s = reduce(s, { type: "event", event: { t: 3, kind: "record_start", file: "take.wav" } });
  assert.equal(s.recording, "take.wav");
  s = reduce(s, { type: "event", event: { t: 4, kind: "record_stop" } });
  assert.equal(s.recording, null);
  s = reduce(s, { type: "event", event: { t: 5, kind: "scene_saved", scene: "night" } });
  s = reduce(s, { type: "event", event: { t: 6, kind: "scene_saved", scene: "dusk" } });
  s = reduce(s, { type: "event", event: { t: 7, kind: "scene_saved", scene: "dusk" } });
  assert.deepEqual(s.scenes, ["dusk", "night"]);
  s = reduce(s, { type: "event", event: { t: 8, kind: "scene_deleted", scene: "night" } });
  assert.deepEqual(s.scenes, ["dusk"]);
  s = reduce(s, { type: "scenes", scenes: ["b", "a"] });
  assert.deepEqual(s.scenes, ["a", "b"]);
  const r = reduce(initialState(), { type: "events", events: [
    { id: 1, kind: "panic" }, { id: 2, kind: "record_start", file: "x.wav" }] });
  assert.equal(r.panicked, true);
  assert.equal(r.recording, "x.wav");
});

test("telemetry keeps the newest frame and a bounded error history; agents' panicked flag counts", () => {
  let s = reduce(initialState(), hello);
  for (let i = 0; i < ERROR_HISTORY + 10; i++) {
    s = reduce(s, { type: "telemetry", agents: { a1: { rms: 0.1, peak: 0.2, error_rms: i, panicked: 0 } } });
  }
  assert.equal(s.telemetry.a1.rms, 0.1);
  assert.equal(s.errorHistory.a1.length, ERROR_HISTORY);
  assert.equal(s.errorHistory.a1.at(-1), ERROR_HISTORY + 9);
  assert.equal(isPanicked(s), false);
  s = reduce(s, { type: "telemetry", agents: { a1: { rms: 0, peak: 0, panicked: 1 } } });
  assert.equal(isPanicked(s), true);
  assert.equal(s.errorHistory.a1.length, ERROR_HISTORY);   // no error_rms: no new point
});

test("the event log is bounded", () => {
  let s = initialState();
  for (let i = 0; i < MAX_EVENTS + 5; i++) s = reduce(s, { type: "event", event: { t: i, kind: "x", message: String(i) } });
  assert.equal(s.events.length, MAX_EVENTS);
  assert.equal(s.events[0].message, "5");
});

test("weights, room and connection messages; unknown ones leave the state as it was", () => {
  let s = reduce(initialState(), hello);
  s = reduce(s, { type: "weights", agent: "a1", weights: [1, 2, 3], t: 5 });
  assert.deepEqual(s.weights.a1, { weights: [1, 2, 3], t: 5 });
  s = reduce(s, { type: "room", layout: { room: { size: [5, 4, 3] }, agents: { a1: { speaker: [1, 1, 1], mic: null } },
                                          recomputing: true, responses_ms: null } });
  assert.equal(s.room.recomputing, true);
  s = reduce(s, { type: "event", event: { kind: "room_changed", room: { size: [6, 4, 3] } } });
  assert.deepEqual(s.room.room.size, [6, 4, 3]);
  assert.deepEqual(s.room.agents.a1.speaker, [1, 1, 1]);
  s = reduce(s, { type: "conn", status: "closed", attempt: 2 });
  assert.deepEqual(s.conn, { status: "closed", attempt: 2 });
  assert.equal(reduce(s, { type: "from-the-future" }), s);
  assert.equal(reduce(s, null), s);
  assert.equal(reduce(s, { type: "weights", agent: "a1" }), s);
});

test("hello's listen sources are kept (null when the hub does not say)", () => {
  assert.equal(reduce(initialState(), hello).listen, null);
  const s = reduce(initialState(), { ...hello, listen: [{ source: "a1", channels: 1, sample_rate: 48000 },
                                                       { source: "listener", channels: 2, sample_rate: 48000 }, 7] });
  assert.deepEqual(s.listen.map((x) => x.source), ["a1", "listener"]);
});

test("couplings come with hello and follow their events", () => {
  const c = { id: "a1~>a2", from: "a1", to: "a2", mode: "blend", kappa: 0.05, rate_hz: 20 };
  const s0 = deepFreeze(reduce(initialState(), { ...hello, couplings: [c] }));
  assert.deepEqual(Object.keys(s0.couplings), ["a1~>a2"]);
  const s1 = reduce(s0, { type: "event", event: { kind: "coupling_changed", coupling: { ...c, kappa: 0.5 } } });
  assert.equal(s1.couplings["a1~>a2"].kappa, 0.5);
  assert.equal(s0.couplings["a1~>a2"].kappa, 0.05);
  const s2 = reduce(s1, { type: "event", event: { kind: "coupling_deleted", coupling: "a1~>a2" } });
  assert.deepEqual(s2.couplings, {});
  const s3 = reduce(s2, { type: "couplings", couplings: [c, { bad: true }] });
  assert.deepEqual(Object.keys(s3.couplings), ["a1~>a2"]);
  assert.deepEqual(reduce(initialState(), hello).couplings, {});   // an older hub: none
});

test("a forgotten agent leaves; the piece's description and the hub's overload are kept", () => {
  let s = reduce(deepFreeze(initialState()), { ...hello, description: "Listen for the lock.", overloaded: false });
  assert.equal(s.description, "Listen for the lock.");
  assert.equal(s.overload, null);
  const gone = reduce(deepFreeze(s), { type: "agent_removed", agent: "a10" });
  assert.deepEqual(agentIds(gone), ["a1", "a2"]);
  assert.equal(reduce(gone, { type: "agent_removed", agent: "zz" }), gone);   // unknown: unchanged
  s = reduce(deepFreeze(s), { type: "event", event: { t: 1, kind: "overload", message: "overloaded: 45 %", speed: 0.45 } });
  assert.deepEqual(s.overload, { message: "overloaded: 45 %", speed: 0.45 });
  s = reduce(deepFreeze(s), { type: "event", event: { t: 2, kind: "overload_end", message: "caught up" } });
  assert.equal(s.overload, null);
  // after a reload, the event list tells whether the hub is still overloaded
  const again = reduce(initialState(), { ...hello, events: [{ t: 1, kind: "overload", message: "slow" }] });
  assert.equal(again.overload.message, "slow");
});

test("a database that refuses writes is said until it takes them again, after a reload too", () => {
  let s = reduce(deepFreeze(initialState()), { ...hello, store_failing: null });
  assert.equal(s.storage, null);
  s = reduce(deepFreeze(s), { type: "event", event: { t: 1, kind: "store_failed", message: "the hub's database refuses writes: disk full" } });
  assert.equal(s.storage, "the hub's database refuses writes: disk full");
  s = reduce(deepFreeze(s), { type: "event", event: { t: 2, kind: "store_ok", message: "ok again" } });
  assert.equal(s.storage, null);
  const reloaded = reduce(initialState(), { ...hello, store_failing: "log_event failed: database or disk is full" });
  assert.match(reloaded.storage, /refuses writes.*disk is full/);
});
