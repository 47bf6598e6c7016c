"""``anamnesis corpus OUT_DIR`` and ``anamnesis train convvae CORPUS --out MODEL.ts``.

The corpus is :mod:`anamnesis.hub.neural.corpus` (numpy); training and export are
:mod:`anamnesis.hub.neural.train` and :mod:`~anamnesis.hub.neural.convvae` (torch, the
``[neural]`` extra: without it the command says how to install it, exit status 2).
A bad request (a missing or empty corpus, a corpus too short, nothing to resume) is one
line on stderr and exit status 2. The model is written under a temporary name and
renamed when complete.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

#: What ``anamnesis train`` can train (``convvae``: :mod:`anamnesis.hub.neural.convvae`).
TRAINABLE = ("convvae",)


def add_corpus_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("out_dir", type=Path, help="folder to write the WAV files into (created)")
    p.add_argument("--sample-rate", type=int, default=48000, help="Hz (default 48000)")
    p.add_argument("--seed", type=int, default=0, help="the noise patch's seed (default 0)")


def run_corpus(args: argparse.Namespace) -> int:
    from anamnesis.hub.neural.corpus import write_corpus

    if not 8000 <= args.sample_rate <= 192000:
        print("error: --sample-rate must be in 8000..192000", file=sys.stderr)
        return 2
    files = write_corpus(args.out_dir, args.sample_rate, args.seed)
    print(f"wrote {len(files)} files into {args.out_dir}")
    return 0


def add_train_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("kind", choices=TRAINABLE, help="what to train")
    p.add_argument("corpus", type=Path, help="a folder of sound files (anamnesis corpus makes one)")
    p.add_argument("--out", type=Path, required=True, help="the nn~ model to write (.ts)")
    p.add_argument("--steps", type=int, default=3000, help="optimiser steps (default 3000)")
    p.add_argument("--batch", type=int, default=8, help="crops per step (default 8)")
    p.add_argument("--crop", type=int, default=8192, help="samples per crop (default 8192)")
    p.add_argument("--lr", type=float, default=2e-3, help="Adam's learning rate at the start")
    p.add_argument("--lr-end", type=float, default=2e-4,
                   help="the learning rate at the last step (exponential decay)")
    p.add_argument("--beta", type=float, default=0.01, help="the KL weight after the warm-up")
    p.add_argument("--warmup", type=int, default=1000, help="steps over which beta rises from 0")
    p.add_argument("--latent", type=int, default=16, help="latent dimensions before the PCA")
    p.add_argument("--capacity", type=int, default=8, help="channels of the first layer")
    p.add_argument("--fidelity", type=float, default=0.95,
                   help="share of the latent variance the exported dimensions keep")
    p.add_argument("--sample-rate", type=int, default=48000, help="the corpus's rate (Hz)")
    p.add_argument("--seed", type=int, default=0, help="the same seed gives the same model")
    p.add_argument("--checkpoint", type=Path,
                   help="the training state, saved every 250 steps (default: OUT.ckpt)")
    p.add_argument("--resume", action="store_true", help="continue from --checkpoint")
    p.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def run_train(args: argparse.Namespace) -> int:
    from anamnesis.agents.models.nn_convention import NeuralExtraMissing, import_torch

    try:
        import_torch()
    except NeuralExtraMissing as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    from tqdm import tqdm

    from anamnesis.hub.neural.train import train

    checkpoint = args.checkpoint or args.out.with_name(args.out.name + ".ckpt")
    bar = None     # drawn from the first step on: a bad corpus is one line, no bar

    def progress(step: int, loss: float) -> None:
        nonlocal bar
        if args.no_progress:
            return
        if bar is None:
            bar = tqdm(total=args.steps, initial=step - 1, unit="step", desc=args.kind,
                       file=sys.stderr)
        bar.n = step
        bar.set_postfix(loss=f"{loss:.3f}", refresh=False)
        bar.update(0)
    try:
        result = train(args.corpus, args.out, steps=args.steps, batch=args.batch, crop=args.crop,
                       lr=args.lr, lr_end=args.lr_end, beta=args.beta, warmup=args.warmup,
                       capacity=args.capacity, latent=args.latent, sample_rate=args.sample_rate, seed=args.seed,
                       fidelity=args.fidelity, checkpoint=checkpoint, resume=args.resume,
                       threads=args.threads, progress=progress)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    finally:
        if bar is not None:
            bar.close()
    print(f"{result.out}: {result.dims} of {len(result.fidelity)} latent dimensions at "
          f"fidelity {args.fidelity:g}; held-out spectral distance {result.distance_trained:.3f} "
          f"(untrained {result.distance_untrained:.3f}: {result.improvement:.2f}x closer); "
          f"{result.steps_per_second:.1f} steps/s")
    print("fidelity: " + " ".join(f"{f:.3f}" for f in result.fidelity))
    return 0


__all__ = ["TRAINABLE", "add_corpus_arguments", "add_train_arguments", "run_corpus", "run_train"]
