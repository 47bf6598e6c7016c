"""The hub's memory: one SQLite database (WAL) in the state directory.

What it keeps (DESIGN "Persistence"), so a hub restarted after a crash restores
everything:

========================  =====================================================
``installation``          the installation config as edited (TOML text, one row)
``routes``                the routing as edited live: routes and rings, by id,
                          in order (a JSON spec each — what ``anamnesis.hub.installation.config`` writes)
``agent_params``          every agent's parameters (name -> JSON value)
``snapshots``             model states as ``.npz`` bytes (no pickles), with the
                          model kind and a SHA-256 checked on every read
``scenes`` /              named sets of every agent's parameters and a snapshot
``scene_agents``          reference each
``events``                the event log, bounded: the newest ``max_events`` rows
                          and none older than ``max_event_age_days``
``schema_migrations``     which schema versions were applied, and when
========================  =====================================================

Choices:

* **WAL** journal with ``synchronous=FULL``: readers never wait for the writer
  (the dashboard can read while the hub writes), and a committed write survives
  a power cut — galleries lose power. Foreign keys are on.
* **Versioned schema.** ``MIGRATIONS`` is an ordered list; opening a database
  applies the missing ones, each in its own transaction, recorded in
  ``schema_migrations`` and ``PRAGMA user_version``. A database from a newer
  anamnesis is refused rather than damaged.
* **Atomic multi-row writes**: every public write is one transaction
  (``BEGIN IMMEDIATE`` ... ``COMMIT``, rolled back on any error).
* **Clear errors**: a damaged file raises :class:`StoreCorrupt`, a database
  locked by another process :class:`StoreLocked` (after ``busy_timeout_s``), a
  database from the future :class:`StoreError` — each saying what to do.
* **Bounded**: a snapshot holds at most :data:`MAX_SNAPSHOT_BYTES`; an event's
  message and data are truncated to :data:`MAX_EVENT_TEXT` characters.

:class:`Store` is the synchronous core (one connection, used from one thread);
:class:`~anamnesis.hub.core.async_store.AsyncStore` wraps it for the hub's event
loop. The schema's migrations are :mod:`anamnesis.hub.core.store_schema`.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import math
import os
import sqlite3
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from anamnesis.hub.core.store_schema import MIGRATIONS, Migration

DB_NAME = "hub.sqlite3"
#: Largest snapshot accepted (bytes of npz).
MAX_SNAPSHOT_BYTES = 64 << 20
#: Longest event message / serialised event data kept (characters).
MAX_EVENT_TEXT = 4000
#: Thread name prefix of the async wrapper's worker.
THREAD_NAME = "anamnesis-store"

T = TypeVar("T")


class StoreError(RuntimeError):
    """The hub's database cannot be used; the message says why and what to do."""


class StoreCorrupt(StoreError):
    """The database file is damaged or is not a SQLite database."""


class StoreLocked(StoreError):
    """Another process holds the database locked."""


# ---------------------------------------------------------------------------
# Values
# ---------------------------------------------------------------------------


def encode_state(state: Mapping[str, np.ndarray]) -> bytes:
    """A model state (name -> array) as uncompressed ``.npz`` bytes (no pickles)."""
    buffer = io.BytesIO()
    arrays = {}
    for name, value in state.items():
        arr = np.asarray(value)
        if arr.dtype == object:
            raise ValueError(f"state {name!r} is not a numeric array")
        arrays[name] = arr
    np.savez(buffer, **arrays)
    return buffer.getvalue()


def decode_state(data: bytes) -> dict[str, np.ndarray]:
    """The arrays of ``.npz`` bytes made by :func:`encode_state` (ValueError if unreadable)."""
    try:
        with np.load(io.BytesIO(data), allow_pickle=False) as npz:
            return {name: npz[name] for name in npz.files}
    except Exception as exc:  # noqa: BLE001 — zipfile and numpy raise many types for bad bytes
        raise ValueError(f"not a readable npz snapshot: {type(exc).__name__}: {exc}") from None


@dataclass(frozen=True)
class SnapshotInfo:
    """A stored snapshot without its bytes."""

    id: int
    agent_id: str
    name: str
    model: str
    created_at: float     # Unix seconds
    sha256: str
    size: int             # bytes


