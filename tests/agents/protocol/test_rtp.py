"""The RTP codec (anamnesis.agents.protocol.rtp), the PCM codec (.pcm) and SDP (anamnesis.agents.protocol.sdp): tables, round trips, fuzz."""

from __future__ import annotations

import struct

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from numpy.testing import assert_array_equal

from anamnesis.agents.net.rtp_session import onebyte_extension_block
from anamnesis.agents.protocol import pcm, rtp
from anamnesis.agents.protocol.errors import ProtocolError
from anamnesis.agents.protocol.pcm import encode_into
from anamnesis.agents.protocol.sdp import StreamDescription, build_sdp, parse_sdp

# --- header table ------------------------------------------------------------------

# (description, bytes, expected fields (marker, pt, seq, ts, ssrc, csrc, extension, payload, padding))
HEADER_TABLE = [
    ("minimal", bytes.fromhex("80 61 00 01 00 00 00 02 00 00 00 03") + b"\x01\x02\x03",
     (False, 97, 1, 2, 3, (), None, b"\x01\x02\x03", 0)),
    ("marker, max fields", bytes.fromhex("80 ff ff ff ff ff ff ff ff ff ff ff"),
     (True, 127, 65535, 2**32 - 1, 2**32 - 1, (), None, b"", 0)),
    ("two CSRCs", bytes.fromhex("82 61 00 00 00 00 00 00 00 00 00 00 00 00 00 0a 00 00 00 0b")
     + b"PP", (False, 97, 0, 0, 0, (10, 11), None, b"PP", 0)),
    ("extension skipped", bytes.fromhex("90 61 00 00 00 00 00 00 00 00 00 00 be de 00 01 10 01 00 00")
     + b"xyz", (False, 97, 0, 0, 0, (), (0xBEDE, b"\x10\x01\x00\x00"), b"xyz", 0)),
    ("empty extension", bytes.fromhex("90 61 00 00 00 00 00 00 00 00 00 00 12 34 00 00") + b"ab",
     (False, 97, 0, 0, 0, (), (0x1234, b""), b"ab", 0)),
    ("padding", bytes.fromhex("a0 61 00 00 00 00 00 00 00 00 00 00") + b"abc" + b"\x00\x00\x03",
     (False, 97, 0, 0, 0, (), None, b"abc", 3)),
    ("padding only", bytes.fromhex("a0 61 00 00 00 00 00 00 00 00 00 00") + b"\x00\x02",
     (False, 97, 0, 0, 0, (), None, b"", 2)),
    ("CSRC + extension + padding",
     bytes.fromhex("b1 e1 12 34 00 01 00 00 de ad be ef 00 00 00 07 ab cd 00 02 01 02 03 04 05 06 07 08")
     + b"\x7f\xff\xff" + b"\x01",
     (True, 97, 0x1234, 65536, 0xDEADBEEF, (7,), (0xABCD, bytes(range(1, 9))), b"\x7f\xff\xff", 1)),
]

MALFORMED_TABLE = [
    ("empty", b"", "too short"),
    ("11 bytes", bytes(11), "too short"),
    ("version 0", bytes(12), "version 0"),
    ("version 1", b"\x40" + bytes(11), "version 1"),
    ("version 3", b"\xc0" + bytes(11), "version 3"),
    ("CSRCs overrun", b"\x83" + bytes(11) + bytes(8), "CSRC"),
    ("extension header missing", b"\x90" + bytes(11) + b"\xbe", "extension"),
    ("extension overruns", b"\x90" + bytes(11) + b"\xbe\xde\x00\x02" + bytes(4), "overruns"),
    ("padding zero", b"\xa0" + bytes(11) + b"ab\x00", "padding count 0"),
    ("padding too long", b"\xa0" + bytes(11) + b"ab\x04", "padding count 4"),
    ("padding without payload", b"\xa0" + bytes(11), "padding bit set"),
]


@pytest.mark.parametrize("data, expected", [(d, e) for _, d, e in HEADER_TABLE],
                         ids=[name for name, _, _ in HEADER_TABLE])
def test_parse_table(data: bytes, expected: tuple) -> None:
    packet = rtp.parse_packet(data)
    assert tuple(packet) == expected
    # the fast path agrees on the payload's place
    marker, pt, seq, ts, ssrc, start, end = rtp.payload_bounds(data)
    assert (bool(marker), pt, seq, ts, ssrc) == expected[:5]
    assert data[start:end] == expected[7]


@pytest.mark.parametrize("data, match", [(d, m) for _, d, m in MALFORMED_TABLE],
                         ids=[name for name, _, _ in MALFORMED_TABLE])
