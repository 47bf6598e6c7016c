"""Training a :class:`~anamnesis.hub.neural.convvae.ConvVAE` on a corpus, on one core.

:func:`train` reads the corpus (:func:`~anamnesis.hub.neural.corpus.read_corpus`), holds
out the last :data:`HELD_OUT` of every file, and runs Adam on random crops of the rest:
loss = multi-scale spectral distance + beta x KL, beta rising linearly from 0 over
``warmup`` steps (RAVE's warm-up: first a good autoencoder, then a regular latent).
Every ``checkpoint_every`` steps the whole state (model, optimiser, step, both random
generators) is written atomically to ``checkpoint``; ``resume=True`` continues from it,
and gives the same model as an uninterrupted run. A seed gives the same model, bit for
bit, on one machine (torch on the CPU with one thread is deterministic for these ops).

At the end: the held-out spectral distance of the trained model against the untrained
one (the same seed's initial weights), RAVE's PCA "fidelity" of the held-out latents
(the cumulative share of variance of the principal axes), the number of dimensions at
``fidelity`` (default 0.95), and the nn~ export (:func:`~anamnesis.hub.neural.convvae.export`).
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

#: Share of every corpus file held out for evaluation and the PCA (its end).
HELD_OUT = 0.15
#: Held-out crops per evaluation.
EVAL_CROPS = 16


@dataclass
class TrainResult:
    """What a training run measured (the CLI prints it, the benchmark reports it)."""

    steps: int
    seconds: float
    steps_per_second: float
    distance_untrained: float
    distance_trained: float
    fidelity: list[float] = field(default_factory=list)
    dims: int = 0
    out: Path | None = None
    #: (step, training seconds so far, held-out distance) at every evaluation.
    evaluations: list[tuple[int, float, float]] = field(default_factory=list)

    @property
    def improvement(self) -> float:
        """How many times closer to the held-out audio the trained model is."""
        return self.distance_untrained / max(self.distance_trained, 1e-12)


def _split(corpus: list[tuple[Path, np.ndarray]], crop: int) -> tuple[list[np.ndarray], list[np.ndarray]]:
    train, held = [], []
    for path, audio in corpus:
        cut = int(audio.shape[0] * (1.0 - HELD_OUT))
        if cut < crop or audio.shape[0] - cut < crop:
            raise ValueError(f"corpus file {path} is too short for crops of {crop} samples "
                             f"({audio.shape[0]} samples; at least {math.ceil(crop / HELD_OUT)})")
        train.append(audio[:cut])
        held.append(audio[cut:])
    return train, held


def _crops(parts: list[np.ndarray], count: int, crop: int, rng: np.random.Generator) -> np.ndarray:
    """``count`` random crops, a file chosen in proportion to its length."""
    lengths = np.array([p.shape[0] - crop for p in parts], dtype=np.float64)
    files = rng.choice(len(parts), size=count, p=(lengths + 1) / (lengths + 1).sum())
    out = np.empty((count, 1, crop), dtype=np.float32)
    for i, f in enumerate(files):
        start = int(rng.integers(0, parts[f].shape[0] - crop + 1))
        out[i, 0] = parts[f][start:start + crop]
    return out


def _atomic_save(torch, state: dict, path: Path) -> None:
    tmp = path.with_name(path.name + ".partial")
    torch.save(state, str(tmp))
    os.replace(tmp, path)


def held_out_distance(vae, held, crop: int, seed: int = 12345) -> float:
    """Mean spectral distance over :data:`EVAL_CROPS` fixed held-out crops (no sampling)."""
    import torch

    from anamnesis.hub.neural.convvae import spectral_distance

    x = torch.from_numpy(_crops(held, EVAL_CROPS, crop, np.random.default_rng(seed)))
    was = vae.training
    vae.eval()
    with torch.no_grad():
        y, _, _ = vae(x)
        d = float(spectral_distance(x, y))
    vae.train(was)
    return d


def principal_axes(vae, held, crop: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(mean (L,), axes (L, L) as rows by decreasing variance, fidelity (L,)) of the
    posterior means of the held-out audio."""
    import torch

    with torch.no_grad():
        means = []
        for part in held:
            usable = part.shape[0] // vae.ratio * vae.ratio
            m, _ = vae.posterior(torch.from_numpy(part[:usable].copy()).reshape(1, 1, -1))
            means.append(m[0].numpy())
    z = np.concatenate(means, axis=1).astype(np.float64)          # (L, frames)
    centre = z.mean(axis=1)
    cov = np.cov(z - centre[:, None])
    var, vec = np.linalg.eigh(cov)
    order = np.argsort(var)[::-1]
    var, vec = np.clip(var[order], 0.0, None), vec[:, order]
    fidelity = np.cumsum(var) / max(var.sum(), 1e-30)
    return centre, vec.T, fidelity


def dims_at(fidelity: np.ndarray, threshold: float) -> int:
    """The fewest principal axes whose share of the variance reaches ``threshold``."""
    return int(min(len(fidelity), np.searchsorted(fidelity, threshold - 1e-12) + 1))


