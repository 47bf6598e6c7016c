"""zeroconf discovery: the signed TXT schema (pure) and a real announcer browsed on 127.0.0.1.

Every Zeroconf here is bound to 127.0.0.1 (TESTING.md: never all interfaces).
"""

from __future__ import annotations

import asyncio
import logging
import os
import stat
import time

import pytest
from support.controlplane import (
    AgentProcess,
    OscTestClient,
    running_agent,
)
from zeroconf.asyncio import AsyncServiceBrowser, AsyncServiceInfo, AsyncZeroconf

from anamnesis.agents.net.announce import AgentAnnouncer
from anamnesis.agents.net.services import start_control_services
from anamnesis.agents.protocol.errors import ProtocolError
from anamnesis.agents.protocol.key import generate_key, load_key
from anamnesis.agents.protocol.txt import (
    ANAMNESIS_SERVICE,
    FIELDS,
    OSC_SERVICE,
    OSCQUERY_SERVICE,
    PROTOCOL_VERSION,
    build_txt,
    check_token,
    instance_name,
    parse_txt,
    verify_txt,
)

LOOPBACK = "127.0.0.1"
KEY = bytes(range(32))

FIELDS_OK = {"id": "a3", "model": "autoregnn", "v": PROTOCOL_VERSION, "osc": 9000, "http": 9001,
             "rtp": 0, "inst": "studio", "addr": ["127.0.0.1", "::1"], "ts": 1_700_000_000}


def test_sign_verify_round_trip():
    txt = build_txt(FIELDS_OK, KEY)
    assert set(txt) == set(FIELDS) | {"sig"}
    assert all(isinstance(v, str) for v in txt.values())
    assert txt["addr"] == "127.0.0.1,::1" and txt["rtp"] == "0"
    assert verify_txt(txt, KEY)
    # As zeroconf hands TXT records over: bytes keys and values.
    as_bytes = {k.encode(): v.encode() for k, v in txt.items()}
    assert verify_txt(as_bytes, KEY)
    record = parse_txt(as_bytes)
    assert (record.agent_id, record.model, record.version) == ("a3", "autoregnn", 1)
    assert (record.osc_port, record.http_port, record.rtp_port) == (9000, 9001, 0)
    assert record.addresses == ("127.0.0.1", "::1") and record.installation == "studio"
    assert record.timestamp == 1_700_000_000 and record.signed


@pytest.mark.parametrize("field, value", [
    ("id", "a4"), ("model", "unlearn"), ("v", "2"), ("osc", "9002"), ("http", "9003"),
    ("rtp", "5004"), ("inst", "other"), ("addr", "127.0.0.2"), ("ts", "1700000001"),
    ("sig", "0" * 64),
])
def test_tampered_field_fails(field, value):
    txt = build_txt(FIELDS_OK, KEY)
    tampered = dict(txt, **{field: value})
    assert not verify_txt(tampered, KEY)


def test_wrong_key_unsigned_and_extra_fields():
    txt = build_txt(FIELDS_OK, KEY)
    assert not verify_txt(txt, bytes(32))
    unsigned = build_txt(FIELDS_OK, None)
    assert "sig" not in unsigned
    assert not parse_txt(unsigned).signed
    assert not verify_txt(unsigned, KEY)
    # A field the signer did not sign (added by someone else) breaks the signature.
    assert not verify_txt(dict(txt, extra="1"), KEY)


def test_max_age():
    txt = build_txt(FIELDS_OK, KEY)
    assert verify_txt(txt, KEY, max_age=60, now=1_700_000_030)
    assert not verify_txt(txt, KEY, max_age=60, now=1_700_000_061)


PARSE_ERRORS = [
    ({"id": None}, r"lacks id"),
    ({"osc": "x"}, r"osc must be a port number"),
    ({"osc": "0"}, r"osc out of range: 0"),
    ({"http": "70000"}, r"http out of range"),
    ({"v": "one"}, r"v must be a whole number"),
    ({"ts": "-5"}, r"ts must be Unix seconds"),
    ({"addr": "not-an-ip"}, r"bad address 'not-an-ip'"),
    ({"addr": ""}, r"at least one address"),
    ({"id": "a b"}, r"id must be 1-32 letters"),
    # The agent-id rule is the process's own (--id): no '.', at most 32 characters.
    ({"id": "a.b"}, r"id must be 1-32 letters"),
    ({"id": "a" * 33}, r"id must be 1-32 letters"),
    ({"inst": "x" * 64}, r"inst must be 1-63"),
    ({"sig": "XYZ"}, r"sig must be 64 lowercase hex digits"),
]


