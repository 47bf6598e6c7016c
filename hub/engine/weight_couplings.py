"""Couplings of learned parameters between agents (seed 000 §2.1.2: "any external
process that manipulates buffers can be used to interfere, couple or process the
learned parameters").

A coupling (``[[coupling]]``, :class:`anamnesis.hub.installation.config.Coupling`)
joins two agents whose flat weight vectors (their ``/weights``: the model's
``WEIGHT_KEYS`` concatenated) have one shape. At each of its times it reads both
vectors, ``w_from`` and ``w_to``, and writes back, on the weights ``M`` of its mask
(all by default; the others are left alone)::

    carried(w) = gain * w + noise * N(0, 1)            (one draw per weight and time)

    blend      w_to   <- (1 - kappa) w_to + kappa carried(w_from)         w_from unchanged
    exchange   w_to   <- carried(w_from),   w_from <- carried(w_to)       (a swap; kappa unused)
    mean       w_to   <- w_to   + kappa/2 (carried(w_from) - w_to)
               w_from <- w_from + kappa/2 (carried(w_to)   - w_from)      (kappa 1: both at their mean)

Both reads precede both writes, so ``exchange`` swaps exactly. With ``blend`` the
distance ``|w_to - w_from|`` shrinks by ``1 - kappa`` per time while neither agent
learns; learning pulls the two apart again between times, and the balance of the two
is the coupling's sound.

Times. A coupling of ``rate_hz`` acts at the first block boundary at or after each
``n / rate_hz`` seconds (n = 1, 2, ...) of the installation's clock: at the boundary
before block ``k`` when ``floor(k B r / sr) > floor((k-1) B r / sr)`` (B frames per
block). With ``rate_hz`` above ``sr / B`` it acts at every boundary. In a rehearsal
(:class:`anamnesis.hub.clock.rehearse.Rehearsal`) that is exact and the noise is
seeded (the rehearsal seed and the coupling's index), so a rehearsal with couplings
is bit-identical per seed; what the agents read and write is rounded to float32, as
OSC carries it live.

Everything here is pure and allocates only what it returns; the hub's live driver
(:mod:`anamnesis.hub.fleet.couplings`) and the rehearsal call it.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

#: The coupling's reach into the flat weight vector: the indices of its mask.
Mask = tuple[int, ...] | None


def carried(w: np.ndarray, gain: float, noise: float, rng: np.random.Generator | None
            ) -> np.ndarray:
    """What a coupling carries of ``w``: ``gain * w`` plus Gaussian ``noise`` (a copy)."""
    out = gain * np.asarray(w, dtype=np.float64)
    if noise > 0.0:
        if rng is None:
            raise ValueError("a coupling with noise needs a random generator")
        out += noise * rng.standard_normal(out.shape)
    return out


def couple(mode: str, kappa: float, w_from: np.ndarray, w_to: np.ndarray, *,
           gain: float = 1.0, noise: float = 0.0, mask: Mask = None,
           rng: np.random.Generator | None = None) -> tuple[np.ndarray | None, np.ndarray]:
    """One time of a coupling (module docstring): the new ``(w_from, w_to)``, ``w_from``
    None when the mode leaves it alone. Raises ``ValueError`` for vectors of different
    shapes or a mask beyond them."""
    a = np.asarray(w_from, dtype=np.float64)
    b = np.asarray(w_to, dtype=np.float64)
    if a.shape != b.shape:
        raise ValueError(f"weight vectors of {a.size} and {b.size} values cannot be coupled")
    idx = slice(None) if mask is None else np.asarray(mask, dtype=np.intp)
    if mask is not None and (len(mask) == 0 or max(mask) >= a.size):
        raise ValueError(f"the mask reaches weight {max(mask, default=-1)} of a vector of "
                         f"{a.size}")
    if mode == "blend":
        new_b = b.copy()
        new_b[idx] = (1.0 - kappa) * b[idx] + kappa * carried(a[idx], gain, noise, rng)
        return None, new_b
    if mode == "exchange":
        new_a, new_b = a.copy(), b.copy()
        new_b[idx] = carried(a[idx], gain, noise, rng)
        new_a[idx] = carried(b[idx], gain, noise, rng)
        return new_a, new_b
    if mode == "mean":
        new_a, new_b = a.copy(), b.copy()
        half = 0.5 * kappa
        new_b[idx] = b[idx] + half * (carried(a[idx], gain, noise, rng) - b[idx])
        new_a[idx] = a[idx] + half * (carried(b[idx], gain, noise, rng) - a[idx])
        return new_a, new_b
    raise ValueError(f"unknown coupling mode {mode!r}; modes: blend, exchange, mean")


def due(block_index: int, block: int, sample_rate: int, rate_hz: float) -> bool:
    """True if a coupling of ``rate_hz`` acts at the boundary before block ``block_index``
    (block 0 starts the piece: nothing has been learnt to carry yet)."""
    if block_index <= 0:
        return False
    per_block = block * rate_hz / sample_rate
    return math.floor(block_index * per_block) > math.floor((block_index - 1) * per_block)


def distance(w_from: np.ndarray, w_to: np.ndarray) -> float:
    """The Euclidean distance between two weight vectors (what a blend shrinks)."""
    return float(np.linalg.norm(np.asarray(w_to, float) - np.asarray(w_from, float)))


Read = Callable[[str], np.ndarray]
Write = Callable[[str, np.ndarray], None]


class BlockCouplings:
    """The installation's couplings applied at exact block boundaries (a rehearsal's).

    ``couplings`` are the config's; ``read(agent_id)`` gives an agent's flat weights
    and ``write(agent_id, w)`` sets them, both between two blocks. ``seed`` seeds the
    noise of coupling ``i`` as ``(seed, i)``. :meth:`check` raises ``ValueError`` naming
    the first coupling whose agents' weight vectors differ in shape.
    """

    def __init__(self, couplings: Sequence[Any], *, sample_rate: int, block: int,
                 seed: int = 0) -> None:
        self.couplings = tuple(couplings)
        self.sample_rate = int(sample_rate)
        self.block = int(block)
        self._rngs = [np.random.default_rng([int(seed), i]) for i in range(len(self.couplings))]
        self.applied = [0] * len(self.couplings)

    def check(self, read: Read) -> None:
        """Every coupling joins vectors of one shape, its mask within them."""
        for k in self.couplings:
            a, b = read(k.source), read(k.target)
            if a.shape != b.shape:
                raise ValueError(
                    f"coupling {k.source} ~> {k.target}: {k.source} has {a.size} weights and "
                    f"{k.target} {b.size}; a coupling joins agents whose weight vectors have "
                    "one shape (the same model and sizes)")
            if k.mask is not None and max(k.mask) >= a.size:
                raise ValueError(f"coupling {k.source} ~> {k.target}: the mask reaches weight "
                                 f"{max(k.mask)} of {a.size}")

    def step(self, block_index: int, read: Read, write: Write) -> int:
        """Apply every coupling due before block ``block_index``; how many acted."""
        acted = 0
        for i, k in enumerate(self.couplings):
            if not due(block_index, self.block, self.sample_rate, k.rate_hz):
                continue
            new_from, new_to = couple(k.mode, k.kappa, read(k.source), read(k.target),
                                      gain=k.gain, noise=k.noise, mask=k.mask,
                                      rng=self._rngs[i])
            write(k.target, new_to)
            if new_from is not None:
                write(k.source, new_from)
            self.applied[i] += 1
            acted += 1
        return acted
