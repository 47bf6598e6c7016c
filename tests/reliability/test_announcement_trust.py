"""Announcements cannot be replayed and a flood cannot crowd out an agent (issue 14, item 4).

Before: one captured signed record, sent again, pointed a live agent back at its old
ports (offline for 800 s, until a hub restart); 260 fake unsigned announcements filled
the registry, after which a signed agent could no longer be added. Now a signed record
older than the newest one taken for its agent is refused, pending agents have their
own caps and expire, and announcements that carry their records are taken from the
cache at once however many names that never answer are waiting.

The first tests drive the registry with the agents' own TXT records; the last sends
raw mDNS announcements over real multicast on 127.0.0.1 to a real browser, as a
visitor's laptop would on the LAN (python-zeroconf builds the records).
"""

from __future__ import annotations

import asyncio
import itertools
import socket
import time

import pytest

from anamnesis.agents.net.announce import AgentAnnouncer
from anamnesis.agents.protocol.txt import (
    ANAMNESIS_SERVICE,
    PROTOCOL_VERSION,
    build_txt,
    parse_txt,
)
from anamnesis.hub.fleet.discovery import (
    MAX_PENDING,
    MAX_PENDING_PER_HOST,
    PENDING_EXPIRY_S,
    REPLAY_GRACE_S,
    AgentBrowser,
    AgentRegistry,
)

KEY = bytes(range(32))
LOOPBACK = "127.0.0.1"
_STAMPS = itertools.count(int(time.time()))


def _txt(agent_id: str, *, key: bytes | None, addr: str = LOOPBACK, osc: int = 9000,
         ts: int | None = None) -> dict:
    return build_txt({"id": agent_id, "model": "autoregnn", "v": PROTOCOL_VERSION, "osc": osc,
                      "http": osc + 1, "rtp": 0, "inst": "test", "addr": addr,
                      "ts": next(_STAMPS) if ts is None else ts}, key)


def test_a_replayed_signed_record_changes_nothing():
    registry = AgentRegistry()
    browser = AgentBrowser(registry, interface=LOOPBACK, key=KEY)
    first = _txt("s1", key=KEY, osc=9000)
    browser.consider(first)
    restarted = _txt("s1", key=KEY, osc=9200)          # a restart: newer, other ports
    assert browser.consider(restarted).osc_port == 9200
    registry.seen("s1", time.monotonic())              # it answers at its new ports
    assert browser.consider(first) is None             # the captured record, again
    same_ts = dict(_txt("s1", key=KEY, osc=9300, ts=int(restarted["ts"])))
    assert browser.consider(same_ts) is None           # another record under the same ts
    assert browser.consider(restarted).osc_port == 9200    # zeroconf repeating the record
    entry = registry.get("s1")
    assert (entry.osc_port, entry.online) == (9200, True)
    assert registry.counts["refused_replay"] == 2


def test_an_agent_silent_past_the_grace_takes_an_older_record():
    """An agent restarted with its clock set back is not locked out for good."""
    registry = AgentRegistry()
    browser = AgentBrowser(registry, interface=LOOPBACK, key=KEY)
    now = 1000.0
    registry.announce(parse_txt(_txt("s1", key=KEY, osc=9000, ts=2_000_000_000)),
                      verified=True, now=now)
    registry.seen("s1", now)
    registry.gone("s1")
    earlier = parse_txt(_txt("s1", key=KEY, osc=9400, ts=1_900_000_000))
    assert registry.announce(earlier, verified=True, now=now + REPLAY_GRACE_S - 1) is None
    assert registry.announce(earlier, verified=True, now=now + REPLAY_GRACE_S).osc_port == 9400
    assert browser.counts["bad_signature"] == 0


def test_a_flood_of_pending_agents_leaves_room_and_expires():
    registry = AgentRegistry()
    browser = AgentBrowser(registry, interface=LOOPBACK, key=KEY)
    for i in range(1000):                                  # one visitor, many ids
        browser.consider(_txt(f"f{i}", key=None, addr="10.99.0.3"))
    assert len(registry.entries()) == MAX_PENDING_PER_HOST
    for i in range(1000):                                  # many claimed hosts
        browser.consider(_txt(f"g{i}", key=None, addr=f"10.98.{i // 250}.{i % 250 + 1}"))
    assert len(registry.entries()) == MAX_PENDING
    assert registry.counts["refused_pending_full"] == 2000 - MAX_PENDING
    # The installation's own agents still come in, signed or pinned by hand.
    assert browser.consider(_txt("s1", key=KEY)).adopted
    small = AgentRegistry(max_agents=MAX_PENDING)
    small_browser = AgentBrowser(small, interface=LOOPBACK, key=KEY)
    for i in range(MAX_PENDING):
        small_browser.consider(_txt(f"h{i}", key=None, addr=f"10.97.0.{i + 1}"))
    assert len(small.entries()) == MAX_PENDING                 # the table is full
    assert small_browser.consider(_txt("s1", key=KEY)).adopted  # a pending one made room
    assert small.get("h0") is None and len(small.entries()) == MAX_PENDING
    # Pending agents that never answer expire; one that answers stays.
    now = time.monotonic()
    registry.seen("g0", now)
    assert len(registry.expire_pending(now + PENDING_EXPIRY_S - 1)) == 0
    registry.seen("g0", now + PENDING_EXPIRY_S)
    gone = registry.expire_pending(now + PENDING_EXPIRY_S + 1)
    assert len(gone) == MAX_PENDING - 1 and "g0" not in gone
    assert {e.agent_id for e in registry.entries()} == {"s1", "g0"}
    assert browser.consider(_txt("f1", key=None, addr="10.99.0.3")) is not None  # room again


