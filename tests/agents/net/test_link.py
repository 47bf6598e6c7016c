"""The RTP receiver and jitter buffer (anamnesis.agents.net.link, anamnesis.agents.dsp.jitter), through a lossy UDP proxy.

Real sockets on 127.0.0.1 only. The proxy in the middle drops, duplicates,
reorders and delays packets and keeps its own account of what it did; the
receiver's counters must match that account, and its output must be the sent
signal wherever a packet arrived, concealed (never silent for longer than the
concealment allows) where none did.
"""

from __future__ import annotations

import asyncio
import random
import tracemalloc
from typing import Any

import numpy as np
import pytest
from numpy.testing import assert_array_equal

from anamnesis.agents.dsp.jitter import JitterBuffer
from anamnesis.agents.dsp.rings import BlockRing
from anamnesis.agents.net.link import LEASE_S, MAX_LEASES_PER_HOST, AgentLink, LeaseError
from anamnesis.agents.net.rtp_session import RtpReceiver, RtpSender, open_udp
from anamnesis.agents.protocol.pcm import encode, quantize
from anamnesis.agents.protocol.rtp import parse_packet

LOOPBACK = "127.0.0.1"
SR = 48000
BLOCK = 256
PERIOD = BLOCK / SR


def sine(n: int, freq: float = 200.0, amp: float = 0.5, phase: int = 0) -> np.ndarray:
    return amp * np.sin(2 * np.pi * freq * (np.arange(n) + phase) / SR)


class Proxy(asyncio.DatagramProtocol):
    """Forwards datagrams to ``dest`` following ``plan(seq_index) -> action``; actions:
    ``"pass"``, ``"drop"``, ``"dup"`` (send twice), ``"swap"`` (hold until the next
    packet has gone), ``("delay", seconds)``. Records the order it actually emitted."""

    def __init__(self, dest: tuple[str, int], plan: Any) -> None:
        self.dest = dest
        self.plan = plan
        self.transport: asyncio.DatagramTransport | None = None
        self.index = 0
        self.held: bytes | None = None
        self.emitted: list[int] = []          # packet indices in emission order (copies too)
        self.dropped: set[int] = set()

    def connection_made(self, transport: Any) -> None:
        self.transport = transport

    def _emit(self, k: int, data: bytes) -> None:
        self.emitted.append(k)
        self.transport.sendto(data, self.dest)

    def datagram_received(self, data: bytes, addr: Any) -> None:
        k = self.index
        self.index += 1
        action = self.plan(k)
        loop = asyncio.get_running_loop()
        if action == "drop":
            self.dropped.add(k)
        elif action == "dup":
            self._emit(k, data)
            self._emit(k, data)
        elif action == "swap" and self.held is None:
            self.held = (k, data)
            return  # released after the next packet
        elif isinstance(action, tuple):
            loop.call_later(action[1], self._emit, k, data)
        else:
            self._emit(k, data)
        if self.held is not None and self.held[0] != k:
            held, self.held = self.held, None
            self._emit(*held)

    def account(self) -> dict[str, int]:
        """What the receiver should count, from the emission order."""
        seen: set[int] = set()
        top = -1
        out = {"duplicates": 0, "reordered": 0, "received": 0}
        for k in self.emitted:
            if k in seen:
                out["duplicates"] += 1
                continue
            seen.add(k)
            out["received"] += 1
            if k < top:
                out["reordered"] += 1
            top = max(top, k)
        out["lost"] = len(self.dropped)
        return out


