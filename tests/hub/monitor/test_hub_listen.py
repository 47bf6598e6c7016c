"""The listen stream: the PCM16 codec, the per-socket batcher and its bounded queue, and a
real simulated hub (two real agent processes clocked over RTP on 127.0.0.1) streaming an
agent's output to a WebSocket client — the same samples the hub's clock produced — plus
refusals (unknown source 4404, no token 401, another origin 403) and the deployed router's
feed."""

from __future__ import annotations

import asyncio
import itertools
import struct

import aiohttp
import numpy as np
import pytest
import pytest_asyncio
from numpy.testing import assert_array_equal
from support.hubs import DEPLOYED, live_hub, running_hub

from anamnesis.hub.monitor.listen import (
    LISTEN_HEADER,
    LISTENER,
    ListenStream,
    ListenTap,
    decode_frame,
    encode_frame,
    to_pcm16,
)

LOOPBACK = "127.0.0.1"

#: The live hub is started once for the tests that share it (one event loop for them).
on_the_live_loop = pytest.mark.asyncio(loop_scope="module")

SIM = """
[installation]
name = "listen2"
block = 256
mode = "simulated"

[room]
size = [6.0, 5.0, 3.0]
rt60 = 0.3
max_order = 3
listener = [3.0, 2.5, 1.6]

[[agent]]
id = "ls1"
model = "autoregnn"
params = { lr = 0.8, ridge = 1e-5 }
speaker = [2.0, 2.0, 1.5]
mic = [2.3, 2.0, 1.5]
spawn = true
seed = 1

[[agent]]
id = "ls2"
model = "autoregnn"
params = { lr = 0.9, ridge = 1e-5 }
speaker = [4.0, 3.0, 1.5]
mic = [3.7, 3.0, 1.5]
spawn = true
seed = 2

[[ring]]
name = "ring"
agents = ["ls1", "ls2"]
highpass_hz = 2.0
shape = "tanh"

[[source]]
name = "burst"
kind = "noise"
args = { amp = 0.1, seed = 1 }
targets = ["ls1"]
"""


# ---------------------------------------------------------------------------
# Pure parts
# ---------------------------------------------------------------------------


def test_the_codec_round_trips_and_the_header_is_28_bytes():
    assert LISTEN_HEADER.size == 28
    rng = np.random.default_rng(3)
    block = rng.uniform(-1.5, 1.5, (300, 2))
    block[5, 0], block[6, 1], block[7, 0] = np.nan, np.inf, -np.inf
    data = encode_frame(block, sample_rate=44100, seq=2**32 + 5, hub_time_ms=1.7e12 + 0.25)
    assert len(data) == 28 + 300 * 2 * 2
    magic, version, channels, reserved, rate, seq, when, frames = struct.unpack_from(
        "<4sBBHIIdI", data)
    assert (magic, version, channels, reserved, rate, seq, frames) == (
        b"ANLS", 1, 2, 0, 44100, 5, 300)
    assert when == 1.7e12 + 0.25
    frame = decode_frame(data)
    want = np.rint(np.clip(np.nan_to_num(block, nan=0.0, posinf=1.0, neginf=-1.0),
                           -1, 1) * 32767).astype(np.int16)
    assert_array_equal(frame.samples, want)
    assert (frame.channels, frame.sample_rate, frame.seq, frame.hub_time_ms) == (
        2, 44100, 5, 1.7e12 + 0.25)
    assert frame.samples[5, 0] == 0 and frame.samples[6, 1] == 32767
    assert frame.samples[7, 0] == -32767 and np.abs(frame.samples).max() == 32767
    # Samples are interleaved: frame 0 left, frame 0 right, frame 1 left ...
    raw = np.frombuffer(data[28:], dtype="<i2")
    assert_array_equal(raw[:4], [want[0, 0], want[0, 1], want[1, 0], want[1, 1]])
    # Encoding int16 samples as they are; the time defaults to now.
    again = decode_frame(encode_frame(want, sample_rate=44100, seq=5))
    assert_array_equal(again.samples, want) and again.hub_time_ms > 1.7e12
    for bad in (data[:27], data[:-1], b"XXXX" + data[4:], data[:4] + b"\x02" + data[5:]):
        with pytest.raises(ValueError):
            decode_frame(bad)


def test_to_pcm16_with_buffers_allocates_nothing_and_rounds():
    from support.alloc import traced_allocation

    block = np.array([[0.5], [-0.5], [1.0 / 65534], [-2.0]])
    out = np.zeros((4, 1), dtype=np.int16)
    scratch, mask = np.zeros((4, 1)), np.zeros((4, 1), dtype=bool)
    to_pcm16(block, out=out, scratch=scratch, mask=mask)
    assert out[:, 0].tolist() == [16384, -16384, 0, -32767]   # 16383.5 rounds to even
    peak, retained = traced_allocation(
        lambda: to_pcm16(block, out=out, scratch=scratch, mask=mask))
    assert peak < 512 and retained == 0, (peak, retained)


