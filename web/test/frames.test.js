// Binary frame decoders (frames.js) against hand-built frames, and the throttle (util.js).
import { test } from "node:test";
import assert from "node:assert/strict";
import { decodeListen, decodeScopes, encodeListen, SCOPE, SPECTRUM } from "../frames.js";
import { backoff, throttle } from "../util.js";

function scopeFrame(kind, index, values, rate = 48000) {
  const buf = new ArrayBuffer(16 + 4 * values.length);
  const v = new DataView(buf);
  "ANSF".split("").forEach((c, i) => v.setUint8(i, c.charCodeAt(0)));
  v.setUint8(4, kind);
  v.setUint8(5, 1);
  v.setUint16(6, index, true);
  v.setUint32(8, values.length, true);
  v.setUint32(12, rate, true);
  values.forEach((x, i) => v.setFloat32(16 + 4 * i, x, true));
  return new Uint8Array(buf);
}

function concat(...parts) {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let o = 0;
  for (const p of parts) { out.set(p, o); o += p.length; }
  return out.buffer;
}

test("a run of scope and spectrum frames decodes in order", () => {
  const msg = concat(scopeFrame(SCOPE, 0, [0.5, -0.25]), scopeFrame(SPECTRUM, 0, [1, 2, 3]),
                     scopeFrame(SCOPE, 7, [], 44100));
  const frames = decodeScopes(msg);
  assert.deepEqual(frames.map((f) => [f.kind, f.index, f.rate, [...f.data]]),
    [[SCOPE, 0, 48000, [0.5, -0.25]], [SPECTRUM, 0, 48000, [1, 2, 3]], [SCOPE, 7, 44100, []]]);
});

test("malformed scope messages throw, naming where", () => {
  const good = scopeFrame(SCOPE, 0, [1, 2]);
  assert.throws(() => decodeScopes(good.slice(0, 20).buffer), /truncated scope payload at byte 16/);
  assert.throws(() => decodeScopes(concat(good, good.slice(0, 5))), /truncated scope header at byte 24/);
  const bad = good.slice();
  bad[0] = 0x58;
  assert.throws(() => decodeScopes(bad.buffer), /not a scope frame at byte 0/);
  const kind = good.slice();
  kind[4] = 3;
  assert.throws(() => decodeScopes(kind.buffer), /not a scope frame/);
});

test("listen frames round-trip (int16, full scale 32767) and reject bad input", () => {
  const samples = Float32Array.from([0, 0.5, -0.5, 1, -1, 0.25]);
  const buf = encodeListen({ channels: 2, rate: 48000, seq: 9, hubTimeMs: 1.7e12 + 0.5, samples });
  assert.equal(buf.byteLength, 28 + 12);
  const f = decodeListen(buf);
  assert.equal(f.channels, 2);
  assert.equal(f.frames, 3);
  assert.equal(f.seq, 9);
  assert.equal(f.rate, 48000);
  assert.equal(f.hubTimeMs, 1.7e12 + 0.5);
  f.samples.forEach((x, i) => assert.ok(Math.abs(x - samples[i]) <= 0.5 / 32767 + 1e-7, `${i}: ${x}`));
  assert.throws(() => decodeListen(buf.slice(0, 30)), /truncated listen payload/);
  assert.throws(() => decodeListen(buf.slice(0, 10)), /truncated listen header/);
  const wrong = new Uint8Array(buf.slice(0));
  wrong[4] = 2;
  assert.throws(() => decodeListen(wrong.buffer), /not a listen frame/);
});

test("throttle: the first call goes at once, a burst makes one more call with the last value", () => {
  let now = 0;
  const timers = [];
  const calls = [];
  const t = throttle((v) => calls.push([now, v]), 100, {
    now: () => now, setTimer: (f, ms) => { timers.push([now + ms, f]); return timers.length; }, clearTimer: () => {} });
  t(1);
  now = 10; t(2);
  now = 50; t(3);
  assert.deepEqual(calls, [[0, 1]]);
  assert.equal(timers.length, 1);
  now = timers[0][0];
  timers[0][1]();
  assert.deepEqual(calls, [[0, 1], [100, 3]]);
  now = 120; t(4);
  t.flush();
  assert.deepEqual(calls.at(-1), [120, 4]);
  t.flush();
  assert.equal(calls.length, 3);     // nothing pending: flush does nothing
});

test("backoff doubles from 250 ms to at most 5 s, with ±20 % jitter", () => {
  assert.equal(backoff(0, () => 0.5), 250);
  assert.equal(backoff(3, () => 0.5), 2000);
  assert.equal(backoff(10, () => 0.5), 5000);
  assert.equal(backoff(10, () => 1), 6000);
  assert.equal(backoff(0, () => 0), 200);
});

test("a listen frame carries the hub's panic flag", () => {
  const samples = new Float32Array([0, 0, 0, 0]);
  const flagged = decodeListen(encodeListen({ channels: 2, rate: 48000, seq: 7, hubTimeMs: 1, samples, panic: true }));
  assert.equal(flagged.panic, true);
  assert.equal(decodeListen(encodeListen({ channels: 2, rate: 48000, seq: 8, hubTimeMs: 1, samples })).panic, false);
});
