"""Recording the installation (simulated mode): every agent's output, one channel each,
to ``STATE_DIR/recordings/NAME.wav`` through the driver's writer; the hub's event log
says when it starts and stops."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from anamnesis.hub.core.errors import Conflict, HubError


def record_start(hub: Any, name: object) -> dict[str, Any]:
    """Start recording to ``STATE_DIR/recordings/NAME.wav``; ``HubError`` for a bad name,
    ``Conflict`` (the driver's reason) when the mode cannot record."""
    if hub.driver is None:
        raise Conflict("recording needs an installation: start the hub with its config")
    if not isinstance(name, str) or not 1 <= len(name) <= 64 or not all(
            c.isalnum() or c in "-_." for c in name) or name.startswith("."):
        raise HubError("a recording name has 1 to 64 letters, digits, '-', '_' or '.'")
    path = hub.state_dir / "recordings" / f"{name}.wav"
    try:
        hub.driver.record_start(path)
    except (RuntimeError, OSError) as exc:   # recording already, or the disk refuses
        raise Conflict(str(exc)) from None
    hub.emit("record_start", f"recording to {path.name}", file=path.name)
    return {"recording": path.name}


async def record_stop(hub: Any) -> dict[str, Any]:
    """Stop recording; the file's name, frames and seconds (and ``error``: why writing
    stopped early, a full disk; the file then holds what was written)."""
    if hub.driver is None:
        raise Conflict("not recording")
    try:
        info = await hub.driver.record_stop()
    except RuntimeError as exc:
        raise Conflict(str(exc)) from None
    info["path"] = Path(info["path"]).name
    said = f"recorded {info['seconds']:.1f} s to {info['path']}"
    if info["error"] is not None:
        said += f", then stopped writing: {info['error']}"
    hub.emit("record_stop", said, **info)
    return info


__all__ = ["record_start", "record_stop"]
