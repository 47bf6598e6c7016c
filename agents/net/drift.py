"""How fast a sender's sample clock runs against this host's clock, from its RTP stream.

Two sound cards never agree: their crystals differ by tens of ppm, and the jitter
buffers absorb the difference with counted slips (:mod:`anamnesis.agents.dsp.jitter`).
:class:`ClockDrift` measures it, so the dashboard and ``anamnesis doctor`` can say *how
much*: a sender whose clock runs 100 ppm fast delivers 4.8 samples a second more than
a 48 kHz reader plays, one 64-sample slip every ~13 s.

The method is NTP's: per packet the *transit* ``arrival - ts / rate`` (s) is the
network delay plus the offset between the two clocks. Delay only ever adds, so the
minimum transit of each ``window_s`` window is the clocks' offset plus the path's
fixed latency, free of queueing and scheduling jitter; the offset changes at the
drift rate. A least-squares line through the window minima (exponentially
forgetting, time constant ``memory_s``, so a crystal warming over an evening is
followed) has slope ``-drift``: a fast sender's timestamps outrun the arrivals, and
the transit falls. No estimate before ``min_span_s`` of windows (the error of a
slope over a span T is about the minima's scatter / T: ~0.1 ms / 20 s = 5 ppm).

Pure and allocation-light (one window's running minimum and five sums); runs on the
receiver's loop, one :meth:`ClockDrift.add` per packet.
"""

from __future__ import annotations

import math


class ClockDrift:
    """The drift of one RTP sender's clock against the receiver's ``clock`` (ppm,
    positive: the sender runs fast). ``rate`` is the stream's sample rate (Hz)."""

    def __init__(self, rate: float, *, window_s: float = 1.0, memory_s: float = 600.0,
                 min_span_s: float = 20.0) -> None:
        if not rate > 0 or not window_s > 0 or not memory_s >= window_s or not min_span_s > 0:
            raise ValueError("rate, window_s and min_span_s must be > 0 and memory_s >= window_s")
        self.rate = float(rate)
        self.window_s = float(window_s)
        self.min_span_s = float(min_span_s)
        #: Weight kept per window (exponential forgetting).
        self.keep = math.exp(-window_s / memory_s)
        self.reset()

    def reset(self) -> None:
        """Forget everything (a new sender, or a sender that restarted its clock)."""
        self._window_end: float | None = None
        self._window_min = math.inf
        # weighted sums over the window minima, x relative to the newest window (s)
        self._s0 = self._sx = self._sy = self._sxx = self._sxy = 0.0
        self._first: float | None = None
        self._last = 0.0
        self._y0: float | None = None

    def add(self, arrival_s: float, ts: int) -> None:
        """One packet: arrived at ``arrival_s`` (the receiver's clock, s), its first
        sample at RTP timestamp ``ts`` (extended: it never wraps)."""
        transit = arrival_s - ts / self.rate
        if self._window_end is None:
            self._window_end = arrival_s + self.window_s
        elif arrival_s >= self._window_end:
            self._close(self._window_end - 0.5 * self.window_s)
            # the next window that holds this packet (a gap skips empty ones)
            skipped = math.floor((arrival_s - self._window_end) / self.window_s) + 1
            self._window_end += skipped * self.window_s
        self._window_min = min(self._window_min, transit)

    def _close(self, x: float) -> None:
        y = self._window_min
        self._window_min = math.inf
        if not math.isfinite(y):
            return
        if self._y0 is None:
            self._y0 = y          # y relative to the first minimum: small numbers
        y -= self._y0
        if self._first is None:
            self._first = x
        d = x - self._last        # move the origin to this window (sums stay well-conditioned)
        self._last = x
        k = self.keep
        s0, sx, sy, sxx, sxy = self._s0, self._sx, self._sy, self._sxx, self._sxy
        sxx = sxx - 2.0 * d * sx + d * d * s0
        sxy = sxy - d * sy
        sx = sx - d * s0
        self._s0 = k * s0 + 1.0
        self._sx = k * sx
        self._sy = k * sy + y
        self._sxx = k * sxx
        self._sxy = k * sxy

    @property
    def span_s(self) -> float:
        """Seconds between the first and the newest closed window."""
        return 0.0 if self._first is None else self._last - self._first

    @property
    def ppm(self) -> float | None:
        """The sender's clock against ours (ppm, + fast), or None before ``min_span_s``."""
        if self.span_s < self.min_span_s:
            return None
        den = self._s0 * self._sxx - self._sx * self._sx
        if den <= 0.0:
            return None
        slope = (self._s0 * self._sxy - self._sx * self._sy) / den
        return -slope * 1e6


__all__ = ["ClockDrift"]
