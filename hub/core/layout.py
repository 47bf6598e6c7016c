"""The room and the floor plan as edited: the config's ``[room]`` and every agent's
speaker and mic, checked once with every check of the config, stored, and handed to the
simulation.

:class:`RoomLayout` answers ``get_room``/``put_room`` (the room as a ``[room]`` table,
or none) and ``room_layout``/``put_room_layout`` (listener, speakers and mics, metres).
An edit is checked with every check of the config on what it can change (the listener
and every agent's speaker and mic inside the room, a feasible RT60; every problem in one
400), stored with the config as edited, logged, and in simulated mode recomputed on a
worker and crossfaded in; every WebSocket client gets ``{"type": "room", "layout": ...}``
when a recomputation starts and ends. On a restart the stored room and positions are
restored if the stored config has the same agents. Loop-only.

The edges (routes, rings, weight couplings) are not checked again here
(:data:`EDGE_TABLES`): no position makes an edge right or wrong, each edge was checked
when it was edited (:mod:`.routes`, :mod:`.couplings`), and what the hub's store keeps of
them is not always a config's edge (a ring with an agent added on the LAN, a ring's edge
edited apart beside a route between the same agents). Checked with the room, such an
edge made every later drag of the floor plan fail (issue 15: ``move: [[ring]] #3:
agents names unknown agent 'a9'``) until it was deleted.
"""

from __future__ import annotations

import dataclasses
import logging
import tomllib
from collections.abc import Callable, Mapping
from typing import Any

from anamnesis.hub.core.errors import Conflict, HubError
from anamnesis.hub.core.events import EventLog

log = logging.getLogger(__name__)

#: The config's tables a room or floor-plan edit neither changes nor checks again.
EDGE_TABLES = ("route", "ring", "coupling")


def without_edges(data: Mapping[str, Any]) -> dict[str, Any]:
    """A config in the TOML layout without its edges (:data:`EDGE_TABLES`)."""
    return {k: v for k, v in data.items() if k not in EDGE_TABLES}


