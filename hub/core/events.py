"""The hub's event log and its listeners: what happened, for people and for the store.

:class:`EventLog` keeps the recent events in memory (:data:`MAX_EVENTS`), pushes each
one, and every agent change, to its listeners (the WebSocket clients), and queues the
store's writes (:meth:`EventLog.persist`: in order, on the store's one worker thread;
a failed write is logged and counted, the piece plays on). A continuous gesture (a
slider or weight drag, a scene blend, a moving speaker) is recorded as its first and
last step (:meth:`EventLog.emit_gesture`). Loop-only: every method runs on the event
loop.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter, deque
from collections.abc import Callable
from typing import Any

log = logging.getLogger(__name__)

#: Events kept in memory (the store keeps more).
MAX_EVENTS = 1000
#: Seconds of quiet that end a gesture (a drag): its last event is then recorded.
GESTURE_QUIET_S = 1.0

Message = dict[str, Any] | bytes


#: The fields every event has; its data may not use them.
RESERVED = frozenset({"id", "t", "kind", "message", "agent"})
#: The answer to a change the hub made but could not store (a full or failing disk).
NOT_STORED = ("done, but not stored: the hub's disk refused the write (see the hub's log), "
              "so the change will not survive a restart")

class EventLog:
    """Events, listeners and the store's write queue (see the module docstring).

    ``counts`` is the hub's counter (``store_errors`` is counted there); the store is
    attached once it is open (:attr:`store`)."""

    def __init__(self, counts: Counter[str]) -> None:
        self.counts = counts
        self.store: Any = None          # anamnesis.hub.core.store.AsyncStore once open
        self.events: deque[dict[str, Any]] = deque(maxlen=MAX_EVENTS)
        self._listeners: list[Callable[[Message], None]] = []
        self._writes: set[asyncio.Task[Any]] = set()
        self._gestures: dict[str, dict[str, Any]] = {}
        #: The store's latest error while its writes fail (a full or read-only disk);
        #: None while they succeed. Health and the dashboard say it.
        self.store_failing: str | None = None

    # -- listeners ------------------------------------------------------------------

    def add_listener(self, listener: Callable[[Message], None]) -> Callable[[], None]:
        """``listener(message)`` for every event and agent change (WebSocket push); the
        function that removes it."""
        self._listeners.append(listener)
        return lambda: self._listeners.remove(listener) if listener in self._listeners else None

    def broadcast(self, message: Message) -> None:
        """Hand ``message`` to every listener (bytes: a binary message, the scopes')."""
        for listener in list(self._listeners):
            try:
                listener(message)
            except Exception:
                log.exception("hub listener failed")

    # -- events ---------------------------------------------------------------------

    def emit(self, kind: str, message: str, *, agent: str | None = None,
             **data: Any) -> dict[str, Any]:
        """Record an event: kept in memory, written to the store's log, pushed."""
        clash = RESERVED & data.keys()
        if clash:   # a field named t would hide the event's time (a scene blend's t did)
            raise ValueError(f"event fields {sorted(clash)} are the event's own")
        now = time.time()
        event = {"t": round(now, 3), "kind": kind, "message": message, "agent": agent, **data}
        self.events.append(event)
        self.broadcast({"type": "event", "event": event})
        self.persist("log_event", kind, message, agent_id=agent, data=data or None, ts=now)
        return event

    def emit_gesture(self, key: str, kind: str, message: str, *, agent: str | None = None,
                     **data: Any) -> None:
        """Record the events of a continuous gesture (up to ten writes a second) as two:
        the first at once, and the last once ``key`` has been quiet for
        :data:`GESTURE_QUIET_S` — so the log and the store say what happened without a
        row per slider step. A ``params`` dict is merged over the gesture (every
        parameter touched, at its last value)."""
        loop = asyncio.get_running_loop()
        held = self._gestures.get(key)
        if held is None:
            self.emit(kind, message, agent=agent, **data)
            held = self._gestures[key] = {"event": None, "params": {}}
        else:
            held["handle"].cancel()
            if isinstance(data.get("params"), dict):
                held["params"].update(data["params"])
                data["params"] = dict(held["params"])
            held["event"] = (kind, message, agent, data)
        held["handle"] = loop.call_later(GESTURE_QUIET_S, self._gesture_end, key)

    def _gesture_end(self, key: str) -> None:
        held = self._gestures.pop(key, None)
        if held is None:
            return
        held["handle"].cancel()
        if held["event"] is not None:
            kind, message, agent, data = held["event"]
            self.emit(kind, message, agent=agent, **data)

    def end_gestures(self) -> None:
        """Record the last step of every gesture in progress (on shutdown)."""
        for key in list(self._gestures):
            self._gesture_end(key)

    async def stored(self, limit: int = 100) -> list[dict[str, Any]]:
        """The last ``limit`` events of the store's log, oldest first."""
        rows = await self.store.events(limit)
        return [{**(e.data if isinstance(e.data, dict) else {}), "id": e.id, "t": e.ts,
                 "kind": e.kind, "agent": e.agent_id, "message": e.message} for e in rows]

    # -- the store's write queue ----------------------------------------------------------

    def persist(self, method: str, *args: Any, **kwargs: Any) -> None:
        """Run ``store.METHOD(*args)`` in the background (in order: the store has one
        worker thread); failures are logged and counted."""
        if self.store is None:
            return

        async def write() -> None:
            try:
                await getattr(self.store, method)(*args, **kwargs)
            except Exception as exc:  # noqa: BLE001 (a full disk must not take the hub down)
                self._failed(f"{method} failed: {exc}")
            else:
                if self.store_failing is not None:
                    self._store_state(None)

        self.track(asyncio.create_task(write(), name=f"store {method}"))

    def store_refused(self, exc: Exception) -> str:
        """A store call a front awaited failed (a full or read-only disk): counted and
        said as :meth:`persist`'s failures are; the answer for the client."""
        self._failed(str(exc))
        return f"not stored: {exc}"

    def _failed(self, failure: str) -> None:
        self.counts["store_errors"] += 1
        self._store_state(failure)

    def _store_state(self, failure: str | None) -> None:
        """Say when the store starts failing (once, not per write: a full disk fails
        every one) and when it takes writes again; the event itself may not be stored."""
        was, self.store_failing = self.store_failing, failure
        if (was is None) == (failure is None):
            return
        if failure is not None:
            log.error("hub store: %s; changes are not kept until the disk takes writes "
                      "again (further failures are only counted)", failure)
            self.emit("store_failed", "the hub's database refuses writes: changes are not "
                      f"kept (check the disk of the state directory): {failure}")
        else:
            log.info("hub store: writes succeed again")
            self.emit("store_ok", "the hub's database takes writes again")

    def track(self, task: asyncio.Task[Any]) -> None:
        """Count ``task`` among the writes :meth:`flush` waits for."""
        self._writes.add(task)
        task.add_done_callback(self._writes.discard)

    async def flush(self) -> None:
        """Wait until the writes queued so far are done."""
        while self._writes:
            await asyncio.gather(*list(self._writes), return_exceptions=True)

    async def on_disk(self, errors_before: int) -> bool:
        """Wait until every write queued so far is committed (each commit is synced:
        WAL with ``synchronous=FULL``), so that an acknowledged change survives a
        ``kill -9`` or a power cut; False when one failed since the ``store_errors``
        count was ``errors_before`` (the fronts then answer :data:`NOT_STORED`)."""
        await self.flush()
        return self.counts["store_errors"] <= errors_before


__all__ = ["GESTURE_QUIET_S", "MAX_EVENTS", "NOT_STORED", "EventLog"]