async def run_stream(plan: Any, *, packets: int, target_ms: float = 40.0,
                     switch_ssrc_at: int | None = None,
                     signal: np.ndarray | None = None) -> dict[str, Any]:
    """Send ``packets`` blocks of a sine through a proxy following ``plan`` into a
    receiver, reading one block per period on the same clock; return everything."""
    loop = asyncio.get_running_loop()
    errors: list[Any] = []
    loop.set_exception_handler(lambda _loop, context: errors.append(context))
    buffer = JitterBuffer(sample_rate=SR, block=BLOCK, target_ms=target_ms)
    receiver = RtpReceiver(buffer, peer_host=LOOPBACK, peer_port=None, name="test")
    rx_transport, _ = await open_udp(lambda: receiver, LOOPBACK)
    rx_port = rx_transport.get_extra_info("sockname")[1]
    proxy = Proxy((LOOPBACK, rx_port), plan)
    px_transport, _ = await open_udp(lambda: proxy, LOOPBACK)
    receiver.peer_port = px_transport.get_extra_info("sockname")[1]
    px_port = receiver.peer_port
    tx_transport, _ = await open_udp(asyncio.DatagramProtocol, LOOPBACK)
    sender = RtpSender()
    x = quantize(signal if signal is not None else sine(packets * BLOCK))
    out = np.zeros((packets + 40) * BLOCK)
    first_position = None
    t0 = loop.time()
    try:
        for k in range(packets + 40):
            if k < packets:
                if k == switch_ssrc_at:
                    sender = RtpSender()
                payload = encode(x[k * BLOCK:(k + 1) * BLOCK], "L24")
                tx_transport.sendto(sender.packet(payload, k * BLOCK), (LOOPBACK, px_port))
            buffer.read(out[k * BLOCK:(k + 1) * BLOCK])
            if first_position is None and receiver.ssrc is not None:
                first_position = receiver.timeline_position(sender.ts_offset)
            # one tick per period; after a stall of the loop (a loaded machine) the clock
            # moves on instead of catching up in a burst that would outrun the packets
            now = loop.time()
            if t0 + (k + 1) * PERIOD < now - PERIOD:
                t0 = now - (k + 1) * PERIOD
            await asyncio.sleep(max(0.0, t0 + (k + 1) * PERIOD - now))
    finally:
        for t in (tx_transport, px_transport, rx_transport):
            t.close()
        loop.set_exception_handler(None)
    return {"receiver": receiver, "buffer": buffer, "proxy": proxy, "out": out, "x": x,
            "first": first_position, "errors": errors, "sender": sender}


def aligned(result: dict[str, Any], packets: int) -> tuple[np.ndarray, np.ndarray]:
    """The output re-indexed by sent sample (from the receiver's timeline mapping)."""
    start = result["first"]
    y = result["out"][start:start + packets * BLOCK]
    assert y.size == packets * BLOCK, "the output does not cover the whole stream"
    return y, result["x"][:packets * BLOCK]


def longest_zero_run(y: np.ndarray) -> int:
    best = run = 0
    for v in (y == 0.0):
        run = run + 1 if v else 0
        best = max(best, run)
    return best


async def test_counters_match_the_proxy_and_gaps_are_concealed() -> None:
    packets = 600
    rng = random.Random(5)
    actions = {}
    for k in range(20, packets - 20):
        r = rng.random()
        if r < 0.03:
            actions[k] = "drop"
        elif r < 0.06:
            actions[k] = "dup"
        elif r < 0.09:
            actions[k] = "swap"
        elif r < 0.30:
            actions[k] = ("delay", rng.uniform(0.0, 0.008))   # jitter, within the 40 ms target
    for k in range(300, 304):
        actions[k] = "drop"                                   # one burst: 4 blocks = 21 ms
    actions[299] = "pass"
    actions[304] = "pass"
    result = await run_stream(lambda k: actions.get(k, "pass"), packets=packets)
    receiver, proxy = result["receiver"], result["proxy"]
    account = proxy.account()
    stats = receiver.stats()
    assert result["errors"] == []
    assert stats["malformed"] == 0 and stats["foreign"] == 0
    assert stats["late"] == 0, stats
    assert stats["received"] == account["received"] == packets - len(proxy.dropped)
    assert stats["lost"] == account["lost"] == len(proxy.dropped)
    assert stats["duplicates"] == account["duplicates"] > 0
    assert stats["reordered"] == account["reordered"] > 0
    # every lost block was concealed, and nothing else; the only empty buffer is at the end
    assert stats["concealed_frames"] == len(proxy.dropped) * BLOCK
    assert stats["underruns"] == 1 and stats["resyncs"] == 0
    y, x = aligned(result, packets)
    # wherever a packet (and its predecessor: no crossfade-in) arrived, the output is exact
    arrived = np.array([k not in proxy.dropped for k in range(packets)])
    clean = np.repeat(arrived & np.concatenate([[True], arrived[:-1]]), BLOCK)
    assert_array_equal(y[clean], x[clean])
    # silence only where a loss outlasted the fade: the 4-block burst minus a 2-block fade
    fade = 2 * BLOCK
    assert longest_zero_run(y) == 4 * BLOCK - fade
    # a lone lost block is concealed by the previous block, fading
    lone = next(k for k in sorted(proxy.dropped)
                if not {k - 2, k - 1, k + 1} & proxy.dropped)
    gap = y[lone * BLOCK:(lone + 1) * BLOCK]
    ramp = 1.0 - np.arange(BLOCK) / fade
    assert_array_equal(gap, x[(lone - 1) * BLOCK:lone * BLOCK] * ramp)
    assert 0.3 < np.sqrt(np.mean(gap ** 2)) / np.sqrt(np.mean(x ** 2))


