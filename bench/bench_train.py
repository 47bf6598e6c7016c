"""Benchmark: training a latent model here, on one core (issue 17).

Synthesises the corpus (``anamnesis corpus``: 24 files, 153 s at 48 kHz), then trains the
ConvVAE (``anamnesis train convvae``'s defaults, one torch thread, at most ``--steps``),
measuring every ``--every`` steps the multi-scale spectral distance on the held-out 15 %
of every file, against the untrained model's (the same seed's initial weights: the
yardstick, measured in the same run). It stops when the trained model is
:data:`TARGET_IMPROVEMENT` x closer. Printed: steps/s, each stage's distance and ratio, the time to the target
(target <= :data:`TARGET_SECONDS` s: MET / MISSED, exit status 1 if missed), the PCA
fidelity curve and the dimensions exported at 0.95, and the exported model's
inference ms per 2048-sample block on one thread.

    .venv/bin/python bench/bench_train.py [--steps 8000] [--every 500]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

TARGET_IMPROVEMENT = 3.0
TARGET_SECONDS = 600.0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=8000,
                        help="steps at most (the learning rate's decay spans them)")
    parser.add_argument("--every", type=int, default=500, help="steps between evaluations")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    try:
        import torch
    except ImportError:
        print("bench_train: torch is not installed (make neural); skipped")
        return 0
    from anamnesis.agents.models import create_model
    from anamnesis.hub.neural.corpus import write_corpus
    from anamnesis.hub.neural.train import train

    with tempfile.TemporaryDirectory(prefix="anamnesis-train-") as tmp:
        corpus, model = Path(tmp) / "corpus", Path(tmp) / "m.ts"
        files = write_corpus(corpus)
        print(f"train bench: ConvVAE on the generated corpus ({len(files)} files), one thread, "
              f"{args.steps} steps at most")
        result = train(corpus, model, steps=args.steps, seed=args.seed,
                       evaluate_every=args.every, stop_at=TARGET_IMPROVEMENT)
        reached = None
        for step, spent, distance in result.evaluations:
            ratio = result.distance_untrained / distance
            print(f"  {step:6d} steps  {spent:7.1f} s  held-out distance {distance:.3f} "
                  f"(untrained {result.distance_untrained:.3f}): {ratio:.2f}x")
            if reached is None and ratio >= TARGET_IMPROVEMENT:
                reached = spent
        print(f"  {result.steps_per_second:.1f} steps/s (batch 8 x 8192 samples)")
        print("  fidelity: " + " ".join(f"{f:.3f}" for f in result.fidelity))
        print(f"  exported dimensions at fidelity 0.95: {result.dims} of {len(result.fidelity)}")
        torch.set_num_threads(1)
        agent = create_model("latent", path=str(model))
        import numpy as np

        x = np.random.default_rng(0).uniform(-0.5, 0.5, 2048 * 40)
        t0 = time.process_time()
        agent.process(x)
        per_block = 1e3 * (time.process_time() - t0) / 40
        print(f"  inference {per_block:.2f} ms CPU per 2048-sample block "
              f"({per_block / (2048 / 48.0):.3f} s per s of audio)")
    ok = reached is not None and reached <= TARGET_SECONDS
    when = f"{reached:.0f} s" if reached is not None else "not within the budget"
    print(f"target {TARGET_IMPROVEMENT:g}x closer than untrained within {TARGET_SECONDS:g} s of "
          f"training: {'MET' if ok else 'MISSED'} ({when})")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
