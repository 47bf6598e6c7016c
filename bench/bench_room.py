"""Benchmark: the simulated room's acoustic coupling — 8 speakers to 8 mics plus the
listener's two ears (10 × 8 responses of 0.5 s, 48 kHz) — convolved at 256-frame
blocks by ``MatrixConvolver`` (93.75 → 94 partitions per response).

Reported per sample type: mean, p50 and p99 ms per block (``time.perf_counter``
around each ``process``), CPU ms per block (``time.process_time``) and the mean as a
percentage of one core (the block period is 5.33 ms); also the time to compute the
responses (image sources, off the audio path). Target (issue 7): ≤ 1.2 ms per block.
The live path uses float32 (half the memory traffic of the 94-partition MAC);
float64 is shown for reference. Exit status 1 if float32 misses the target.

    .venv/bin/python bench/bench_room.py [--seconds 10] [--block 256]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from anamnesis.hub.engine.convolve import MatrixConvolver
from anamnesis.hub.engine.room import Room

SR = 48000
TARGET_MS = 1.2


def octophonic_positions(size):
    """Eight speakers on a ring around the room's centre, a mic 0.5 m inside each."""
    cx, cy = size[0] / 2, size[1] / 2
    angles = np.arange(8) * 2 * np.pi / 8
    speakers = np.stack(
        [cx + 2.4 * np.cos(angles), cy + 1.9 * np.sin(angles), np.full(8, 1.6)], 1
    )
    mics = np.stack(
        [cx + 1.9 * np.cos(angles), cy + 1.4 * np.sin(angles), np.full(8, 1.4)], 1
    )
    return speakers, mics, [cx, cy - 0.5, 1.7]


def bench(irs: np.ndarray, block: int, seconds: float, dtype) -> dict:
    conv = MatrixConvolver(irs.astype(dtype), block, dtype=dtype)
    rng = np.random.default_rng(0)
    x = rng.normal(0.0, 0.3, (block, irs.shape[1])).astype(dtype)
    out = np.zeros((block, irs.shape[0]), dtype=dtype)
    for _ in range(50):
        conv.process(x, out)
    n = max(int(seconds * SR / block), 100)
    wall = np.empty(n)
    cpu0 = time.process_time()
    for k in range(n):
        t0 = time.perf_counter()
        conv.process(x, out)
        wall[k] = time.perf_counter() - t0
    cpu = (time.process_time() - cpu0) / n
    period = block / SR
    return {
        "mean_ms": wall.mean() * 1e3,
        "p50_ms": np.percentile(wall, 50) * 1e3,
        "p99_ms": np.percentile(wall, 99) * 1e3,
        "cpu_ms": cpu * 1e3,
        "core_pct": 100 * wall.mean() / period,
        "parts": conv.n_parts,
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--seconds", type=float, default=10.0, help="audio seconds per case"
    )
    ap.add_argument("--block", type=int, default=256, help="frames per block")
    args = ap.parse_args()

    room = Room(
        (8.0, 6.0, 3.5), rt60_s=0.8, max_order=40, max_len_s=0.5, sample_rate=SR
    )
    speakers, mics, listener = octophonic_positions(room.size_m)
    t0 = time.perf_counter()
    irs = room.coupling_responses(speakers, mics, listener)
    print(
        f"responses {irs.shape} (mics+ears, speakers, samples), order {room.order}: "
        f"{time.perf_counter() - t0:.2f} s to compute"
    )

    ok = True
    for dtype in (np.float32, np.float64):
        r = bench(irs, args.block, args.seconds, dtype)
        mark = ""
        if dtype is np.float32:
            ok = r["mean_ms"] <= TARGET_MS
            mark = f"  target ≤ {TARGET_MS} ms: {'met' if ok else 'MISSED'}"
        print(
            f"{np.dtype(dtype).name:8s} block {args.block} ({r['parts']} partitions): "
            f"mean {r['mean_ms']:.3f} ms  p50 {r['p50_ms']:.3f}  p99 {r['p99_ms']:.3f}  "
            f"cpu {r['cpu_ms']:.3f} ms  = {r['core_pct']:.1f} % of a core{mark}"
        )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
