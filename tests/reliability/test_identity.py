"""An id is not an identity: adoption is bound to a key or to a host (issue 14, item 3).

Before, a restarted hub remembered every adopted id (``adopted.json``) and adopted an
unsigned record announcing one of them — an impostor with ``--id a1`` while the real a1
was down had its audio routed. Now an agent adopted by its signature must verify again
(nothing of it is kept), and one adopted by hand is kept with the host it was adopted at:
only a record from that host is re-adopted, and none from elsewhere takes it over. A real
hub's state directory is restarted in between; the records are the agents' TXT records.
"""

from __future__ import annotations

import itertools
import json
import time

import aiohttp
from support.hubs import running_hub

from anamnesis.agents.protocol.txt import PROTOCOL_VERSION, build_txt
from anamnesis.hub.fleet.discovery import AgentBrowser, AgentRegistry

#: Each record newer than the last, as an agent makes them (a signed record with an
#: older ts is a replay).
_STAMPS = itertools.count(int(time.time()))

KEY = bytes(range(32))
REAL, IMPOSTOR = "127.0.0.1", "127.0.0.9"


def _txt(agent_id: str, *, key: bytes | None, addr: str, osc: int = 9000) -> dict:
    return build_txt({"id": agent_id, "model": "autoregnn", "v": PROTOCOL_VERSION, "osc": osc,
                      "http": osc + 1, "rtp": 0, "inst": "test", "addr": addr,
                      "ts": next(_STAMPS)}, key)


def test_a_hand_adopted_agent_is_pinned_to_its_host():
    registry = AgentRegistry()
    browser = AgentBrowser(registry, interface=REAL, key=KEY)
    browser.consider(_txt("u1", key=None, addr=REAL))
    registry.adopt("u1")
    assert registry.adopted_pins == {"u1": REAL}
    assert browser.consider(_txt("u1", key=None, addr=IMPOSTOR, osc=9100)) is None
    assert registry.get("u1").host == REAL and registry.get("u1").osc_port == 9000
    assert registry.counts["refused_unpinned_host"] == 1
    moved = browser.consider(_txt("u1", key=None, addr=REAL, osc=9200))   # a restart: it moves
    assert moved.adopted and moved.osc_port == 9200
    signed = browser.consider(_txt("s1", key=KEY, addr=REAL))
    assert signed.adopted and registry.adopted_pins == {"u1": REAL}   # the key is its proof
    registry.forget("u1")
    assert registry.adopted_pins == {}


def test_an_older_hubs_list_of_ids_pins_each_to_its_next_host():
    registry = AgentRegistry(adopted_ids={"u1"})
    browser = AgentBrowser(registry, interface=REAL, key=KEY)
    assert browser.consider(_txt("u1", key=None, addr=REAL)).adopted
    assert registry.adopted_pins == {"u1": REAL}
    assert browser.consider(_txt("u1", key=None, addr=IMPOSTOR)) is None


async def test_after_a_restart_an_impostor_with_a_known_id_is_never_adopted(tmp_path):
    state = tmp_path / "hub"
    async with running_hub(state, key=KEY) as (hub, _base):
        hub.browser.consider(_txt("s1", key=KEY, addr=REAL))
        hub.browser.consider(_txt("u1", key=None, addr=REAL))
        hub.adopt("u1")
        assert hub.registry.get("s1").adopted and hub.registry.get("u1").adopted
        await hub.flush()
    assert json.loads((state / "adopted.json").read_text()) == {"u1": REAL}

    async with running_hub(state, key=KEY) as (hub, base):
        # Both are down; impostors announce their ids.
        s1 = hub.browser.consider(_txt("s1", key=None, addr=IMPOSTOR))
        u1 = hub.browser.consider(_txt("u1", key=None, addr=IMPOSTOR))
        assert s1.status == "pending" and u1 is None, (s1, u1)
        assert not any(e.adopted for e in hub.registry.entries())
        # The real ones come back and are adopted (the key; the host).
        assert hub.browser.consider(_txt("s1", key=KEY, addr=REAL)).adopted
        assert hub.browser.consider(_txt("u1", key=None, addr=REAL)).adopted
        # ...and an impostor cannot take them over afterwards.
        assert hub.browser.consider(_txt("s1", key=None, addr=IMPOSTOR)) is None
        assert hub.browser.consider(_txt("u1", key=None, addr=IMPOSTOR)) is None
        assert {e.agent_id: e.host for e in hub.registry.entries()} == {"s1": REAL, "u1": REAL}
        # What was refused is counted where an operator looks (the open health check).
        async with aiohttp.ClientSession() as http, http.get(f"{base}/api/health") as r:
            discovery = (await r.json())["discovery"]
        assert discovery["refused_unsigned_takeover"] == 1, discovery
        assert discovery["refused_unpinned_host"] == 2, discovery