@pytest.mark.parametrize("change, match", PARSE_ERRORS, ids=[m for _, m in PARSE_ERRORS])
def test_parse_errors(change, match):
    txt = build_txt(FIELDS_OK, KEY)
    for key, value in change.items():
        if value is None:
            del txt[key]
        else:
            txt[key] = value
    with pytest.raises(ProtocolError, match=match):
        parse_txt(txt)
    assert not verify_txt(txt, KEY)


def test_parse_rejects_non_utf8():
    txt = {k.encode(): v.encode() for k, v in build_txt(FIELDS_OK, KEY).items()}
    txt[b"id"] = b"\xff\xfe"
    with pytest.raises(ProtocolError, match="not UTF-8"):
        parse_txt(txt)


def test_build_rejects_bad_fields():
    with pytest.raises(ProtocolError, match="missing ts; unknown color"):
        build_txt({**{k: v for k, v in FIELDS_OK.items() if k != "ts"}, "color": "red"}, KEY)
    with pytest.raises(ProtocolError, match="osc out of range"):
        build_txt(dict(FIELDS_OK, osc=0), KEY)
    with pytest.raises(ProtocolError, match="must be printable"):
        build_txt(dict(FIELDS_OK, inst="a\nb"), KEY)


def test_generate_and_load_key(tmp_path):
    path = tmp_path / "keys" / "installation.key"
    key = generate_key(path)
    assert len(key) == 32
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert load_key(path) == key
    with pytest.raises(FileExistsError, match="already exists"):
        generate_key(path)
    assert load_key(path) == key  # untouched


def test_load_key_errors(tmp_path, caplog):
    with pytest.raises(ValueError, match=r"does not exist; create it on the hub"):
        load_key(tmp_path / "missing.key")
    empty = tmp_path / "empty.key"
    empty.write_text("  \n")
    with pytest.raises(ValueError, match=r"is empty"):
        load_key(empty)
    short = tmp_path / "short.key"
    short.write_text("00ff" * 4 + "\n")   # 8 bytes
    with pytest.raises(ValueError, match=r"too short: 8 bytes, at least 16 needed"):
        load_key(short)
    with pytest.raises(ValueError, match="is a directory"):
        load_key(tmp_path)
    loose = tmp_path / "loose.key"
    loose.write_text("a-passphrase-long-enough-to-use")   # raw bytes, not hex
    os.chmod(loose, 0o644)
    with caplog.at_level(logging.WARNING, logger="anamnesis.agents.net.announce"):
        assert load_key(loose) == b"a-passphrase-long-enough-to-use"
    assert "readable by others" in caplog.text


# ---------------------------------------------------------------------------
# Real zeroconf on loopback
# ---------------------------------------------------------------------------


async def _resolve(aiozc, type_: str, name: str, timeout: float):
    info = AsyncServiceInfo(type_, name)
    assert await info.async_request(aiozc.zeroconf, timeout * 1000), f"{name} did not resolve"
    return info


class _Seen:
    def __init__(self) -> None:
        self.events: list[tuple[str, str, float]] = []
        self.changed = asyncio.Event()

    def handler(self, zeroconf, service_type, name, state_change) -> None:
        self.events.append((state_change.name, name, time.monotonic()))
        self.changed.set()

    async def wait_for(self, state: str, name: str, timeout: float) -> float:
        deadline = time.monotonic() + timeout
        while True:
            for event_state, event_name, at in self.events:
                if event_state == state and event_name == name:
                    return at
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"no {state} of {name} within {timeout} s: {self.events}")
            self.changed.clear()
            try:
                await asyncio.wait_for(self.changed.wait(), remaining)
            except TimeoutError:
                pass