@dataclass(frozen=True)
class SceneAgent:
    """One agent in a scene to save: its parameters, and either new snapshot bytes
    (``state``, npz; stored as snapshot ``scene/NAME`` of the agent, model ``model``)
    or a reference to an existing snapshot (``snapshot_id``), or neither."""

    params: Mapping[str, Any] = field(default_factory=dict)
    state: bytes | None = None
    model: str | None = None
    snapshot_id: int | None = None


@dataclass(frozen=True)
class SceneEntry:
    """One agent of a stored scene: parameters and the snapshot it refers to (or None)."""

    params: dict[str, Any]
    snapshot_id: int | None


@dataclass(frozen=True)
class Scene:
    """A stored scene."""

    name: str
    created_at: float
    updated_at: float
    meta: dict[str, Any]
    agents: dict[str, SceneEntry]


@dataclass(frozen=True)
class Event:
    """One row of the event log."""

    id: int
    ts: float            # Unix seconds
    kind: str
    agent_id: str | None
    message: str
    data: Any


@dataclass(frozen=True)
class StoredState:
    """Everything a restarting hub restores, in one read."""

    config_toml: str | None
    routes: dict[str, dict[str, Any]]
    params: dict[str, dict[str, Any]]
    scenes: list[str]
    snapshots: list[SnapshotInfo]
    #: agent id -> (osc, http, rtp) ports of the agents the hub starts
    ports: dict[str, tuple[int, int, int]] = field(default_factory=dict)


def _json(value: Any) -> str:
    def default(obj: Any) -> Any:
        if isinstance(obj, np.ndarray):
            return obj.tolist()
        if isinstance(obj, (np.floating, np.integer, np.bool_)):
            return obj.item()
        if isinstance(obj, (tuple, set, frozenset)):
            return list(obj)
        if isinstance(obj, Mapping):
            return dict(obj)
        raise TypeError(f"cannot store a {type(obj).__name__} as JSON")
    try:
        return json.dumps(value, default=default, allow_nan=False, separators=(",", ":"))
    except ValueError:
        raise ValueError(f"cannot store a non-finite number: {value!r}"[:200]) from None


# ---------------------------------------------------------------------------
# The synchronous core
# ---------------------------------------------------------------------------


def _corrupt_message(path: Path, detail: object) -> str:
    return (f"the hub database {path} is damaged or not a SQLite database ({detail}); "
            "move it aside to start afresh, or restore a backup")


def translate_error(path: Path, exc: sqlite3.Error) -> StoreError:
    """The :class:`StoreError` that says what ``exc`` means for the database at ``path``
    (locked by another process, damaged, unopenable) and what to do."""
    text = str(exc)
    if isinstance(exc, sqlite3.OperationalError) and ("locked" in text or "busy" in text):
        return StoreLocked(f"the hub database {path} is locked by another process "
                           f"(another hub using the same state directory?): {text}")
    if isinstance(exc, sqlite3.DatabaseError) and (
            "not a database" in text or "malformed" in text or "corrupt" in text):
        return StoreCorrupt(_corrupt_message(path, text))
    if isinstance(exc, sqlite3.OperationalError) and "unable to open" in text:
        return StoreError(f"cannot open the hub database {path}: {text}")
    return StoreError(f"hub database {path}: {type(exc).__name__}: {text}")


