"""Hub discovery, adoption and liveness: the registry (pure) and real agents on 127.0.0.1.

Every Zeroconf here is bound to 127.0.0.1 (TESTING.md); agents are real
``python -m anamnesis.agents`` children with the null audio clock.
"""

from __future__ import annotations

import asyncio
import itertools
import time

import pytest
from support.controlplane import AgentProcess
from support.waiting import wait_for

from anamnesis.agents.protocol.key import generate_key
from anamnesis.agents.protocol.txt import PROTOCOL_VERSION, build_txt, parse_txt
from anamnesis.hub.fleet.discovery import AgentBrowser, AgentRegistry, LivenessMonitor
from anamnesis.hub.fleet.osc import HubOsc

#: Each record newer than the last, as an agent makes them (a signed record with an
#: older ts is a replay).
_STAMPS = itertools.count(int(time.time()))

LOOPBACK = "127.0.0.1"
KEY = bytes(range(32))


def _txt(agent_id: str, *, key: bytes | None, osc: int = 9000, inst: str = "test") -> dict:
    return build_txt({"id": agent_id, "model": "autoregnn", "v": PROTOCOL_VERSION, "osc": osc,
                      "http": osc + 1, "rtp": 0, "inst": inst, "addr": LOOPBACK,
                      "ts": next(_STAMPS)}, key)


# ---------------------------------------------------------------------------
# The registry and the record check, without sockets
# ---------------------------------------------------------------------------


def test_signed_adopted_unsigned_pending_and_adopt_by_hand():
    registry = AgentRegistry()
    changes = []
    registry.add_listener(lambda c: changes.append((c.kind, c.entry.agent_id, c.entry.status)))
    browser = AgentBrowser(registry, interface=LOOPBACK, key=KEY)
    assert browser.consider(_txt("s1", key=KEY)).status == "offline"   # adopted, not yet pinged
    assert browser.consider(_txt("u1", key=None)).status == "pending"
    assert browser.consider(_txt("w1", key=bytes(32))).status == "pending"  # wrong key
    assert browser.counts["bad_signature"] == 1
    registry.adopt("u1")
    assert registry.get("u1").adopted and registry.adopted_ids == {"s1", "u1"}
    assert changes == [("added", "s1", "offline"), ("added", "u1", "pending"),
                       ("added", "w1", "pending"), ("adopted", "u1", "offline")]
    with pytest.raises(KeyError, match="nope"):
        registry.adopt("nope")


def test_another_installations_unsigned_agents_are_not_listed():
    registry = AgentRegistry()
    browser = AgentBrowser(registry, interface=LOOPBACK, key=KEY, installation="test")
    assert browser.consider(_txt("u1", key=None)).status == "pending"
    assert browser.consider(_txt("n1", key=None, inst="next-door")) is None
    assert browser.consider(_txt("n2", key=bytes(32), inst="next-door")) is None   # their key
    # signed with this hub's key, it is this installation's whatever name it announces
    assert browser.consider(_txt("s1", key=KEY, inst="typo")).status == "offline"
    assert {e.agent_id for e in registry.entries()} == {"u1", "s1"}
    assert sorted(browser.others) == [("next-door", "n1"), ("next-door", "n2")]
    assert browser.others[("next-door", "n2")]["signed"] is True
    assert browser.counts["other_installation"] == 2
    # a browser without an installation name lists every name (a bare hub of old)
    open_browser = AgentBrowser(AgentRegistry(), interface=LOOPBACK, key=None)
    assert open_browser.consider(_txt("n1", key=None, inst="next-door")).status == "pending"


def test_unsigned_record_cannot_take_over_a_signed_agent():
    registry = AgentRegistry()
    browser = AgentBrowser(registry, interface=LOOPBACK, key=KEY)
    browser.consider(_txt("s1", key=KEY, osc=9000))
    assert browser.consider(_txt("s1", key=None, osc=9100)) is None
    assert registry.get("s1").osc_port == 9000
    assert registry.counts["refused_unsigned_takeover"] == 1
    # The same agent restarted (new port, signed) moves.
    assert browser.consider(_txt("s1", key=KEY, osc=9200)).osc_port == 9200


def test_registry_is_capped_and_malformed_records_are_counted():
    registry = AgentRegistry(max_agents=3)
    browser = AgentBrowser(registry, interface=LOOPBACK, key=None)
    for i in range(5):
        browser.consider(_txt(f"x{i}", key=None))
    assert [e.agent_id for e in registry.entries()] == ["x0", "x1", "x2"]
    assert registry.counts["refused_full"] == 2
    assert browser.consider({b"id": b"bad id!"}) is None
    assert browser.counts["malformed"] == 1


def test_adoption_restored_by_id():
    registry = AgentRegistry(adopted_ids={"u1"})
    browser = AgentBrowser(registry, interface=LOOPBACK, key=KEY)
    assert browser.consider(_txt("u1", key=None)).adopted


class _FakeOsc:
    def __init__(self) -> None:
        self.sent: list[tuple[tuple[str, int], str]] = []

    def send(self, peer, address, *args):
        self.sent.append((peer, address))