async def test_late_packets_are_dropped_and_counted() -> None:
    packets = 300
    late = {100: ("delay", 0.120), 200: ("delay", 0.120)}      # 120 ms > 40 ms target
    result = await run_stream(lambda k: late.get(k, "pass"), packets=packets)
    stats = result["receiver"].stats()
    assert result["errors"] == []
    assert stats["late"] == 2
    assert stats["lost"] == 0 and stats["received"] == packets
    assert stats["reordered"] == 2
    assert stats["concealed_frames"] == 2 * BLOCK
    y, x = aligned(result, packets)
    assert_array_equal(y[:100 * BLOCK], x[:100 * BLOCK])


async def test_ssrc_change_resynchronises() -> None:
    packets = 300
    result = await run_stream(lambda k: "pass", packets=packets, switch_ssrc_at=150)
    receiver = result["receiver"]
    stats = receiver.stats()
    assert result["errors"] == []
    assert stats["ssrc_changes"] == 1
    assert stats["lost"] == 0 and stats["late"] == 0 and stats["received"] == packets
    # the new stream plays from its own first packet on, after a concealed gap
    start = receiver.timeline_position(result["sender"].ts_offset + 150 * BLOCK)
    y = result["out"][start:start + 150 * BLOCK]
    x = result["x"][150 * BLOCK:]
    k = 64  # a crossfade back in, if the switch left a gap
    assert_array_equal(y[k:], x[k:])
    assert stats["concealed_frames"] <= 0.05 * SR


def _fuzz_datagrams(total: int, max_datagram: int) -> tuple[list[tuple[bytes, bool]], dict[str, int]]:
    """``total`` random datagrams (bytes, from the stranger?) and how many of each kind."""
    rng = random.Random(7)
    kinds = {"garbage": 0, "rtp": 0, "oversized": 0, "foreign": 0}
    datagrams: list[tuple[bytes, bool]] = []
    for _ in range(total):
        r = rng.random()
        if r < 0.35:
            data = rng.randbytes(rng.randint(1, 120))   # asyncio does not send b""
            kinds["garbage"] += 1
        elif r < 0.9:   # RTP-looking: version 2, random flags/CSRC count, mostly our PT
            head = bytes((0x80 | rng.randrange(64), 97 if rng.random() < 0.8 else rng.randrange(256)))
            ssrc = b"\x00\x00\x00\x2a" if rng.random() < 0.5 else rng.randbytes(4)
            seq_ts = (rng.randrange(40) + 1000).to_bytes(2, "big") if rng.random() < 0.5 \
                else rng.randbytes(2)
            data = head + seq_ts + rng.randbytes(4) + ssrc + rng.randbytes(3 * rng.randint(0, 300))
            kinds["rtp"] += 1
        elif r < 0.95:
            data = rng.randbytes(max_datagram + rng.randint(1, 3000))
            kinds["oversized"] += 1
        else:
            data = rng.randbytes(40)
            kinds["foreign"] += 1
        datagrams.append((data, r >= 0.95))
    return datagrams, kinds


