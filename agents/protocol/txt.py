"""The zeroconf TXT schema of an agent (pure; STYLE 8).

:func:`build_txt` makes the TXT record of the
``_anamnesis._udp.local.`` service, :func:`parse_txt` reads one back (raising
:class:`~anamnesis.agents.protocol.errors.ProtocolError` if it is malformed) and :func:`verify_txt`
checks its signature. Fields (all strings on the wire):

=======  ==================================================================
``id``     the agent's id (``a3``)
``model``  its model kind (``autoregnn``)
``v``      the control protocol version (:data:`PROTOCOL_VERSION`)
``osc``    OSC UDP port; ``http`` OSCQuery HTTP/WebSocket port; ``rtp`` RTP port
           (``0`` until the agent has an audio link)
``inst``   the installation's name
``addr``   the announced address(es), comma-separated
``ts``     when the record was made (Unix seconds, integer)
``sig``    HMAC-SHA256 (hex) with the installation key over the canonical
           encoding of every other field — addresses and ports included, so a
           record cannot be replayed pointing elsewhere. Absent without a key:
           the hub then holds the agent as *pending* until a user adopts it.
=======  ==================================================================

The canonical encoding is ``anamnesis-txt-v1\n`` followed by the JSON of the
fields other than ``sig`` with sorted keys and no whitespace.

:func:`check_token` is the rule for a name that goes into a service instance name
(agent and installation names), :func:`instance_name` builds one."""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import json
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass

from anamnesis.agents.protocol.errors import ProtocolError
from anamnesis.agents.protocol.ids import ID_RE

#: Version of the agent control protocol (OSC map + TXT schema), the TXT field ``v``.
PROTOCOL_VERSION = 1
ANAMNESIS_SERVICE = "_anamnesis._udp.local."
OSCQUERY_SERVICE = "_oscjson._tcp.local."
OSC_SERVICE = "_osc._udp.local."

FIELDS = ("id", "model", "v", "osc", "http", "rtp", "inst", "addr", "ts")
_DOMAIN = b"anamnesis-txt-v1\n"
_TOKEN_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,62}$")
#: Longest value of one TXT field (a TXT string holds 255 bytes including "key=").
_MAX_VALUE = 200


@dataclass(frozen=True)
class AgentRecord:
    """A parsed ``_anamnesis._udp`` TXT record."""

    agent_id: str
    model: str
    version: int
    osc_port: int
    http_port: int
    rtp_port: int
    installation: str
    addresses: tuple[str, ...]
    timestamp: int          # Unix seconds
    signature: str | None   # hex, or None when the agent has no key

    @property
    def signed(self) -> bool:
        """True when the record carries a signature (verify it with :func:`verify_txt`)."""
        return self.signature is not None


# ---------------------------------------------------------------------------
# Pure: the TXT schema
# ---------------------------------------------------------------------------


def _canonical(fields: Mapping[str, str]) -> bytes:
    body = {k: v for k, v in fields.items() if k != "sig"}
    return _DOMAIN + json.dumps(body, sort_keys=True, separators=(",", ":")).encode("utf-8")


def sign(fields: Mapping[str, str], key: bytes) -> str:
    """HMAC-SHA256 (hex) of every field but ``sig``."""
    return hmac.new(key, _canonical(fields), hashlib.sha256).hexdigest()


def _text(name: str, value: object) -> str:
    text = str(value)
    if not text.isprintable() or len(text.encode("utf-8")) > _MAX_VALUE:
        raise ProtocolError(f"TXT field {name} must be printable and at most {_MAX_VALUE} bytes")
    return text


def _port(name: str, text: str, *, allow_zero: bool) -> int:
    if not text.isdigit():
        raise ProtocolError(f"TXT field {name} must be a port number; got {text!r}")
    port = int(text)
    if not (0 if allow_zero else 1) <= port <= 65535:
        raise ProtocolError(f"TXT field {name} out of range: {port}")
    return port


def _addresses(text: str) -> tuple[str, ...]:
    parts = tuple(p for p in text.split(",") if p)
    if not parts:
        raise ProtocolError("TXT field addr must name at least one address")
    for part in parts:
        try:
            ipaddress.ip_address(part)
        except ValueError:
            raise ProtocolError(f"TXT field addr holds a bad address {part!r}") from None
    return parts


def build_txt(fields: Mapping[str, object], key: bytes | None) -> dict[str, str]:
    """The TXT record (field -> string) for ``fields``, signed when ``key`` is given.

    ``fields`` must hold exactly :data:`FIELDS` (``rtp`` may be 0 or empty, ``addr``
    a string or a sequence of addresses). The record is parsed back before it is
    returned, so an agent never announces something a hub would reject; a bad
    field raises :class:`ProtocolError`.
    """
    missing = [f for f in FIELDS if f not in fields]
    extra = [f for f in fields if f not in FIELDS]
    if missing or extra:
        raise ProtocolError(
            f"TXT fields: missing {', '.join(missing) or 'none'}; "
            f"unknown {', '.join(extra) or 'none'}")
    txt: dict[str, str] = {}
    for name in FIELDS:
        value = fields[name]
        if name == "addr" and not isinstance(value, str):
            value = ",".join(str(a) for a in value)  # type: ignore[attr-defined]
        if name == "rtp" and value in ("", None):
            value = 0
        txt[name] = _text(name, value)
    if key is not None:
        txt["sig"] = sign(txt, key)
    parse_txt(txt)
    return txt