def test_liveness_three_missed_pings_go_offline_and_a_pong_returns():
    registry = AgentRegistry()
    registry.announce(parse_txt(_txt("s1", key=KEY)), verified=True)
    osc = _FakeOsc()
    monitor = LivenessMonitor(registry, osc, interval=1.0, reply_timeout=0.3, retry=0.2)
    monitor.tick(0.0)
    monitor.pong((LOOPBACK, 9000))
    assert registry.get("s1").status == "online"
    t = 0.0
    offline_at = None
    while t < 5.0 and offline_at is None:   # the agent stops answering after t = 0
        t = round(t + 0.05, 2)
        monitor.tick(t)
        if registry.get("s1").status == "offline":
            offline_at = t
    # pings at 1.0, 1.5, 2.0 (re-pinged 0.2 s after each 0.3 s timeout): offline at 2.3 s
    assert offline_at == pytest.approx(2.3, abs=0.051)
    assert len(osc.sent) == 4
    monitor.pong((LOOPBACK, 9000))
    assert registry.get("s1").status == "online" and registry.get("s1").missed == 0


# ---------------------------------------------------------------------------
# Real agents, real zeroconf on 127.0.0.1
# ---------------------------------------------------------------------------




@pytest.mark.usefixtures("loop_watchdog")
async def test_real_agents_adopted_pending_killed_and_back(tmp_path):
    key_file = tmp_path / "installation.key"
    key = generate_key(key_file)
    wrong_key = tmp_path / "wrong.key"
    generate_key(wrong_key)
    registry = AgentRegistry()
    events: list[tuple[float, str, str]] = []
    registry.add_listener(lambda c: events.append((time.monotonic(), c.kind, c.entry.agent_id)))
    monitor = LivenessMonitor(registry, None)
    osc = HubOsc(on_pong=monitor.pong)
    monitor.osc = osc
    await osc.start(LOOPBACK)
    browser = AgentBrowser(registry, interface=LOOPBACK, key=key, installation="test")
    await browser.start()
    monitor.start()

    def extra(k, installation="test"):
        return ("--installation", installation) + (("--key-file", str(k)) if k else ())

    agents = await asyncio.gather(
        AgentProcess.start(tmp_path / "s1", agent_id="s1", extra=extra(key_file)),
        AgentProcess.start(tmp_path / "u1", agent_id="u1", extra=extra(None)),
        AgentProcess.start(tmp_path / "w1", agent_id="w1", extra=extra(wrong_key)),
        AgentProcess.start(tmp_path / "n1", agent_id="n1", extra=extra(None, "next-door")))
    s1, u1, _w1, _n1 = agents
    try:
        def status(agent_id):
            entry = registry.get(agent_id)
            return entry.status if entry else None

        await wait_for(lambda: (status("s1"), status("u1"), status("w1"))
                        == ("online", "pending", "pending")
                        and ("next-door", "n1") in browser.others, 15.0, "discovery")
        assert status("n1") is None        # another installation's agent: not listed
        assert registry.get("s1").osc_port == s1.osc_port
        assert registry.get("u1").http_port == u1.http_port and not registry.get("u1").signed

        registry.adopt("u1")
        await wait_for(lambda: status("u1") == "online", 3.0, "u1 online after adoption")

        s1.proc.kill()   # kill -9: no goodbye
        killed = time.monotonic()
        await wait_for(lambda: status("s1") == "offline", 5.0, "s1 offline")
        offline_after = next(t for t, kind, a in events
                             if kind == "offline" and a == "s1") - killed
        print(f"s1 offline {offline_after:.2f} s after kill -9")
        assert offline_after <= 3.0
        assert status("u1") == "online"      # the others play on

        # The agent comes back (new process, new ports): online again, still adopted.
        s1b = await AgentProcess.start(tmp_path / "s1", agent_id="s1", extra=extra(key_file))
        agents.append(s1b)
        await wait_for(lambda: status("s1") == "online"
                        and registry.get("s1").osc_port == s1b.osc_port, 15.0, "s1 back")
    finally:
        await monitor.close()
        await browser.close()
        osc.close()
        await asyncio.gather(*(a.stop() for a in agents))


def test_a_restarted_agent_comes_online_again_at_its_new_address():
    """An agent restarted faster than the liveness check notices (new ports) must go
    through "online" again, so the hub re-sends its parameters and re-subscribes."""
    registry = AgentRegistry()
    kinds = []
    registry.add_listener(lambda c: kinds.append(c.kind))
    registry.announce(parse_txt(_txt("s1", key=KEY, osc=9000)), verified=True)
    registry.seen("s1", 1.0)
    registry.announce(parse_txt(_txt("s1", key=KEY, osc=9300)), verified=True)
    assert registry.get("s1").status == "offline" and registry.get("s1").osc_port == 9300
    registry.seen("s1", 2.0)
    assert kinds == ["added", "online", "updated", "online"]


def test_an_agent_whose_process_exited_is_offline_at_once_and_back_at_its_pong():
    """The supervisor saw the process exit: offline now (not after three missed pings), so
    a restart on the same ports comes back *online* and is given its parameters again."""
    registry = AgentRegistry()
    kinds = []
    registry.add_listener(lambda c: kinds.append(c.kind))
    registry.announce(parse_txt(_txt("s1", key=KEY, osc=9000)), verified=True)
    registry.seen("s1", 1.0)
    registry.gone("s1")
    assert registry.get("s1").status == "offline"
    registry.gone("s1")                           # once
    registry.gone("nobody")                       # unknown: nothing
    registry.seen("s1", 2.0)
    assert registry.get("s1").status == "online"
    assert kinds == ["added", "online", "offline", "online"]
