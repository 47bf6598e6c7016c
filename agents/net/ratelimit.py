"""Rate-limited logging of untrusted input (STYLE 13): a problem is logged once per
(peer host, kind), then only counted, with a bounded table of peers. Shared by the
agent's OSC and RTP endpoints and the hub's discovery, telemetry and APIs."""

from __future__ import annotations

import logging
from collections import Counter


class RateLimitedLog:
    """Log a problem once per (peer host, kind), then only count it (STYLE 13).

    At most ``max_keys`` peers are remembered; past that, new peers are only
    counted (one line says so), so a flood of spoofed sources cannot grow memory.
    """

    def __init__(self, logger: logging.Logger, max_keys: int = 256, prefix: str = "OSC") -> None:
        self._logger = logger
        self._prefix = prefix
        self._max_keys = max_keys
        self._seen: set[tuple[str, str]] = set()
        self.suppressed: Counter[str] = Counter()
        self._overflowed = False

    def __call__(self, peer: str, kind: str, message: str, *,
                 exc: BaseException | None = None) -> None:
        """Log ``message`` the first time ``(peer, kind)`` happens (an error with its
        traceback when ``exc`` is given: a bug), then count it."""
        key = (peer, kind)
        if key in self._seen:
            self.suppressed[kind] += 1
            return
        if len(self._seen) >= self._max_keys:
            self.suppressed[kind] += 1
            if not self._overflowed:
                self._overflowed = True
                self._logger.warning(
                    "%s: problems from more than %d peers/kinds; only counting from now on",
                    self._prefix, self._max_keys)
            return
        self._seen.add(key)
        self._logger.log(logging.ERROR if exc is not None else logging.WARNING,
                         "%s %s from %s: %s (further %s from this peer are only counted)",
                         self._prefix, kind, peer, message, kind,
                         exc_info=None if exc is None else (type(exc), exc, exc.__traceback__))


__all__ = ["RateLimitedLog"]
