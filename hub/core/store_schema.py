"""The hub database's schema as an ordered list of migrations (:data:`MIGRATIONS`):
opening a database applies the missing ones (:class:`~anamnesis.hub.core.store.Store`),
each in its own transaction. Append a migration; never edit an applied one."""

from __future__ import annotations

from dataclasses import dataclass

# ---------------------------------------------------------------------------
# Schema
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Migration:
    """One schema step: ``version`` (1, 2, ...), what it does, and its SQL statements."""

    version: int
    description: str
    statements: tuple[str, ...]


MIGRATIONS: tuple[Migration, ...] = (
    Migration(1, "installation, routes, agent parameters, snapshots, scenes, events", (
        """CREATE TABLE installation (
               id INTEGER PRIMARY KEY CHECK (id = 1),
               toml TEXT NOT NULL,
               updated_at REAL NOT NULL)""",
        """CREATE TABLE routes (
               id TEXT PRIMARY KEY,
               kind TEXT NOT NULL CHECK (kind IN ('route', 'ring')),
               spec TEXT NOT NULL,
               position INTEGER NOT NULL,
               updated_at REAL NOT NULL)""",
        """CREATE TABLE agent_params (
               agent_id TEXT NOT NULL,
               name TEXT NOT NULL,
               value TEXT NOT NULL,
               updated_at REAL NOT NULL,
               PRIMARY KEY (agent_id, name))""",
        """CREATE TABLE snapshots (
               id INTEGER PRIMARY KEY AUTOINCREMENT,
               agent_id TEXT NOT NULL,
               name TEXT NOT NULL,
               model TEXT NOT NULL,
               created_at REAL NOT NULL,
               sha256 TEXT NOT NULL,
               size INTEGER NOT NULL,
               data BLOB NOT NULL,
               UNIQUE (agent_id, name))""",
        """CREATE TABLE scenes (
               name TEXT PRIMARY KEY,
               created_at REAL NOT NULL,
               updated_at REAL NOT NULL,
               meta TEXT NOT NULL)""",
        """CREATE TABLE scene_agents (
               scene TEXT NOT NULL REFERENCES scenes(name) ON DELETE CASCADE,
               agent_id TEXT NOT NULL,
               params TEXT NOT NULL,
               snapshot_id INTEGER REFERENCES snapshots(id) ON DELETE RESTRICT,
               PRIMARY KEY (scene, agent_id))""",
        "CREATE INDEX scene_agents_snapshot ON scene_agents(snapshot_id)",
        """CREATE TABLE events (
               id INTEGER PRIMARY KEY AUTOINCREMENT,
               ts REAL NOT NULL,
               kind TEXT NOT NULL,
               agent_id TEXT,
               message TEXT NOT NULL,
               data TEXT)""",
        "CREATE INDEX events_ts ON events(ts)",
    )),
    Migration(2, "the ports of the agents the hub starts (kept across restarts)", (
        """CREATE TABLE agent_ports (
               agent_id TEXT PRIMARY KEY,
               osc INTEGER NOT NULL,
               http INTEGER NOT NULL,
               rtp INTEGER NOT NULL)""",
    )),
)
SCHEMA_VERSION = MIGRATIONS[-1].version





__all__ = ["MIGRATIONS", "SCHEMA_VERSION", "Migration"]
