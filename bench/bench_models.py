"""Speed of the learning synths: ns per sample, real-time factor, and the ratio to a
plain numpy per-sample implementation of the same maths, measured in the same run.

    .venv/bin/python bench/bench_models.py [--seconds 1] [--repeats 7] [--block 256]

Each figure is the best of ``--repeats`` runs (the fastest run is the one least
disturbed by other processes on the machine), processing ``--seconds`` of a 200 Hz
sine at 48 kHz in blocks of ``--block`` frames, as an agent does. The numba
kernels are compiled (or loaded from cache) before timing. Targets (issue 2):
AutoRegNN 12x8 <= 250 ns/sample and >= 50x the numpy reference; the bank
<= 120 ns per agent-sample.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from anamnesis.agents.models.autoregnn import AutoRegNN, AutoRegNN2  # noqa: E402
from anamnesis.agents.models.autoregnn_bank import AutoRegNNBank  # noqa: E402

SR = 48000


def numpy_reference(x: np.ndarray, n: int = 12, h: int = 8, lr: float = 0.1,
                    ridge: float = 1e-4, seed: int = 0) -> np.ndarray:
    """DESIGN's AutoRegNN, one numpy expression per equation, one Python iteration per sample."""
    rng = np.random.default_rng(seed)
    W1, b1 = rng.uniform(-1, 1, (h, n)), rng.uniform(-1, 1, h)
    W2, b2 = rng.uniform(-1, 1, h), rng.uniform(-1, 1)
    c = np.exp(-1.0 / 2.0 ** np.arange(1, n + 1))
    T, G = np.zeros(n), np.zeros(n)
    y = np.empty(len(x))
    for t in range(len(x)):
        z = W1 @ T + b1
        a = np.tanh(z)
        yhat = np.tanh(W2 @ a + b2)
        g = 2 * (yhat - x[t]) * (1 - yhat ** 2)
        delta = g * W2 * (1 - a ** 2)
        W2 = W2 - lr * (g * a + 2 * ridge * W2)
        b2 = b2 - lr * g
        W1 = W1 - lr * (np.outer(delta, T) + 2 * ridge * W1)
        b1 = b1 - lr * delta
        s = x[t]
        for k in range(n):
            T[k] = (1 - c[k]) * s + c[k] * T[k]
            s = T[k]
        y[t] = np.tanh(W2 @ np.tanh(W1 @ G + b1) + b2)
        s = y[t]
        for k in range(n):
            G[k] = (1 - c[k]) * s + c[k] * G[k]
            s = G[k]
    return y


def best_time(run, repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        run()
        best = min(best, time.perf_counter() - t0)
    return best


def in_blocks(model, x: np.ndarray, out: np.ndarray, block: int):
    def run():
        for pos in range(0, len(x), block):
            model.process(x[pos:pos + block], out=out[pos:pos + block])
    return run


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=1.0, help="audio per timed run (s)")
    parser.add_argument("--repeats", type=int, default=7, help="timed runs; the best counts")
    parser.add_argument("--block", type=int, default=256, help="frames per process() call")
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    args = parser.parse_args(argv)
    if not (args.seconds > 0 and args.repeats > 0 and args.block > 0):
        parser.error("--seconds, --repeats and --block must be positive")

    frames = int(round(args.seconds * SR))
    x = np.sin(2 * np.pi * 200.0 * np.arange(frames) / SR)
    rows: list[dict[str, object]] = []

    def record(name: str, seconds: float, samples: int, agents: int = 1) -> dict[str, object]:
        ns = seconds / samples * 1e9
        row = {"name": name, "ns_per_sample": ns, "ns_per_agent_sample": ns / agents,
               "realtime_factor": (1e9 / SR) / ns, "agents": agents}
        rows.append(row)
        return row

    # the plain numpy implementation: a short run is plenty at ~30 us per sample
    ref_frames = min(frames, 2400)
    numpy_reference(x[:50])
    ref = record("numpy reference 12x8 (per-sample numpy)",
                 best_time(lambda: numpy_reference(x[:ref_frames]), max(1, args.repeats // 3)),
                 ref_frames)

    out = np.empty(frames)
    for name, mix in (("AutoRegNN 12x8", 0.0), ("AutoRegNN 12x8, act_mix 1 (sine)", 1.0)):
        m = AutoRegNN(input_size=12, hidden_size=8)
        m.set_param("act_mix", mix)
        m.process(x[:64])
        record(name, best_time(in_blocks(m, x, out, args.block), args.repeats), frames)

    pair = AutoRegNN2(input_size=12, hidden_size=8)
    x2 = np.ascontiguousarray(np.stack([x, np.sign(x)], axis=1))
    pair.process(x2[:64])
    record("AutoRegNN2 12x8", best_time(in_blocks(pair, x2, out, args.block), args.repeats), frames)

    for agents in (8, 32):
        bank = AutoRegNNBank(agents, input_size=12, hidden_size=8)
        xb = np.ascontiguousarray(np.repeat(x[:, None], agents, axis=1))
        outb = np.empty_like(xb)
        bank.process(xb[:64])
        record(f"AutoRegNNBank {agents} x 12x8",
               best_time(in_blocks(bank, xb, outb, args.block), args.repeats), frames, agents)

    print(f"anamnesis model benchmark - {platform.processor() or platform.machine()}, "
          f"{os.cpu_count()} CPUs, Python {platform.python_version()}, "
          f"numpy {np.__version__}, numba {__import__('numba').__version__}")
    print(f"{args.seconds:g} s of audio at {SR} Hz in blocks of {args.block} frames, "
          f"best of {args.repeats} runs\n")
    print(f"{'model':40s} {'ns/sample':>10s} {'ns/agent-sample':>16s} {'x real time':>12s} "
          f"{'x numpy':>9s}")
    for row in rows:
        speedup = ref["ns_per_sample"] / row["ns_per_agent_sample"]  # type: ignore[operator]
        row["speedup_vs_numpy"] = speedup
        print(f"{row['name']:40s} {row['ns_per_sample']:10.0f} {row['ns_per_agent_sample']:16.1f} "
              f"{row['realtime_factor']:12.1f} {speedup:9.1f}")
    single = rows[1]
    banks = [r for r in rows if r["agents"] > 1]
    print("\ntargets: AutoRegNN 12x8 <= 250 ns/sample: "
          f"{'met' if single['ns_per_sample'] <= 250 else 'MISSED'}; >= 50x numpy: "
          f"{'met' if single['speedup_vs_numpy'] >= 50 else 'MISSED'}; bank <= 120 ns per "
          f"agent-sample: {'met' if all(r['ns_per_agent_sample'] <= 120 for r in banks) else 'MISSED'}")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
