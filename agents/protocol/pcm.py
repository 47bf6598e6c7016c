"""Linear PCM encoding into preallocated buffers (the RTP sender's hot path).

:func:`encode_into` writes big-endian L24 or L16 (RFC 3190 / RFC 3551) of a float block
into a uint8 array with the same rounding, clipping and NaN → 0 as the numpy codec
:func:`anamnesis.agents.protocol.rtp.encode_l24`; one numba kernel, no allocation."""

from __future__ import annotations

import numpy as np
from numba import njit

from anamnesis.agents.protocol.rtp import (
    SAMPLE_BYTES,
)

# ---------------------------------------------------------------------------
# PCM encoding into preallocated buffers (the sender's hot path)
# ---------------------------------------------------------------------------


@njit(cache=True)
def _encode_pcm(x, n, out, width):
    """Big-endian PCM of ``x[:n]`` into the uint8 array ``out``: rounding, clipping
    and NaN → 0 exactly as :func:`anamnesis.agents.protocol.rtp.encode_l24` / ``encode_l16``."""
    if width == 3:
        scale, lo, hi = 8388608.0, -8388608.0, 8388607.0
    else:
        scale, lo, hi = 32768.0, -32768.0, 32767.0
    for i in range(n):
        v = x[i]
        if v != v:
            c = 0
        else:
            r = np.rint(v * scale)
            if r < lo:
                r = lo
            elif r > hi:
                r = hi
            c = int(r)
        if c < 0:
            c += 1 << (8 * width)
        if width == 3:
            out[3 * i] = (c >> 16) & 0xFF
            out[3 * i + 1] = (c >> 8) & 0xFF
            out[3 * i + 2] = c & 0xFF
        else:
            out[2 * i] = (c >> 8) & 0xFF
            out[2 * i + 1] = c & 0xFF


def encode_into(x: np.ndarray, n: int, out: np.ndarray, encoding: str = "L24") -> int:
    """Encode ``x[:n]`` (float64) into the uint8 array ``out``; returns the byte count."""
    width = SAMPLE_BYTES[encoding]
    _encode_pcm(x, n, out, width)
    return n * width


__all__ = ["encode_into"]