def test_parse_malformed(data: bytes, match: str) -> None:
    with pytest.raises(ProtocolError, match=match):
        rtp.parse_packet(data)
    with pytest.raises(ProtocolError, match=match.split()[0]):
        rtp.payload_bounds(data)


@pytest.mark.parametrize("name, data, expected", HEADER_TABLE, ids=[n for n, _, _ in HEADER_TABLE])
def test_pack_round_trip(name: str, data: bytes, expected: tuple) -> None:
    marker, pt, seq, ts, ssrc, csrc, ext, payload, padding = expected
    packed = rtp.pack_packet(payload, sequence=seq, timestamp=ts, ssrc=ssrc, payload_type=pt,
                             marker=marker, csrc=csrc, extension=ext, padding=padding)
    assert rtp.parse_packet(packed) == expected
    if name != "padding":  # our padding bytes are zeros; the table's are too — except none
        assert packed == data


def test_pack_wraps_and_validates() -> None:
    p = rtp.parse_packet(rtp.pack_packet(b"", sequence=65536 + 5, timestamp=-1, ssrc=1))
    assert (p.sequence, p.timestamp) == (5, 2**32 - 1)
    with pytest.raises(ValueError, match="payload type"):
        rtp.pack_packet(b"", sequence=0, timestamp=0, ssrc=0, payload_type=128)
    with pytest.raises(ValueError, match="multiple of 4"):
        rtp.pack_packet(b"", sequence=0, timestamp=0, ssrc=0, extension=(1, b"abc"))
    with pytest.raises(ValueError, match="at most 15"):
        rtp.pack_packet(b"", sequence=0, timestamp=0, ssrc=0, csrc=list(range(16)))


