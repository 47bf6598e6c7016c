// The listen AudioWorklet (worklet.js) run in Node with the two globals an
// AudioWorkletGlobalScope gives it (sampleRate, registerProcessor) and a stub port.
import { test } from "node:test";
import assert from "node:assert/strict";

let Processor = null;
globalThis.AudioWorkletProcessor = class {
  constructor() {
    this.port = { posted: [], onmessage: null, postMessage(m) { this.posted.push(m); } };
  }
};
globalThis.registerProcessor = (name, cls) => {
  assert.equal(name, "anamnesis-listen");
  Processor = cls;
};
globalThis.sampleRate = 48000;
await import("../worklet.js");

function make(rate) {
  globalThis.sampleRate = rate;
  return new Processor();
}

function sine(freq, rate, frames, channels = 1, amp = 0.5, start = 0) {
  const out = new Float32Array(frames * channels);
  for (let i = 0; i < frames; i++) {
    for (let c = 0; c < channels; c++) out[i * channels + c] = amp * Math.sin(2 * Math.PI * freq * (start + i) / rate) * (c ? -1 : 1);
  }
  return out;
}

function run(p, quanta) {
  const left = [];
  const right = [];
  for (let q = 0; q < quanta; q++) {
    const out = [[new Float32Array(128), new Float32Array(128)]];
    p.process([], out);
    left.push(...out[0][0]);
    right.push(...out[0][1]);
  }
  return [left, right];
}

function zeroCrossings(x) {
  let n = 0;
  for (let i = 1; i < x.length; i++) if ((x[i - 1] < 0) !== (x[i] < 0)) n++;
  return n;
}

test("silence until 80 ms are buffered, then the stream plays sample-exact at the same rate", () => {
  const p = make(48000);
  const x = sine(1000, 48000, 960);          // 20 ms
  p.push({ samples: x, channels: 1, rate: 48000 });
  let [l] = run(p, 4);
  assert.ok(l.every((v) => v === 0), "not playing before the prebuffer");
  for (let k = 1; k < 5; k++) p.push({ samples: sine(1000, 48000, 960, 1, 0.5, 960 * k), channels: 1, rate: 48000 });
  const [l2, r2] = run(p, 10);
  for (let i = 0; i < 1280; i++) assert.ok(Math.abs(l2[i] - 0.5 * Math.sin(2 * Math.PI * 1000 * i / 48000)) < 1e-6, `sample ${i}`);
  assert.deepEqual(r2, l2);                   // mono on both ears
});

test("a 48 kHz stream in a 44.1 kHz context keeps its pitch (linear resampling)", () => {
  const p = make(44100);
  // 20 ms messages, as the hub sends them, each followed by the output they pay for.
  const out = [];
  let owed = 0;
  for (let k = 0; k < 50; k++) {
    p.push({ samples: sine(441, 48000, 960, 1, 0.5, 960 * k), channels: 1, rate: 48000 });
    owed += 0.02 * 44100;
    while (owed >= 128) {
      out.push(...run(p, 1)[0]);
      owed -= 128;
    }
  }
  const steady = out.slice(Math.round(0.1 * 44100));     // after the 80 ms prebuffer
  assert.ok(steady.every((v) => Math.abs(v) <= 0.5 + 1e-6));
  const freq = zeroCrossings(steady) / 2 / (steady.length / 44100);
  assert.ok(Math.abs(freq - 441) < 3, `pitch ${freq} Hz`);
  // Interpolated samples lie on the sine: compare with the ideal at the read positions.
  const rms = Math.sqrt(steady.reduce((a, v) => a + v * v, 0) / steady.length);
  assert.ok(Math.abs(rms - 0.5 / Math.SQRT2) < 0.01, `rms ${rms}`);
});

test("stereo keeps its channels; the level report is the RMS of what played", () => {
  const p = make(48000);
  p.push({ samples: sine(500, 48000, 9600, 2, 0.5), channels: 2, rate: 48000 });   // 200 ms
  const [l, r] = run(p, 40);
  for (let i = 0; i < 2000; i += 97) assert.ok(Math.abs(l[i] + r[i]) < 1e-6);
  const reports = p.port.posted;
  assert.ok(reports.length >= 1);
  const last = reports.at(-1);
  assert.ok(Math.abs(last.rms - 0.5 / Math.SQRT2) < 0.02, `rms ${last.rms}`);
  assert.ok(last.peak <= 0.5 + 1e-6 && last.peak > 0.49);
  assert.ok(last.bufferedMs >= 0);
});

test("an underrun plays silence and waits for the prebuffer again; a backlog is dropped", () => {
  const p = make(48000);
  p.push({ samples: sine(1000, 48000, 4800), channels: 1, rate: 48000 });     // 100 ms
  const [l] = run(p, 60);                      // 160 ms: runs dry after 100 ms
  assert.ok(l.slice(0, 4700).some((v) => v !== 0));
  assert.ok(l.slice(4800).every((v) => v === 0));
  p.push({ samples: sine(1000, 48000, 1000), channels: 1, rate: 48000 });     // < prebuffer
  const [l2] = run(p, 4);
  assert.ok(l2.every((v) => v === 0), "waits for 80 ms again");
  p.push({ samples: sine(1000, 48000, 48000), channels: 1, rate: 48000 });    // 1 s backlog
  run(p, 1);
  assert.ok(p.write - p.read <= 0.5 * 48000, `backlog ${(p.write - p.read) / 48} ms kept`);
});