def _announcement(name: str, txt: dict, port: int, addr: str) -> list[bytes]:
    """The mDNS response packets announcing ``name`` with its records (as a responder
    sends them unsolicited)."""
    from zeroconf import DNSOutgoing, ServiceInfo
    from zeroconf.const import _FLAGS_AA, _FLAGS_QR_RESPONSE

    host = name.split(".")[0].replace(" ", "-") + ".local."
    info = ServiceInfo(ANAMNESIS_SERVICE, name, port=port, properties=txt, server=host,
                       parsed_addresses=[addr])
    out = DNSOutgoing(_FLAGS_QR_RESPONSE | _FLAGS_AA)
    for record in (info.dns_pointer(), info.dns_service(), info.dns_text(),
                   *info.dns_addresses()):
        out.add_answer_at_time(record, 0)
    return out.packets()


def _loopback_sender() -> socket.socket:
    """A UDP socket whose multicast stays on loopback (TESTING.md: nothing leaves the host)."""
    sender = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sender.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF, socket.inet_aton(LOOPBACK))
    sender.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_TTL, 1)
    return sender


@pytest.mark.asyncio
async def test_over_the_wire_a_flood_and_a_replay_leave_a_signed_agent_adoptable():
    """1,000 fake announcements, then a real signed agent; then its first record replayed."""
    registry = AgentRegistry()
    browser = AgentBrowser(registry, interface=LOOPBACK, key=KEY, installation="test")
    await browser.start()
    sender = _loopback_sender()
    announcer = AgentAnnouncer(agent_id="real", model="autoregnn", interface=LOOPBACK,
                               osc_port=9500, http_port=9501, installation="test", key=KEY)
    try:
        for i in range(1000):
            name = f"anamnesis fake{i} (test).{ANAMNESIS_SERVICE}"
            for packet in _announcement(name, _txt(f"fake{i}", key=None), 9000, LOOPBACK):
                sender.sendto(packet, ("224.0.0.251", 5353))
            if i % 50 == 49:
                await asyncio.sleep(0)       # let the browser read its socket
        started = time.monotonic()
        await announcer.start()
        # Probing takes ~1.5 s; the budget is generous for a busy machine (the figure
        # is printed; the target is 5 s).
        deadline = started + 30.0
        while (registry.get("real") is None or not registry.get("real").adopted) \
                and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        took = time.monotonic() - started
        entry = registry.get("real")
        assert entry is not None and entry.adopted and entry.osc_port == 9500, entry
        pending = [e for e in registry.entries() if not e.adopted]
        assert len(pending) <= MAX_PENDING
        # The agent takes other ports (a fresh, newer record); its first one is replayed.
        captured = dict(announcer.txt)
        await announcer.update(osc_port=9600, http_port=9601)
        while registry.get("real").osc_port != 9600 and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        assert registry.get("real").osc_port == 9600
        replay = f"anamnesis replay (test).{ANAMNESIS_SERVICE}"
        for packet in _announcement(replay, captured, 9500, LOOPBACK):
            sender.sendto(packet, ("224.0.0.251", 5353))
        while not registry.counts["refused_replay"] and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        assert registry.counts["refused_replay"] >= 1
        assert registry.get("real").osc_port == 9600
        heard = browser.counts["resolved_from_cache"] + browser.counts["resolve_timeouts"]
        print(f"\n1,000 fake announcements sent, {heard} heard (UDP: the socket's buffer "
              f"drops the rest): {len(pending)} listed as pending, "
              f"{registry.counts['refused_pending_full']} refused; the signed "
              f"agent adopted {took:.2f} s after it began announcing; its replayed first "
              f"record refused ({registry.counts['refused_replay']})")
    finally:
        sender.close()
        await announcer.close()
        await browser.close()


@pytest.mark.asyncio
async def test_a_loopback_hub_hears_no_unicast_sent_to_its_other_addresses():
    """Unicast mDNS to another address of the host (127.0.0.2 here; a LAN address on a
    gallery's hub) never reaches a browser bound to 127.0.0.1; multicast on its
    interface does."""
    registry = AgentRegistry()
    browser = AgentBrowser(registry, interface=LOOPBACK, key=None, installation="test")
    await browser.start()
    sender = _loopback_sender()
    try:
        assert browser.held
        for attempt in range(5):     # UDP: a few times, each at its own name
            name = f"anamnesis unicast{attempt} (test).{ANAMNESIS_SERVICE}"
            for packet in _announcement(name, _txt(f"unicast{attempt}", key=None), 9000,
                                        LOOPBACK):
                sender.sendto(packet, ("127.0.0.2", 5353))
        name = f"anamnesis multicast (test).{ANAMNESIS_SERVICE}"
        for packet in _announcement(name, _txt("multicast", key=None), 9000, LOOPBACK):
            sender.sendto(packet, ("224.0.0.251", 5353))
        deadline = time.monotonic() + 10.0
        while registry.get("multicast") is None and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.3)     # the unicast ones were sent first: they had their time
        assert registry.get("multicast") is not None
        assert [e.agent_id for e in registry.entries()] == ["multicast"]
    finally:
        sender.close()
        await browser.close()