def test_sender_extension_block_matches_codec() -> None:
    block = onebyte_extension_block(1, 1)
    profile, data = rtp.pack_onebyte_extension({1: b"\x01"})
    assert block == struct.pack("!HH", profile, len(data) // 4) + data
    assert rtp.parse_onebyte_extension((profile, data)) == {1: b"\x01"}
    assert rtp.parse_onebyte_extension((0x1000, data)) == {}
    assert rtp.parse_onebyte_extension(None) == {}
    two = rtp.pack_onebyte_extension({1: b"\x00", 14: b"abcdefgh"})
    assert rtp.parse_onebyte_extension(two) == {1: b"\x00", 14: b"abcdefgh"}
    with pytest.raises(ProtocolError, match="overruns"):
        rtp.parse_onebyte_extension((0xBEDE, b"\x13\x01"))


# --- payloads ------------------------------------------------------------------------

L24_TABLE = [
    (0.0, b"\x00\x00\x00"),
    (1.0, b"\x7f\xff\xff"),          # +1 clips to the largest code
    (-1.0, b"\x80\x00\x00"),
    (0.5, b"\x40\x00\x00"),
    (-0.5, b"\xc0\x00\x00"),
    (2.0 ** -23, b"\x00\x00\x01"),
    (-(2.0 ** -23), b"\xff\xff\xff"),
    (0.4 * 2.0 ** -23, b"\x00\x00\x00"),   # rounds to nearest
    (0.6 * 2.0 ** -23, b"\x00\x00\x01"),
    (7.5, b"\x7f\xff\xff"),
    (-1e30, b"\x80\x00\x00"),
    (np.inf, b"\x7f\xff\xff"),
    (-np.inf, b"\x80\x00\x00"),
    (np.nan, b"\x00\x00\x00"),
]

L16_TABLE = [
    (0.0, b"\x00\x00"), (1.0, b"\x7f\xff"), (-1.0, b"\x80\x00"), (0.25, b"\x20\x00"),
    (-(2.0 ** -15), b"\xff\xff"), (np.nan, b"\x00\x00"), (np.inf, b"\x7f\xff"),
    (-3.0, b"\x80\x00"),
]


@pytest.mark.parametrize("value, code", L24_TABLE)
def test_l24_table(value: float, code: bytes) -> None:
    assert pcm.encode(np.array([value]), "L24") == code
    out = np.zeros(3, dtype=np.uint8)
    assert encode_into(np.array([value]), 1, out, "L24") == 3
    assert out.tobytes() == code


@pytest.mark.parametrize("value, code", L16_TABLE)
def test_l16_table(value: float, code: bytes) -> None:
    assert pcm.encode(np.array([value]), "L16") == code
    out = np.zeros(2, dtype=np.uint8)
    encode_into(np.array([value]), 1, out, "L16")
    assert out.tobytes() == code


def test_decode_every_l24_code_round_trips() -> None:
    """All 2**24 codes: decode is exact and encode inverts it."""
    codes = np.arange(-(1 << 23), 1 << 23, dtype=np.int64)
    payload = (codes.astype(">i4").view(np.uint8).reshape(-1, 4)[:, 1:]).tobytes()
    values = pcm.decode(payload, "L24")
    assert_array_equal(values, codes / 2.0 ** 23)
    assert pcm.encode(values, "L24") == payload


def test_decode_every_l16_code_round_trips() -> None:
    codes = np.arange(-(1 << 15), 1 << 15, dtype=np.int64)
    payload = codes.astype(">i2").tobytes()
    values = pcm.decode(payload, "L16")
    assert_array_equal(values, codes / 2.0 ** 15)
    assert pcm.encode(values, "L16") == payload


def test_decode_into_out_and_bad_lengths() -> None:
    out = np.full(8, 9.0)
    got = pcm.decode(b"\x40\x00\x00\xc0\x00\x00", "L24", out=out)
    assert_array_equal(got, [0.5, -0.5])
    assert_array_equal(out[2:], 9.0)
    with pytest.raises(ProtocolError, match="not a whole number"):
        pcm.decode(b"\x00\x00", "L24")
    with pytest.raises(ProtocolError, match="not a whole number"):
        pcm.decode(b"\x00", "L16")
    with pytest.raises(ValueError, match="room for 2 frames"):
        pcm.decode(bytes(6), "L24", out=np.zeros(1))
    with pytest.raises(ValueError, match="unknown encoding"):
        pcm.encode(np.zeros(1), "L8")


@settings(max_examples=200, deadline=None)
@given(st.lists(st.floats(allow_nan=True, allow_infinity=True, width=64), max_size=300))
def test_encoders_agree_and_quantize_is_idempotent(values: list[float]) -> None:
    x = np.array(values, dtype=np.float64)
    for enc, width in (("L24", 3), ("L16", 2)):
        payload = pcm.encode(x, enc)
        out = np.zeros(max(1, x.size) * width, dtype=np.uint8)
        assert encode_into(x, x.size, out, enc) == len(payload)
        assert out[:len(payload)].tobytes() == payload
        q = pcm.decode(payload, enc)
        assert np.all(np.isfinite(q)) and np.all(np.abs(q) <= 1.0)
        assert_array_equal(pcm.quantize(q, enc), q)
        finite = np.isfinite(x) & (np.abs(x) < 0.99)
        step = 2.0 ** -(8 * width - 1)
        assert np.all(np.abs(q[finite] - x[finite]) <= step / 2 + 1e-15)


# --- wrap-around ----------------------------------------------------------------------

@pytest.mark.parametrize("a, b, d", [(0, 65535, 1), (65535, 0, -1), (5, 3, 2), (3, 5, -2),
                                     (32767, 0, 32767), (32768, 0, -32768), (0, 0, 0)])
def test_seq_diff(a: int, b: int, d: int) -> None:
    assert rtp.seq_diff(a, b) == d
    assert rtp.seq_add(b, d) == a


@pytest.mark.parametrize("a, b, d", [(0, 2**32 - 1, 1), (2**32 - 256, 0, -256), (256, 2**32 - 256, 512),
                                     (2**31 - 1, 0, 2**31 - 1), (2**31, 0, -(2**31))])
def test_ts_diff(a: int, b: int, d: int) -> None:
    assert rtp.ts_diff(a, b) == d
    assert rtp.ts_add(b, d) == a


def test_extend_across_wraps() -> None:
    ext = 65530
    for k in range(1, 20):
        ext = rtp.extend_seq(ext, (65530 + k) & 0xFFFF)
    assert ext == 65530 + 19
    assert rtp.extend_seq(ext, (65530 + 10) & 0xFFFF) == 65540  # reordered, before the wrap point
    ts = 2**32 - 1000
    for _ in range(10):
        ts = rtp.extend_ts(ts, (ts + 256) & 0xFFFFFFFF)
    assert ts == 2**32 - 1000 + 2560


# --- fuzz: the parser raises ProtocolError and nothing else ----------------------------

@settings(max_examples=3000, deadline=None)
@given(st.binary(max_size=200))
def test_fuzz_random_bytes(data: bytes) -> None:
    for parse in (rtp.parse_packet, rtp.payload_bounds):
        try:
            parse(data)
        except ProtocolError:
            pass


@settings(max_examples=2000, deadline=None)
@given(first=st.integers(0, 255), cc_words=st.integers(0, 20), ext_words=st.integers(0, 6),
       declared_ext=st.integers(0, 8), pad=st.integers(0, 255), body=st.binary(max_size=40))
def test_fuzz_structured(first: int, cc_words: int, ext_words: int, declared_ext: int, pad: int,
                         body: bytes) -> None:
    """Headers with versions, CSRC counts, extension lengths and padding counts that
    may or may not fit the data: either a consistent packet or ProtocolError."""
    head = ((first & 0x3F) | 0x80) if first & 1 else first  # mostly version 2, sometimes not
    data = bytes((head, 97)) + bytes(10)
    data += bytes(4 * cc_words)
    if head & 0x10:
        data += struct.pack("!HH", 0xBEDE, declared_ext) + bytes(4 * ext_words)
    data += body + bytes((pad,))
    try:
        packet = rtp.parse_packet(data)
    except ProtocolError:
        return
    assert head >> 6 == 2
    assert len(packet.payload) + packet.padding <= len(data) - 12
    assert len(packet.csrc) == head & 0x0F
    _, _, _, _, _, start, end = rtp.payload_bounds(data)
    assert data[start:end] == packet.payload


# --- SDP -------------------------------------------------------------------------------

TESTING_SDP = """v=0
o=- 0 0 IN IP4 127.0.0.1
s=agent a1 out
c=IN IP4 127.0.0.1
t=0 0
m=audio 5004 RTP/AVP 97
a=rtpmap:97 L24/48000/1
a=ptime:5.333
"""


def test_sdp_is_the_form_ffmpeg_accepts() -> None:
    text = build_sdp(StreamDescription(name="agent a1 out", address="127.0.0.1", port=5004))
    assert text.replace("\r\n", "\n") == TESTING_SDP
    assert text.endswith("\r\n") and "\n" not in text.replace("\r\n", "")


def test_sdp_round_trip() -> None:
    desc = StreamDescription(name="anamnesis agent a3 mic", address="10.0.0.7", port=40000,
                             sample_rate=44100, encoding="L16", payload_type=100, frames=64,
                             origin="10.0.0.2", session_id=123456)
    assert parse_sdp(build_sdp(desc)) == desc
    assert "a=ptime:1.451" in build_sdp(desc)
    assert parse_sdp(TESTING_SDP) == StreamDescription(name="agent a1 out", address="127.0.0.1",
                                                       port=5004)


def test_sdp_parses_foreign_forms() -> None:
    text = ("v=0\no=user 42 1 IN IP4 192.168.1.2\ns=GStreamer\nt=0 0\n"
            "m=video 6000 RTP/AVP 96\na=rtpmap:96 H264/90000\n"
            "m=audio 5006 RTP/AVP 0 98\nc=IN IP4 239.1.2.3/32\na=rtpmap:98 l16/48000/2\n")
    desc = parse_sdp(text)
    assert (desc.address, desc.port, desc.payload_type, desc.encoding, desc.channels) == \
        ("239.1.2.3", 5006, 98, "L16", 2)
    assert (desc.origin, desc.session_id, desc.frames) == ("192.168.1.2", 42, 256)


@pytest.mark.parametrize("text, match", [
    ("v=0\nc=IN IP4 1.2.3.4\n", "no 'm=audio'"),
    ("v=0\nm=audio 5004 RTP/AVP 97\na=rtpmap:97 L24/48000/1\n", "no 'c='"),
    ("v=0\nc=IN IP4 1.2.3.4\nm=audio 5004 RTP/AVP 97\n", "no a=rtpmap"),
    ("v=0\nc=IN IP6 ::1\nm=audio 5004 RTP/AVP 97\n", "c=IN IP4"),
    ("v=0\nc=IN IP4 999.1.1.1\n", "not an IPv4"),
    ("v=0\nm=audio x RTP/AVP 97\n", "must be numbers"),
    ("v=0\nm=audio 70000 RTP/AVP 97\n", "out of range"),
    ("garbage\n", "not TYPE=VALUE"),
    ("v=0\nc=IN IP4 1.2.3.4\nm=audio 1 RTP/AVP 97\na=rtpmap:97 L24\n", "malformed rtpmap"),
    ("v=0\nc=IN IP4 1.2.3.4\nm=audio 1 RTP/AVP 97\na=ptime:fast\n", "ptime"),
])
def test_sdp_malformed(text: str, match: str) -> None:
    with pytest.raises(ProtocolError, match=match):
        parse_sdp(text)


def test_sdp_build_checks_fields() -> None:
    with pytest.raises(ValueError, match="port must be in") as info:
        build_sdp(StreamDescription(name="x\n", address="::1", port=0, encoding="L8"))
    message = str(info.value)
    for part in ("session name", "address must be an IPv4", "encoding must be"):
        assert part in message


@settings(max_examples=500, deadline=None)
@given(st.text(max_size=300))
def test_sdp_fuzz(text: str) -> None:
    try:
        parse_sdp(text)
    except ProtocolError:
        pass
