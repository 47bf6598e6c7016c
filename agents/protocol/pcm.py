"""Linear PCM payloads (RFC 3190 L24, RFC 3551 L16): the one codec both sides speak.

Payloads are big-endian two's complement, one channel (our streams are mono;
several channels would interleave). Conversions to and from float64:

* ``float -> int``: ``round(x * 2**(bits-1))`` clipped to ``[-2**(bits-1),
  2**(bits-1) - 1]``; NaN becomes 0, ±Inf clips. So +1.0 maps to the largest
  code (one step below full scale), as ffmpeg and most DAWs do.
* ``int -> float``: ``code / 2**(bits-1)``, exact; ``decode(encode(decode(p))) ==
  decode(p)`` for every payload, and :func:`quantize` is the value a float makes
  after one trip over the wire.

One kernel of each direction: :func:`encode_pcm` writes a block into a uint8 array,
:func:`pcm_sample` reads one sample (numba inlines it into every kernel that decodes
straight into its own state: the agent's block rings, the jitter buffer) and
:func:`decode_pcm` a block. :func:`encode_into` is the senders' allocation-free call;
:func:`encode`, :func:`decode` and :func:`quantize` wrap the kernels in bytes for
everything off the audio path.

(Numba caches a kernel by its own file: after editing :func:`pcm_sample`, clear the
``__pycache__`` of the modules that inline it.)
"""

from __future__ import annotations

import numpy as np
from numba import njit

from anamnesis.agents.protocol.errors import ProtocolError

#: Bytes per sample of each payload encoding.
SAMPLE_BYTES = {"L24": 3, "L16": 2}


# ---------------------------------------------------------------------------
# Kernels
# ---------------------------------------------------------------------------


@njit(cache=True, nogil=True)
def encode_pcm(x, n, out, width):
    """Big-endian PCM of ``x[:n]`` (float64) into the uint8 array ``out``, ``width``
    bytes a sample (3: L24, 2: L16); rounding, clipping and NaN → 0 as the module says."""
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


@njit(cache=True, nogil=True, inline="always")
def pcm_sample(payload, k, width):
    """Sample ``k`` of the big-endian PCM in the uint8 array ``payload`` (``width`` bytes
    a sample), as a float in [-1, 1)."""
    if width == 3:
        j = 3 * k
        v = (np.int64(payload[j]) << 16) | (np.int64(payload[j + 1]) << 8) | np.int64(payload[j + 2])
        if v >= 8388608:
            v -= 16777216
        return v * (1.0 / 8388608.0)
    j = 2 * k
    v = (np.int64(payload[j]) << 8) | np.int64(payload[j + 1])
    if v >= 32768:
        v -= 65536
    return v * (1.0 / 32768.0)


@njit(cache=True, nogil=True)
def decode_pcm(payload, n, width, out):
    """``n`` samples of big-endian PCM from the uint8 array ``payload`` into ``out[:n]``."""
    for k in range(n):
        out[k] = pcm_sample(payload, k, width)


# ---------------------------------------------------------------------------
# Calls
# ---------------------------------------------------------------------------


def encode_into(x: np.ndarray, n: int, out: np.ndarray, encoding: str = "L24") -> int:
    """Encode ``x[:n]`` (float64) into the uint8 array ``out``; returns the byte count."""
    width = SAMPLE_BYTES[encoding]
    encode_pcm(x, n, out, width)
    return n * width


def _width(encoding: str) -> int:
    try:
        return SAMPLE_BYTES[encoding]
    except KeyError:
        raise ValueError(f"unknown encoding {encoding!r}; use L24 or L16") from None


def encode(samples: np.ndarray, encoding: str) -> bytes:
    """Float samples (frames,), nominal range [-1, 1], as ``encoding`` ("L24", "L16") bytes."""
    width = _width(encoding)
    x = np.ascontiguousarray(samples, dtype=np.float64)
    if x.ndim != 1:
        raise ValueError(f"samples must be one-dimensional (frames,); got shape {x.shape}")
    out = np.empty(x.size * width, dtype=np.uint8)
    encode_pcm(x, x.size, out, width)
    return out.tobytes()


def decode(payload: bytes | bytearray | memoryview, encoding: str,
           out: np.ndarray | None = None) -> np.ndarray:
    """``encoding`` bytes as float64 (frames,) in [-1, 1); into ``out`` if given (float64,
    at least frames long; the filled prefix is returned). A payload that is not a whole
    number of samples raises :class:`~anamnesis.agents.protocol.errors.ProtocolError`."""
    width = _width(encoding)
    raw = np.frombuffer(payload, dtype=np.uint8)
    if raw.size % width:
        raise ProtocolError(f"{encoding} payload of {raw.size} bytes is not a whole number of samples")
    n = raw.size // width
    if out is None:
        out = np.empty(n)
    elif out.dtype != np.float64 or out.ndim != 1 or out.shape[0] < n:
        raise ValueError(f"out must be float64 with room for {n} frames")
    decode_pcm(raw, n, width, out)
    return out[:n]


def quantize(samples: np.ndarray, encoding: str = "L24") -> np.ndarray:
    """What ``samples`` become after one trip over the wire (float64, same shape):
    the in-process reference for bit-exact comparisons with a link."""
    x = np.asarray(samples, dtype=np.float64)
    return decode(encode(x.ravel(), encoding), encoding).reshape(x.shape)


def warm_up() -> None:
    """Compile (or load from cache) the kernels, for both encodings, off the audio path."""
    x = np.zeros(8)
    out = np.zeros(24, dtype=np.uint8)
    for encoding in SAMPLE_BYTES:
        encode_into(x, 8, out, encoding)
        decode(encode(x, encoding), encoding, out=x)


__all__ = ["SAMPLE_BYTES", "decode", "decode_pcm", "encode", "encode_into", "encode_pcm",
           "pcm_sample", "quantize", "warm_up"]
