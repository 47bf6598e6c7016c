"""Scopes and spectra of the agents' outputs: binary WebSocket frames for the dashboard.

The driver of the mode (:mod:`anamnesis.hub.clock.simulated`: every block each driven agent
returns; :mod:`anamnesis.hub.clock.deployed`: each leased agent's ``out`` stream) hands every block
of outputs to a :class:`ScopeTap`, which keeps the last ``frames`` samples of
each agent. The API takes them at most :data:`SCOPE_HZ` times a second
(:meth:`ScopeTap.take`: only agents with new samples since the last take) and
sends them to every WebSocket client as one binary message: a run of frames,
each a 16-byte header and a float32 payload, all little-endian::

    offset  size  field
    0       4     magic b"ANSF"
    4       1     kind: 1 = scope, 2 = spectrum
    5       1     format version (1)
    6       2     agent index (u16): position in the installation's agent list
                  (the ``scope.agents`` list of the WebSocket ``hello``)
    8       4     count of float32 values that follow (u32)
    12      4     sample rate, Hz (u32)
    16      4*n   payload, float32

* **scope**: the agent's last ``frames`` output samples, oldest first (full scale 1).
* **spectrum**: the magnitude of the Hann-windowed rFFT of those samples,
  ``frames // 2 + 1`` bins, bin ``k`` at ``k * sample_rate / frames`` Hz, scaled so
  that a sine of amplitude A centred on a bin reads A (and a constant C reads C at bin 0).

:func:`decode_frames` reads a message back (tests, scripts).
"""

from __future__ import annotations

import struct
from collections.abc import Sequence

import numpy as np

MAGIC = b"ANSF"
VERSION = 1
SCOPE, SPECTRUM = 1, 2
HEADER = struct.Struct("<4sBBHII")
#: Pushes per second (at most).
SCOPE_HZ = 30.0
#: Samples per scope (a power of two: the spectrum's length).
SCOPE_FRAMES = 1024


class ScopeTap:
    """The last ``frames`` output samples of each of ``agent_ids`` (see the module docstring)."""

    def __init__(self, agent_ids: Sequence[str], sample_rate: int,
                 frames: int = SCOPE_FRAMES) -> None:
        if frames < 2 or frames & (frames - 1):
            raise ValueError(f"frames must be a power of two >= 2; got {frames}")
        self.agent_ids = tuple(agent_ids)
        self.sample_rate = int(sample_rate)
        self.frames = int(frames)
        self._buf = np.zeros((self.frames, len(self.agent_ids)), dtype=np.float32)
        self._pos = 0                      # the next row to write (the oldest sample)
        self._fresh = np.zeros(len(self.agent_ids), dtype=bool)
        window = np.hanning(self.frames)
        self._window = window
        self._scale = np.full(self.frames // 2 + 1, 2.0 / window.sum())
        self._scale[[0, -1]] = 1.0 / window.sum()    # DC and Nyquist have no mirror image

    def add(self, block: np.ndarray, columns: Sequence[int]) -> None:
        """Keep a block of outputs (frames x agents, graph order); ``columns`` are the
        agents that really played it (the others' columns are silence, not news)."""
        n = block.shape[0]
        if n >= self.frames:
            self._buf[:] = block[n - self.frames:]
            self._pos = 0
        else:
            first = min(n, self.frames - self._pos)
            self._buf[self._pos:self._pos + first] = block[:first]
            self._buf[:n - first] = block[first:]
            self._pos = (self._pos + n) % self.frames
        self._fresh[list(columns)] = True

    def take(self) -> bytes | None:
        """A scope and a spectrum frame of every agent with samples since the last take
        (one binary message), or None when there is nothing new."""
        fresh = np.flatnonzero(self._fresh)
        if fresh.size == 0:
            return None
        self._fresh[:] = False
        ordered = np.roll(self._buf[:, fresh], -self._pos, axis=0)
        spectra = np.abs(np.fft.rfft(ordered * self._window[:, None], axis=0)) \
            * self._scale[:, None]
        parts = []
        for j, index in enumerate(fresh):
            scope = np.ascontiguousarray(ordered[:, j], dtype="<f4")
            spectrum = spectra[:, j].astype("<f4")
            parts += [HEADER.pack(MAGIC, SCOPE, VERSION, int(index), scope.size, self.sample_rate),
                      scope.tobytes(),
                      HEADER.pack(MAGIC, SPECTRUM, VERSION, int(index), spectrum.size,
                                  self.sample_rate),
                      spectrum.tobytes()]
        return b"".join(parts)


def decode_frames(data: bytes) -> list[tuple[int, int, int, np.ndarray]]:
    """``(kind, agent index, sample rate, float32 payload)`` of every frame in a message;
    ``ValueError`` if it is not a run of whole frames."""
    out = []
    offset = 0
    while offset < len(data):
        if len(data) - offset < HEADER.size:
            raise ValueError(f"a truncated header at byte {offset}")
        magic, kind, version, index, count, rate = HEADER.unpack_from(data, offset)
        if magic != MAGIC or version != VERSION or kind not in (SCOPE, SPECTRUM):
            raise ValueError(f"not a scope frame at byte {offset}")
        offset += HEADER.size
        end = offset + 4 * count
        if end > len(data):
            raise ValueError(f"a truncated payload at byte {offset}")
        out.append((kind, index, rate, np.frombuffer(data, dtype="<f4", count=count,
                                                     offset=offset).copy()))
        offset = end
    return out


__all__ = ["HEADER", "MAGIC", "SCOPE", "SCOPE_FRAMES", "SCOPE_HZ", "SPECTRUM", "ScopeTap",
           "decode_frames"]
