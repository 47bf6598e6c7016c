// Parameter specs and the log/linear slider scales (params.js).
import { test } from "node:test";
import assert from "node:assert/strict";
import { formatNumber, fromSlider, SLIDER_STEPS, specsOf, toSlider } from "../params.js";

const lr = { name: "lr", kind: "float", min: 0, max: 50, scale: "log" };

test("a log slider spans decades in equal steps and keeps 0 at position 0", () => {
  assert.equal(toSlider(0, lr), 0);
  assert.equal(fromSlider(0, lr), 0);
  assert.equal(toSlider(50, lr), SLIDER_STEPS);
  assert.ok(Math.abs(fromSlider(SLIDER_STEPS, lr) - 50) < 1e-9);
  // One decade is the same distance anywhere on the slider.
  const d1 = toSlider(0.01, lr) - toSlider(0.001, lr);
  const d2 = toSlider(1, lr) - toSlider(0.1, lr);
  assert.ok(Math.abs(d1 - d2) <= 1, `${d1} vs ${d2}`);
  for (const v of [1e-4, 0.003, 0.1, 0.37, 1, 7.5, 49]) {
    const back = fromSlider(toSlider(v, lr), lr);
    // 1000 steps over 6 decades: each step is a ratio of about 1.4 %.
    assert.ok(Math.abs(back / v - 1) < 0.01, `${v} -> ${back}`);
  }
});

test("a log slider with a positive minimum starts there; a linear one is linear", () => {
  const ts = { kind: "float", min: 1e-3, max: 1e3, scale: "log" };
  assert.ok(Math.abs(fromSlider(0, ts) - 1e-3) < 1e-12);
  assert.equal(toSlider(1, ts), SLIDER_STEPS / 2);
  const gain = { kind: "float", min: -60, max: 12, scale: "lin" };
  assert.equal(toSlider(-60, gain), 0);
  assert.equal(toSlider(12, gain), SLIDER_STEPS);
  assert.equal(fromSlider(SLIDER_STEPS / 2, gain), -24);
  assert.equal(toSlider(100, gain), SLIDER_STEPS);    // clamped
  assert.equal(toSlider(NaN, gain), 0);
  assert.equal(toSlider(0.5, { kind: "float", min: 0, max: 1, scale: "lin" }), SLIDER_STEPS / 2);
});

test("specs from the hub are normalised and ordered; without specs they are guessed", () => {
  const given = specsOf({ specs: { gain: { kind: "float", min: -60, max: 12, scale: "lin" },
                                   ridge: { kind: "float", min: 0, max: 1, scale: "log" },
                                   lr: lr, shape: { kind: "choice", choices: ["a", "b"] } } });
  assert.deepEqual(given.map((s) => s.name), ["lr", "ridge", "shape", "gain", "mute"]);
  assert.equal(given.find((s) => s.name === "ridge").scale, "log");   // as the hub says
  assert.equal(given.find((s) => s.name === "gain").scale, "lin");
  assert.deepEqual(given.slice(-2).map((s) => s.name), ["gain", "mute"]);
  const guessed = specsOf({ params: { lr: 0.1, ridge: 1e-4, learn: 1, act_mix: [0, 0], activation: "tanh", q: 2 } });
  const byName = Object.fromEntries(guessed.map((s) => [s.name, s]));
  assert.equal(byName.lr.scale, "log");
  assert.equal(byName.learn.kind, "bool");
  assert.equal(byName.act_mix.kind, "array");
  assert.equal(byName.activation.kind, "choice");
  assert.equal(byName.q.kind, "float");
  assert.equal(byName.gain.unit, "dB");
  assert.deepEqual(guessed.slice(0, 2).map((s) => s.name), ["lr", "ridge"]);
});

test("numbers display with 4 significant digits", () => {
  assert.equal(formatNumber(0.123456), "0.1235");
  assert.equal(formatNumber(1e-5), "1.00e-5");
  assert.equal(formatNumber(0), "0");
  assert.equal(formatNumber(-12.5), "-12.5");
});

test("parameters read in the installation's words; arrays say what their number is", async () => {
  const { formatValue, labelOf } = await import("../params.js");
  assert.equal(labelOf({ name: "lr" }), "learning rate");
  assert.equal(labelOf({ name: "lambda" }), "learning rate λ");
  assert.equal(labelOf({ name: "lambda_" }), "learning rate λ");
  assert.equal(labelOf({ name: "act_mix" }), "sine share of each hidden unit");
  assert.equal(labelOf({ name: "act_mix[3]" }), "sine share of each hidden unit [3]");
  assert.equal(labelOf({ name: "mu" }), "own cost μ");
  assert.equal(labelOf({ name: "unheard_of" }), "unheard_of");
  assert.equal(formatValue([0, 0.5, 1, 0.5], { unit: "" }), "mean 0.5 of 4");
  assert.equal(formatValue([10, 20], { unit: "samples" }), "mean 15 samples of 2");
});

test("a parameter's OSC addresses: its name without Python's _, then its aliases", async () => {
  const { oscAddresses, oscName } = await import("../params.js");
  assert.deepEqual(oscAddresses({ name: "lambda_", aliases: ["lr"] }), ["/lambda", "/lr"]);
  assert.deepEqual(oscAddresses({ name: "lr" }), ["/lr"]);
  assert.deepEqual(oscAddresses({ name: "lr", aliases: ["lr"] }), ["/lr"]);   // once
  assert.equal(oscName({ name: "lambda_" }), "lambda");
});
