"""The event log records a continuous gesture (a slider drag) as its first and last step."""

from __future__ import annotations

import asyncio

import anamnesis.hub.core.events as events
from anamnesis.hub.core.hub import Hub


async def test_a_drag_is_logged_as_its_first_and_last_step(tmp_path, monkeypatch):
    monkeypatch.setattr(events, "GESTURE_QUIET_S", 0.2)
    hub = Hub(state_dir=tmp_path / "hub", spawn=False)
    await hub.start()
    try:
        for i in range(20):                       # ten writes a second, as a slider sends
            hub.emit_gesture("params:a1", "params", "parameters of a1 set", agent="a1",
                             params={"lr": 0.01 * (i + 1)} | ({"ridge": 1e-3} if i == 3 else {}))
            await asyncio.sleep(0.01)
        hub.emit_gesture("params:a2", "params", "parameters of a2 set", agent="a2",
                         params={"lr": 0.5})
        mine = [e for e in hub.events if e["kind"] == "params"]
        assert [e["params"] for e in mine] == [{"lr": 0.01}, {"lr": 0.5}]
        await asyncio.sleep(0.4)                  # quiet: the gesture ends
        mine = [e for e in hub.events if e["kind"] == "params" and e["agent"] == "a1"]
        assert [e["params"] for e in mine] == [{"lr": 0.01}, {"lr": 0.2, "ridge": 1e-3}]
        hub.emit_gesture("weights:a1", "weights", "weights of a1 written", agent="a1")
        hub.emit_gesture("weights:a1", "weights", "weights of a1 written", agent="a1")
    finally:
        await hub.close()                         # a gesture in progress is written out
    again = Hub(state_dir=tmp_path / "hub", spawn=False)
    await again.start()
    try:
        stored = [e["kind"] for e in await again.stored_events(100)]
    finally:
        await again.close()
    assert stored.count("params") == 3 and stored.count("weights") == 2, stored