async def test_100k_random_datagrams_all_counted_memory_bounded() -> None:
    """Garbage, near-RTP and oversized datagrams from the peer and from a stranger:
    every one is counted once, nothing escapes, memory stays bounded."""
    loop = asyncio.get_running_loop()
    errors: list[Any] = []
    loop.set_exception_handler(lambda _loop, context: errors.append(context))
    buffer = JitterBuffer(sample_rate=SR, block=BLOCK, target_ms=20.0)
    receiver = RtpReceiver(buffer, peer_host=LOOPBACK, name="fuzz")
    rx, _ = await open_udp(lambda: receiver, LOOPBACK)
    dest = rx.get_extra_info("sockname")
    peer, _ = await open_udp(asyncio.DatagramProtocol, LOOPBACK)
    receiver.peer_port = peer.get_extra_info("sockname")[1]
    stranger, _ = await open_udp(asyncio.DatagramProtocol, LOOPBACK)
    total = 100_000
    batch = 200
    # Half a second of random bytes: made off the loop, which the watchdog keeps free.
    datagrams, kinds = await asyncio.to_thread(_fuzz_datagrams, total, receiver.max_datagram)
    out = np.zeros(BLOCK)
    tracemalloc.start()
    try:
        t0 = loop.time()
        for start in range(0, total, batch):
            for data, foreign in datagrams[start:start + batch]:
                (stranger if foreign else peer).sendto(data, dest)
            while receiver.datagrams < start + batch:   # let the receiver catch up
                await asyncio.sleep(0)
                if loop.time() - t0 > 40:
                    pytest.fail(f"only {receiver.datagrams} of {start + batch} datagrams arrived")
            buffer.read(out)
            if start == 10_000:
                baseline = tracemalloc.get_traced_memory()[0]
        elapsed = loop.time() - t0
        grown = tracemalloc.get_traced_memory()[0] - baseline
    finally:
        tracemalloc.stop()
        for t in (rx, peer, stranger):
            t.close()
        loop.set_exception_handler(None)
    s = receiver.stats()
    assert errors == []
    assert s["datagrams"] == total
    classified = (s["foreign"] + s["oversized"] + s["malformed"] + s["wrong_type"] + s["packets"])
    assert classified == total, s
    assert s["foreign"] == kinds["foreign"]
    assert s["oversized"] >= kinds["oversized"]
    assert s["packets"] == s["received"] + s["duplicates"] + receiver.too_old
    assert np.all(np.isfinite(out)) and np.all(np.abs(out) <= 1.0)
    assert grown < 256 * 1024, f"memory grew by {grown} bytes over 90k datagrams"
    print(f"\nfuzz: {total} datagrams in {elapsed:.2f} s = {total / elapsed:,.0f}/s; {s}")


# --- the jitter buffer alone, on simulated clocks ---------------------------------------

def feed(buffer: JitterBuffer, x: np.ndarray, start: int, packet: int = BLOCK) -> None:
    for k in range(0, x.size, packet):
        buffer.write(x[k:k + packet], start + k)


def test_blockwise_reads_equal_one_shot() -> None:
    x = quantize(sine(8192, freq=333.0))
    outs = []
    for sizes in ([8192], [100] * 81 + [92], [1, 255, 4096, 3840]):
        jb = JitterBuffer(sample_rate=SR, block=BLOCK, target_ms=0.0)
        feed(jb, x, 0)
        y = np.zeros(8192)
        pos = 0
        for n in sizes:
            jb.read(y[pos:pos + n])
            pos += n
        outs.append(y)
        assert jb.stats()["concealed_frames"] == 0
    assert_array_equal(outs[0], x)
    assert_array_equal(outs[1], x)
    assert_array_equal(outs[2], x)


def test_a_burst_far_ahead_is_dropped_in_one_jump_then_played_exactly() -> None:
    """Half a second arrives at once (ffmpeg -re's start), then a packet per block: one
    crossfaded jump back to the target, no slips, and from there the samples as sent."""
    jb = JitterBuffer(sample_rate=SR, block=BLOCK, target_ms=20.0, absorb_drift=True)
    target = jb.target
    x = quantize(sine(SR, freq=250.0))
    burst = SR // 2
    feed(jb, x[:burst], target)               # the first packet at the target, the rest ahead
    y = np.zeros(BLOCK)
    played = []
    for k in range(40):
        jb.read(y)
        played.append(y.copy())
        start = burst + k * BLOCK             # then the stream goes on in real time
        jb.write(x[start:start + BLOCK], target + start)
    stats = jb.stats()
    assert stats["jumps"] == 1 and stats["slips"] == 0, stats
    assert abs(jb.depth() - target) <= 2 * BLOCK, (jb.depth(), target)   # back at the target
    tail = np.concatenate(played)[-8 * BLOCK:]           # well after the jump's crossfade
    assert any(np.array_equal(x[h:h + tail.size], tail) for h in np.flatnonzero(x == tail[0])), \
        "the samples after the jump are a run of what was sent"