async def test_a_stream_batches_whole_blocks_and_drops_the_oldest_when_full():
    drops = []
    stream = ListenStream(1, 48000, queue_size=3, on_drop=lambda: drops.append(1))
    assert stream.target == 960
    blocks = [np.full((256, 1), k / 100.0) for k in range(40)]
    for block in blocks:
        stream.add(block)
    # 40 blocks of 256 frames -> 10 messages of 4 blocks (1024 frames >= 960); 3 kept.
    assert stream.dropped == 7 and len(drops) == 7
    got = [await stream.next() for _ in range(3)]
    assert [seq for seq, _ in got] == [7, 8, 9]
    for seq, pcm in got:
        assert pcm.shape == (1024, 1)
        want = np.concatenate(blocks[4 * seq:4 * seq + 4])
        assert_array_equal(pcm, to_pcm16(want))
    # A block larger than a message still fits whole.
    stream.add(np.zeros((5000, 1)))
    seq, pcm = await stream.next()
    assert seq == 10 and pcm.shape == (5000, 1)


def test_the_tap_names_its_sources_and_refuses_others():
    tap = ListenTap(["a", "b"], 48000, listener=True)
    assert tap.sources == ("a", "b", LISTENER)
    assert tap.channels("a") == 1 and tap.channels(LISTENER) == 2
    with pytest.raises(KeyError, match="nothing to listen to called 'c'"):
        tap.subscribe("c", lambda block: None)
    assert ListenTap(["a"], 48000).sources == ("a",)
    room = [True]                  # a room that comes and goes while the hub runs
    tap = ListenTap(["a"], 48000, listener=lambda: room[0])
    assert tap.sources == ("a", LISTENER)
    room[0] = False
    assert tap.sources == ("a",) and not tap.listener


#: How many listen messages (of 1024 frames, ~21 ms) the stereo test waits for sound.
MAX_QUIET_MESSAGES = 500

# ---------------------------------------------------------------------------
# A live simulated hub
# ---------------------------------------------------------------------------




@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def live(tmp_path_factory):
    async with live_hub(tmp_path_factory.mktemp("hub"), SIM, "listen2.toml") as running:
        yield running


@on_the_live_loop
async def test_an_agents_output_streams_as_the_clock_made_it(live):
    hub, base = live
    kept: list[np.ndarray] = []
    unsubscribe = hub.listen.subscribe("ls1", lambda block: kept.append(block.copy()))
    try:
        async with aiohttp.ClientSession(
                headers={"Authorization": f"Bearer {hub.token}"}) as http, \
                http.ws_connect(base + "/ws/listen?source=ls1") as ws:
            head = await ws.receive_json(timeout=5)
            assert head == {"type": "listen", "source": "ls1", "channels": 1,
                            "sample_rate": 48000, "frames_per_message": 960}
            frames = []
            while len(frames) < 12:
                msg = await ws.receive(timeout=5)
                assert msg.type == aiohttp.WSMsgType.BINARY, msg
                frames.append(decode_frame(msg.data))
    finally:
        unsubscribe()
    assert [f.seq for f in frames] == list(range(12))
    assert all(f.channels == 1 and f.sample_rate == 48000 for f in frames)
    assert all(f.samples.shape == (1024, 1) for f in frames)   # 4 blocks of 256 per message
    times = [f.hub_time_ms for f in frames]
    assert all(b >= a for a, b in itertools.pairwise(times))
    # ~21.3 ms of audio per message, sent as the clock makes it (real time, loosely).
    span_s = (times[-1] - times[0]) / 1000.0
    assert 0.05 < span_s < 2.0, span_s
    got = np.concatenate([f.samples[:, 0] for f in frames])
    assert np.count_nonzero(got) > 0, "the agent is silent"
    # The stream is the clock's own output of ls1, converted to 16 bits, without a gap.
    made = to_pcm16(np.concatenate(kept))[:, 0]
    assert any(np.array_equal(made[i:i + len(got)], got)
               for i in range(0, len(made) - len(got) + 1, 256)), "not the clock's samples"
    await asyncio.sleep(0.1)
    assert not hub.listen.active            # closing the socket unsubscribed it
    assert hub.counts["listen_dropped"] == 0


