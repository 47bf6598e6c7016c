"""Finding agents, deciding whom to trust, and knowing who is alive.

Three parts (STYLE 9, a functional core in an asyncio shell):

* :class:`AgentRegistry` — the hub's table of agents, plain state without
  sockets: id -> :class:`AgentEntry` (adopted or *pending*, online or
  *offline*, host, ports, model, last seen). Every change calls the listeners
  with an :class:`AgentChange`. Its size is capped (:data:`MAX_AGENTS`): agents
  are peers, so their number is peer-controlled (STYLE 13). Pending agents, which
  anyone can announce, have their own smaller caps (:data:`MAX_PENDING` in all,
  :data:`MAX_PENDING_PER_HOST` per announced host) and expire after
  :data:`PENDING_EXPIRY_S` s without an answer, so a flood of announcements never
  crowds out a signed agent or one adopted by hand (they take a pending one's place).
* :class:`AgentBrowser` — ``AsyncZeroconf`` bound to one interface browsing
  ``_anamnesis._udp.local.``. A record whose HMAC verifies with the installation
  key is *adopted* at once; any other well-formed record is *pending* until a
  user adopts it (:meth:`AgentRegistry.adopt`, persisted by the hub). A record
  that does not verify never replaces the address of an adopted agent (no
  hijacking by an unsigned announcement with the same id). Two installations
  in one building share the LAN: an unsigned record announcing another
  installation's name is not this hub's to list (:attr:`AgentBrowser.others`
  keeps them, shown only on request); one signed with this hub's key is its own
  whatever name it announces (the key is the installation).
* :class:`LivenessMonitor` — the hub's own liveness check: ``/ping`` to every
  known agent every :data:`PING_INTERVAL_S` s (sooner after a miss);
  :data:`MISSED_PINGS` unanswered pings in a row mark it *offline*; a ``/pong``
  brings it back. zeroconf
  goodbyes are not relied on (a killed agent sends none, and its record
  lingers for the TTL), so a *Removed* event from the browser changes nothing.

Adoption is bound to what an impostor cannot copy. An agent adopted by its signature
is re-adopted only by a record that verifies (a restarted hub remembers nothing of it:
an unsigned record with its id is pending). One adopted by hand is remembered with the
address it announced from (the hub persists id -> host): a restarted hub re-adopts an
unsigned record with that id from that host only, and a record from another host
cannot take it over (forget it and adopt it again if it really moved). On a LAN that
trust is the user's choice; a signed installation key is the safe setup.

A signed record cannot be replayed. Its ``ts`` is the agent's announcement counter
(Unix seconds, strictly increasing in one agent process, re-signed every few minutes):
the registry keeps the newest ``ts`` it accepted per agent and refuses an older
record, or a different one with the same ``ts`` (counted ``refused_replay``, logged once
per agent). So a captured record sent again cannot point a live agent back at its old
ports. One exception, for an agent restarted with its clock set back: once the agent
has been silent for :data:`REPLAY_GRACE_S` s an older record is taken (a replay then
points a dead agent elsewhere, and the agent's next announcement wins again).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Literal

from anamnesis.agents.net.ratelimit import RateLimitedLog
from anamnesis.agents.net.tasks import cancel_and_wait
from anamnesis.agents.protocol.errors import ProtocolError
from anamnesis.agents.protocol.txt import ANAMNESIS_SERVICE, AgentRecord, parse_txt, verify_txt
from anamnesis.hub.fleet.mdns_socket import hold_zeroconf

log = logging.getLogger(__name__)
#: Most agents of other installations the browser remembers (for the curious user).
MAX_OTHERS = 256

#: Most agents (adopted + pending) the registry holds.
MAX_AGENTS = 256
#: Most pending (unsigned, not adopted) agents, in all and per announced host.
MAX_PENDING = 128
MAX_PENDING_PER_HOST = 32
#: Seconds a pending agent stays listed without answering a ping or announcing itself
#: again (agents re-announce every 5 min: one whose ``--hub`` is another host answers no
#: ping, and stays listed while it lives).
PENDING_EXPIRY_S = 600.0
#: Seconds an agent must have been silent before a signed record older than the newest
#: one seen is taken (a restart with the clock set back; see the module docstring).
REPLAY_GRACE_S = 120.0
#: Seconds between liveness pings.
PING_INTERVAL_S = 1.0
#: Unanswered pings in a row after which an agent is offline.
MISSED_PINGS = 3
#: Seconds to wait for a zeroconf service's details.
RESOLVE_TIMEOUT_S = 3.0
#: Most resolutions in flight over the network, and most names waiting for one.
MAX_RESOLVING = 64
MAX_WAITING_NAMES = 1024

Status = Literal["pending", "online", "offline"]


@dataclass(frozen=True)
class AgentEntry:
    """What the hub knows about one agent. ``last_seen`` is monotonic seconds (None: never)."""

    agent_id: str
    model: str
    host: str
    osc_port: int
    http_port: int
    rtp_port: int = 0
    installation: str = ""
    signed: bool = False
    adopted: bool = False
    online: bool = False
    last_seen: float | None = None
    missed: int = 0
    params: dict[str, object] = field(default_factory=dict, compare=False)

    @property
    def status(self) -> Status:
        """``pending`` (not adopted), else ``online`` or ``offline``."""
        if not self.adopted:
            return "pending"
        return "online" if self.online else "offline"

    @property
    def osc_peer(self) -> tuple[str, int]:
        """(host, OSC port) to send to."""
        return (self.host, self.osc_port)

    def to_json(self, now: float | None = None) -> dict[str, object]:
        """A JSON-ready description; ``seen_ago_s`` is seconds since the last pong."""
        current = time.monotonic() if now is None else now
        return {
            "id": self.agent_id, "model": self.model, "status": self.status,
            "adopted": self.adopted, "online": self.online, "signed": self.signed,
            "host": self.host, "osc_port": self.osc_port, "http_port": self.http_port,
            "rtp_port": self.rtp_port, "installation": self.installation,
            "seen_ago_s": None if self.last_seen is None else round(current - self.last_seen, 3),
            "params": dict(self.params),
        }


@dataclass(frozen=True)
class AgentChange:
    """One registry change: ``kind`` is ``added``, ``updated``, ``adopted``, ``online``,
    ``offline``, ``params`` or ``removed`` (forgotten); ``entry`` the agent after the
    change (before it, for ``removed``)."""

    kind: str
    entry: AgentEntry


Listener = Callable[[AgentChange], None]


class AgentRegistry:
    """The table of agents (see the module docstring). Every method runs on the loop.

    ``adopted_ids`` are agents adopted by hand earlier (restored from the hub's state):
    a mapping id -> the host it was adopted at (None: any host, a file of before the
    pins), or a set of ids (any host). A record with one of these ids from its host is
    adopted even when unsigned.
    """

    def __init__(self, *, max_agents: int = MAX_AGENTS,
                 adopted_ids: set[str] | dict[str, str | None] | None = None) -> None:
        self.max_agents = max_agents
        self._agents: dict[str, AgentEntry] = {}
        self._pins: dict[str, str | None] = {}       # adopted by hand: id -> its host
        self._signed_ids: set[str] = set()           # adopted by signature (this run only)
        self._stamps: dict[str, tuple[int, float]] = {}  # newest signed ts taken, and when
        self._pending_since: dict[str, float] = {}   # pending: monotonic s of the announcement
        self._log = RateLimitedLog(log, prefix="discovery")
        self.restore_adopted(adopted_ids or ())
        self._listeners: list[Listener] = []
        self.counts: Counter[str] = Counter()

    def add_listener(self, listener: Listener) -> Callable[[], None]:
        """Call ``listener(change)`` after every change; returns an unsubscribe function."""
        self._listeners.append(listener)
        return lambda: self._listeners.remove(listener) if listener in self._listeners else None

    def _emit(self, kind: str, entry: AgentEntry) -> None:
        for listener in list(self._listeners):
            try:
                listener(AgentChange(kind, entry))
            except Exception:  # one broken listener must not stop discovery
                log.exception("registry listener failed on %s %s", kind, entry.agent_id)

    # -- reading ----------------------------------------------------------------

    def get(self, agent_id: str) -> AgentEntry | None:
        """The entry of ``agent_id`` or None."""
        return self._agents.get(agent_id)

    def entries(self) -> list[AgentEntry]:
        """Every agent, sorted by id."""
        return [self._agents[k] for k in sorted(self._agents)]

    def by_peer(self, peer: tuple[str, int]) -> AgentEntry | None:
        """The agent whose OSC address is ``peer``."""
        for entry in self._agents.values():
            if entry.osc_peer == peer:
                return entry
        return None

    def restore_adopted(self, adopted: dict[str, str | None] | set[str] | list[str]) -> None:
        """Remember agents adopted by hand in an earlier run (from the hub's state): id ->
        host, or ids alone (any host)."""
        pins = adopted.items() if isinstance(adopted, dict) else ((i, None) for i in adopted)
        for agent_id, host in pins:
            self._pins[str(agent_id)] = None if host is None else str(host)

    @property
    def adopted_ids(self) -> set[str]:
        """Ids adopted by signature or by hand (a copy)."""
        return set(self._pins) | self._signed_ids

    @property
    def adopted_pins(self) -> dict[str, str | None]:
        """The agents adopted by hand and the host each was adopted at (what the hub
        keeps; adoption by signature is not kept: the key proves it again)."""
        return dict(self._pins)

    # -- changing ---------------------------------------------------------------

    def announce(self, record: AgentRecord, *, verified: bool,
                 now: float | None = None) -> AgentEntry | None:
        """Take in an announcement (``now``: monotonic s). Returns the entry, or None when
        refused: the table or the pending places full, an unverified record for an agent
        adopted by signature or pinned to another host, a replayed signed record."""
        now = time.monotonic() if now is None else now
        current = self._agents.get(record.agent_id)
        if current is not None and current.signed and not verified:
            self.counts["refused_unsigned_takeover"] += 1
            return None
        host = record.addresses[0]
        pin = self._pins.get(record.agent_id, "")
        if not verified and pin and host != pin:
            # Adopted by hand at another address: an id is no proof of being that agent.
            self.counts["refused_unpinned_host"] += 1
            self._log(record.agent_id, "moved", f"agent {record.agent_id} announces from "
                      f"{host}, adopted by hand at {pin}: not taken (forget it and adopt it "
                      "again if it really moved)")
            return None
        by_hand = record.agent_id in self._pins
        adopted = verified or by_hand
        if current is None and not self._room_for(host, adopted):
            return None
        fields = {"model": record.model, "host": host,
                  "osc_port": record.osc_port, "http_port": record.http_port,
                  "rtp_port": record.rtp_port, "installation": record.installation,
                  "signed": verified, "adopted": adopted}
        if current is None:
            entry = AgentEntry(agent_id=record.agent_id, **fields)  # type: ignore[arg-type]
            kind = "added"
        else:
            moved = (current.host, current.osc_port) != (fields["host"], fields["osc_port"])
            entry = replace(current, **fields)  # type: ignore[arg-type]
            if moved:  # a restarted agent: it is online again at its first pong
                entry = replace(entry, missed=0, online=False)
            if entry == current:
                return current      # the same record again (zeroconf repeats it)
            if verified and self._replayed(record, current, now):
                return None
            kind = "updated"
        if verified:
            self._signed_ids.add(record.agent_id)
            self._stamps[record.agent_id] = (record.timestamp, now)
        elif by_hand and pin is None:      # adopted before pins were kept: pinned now
            self._pins[record.agent_id] = host
        if adopted:
            self._pending_since.pop(record.agent_id, None)
        else:       # announced again: a sign of life, as a pong is
            self._pending_since[record.agent_id] = now
        self._agents[record.agent_id] = entry
        self._emit(kind, entry)
        return entry

    def _replayed(self, record: AgentRecord, current: AgentEntry, now: float) -> bool:
        """True (counted, logged once) if the signed ``record``, which would change the
        agent's ``current`` entry, is no newer than the newest taken for it."""
        if record.agent_id not in self._stamps:
            return False
        newest, taken = self._stamps[record.agent_id]
        if record.timestamp > newest:
            return False
        silent = now - max(taken, current.last_seen or taken)
        if not current.online and silent >= REPLAY_GRACE_S:
            return False      # a restart with its clock set back (module docstring)
        self.counts["refused_replay"] += 1
        self._log(record.agent_id, "replay",
                  f"agent {record.agent_id}: a signed record of ts {record.timestamp} after "
                  f"one of ts {newest}: a replay (or its clock went back), not taken")
        return True

    def _room_for(self, host: str, adopted: bool) -> bool:
        """Whether a new agent fits: a pending one within the pending caps, an adopted
        one in the table (taking the place of the longest-pending agent if it is full)."""
        if not adopted:
            per_host = sum(1 for i in self._pending_since if self._agents[i].host == host)
            if len(self._pending_since) >= MAX_PENDING or per_host >= MAX_PENDING_PER_HOST:
                self.counts["refused_pending_full"] += 1
                self._log(host, "pending full", f"pending agents announced from {host} "
                          f"(at most {MAX_PENDING_PER_HOST} per host, {MAX_PENDING} in all): "
                          "not listed until some expire")
                return False
        if len(self._agents) < self.max_agents:
            return True
        if adopted and self._pending_since:
            self._drop(next(iter(self._pending_since)))
            return True
        self.counts["refused_full"] += 1
        return False

    def _drop(self, agent_id: str) -> AgentEntry:
        entry = self._agents.pop(agent_id)
        self._pins.pop(agent_id, None)
        self._signed_ids.discard(agent_id)
        self._stamps.pop(agent_id, None)
        self._pending_since.pop(agent_id, None)
        self._emit("removed", entry)
        return entry

    def expire_pending(self, now: float) -> list[str]:
        """Drop the pending agents silent for :data:`PENDING_EXPIRY_S` s (since their
        announcement or last answer; ``now``: monotonic s); their ids."""
        gone = []
        for agent_id, since in list(self._pending_since.items()):
            entry = self._agents[agent_id]
            last = max(since, entry.last_seen or since)
            if not entry.online and now - last >= PENDING_EXPIRY_S:
                self._drop(agent_id)
                gone.append(agent_id)
        self.counts["pending_expired"] += len(gone)
        return gone

    def adopt(self, agent_id: str) -> AgentEntry:
        """Adopt a pending agent (``KeyError`` if unknown); idempotent."""
        entry = self._agents[agent_id]
        self._pending_since.pop(agent_id, None)
        if not entry.signed:
            self._pins[agent_id] = entry.host
        if entry.adopted:
            return entry
        entry = replace(entry, adopted=True)
        self._agents[agent_id] = entry
        self._emit("adopted", entry)
        return entry

    def forget(self, agent_id: str) -> AgentEntry:
        """Drop an agent from the table and from the adopted ids (``KeyError`` if unknown):
        if it announces itself again it is a new, pending agent. Emits ``removed``."""
        return self._drop(agent_id)

    def seen(self, agent_id: str, now: float) -> None:
        """A ``/pong`` from ``agent_id`` at ``now`` (monotonic s): online again if it was not."""
        entry = self._agents.get(agent_id)
        if entry is None:
            return
        was_online = entry.online
        entry = replace(entry, last_seen=now, missed=0, online=True)
        self._agents[agent_id] = entry
        if not was_online:
            self._emit("online", entry)

    def missed(self, agent_id: str, *, limit: int = MISSED_PINGS) -> None:
        """One more unanswered ping; ``offline`` after ``limit`` in a row."""
        entry = self._agents.get(agent_id)
        if entry is None:
            return
        entry = replace(entry, missed=entry.missed + 1)
        went_offline = entry.online and entry.missed >= limit
        if went_offline:
            entry = replace(entry, online=False)
        self._agents[agent_id] = entry
        if went_offline:
            self._emit("offline", entry)

    def gone(self, agent_id: str) -> None:
        """The agent's process is known to have exited (its supervisor saw it): offline
        now, not after three missed pings — a restart on the same ports (the hub keeps a
        local agent's) then comes back *online* and is given its parameters again."""
        entry = self._agents.get(agent_id)
        if entry is None or not entry.online:
            return
        entry = replace(entry, online=False, missed=0)
        self._agents[agent_id] = entry
        self._emit("offline", entry)

    def set_params(self, agent_id: str, params: dict[str, object]) -> None:
        """Record the agent's parameter values as last read (merged)."""
        entry = self._agents.get(agent_id)
        if entry is None:
            return
        merged = {**entry.params, **params}
        if merged == entry.params:
            return
        entry = replace(entry, params=merged)
        self._agents[agent_id] = entry
        self._emit("params", entry)


class AgentBrowser:
    """Browses ``_anamnesis._udp.local.`` on one interface and feeds the registry.

    ``key`` is the installation key (None: every agent is pending until adopted);
    ``installation`` this hub's installation name (None: every name is listed).
    """

    def __init__(self, registry: AgentRegistry, *, interface: str, key: bytes | None,
                 installation: str | None = None) -> None:
        self.registry = registry
        self.interface = interface
        self.key = key   # may be set before start(); never logged
        self.installation = installation
        #: Agents announcing another installation, by (installation, id): what a user
        #: asking "who else is here?" sees (``GET /api/agents?others=1``).
        self.others: dict[tuple[str, str], dict[str, object]] = {}
        self._zc = None
        self.held = False     # the mDNS socket held to the interface (mdns_socket)
        self._browser = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._waiting: dict[str, None] = {}    # names to resolve when a task is free (FIFO)
        self._log = RateLimitedLog(log, prefix="zeroconf")
        self.counts: Counter[str] = Counter()

    async def start(self) -> None:
        """Open zeroconf on the interface and start browsing."""
        from zeroconf.asyncio import AsyncServiceBrowser, AsyncZeroconf

        self._zc = AsyncZeroconf(interfaces=[self.interface])
        self.held = hold_zeroconf(self._zc)      # only what reaches its one interface
        loop = asyncio.get_running_loop()

        def on_change(zeroconf, service_type, name, state_change) -> None:
            # zeroconf may call handlers from its own thread: hop onto the loop.
            loop.call_soon_threadsafe(self._on_change, name, state_change.name)

        self._browser = AsyncServiceBrowser(self._zc.zeroconf, [ANAMNESIS_SERVICE],
                                            handlers=[on_change])

    def _on_change(self, name: str, change: str) -> None:
        if change == "Removed":  # goodbyes are not liveness (see the module docstring)
            self.counts["goodbyes"] += 1
            return
        # An announcement carries its records: most names resolve from the cache at once,
        # so a flood of names that never answer (each holding a task for the timeout)
        # cannot keep a real agent's announcement waiting.
        if self._from_cache(name):
            return
        if len(self._tasks) < MAX_RESOLVING:
            self._start_resolving(name)
        elif name in self._waiting or len(self._waiting) < MAX_WAITING_NAMES:
            self._waiting[name] = None
        else:           # a flood of names: resolve them later, when they re-announce
            self.counts["resolve_dropped"] += 1

    def _from_cache(self, name: str) -> bool:
        from zeroconf.asyncio import AsyncServiceInfo

        if self._zc is None:
            return False
        info = AsyncServiceInfo(ANAMNESIS_SERVICE, name)
        if not info.load_from_cache(self._zc.zeroconf) or not info.properties:
            return False
        self.counts["resolved_from_cache"] += 1
        self.consider(info.properties, source=name)
        return True

    def _start_resolving(self, name: str) -> None:
        task = asyncio.create_task(self._resolve(name), name=f"resolve {name[:40]}")
        self._tasks.add(task)
        task.add_done_callback(self._resolved)

    def _resolved(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        while self._waiting and len(self._tasks) < MAX_RESOLVING and self._zc is not None:
            name = next(iter(self._waiting))
            del self._waiting[name]
            if not self._from_cache(name):
                self._start_resolving(name)

    async def _resolve(self, name: str) -> None:
        from zeroconf.asyncio import AsyncServiceInfo

        if self._zc is None:
            return
        info = AsyncServiceInfo(ANAMNESIS_SERVICE, name)
        try:
            found = await info.async_request(self._zc.zeroconf, int(RESOLVE_TIMEOUT_S * 1000))
        except Exception as exc:  # noqa: BLE001 (fail soft: it will announce again)
            self.counts["resolve_errors"] += 1
            self._log(name, "resolve", f"resolving {name} failed: {exc}")
            return
        if not found or not info.properties:
            self.counts["resolve_timeouts"] += 1
            return
        self.consider(info.properties, source=name)

    def consider(self, properties: dict, *, source: str = "?") -> AgentEntry | None:
        """Check one TXT record and hand it to the registry (public for tests)."""
        try:
            record = parse_txt(properties)
        except ProtocolError as exc:
            self.counts["malformed"] += 1
            self._log(source, "malformed", f"ignoring {source}: {exc}")
            return None
        verified = self.key is not None and verify_txt(properties, self.key)
        if (self.installation is not None and record.installation != self.installation
                and not verified):
            self._note_other(record)
            return None
        if record.signed and not verified:
            self.counts["bad_signature"] += 1
            self._log(record.agent_id, "signature",
                      f"agent {record.agent_id}: signature does not match this installation's "
                      "key; it stays pending")
        return self.registry.announce(record, verified=verified)

    def _note_other(self, record: AgentRecord) -> None:
        self.counts["other_installation"] += 1
        key = (record.installation, record.agent_id)
        if key not in self.others and len(self.others) >= MAX_OTHERS:
            return
        self.others[key] = {"id": record.agent_id, "installation": record.installation,
                            "model": record.model, "host": record.addresses[0],
                            "signed": record.signed, "seen": time.time()}
        self._log(record.installation, "other installation",
                  f"agents of installation {record.installation!r} announce on this network "
                  f"(this hub is {self.installation!r}): not listed; "
                  "GET /api/agents?others=1 shows them")

    async def close(self) -> None:
        """Stop browsing and close zeroconf."""
        self._waiting.clear()
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        if self._browser is not None:
            with contextlib.suppress(Exception):
                await self._browser.async_cancel()
            self._browser = None
        if self._zc is not None:
            await self._zc.async_close()
            self._zc = None


class LivenessMonitor:
    """Pings every known agent over the hub's OSC socket (:class:`anamnesis.hub.fleet.osc.HubOsc`).

    A healthy agent gets ``/ping`` every ``interval`` s. A ping with no ``/pong``
    within ``reply_timeout`` s is *missed*; after a miss the agent is re-pinged
    ``retry`` s later instead of a full interval, so ``missed_limit`` misses in a
    row (offline) take ``interval + missed_limit*reply_timeout + (missed_limit-1)*retry``
    s at most after the last answered ping: 2.3 s with the defaults.
    """

    def __init__(self, registry: AgentRegistry, osc, *, interval: float = PING_INTERVAL_S,
                 missed_limit: int = MISSED_PINGS, reply_timeout: float = 0.3,
                 retry: float = 0.2, tick: float = 0.05) -> None:
        self.registry = registry
        self.osc = osc
        self.interval = float(interval)
        self.missed_limit = int(missed_limit)
        self.reply_timeout = float(reply_timeout)
        self.retry = float(retry)
        self.tick_s = float(tick)
        # agent id -> [time the unanswered ping was sent or None, time of the next ping]
        self._state: dict[str, list[float | None]] = {}
        self._next_expiry = 0.0     # monotonic s: pending agents are checked once an interval
        self._task: asyncio.Task[None] | None = None

    def pong(self, peer: tuple[str, int]) -> None:
        """Called by the OSC socket for every ``/pong``."""
        entry = self.registry.by_peer(peer)
        if entry is None:
            return
        state = self._state.get(entry.agent_id)
        if state is not None:
            state[0] = None
        self.registry.seen(entry.agent_id, time.monotonic())

    def tick(self, now: float) -> None:
        """Check for missed pings and send the ones due (``now``: monotonic s)."""
        known = set()
        for entry in self.registry.entries():
            known.add(entry.agent_id)
            state = self._state.setdefault(entry.agent_id, [None, now])
            sent, due = state
            if sent is not None and now - sent >= self.reply_timeout:
                self.registry.missed(entry.agent_id, limit=self.missed_limit)
                state[0] = sent = None
                state[1] = due = now + self.retry
            if sent is None and now >= due:  # type: ignore[operator]
                self.osc.send(entry.osc_peer, "/ping")
                state[0] = now
                state[1] = now + self.interval
        if now >= self._next_expiry:
            self.registry.expire_pending(now)
            self._next_expiry = now + self.interval
        for gone in set(self._state) - known:  # keep the table as small as the registry
            del self._state[gone]

    async def _run(self) -> None:
        while True:
            self.tick(time.monotonic())
            await asyncio.sleep(self.tick_s)

    def start(self) -> None:
        """Start pinging in the background."""
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="hub-liveness")

    async def close(self) -> None:
        """Stop pinging."""
        await cancel_and_wait(self._task)
        self._task = None


__all__ = [
    "MAX_AGENTS",
    "MAX_PENDING",
    "MAX_PENDING_PER_HOST",
    "MISSED_PINGS",
    "PENDING_EXPIRY_S",
    "PING_INTERVAL_S",
    "REPLAY_GRACE_S",
    "AgentBrowser",
    "AgentChange",
    "AgentEntry",
    "AgentRegistry",
    "LivenessMonitor",
]
