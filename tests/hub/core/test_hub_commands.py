"""The hub's one command table (anamnesis.hub.core.commands): what the WebSocket and the
OSC server run, and how a bad command is refused before it reaches the hub."""

from __future__ import annotations

import pytest

from anamnesis.hub.api.osc import ADDRESSES
from anamnesis.hub.core.commands import COMMANDS, run_command
from anamnesis.hub.core.errors import HubError, NotFound
from anamnesis.hub.core.hub import Hub


@pytest.fixture
async def hub(tmp_path):
    running = Hub(state_dir=tmp_path / "hub", spawn=False)
    await running.start()
    yield running
    await running.close()


async def test_a_missing_field_is_refused_not_looked_up_as_none(hub):
    with pytest.raises(HubError, match="set_params needs 'agent'") as refused:
        await run_command(hub, "set_params", {"params": {"lr": 0.1}})
    assert type(refused.value) is HubError and "None" not in str(refused.value)   # a 400
    with pytest.raises(HubError, match="adopt: agent must be a string"):
        await run_command(hub, "adopt", {"agent": 7})
    with pytest.raises(HubError, match="no agent 'a9'") as unknown:
        await run_command(hub, "adopt", {"agent": "a9"})
    assert isinstance(unknown.value, NotFound)                                    # a 404


async def test_an_unknown_command_names_the_known_ones(hub):
    with pytest.raises(HubError, match=r"unknown command 'fly'; the commands are: .*adopt"):
        await run_command(hub, "fly", {})
    with pytest.raises(HubError, match="unknown command None"):
        await run_command(hub, None, {})


async def test_commands_answer_as_the_hub_does(hub):
    assert await run_command(hub, "routes", {}) == []
    assert await run_command(hub, "scenes", {}) == []
    assert await run_command(hub, "panic", {}) == []          # no agent to tell
    assert await run_command(hub, "listen_sources", {}) == []  # no config, nothing to hear
    await hub.flush()                                           # the log is written behind
    events = await run_command(hub, "events", {})
    assert [e["kind"] for e in events][-1] == "panic"


def test_every_osc_address_runs_a_command_of_the_table():
    for address, (command, types, fields) in ADDRESSES.items():
        assert command in COMMANDS, address
        values = types.replace("I", "")      # I: a button (an impulse) carries no value
        assert len(values) == len(fields) and set(COMMANDS[command].fields) <= set(fields)


async def test_a_parameter_push_carries_no_specs_but_every_other_push_does(hub):
    """Specs are static for a model: the ten-a-second ``params`` pushes of a moving slider
    leave them out (the page keeps what it has); hello and the other changes carry them."""
    from anamnesis.agents.protocol.txt import AgentRecord

    pushed: list[dict] = []
    hub.add_listener(lambda m: pushed.append(m) if isinstance(m, dict) and m.get("type") == "agent"
                     else None)
    record = AgentRecord(agent_id="s1", model="autoregnn", version=1, osc_port=9, http_port=9,
                         rtp_port=9, installation="anamnesis", addresses=("127.0.0.1",),
                         timestamp=0, signature=None)
    hub.registry.announce(record, verified=True)
    hub.registry.set_params("s1", {"lr": 0.2})
    kinds = {m["change"]: m["agent"] for m in pushed}
    assert "specs" in kinds["added"] and kinds["added"]["specs"]["lr"]["scale"] == "log"
    assert "specs" not in kinds["params"] and kinds["params"]["params"]["lr"] == 0.2
    assert "specs" in hub.agents_json()[0]                   # what hello and REST give
