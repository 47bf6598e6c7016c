"""OSC control of an agent over real UDP sockets on 127.0.0.1.

Set/get of every parameter, errors for wrong type/arity/range (value unchanged),
a real ``oscsend`` (liblo-tools) seen through OSCQuery, 10k malformed datagrams,
telemetry subscriptions (rate, lease, unreachable subscribers, caps).
"""

from __future__ import annotations

import asyncio
import logging
import re
import struct
import time

import aiohttp
import numpy as np
import pytest
import pytest_asyncio
from numpy.testing import assert_allclose
from support.controlplane import (
    LOOPBACK,
    MODEL_KINDS,
    AgentProcess,
    OscTestClient,
    require_program,
    running_agent,
    served_agent,
)

from anamnesis.agents.net.osc import MAX_SUBSCRIBERS_PER_HOST, OscServer
from anamnesis.agents.protocol.errors import ProtocolError
from anamnesis.agents.protocol.oscmap import (
    address_of,
    build_bundle,
    build_bundle_at,
    build_message,
    parse_packet,
    unix_to_timetag,
)

pytestmark = [pytest.mark.asyncio, pytest.mark.usefixtures("loop_watchdog")]


@pytest_asyncio.fixture
async def agent(tmp_path):
    """A real autoregnn agent (null clock) with its control services, and an OSC client."""
    async with served_agent(tmp_path / "state") as served:
        yield served


async def _freeze(control) -> None:
    """Stop learning and wait a block, so the weights hold still for comparisons."""
    control.set("learn", 0)
    await control.get_weights()


def _values_equal(a: dict, b: dict) -> bool:
    if a.keys() != b.keys():
        return False
    for name in a:
        if isinstance(a[name], np.ndarray) or isinstance(b[name], np.ndarray):
            if not np.array_equal(np.asarray(a[name]), np.asarray(b[name])):
                return False
        elif a[name] != b[name]:
            return False
    return True


