"""The hub's requests to its agents over OSC, and the parameters it remembers for them.

:class:`AgentCalls` holds one lock per agent (one request in flight each) and one way
to ask (:meth:`AgentCalls.request`: send the messages, collect the replies until a
condition holds or :data:`REPLY_TIMEOUT_S`, raise :class:`HubError` with the agent's
``/error`` replies). On top: ``/state`` (:meth:`read_state`), parameters
(:meth:`set_params`: checked here once, then remembered as the agent's desired values,
persisted, so an agent that comes back online gets them again), weights, the agent's
own snapshots, panic, adoption. Loop-only.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable
from typing import Any

from anamnesis.agents.protocol.oscmap import COMMANDS, build_message
from anamnesis.hub.core.errors import Conflict, HubError, NotFound, Unavailable
from anamnesis.hub.core.events import EventLog
from anamnesis.hub.fleet.discovery import AgentRegistry
from anamnesis.hub.fleet.osc import HubOsc, Messages, TooBusy
from anamnesis.hub.fleet.specs import model_specs

#: Seconds to wait for an agent's reply to a state or weights query.
REPLY_TIMEOUT_S = 2.0
#: Most parameters one call may set, and most weights one vector may carry.
MAX_PARAMS = 256
MAX_WEIGHTS = 8192


def is_number(x: object) -> bool:
    """A finite int or float (not a bool)."""
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(float(x))


#: Replies of an agent that are not parameter values: its fixed commands' (``/weights``,
#: ``/reply_port`` ...) and the protocol's own. A ``/subscribed`` that arrives while a
#: ``/state`` is gathered is not a parameter called "subscribed".
NOT_PARAMS = frozenset(COMMANDS) | {"/panicked", "/error", "/pong", "/subscribed",
                                    "/unsubscribed"}


def state_values(messages: Messages) -> dict[str, object]:
    """Parameter values from an agent's ``/state`` bundle (address -> value)."""
    values: dict[str, object] = {}
    for address, args in messages:
        if address in NOT_PARAMS or not address.startswith("/") or not args:
            continue
        values[address[1:]] = args[0] if len(args) == 1 else list(args)
    return values


def _refusal(agent_id: str, replies: Messages) -> HubError | None:
    """The agent's ``/error`` replies as one refusal, or None."""
    errors = [str(args[0]) for a, args in replies if a == "/error" and args]
    return HubError(f"agent {agent_id} refused: " + "; ".join(errors)) if errors else None


def _replied(*addresses: str) -> Callable[[Messages], bool]:
    return lambda ms: any(a in addresses for a, _ in ms)


