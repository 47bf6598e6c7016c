"""What an agent hears: ``--input mic|preset|silence``.

An agent on a sound card hears its microphone. An agent with none (the null clock:
a rehearsal on a laptop, a first try of the README) would hear digital silence, and
a model that learns from silence plays silence; so it can hear its preset's own
input signal instead (the seed's ``SinOsc.ar(200)`` for ``sine200``), rendered once
and played in a loop:

* ``mic``: the sound card's input channel (``--in-channel``); on the null clock,
  silence (there is no microphone);
* ``preset``: the preset's first input signal (:func:`preset_input`), the null
  clock's default when the agent has a preset with an input; a preset of several
  inputs gives its first (the live engine feeds one signal to every input channel);
* ``silence``: zeros.

With ``--audio hub`` the hub sends the input, and ``--input`` does not apply. In
deployed mode the hub's ``in`` stream is added to whichever input this is.

:class:`LoopedSignal` plays a render on the audio thread with one numba kernel over
preallocated state: no allocation, no lock, no I/O.
"""

from __future__ import annotations

import numpy as np
from numba import njit

#: Seconds of a preset's input rendered for the loop: a whole number of periods of
#: every sine of a whole number of hertz (so the loop is seamless; a noise input repeats
#: every 10 s), 3.8 MB at 48 kHz.
LOOP_SECONDS = 10.0


@njit(cache=True, nogil=True)
def _loop_into(buf, pos, out, n):
    """``out[:n]`` from ``buf`` read in a loop from ``pos[0]`` (advanced)."""
    p = pos[0]
    size = buf.shape[0]
    for k in range(n):
        out[k] = buf[p]
        p += 1
        if p == size:
            p = 0
    pos[0] = p


class LoopedSignal:
    """A rendered signal (``samples``, float64 (frames,)) played in a loop: calling it
    fills a block (float64, contiguous) on the audio thread."""

    def __init__(self, samples: np.ndarray, description: str) -> None:
        buf = np.ascontiguousarray(samples, dtype=np.float64)
        if buf.ndim != 1 or buf.size == 0 or not np.all(np.isfinite(buf)):
            raise ValueError("a looped signal needs finite samples (frames,)")
        self._buf = buf
        self._pos = np.zeros(1, dtype=np.int64)
        self.description = description

    def __call__(self, block: np.ndarray) -> None:
        _loop_into(self._buf, self._pos, block, block.shape[0])

    def warm_up(self) -> None:
        """Compile (or load from cache) the kernel, off the audio path."""
        pos = self._pos[0]
        self(np.zeros(8))
        self._pos[0] = pos


def preset_input(preset: str | None, sample_rate: int, *, seed: int = 0,
                 seconds: float = LOOP_SECONDS) -> LoopedSignal | None:
    """The preset's first input signal, ``seconds`` long, as a :class:`LoopedSignal`;
    None without a preset or when the preset has no input."""
    if preset is None:
        return None
    from anamnesis.agents.recipe import preset_signals

    signals = preset_signals(preset, sample_rate, seed=seed)
    if not signals:
        return None
    kind, signal = signals[0]
    frames = max(1, round(seconds * sample_rate))
    return LoopedSignal(signal.next(frames), f"preset {preset}'s input ({kind})")


__all__ = ["LOOP_SECONDS", "LoopedSignal", "preset_input"]
