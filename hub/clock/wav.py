"""Float WAV, streamed and reproducible: the rehearsal's file writer.

:class:`FloatWavWriter` writes float32 WAV (IEEE float, ``WAVE_FORMAT_EXTENSIBLE``
with no speaker mask above two channels, RF64 beyond 4 GiB) block by block, the
sizes announced in the header first. No timestamp in the header (libsndfile's
PEAK chunk has one), so equal audio gives equal bytes.
"""

from __future__ import annotations

import contextlib
import struct
from pathlib import Path

import numpy as np

# ---------------------------------------------------------------------------
# Float WAV, streamed, reproducible
# ---------------------------------------------------------------------------

_KSDATAFORMAT_IEEE_FLOAT = struct.pack("<IHH8s", 3, 0, 0x10, b"\x80\x00\x00\xaa\x00\x38\x9b\x71")
_WAVE_FORMAT_IEEE_FLOAT = 3
_WAVE_FORMAT_EXTENSIBLE = 0xFFFE
_RIFF_LIMIT = 0xFFFFFFFF


class FloatWavWriter:
    """A float32 WAV of ``channels`` x ``frames`` at ``sample_rate`` Hz, written as it comes.

    The header (written first, sizes known in advance) has no timestamp: equal audio
    gives equal bytes. Above two channels the format is WAVE_FORMAT_EXTENSIBLE with an
    empty speaker mask (the channels are an installation's speakers, not a surround
    layout); a file over 4 GiB is RF64. ``write`` takes (m, channels) blocks.
    """

    def __init__(self, path: Path, sample_rate: int, channels: int, frames: int) -> None:
        self.path = Path(path)
        self.channels = int(channels)
        self.frames = int(frames)
        self.written = 0
        data_bytes = self.frames * self.channels * 4
        if self.channels > 2:
            fmt = struct.pack("<HHIIHHHHI16s", _WAVE_FORMAT_EXTENSIBLE, self.channels, sample_rate,
                              sample_rate * 4 * self.channels, 4 * self.channels, 32, 22, 32, 0,
                              _KSDATAFORMAT_IEEE_FLOAT)
        else:
            fmt = struct.pack("<HHIIHHH", _WAVE_FORMAT_IEEE_FLOAT, self.channels, sample_rate,
                              sample_rate * 4 * self.channels, 4 * self.channels, 32, 0)
        riff_bytes = 4 + (8 + len(fmt)) + (8 + 4) + (8 + data_bytes)
        rf64 = riff_bytes > _RIFF_LIMIT
        chunks = []
        if rf64:
            riff_bytes += 8 + 28
            chunks.append(b"ds64" + struct.pack("<IQQQI", 28, riff_bytes, data_bytes,
                                                self.frames, 0))
        chunks.append(b"fmt " + struct.pack("<I", len(fmt)) + fmt)
        chunks.append(b"fact" + struct.pack("<I", 4)
                      + struct.pack("<I", _RIFF_LIMIT if rf64 else self.frames))
        chunks.append(b"data" + struct.pack("<I", _RIFF_LIMIT if rf64 else data_bytes))
        head = (b"RF64" if rf64 else b"RIFF") + struct.pack(
            "<I", _RIFF_LIMIT if rf64 else riff_bytes)
        self._file = open(self.path, "wb")   # noqa: SIM115 (open until close())
        self._file.write(head + b"WAVE" + b"".join(chunks))

    def write(self, block: np.ndarray) -> None:
        """Append (m, channels) frames (converted to little-endian float32)."""
        if block.ndim != 2 or block.shape[1] != self.channels:
            raise ValueError(f"blocks must have shape (m, {self.channels}); got {block.shape}")
        if self.written + block.shape[0] > self.frames:
            raise ValueError("more frames than the header announced")
        np.ascontiguousarray(block, dtype="<f4").tofile(self._file)
        self.written += block.shape[0]

    def abort(self) -> None:
        """Close the file without checking it (the caller removes it)."""
        with contextlib.suppress(OSError):
            self._file.close()

    def close(self) -> None:
        """Close the file; ``ValueError`` if fewer frames came than announced."""
        self._file.close()
        if self.written != self.frames:
            raise ValueError(f"{self.path}: {self.written} of {self.frames} frames written")


__all__ = ["FloatWavWriter"]