class AgentCalls:
    """Requests to agents and their remembered parameters (see the module docstring)."""

    def __init__(self, registry: AgentRegistry, osc: HubOsc, events: EventLog) -> None:
        self.registry = registry
        self.osc = osc
        self.events = events
        self.params: dict[str, dict[str, object]] = {}     # desired values, per agent
        self._locks: dict[str, asyncio.Lock] = {}

    def entry(self, agent_id: str, *, online: bool = False) -> Any:
        """The registry's entry (``HubError`` 404 if unknown; 409 if ``online`` and the
        agent is pending or offline)."""
        entry = self.registry.get(agent_id)
        if entry is None:
            raise NotFound(f"no agent {agent_id!r}")
        if online and not entry.adopted:
            raise Conflict(f"agent {agent_id} is pending; adopt it first")
        if online and not entry.online:
            raise Conflict(f"agent {agent_id} is offline")
        return entry

    async def request(self, agent_id: str, messages: list[bytes],
                      until: Callable[[Messages], bool], *, check: bool = True) -> Messages:
        """Send ``messages`` to the online agent and collect its replies until ``until``
        holds (or the reply timeout); ``HubError`` with its ``/error`` replies, if any
        (``check=False``: the replies as they are); :class:`Unavailable` if the hub has
        too many requests in flight."""
        entry = self.entry(agent_id, online=True)
        if agent_id not in self._locks:
            self._locks[agent_id] = asyncio.Lock()
        async with self._locks[agent_id]:
            try:
                replies = await self.osc.collect(entry.osc_peer, messages, until,
                                                 REPLY_TIMEOUT_S)
            except TooBusy as exc:
                raise Unavailable(str(exc)) from None
        refusal = _refusal(agent_id, replies) if check else None
        if refusal is not None:
            raise refusal
        return replies

    def adopt(self, agent_id: str) -> Any:
        """Adopt a pending agent (persisted by the hub's listener); its entry."""
        self.entry(agent_id)
        return self.registry.adopt(agent_id)

    async def read_state(self, agent_id: str) -> dict[str, object]:
        """Ask the agent for ``/state``; returns (and records) its parameter values."""
        replies = await self.request(agent_id, [build_message("/state")], _replied("/panicked"),
                                     check=False)
        values = state_values(replies)
        self.registry.set_params(agent_id, values)
        return values

    async def send_params(self, agent_id: str, params: dict[str, object]) -> dict[str, object]:
        """Send already checked ``params`` and read ``/state`` back in the same request;
        the agent's values (recorded even when it refuses some)."""
        outgoing = [build_message("/" + name, value if isinstance(value, list) else [value])
                    for name, value in params.items()]
        outgoing.append(build_message("/state"))
        replies = await self.request(agent_id, outgoing, _replied("/panicked"),
                                     check=False)
        values = state_values(replies)
        self.registry.set_params(agent_id, values)
        refusal = _refusal(agent_id, replies)
        if refusal is not None:
            raise refusal
        return values

    def remember(self, agent_id: str, params: dict[str, object]) -> None:
        """Keep ``params`` as the agent's desired values (and in the store)."""
        self.params.setdefault(agent_id, {}).update(params)
        self.events.persist("set_params", agent_id, params)

    async def set_params(self, agent_id: str, params: object) -> dict[str, object]:
        """Set parameters (``{name: value}``, OSC names such as ``lr``) on an online agent;
        the agent's values after the change. Remembered, so they are restored."""
        if not isinstance(params, dict) or not params:
            raise HubError("params must be a non-empty object {name: value}")
        if len(params) > MAX_PARAMS:
            raise HubError(f"at most {MAX_PARAMS} parameters at once")
        for name, value in params.items():
            if not isinstance(name, str) or not name.isidentifier():
                raise HubError(f"bad parameter name {name!r}")
            ok = is_number(value) or isinstance(value, (str, bool)) or (
                isinstance(value, list) and 0 < len(value) <= 4096
                and all(is_number(v) for v in value))
            if not ok:
                raise HubError(f"parameter {name}: value must be a number, a string or a "
                               f"list of numbers; got {value!r}"[:300])
        params = self._own_names(agent_id, params)
        values = await self.send_params(agent_id, params)
        accepted = {k: values.get(k, v) for k, v in params.items()}
        self.remember(agent_id, accepted)
        self.events.emit_gesture(f"params:{agent_id}", "params", f"parameters of {agent_id} set",
                                 agent=agent_id, params=accepted)
        return values

    def _own_names(self, agent_id: str, params: dict[str, object]) -> dict[str, object]:
        """``params`` with aliases renamed to their parameter (``lr`` of an Unlearn agent
        is ``lambda``), so the hub remembers, restores and reports one name per parameter;
        ``HubError`` if a parameter is named twice."""
        entry = self.registry.get(agent_id)
        specs = model_specs(entry.model) if entry is not None else {}
        alias_of = {a: own for own, spec in specs.items() for a in spec.get("aliases", ())}
        out: dict[str, object] = {}
        for name, value in params.items():
            own = name if name in specs else alias_of.get(name, name)
            if own in out:
                raise HubError(f"{name} and {own} both set {own} of agent {agent_id}: keep one")
            out[own] = value
        return out

    async def weights(self, agent_id: str) -> list[float]:
        """The agent's flat weight vector (its ``/weights``)."""
        replies = await self.request(agent_id, [build_message("/weights")],
                                     _replied("/weights", "/error"), check=False)
        for address, args in replies:
            if address == "/weights":
                return [float(x) for x in args]
        raise Unavailable(f"agent {agent_id} refused the weights query")

    async def set_weights(self, agent_id: str, weights: object) -> list[float]:
        """Write the agent's flat weight vector (float32 over OSC; learning goes on from
        there); returns the vector read back."""
        if not isinstance(weights, list) or not 0 < len(weights) <= MAX_WEIGHTS or not all(
                is_number(w) for w in weights):
            raise HubError(f"weights must be a non-empty list of at most {MAX_WEIGHTS} "
                           "finite numbers")
        replies = await self.request(
            agent_id, [build_message("/weights", [float(w) for w in weights]),
                       build_message("/weights")], _replied("/weights", "/error"))
        self.events.emit_gesture(f"weights:{agent_id}", "weights",
                                 f"weights of {agent_id} written", agent=agent_id)
        return next([float(x) for x in args] for a, args in replies if a == "/weights")

    async def agent_snapshot(self, agent_id: str, action: str, name: object) -> dict[str, Any]:
        """``/snapshot NAME`` (save the agent's model state in its own state dir) or
        ``/recall NAME`` (load one) on the agent."""
        if not isinstance(name, str) or not 1 <= len(name) <= 64:
            raise HubError("a snapshot name has 1 to 64 characters")
        address = "/" + action
        await self.request(agent_id, [build_message(address, [name])],
                           _replied(address, "/error"))
        self.events.emit(action, f"{action} {name} on {agent_id}", agent=agent_id, snapshot=name)
        if action == "recall":
            await self.read_state(agent_id)
        return {"agent": agent_id, action: name}

    def panic(self, on: bool = True) -> list[str]:
        """``/panic`` (or ``/unpanic``) to every adopted agent; the ids it went to."""
        sent = []
        for entry in self.registry.entries():
            if entry.adopted:
                self.osc.send(entry.osc_peer, "/panic" if on else "/unpanic")
                sent.append(entry.agent_id)
        word = "panic" if on else "unpanic"
        self.events.emit(word, f"{word} sent to {len(sent)} agents", agents=sent)
        return sent


__all__ = ["MAX_PARAMS", "MAX_WEIGHTS", "REPLY_TIMEOUT_S", "AgentCalls", "is_number",
           "state_values"]