def _new_value(spec, current):
    """A valid value of ``spec`` different from ``current`` (exactly representable in float32)."""
    if spec.kind == "choice":
        return next(c for c in reversed(spec.choices) if c != current)
    if spec.kind == "bool":
        return 1 - int(current)
    lo = spec.minimum if np.isfinite(spec.minimum) else -10.0
    hi = spec.maximum if np.isfinite(spec.maximum) else 10.0
    if spec.kind == "int":
        value = int(lo + (hi - lo) * 3 // 8)
        return value if value != current else value + 1
    if spec.kind == "array":
        fractions = np.linspace(0.25, 0.75, int(spec.size))
        return np.float32(lo + (hi - lo) * fractions).astype(np.float64)
    value = float(np.float32(lo + (hi - lo) * 0.375))
    return value if value != current else float(np.float32(lo + (hi - lo) * 0.625))


def _assert_value(spec, got, expected):
    if spec.kind in ("float", "array"):
        assert_allclose(np.asarray(got, dtype=np.float64), np.asarray(expected),
                        rtol=1e-6, atol=1e-12)
    else:
        assert got == expected


@pytest.mark.parametrize("kind", MODEL_KINDS)
async def test_set_and_get_every_parameter(tmp_path, kind):
    async with served_agent(tmp_path / "state", kind) as (control, _, client):
        await _set_and_get_all(control, client)


async def _set_and_get_all(control, client):
    specs = control.specs()
    assert {"gain", "mute"} <= set(specs)
    for name, spec in specs.items():
        address = address_of(name)
        value = _new_value(spec, control.values()[name])
        args = list(np.asarray(value).ravel()) if spec.kind == "array" else [value]
        client.send(address, *[float(a) if spec.kind == "array" else a for a in args])
        reply_address, reply = await client.request(address)      # query after set
        assert reply_address == address
        _assert_value(spec, reply if spec.kind == "array" else reply[0], value)
        _assert_value(spec, control.values()[name], value)
        if spec.kind == "array":                                    # /PARAM i f
            element = float(np.float32((spec.minimum + spec.maximum) / 2))
            client.send(address, 1, element)
            _, reply = await client.request(address)
            assert_allclose(reply[1], element, rtol=1e-6)
            assert_allclose(control.values()[name][1], element, rtol=1e-6)


async def test_state_ping_panic_reset(agent):
    control, _, client = agent
    assert await client.request("/ping") == ("/pong", [])
    client.send("/panic")
    client.send("/state")
    state = dict(await client.recv())
    assert state["/panicked"] == [1]
    assert control.panicked
    assert set(state) == {address_of(n) for n in control.specs()} | {"/panicked"}
    client.send("/unpanic")
    assert dict(await client.request_all("/state"))["/panicked"] == [0]
    assert not control.panicked
    client.send("/reset", 3)
    assert await client.request("/ping") == ("/pong", [])   # reset handled in order


BAD_INPUT = [
    ("/lr", ["fast"], r"^/lr: expected a number, got s$"),
    ("/lr", [0.1, 0.2], r"^/lr: takes one f; got f f$"),
    ("/lr", [1e9], r"^/lr: lr must be in \["),
    ("/gain", [40.0], r"^/gain: gain must be in \[-60, 12\] dB; got 40$"),
    ("/mute", [2], r"^/mute: mute must be 0 or 1; got 2$"),
    ("/mute", [0.5], r"^/mute: expected a whole number; got 0.5$"),
    ("/gain", [float("nan")], r"^/gain: gain must be finite$"),
    ("/act_mix", [99, 0.5], r"^/act_mix: index must be in \[0, "),
    ("/act_mix", [0, 5.0], r"^/act_mix: act_mix\[0\] must be in \[0, 1\]; got 5$"),
    ("/nope", [1.0], r"^/nope: unknown address"),
    ("/snapshot", [], r"^/snapshot: takes one string"),
    ("/recall", ["never-saved"], r"^/recall: "),
    ("/weights", [1.0, 2.0], r"^/weights: "),
    ("/unsubscribe", [], r"is not subscribed"),
]


@pytest.mark.parametrize("address, args, match", BAD_INPUT,
                         ids=[f"{a} {g}" for a, g, _ in BAD_INPUT])
async def test_bad_input_replies_error_and_leaves_values(agent, address, args, match):
    control, services, client = agent
    await _freeze(control)
    before = control.values()
    weights_before = await control.get_weights()
    reply_address, reply = await client.request(address, *args)
    assert reply_address == "/error"
    assert len(reply) == 1
    assert re.search(match, reply[0]), reply[0]
    assert _values_equal(control.values(), before)
    assert_allclose(await control.get_weights(), weights_before, rtol=0, atol=0)
    assert await client.request("/ping") == ("/pong", [])
    assert services.osc.stats()["errors_sent"] == 1


async def test_errors_are_logged_once_per_peer_and_kind(agent, caplog):
    _, services, client = agent
    with caplog.at_level(logging.WARNING, logger="anamnesis.agents.net.osc"):
        for _ in range(20):
            assert (await client.request("/lr", "x"))[0] == "/error"
            assert (await client.request("/lr", 1e9))[0] == "/error"
    lines = [r for r in caplog.records if r.name == "anamnesis.agents.net.osc"]
    assert len(lines) == 2, [r.getMessage() for r in lines]
    stats = services.osc.stats()
    assert stats["bad_args"] == 20 and stats["rejected"] == 20
    assert stats["log_suppressed"] == 38


async def _wait_value(client: OscTestClient, address: str, expected: float,
                      timeout: float = 2.0) -> list[object]:
    deadline = time.monotonic() + timeout
    while True:
        _, value = await client.request(address)
        if value == [pytest.approx(expected, rel=1e-6)] or time.monotonic() > deadline:
            return value
        await asyncio.sleep(0.02)


async def test_oscsend_changes_lr_and_oscquery_shows_it(tmp_path):
    """A real liblo client steers a real agent process; OSCQuery VALUE shows the change."""
    oscsend = require_program("oscsend")
    agent = await AgentProcess.start(tmp_path / "state", extra=("--no-announce", "--fresh"))
    client = await OscTestClient.open(agent.osc_port)
    try:
        _, before = await client.request("/lr")
        target = 0.3
        assert abs(before[0] - target) > 1e-3
        proc = await asyncio.create_subprocess_exec(
            oscsend, LOOPBACK, str(agent.osc_port), "/lr", "f", str(target))
        assert await asyncio.wait_for(proc.wait(), 10) == 0
        assert await _wait_value(client, "/lr", target) == [pytest.approx(target, rel=1e-6)]
        async with aiohttp.ClientSession() as session:
            url = f"http://{LOOPBACK}:{agent.http_port}/lr?VALUE"
            async with session.get(url) as response:
                assert response.status == 200
                body = await response.json()
        assert_allclose(body["VALUE"][0], target, rtol=1e-6)
        # liblo's other numeric type tags are coerced too: an int, a double, an int64.
        for tag, text, expected in (("i", "1", 1.0), ("d", "0.125", 0.125), ("h", "2", 2.0)):
            proc = await asyncio.create_subprocess_exec(
                oscsend, LOOPBACK, str(agent.osc_port), "/lr", tag, text)
            assert await asyncio.wait_for(proc.wait(), 10) == 0
            assert await _wait_value(client, "/lr", expected) == [expected]
        # A string is refused and the value stays.
        proc = await asyncio.create_subprocess_exec(
            oscsend, LOOPBACK, str(agent.osc_port), "/lr", "s", "fast")
        assert await asyncio.wait_for(proc.wait(), 10) == 0
        await asyncio.sleep(0.1)
        assert (await client.request("/lr")) == ("/lr", [2.0])
        # oscsend sends from a throw-away port and exits: /reply_port brings the answers
        # of its queries to a port that stays (here our client's)
        for argv in (("/reply_port", "i", str(client.port)), ("/lr",)):
            proc = await asyncio.create_subprocess_exec(
                oscsend, LOOPBACK, str(agent.osc_port), *argv)
            assert await asyncio.wait_for(proc.wait(), 10) == 0
        assert await client.recv_one() == ("/reply_port", [client.port])
        assert await client.recv_one() == ("/lr", [2.0])
    finally:
        client.close()
        assert await agent.stop() == 0


async def test_lr_reaches_the_learning_rate_of_an_unlearn_agent(tmp_path):
    """JOURNEYS 3 word for word: ``oscsend … /lr f 0.4`` to an Unlearn agent sets its λ
    (the seeds' learning rate), answers at /lr, and OSCQuery shows /lr as an alias."""
    oscsend = require_program("oscsend")
    agent = await AgentProcess.start(tmp_path / "state", model="unlearn",
                                     extra=("--no-announce", "--fresh", "--preset", "unlearn3"))
    client = await OscTestClient.open(agent.osc_port)
    try:
        _, before = await client.request("/lambda")
        assert abs(before[0] - 0.4) > 1e-3
        proc = await asyncio.create_subprocess_exec(
            oscsend, LOOPBACK, str(agent.osc_port), "/lr", "f", "0.4")
        assert await asyncio.wait_for(proc.wait(), 10) == 0
        assert await _wait_value(client, "/lambda", 0.4) == [pytest.approx(0.4, rel=1e-6)]
        assert await client.request("/lr") == ("/lr", [pytest.approx(0.4, rel=1e-6)])
        # a value out of λ's range is refused in λ's words, the value stays
        address, args = await client.request("/lr", 5000.0)
        assert address == "/error" and "lambda_ must be in [0, 1000]" in args[0]
        assert await client.request("/lambda") == ("/lambda", [pytest.approx(0.4, rel=1e-6)])
        async with aiohttp.ClientSession() as session:
            async with session.get(f"http://{LOOPBACK}:{agent.http_port}/") as response:
                tree = await response.json()
            async with session.get(f"http://{LOOPBACK}:{agent.http_port}/lr") as response:
                node = await response.json()
        alias = tree["CONTENTS"]["lr"]
        assert alias["FULL_PATH"] == "/lr" and alias["TYPE"] == "f"
        assert alias["DESCRIPTION"].startswith("alias of /lambda: learning rate")
        assert alias["RANGE"] == tree["CONTENTS"]["lambda"]["RANGE"]
        assert node["FULL_PATH"] == "/lr"
        assert_allclose(node["VALUE"][0], 0.4, rtol=1e-6)
    finally:
        client.close()
        assert await agent.stop() == 0


def _malformed_datagrams(n: int, rng: np.random.Generator) -> list[bytes]:
    valid = [build_message("/lr", [0.5]), build_message("/act_mix", [1, 0.5]),
             build_bundle([build_message("/gain", [-3.0]), build_message("/mute", [1])])]
    wrong_types = [build_message("/lr", ["x"]), build_message("/gain", [b"\x00\x01"]),
                   build_message("/mute", [0.5]), build_message("/act_mix", ["a", "b"]),
                   build_message("/weights", ["w"]), build_message("/snapshot", [1]),
                   build_message("/lr", [1.0, 2.0, 3.0]), build_message("/x" * 50, [1])]
    out: list[bytes] = []
    for i in range(n):
        kind = i % 4
        if kind == 0:     # random bytes (any length, aligned or not)
            data = rng.integers(0, 256, size=int(rng.integers(1, 200)), dtype=np.uint8).tobytes()
            if data[:1] == b"/" or data[:1] == b"#":
                data = b"\xff" + data[1:]
        elif kind == 1:   # a valid packet cut inside its last argument (1-4 bytes short)
            base = valid[i % len(valid)]
            data = base[: len(base) - int(rng.integers(1, 5))]
        elif kind == 2:   # wrong types / arity / unknown address
            data = wrong_types[i % len(wrong_types)]
        else:             # unsupported tags, bad bundles, stray brackets
            data = [b"/lr\x00,S\x00\x00ab\x00\x00", b"/lr\x00,]\x00\x00",
                    b"#bundle\x00" + bytes(8) + struct.pack(">i", 64) + b"/a\x00\x00",
                    b"/lr\x00,f\x00\x00"][i % 4]
        out.append(data)
    return out


async def test_ten_thousand_malformed_datagrams(agent, caplog):
    """Random bytes, truncated packets and wrong types: alive, counted, values unchanged."""
    control, services, client = agent
    await _freeze(control)
    before = control.values()
    weights_before = await control.get_weights()
    datagrams = _malformed_datagrams(10_000, np.random.default_rng(7))
    started = time.perf_counter()
    with caplog.at_level(logging.WARNING, logger="anamnesis.agents.net.osc"):
        for start in range(0, len(datagrams), 250):  # in bursts the socket buffer can hold
            for data in datagrams[start:start + 250]:
                client.send_raw(data)
            deadline = time.monotonic() + 5.0
            while services.osc.stats()["datagrams"] < start + 250 and time.monotonic() < deadline:
                await asyncio.sleep(0.001)
    elapsed = time.perf_counter() - started
    stats = services.osc.stats()
    assert stats["datagrams"] == 10_000
    problems = stats["malformed"] + stats["bad_args"] + stats["unknown_address"] + stats["rejected"]
    assert problems == 10_000
    assert stats["malformed"] >= 7_000
    assert stats["internal_errors"] == 0
    assert _values_equal(control.values(), before)
    assert_allclose(await control.get_weights(), weights_before, rtol=0, atol=0)
    assert stats["replies_suppressed"] > 5_000    # the reply budget: 200/s, bursts of 1000
    assert stats["errors_sent"] - stats["replies_suppressed"] < 2_000
    client.drain()
    await asyncio.sleep(0.05)                           # a few tokens back in the budget
    assert await client.request("/ping") == ("/pong", [])
    log_lines = [r for r in caplog.records if r.name == "anamnesis.agents.net.osc"]
    assert 1 <= len(log_lines) <= 5  # once per kind for this one peer
    assert any("reply budget" in r.getMessage() for r in log_lines)
    print(f"\nmalformed OSC: {10_000 / elapsed:.0f} datagrams/s handled "
          f"({elapsed * 1e6 / 10_000:.1f} us each, including the /error reply)")


def _bundle(at: float | None, *messages: bytes) -> bytes:
    """A bundle timed at Unix time ``at`` (None: immediately)."""
    return build_bundle_at(1 if at is None else unix_to_timetag(at), messages)


async def test_a_timed_bundle_plays_at_its_time_tag_without_holding_the_loop(agent):
    """OSC 1.0 time tags: a bundle 0.3 s ahead is applied then (scheduled on the loop,
    which keeps serving meanwhile: the loop watchdog), a past one at once, one more
    than 60 s ahead is refused with a reason and changes nothing."""
    control, services, client = agent
    loop = asyncio.get_running_loop()
    client.send_raw(_bundle(time.time() + 3600.0, build_message("/lr", [0.75])))
    address, args = await client.recv_one()
    assert address == "/error" and "3600 s ahead; at most 60 s" in args[0]
    assert control.values()["lr"] != pytest.approx(0.75)

    sent = loop.time()
    client.send_raw(_bundle(time.time() + 0.3, build_message("/lr", [0.625])))
    assert await client.request("/ping") == ("/pong", [])          # served meanwhile
    assert await client.request("/lr") != ("/lr", [0.625])         # not yet
    while control.values()["lr"] != pytest.approx(0.625):
        assert loop.time() - sent < 5.0, "the timed bundle never played"
        await asyncio.sleep(0.005)
    assert loop.time() - sent >= 0.3 - 0.01                         # not before its time
    assert services.osc.stats()["scheduled"] == 1

    client.send_raw(_bundle(time.time() - 5.0, build_message("/lr", [0.5])))   # late: now
    assert await client.request("/lr") == ("/lr", [0.5])


async def test_replies_go_to_the_reply_port_a_throwaway_sender_chose(agent):
    """Max's [udpsend] and Pd's [netsend] send from a throw-away port: /reply_port PORT
    sends this host's replies to a port of its choice, and 0 undoes it."""
    _, services, sender = agent
    listener = await OscTestClient.open(services.osc_port)
    try:
        sender.send("/reply_port", listener.port)
        assert await listener.recv_one() == ("/reply_port", [listener.port])
        sender.send("/ping")
        assert await listener.recv_one() == ("/pong", [])
        sender.send("/reply_port", 0)
        assert await sender.recv_one() == ("/reply_port", [0])
        assert await sender.request("/ping") == ("/pong", [])
        address, args = await sender.request("/reply_port", 70000)
        assert address == "/error" and "[0, 65535]" in args[0]
    finally:
        listener.close()


async def test_telemetry_comes_from_the_osc_port_with_the_agents_id_and_prefix(agent):
    """SuperCollider's OSCdef filters by source address, and a patch listening to two
    agents must tell them apart: telemetry comes from the agent's OSC port, each bundle
    begins /agent ID, and a prefix chosen at /subscribe leads every address."""
    control, services, client = agent
    other = await OscTestClient.open(services.osc_port)
    try:
        assert await client.request("/subscribe", other.port, "/room/t1") == \
            ("/subscribed", [other.port, 60.0])
        frame = await other.recv()
        assert frame[0] == ("/room/t1/agent", [control.agent_id])
        assert all(address.startswith("/room/t1/") for address, _ in frame)
        assert "/room/t1/level" in dict(frame)
        assert other.protocol.senders == {(LOOPBACK, services.osc_port)}
        address, args = await client.request("/subscribe", other.port, "no slash")
        assert address == "/error" and "prefix" in args[0]
    finally:
        other.close()


async def test_weights_over_osc(agent):
    control, _, client = agent
    client.send("/learn", 0)
    assert await client.request("/learn") == ("/learn", [0])
    await control.get_weights()                  # a block boundary: learning has stopped
    address, flat = await client.request("/weights")
    assert address == "/weights"
    current = await control.get_weights()
    assert len(flat) == len(current)
    assert_allclose(flat, current, rtol=1e-6, atol=1e-7)
    new = np.float32(np.linspace(-0.5, 0.5, len(flat))).astype(np.float64)
    client.send("/weights", *[float(w) for w in new])
    address, flat = await client.request("/weights")
    assert_allclose(flat, new, rtol=1e-6, atol=1e-7)
    assert (await client.request("/weights", *[0.0] * (len(new) + 1)))[0] == "/error"


async def test_snapshot_and_recall_over_osc(agent):
    control, _, client = agent
    await _freeze(control)
    saved = await control.get_weights()
    assert await client.request("/snapshot", "calm") == ("/snapshot", ["calm"])
    client.send("/weights", *[0.125] * len(saved))
    _, flat = await client.request("/weights")
    assert_allclose(flat, 0.125, rtol=0, atol=0)
    assert await client.request("/recall", "calm") == ("/recall", ["calm"])
    _, flat = await client.request("/weights")
    assert_allclose(flat, saved, rtol=1e-6, atol=1e-7)
    assert "calm" in control.snapshot_names()


async def _count_telemetry(client: OscTestClient, seconds: float) -> list[list]:
    frames = []
    deadline = time.monotonic() + seconds
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return frames
        try:
            frames.append(await client.recv(timeout=remaining))
        except TimeoutError:
            return frames


async def test_subscribe_sends_telemetry_at_30_hz(agent):
    _, services, client = agent
    assert await client.request("/subscribe") == ("/subscribed", [client.port, 60.0])
    frames = await _count_telemetry(client, 1.0)
    assert 24 <= len(frames) <= 36, len(frames)
    first = dict(frames[0])
    assert len(first["/level"]) == 2 and all(np.isfinite(first["/level"]))
    assert 0.0 <= first["/level"][0] <= first["/level"][1] + 1e-6   # rms <= peak
    assert "/error_rms" in first
    client.send("/subscribe")                                           # renew
    assert await client.expect("/subscribed") == [client.port, 60.0]
    assert services.osc.stats()["subscribers"] == 1
    client.send("/unsubscribe")
    assert await client.expect("/unsubscribed") == [client.port]
    await asyncio.sleep(0.1)
    client.drain()
    assert await _count_telemetry(client, 0.3) == []
    assert services.osc.stats()["subscribers"] == 0


async def test_subscriber_that_vanishes_is_dropped(agent):
    _, services, client = agent
    other = await OscTestClient.open(services.osc_port)
    port = other.port
    assert await client.request("/subscribe", port) == ("/subscribed", [port, 60.0])
    assert len(await _count_telemetry(other, 0.2)) >= 2
    other.close()                       # the port is gone: ICMP port unreachable
    deadline = time.monotonic() + 3.0
    while services.osc.stats()["subscribers"] and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    assert services.osc.stats()["subscribers"] == 0
    assert services.osc.stats()["subscribers_dropped"] == 1


async def test_lease_expiry_and_subscriber_cap(tmp_path):
    async with running_agent(tmp_path / "state") as control:
        server = OscServer(control, lease=1.0, max_subscribers=2)
        port = await server.start(LOOPBACK, 0)
        clients = [await OscTestClient.open(port) for _ in range(3)]
        try:
            for c in clients[:2]:
                assert (await c.request("/subscribe"))[0] == "/subscribed"
            address, reply = await clients[2].request("/subscribe")
            assert address == "/error" and "at most 2 subscribers" in reply[0]
            await asyncio.sleep(0.5)
            clients[0].send("/subscribe")                                     # renew one
            renewed = await clients[0].expect("/subscribed")
            assert renewed[0] == clients[0].port and renewed[1] == pytest.approx(1.0, rel=1e-6)
            await asyncio.sleep(0.7)        # the other's lease (1 s) ran out; the renewed one not
            assert server.subscribers() == [(LOOPBACK, clients[0].port)]
            assert server.stats()["subscribers_dropped"] == 1
        finally:
            for c in clients:
                c.close()
            await server.close()


async def test_one_host_holds_at_most_four_subscriptions(tmp_path):
    """A forged ``/subscribe`` with an allowed host's address adds at most
    MAX_SUBSCRIBERS_PER_HOST streams towards that host; another host still subscribes."""
    async with running_agent(tmp_path / "state") as control:
        server = OscServer(control, lease=30.0)
        port = await server.start(LOOPBACK, 0)
        clients = [await OscTestClient.open(port) for _ in range(MAX_SUBSCRIBERS_PER_HOST + 1)]
        other = await OscTestClient.open(port, local_host="127.0.0.2")
        try:
            for c in clients[:-1]:
                assert (await c.request("/subscribe"))[0] == "/subscribed"
            address, reply = await clients[-1].request("/subscribe")
            assert address == "/error" and "subscriptions per host" in reply[0]
            assert (await other.request("/subscribe"))[0] == "/subscribed"
            assert len(server.subscribers()) == MAX_SUBSCRIBERS_PER_HOST + 1
            clients[0].send("/unsubscribe")
            await clients[0].expect("/unsubscribed")
            assert (await clients[-1].request("/subscribe"))[0] == "/subscribed"
        finally:
            for c in (*clients, other):
                c.close()
            await server.close()


async def test_agent_process_survives_malformed_flood(tmp_path):
    """The same 10k malformed datagrams against a real agent process: it stays up, counts
    them (its telemetry carries /osc_malformed), and no value changes."""
    agent = await AgentProcess.start(tmp_path / "state", extra=("--no-announce", "--fresh"))
    client = await OscTestClient.open(agent.osc_port)
    # Another peer host on loopback, with a reply budget of its own.
    watcher = await OscTestClient.open(agent.osc_port, local_host="127.0.0.2")
    try:
        client.send("/learn", 0)
        before = dict(await client.request_all("/state"))
        datagrams = _malformed_datagrams(10_000, np.random.default_rng(11))
        expected_malformed = 0
        for start in range(0, len(datagrams), 250):
            for data in datagrams[start:start + 250]:
                client.send_raw(data)
            # Pace by the other host's /ping behind each burst.
            assert await watcher.request("/ping", timeout=5.0) == ("/pong", [])
        replies = client.drain()
        assert 1_000 <= replies < 3_000  # the per-host reply budget held most /errors back
        for data in datagrams:
            try:
                parse_packet(data)
            except ProtocolError:
                expected_malformed += 1
        after = dict(await watcher.request_all("/state"))
        assert after == before
        watcher.send("/subscribe")
        assert await watcher.expect("/osc_malformed") == [expected_malformed]
    finally:
        client.close()
        watcher.close()
        assert await agent.stop() == 0


async def test_reply_budget_refills_and_caps_hosts():
    from anamnesis.agents.net.osc import ReplyBudget

    budget = ReplyBudget(rate=10.0, burst=5.0, max_hosts=3)
    assert [budget.allow("a", 0.0) for _ in range(6)] == [True] * 5 + [False]
    assert budget.allow("a", 0.05) is False          # 0.5 token back: not enough
    assert budget.allow("a", 0.1) is True            # one token after 0.1 s at 10/s
    for host in ("b", "c", "d"):                     # a fourth host evicts the oldest ("a")
        assert budget.allow(host, 0.1)
    assert "a" not in budget._buckets and len(budget._buckets) == 3
