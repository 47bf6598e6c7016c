"""The hub loops' block pacer: drift-free deadlines, a counted resync after a stall."""

import asyncio
import time

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
