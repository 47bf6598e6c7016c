"""Snapshots of an agent's model in its state directory, written atomically.

Layout of a state directory (one per agent)::

    agent.lock             held (flock) while an agent runs: two agents never share it
    autosave.npz           the latest autosave (every 30 s and at shutdown)
    autosave.prev.npz      the one before: the fallback when the latest is unreadable
    snapshots/NAME.npz     named snapshots (``/snapshot NAME``, ``/recall NAME``)

A snapshot file is an uncompressed ``.npz`` (no pickles): every model state
array as ``state/KEY``, and ``meta``, a UTF-8 JSON document as bytes: format
name and version, model kind, agent id, creation time (Unix seconds), the
parameter values, and a SHA-256 digest over the state arrays. Reading checks
the zip CRCs, the JSON, the digest and that every array is finite; any failure
is a :class:`CorruptSnapshot`.

Writing: a temporary file in the same directory, ``fsync``, ``rename`` over the
target, ``fsync`` of the directory — a crash leaves the old file or the new
one, never a mix. An autosave first moves the current autosave to
``autosave.prev.npz``. Temporary files left by a crash are removed on open.

The async methods run file work in the loop's default executor (the agent
process installs one named thread for it); the ``*_sync`` functions do the
work and are what tests and tools call directly.
"""

from __future__ import annotations

import asyncio
import errno
import fcntl
import hashlib
import json
import logging
import os
import re
import time
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

FORMAT = "anamnesis-snapshot"
VERSION = 1
AUTOSAVE = "autosave.npz"
AUTOSAVE_PREV = "autosave.prev.npz"
LOCK_FILE = "agent.lock"
SNAPSHOT_DIR = "snapshots"
#: Named snapshots kept at most (names come from the network: the table is bounded).
MAX_SNAPSHOTS = 1000
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
_TMP_SUFFIX = ".tmp"


class CorruptSnapshot(ValueError):
    """A snapshot file exists but cannot be trusted (truncated, bad CRC or digest, ...)."""


class StateDirLocked(RuntimeError):
    """Another agent process holds the state directory."""


@dataclass
class Snapshot:
    """One saved model state: arrays, parameter values, and where they came from."""

    state: dict[str, np.ndarray]
    params: dict[str, object]
    model: str
    agent: str
    created: float = field(default_factory=time.time)

    def digest(self) -> str:
        """SHA-256 (hex) over the state's keys, dtypes, shapes and bytes, in key order."""
        h = hashlib.sha256()
        for key in sorted(self.state):
            arr = _c_order(self.state[key])
            h.update(key.encode())
            h.update(str(arr.dtype.str).encode())
            h.update(repr(arr.shape).encode())
            h.update(arr.tobytes())
        return h.hexdigest()


def check_name(name: object) -> str:
    """A valid snapshot name, or ``ValueError``: 1–64 of letters, digits, ``_ . -``,
    starting with a letter or digit."""
    if not isinstance(name, str) or not NAME_RE.match(name):
        raise ValueError(f"snapshot name must be 1-64 letters, digits, '_', '.' or '-', "
                         f"starting with a letter or digit; got {name!r}")
    return name


def _json_value(value: object) -> object:
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    return value


def _c_order(value: object) -> np.ndarray:
    """``value`` as a C-ordered array of its own shape. (``np.ascontiguousarray``
    would turn a 0-d array, such as Unlearn's ``write_pos``, into shape (1,): the
    snapshot could then not be applied to the model it came from.)"""
    return np.asarray(value, order="C")


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_snapshot_sync(path: Path, snap: Snapshot, *, rotate_to: Path | None = None) -> None:
    """Write ``snap`` to ``path`` atomically; with ``rotate_to``, first move the
    current ``path`` there (keeping one previous generation)."""
    meta = {
        "format": FORMAT, "version": VERSION, "model": snap.model, "agent": snap.agent,
        "created": snap.created, "digest": snap.digest(),
        "params": {k: _json_value(v) for k, v in snap.params.items()},
    }
    arrays = {f"state/{k}": _c_order(v) for k, v in snap.state.items()}
    arrays["meta"] = np.frombuffer(json.dumps(meta).encode("utf-8"), dtype=np.uint8)
    tmp = path.with_name(f".{path.name}.{os.getpid()}{_TMP_SUFFIX}")
    try:
        with open(tmp, "wb") as f:
            np.savez(f, **arrays)
            f.flush()
            os.fsync(f.fileno())
        if rotate_to is not None and path.exists():
            os.replace(path, rotate_to)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)


