"""Deployed mode live: two real agent processes on their own (null) clocks, found and adopted
by a real hub on 127.0.0.1, which routes a1's ``out`` stream into a2's ``in`` stream through
the routing graph (plus a noise source into a1); a2 hears a1 until the route is deleted,
and a killed a2 is dropped from routing."""

from __future__ import annotations

import asyncio

import pytest
from support.controlplane import AgentProcess

from anamnesis.agents.protocol.key import generate_key
from anamnesis.hub.core.errors import Conflict
from anamnesis.hub.core.hub import Hub
from anamnesis.hub.installation.check import parse_config

LOOPBACK = "127.0.0.1"

CONFIG = """
[installation]
name = "dep2"
mode = "deployed"

[[agent]]
id = "a1"
model = "autoregnn"

[[agent]]
id = "a2"
model = "autoregnn"

[[route]]
from = "a1"
to = "a2"
gain = 1.0
delay_ms = 5.0

[[source]]
name = "hiss"
kind = "noise"
args = { amp = 0.2, seed = 1 }
targets = ["a1"]
"""


async def test_hub_routes_one_agents_output_into_anothers_input(tmp_path):
    key_file = tmp_path / "k"
    key = generate_key(key_file)
    extra = ("--installation", "dep2", "--key-file", str(key_file), "--hub", LOOPBACK)
    agents = list(await asyncio.gather(
        AgentProcess.start(tmp_path / "a1", agent_id="a1", extra=extra),
        AgentProcess.start(tmp_path / "a2", agent_id="a2", extra=extra)))
    hub = Hub(state_dir=tmp_path / "hub", interface=LOOPBACK, key=key,
              config=parse_config(CONFIG, "dep2.toml"))
    await hub.start()
    try:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 20
        levels: dict[str, dict[str, float]] = {}

        async def wait_levels(predicate, what: str) -> None:
            end = loop.time() + 20
            while not predicate():
                assert loop.time() < end, f"{what}: levels {levels}"
                await asyncio.sleep(0.1)
                for agent_id, frame in hub.telemetry.take().items():
                    levels[agent_id] = frame

        def level(agent_id: str, key: str) -> float:
            return levels.get(agent_id, {}).get(key, 0.0)

        await wait_levels(lambda: level("a1", "in_rms") > 0.05 and level("a1", "rms") > 1e-3
                          and level("a2", "in_rms") > 1e-3, "a2 hearing a1")
        stats = hub.driver.stats()
        print(f"\nrouted {stats['routed']}: a1 in rms {level('a1', 'in_rms'):.4f} (noise), "
              f"a1 out rms {level('a1', 'rms'):.4f}, a2 in rms {level('a2', 'in_rms'):.4f}")
        assert stats["routed"] == ["a1", "a2"]
        # The deployed driver refuses what it cannot do itself; the hub passes the reason on.
        with pytest.raises(Conflict, match="recording a deployed installation is not built yet"):
            hub.record_start("take1")
        with pytest.raises(Conflict, match="not recording"):
            await hub.record_stop()
        hub.delete_route("a1->a2")     # faded out: a2 hears nothing, a1 still the noise
        await asyncio.sleep(0.5)
        await wait_levels(lambda: level("a2", "in_rms") < 1e-6 < level("a1", "in_rms"),
                          "a2 silent after the route is deleted")
        agents[1].proc.kill()
        deadline = loop.time() + 5
        while hub.driver.stats()["routed"] != ["a1"]:
            assert loop.time() < deadline, hub.driver.stats()
            await asyncio.sleep(0.05)
        assert not hub.driver.graph.is_online("a2") and hub.driver.graph.is_online("a1")
    finally:
        await hub.close()
        await asyncio.gather(*(a.stop() for a in agents))