def test_concealment_repeats_fades_then_crossfades_back() -> None:
    jb = JitterBuffer(sample_rate=SR, block=BLOCK, target_ms=0.0, fade=512, xfade=64)
    x = quantize(sine(BLOCK * 20, freq=375.0, phase=7))  # no exact zero next to the gap
    for k in range(20):
        if k not in (5, 10, 11, 12):
            jb.write(x[k * BLOCK:(k + 1) * BLOCK], k * BLOCK)
    y = np.zeros(BLOCK * 20)
    for k in range(20):
        jb.read(y[k * BLOCK:(k + 1) * BLOCK])
    s = jb.stats()
    assert s["concealed_frames"] == 4 * BLOCK and s["concealed"] == 4
    ramp = 1.0 - np.arange(BLOCK) / 512
    assert_array_equal(y[5 * BLOCK:6 * BLOCK], x[4 * BLOCK:5 * BLOCK] * ramp)
    # back in: a crossfade from the continuing concealment to the signal over 64 samples
    j = np.arange(64)
    w = (j + 1.0) / 65.0
    conceal = np.array([x[4 * BLOCK + ((BLOCK + i) % BLOCK)] * (1.0 - (BLOCK + i) / 512)
                        for i in j])
    np.testing.assert_allclose(y[6 * BLOCK:6 * BLOCK + 64], (1 - w) * conceal + w * x[6 * BLOCK:6 * BLOCK + 64],
                               rtol=0, atol=1e-15)
    assert_array_equal(y[6 * BLOCK + 64:10 * BLOCK], x[6 * BLOCK + 64:10 * BLOCK])
    # a 3-block loss: 512 samples fading, 256 of silence
    assert longest_zero_run(y) == 3 * BLOCK - 512
    assert np.all(np.abs(y) <= 0.5 + 1e-12)