def train(corpus_dir: str | Path, out: str | Path, *, steps: int = 3000, batch: int = 8,
          crop: int = 8192, lr: float = 2e-3, lr_end: float | None = 2e-4,
          beta: float = 0.01, warmup: int = 1000,
          capacity: int = 8, latent: int = 16, sample_rate: int = 48000, seed: int = 0,
          fidelity: float = 0.95, checkpoint: str | Path | None = None,
          checkpoint_every: int = 250, resume: bool = False, threads: int = 1,
          evaluate_every: int = 0, stop_at: float | None = None,
          progress: Callable[[int, float], None] | None = None) -> TrainResult:
    """Train and export (module docstring); ``progress(step, loss)`` after every step.
    The learning rate falls exponentially from ``lr`` to ``lr_end`` over ``steps`` (a
    function of the step alone, so a resumed run follows it too; None: constant).
    ``evaluate_every`` > 0 measures the held-out distance every that many steps (not
    counted in the training time); with ``stop_at``, training ends at the first
    evaluation at least that many times closer than the untrained model."""
    import torch

    from anamnesis.hub.neural.convvae import (
        DEFAULT_RATIOS,
        ConvVAE,
        export,
        kl_divergence,
        spectral_distance,
    )
    from anamnesis.hub.neural.corpus import read_corpus

    if steps < 0 or batch < 1 or not 0.0 < fidelity <= 1.0 or lr <= 0 or (
            lr_end is not None and lr_end <= 0):
        raise ValueError("steps must be >= 0, batch >= 1, the learning rates > 0 and "
                         "fidelity in (0, 1]")
    torch.set_num_threads(int(threads))
    ratio = math.prod(DEFAULT_RATIOS)            # ConvVAE.ratio, known before building one
    if crop % ratio:
        raise ValueError(f"crop must be a multiple of the model's ratio {ratio}")
    corpus = read_corpus(corpus_dir, sample_rate, min_seconds=2 * crop / sample_rate)
    train_parts, held = _split(corpus, crop)
    torch.manual_seed(seed)
    vae = ConvVAE(capacity, latent)
    distance_untrained = held_out_distance(vae, held, crop)
    opt = torch.optim.Adam(vae.parameters(), lr=lr)
    rng = np.random.default_rng(seed)
    start = 0
    ckpt = Path(checkpoint) if checkpoint is not None else None
    if resume:
        if ckpt is None or not ckpt.is_file():
            raise ValueError(f"nothing to resume: no checkpoint at {ckpt}")
        state = torch.load(str(ckpt), weights_only=False)
        vae.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        rng.bit_generator.state = state["numpy_rng"]
        torch.set_rng_state(state["torch_rng"])
        start = int(state["step"])
        distance_untrained = float(state["distance_untrained"])
    vae.train()
    evaluations: list[tuple[int, float, float]] = []
    done = start
    t0 = time.perf_counter()
    for step in range(start, steps):
        x = torch.from_numpy(_crops(train_parts, batch, crop, rng))
        if lr_end is not None:
            for group in opt.param_groups:
                group["lr"] = lr * (lr_end / lr) ** (step / max(1, steps))
        y, mean, logvar = vae(x)
        b = beta * min(1.0, step / warmup) if warmup > 0 else beta
        loss = spectral_distance(x, y) + b * kl_divergence(mean, logvar)
        opt.zero_grad()
        loss.backward()
        opt.step()
        if progress is not None:
            progress(step + 1, float(loss.detach()))
        done = step + 1
        if ckpt is not None and (done % checkpoint_every == 0 or done == steps):
            _atomic_save(torch, {"model": vae.state_dict(), "optimizer": opt.state_dict(),
                                 "numpy_rng": rng.bit_generator.state,
                                 "torch_rng": torch.get_rng_state(), "step": done,
                                 "distance_untrained": distance_untrained}, ckpt)
        if evaluate_every > 0 and done % evaluate_every == 0:
            paused = time.perf_counter()
            distance = held_out_distance(vae, held, crop)
            evaluations.append((done, paused - t0, distance))
            t0 += time.perf_counter() - paused           # evaluation time is not training
            if stop_at is not None and distance_untrained / distance >= stop_at:
                break
    seconds = time.perf_counter() - t0
    vae.eval()
    distance = held_out_distance(vae, held, crop)
    centre, axes, fid = principal_axes(vae, held, crop)
    dims = dims_at(fid, fidelity)
    out_path = Path(out)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_path.with_name(out_path.name + ".partial")
    export(vae, torch.from_numpy(centre.astype(np.float32)),
           torch.from_numpy(axes.astype(np.float32)), dims, sample_rate, str(tmp))
    os.replace(tmp, out_path)
    return TrainResult(done, seconds, (done - start) / seconds if seconds > 0 else 0.0,
                       distance_untrained, distance, [float(f) for f in fid], dims, out_path,
                       evaluations)


__all__ = ["HELD_OUT", "TrainResult", "dims_at", "held_out_distance", "principal_axes",
           "train"]
