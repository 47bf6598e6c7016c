"""A panic button panics, whatever controller it is on (issue 14, item 8).

Controllers send a button as they please: TouchOSC and Open Stage Control ``f 1.0`` on
press and ``f 0.0`` on release, Max and Pd ``i 1``/``i 0``, others ``T``/``F``, a bang
(``I``, OSC 1.1's impulse, liblo's), a nil, or nothing. ``/panic`` (agent) and
``/hub/panic`` panic whatever they carry — a panic is never refused; ``/unpanic`` and
``/hub/unpanic`` unpanic on a press (none, ``T``, ``I``, ``N``, a number >= 1) and count
and ignore a release (``F``, 0), so a button let go never brings the sound back.
OSCQuery shows both as buttons (TYPE ``I``), so ossia score and Chataigne give them a
control. Telemetry is never sent to a port below 1024. Real agent and hub servers on
127.0.0.1; liblo's ``oscsend`` as an independent peer.
"""

from __future__ import annotations

import asyncio
import logging
import subprocess

import aiohttp
import pytest
from support.controlplane import LOOPBACK, OscTestClient, require_program, served_agent

from anamnesis.agents.protocol.errors import ProtocolError
from anamnesis.agents.protocol.oscmap import OscAddressSpace, parse_packet, pressed
from anamnesis.hub.api.osc import HubOscServer
from anamnesis.hub.core.hub import Hub

#: What a panic button may carry: every one of them panics.
ANYTHING = [[], [None], [True], [False], [1.0], [0.0], [1], [0], [float("nan")], ["bang"],
            [1, 0], [b"blob"]]
#: An unpanic button's presses, and what is not one (a release: stay panicked).
PRESSES = [[], [None], [True], [1.0], [1], [2]]
RELEASES = [[False], [0], [0.0], [0.5], [-1], [float("nan")], ["bang"]]


def _impulse(address: str) -> bytes:
    """``address`` with one ``I`` argument, as liblo sends a bang (python-osc cannot)."""
    def padded(text: str) -> bytes:
        raw = text.encode() + b"\0"
        return raw + b"\0" * (-len(raw) % 4)
    return padded(address) + padded(",I")


@pytest.mark.parametrize("args", ANYTHING, ids=repr)
def test_a_panic_panics_whatever_it_carries(args):
    assert OscAddressSpace({}).decode("/panic", args).action == "panic"


@pytest.mark.parametrize("args", PRESSES, ids=repr)
def test_an_unpanic_press_unpanics(args):
    assert pressed("/unpanic", args) is True
    assert OscAddressSpace({}).decode("/unpanic", args).action == "unpanic"


@pytest.mark.parametrize("args", RELEASES, ids=repr)
def test_anything_else_is_an_unpanic_release_counted_and_ignored(args):
    assert pressed("/unpanic", args) is False
    assert OscAddressSpace({}).decode("/unpanic", args).action == "release"


def test_two_arguments_are_not_an_unpanic():
    with pytest.raises(ProtocolError, match=r"^/unpanic: takes no argument or a button's one"):
        pressed("/unpanic", [1, 0])


def test_an_impulse_parses_as_a_bang_without_a_warning(caplog):
    with caplog.at_level(logging.DEBUG):
        assert parse_packet(_impulse("/panic")) == [("/panic", [None])]
    assert caplog.records == []


async def _panicked(client: OscTestClient) -> int:
    messages = dict(await client.request_all("/state"))
    return messages["/panicked"][0]


async def test_an_agent_panics_on_every_controllers_press_and_ignores_releases(tmp_path):
    async with served_agent(tmp_path / "state") as (control, services, client):
        releases = 0
        for anything, press in zip(ANYTHING, PRESSES * 2, strict=True):
            client.send("/panic", *anything)
            assert await _panicked(client) == 1, anything
            for release in RELEASES:           # a release after the press: still panicked
                client.send("/unpanic", *release)
                releases += 1
                assert await _panicked(client) == 1, release
            client.send("/unpanic", *press)
            assert await _panicked(client) == 0, press
        client.send_raw(_impulse("/panic"))
        assert await _panicked(client) == 1
        client.send_raw(_impulse("/unpanic"))
        assert await _panicked(client) == 0
        assert services.osc.stats()["button_releases"] == releases
        # OSCQuery: two buttons, with no value to read.
        base = f"http://{LOOPBACK}:{services.http_port}"
        async with aiohttp.ClientSession() as http:
            for address in ("/panic", "/unpanic"):
                async with http.get(base + address) as r:
                    node = await r.json()
                assert (node["TYPE"], node["ACCESS"], node["VALUE"]) == ("I", 2, [None])
                async with http.get(base + address + "?VALUE") as r:
                    assert r.status == 204
        # Telemetry to a system service's port is refused; from 1024 it is served.
        address, args = await client.request("/subscribe", 80)
        assert address == "/error" and "ports >= 1024" in args[0], args
        assert await client.request("/subscribe", 1024) == ("/subscribed", [1024, 60.0])


async def test_liblo_oscsend_presses_the_agents_buttons(tmp_path):
    oscsend = require_program("oscsend")
    async with served_agent(tmp_path / "state") as (control, services, client):
        port = str(services.osc_port)
        for args, want in [(["/panic", "f", "1.0"], 1), (["/unpanic", "f", "0.0"], 1),
                           (["/unpanic", "i", "1"], 0), (["/panic", "f", "0.0"], 1),
                           (["/unpanic", "F"], 1), (["/unpanic", "T"], 0),
                           (["/panic", "I"], 1), (["/unpanic", "I"], 0),
                           (["/panic", "N"], 1), (["/unpanic"], 0), (["/panic", "i", "0"], 1),
                           (["/unpanic", "f", "1.0"], 0)]:
            await asyncio.to_thread(subprocess.run, [oscsend, LOOPBACK, port, *args],
                                    check=True, timeout=10)
            deadline = asyncio.get_running_loop().time() + 5.0
            while (got := await _panicked(client)) != want:
                assert asyncio.get_running_loop().time() < deadline, (args, got)
                await asyncio.sleep(0.02)


async def test_the_hubs_panic_buttons_act_at_once_and_ignore_releases(tmp_path):
    hub = Hub(state_dir=tmp_path / "hub", interface=LOOPBACK, spawn=False)
    await hub.start()
    osc_api = HubOscServer(hub)
    await osc_api.start(LOOPBACK, 0)
    client = await OscTestClient.open(osc_api.port)
    try:
        def kinds() -> list[str]:
            return [e["kind"] for e in hub.events if e["kind"] in ("panic", "unpanic")]

        for anything, press in zip(ANYTHING, PRESSES * 2, strict=True):
            assert await client.request("/hub/panic", *anything) == \
                ("/hub/ok", ["/hub/panic"])
            assert kinds()[-1] == "panic", anything
            assert await client.request("/hub/unpanic", *press) == \
                ("/hub/ok", ["/hub/unpanic"])
            assert kinds()[-1] == "unpanic", press
        before = len(kinds())
        client.send("/hub/unpanic", 0.0)        # releases: no reply, no event, counted
        client.send("/hub/unpanic", False)
        client.send_raw(_impulse("/hub/panic"))
        assert await client.recv_one() == ("/hub/ok", ["/hub/panic"])
        assert kinds()[before:] == ["panic"]
        assert osc_api.counts["button_releases"] == 2
        address, args = await client.request("/hub/unpanic", 1, 2)
        assert address == "/hub/error" and "a button's one" in args[0]
    finally:
        client.close()
        await osc_api.close()
        await hub.close()