class RoomLayout:
    """The room and the agents' positions as edited (see the module docstring).

    ``edited_config()`` gives the whole config as edited (routes included);
    ``persist_config()`` stores it; ``driver()`` the running driver (or None)."""

    def __init__(self, config: Any, events: EventLog, *, edited_config: Callable[[], Any],
                 persist_config: Callable[[], None], driver: Callable[[], Any]) -> None:
        self.config = config
        self.events = events
        self.room = config.room if config is not None else None
        self.agents: tuple[Any, ...] = tuple(config.agents) if config is not None else ()
        self._edited_config = edited_config
        self._persist_config = persist_config
        self._driver = driver

    def restore(self, toml_text: str) -> None:
        """Take the room and positions of the stored config (at start), if they still
        check and it has the config's agents (its edges, restored from the store's routes,
        are not asked to)."""
        from anamnesis.hub.installation.check import check_config_data
        from anamnesis.hub.installation.config import ConfigError

        try:
            stored = check_config_data(without_edges(tomllib.loads(toml_text)),
                                       "stored config", base_dir=self.config.base_dir)
        except (ConfigError, tomllib.TOMLDecodeError) as exc:
            log.error("the stored config no longer checks; the room comes from the config "
                      "file: %s", exc)
            return
        if stored.agent_ids == self.config.agent_ids:
            self.room = stored.room
            self.agents = tuple(
                dataclasses.replace(mine, speaker=theirs.speaker, mic=theirs.mic)
                for mine, theirs in zip(self.config.agents, stored.agents, strict=True))
        else:
            log.warning("the stored config has other agents; the room comes from the config file")

    def get_room(self) -> dict[str, Any] | None:
        """The room as edited, in the config's layout (None: no room)."""
        from anamnesis.hub.installation.config import vars_of

        return None if self.room is None else vars_of(self.room)

    def put_room(self, body: object) -> dict[str, Any] | None:
        """Replace the room: ``body`` is a ``[room]`` table as JSON (``size``, ``rt60`` or
        ``absorption``, ``listener``, ...), or null for none."""
        if self.config is None:
            raise Conflict("the hub runs without a config: there is no room to edit")
        if body is not None and not isinstance(body, dict):
            raise HubError("a room is a JSON object ([room] as in the config) or null")
        data = self._edited_config().to_dict()
        data.pop("room", None)
        if body is not None:
            data["room"] = body
        checked = self._check(data, "room")
        self.room = checked.room
        self._apply()
        room = self.get_room()
        self.events.emit("room_changed", "room changed" if room else "room removed", room=room)
        return room

    def room_layout(self) -> dict[str, Any]:
        """The floor plan: the room as edited (None: none), every agent's speaker and mic
        (m, or None), whether responses are being recomputed and how long the last
        computation took (ms)."""
        driver = self._driver()
        return {
            "room": self.get_room(),
            "agents": {a.id: {"speaker": None if a.speaker is None else list(a.speaker),
                              "mic": None if a.mic is None else list(a.mic)}
                       for a in self.agents},
            "recomputing": bool(getattr(driver, "room_recomputing", False)),
            "responses_ms": getattr(driver, "responses_ms", None),
        }

    def put_room_layout(self, body: object) -> dict[str, Any]:
        """Move the listener and/or speakers and mics: ``body`` is ``{"listener": [x, y, z],
        "agents": {id: {"speaker": [x, y, z], "mic": [x, y, z]}}}`` (every part optional,
        metres). Checked as :meth:`put_room`; returns :meth:`room_layout`."""
        if self.config is None:
            raise Conflict("the hub runs without a config: there is no floor plan to edit")
        if not isinstance(body, dict) or set(body) - {"listener", "agents"}:
            raise HubError('a layout is a JSON object with "listener" and/or "agents"')
        data = self._edited_config().to_dict()
        if "listener" in body:
            if "room" not in data:
                raise Conflict("there is no room: the listener has nowhere to stand")
            data["room"]["listener"] = body["listener"]
        moves = body.get("agents", {})
        if not isinstance(moves, dict):
            raise HubError('"agents" is an object {id: {"speaker": [x, y, z], "mic": [x, y, z]}}')
        by_id = {a["id"]: a for a in data["agent"]}
        problems = []
        for agent_id, move in moves.items():
            if agent_id not in by_id:
                problems.append(f"no agent {agent_id!r} in the installation")
            elif not isinstance(move, dict) or set(move) - {"speaker", "mic"}:
                problems.append(f'{agent_id}: give "speaker" and/or "mic" as [x, y, z] metres')
            else:
                by_id[agent_id].update(move)
        if problems:
            raise HubError("; ".join(problems))
        checked = self._check(data, "layout")
        self.room = checked.room
        self.agents = checked.agents
        self._apply()
        moved = sorted(moves) + (["the listener"] if "listener" in body else [])
        self.events.emit_gesture("room_layout", "room_layout",
                                 "moved " + (", ".join(moved) or "nothing"))
        return self.room_layout()

    def recomputed(self) -> None:
        """The simulation started or finished recomputing the room's responses."""
        self.events.broadcast({"type": "room", "layout": self.room_layout()})

    def _check(self, data: dict[str, Any], what: str) -> Any:
        """The config edited through the API (``data`` in the TOML layout) checked with
        every check of the config but on its edges (see the module docstring); a
        :class:`HubError` lists every problem."""
        from anamnesis.hub.installation.check import check_config_data
        from anamnesis.hub.installation.config import ConfigError

        try:
            return check_config_data(without_edges(data), what, base_dir=self.config.base_dir)
        except ConfigError as exc:
            raise HubError("; ".join(f"{p.where}: {p.message}" if p.where else p.message
                                     for p in exc.problems)) from None

    def _apply(self) -> None:
        """Store the edited room and positions; hand them to the simulation."""
        self._persist_config()
        driver = self._driver()
        if driver is not None:
            driver.update_room(self.room, self.agents)
        self.events.broadcast({"type": "room", "layout": self.room_layout()})


__all__ = ["EDGE_TABLES", "RoomLayout", "without_edges"]