def run_clocks(jb: JitterBuffer, *, seconds: float, ratio: float, jitter_blocks: float = 0.0,
               seed: int = 0) -> tuple[np.ndarray, int]:
    """Writer at ``ratio`` × the reader's rate, optional random arrival delays;
    returns the reader's output and the writer's samples sent."""
    rng = np.random.default_rng(seed)
    period_w = BLOCK / (SR * ratio)
    n_read = int(seconds * SR / BLOCK)
    x = quantize(sine(int(seconds * SR * ratio) + 10 * BLOCK, freq=100.0))
    arrivals = np.arange(x.size // BLOCK) * period_w + rng.uniform(0, jitter_blocks * PERIOD,
                                                                   x.size // BLOCK)
    order = np.argsort(arrivals, kind="stable")
    y = np.zeros(n_read * BLOCK)
    w = 0
    offset = None
    for r in range(n_read):
        now = r * PERIOD
        while w < order.size and arrivals[order[w]] <= now:
            k = order[w]
            if offset is None:
                offset = jb.position + jb.target
            jb.write(x[k * BLOCK:(k + 1) * BLOCK], offset + k * BLOCK)
            w += 1
        jb.read(y[r * BLOCK:(r + 1) * BLOCK])
    return y, w * BLOCK


@pytest.mark.parametrize("ppm", [300.0, -300.0])
def test_drift_is_absorbed_by_counted_slips(ppm: float) -> None:
    jb = JitterBuffer(sample_rate=SR, block=BLOCK, target_ms=20.0, absorb_drift=True, slip=64)
    y, _ = run_clocks(jb, seconds=60.0, ratio=1.0 + ppm * 1e-6)
    s = jb.stats()
    drift = abs(ppm) * 1e-6 * 60.0 * SR        # samples the clocks part over 60 s
    slips = s["skips"] if ppm > 0 else s["repeats"]
    assert s["underruns"] == 0 and jb.overruns == 0
    assert s["concealed_frames"] == 0
    assert (s["repeats"] if ppm > 0 else s["skips"]) == 0
    assert abs(slips * 64 - drift) <= 2 * BLOCK + 64, (slips, drift)
    assert abs(s["depth_smoothed_ms"] - 20.0 - 1000 * BLOCK / 2 / SR) < 8.0
    # a slip is a crossfade, not a click: sample-to-sample steps stay those of a 100 Hz sine
    steps = np.abs(np.diff(y[SR:]))
    assert steps.max() < 2 * 0.5 * 2 * np.pi * 100 / SR * 1.5


def test_without_drift_absorption_drift_ends_in_underruns() -> None:
    jb = JitterBuffer(sample_rate=SR, block=BLOCK, target_ms=20.0)
    run_clocks(jb, seconds=30.0, ratio=1.0 - 1000e-6)
    assert jb.stats()["underruns"] >= 1 and jb.stats()["slips"] == 0


def test_adaptive_target_grows_on_glitches_and_shrinks_slowly() -> None:
    jb = JitterBuffer(sample_rate=SR, block=BLOCK, target_ms=5.0, adaptive=True,
                      max_target_ms=100.0, shrink_after_s=2.0)
    start_target = jb.target
    run_clocks(jb, seconds=10.0, ratio=1.0, jitter_blocks=8.0, seed=3)   # up to 43 ms late
    grown = jb.target
    s = jb.stats()
    assert s["grows"] >= 1 and grown > start_target
    assert grown <= round(0.100 * SR)
    # calm network: the target comes back down, one small step per 2 s
    run_clocks(jb, seconds=12.0, ratio=1.0, seed=4)
    assert jb.stats()["shrinks"] >= 3
    assert jb.target < grown


def test_block_ring_is_fifo_and_bounded() -> None:
    ring = BlockRing(4, 8)
    x = np.arange(8.0)
    for k in range(6):
        ring.push(x + k, 8 - k % 2, 100 + k)
    assert ring.dropped == 2 and ring.pending() == 4
    out = np.zeros(8)
    for k in range(4):
        n = ring.pop(out)
        assert n == 8 - k % 2 and ring.meta[1] == 100 + k
        assert_array_equal(out[:n], (x + k)[:n])
    assert ring.pop(out) == -1


def test_sender_marks_the_first_packet_after_a_restart_and_wraps() -> None:
    sender = RtpSender(ssrc=7, sequence=65535, ts_offset=2**32 - 100)
    packets = [parse_packet(sender.packet(b"\x00\x00\x01", 256 * k)) for k in range(3)]
    sender.restart()
    packets.append(parse_packet(sender.packet(b"\x00\x00\x01", 768)))
    assert [p.marker for p in packets] == [True, False, False, True]
    assert [p.sequence for p in packets] == [65535, 0, 1, 2]
    assert [p.timestamp for p in packets] == [2**32 - 100, 156, 412, 668]
    assert {p.ssrc for p in packets} == {7}


def test_listen_in_leases_are_bounded_and_expire() -> None:
    link = AgentLink(agent_id="t1", interface=LOOPBACK, block=BLOCK, sample_rate=SR)
    lease = link.lease("out", LOOPBACK, 5004, now=0.0)
    assert link.lease("out", LOOPBACK, 5004, now=30.0) is lease and lease.expires == 30.0 + LEASE_S
    for bad, match in (((("out", LOOPBACK, 80)), r"\[1024, 65535\]"),
                       ((("speaker", LOOPBACK, 5004)), "no stream 'speaker'"),
                       ((("out", "::1", 5004)), "IPv4")):
        with pytest.raises(LeaseError, match=match):
            link.lease(*bad, now=31.0)
    for port in range(5006, 5006 + MAX_LEASES_PER_HOST - 1):
        link.lease("mic", LOOPBACK, port, now=31.0)
    with pytest.raises(LeaseError, match="per host") as info:
        link.lease("in", LOOPBACK, 6000, now=31.0)
    assert info.value.status == 503
    link.lease("in", "127.0.0.2", 6000, now=31.0)          # another host has its own share
    assert len(link.leases) == MAX_LEASES_PER_HOST + 1
    link.lease("in", "127.0.0.2", 6002, now=31.0 + LEASE_S + 1)   # all the others expired
    assert list(link.leases) == [("in", "127.0.0.2", 6002)]
    assert "c=IN IP4 127.0.0.2" in link.sdp("in", "127.0.0.2", 6002)
