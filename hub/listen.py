"""Live audio for listeners: every block of every agent's output and of the room's
listener preview, handed to whoever subscribed (the dashboard's listen stream,
``anamnesis demo``'s headphone player).

The mode's driver (:mod:`hub.simulated`, :mod:`hub.router`) calls
:meth:`ListenTap.add` once per block on the event loop. A subscriber names a
*source* — an agent id, or :data:`LISTENER` for the stereo preview at the
room's listener position — and its callback gets each block as a read-only
view of shape (frames, channels) float64 (1 channel for an agent, 2 for the
listener: left, right), valid only during the call: copy what you keep. With no
subscriber, ``add`` costs a dictionary lookup.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

import numpy as np

log = logging.getLogger(__name__)

#: The source name of the room's stereo listener preview.
LISTENER = "listener"

Callback = Callable[[np.ndarray], None]


class ListenTap:
    """Fans every block of ``agent_ids``' outputs (and the listener's ears) out to subscribers.

    ``sample_rate`` Hz; ``listener``: whether the mode produces a listener preview
    (a simulated room).
    """

    def __init__(self, agent_ids: Sequence[str], sample_rate: int, *, listener: bool = False) -> None:
        self.agent_ids = tuple(agent_ids)
        self.sample_rate = int(sample_rate)
        self.listener = bool(listener)
        self._columns = {a: i for i, a in enumerate(self.agent_ids)}
        self._subs: dict[str, list[Callback]] = {}
        self.failures = 0

    @property
    def sources(self) -> tuple[str, ...]:
        """What can be listened to: every agent, then the listener if there is one."""
        return self.agent_ids + ((LISTENER,) if self.listener else ())

    def channels(self, source: str) -> int:
        """1 for an agent, 2 for the listener."""
        self._check(source)
        return 2 if source == LISTENER else 1

    def _check(self, source: str) -> None:
        if source not in self.sources:
            raise KeyError(f"nothing to listen to called {source!r} (there is: "
                           f"{', '.join(self.sources) or 'nothing'})")

    def subscribe(self, source: str, callback: Callback) -> Callable[[], None]:
        """Call ``callback(block)`` with every block of ``source``; returns the unsubscribe
        function. ``KeyError`` for an unknown source."""
        self._check(source)
        self._subs.setdefault(source, []).append(callback)

        def unsubscribe() -> None:
            subs = self._subs.get(source, [])
            if callback in subs:
                subs.remove(callback)
            if not subs:
                self._subs.pop(source, None)
        return unsubscribe

    @property
    def active(self) -> bool:
        """True when someone listens."""
        return bool(self._subs)

    def add(self, outputs: np.ndarray, ears: np.ndarray | None = None) -> None:
        """One block: ``outputs`` (frames, n_agents) in ``agent_ids`` order, ``ears``
        (frames, 2) or None. Event loop thread."""
        if not self._subs:
            return
        for source, subs in list(self._subs.items()):
            if source == LISTENER:
                if ears is None:
                    continue
                block = ears
            else:
                i = self._columns[source]
                block = outputs[:, i:i + 1]
            view = block.view()
            view.flags.writeable = False
            for callback in list(subs):
                try:
                    callback(view)
                except Exception:   # one bad listener must not stop the clock
                    self.failures += 1
                    if self.failures == 1 or self.failures % 1000 == 0:
                        log.exception("a listener of %s failed (%d failures)", source, self.failures)


__all__ = ["LISTENER", "ListenTap"]