def read_snapshot_sync(path: Path) -> Snapshot:
    """Read and verify a snapshot file. ``FileNotFoundError`` if it does not exist,
    :class:`CorruptSnapshot` (a ``ValueError``) if it cannot be trusted."""
    try:
        with np.load(path, allow_pickle=False) as data:
            files = list(data.files)
            if "meta" not in files:
                raise CorruptSnapshot("no meta record")
            meta_bytes = data["meta"].tobytes()
            state = {name[len("state/"):]: np.array(data[name]) for name in files
                     if name.startswith("state/")}
    except FileNotFoundError:
        raise
    except CorruptSnapshot:
        raise
    except (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile,
            zipfile.LargeZipFile) as exc:
        raise CorruptSnapshot(f"unreadable ({type(exc).__name__}: {exc})") from None
    try:
        meta = json.loads(meta_bytes.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CorruptSnapshot(f"meta is not JSON ({exc})") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise CorruptSnapshot("not an anamnesis snapshot")
    if meta.get("version") != VERSION:
        raise CorruptSnapshot(f"unsupported snapshot version {meta.get('version')!r}")
    params = meta.get("params")
    if not isinstance(params, dict) or not isinstance(meta.get("model"), str):
        raise CorruptSnapshot("meta lacks params or model")
    for key, arr in state.items():
        if arr.dtype.kind not in "fiub" or not np.all(np.isfinite(arr)):
            raise CorruptSnapshot(f"state {key!r} is not finite numbers")
    snap = Snapshot(state=state, params=params, model=meta["model"],
                    agent=str(meta.get("agent", "")), created=float(meta.get("created", 0.0)))
    if snap.digest() != meta.get("digest"):
        raise CorruptSnapshot("digest mismatch (the state arrays changed after saving)")
    return snap


class SnapshotStore:
    """The snapshot files of one agent in ``state_dir`` (see the module doc).

    :meth:`open` creates the directory, takes the lock (:class:`StateDirLocked`
    if another agent holds it), removes stale temporary files and lists the
    named snapshots; :meth:`close` releases the lock.
    """

    def __init__(self, state_dir: Path, *, agent_id: str, model_kind: str) -> None:
        self.state_dir = Path(state_dir)
        self.agent_id = agent_id
        self.model_kind = model_kind
        self._lock_fd: int | None = None
        self._names: set[str] = set()

    @property
    def snapshot_dir(self) -> Path:
        return self.state_dir / SNAPSHOT_DIR

    def open(self) -> None:
        """Prepare the directory and lock it for this process (blocking file work:
        call before the loop serves anything, or in an executor)."""
        self.snapshot_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.state_dir / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(fd)
            if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise StateDirLocked(f"another agent is running with the state directory "
                                     f"{self.state_dir}") from None
            raise
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._lock_fd = fd
        for directory in (self.state_dir, self.snapshot_dir):
            for stale in directory.glob(f".*{_TMP_SUFFIX}"):
                stale.unlink(missing_ok=True)
        self._names = {p.stem for p in self.snapshot_dir.glob("*.npz") if NAME_RE.match(p.stem)}

    def close(self) -> None:
        """Release the lock (idempotent)."""
        fd, self._lock_fd = self._lock_fd, None
        if fd is not None:
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)

    def names(self) -> list[str]:
        """Named snapshots, sorted (from memory: no disk access)."""
        return sorted(self._names)

    def _path(self, name: str) -> Path:
        return self.snapshot_dir / f"{check_name(name)}.npz"

    def _snapshot(self, state: Mapping[str, np.ndarray], params: Mapping[str, object]) -> Snapshot:
        return Snapshot(state={k: np.array(v) for k, v in state.items()}, params=dict(params),
                        model=self.model_kind, agent=self.agent_id)

    async def save(self, name: str, state: Mapping[str, np.ndarray],
                   params: Mapping[str, object]) -> None:
        """Write the named snapshot ``name`` (``ValueError`` for a bad name or a full table)."""
        path = self._path(name)
        if name not in self._names and len(self._names) >= MAX_SNAPSHOTS:
            raise ValueError(f"too many snapshots ({MAX_SNAPSHOTS}); delete some from "
                             f"{self.snapshot_dir}")
        snap = self._snapshot(state, params)
        await asyncio.get_running_loop().run_in_executor(None, write_snapshot_sync, path, snap)
        self._names.add(name)

    async def load(self, name: str) -> Snapshot:
        """Read the named snapshot; ``ValueError`` if unknown, corrupt, or of another model."""
        path = self._path(name)
        if name not in self._names:
            raise ValueError(f"unknown snapshot {name!r}")
        try:
            snap = await asyncio.get_running_loop().run_in_executor(
                None, read_snapshot_sync, path)
        except FileNotFoundError:
            self._names.discard(name)
            raise ValueError(f"unknown snapshot {name!r} (its file is gone)") from None
        except CorruptSnapshot as exc:
            raise ValueError(f"snapshot {name!r} is corrupt: {exc}") from None
        self._check_model(snap, f"snapshot {name!r}")
        return snap

    def _check_model(self, snap: Snapshot, what: str) -> None:
        if snap.model != self.model_kind:
            raise ValueError(f"{what} holds a {snap.model} model; this agent runs "
                             f"{self.model_kind}")

    def save_autosave_sync(self, state: Mapping[str, np.ndarray],
                           params: Mapping[str, object]) -> None:
        """Write the autosave, keeping the previous one as ``autosave.prev.npz``."""
        write_snapshot_sync(self.state_dir / AUTOSAVE, self._snapshot(state, params),
                            rotate_to=self.state_dir / AUTOSAVE_PREV)

    async def save_autosave(self, state: Mapping[str, np.ndarray],
                            params: Mapping[str, object]) -> None:
        """:meth:`save_autosave_sync` in the executor."""
        await asyncio.get_running_loop().run_in_executor(
            None, self.save_autosave_sync, dict(state), dict(params))

    def load_autosave_sync(self) -> Snapshot | None:
        """The newest readable autosave of this model (latest, else previous), or None.

        Every file skipped is logged in one line saying why; nothing raises.
        """
        for filename in (AUTOSAVE, AUTOSAVE_PREV):
            path = self.state_dir / filename
            try:
                snap = read_snapshot_sync(path)
                self._check_model(snap, str(path))
            except FileNotFoundError:
                continue
            except ValueError as exc:  # CorruptSnapshot or another model
                log.error("cannot resume from %s: %s; trying the previous generation",
                          path, exc)
                continue
            return snap
        return None