class Store:
    """The hub's SQLite database at ``path`` (module docstring). ``busy_timeout_s``: how
    long to wait for another process's lock before :class:`StoreLocked`; ``max_events`` /
    ``max_event_age_days`` bound the event log; ``readonly`` opens an existing database
    for reading only (no migrations). One thread; :meth:`close` (or ``with``) when done."""

    def __init__(self, path: str | os.PathLike[str], *, busy_timeout_s: float = 5.0,
                 max_events: int = 10_000, max_event_age_days: float = 30.0,
                 readonly: bool = False, migrations: Sequence[Migration] = MIGRATIONS) -> None:
        if not (isinstance(max_events, int) and max_events >= 1):
            raise ValueError(f"max_events must be a whole number >= 1; got {max_events!r}")
        if not (math.isfinite(max_event_age_days) and max_event_age_days > 0):
            raise ValueError(f"max_event_age_days must be > 0; got {max_event_age_days!r}")
        if not (math.isfinite(busy_timeout_s) and busy_timeout_s >= 0):
            raise ValueError(f"busy_timeout_s must be >= 0; got {busy_timeout_s!r}")
        self.path = Path(path)
        self.max_events = max_events
        self.max_event_age_s = max_event_age_days * 86400.0
        self.readonly = readonly
        self._migrations = tuple(migrations)
        self._inserts = 0
        self._db = self._connect(busy_timeout_s)
        try:
            self._prepare()
        except BaseException:
            self._db.close()
            raise

    @classmethod
    def in_state_dir(cls, state_dir: str | os.PathLike[str], **kwargs: Any) -> Store:
        """Open (creating) ``STATE_DIR/hub.sqlite3``; the directory is made private (0700)."""
        directory = Path(state_dir)
        directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        return cls(directory / DB_NAME, **kwargs)

    # --- lifetime -----------------------------------------------------------------

    def _connect(self, busy_timeout_s: float) -> sqlite3.Connection:
        if self.readonly:
            if not self.path.exists():
                raise StoreError(f"no hub database at {self.path}")
            target, uri = f"file:{self.path}?mode=ro", True
        else:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            target, uri = str(self.path), False
        try:
            db = sqlite3.connect(target, uri=uri, timeout=busy_timeout_s, isolation_level=None)
        except sqlite3.Error as exc:
            raise translate_error(self.path, exc) from None
        db.row_factory = sqlite3.Row
        return db

    def _prepare(self) -> None:
        try:
            self._db.execute("PRAGMA foreign_keys = ON")
            check = self._db.execute("PRAGMA quick_check").fetchone()[0]
            if check != "ok":
                raise StoreCorrupt(_corrupt_message(self.path, check))
            if not self.readonly:
                mode = self._db.execute("PRAGMA journal_mode = WAL").fetchone()[0]
                if str(mode).lower() != "wal":
                    raise StoreError(f"{self.path}: SQLite refused WAL mode (got {mode}); "
                                     "is the state directory on a network file system?")
                self._db.execute("PRAGMA synchronous = FULL")
            _migrate(self)
            if not self.readonly:
                self._prune_events(force=True)
        except sqlite3.Error as exc:
            raise translate_error(self.path, exc) from None

    def close(self) -> None:
        """Close the database (a checkpoint folds the WAL back in). Idempotent."""
        if self._db is not None:
            self._db.close()
            self._db = None  # type: ignore[assignment]

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- schema -------------------------------------------------------------------

    @property
    def schema_version(self) -> int:
        """The schema version of the open database."""
        return int(self._db.execute("PRAGMA user_version").fetchone()[0])

    def applied_migrations(self) -> list[tuple[int, str, float]]:
        """(version, description, applied_at Unix seconds) of every applied migration."""
        rows = self._db.execute(
            "SELECT version, description, applied_at FROM schema_migrations ORDER BY version")
        return [(r[0], r[1], r[2]) for r in rows]

    # --- transactions -------------------------------------------------------------

    def _transaction(self) -> _Transaction:
        if self.readonly:
            raise StoreError(f"the hub database {self.path} is open read-only")
        return _Transaction(self)

    def _read(self, sql: str, args: Sequence[Any] = ()) -> list[sqlite3.Row]:
        try:
            return self._db.execute(sql, args).fetchall()
        except sqlite3.Error as exc:
            raise translate_error(self.path, exc) from None

    # --- installation config ------------------------------------------------------

    def set_config(self, toml_text: str) -> None:
        """Keep the installation config as edited (TOML text, e.g. ``Config.to_toml()``)."""
        if not isinstance(toml_text, str):
            raise ValueError("the config must be TOML text")
        with self._transaction() as db:
            db.execute("INSERT INTO installation VALUES (1, ?, ?) ON CONFLICT(id) DO UPDATE "
                       "SET toml = excluded.toml, updated_at = excluded.updated_at",
                       (toml_text, time.time()))

    def config(self) -> str | None:
        """The stored config TOML, or None."""
        rows = self._read("SELECT toml FROM installation WHERE id = 1")
        return rows[0][0] if rows else None

    # --- routes -------------------------------------------------------------------

    def replace_routes(self, routes: Mapping[str, Mapping[str, Any]]) -> None:
        """Make the stored routing exactly ``routes`` (id -> spec, in order; a spec with
        ``"agents"`` is a ring, else a route) in one transaction."""
        rows = [(rid, _route_kind(spec), _json(spec), i) for i, (rid, spec) in enumerate(routes.items())]
        now = time.time()
        with self._transaction() as db:
            db.execute("DELETE FROM routes")
            db.executemany("INSERT INTO routes VALUES (?, ?, ?, ?, ?)",
                           [(*row, now) for row in rows])

    def put_route(self, route_id: str, spec: Mapping[str, Any]) -> None:
        """Add or change one route or ring (kept in its place; new ones go last)."""
        text, kind = _json(spec), _route_kind(spec)
        with self._transaction() as db:
            db.execute("""INSERT INTO routes VALUES (?, ?, ?,
                              (SELECT COALESCE(MAX(position), -1) + 1 FROM routes), ?)
                          ON CONFLICT(id) DO UPDATE SET kind = excluded.kind, spec = excluded.spec,
                              updated_at = excluded.updated_at""",
                       (route_id, kind, text, time.time()))

    def delete_route(self, route_id: str) -> bool:
        """Forget a route or ring; False if there was none."""
        with self._transaction() as db:
            return db.execute("DELETE FROM routes WHERE id = ?", (route_id,)).rowcount > 0

    def routes(self) -> dict[str, dict[str, Any]]:
        """Stored routes and rings, id -> spec, in order."""
        return {r["id"]: json.loads(r["spec"])
                for r in self._read("SELECT id, spec FROM routes ORDER BY position, id")}

    # --- agent parameters ---------------------------------------------------------

    def set_params(self, agent_id: str, params: Mapping[str, Any]) -> None:
        """Store (merge) parameters of one agent in one transaction (JSON values)."""
        now = time.time()
        rows = [(agent_id, str(name), _json(value), now) for name, value in params.items()]
        with self._transaction() as db:
            db.executemany("INSERT INTO agent_params VALUES (?, ?, ?, ?) ON CONFLICT(agent_id, name) "
                           "DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at",
                           rows)

    def delete_params(self, agent_id: str) -> int:
        """Forget one agent's stored parameters (forgotten for good); how many there were."""
        with self._transaction() as db:
            return db.execute("DELETE FROM agent_params WHERE agent_id = ?", (agent_id,)).rowcount

    def params(self, agent_id: str | None = None) -> dict[str, dict[str, Any]]:
        """agent id -> {name: value}, for one agent or all."""
        sql = "SELECT agent_id, name, value FROM agent_params"
        rows = (self._read(sql + " WHERE agent_id = ? ORDER BY name", (agent_id,))
                if agent_id is not None else self._read(sql + " ORDER BY agent_id, name"))
        out: dict[str, dict[str, Any]] = {}
        for r in rows:
            out.setdefault(r["agent_id"], {})[r["name"]] = json.loads(r["value"])
        return out

    # --- the ports of local agents --------------------------------------------------

    def set_agent_ports(self, ports: Mapping[str, tuple[int, int, int]]) -> None:
        """Remember the (osc, http, rtp) ports of the agents the hub starts."""
        with self._transaction() as db:
            db.executemany("INSERT INTO agent_ports VALUES (?, ?, ?, ?) ON CONFLICT(agent_id) "
                           "DO UPDATE SET osc = excluded.osc, http = excluded.http, "
                           "rtp = excluded.rtp",
                           [(a, int(o), int(h), int(r)) for a, (o, h, r) in ports.items()])

    def agent_ports(self) -> dict[str, tuple[int, int, int]]:
        """agent id -> (osc, http, rtp) ports, as remembered."""
        return {r["agent_id"]: (r["osc"], r["http"], r["rtp"])
                for r in self._read("SELECT agent_id, osc, http, rtp FROM agent_ports")}

    # --- snapshots ----------------------------------------------------------------

    def save_snapshot(self, agent_id: str, name: str, model: str, data: bytes) -> int:
        """Store npz ``data`` of ``agent_id``'s model as snapshot ``name`` (replacing one of the
        same name unless a scene uses it); returns its id."""
        with self._transaction() as db:
            return self._insert_snapshot(db, agent_id, name, model, data)

    def _insert_snapshot(self, db: sqlite3.Connection, agent_id: str, name: str, model: str,
                         data: bytes) -> int:
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise ValueError("snapshot data must be bytes (npz)")
        data = bytes(data)
        if len(data) > MAX_SNAPSHOT_BYTES:
            raise ValueError(f"snapshot of {len(data)} bytes is larger than {MAX_SNAPSHOT_BYTES}")
        decode_state(data)  # refuse what could never be recalled
        old = db.execute("SELECT id FROM snapshots WHERE agent_id = ? AND name = ?",
                         (agent_id, name)).fetchone()
        if old is not None:
            db.execute("DELETE FROM snapshots WHERE id = ?", (old[0],))
        cur = db.execute("INSERT INTO snapshots (agent_id, name, model, created_at, sha256, size, data) "
                         "VALUES (?, ?, ?, ?, ?, ?, ?)",
                         (agent_id, name, model, time.time(), hashlib.sha256(data).hexdigest(),
                          len(data), data))
        return int(cur.lastrowid)

    def snapshot(self, snapshot_id: int) -> tuple[SnapshotInfo, bytes]:
        """A snapshot's info and bytes (digest checked). KeyError if unknown; StoreCorrupt if damaged."""
        rows = self._read("SELECT * FROM snapshots WHERE id = ?", (int(snapshot_id),))
        if not rows:
            raise KeyError(f"no snapshot {snapshot_id}")
        info, data = _snapshot_info(rows[0]), bytes(rows[0]["data"])
        if hashlib.sha256(data).hexdigest() != info.sha256:
            raise StoreCorrupt(f"snapshot {snapshot_id} ({info.agent_id}/{info.name}) in {self.path} "
                               "does not match its digest")
        return info, data

    def find_snapshot(self, agent_id: str, name: str) -> SnapshotInfo | None:
        """The snapshot ``name`` of ``agent_id``, or None."""
        rows = self._read("SELECT * FROM snapshots WHERE agent_id = ? AND name = ?", (agent_id, name))
        return _snapshot_info(rows[0]) if rows else None

    def snapshots(self, agent_id: str | None = None) -> list[SnapshotInfo]:
        """Snapshot infos (no bytes), oldest first, for one agent or all."""
        sql = ("SELECT id, agent_id, name, model, created_at, sha256, size FROM snapshots"
               + (" WHERE agent_id = ?" if agent_id is not None else "") + " ORDER BY id")
        return [_snapshot_info(r) for r in self._read(sql, (agent_id,) if agent_id is not None else ())]

    def delete_snapshot(self, snapshot_id: int) -> bool:
        """Delete a snapshot; StoreError if a scene uses it; False if unknown."""
        try:
            with self._transaction() as db:
                return db.execute("DELETE FROM snapshots WHERE id = ?", (int(snapshot_id),)).rowcount > 0
        except sqlite3.IntegrityError:
            scenes = [r[0] for r in self._read(
                "SELECT DISTINCT scene FROM scene_agents WHERE snapshot_id = ?", (int(snapshot_id),))]
            raise StoreError(f"snapshot {snapshot_id} is used by scene(s) {', '.join(scenes)}; "
                             "delete or re-save them first") from None

    # --- scenes -------------------------------------------------------------------

    def save_scene(self, name: str, agents: Mapping[str, SceneAgent],
                   meta: Mapping[str, Any] | None = None) -> Scene:
        """Save (or replace) scene ``name``: every agent's parameters and snapshot, all in
        one transaction — new snapshot bytes are stored as ``scene/NAME`` of each agent."""
        if not isinstance(name, str) or not name:
            raise ValueError("a scene needs a name")
        now = time.time()
        meta_text = _json(dict(meta or {}))
        prepared = [(agent_id, _json(dict(a.params)), a) for agent_id, a in agents.items()]
        with self._transaction() as db:
            old = db.execute("SELECT created_at FROM scenes WHERE name = ?", (name,)).fetchone()
            created = old[0] if old is not None else now
            old_snaps = [r[0] for r in db.execute(
                "SELECT snapshot_id FROM scene_agents WHERE scene = ? AND snapshot_id IS NOT NULL", (name,))]
            db.execute("DELETE FROM scene_agents WHERE scene = ?", (name,))
            db.execute("INSERT INTO scenes VALUES (?, ?, ?, ?) ON CONFLICT(name) DO UPDATE SET "
                       "updated_at = excluded.updated_at, meta = excluded.meta",
                       (name, created, now, meta_text))
            for agent_id, params_text, a in prepared:
                snap_id = a.snapshot_id
                if a.state is not None:
                    if a.snapshot_id is not None:
                        raise ValueError(f"scene {name!r}, agent {agent_id!r}: give state or snapshot_id, not both")
                    if not a.model:
                        raise ValueError(f"scene {name!r}, agent {agent_id!r}: a new snapshot needs its model kind")
                    snap_id = self._insert_snapshot(db, agent_id, f"scene/{name}", a.model, a.state)
                elif snap_id is not None and db.execute(
                        "SELECT 1 FROM snapshots WHERE id = ?", (snap_id,)).fetchone() is None:
                    raise ValueError(f"scene {name!r}, agent {agent_id!r}: no snapshot {snap_id}")
                db.execute("INSERT INTO scene_agents VALUES (?, ?, ?, ?)",
                           (name, agent_id, params_text, snap_id))
            self._drop_orphan_scene_snapshots(db, old_snaps)
        return self.scene(name)

    @staticmethod
    def _drop_orphan_scene_snapshots(db: sqlite3.Connection, ids: Sequence[int]) -> None:
        for snap_id in ids:
            db.execute("DELETE FROM snapshots WHERE id = ? AND name LIKE 'scene/%' AND id NOT IN "
                       "(SELECT snapshot_id FROM scene_agents WHERE snapshot_id IS NOT NULL)", (snap_id,))

    def scene(self, name: str) -> Scene:
        """A stored scene (KeyError if unknown)."""
        head = self._read("SELECT * FROM scenes WHERE name = ?", (name,))
        if not head:
            raise KeyError(f"no scene {name!r}")
        rows = self._read("SELECT agent_id, params, snapshot_id FROM scene_agents WHERE scene = ? "
                          "ORDER BY agent_id", (name,))
        return Scene(name=name, created_at=head[0]["created_at"], updated_at=head[0]["updated_at"],
                     meta=json.loads(head[0]["meta"]),
                     agents={r["agent_id"]: SceneEntry(json.loads(r["params"]), r["snapshot_id"])
                             for r in rows})

    def scenes(self) -> list[str]:
        """Scene names, oldest first."""
        return [r[0] for r in self._read("SELECT name FROM scenes ORDER BY created_at, name")]

    def delete_scene(self, name: str) -> bool:
        """Delete a scene and the snapshots it alone made; False if unknown."""
        with self._transaction() as db:
            snaps = [r[0] for r in db.execute(
                "SELECT snapshot_id FROM scene_agents WHERE scene = ? AND snapshot_id IS NOT NULL", (name,))]
            gone = db.execute("DELETE FROM scenes WHERE name = ?", (name,)).rowcount > 0
            self._drop_orphan_scene_snapshots(db, snaps)
            return gone

    # --- events -------------------------------------------------------------------

    def log_event(self, kind: str, message: str, *, agent_id: str | None = None,
                  data: Any = None, ts: float | None = None) -> int:
        """Append an event (Unix time ``ts``, default now); returns its id. Old events are pruned."""
        return self.log_events([(kind, message, agent_id, data, ts)])[-1]

    def log_events(self, events: Sequence[tuple[str, str, str | None, Any, float | None]]) -> list[int]:
        """Append several events (kind, message, agent_id, data, ts) in one transaction."""
        now = time.time()
        rows = []
        for kind, message, agent_id, data, ts in events:
            text = None if data is None else _json(data)
            if text is not None and len(text) > MAX_EVENT_TEXT:
                text = _json({"truncated": text[:MAX_EVENT_TEXT]})
            rows.append((now if ts is None else float(ts), str(kind)[:100],
                         None if agent_id is None else str(agent_id)[:100],
                         str(message)[:MAX_EVENT_TEXT], text))
        ids = []
        with self._transaction() as db:
            for row in rows:
                ids.append(int(db.execute("INSERT INTO events (ts, kind, agent_id, message, data) "
                                          "VALUES (?, ?, ?, ?, ?)", row).lastrowid))
            self._inserts += len(rows)
            self._prune_events(db=db)
        return ids

    def _prune_events(self, db: sqlite3.Connection | None = None, force: bool = False) -> None:
        if db is None:
            with self._transaction() as inner:
                self._prune_events(inner, force)
            return
        db.execute("DELETE FROM events WHERE id <= (SELECT MAX(id) FROM events) - ?", (self.max_events,))
        if force or self._inserts >= 100:
            self._inserts = 0
            db.execute("DELETE FROM events WHERE ts < ?", (time.time() - self.max_event_age_s,))

    def events(self, limit: int = 100, *, after_id: int | None = None, kind: str | None = None,
               agent_id: str | None = None) -> list[Event]:
        """Events, newest last: the last ``limit`` (or the first ``limit`` after ``after_id``)."""
        where, args = [], []
        if after_id is not None:
            where.append("id > ?")
            args.append(int(after_id))
        if kind is not None:
            where.append("kind = ?")
            args.append(kind)
        if agent_id is not None:
            where.append("agent_id = ?")
            args.append(agent_id)
        clause = (" WHERE " + " AND ".join(where)) if where else ""
        order = "ASC" if after_id is not None else "DESC"
        rows = self._read(f"SELECT * FROM events{clause} ORDER BY id {order} LIMIT ?",
                          (*args, max(0, int(limit))))
        events = [Event(r["id"], r["ts"], r["kind"], r["agent_id"], r["message"],
                        None if r["data"] is None else json.loads(r["data"])) for r in rows]
        return events if order == "ASC" else events[::-1]

    def event_count(self) -> int:
        """Number of events kept."""
        return int(self._read("SELECT COUNT(*) FROM events")[0][0])

    # --- restore ------------------------------------------------------------------

    def load_all(self) -> StoredState:
        """Everything a restarting hub needs, read in one consistent snapshot of the database."""
        try:
            self._db.execute("BEGIN")
            try:
                return StoredState(config_toml=self.config(), routes=self.routes(),
                                   params=self.params(), scenes=self.scenes(),
                                   snapshots=self.snapshots(), ports=self.agent_ports())
            finally:
                self._db.execute("COMMIT")
        except sqlite3.Error as exc:
            raise translate_error(self.path, exc) from None


