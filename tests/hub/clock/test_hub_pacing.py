"""The hub loops' block pacer: drift-free deadlines, a counted resync after a stall, and
the overload verdict."""

import asyncio
import time

import pytest

from anamnesis.hub.clock.pacing import BlockPacer


async def test_paces_at_the_period_without_drift():
    pacer = BlockPacer(period_s=0.01, max_lag_s=0.5)
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    for _ in range(20):
        await pacer.wait()
    elapsed = loop.time() - t0
    assert elapsed >= 0.2 - 1e-6          # never early: 20 periods of 10 ms
    assert pacer.resyncs == 0


async def test_a_stall_longer_than_max_lag_resyncs_instead_of_bursting():
    pacer = BlockPacer(period_s=0.01, max_lag_s=0.05)
    await pacer.wait()
    time.sleep(0.2)                       # the loop is stalled (a suspended laptop)
    loop = asyncio.get_running_loop()
    await pacer.wait()
    assert pacer.resyncs == 1
    t0 = loop.time()
    await pacer.wait()                    # a fresh clock: the next block waits a period again
    assert loop.time() - t0 >= 0.01 - 1e-3


async def test_a_loop_that_fails_is_logged_and_a_cancelled_one_is_not(caplog):
    from anamnesis.hub.clock.pacing import start_loop_task

    async def broken():
        raise RuntimeError("kernel exploded")

    async def forever():
        await asyncio.sleep(3600)

    failing = start_loop_task(broken(), name="t-broken", what="test mode: the loop")
    stopped = start_loop_task(forever(), name="t-forever", what="test mode: the other loop")
    assert failing.get_name() == "t-broken"
    await asyncio.sleep(0)
    stopped.cancel()
    await asyncio.gather(failing, stopped, return_exceptions=True)
    await asyncio.sleep(0)
    messages = [r.getMessage() for r in caplog.records]
    assert any("test mode: the loop stopped: RuntimeError('kernel exploded')" in m
               for m in messages), messages
    assert not any("the other loop" in m for m in messages)


def test_the_pacer_tells_an_overload_once_and_its_end_once_with_hysteresis():
    """Speed is blocks x period / wall seconds per window; two slow windows make an
    overload, two at real time end it, a window in between changes nothing."""
    from anamnesis.hub.clock.pacing import OVERLOAD_WINDOWS, SPEED_WINDOW_S, BlockPacer

    calls = []
    pacer = BlockPacer(0.01, 0.5, on_overload=lambda *a: calls.append(a))
    now = 0.0

    def run(seconds: float, step: float) -> None:
        nonlocal now
        for _ in range(int(round(seconds / step))):
            now += step
            pacer._measure(now)

    run(SPEED_WINDOW_S * 3, 0.01)                      # real time
    assert not pacer.overloaded and calls == [] and pacer.speed == pytest.approx(1.0, rel=0.01)
    run(SPEED_WINDOW_S * (OVERLOAD_WINDOWS - 0.5), 0.02)   # half speed, not long enough
    assert not pacer.overloaded
    run(SPEED_WINDOW_S * 2, 0.02)
    assert pacer.overloaded and pacer.overloads == 1 and len(calls) == 1
    assert calls[0][0] is True and calls[0][1] == pytest.approx(0.5, rel=0.02)
    run(SPEED_WINDOW_S * 4, 0.0107)                     # 93 %: neither slow nor recovered
    assert pacer.overloaded and len(calls) == 1
    run(SPEED_WINDOW_S * (OVERLOAD_WINDOWS + 1), 0.01)
    assert not pacer.overloaded and len(calls) == 2 and calls[1][0] is False
    assert pacer.overloads == 1
