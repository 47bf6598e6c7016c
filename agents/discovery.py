"""zeroconf discovery of agents: the signed TXT schema (pure) and the announcer (async).

The pure half (STYLE 8): :func:`build_txt` makes the TXT record of the
``_anamnesis._udp.local.`` service, :func:`parse_txt` reads one back (raising
:class:`~agents.errors.ProtocolError` if it is malformed) and :func:`verify_txt`
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

The canonical encoding is ``anamnesis-txt-v1\\n`` followed by the JSON of the
fields other than ``sig`` with sorted keys and no whitespace.

The async half (STYLE 12): :class:`AgentAnnouncer` registers ``_anamnesis._udp``,
``_oscjson._tcp`` and ``_osc._udp`` with ``AsyncZeroconf(interfaces=[interface])``
— one interface, never all of them — re-publishes the TXT record when the ports
or the state change, retries a failed publish with a back-off, logging each
failure, and unregisters on close.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import ipaddress
import json
import logging
import os
import re
import secrets
import stat
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import ProtocolError

log = logging.getLogger(__name__)

#: Version of the agent control protocol (OSC map + TXT schema), the TXT field ``v``.
PROTOCOL_VERSION = 1
ANAMNESIS_SERVICE = "_anamnesis._udp.local."
OSCQUERY_SERVICE = "_oscjson._tcp.local."
OSC_SERVICE = "_osc._udp.local."
#: Shortest accepted installation key (bytes).
MIN_KEY_BYTES = 16
#: Bytes of key that :func:`generate_key` makes.
KEY_BYTES = 32

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
    for name in ("id", "model", "inst"):
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
# The installation key
# ---------------------------------------------------------------------------


def generate_key(path: str | os.PathLike[str]) -> bytes:
    """Create a new installation key file (64 hex digits, mode 0600) and return the key.

    Refuses to overwrite an existing file (``FileExistsError``): replacing an
    installation's key orphans every agent that has the old one.
    """
    key = secrets.token_bytes(KEY_BYTES)
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise FileExistsError(
            f"installation key file {target} already exists; delete it first to replace the key "
            "(every agent then needs the new file)") from None
    with os.fdopen(fd, "w") as f:
        f.write(key.hex() + "\n")
        f.flush()
        os.fsync(f.fileno())
    os.chmod(target, 0o600)  # in case the umask widened nothing, be explicit
    return key


def load_key(path: str | os.PathLike[str]) -> bytes:
    """Read an installation key file (hex digits, or raw bytes) and return the key.

    Raises ``ValueError`` with a clear message if the file is missing, empty or
    shorter than :data:`MIN_KEY_BYTES` bytes. Warns when others may read it.
    """
    target = Path(path)
    try:
        raw = target.read_bytes()
    except FileNotFoundError:
        raise ValueError(
            f"installation key file {target} does not exist; create it on the hub "
            "(agents.discovery.generate_key) and copy it to every agent host") from None
    except IsADirectoryError:
        raise ValueError(f"installation key file {target} is a directory") from None
    text = raw.strip()
    if not text:
        raise ValueError(f"installation key file {target} is empty")
    try:
        key = bytes.fromhex(text.decode("ascii"))
    except (UnicodeDecodeError, ValueError):
        key = text
    if len(key) < MIN_KEY_BYTES:
        raise ValueError(
            f"installation key in {target} is too short: {len(key)} bytes, "
            f"at least {MIN_KEY_BYTES} needed")
    mode = target.stat().st_mode
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        log.warning("installation key file %s is readable by others (mode %o); chmod 600 it",
                    target, stat.S_IMODE(mode))
    return key


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
        room = max(1, 63 - len(f"anamnesis {agent_id} (…)".encode("utf-8")))
        name = f"anamnesis {agent_id} ({installation[:room]}…)"
    return name


class AgentAnnouncer:
    """Announces one agent with zeroconf on one interface (see the module docstring).

    ``interface`` is the concrete IP address to announce and to send mDNS on
    (127.0.0.1 in tests and the demo). Ports are the agent's OSC, OSCQuery
    HTTP and RTP ports (``rtp_port`` 0 = none yet). ``retry`` is the first
    delay (s) before a failed publish is retried; it doubles up to 60 s.
    """

    def __init__(self, *, agent_id: str, model: str, interface: str, osc_port: int,
                 http_port: int, installation: str, key: bytes | None, rtp_port: int = 0,
                 retry: float = 2.0) -> None:
        address = ipaddress.ip_address(interface)  # ValueError for a bad address
        if address.is_unspecified:
            raise ValueError(
                f"announce needs a concrete interface address, not {interface}; "
                "pass the LAN address with --interface")
        self.interface = str(address)
        self.agent_id, self.model, self.installation = agent_id, model, installation
        self.ports = {"osc": int(osc_port), "http": int(http_port), "rtp": int(rtp_port)}
        self._key = key
        self._retry = float(retry)
        self._zc = None  # AsyncZeroconf, created in start()
        self._infos: dict[str, Any] = {}   # type -> zeroconf ServiceInfo as registered
        self._registered = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()
        self.failures = 0
        self.txt: dict[str, str] = self._make_txt()   # checks the fields at once

    @property
    def name(self) -> str:
        """The DNS-SD instance name used for all three services."""
        return instance_name(self.agent_id, self.installation)

    def _make_txt(self) -> dict[str, str]:
        return build_txt({
            "id": self.agent_id, "model": self.model, "v": PROTOCOL_VERSION,
            "osc": self.ports["osc"], "http": self.ports["http"], "rtp": self.ports["rtp"],
            "inst": self.installation, "addr": self.interface, "ts": int(time.time()),
        }, self._key)

    def _service_infos(self) -> dict[str, Any]:
        from zeroconf import ServiceInfo

        host = re.sub(r"[^A-Za-z0-9-]", "-", f"anamnesis-{self.installation}-{self.agent_id}")
        server = f"{host}.local."
        plain = {"txtvers": "1", "id": self.agent_id}

        def info(type_: str, port: int, properties: Mapping[str, str]) -> ServiceInfo:
            # Keep the name zeroconf settled on (it may have renamed us on a conflict).
            registered = self._infos.get(type_)
            full_name = registered.name if registered is not None else f"{self.name}.{type_}"
            return ServiceInfo(type_, full_name, port=port,
                               properties=dict(properties), server=server,
                               parsed_addresses=[self.interface])

        return {
            ANAMNESIS_SERVICE: info(ANAMNESIS_SERVICE, self.ports["osc"], self.txt),
            OSCQUERY_SERVICE: info(OSCQUERY_SERVICE, self.ports["http"], plain),
            OSC_SERVICE: info(OSC_SERVICE, self.ports["osc"], plain),
        }

    async def start(self) -> None:
        """Open zeroconf on the interface and register in the background (never raises
        for network trouble: failures are logged and retried)."""
        if self._task is None:
            self._task = asyncio.create_task(self._publish_loop(), name="zeroconf-announce")

    async def wait_registered(self, timeout: float) -> bool:
        """Wait up to ``timeout`` s until all three services are registered."""
        try:
            await asyncio.wait_for(self._registered.wait(), timeout)
        except asyncio.TimeoutError:
            return False
        return True

    @property
    def registered(self) -> bool:
        """True once the three services are announced."""
        return self._registered.is_set()

    async def _publish_loop(self) -> None:
        from zeroconf.asyncio import AsyncZeroconf

        delay = self._retry
        while True:
            try:
                async with self._lock:
                    if self._zc is None:
                        self._zc = AsyncZeroconf(interfaces=[self.interface])
                    infos = self._service_infos()
                    # Probe all three names at once (each probe takes ~1.5 s), then
                    # wait for the announcements.
                    waiters = await asyncio.gather(*(
                        self._zc.async_register_service(i, allow_name_change=True)
                        for i in infos.values()))
                    await asyncio.gather(*waiters)
                    self._infos = infos
                self._registered.set()
                log.info("zeroconf: announced %s on %s (osc %d, http %d)", self.name,
                         self.interface, self.ports["osc"], self.ports["http"])
                return
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # network trouble: fail soft, loudly, and retry
                self.failures += 1
                log.warning("zeroconf: announcing %s on %s failed (%s: %s); retrying in %.0f s",
                            self.name, self.interface, type(exc).__name__, exc, delay)
                await self._drop_zeroconf()
                await asyncio.sleep(delay)
                delay = min(delay * 2.0, 60.0)

    async def _drop_zeroconf(self) -> None:
        async with self._lock:
            zc, self._zc = self._zc, None
            self._infos = {}
            if zc is not None:
                with contextlib.suppress(Exception):  # already broken: closing is best effort
                    await zc.async_close()

    async def update(self, *, osc_port: int | None = None, http_port: int | None = None,
                     rtp_port: int | None = None) -> None:
        """Re-sign and re-publish the TXT record (fresh ``ts``), with changed ports if given.

        Call it after a recall or when the RTP link comes up. Before the first
        registration this only changes what will be announced. A failed update
        is logged, and the services are registered again from scratch in the
        background (fail soft, retried like the first publish).
        """
        for name, port in (("osc", osc_port), ("http", http_port), ("rtp", rtp_port)):
            if port is not None:
                self.ports[name] = int(port)
        self.txt = self._make_txt()
        async with self._lock:
            if self._zc is None or not self._infos:
                return
            infos = self._service_infos()
            try:
                waiters = await asyncio.gather(*(
                    self._zc.async_update_service(info) for info in infos.values()))
                await asyncio.gather(*waiters)
                self._infos = infos
                return
            except Exception as exc:
                self.failures += 1
                log.warning("zeroconf: updating %s failed (%s: %s); registering it again",
                            self.name, type(exc).__name__, exc)
        # Fail soft: start over (a fresh zeroconf, the current record, retried until it works).
        self._registered.clear()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self._drop_zeroconf()
        self._task = asyncio.create_task(self._publish_loop(), name="zeroconf-announce")

    async def close(self) -> None:
        """Unregister (goodbye packets) and close zeroconf."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        async with self._lock:
            zc, self._zc = self._zc, None
            if zc is None:
                return
            try:
                if self._infos:
                    await zc.async_unregister_all_services()
            except Exception as exc:
                log.warning("zeroconf: unregistering %s failed (%s)", self.name, exc)
            finally:
                self._infos = {}
                self._registered.clear()
                await zc.async_close()


__all__ = ["ANAMNESIS_SERVICE", "AgentAnnouncer", "AgentRecord", "FIELDS", "OSCQUERY_SERVICE",
           "OSC_SERVICE", "PROTOCOL_VERSION", "build_txt", "check_token", "generate_key",
           "instance_name",
           "load_key", "parse_txt", "sign", "verify_txt"]