def _decode_properties(txt: Mapping[object, object]) -> dict[str, str]:
    out: dict[str, str] = {}
    for raw_key, raw_value in txt.items():
        try:
            name = raw_key.decode("utf-8") if isinstance(raw_key, bytes) else str(raw_key)
            if raw_value is None:
                value = ""
            elif isinstance(raw_value, bytes):
                value = raw_value.decode("utf-8")
            else:
                value = str(raw_value)
        except UnicodeDecodeError:
            raise ProtocolError("TXT record is not UTF-8") from None
        out[name] = value
    return out


def parse_txt(txt: Mapping[object, object]) -> AgentRecord:
    """Read a TXT record (``str`` or ``bytes`` keys and values, as zeroconf gives them).

    Raises :class:`ProtocolError` naming the first bad or missing field.
    Unknown fields are ignored (a newer agent may add some; they are still
    covered by its signature). Does not check the signature.
    """
    fields = _decode_properties(txt)
    missing = [f for f in FIELDS if f not in fields]
    if missing:
        raise ProtocolError(f"TXT record lacks {', '.join(missing)}")
    if not ID_RE.match(fields["id"]):    # the one agent-id rule, as the agent's --id
        raise ProtocolError(f"TXT field id must be 1-32 letters, digits, '_' or '-'; "
                            f"got {fields['id']!r}")
    for name in ("model", "inst"):
        if not _TOKEN_RE.match(fields[name]):
            raise ProtocolError(
                f"TXT field {name} must be 1-63 letters, digits, '_', '-' or '.'; "
                f"got {fields[name]!r}")
    if not fields["v"].isdigit():
        raise ProtocolError(f"TXT field v must be a whole number; got {fields['v']!r}")
    if not fields["ts"].isdigit():
        raise ProtocolError(f"TXT field ts must be Unix seconds; got {fields['ts']!r}")
    sig = fields.get("sig") or None
    if sig is not None and not re.fullmatch(r"[0-9a-f]{64}", sig):
        raise ProtocolError("TXT field sig must be 64 lowercase hex digits")
    return AgentRecord(
        agent_id=fields["id"], model=fields["model"], version=int(fields["v"]),
        osc_port=_port("osc", fields["osc"], allow_zero=False),
        http_port=_port("http", fields["http"], allow_zero=False),
        rtp_port=_port("rtp", fields["rtp"] or "0", allow_zero=True),
        installation=fields["inst"], addresses=_addresses(fields["addr"]),
        timestamp=int(fields["ts"]), signature=sig)


def verify_txt(txt: Mapping[object, object], key: bytes, *, max_age: float | None = None,
               now: float | None = None) -> bool:
    """True if ``txt`` is well formed and signed with ``key`` (constant-time compare).

    A malformed or unsigned record is False, never an exception. With
    ``max_age`` (s), a record older than that (by its ``ts``, against ``now``,
    default the wall clock) is False too.
    """
    try:
        record = parse_txt(txt)
    except ProtocolError:
        return False
    if record.signature is None:
        return False
    fields = _decode_properties(txt)
    if not hmac.compare_digest(sign(fields, key), record.signature):
        return False
    if max_age is not None:
        current = time.time() if now is None else now
        if current - record.timestamp > max_age:
            return False
    return True


# ---------------------------------------------------------------------------
# The announcer
# ---------------------------------------------------------------------------


def check_token(name: str, what: str) -> str:
    """Check an agent id or installation name for the TXT record (1-63 letters, digits,
    ``_``, ``-``, ``.``); ``ValueError`` naming ``what`` otherwise. For the CLI's edge."""
    if not isinstance(name, str) or not _TOKEN_RE.match(name):
        raise ValueError(f"{what} must be 1-63 letters, digits, '_', '-' or '.'; got {name!r}")
    return name


def instance_name(agent_id: str, installation: str) -> str:
    """The DNS-SD instance name of an agent, e.g. ``"anamnesis a3 (studio)"``.

    A DNS label holds 63 bytes: a long installation name is shortened here
    (the TXT record still carries it whole).
    """
    name = f"anamnesis {agent_id} ({installation})"
    if len(name.encode("utf-8")) > 63:
        room = max(1, 63 - len(f"anamnesis {agent_id} (…)".encode()))
        name = f"anamnesis {agent_id} ({installation[:room]}…)"
    return name


__all__ = ["ANAMNESIS_SERVICE", "AgentRecord", "FIELDS", "OSCQUERY_SERVICE", "OSC_SERVICE", "PROTOCOL_VERSION", "build_txt", "check_token", "instance_name", "parse_txt", "sign", "verify_txt"]