@on_the_live_loop
async def test_listen_sources_and_refusals(live):
    hub, base = live
    want = [{"source": "ls1", "channels": 1, "sample_rate": 48000},
            {"source": "ls2", "channels": 1, "sample_rate": 48000},
            {"source": LISTENER, "channels": 2, "sample_rate": 48000}]
    async with aiohttp.ClientSession() as anon:
        async with anon.get(base + "/ws/listen?source=ls1") as r:
            assert r.status == 401                              # no token, no audio
        async with anon.get(base + "/api/listen") as r:
            assert r.status == 200 and await r.json() == want   # an open read
    async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {hub.token}"}) as http:
        # Offered permessage-deflate (as browsers do), the hub declines it: compressing
        # scopes would cost it more CPU than all else a dashboard asks.
        async with http.ws_connect(base + "/ws/listen?source=ls1", compress=15) as ws:
            assert ws.compress == 0 and "Sec-WebSocket-Extensions" not in ws._response.headers
        async with http.ws_connect(base + "/ws", compress=15) as ws:
            assert ws.compress == 0
            hello = await ws.receive_json(timeout=5)
            assert hello["listen"] == want and hello["telemetry_hz"] == 30.0
            await ws.send_json({"id": 1, "cmd": "listen_sources"})
            reply = await ws.receive_json(timeout=5)
            while reply.get("type") != "reply":
                reply = await ws.receive_json(timeout=5)
            assert reply == {"type": "reply", "id": 1, "ok": True, "result": want}
        for source in ("nobody", ""):
            async with http.ws_connect(base + f"/ws/listen?source={source}") as ws:
                msg = await ws.receive(timeout=5)
                assert msg.type == aiohttp.WSMsgType.CLOSE and msg.data == 4404
                assert "nothing to listen to" in msg.extra
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
            await http.ws_connect(base + "/ws/listen?source=ls1",
                                  headers={"Origin": "http://evil.example"})
        assert refused.value.status == 403
    assert hub.counts["listen_unknown_source"] == 2


@on_the_live_loop
async def test_the_listener_streams_the_rooms_stereo_preview(live):
    hub, base = live
    kept: list[np.ndarray] = []
    unsubscribe = hub.listen.subscribe(LISTENER, lambda block: kept.append(block.copy()))
    try:
        async with aiohttp.ClientSession(
                headers={"Authorization": f"Bearer {hub.token}"}) as http, \
                http.ws_connect(base + f"/ws/listen?source={LISTENER}") as ws:
            head = await ws.receive_json(timeout=5)
            assert head["channels"] == 2 and head["source"] == LISTENER
            # Eight messages from the first that carries sound: on a loaded machine an
            # agent may miss its clock steps for a while (its block is then silence).
            frames: list = []
            for _ in range(MAX_QUIET_MESSAGES):
                frame = decode_frame(await ws.receive_bytes(timeout=5))
                if frames or np.count_nonzero(frame.samples):
                    frames.append(frame)
                if len(frames) == 8:
                    break
    finally:
        unsubscribe()
    assert len(frames) == 8, f"the listener heard nothing in {MAX_QUIET_MESSAGES} messages"
    first = frames[0].seq
    assert [f.seq for f in frames] == list(range(first, first + 8))
    assert all(f.channels == 2 and f.samples.shape == (1024, 2) for f in frames)
    got = np.concatenate([f.samples for f in frames])
    made = to_pcm16(np.concatenate(kept))
    assert any(np.array_equal(made[i:i + len(got)], got)
               for i in range(0, len(made) - len(got) + 1, 256)), "not the room's ears"
    # Two ears: left and right differ (the speakers stand off the listener's axis).
    assert np.count_nonzero(got) > 0 and not np.array_equal(got[:, 0], got[:, 1])


async def test_the_deployed_router_feeds_the_listen_stream(tmp_path):
    from anamnesis.hub.installation.check import parse_config

    config = parse_config(DEPLOYED, "dep.toml")
    async with running_hub(tmp_path / "hub", config=config) as (hub, base), \
            aiohttp.ClientSession(headers={"Authorization": f"Bearer {hub.token}"}) as http:
        assert hub.driver.listen is hub.listen and hub.listen.sources == ("a", "b", "c")
        async with http.ws_connect(base + "/ws/listen?source=b") as ws:
            assert (await ws.receive_json(timeout=5))["channels"] == 1
            # No agent is online: the router still ticks, and b's column is silence.
            frame = decode_frame(await ws.receive_bytes(timeout=5))
            assert frame.seq == 0 and not frame.samples.any()
        async with http.ws_connect(base + f"/ws/listen?source={LISTENER}") as ws:
            msg = await ws.receive(timeout=5)
            assert msg.type == aiohttp.WSMsgType.CLOSE and msg.data == 4404
