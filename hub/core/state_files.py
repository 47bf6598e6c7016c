"""The small files of a hub's state directory, beside its database.

* ``token`` — the API token (mode 0600), created on the first start
  (:func:`load_or_create_token`); never logged.
* ``installation.key`` — the hub's own installation key when none was given and it
  starts local agents (:func:`own_key`), so the agents it starts are signed.
* ``adopted.json`` — the agents adopted by hand, each with its host (:class:`AdoptedFile`: read at
  start, rewritten atomically after each adoption, bursts coalesced).

Writes are atomic (:func:`write_atomic`: a temporary file, fsync, rename).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import secrets
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

ADOPTED_FILE = "adopted.json"
TOKEN_FILE = "token"
KEY_FILE = "installation.key"


def load_or_create_token(state_dir: Path) -> str:
    """The API token of ``STATE_DIR/token``, created (mode 0600) on the first start."""
    path = Path(state_dir) / TOKEN_FILE
    try:
        token = path.read_text().strip()
        if token:
            return token
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    token = secrets.token_urlsafe(32)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(token + "\n")
    os.chmod(path, 0o600)
    return token


def own_key(path: Path) -> bytes:
    """The hub's own installation key at ``path`` (created, mode 0600, on first use)."""
    from anamnesis.agents.protocol.key import generate_key, load_key

    return load_key(path) if path.exists() else generate_key(path)


def write_atomic(path: Path, text: str) -> None:
    """Replace ``path`` with ``text`` all at once (a crash leaves the old or the new)."""
    tmp = path.with_suffix(path.suffix + ".tmp")
    with open(tmp, "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


class AdoptedFile:
    """``STATE_DIR/adopted.json``: the agents adopted by hand, id -> the host each was
    adopted at. ``ids()`` gives the current mapping when a write runs; ``track`` counts
    the writer among the hub's pending writes."""

    def __init__(self, state_dir: Path, counts: Counter[str], *,
                 ids: Callable[[], dict[str, str | None]],
                 track: Callable[[asyncio.Task[Any]], None]) -> None:
        self.path = Path(state_dir) / ADOPTED_FILE
        self.counts = counts
        self._ids = ids
        self._track = track
        self._dirty = False
        self._writer: asyncio.Task[None] | None = None

    def read(self) -> dict[str, str | None]:
        """id -> host of the file ({} if missing; unreadable: {} and one error line). A
        file of an older hub (a list of ids) gives hosts of None: each is pinned to the
        host it next announces from."""
        try:
            data = json.loads(self.path.read_text())
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as exc:
            log.error("%s unreadable (%s); agents adopted by hand must be adopted again",
                      self.path, exc)
            return {}
        if isinstance(data, list):
            return {str(x): None for x in data}
        if isinstance(data, dict):
            return {str(k): None if v is None else str(v) for k, v in data.items()}
        return {}

    def save(self) -> None:
        """Write the adopted ids in the background: one writer at a time, the newest set
        last (a burst of adoptions is coalesced). Loop-only."""
        self._dirty = True
        if self._writer is not None and not self._writer.done():
            return

        async def writer() -> None:
            loop = asyncio.get_running_loop()
            while self._dirty:
                self._dirty = False
                try:
                    await loop.run_in_executor(None, write_atomic, self.path,
                                               json.dumps(dict(sorted(self._ids().items()))))
                except OSError as exc:
                    self.counts["store_errors"] += 1
                    log.error("writing %s failed: %s", ADOPTED_FILE, exc)

        self._writer = asyncio.create_task(writer(), name="hub-save-adopted")
        self._track(self._writer)


__all__ = ["ADOPTED_FILE", "KEY_FILE", "TOKEN_FILE", "AdoptedFile", "load_or_create_token",
           "own_key", "write_atomic"]
