"""ClockDrift: a sender's clock rate against ours from packet arrivals, through jitter."""

from __future__ import annotations

import numpy as np
import pytest

from anamnesis.agents.net.drift import ClockDrift

SR = 48000
BLOCK = 256


def stream(drift: ClockDrift, ppm: float, seconds: float, rng: np.random.Generator, *,
           t0: float = 0.0, ts0: int = 1 << 32, stalls: bool = False) -> tuple[float, int]:
    """Feed ``seconds`` of packets from a sender ``ppm`` fast: arrivals 1 ms after
    sending plus exponential queueing jitter (mean 2 ms) and, with ``stalls``, a 60 ms
    stall every 3 s (its packets arrive in a burst). Returns where it ended."""
    period = BLOCK / SR / (1 + ppm * 1e-6)
    t, ts = t0, ts0
    stall_until = -1.0
    while t < t0 + seconds:
        if stalls and (t - t0) % 3.0 < period:
            stall_until = t + 0.06
        arrival = max(t, stall_until) + 0.001 + rng.exponential(0.002)
        drift.add(arrival, ts)
        t += period
        ts += BLOCK
    return t, ts


@pytest.mark.parametrize("ppm", [100.0, -37.0, 0.0, 500.0])
def test_the_drift_of_a_jittery_stream_within_3_ppm_in_a_minute(ppm):
    drift = ClockDrift(SR)
    stream(drift, ppm, 60.0, np.random.default_rng(1), stalls=True)
    assert drift.span_s == pytest.approx(58.0, abs=1.0)
    assert drift.ppm == pytest.approx(ppm, abs=3.0)


def test_no_estimate_before_its_span_and_none_after_a_reset():
    drift = ClockDrift(SR)
    rng = np.random.default_rng(2)
    t, ts = stream(drift, 100.0, 15.0, rng)
    assert drift.ppm is None and drift.span_s < 20.0
    t, ts = stream(drift, 100.0, 10.0, rng, t0=t, ts0=ts)
    assert drift.ppm == pytest.approx(100.0, abs=10.0)
    drift.reset()
    assert drift.ppm is None and drift.span_s == 0.0


def test_a_gap_in_the_stream_loses_nothing_but_its_windows():
    drift = ClockDrift(SR)
    rng = np.random.default_rng(3)
    t, ts = stream(drift, 100.0, 30.0, rng)
    # the sender is silent 12 s (its timestamps run on: it kept its clock) and resumes
    gap = 12.0
    t, ts = stream(drift, 100.0, 30.0, rng, t0=t + gap, ts0=ts + round(gap * SR * (1 + 1e-4)))
    assert drift.ppm == pytest.approx(100.0, abs=3.0)


def test_it_follows_a_crystal_that_warms_up():
    """The sums forget (time constant ten minutes): after half an hour at +20 ppm an
    earlier minute at +100 no longer shows."""
    drift = ClockDrift(SR, window_s=1.0, memory_s=600.0)
    rng = np.random.default_rng(4)
    t, ts = stream(drift, 100.0, 60.0, rng)
    assert drift.ppm == pytest.approx(100.0, abs=3.0)
    stream(drift, 20.0, 1800.0, rng, t0=t, ts0=ts)
    assert drift.ppm == pytest.approx(20.0, abs=3.0)


def test_bad_arguments_are_refused():
    with pytest.raises(ValueError):
        ClockDrift(0)
    with pytest.raises(ValueError):
        ClockDrift(SR, window_s=2.0, memory_s=1.0)
