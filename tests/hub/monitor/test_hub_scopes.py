"""Scopes and spectra: the ring of the last samples, the binary frame layout, and a real
hub pushing one binary message to a WebSocket client on 127.0.0.1."""

from __future__ import annotations

import asyncio
import struct

import aiohttp
import numpy as np
import pytest
from numpy.testing import assert_allclose, assert_array_equal
from support.hubs import DEPLOYED, running_hub

from anamnesis.hub.monitor.scopes import MAGIC, SCOPE, SPECTRUM, ScopeTap, decode_frames


def test_the_tap_keeps_the_last_samples_and_their_spectrum():
    rate, frames, block = 48000, 1024, 96        # 96 does not divide 1024: the ring wraps
    tap = ScopeTap(["a", "b", "c"], rate, frames)
    t = np.arange(40 * block)
    bin_hz = rate / frames
    sine = 0.5 * np.sin(2 * np.pi * 40 * bin_hz * t / rate)     # on bin 40
    outputs = np.stack([sine, np.zeros_like(sine), 0.1 * np.ones_like(sine)], axis=1)
    assert tap.take() is None
    for k in range(40):
        tap.add(outputs[k * block:(k + 1) * block], columns=[0, 2])   # b did not play
    message = tap.take()
    assert tap.take() is None                    # nothing new since
    decoded = decode_frames(message)
    assert [(kind, index, r) for kind, index, r, _ in decoded] == [
        (SCOPE, 0, rate), (SPECTRUM, 0, rate), (SCOPE, 2, rate), (SPECTRUM, 2, rate)]
    scope, spectrum = decoded[0][3], decoded[1][3]
    assert_array_equal(scope, sine[-frames:].astype(np.float32))
    assert spectrum.size == frames // 2 + 1 and int(np.argmax(spectrum)) == 40
    assert spectrum[40] == pytest.approx(0.5, abs=0.005)
    assert decoded[3][3][0] == pytest.approx(0.1, abs=0.005)       # DC of c
    with pytest.raises(ValueError, match="truncated payload"):
        decode_frames(message[:100])
    with pytest.raises(ValueError, match="not a scope frame at byte 0"):
        decode_frames(b"XXXX" + message[4:])


async def test_the_hub_pushes_binary_scope_frames_over_the_websocket(tmp_path):
    from anamnesis.hub.installation.check import parse_config

    config = parse_config(DEPLOYED, "dep.toml")
    async with running_hub(tmp_path / "hub", config=config) as (hub, base), \
            aiohttp.ClientSession(headers={"Authorization": f"Bearer {hub.token}"}) as http, \
            http.ws_connect(base + "/ws") as plain, \
            http.ws_connect(base + "/ws?scopes=1") as ws:
        hello = await ws.receive_json(timeout=2)
        assert hello["scope"] == {"agents": ["a", "b", "c"], "frames": 1024, "hz": 30.0}
        assert hub.driver.tap is hub.scopes
        block = np.zeros((256, 3))
        block[:, 1] = np.linspace(-1.0, 1.0, 256)
        for _ in range(4):               # what the router does with b's out stream
            hub.scopes.add(block, [1])
        while (msg := await ws.receive(timeout=2)).type != aiohttp.WSMsgType.BINARY:
            pass
        assert msg.data[:4] == MAGIC
        kind, version, index, count, rate = struct.unpack_from("<BBHII", msg.data, 4)
        assert (kind, version, index, count, rate) == (SCOPE, 1, 1, 1024, 48000)
        frames = decode_frames(msg.data)
        assert [(k, i) for k, i, _, _ in frames] == [(SCOPE, 1), (SPECTRUM, 1)]
        assert_allclose(frames[0][3], np.tile(block[:, 1], 4), rtol=0, atol=1e-7)
        # A client that did not ask for scopes gets none (JSON only).
        assert (await plain.receive_json(timeout=2))["type"] == "hello"
        hub.scopes.add(block, [1])
        await ws.receive_bytes(timeout=2)         # the next push happened ...
        with pytest.raises(asyncio.TimeoutError):
            await plain.receive(timeout=0.2)      # ... and the plain client got nothing
