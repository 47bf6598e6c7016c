"""SDP (RFC 4566) for one of an agent's audio streams, and a parser for what we use.

The text has the form ffmpeg, GStreamer's ``sdpdemux`` and PipeWire accept
(TESTING.md), for example::

    v=0
    o=- 0 0 IN IP4 127.0.0.1
    s=agent a1 out
    c=IN IP4 127.0.0.1
    t=0 0
    m=audio 5004 RTP/AVP 97
    a=rtpmap:97 L24/48000/1
    a=ptime:5.333

``c=`` is where the stream is sent (the listening client's own address, for
a unicast listen-in lease), ``m=`` its UDP port; ``o=`` carries the sender's
address and a session id. Lines end with CRLF as RFC 4566 asks (ffmpeg and
GStreamer accept both CRLF and LF when parsing).
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass

from anamnesis.agents.protocol.errors import ProtocolError
from anamnesis.agents.protocol.pcm import SAMPLE_BYTES
from anamnesis.agents.protocol.rtp import DEFAULT_PAYLOAD_TYPE

_NAME_RE = re.compile(r"^[\x20-\x7e]{1,128}$")
_RTPMAP = re.compile(r"^(\d{1,3}) ([A-Za-z0-9_-]+)/(\d+)(?:/(\d+))?$")


@dataclass(frozen=True)
class StreamDescription:
    """One mono (or multichannel) RTP audio stream.

    ``address``: IPv4 address the stream is sent to; ``port``: its UDP port;
    ``sample_rate`` in Hz; ``frames``: samples per packet (gives ``a=ptime``
    in ms); ``origin``: the sender's address; ``session_id``: any number that
    identifies the session (we use the SSRC).
    """

    name: str
    address: str
    port: int
    sample_rate: int = 48000
    encoding: str = "L24"
    channels: int = 1
    payload_type: int = DEFAULT_PAYLOAD_TYPE
    frames: int = 256
    origin: str = "127.0.0.1"
    session_id: int = 0

    @property
    def ptime_ms(self) -> float:
        """Packet duration in ms."""
        return 1000.0 * self.frames / self.sample_rate

    def check(self) -> None:
        """``ValueError`` naming every field out of range."""
        problems = []
        if not _NAME_RE.fullmatch(self.name):
            problems.append(f"session name must be 1-128 printable ASCII characters; got "
                            f"{self.name!r}")
        for label, text in (("address", self.address), ("origin", self.origin)):
            try:
                if ipaddress.ip_address(text).version != 4:
                    problems.append(f"{label} must be an IPv4 address; got {text!r}")
            except ValueError:
                problems.append(f"{label} must be an IPv4 address; got {text!r}")
        if not 1 <= self.port <= 65535:
            problems.append(f"port must be in [1, 65535]; got {self.port}")
        if not 1000 <= self.sample_rate <= 384000:
            problems.append(f"sample rate must be in [1000, 384000] Hz; got {self.sample_rate}")
        if self.encoding not in SAMPLE_BYTES:
            problems.append(f"encoding must be one of {', '.join(SAMPLE_BYTES)}; got "
                            f"{self.encoding!r}")
        if not 1 <= self.channels <= 64:
            problems.append(f"channels must be in [1, 64]; got {self.channels}")
        if not 96 <= self.payload_type <= 127:
            problems.append(f"payload type must be dynamic (96-127); got {self.payload_type}")
        if not 1 <= self.frames <= 65536:
            problems.append(f"frames per packet must be in [1, 65536]; got {self.frames}")
        if problems:
            raise ValueError("; ".join(problems))


def _ptime_text(ms: float) -> str:
    text = f"{ms:.3f}".rstrip("0").rstrip(".")
    return text or "0"


def build_sdp(desc: StreamDescription) -> str:
    """The SDP text of ``desc`` (CRLF line endings, ends with CRLF)."""
    desc.check()
    lines = [
        "v=0",
        f"o=- {desc.session_id} 0 IN IP4 {desc.origin}",
        f"s={desc.name}",
        f"c=IN IP4 {desc.address}",
        "t=0 0",
        f"m=audio {desc.port} RTP/AVP {desc.payload_type}",
        f"a=rtpmap:{desc.payload_type} {desc.encoding}/{desc.sample_rate}/{desc.channels}",
        f"a=ptime:{_ptime_text(desc.ptime_ms)}",
    ]
    return "\r\n".join(lines) + "\r\n"


def parse_sdp(text: str) -> StreamDescription:
    """The first audio stream of an SDP text; :class:`ProtocolError` if it lacks a
    ``c=`` address, an ``m=audio`` line, or an ``a=rtpmap`` for its payload type.
    ``frames`` comes from ``a=ptime`` (rounded), 256 if absent."""
    if len(text) > 65536:
        raise ProtocolError("SDP longer than 64 KiB")
    fields: dict[str, str] = {}
    rtpmaps: dict[int, tuple[str, int, int]] = {}
    ptime: float | None = None
    media: tuple[int, list[int]] | None = None
    media_address: str | None = None
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line:
            continue
        if len(line) < 2 or line[1] != "=":
            raise ProtocolError(f"SDP line {number} is not TYPE=VALUE: {line[:40]!r}")
        kind, value = line[0], line[2:]
        if kind == "m":
            if media is not None:
                break  # only the first media section
            parts = value.split()
            if len(parts) < 4 or parts[0] != "audio" or not parts[2].startswith("RTP/AVP"):
                if parts and parts[0] != "audio":
                    continue
                raise ProtocolError(f"SDP line {number}: expected 'm=audio PORT RTP/AVP PT'")
            try:
                port = int(parts[1].split("/")[0])
                pts = [int(p) for p in parts[3:]]
            except ValueError:
                raise ProtocolError(f"SDP line {number}: port and payload types must be "
                                    "numbers") from None
            if not 1 <= port <= 65535 or not all(0 <= p <= 127 for p in pts):
                raise ProtocolError(f"SDP line {number}: port or payload type out of range")
            media = (port, pts)
        elif kind == "c":
            parts = value.split()
            if len(parts) != 3 or parts[0] != "IN" or parts[1] != "IP4":
                raise ProtocolError(f"SDP line {number}: expected 'c=IN IP4 ADDRESS'")
            address = parts[2].split("/")[0]
            try:
                ipaddress.IPv4Address(address)
            except ValueError:
                raise ProtocolError(f"SDP line {number}: {address!r} is not an IPv4 "
                                    "address") from None
            if media is None:
                fields["c"] = address
            else:
                media_address = address
        elif kind == "a":
            if value.startswith("rtpmap:"):
                match = _RTPMAP.match(value[7:].strip())
                if match is None:
                    raise ProtocolError(f"SDP line {number}: malformed rtpmap {value[:60]!r}")
                pt, enc, rate, ch = match.groups()
                rtpmaps[int(pt)] = (enc.upper(), int(rate), int(ch or 1))
            elif value.startswith("ptime:"):
                try:
                    ptime = float(value[6:])
                except ValueError:
                    raise ProtocolError(f"SDP line {number}: ptime must be a number") from None
        elif kind in "vos":
            fields[kind] = value
    if media is None:
        raise ProtocolError("SDP has no 'm=audio' line")
    address = media_address or fields.get("c")
    if address is None:
        raise ProtocolError("SDP has no 'c=' connection address")
    port, pts = media
    chosen = next((pt for pt in pts if pt in rtpmaps), None)
    if chosen is None:
        raise ProtocolError(f"SDP has no a=rtpmap for payload type(s) {pts}")
    encoding, rate, channels = rtpmaps[chosen]
    if not 1000 <= rate <= 384000 or not 1 <= channels <= 64:
        raise ProtocolError(f"SDP rtpmap rate {rate} Hz or channels {channels} out of range")
    frames = 256 if ptime is None else max(1, round(ptime * rate / 1000.0))
    origin = "127.0.0.1"
    session_id = 0
    o = fields.get("o", "").split()
    if len(o) == 6:
        origin = o[5]
        try:
            session_id = int(o[1])
        except ValueError:
            session_id = 0
    return StreamDescription(name=fields.get("s", "-") or "-", address=address, port=port,
                             sample_rate=rate, encoding=encoding, channels=channels,
                             payload_type=chosen, frames=frames, origin=origin,
                             session_id=session_id)


__all__ = ["StreamDescription", "build_sdp", "parse_sdp"]