@pytest.mark.asyncio
@pytest.mark.usefixtures("loop_watchdog")
async def test_browse_on_loopback_finds_signed_agent():
    browser_zc = AsyncZeroconf(interfaces=[LOOPBACK])
    seen = _Seen()
    browser = AsyncServiceBrowser(browser_zc.zeroconf, [ANAMNESIS_SERVICE],
                                  handlers=[seen.handler])
    announcer = AgentAnnouncer(agent_id="zc1", model="autoregnn", interface=LOOPBACK,
                               osc_port=9100, http_port=9101, installation="loopback", key=KEY)
    name = f"{instance_name('zc1', 'loopback')}.{ANAMNESIS_SERVICE}"
    try:
        started = time.monotonic()
        await announcer.start()
        assert await announcer.wait_registered(10.0)
        registered = time.monotonic() - started
        found = await seen.wait_for("Added", name, 5.0) - started
        info = await _resolve(browser_zc, ANAMNESIS_SERVICE, name, 3.0)
        resolved = time.monotonic() - started
        assert verify_txt(info.properties, KEY, max_age=60)
        record = parse_txt(info.properties)
        assert (record.agent_id, record.osc_port, record.http_port) == ("zc1", 9100, 9101)
        assert record.addresses == (LOOPBACK,)
        assert info.parsed_addresses() == [LOOPBACK] and info.port == 9100
        for type_, port in ((OSCQUERY_SERVICE, 9101), (OSC_SERVICE, 9100)):
            other = await _resolve(browser_zc, type_,
                                   f"{instance_name('zc1', 'loopback')}.{type_}", 3.0)
            assert other.port == port
        # A state change re-publishes a freshly signed record.
        await announcer.update(rtp_port=5004)
        deadline = time.monotonic() + 5.0
        while time.monotonic() < deadline:
            info = await _resolve(browser_zc, ANAMNESIS_SERVICE, name, 3.0)
            if parse_txt(info.properties).rtp_port == 5004:
                break
            await asyncio.sleep(0.1)
        assert parse_txt(info.properties).rtp_port == 5004
        assert verify_txt(info.properties, KEY)
        closing = time.monotonic()
        await announcer.close()
        removed = await seen.wait_for("Removed", name, 5.0) - closing
        print(f"\nzeroconf on loopback: registered {registered:.2f} s, browse found it at "
              f"{found:.2f} s, resolved+verified at {resolved:.2f} s, goodbye seen "
              f"{removed * 1000:.1f} ms after close began")
    finally:
        await announcer.close()
        await browser.async_cancel()
        await browser_zc.async_close()


@pytest.mark.asyncio
@pytest.mark.usefixtures("loop_watchdog")
async def test_unsigned_agent_has_no_sig():
    announcer = AgentAnnouncer(agent_id="zc2", model="unlearn", interface=LOOPBACK,
                               osc_port=9200, http_port=9201, installation="loopback", key=None)
    assert "sig" not in announcer.txt
    assert not verify_txt(announcer.txt, KEY)
    assert parse_txt(announcer.txt).agent_id == "zc2"


@pytest.mark.asyncio
@pytest.mark.usefixtures("loop_watchdog")
async def test_failed_publish_is_logged_and_retried(monkeypatch, caplog):
    """Fail soft and loudly: the first attempt fails, is logged, and a retry succeeds."""
    import zeroconf.asyncio as zc_asyncio

    real = zc_asyncio.AsyncZeroconf
    attempts = []

    def flaky(*args, **kwargs):
        attempts.append(kwargs.get("interfaces"))
        if len(attempts) == 1:
            raise OSError("network is down (simulated)")
        return real(*args, **kwargs)

    monkeypatch.setattr(zc_asyncio, "AsyncZeroconf", flaky)
    announcer = AgentAnnouncer(agent_id="zc3", model="autoregnn", interface=LOOPBACK,
                               osc_port=9300, http_port=9301, installation="loopback", key=KEY,
                               retry=0.1)
    try:
        with caplog.at_level(logging.WARNING, logger="anamnesis.agents.net.announce"):
            await announcer.start()
            assert await announcer.wait_registered(10.0)
        assert announcer.failures == 1
        assert attempts == [[LOOPBACK], [LOOPBACK]]
        assert "network is down (simulated)" in caplog.text and "retrying in" in caplog.text
    finally:
        await announcer.close()


def test_announcer_refuses_unspecified_interface():
    with pytest.raises(ValueError, match="concrete interface address"):
        AgentAnnouncer(agent_id="x", model="m", interface="0.0.0.0", osc_port=1, http_port=2,
                       installation="i", key=None)
    with pytest.raises(ValueError):
        AgentAnnouncer(agent_id="x", model="m", interface="not-an-ip", osc_port=1, http_port=2,
                       installation="i", key=None)