def _migrate(store: Store) -> None:
    """Bring the store's schema up to its newest migration (each in its own transaction,
    recorded in ``schema_migrations`` and ``PRAGMA user_version``); refuse a database
    made by a newer anamnesis, and a read-only one that would need upgrading."""
    known = store._migrations[-1].version if store._migrations else 0
    current = store.schema_version
    if current > known:
        raise StoreError(f"the hub database {store.path} has schema version {current}, made by "
                         f"a newer anamnesis (this one knows up to {known}); upgrade anamnesis")
    if store.readonly:
        if current < known:
            raise StoreError(f"the hub database {store.path} has schema version {current}; "
                             f"open it read-write once to upgrade it to {known}")
        return
    db = store._db
    db.execute("""CREATE TABLE IF NOT EXISTS schema_migrations (
                      version INTEGER PRIMARY KEY,
                      description TEXT NOT NULL,
                      applied_at REAL NOT NULL)""")
    for migration in store._migrations:
        if migration.version <= current:
            continue
        with store._transaction():
            for statement in migration.statements:
                db.execute(statement)
            db.execute("INSERT INTO schema_migrations VALUES (?, ?, ?)",
                       (migration.version, migration.description, time.time()))
            db.execute(f"PRAGMA user_version = {int(migration.version)}")


