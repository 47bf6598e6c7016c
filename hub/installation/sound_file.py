"""The sound file a ``file`` source plays, checked from its header before a config is
accepted (the engine's :class:`~anamnesis.hub.engine.sources.FileSignal` reads it)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from anamnesis.hub.installation.config import MAX_FILE_SECONDS


def check_sound_file(args: Mapping[str, Any], sample_rate: int, base: Path) -> tuple[Path, int | None, bool]:
    """Check a file source's ``args`` (path, loop, channel) by reading the file's header.

    Returns (absolute path, 0-based channel or None for a mono mix, loop).
    Raises ``ValueError`` naming the problem (missing, unreadable, wrong rate,
    too long, no such channel).
    """
    import soundfile

    raw = args.get("path")
    if not isinstance(raw, str) or not raw:
        raise ValueError("path (the sound file, relative to the config) is required")
    p = Path(raw).expanduser()
    p = p if p.is_absolute() else base / p
    loop = args.get("loop", False)
    if not isinstance(loop, bool):
        raise ValueError(f"loop must be true or false; got {loop!r}")
    try:
        info = soundfile.info(str(p))
    except (RuntimeError, OSError) as exc:  # soundfile's LibsndfileError is a RuntimeError
        raise ValueError(f"cannot read sound file {p}: {exc}") from None
    if info.samplerate != sample_rate:
        raise ValueError(f"sound file {p} is at {info.samplerate} Hz, the installation at "
                         f"{sample_rate} Hz: resample it (e.g. sox in.wav -r {sample_rate} out.wav)")
    if info.frames / info.samplerate > MAX_FILE_SECONDS:
        raise ValueError(f"sound file {p} is {info.frames / info.samplerate:.0f} s long; "
                         f"at most {MAX_FILE_SECONDS:.0f} s are held in memory")
    channel = args.get("channel")
    if channel is not None:
        if not isinstance(channel, int) or isinstance(channel, bool) or not 1 <= channel <= info.channels:
            raise ValueError(f"channel must be a whole number in [1, {info.channels}] for {p}; "
                             f"got {channel!r}")
        return p, channel - 1, loop
    return p, None, loop


__all__ = ["check_sound_file"]