@pytest.mark.asyncio
@pytest.mark.usefixtures("loop_watchdog")
async def test_agent_process_is_found_with_a_verifiable_signature(tmp_path):
    """A real agent process announces itself on 127.0.0.1; a browser bound to 127.0.0.1
    finds it, the signature verifies with the installation key (and not with another
    key), and a clean shutdown is seen as its removal."""
    key_file = tmp_path / "installation.key"
    key = generate_key(key_file)
    browser_zc = AsyncZeroconf(interfaces=[LOOPBACK])
    seen = _Seen()
    browser = AsyncServiceBrowser(browser_zc.zeroconf, [ANAMNESIS_SERVICE],
                                  handlers=[seen.handler])
    name = f"{instance_name('zp1', 'gallery')}.{ANAMNESIS_SERVICE}"
    agent = None
    try:
        started = time.monotonic()
        agent = await AgentProcess.start(
            tmp_path / "state", agent_id="zp1",
            extra=("--fresh", "--installation", "gallery", "--key-file", str(key_file)))
        ready = time.monotonic() - started
        found = await seen.wait_for("Added", name, 10.0) - started
        info = await _resolve(browser_zc, ANAMNESIS_SERVICE, name, 3.0)
        assert verify_txt(info.properties, key, max_age=300)
        assert not verify_txt(info.properties, bytes(32))
        record = parse_txt(info.properties)
        assert record.agent_id == "zp1" and record.model == "autoregnn"
        assert record.installation == "gallery"
        assert (record.osc_port, record.http_port) == (agent.osc_port, agent.http_port)
        assert record.addresses == (LOOPBACK,) and record.version == PROTOCOL_VERSION
        stopping = time.monotonic()
        assert await agent.stop() == 0
        removed = await seen.wait_for("Removed", name, 5.0) - stopping
        print(f"\nagent process: ready {ready:.2f} s after exec, found by browse at {found:.2f} s, "
              f"removal seen {removed:.2f} s after SIGTERM")
    finally:
        if agent is not None:
            await agent.stop()
        await browser.async_cancel()
        await browser_zc.async_close()


@pytest.mark.asyncio
@pytest.mark.usefixtures("loop_watchdog")
async def test_recall_republishes_a_fresh_signed_record(tmp_path):
    """After /recall the TXT record is signed again with a new timestamp."""
    browser_zc = AsyncZeroconf(interfaces=[LOOPBACK])
    async with running_agent(tmp_path / "state", agent_id="zr1") as control:
        services = await start_control_services(
            control, interface=LOOPBACK, osc_port=0, http_port=0, installation="recall",
            key=KEY, announce=True)
        client = await OscTestClient.open(services.osc_port)
        name = f"{instance_name('zr1', 'recall')}.{ANAMNESIS_SERVICE}"
        try:
            assert await services.announcer.wait_registered(10.0)
            first = parse_txt((await _resolve(browser_zc, ANAMNESIS_SERVICE, name, 3.0)).properties)
            assert await client.request("/snapshot", "s1") == ("/snapshot", ["s1"])
            await asyncio.sleep(1.05)                      # ts has 1 s resolution
            assert await client.request("/recall", "s1") == ("/recall", ["s1"])
            deadline = time.monotonic() + 5.0
            while True:
                info = await _resolve(browser_zc, ANAMNESIS_SERVICE, name, 3.0)
                record = parse_txt(info.properties)
                if record.timestamp > first.timestamp or time.monotonic() > deadline:
                    break
                await asyncio.sleep(0.1)
            assert record.timestamp > first.timestamp
            assert record.signature != first.signature
            assert verify_txt(info.properties, KEY)
        finally:
            client.close()
            await services.close()
            await browser_zc.async_close()


@pytest.mark.asyncio
@pytest.mark.usefixtures("loop_watchdog")
async def test_failed_update_registers_again(caplog):
    """A failed TXT update is logged and the agent is registered again with the new record."""
    browser_zc = AsyncZeroconf(interfaces=[LOOPBACK])
    announcer = AgentAnnouncer(agent_id="zu1", model="autoregnn", interface=LOOPBACK,
                               osc_port=9400, http_port=9401, installation="loopback", key=KEY,
                               retry=0.1)
    name = f"{instance_name('zu1', 'loopback')}.{ANAMNESIS_SERVICE}"
    try:
        await announcer.start()
        assert await announcer.wait_registered(10.0)

        async def broken(info):
            raise OSError("socket gone (simulated)")

        announcer._zc.async_update_service = broken
        with caplog.at_level(logging.WARNING, logger="anamnesis.agents.net.announce"):
            await announcer.update(rtp_port=5006)
        assert "socket gone (simulated)" in caplog.text and "registering it again" in caplog.text
        assert await announcer.wait_registered(10.0)
        info = await _resolve(browser_zc, ANAMNESIS_SERVICE, name, 3.0)
        assert parse_txt(info.properties).rtp_port == 5006
        assert verify_txt(info.properties, KEY)
        assert announcer.failures == 1
    finally:
        await announcer.close()
        await browser_zc.async_close()


def test_instance_names_fit_a_dns_label():
    assert instance_name("a3", "studio") == "anamnesis a3 (studio)"
    long = instance_name("a" * 32, "i" * 63)
    assert len(long.encode("utf-8")) <= 63 and long.startswith("anamnesis " + "a" * 32 + " (i")
    with pytest.raises(ValueError, match="installation must be 1-63 letters"):
        check_token("my piece", "installation")
    assert check_token("gallery-2", "installation") == "gallery-2"