class _Transaction:
    """``BEGIN IMMEDIATE`` ... ``COMMIT``, rolled back on any exception; sqlite errors translated."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def __enter__(self) -> sqlite3.Connection:
        try:
            self.store._db.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as exc:
            raise translate_error(self.store.path, exc) from None
        return self.store._db

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: object) -> None:
        db = self.store._db
        if exc_type is None:
            try:
                db.execute("COMMIT")
                return
            except sqlite3.Error as error:   # (SQLite may have rolled back already)
                with contextlib.suppress(sqlite3.Error):
                    db.execute("ROLLBACK")
                raise translate_error(self.store.path, error) from None
        with contextlib.suppress(sqlite3.Error):   # the first error is the one to tell
            db.execute("ROLLBACK")
        if isinstance(exc, sqlite3.IntegrityError):
            return  # re-raised as is: callers turn it into their own message
        if isinstance(exc, sqlite3.Error):
            raise translate_error(self.store.path, exc) from None


def _route_kind(spec: Mapping[str, Any]) -> str:
    if not isinstance(spec, Mapping):
        raise ValueError("a route spec must be a mapping")
    return "ring" if "agents" in spec else "route"


def _snapshot_info(row: sqlite3.Row) -> SnapshotInfo:
    return SnapshotInfo(id=row["id"], agent_id=row["agent_id"], name=row["name"], model=row["model"],
                        created_at=row["created_at"], sha256=row["sha256"], size=row["size"])


__all__ = ["DB_NAME", "Event", "Scene", "SceneAgent", "SceneEntry", "SnapshotInfo", "Store", "StoreCorrupt", "StoreError", "StoreLocked", "StoredState", "decode_state", "encode_state"]
