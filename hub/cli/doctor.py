"""``anamnesis doctor [CONFIG]``: is this machine ready to play the piece?

Each check prints one plain line — ``ok``, ``warn`` or ``FAIL``, what was found, and
for a problem what to do — and the command exits 1 when a check fails (a warning
does not), so a boot script or a technician's checklist can rely on it; ``--json``
prints the same as a list of objects for scripts. The checks, in order:

* **config**: the installation config reads and checks (every problem, with its line);
* **audio**: PortAudio is installed, and the devices it sees, with their rates (the
  config's sample rate must be among what a device can do in deployed mode);
* **interface**: the address given is one of this host's (it can be bound);
* **zeroconf**: on that interface, a probe announced by one zeroconf instance is heard
  by another (multicast works there); the anamnesis agents heard meanwhile, by
  installation (this installation's and others');
* **ports**: the dashboard's (TCP), OSC API's (UDP) and OSCQuery's (TCP) ports are free;
* **key**: the installation key file exists, is long enough and only its owner may
  read it (anyone who reads it can sign announcements as an agent of the piece);
* **state**: the hub's state directory exists and is writable, or can be made (the
  doctor creates nothing), has room, and its database (if any) is one this anamnesis
  can open.

* **hub** and **drift**, when a hub already answers on the dashboard's address (its
  open ``/api/health``): which installation it plays, and in the deployed mode each
  agent's sound-card clock against the hub's, as the hub measures it from the agent's
  stream (``clock_ppm``, :class:`~anamnesis.agents.net.drift.ClockDrift`): within
  :data:`DRIFT_WARN_PPM` it is ordinary crystal spread, absorbed by a crossfaded slip
  every few seconds; beyond :data:`DRIFT_FAIL_PPM` it is not drift but two sample rates.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import socket
import stat
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

#: Free space below which the state directory is a warning (bytes).
LOW_SPACE = 200 * 1024 * 1024
#: Seconds the zeroconf check listens for agents after its probe is heard.
LISTEN_S = 2.0
#: The probe's zeroconf service type (never an agent's).
PROBE_SERVICE = "_anm-doctor._udp.local."
#: Clock drift of an agent against the hub above which the doctor warns (ppm): cheap
#: interfaces differ by tens of ppm; 200 ppm is a 64-sample slip every 6.7 s at 48 kHz.
DRIFT_WARN_PPM = 200.0
#: Drift above which it is a failure (ppm): 44.1 against 48 kHz shows as ~88,000.
DRIFT_FAIL_PPM = 2000.0
#: Seconds the doctor waits for a running hub's answer.
HUB_TIMEOUT_S = 3.0


@dataclass(frozen=True)
class Check:
    """One line of the report: ``status`` "ok" | "warn" | "fail"."""

    name: str
    status: str
    found: str
    fix: str = ""

    def line(self) -> str:
        mark = {"ok": "ok  ", "warn": "warn", "fail": "FAIL"}[self.status]
        return f"{mark}  {self.name:<9} {self.found}" + (f" — {self.fix}" if self.fix else "")


# ---------------------------------------------------------------------------
# The checks (each returns its lines; none raises)
# ---------------------------------------------------------------------------


def check_config(path: Path | None) -> tuple[list[Check], Any]:
    """The config's check, and the config (None without one or when it fails)."""
    if path is None:
        return [Check("config", "ok", "no config given (checking this machine only)")], None
    from anamnesis.hub.installation.check import load_config

    try:
        config = load_config(path)
    except ValueError as exc:   # ConfigError lists every problem
        return [Check("config", "fail", str(exc).replace("\n", "; "),
                      "fix the config (every key is described in hub/installation/config.py)")], None
    inst = config.installation
    return [Check("config", "ok", f"{path}: installation {inst.name!r}, {len(config.agents)} "
                                  f"agents, {inst.mode} mode, {inst.sample_rate} Hz")], config


def check_audio(config: Any) -> list[Check]:
    """PortAudio and its devices."""
    from anamnesis.agents.audio.backends import BackendError, list_devices

    try:
        devices = list_devices()
    except BackendError as exc:
        return [Check("audio", "fail", str(exc), "agents can still run with --audio null or hub")]
    except Exception as exc:  # noqa: BLE001 (PortAudio failing in its own way)
        return [Check("audio", "fail", f"PortAudio fails: {type(exc).__name__}: {exc}",
                      "check the sound server (JACK, PipeWire) and the device permissions")]
    if not devices:
        return [Check("audio", "warn", "PortAudio sees no audio device",
                      "connect the interface, or start JACK / PipeWire")]
    out = [Check("audio", "ok", f"PortAudio sees {len(devices)} device(s)")]
    for d in devices:
        out.append(Check("audio", "ok", f"device {d['index']}: {d['name']} ({d['hostapi']}; "
                                        f"{d['inputs']} in, {d['outputs']} out; "
                                        f"{d['sample_rate']:g} Hz)"))
    if config is not None and config.installation.mode == "deployed":
        rate = config.installation.sample_rate
        if not any(d["sample_rate"] == rate and d["inputs"] and d["outputs"] for d in devices):
            out.append(Check("audio", "warn", f"no duplex device runs at {rate} Hz by default",
                             "set the interface's rate, or the config's sample_rate"))
    return out


def check_interface(interface: str) -> list[Check]:
    """The interface is an address of this host."""
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.bind((interface, 0))
    except OSError as exc:
        return [Check("interface", "fail", f"{interface} is not an address of this host ({exc})",
                      f"use one of: {', '.join(host_addresses()) or '127.0.0.1'}")]
    kind = "loopback: this host only" if interface.startswith("127.") else "LAN"
    return [Check("interface", "ok", f"{interface} ({kind})")]


def host_addresses() -> list[str]:
    """This host's IPv4 addresses that can be bound (best effort): its name's and the
    LAN address agents choose by default."""
    from anamnesis.agents.main import default_interface

    found = {default_interface()}
    with contextlib.suppress(OSError):
        for info in socket.getaddrinfo(socket.gethostname(), None, socket.AF_INET):
            found.add(info[4][0])
    return sorted(found)


def check_zeroconf(interface: str, config: Any, seconds: float) -> list[Check]:
    """A probe heard across two zeroconf instances on ``interface``; the agents heard."""
    try:
        heard, agents = asyncio.run(_zeroconf_probe(interface, seconds))
    except Exception as exc:  # noqa: BLE001 (a network that refuses multicast, in any way)
        return [Check("zeroconf", "fail", f"zeroconf cannot run on {interface}: "
                                          f"{type(exc).__name__}: {exc}",
                      "is the interface up? is multicast (UDP 5353) allowed?")]
    if not heard:
        return [Check("zeroconf", "fail", f"a probe announced on {interface} was not heard "
                                          f"within {seconds:g} s",
                      "multicast (mDNS, UDP 5353) is blocked on this interface: the firewall, "
                      "or a switch without IGMP snooping configured")]
    out = [Check("zeroconf", "ok", f"multicast works on {interface}")]
    name = config.installation.name if config is not None else None
    ours = sorted({a for a, inst in agents if name is None or inst == name})
    others = sorted({inst for _, inst in agents if name is not None and inst != name})
    out.append(Check("zeroconf", "ok", f"agents heard: {', '.join(ours) or 'none'}"))
    if config is not None:
        expected = [a.id for a in config.agents if not a.spawn]   # the hub starts the others
        missing = [a for a in expected if a not in ours]
        if missing:
            out.append(Check("zeroconf", "warn", f"the config's agents not heard: "
                                                 f"{', '.join(missing)}",
                             f"are they started, with --installation {name} and an "
                             "--interface on this network?"))
    if others:
        out.append(Check("zeroconf", "ok", f"other installations here: {', '.join(others)}"))
    return out


async def _zeroconf_probe(interface: str, seconds: float) -> tuple[bool, set[tuple[str, str]]]:
    from zeroconf import ServiceInfo, ServiceStateChange
    from zeroconf.asyncio import AsyncServiceBrowser, AsyncServiceInfo, AsyncZeroconf

    from anamnesis.agents.protocol.errors import ProtocolError
    from anamnesis.agents.protocol.txt import ANAMNESIS_SERVICE, parse_txt

    probe = f"doctor-{os.getpid()}-{int(time.time())}.{PROBE_SERVICE}"
    sender = AsyncZeroconf(interfaces=[interface])
    listener = AsyncZeroconf(interfaces=[interface])
    heard = asyncio.Event()
    names: set[str] = set()
    loop = asyncio.get_running_loop()

    def on_change(zeroconf: Any, service_type: str, name: str, state_change: Any) -> None:
        if state_change is not ServiceStateChange.Added:
            return
        if service_type == PROBE_SERVICE and name == probe:
            loop.call_soon_threadsafe(heard.set)
        elif service_type == ANAMNESIS_SERVICE:
            loop.call_soon_threadsafe(names.add, name)

    browser = AsyncServiceBrowser(listener.zeroconf, [PROBE_SERVICE, ANAMNESIS_SERVICE],
                                  handlers=[on_change])
    agents: set[tuple[str, str]] = set()
    try:
        await sender.async_register_service(ServiceInfo(
            PROBE_SERVICE, probe, port=9, addresses=[socket.inet_aton(interface)]))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(heard.wait(), seconds)
        # the agents' answers: a responder delays them (RFC 6762 §6), several at once more
        await asyncio.sleep(LISTEN_S)
        for found in sorted(names):
            info = AsyncServiceInfo(ANAMNESIS_SERVICE, found)
            if await info.async_request(listener.zeroconf, 2000) and info.properties:
                with contextlib.suppress(ProtocolError):
                    record = parse_txt(info.properties)
                    agents.add((record.agent_id, record.installation))
    finally:
        await browser.async_cancel()
        await sender.async_close()
        await listener.async_close()
    return heard.is_set(), agents


def running_hub(http: tuple[str, int] | None) -> dict[str, Any] | None:
    """What a hub serving the dashboard at ``http`` says of itself (``/api/health`` and
    ``/api/installation``, both open), or None when nothing there is an anamnesis hub."""
    import urllib.error
    import urllib.request

    if http is None or http[1] == 0:
        return None
    base = f"http://{http[0]}:{http[1]}"
    try:
        with urllib.request.urlopen(f"{base}/api/health", timeout=HUB_TIMEOUT_S) as r:
            health = json.loads(r.read())
        if not isinstance(health, dict) or health.get("ok") is not True:
            return None
        with urllib.request.urlopen(f"{base}/api/installation", timeout=HUB_TIMEOUT_S) as r:
            installation = json.loads(r.read())
    except (OSError, ValueError, urllib.error.URLError):
        return None
    return {**health, "installation": installation if isinstance(installation, dict) else {}}


def check_hub(hub: dict[str, Any] | None) -> list[Check]:
    """A hub already running on the dashboard's address: what it plays, and (deployed)
    each agent's clock drift against it."""
    if hub is None:
        return []
    inst = hub["installation"]
    mode = inst.get("mode", "?")
    out = [Check("hub", "ok", f"a hub plays {hub.get('name')!r} there ({mode}, "
                              f"{hub.get('online', 0)} of {hub.get('agents', 0)} agents online)")]
    if mode != "deployed":
        return out + [Check("drift", "ok", f"{mode} mode: the hub clocks every agent (no drift)")]
    streams = ((inst.get("clock") or {}).get("agents") or {})
    if not streams:
        return out + [Check("drift", "warn", "no agent is routed yet: nothing to measure",
                            "start the agents; the hub measures each after 20 s of its stream")]
    rate = (((inst.get("config") or {}).get("installation") or {}).get("sample_rate")
            or 48000)
    for agent_id, stats in sorted(streams.items()):
        ppm = (stats.get("out") or {}).get("clock_ppm")
        if not isinstance(ppm, (int, float)):
            out.append(Check("drift", "warn", f"agent {agent_id}: not measured yet",
                             "run the doctor again after 20 s of its stream"))
            continue
        every = 64 / (abs(ppm) * 1e-6 * rate) if ppm else float("inf")
        found = (f"agent {agent_id}'s clock runs {ppm:+.1f} ppm against the hub's "
                 f"(a crossfaded 64-sample slip every {every:.0f} s)")
        if abs(ppm) > DRIFT_FAIL_PPM:
            out.append(Check("drift", "fail", found, "not drift: the agent's interface runs at "
                             "another sample rate; set it to the installation's"))
        elif abs(ppm) > DRIFT_WARN_PPM:
            out.append(Check("drift", "warn", found, "audible slips: give the interfaces one "
                             "word clock, or replace the one that is far off"))
        else:
            out.append(Check("drift", "ok", found))
    return out


def check_ports(http: tuple[str, int] | None, osc: tuple[str, int] | None,
                hub: dict[str, Any] | None = None,
                oscquery: tuple[str, int] | None = None) -> list[Check]:
    """The hub's dashboard (TCP), OSC API (UDP) and OSCQuery (TCP) ports are free (or
    held by the running ``hub`` itself)."""
    out = []
    for what, address, kind, flag in (("dashboard", http, socket.SOCK_STREAM, "--http"),
                                      ("OSC API", osc, socket.SOCK_DGRAM, "--osc"),
                                      ("OSCQuery", oscquery, socket.SOCK_STREAM, "--oscquery")):
        if address is None or address[1] == 0:
            continue
        if hub is not None and what == "dashboard":
            out.append(Check("ports", "ok", f"the {what} port {address[0]}:{address[1]} is the "
                                            f"running hub's"))
            continue
        host, port = address
        with socket.socket(socket.AF_INET, kind) as s:
            if kind == socket.SOCK_STREAM:
                s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                s.bind((host, port))
            except OSError as exc:
                if hub is not None:     # the hub that answered on the dashboard holds it
                    out.append(Check("ports", "ok", f"the {what} port {host}:{port} is taken, "
                                                    "by the running hub it seems"))
                    continue
                out.append(Check("ports", "fail", f"the {what} port {host}:{port} is taken ({exc})",
                                 f"stop what holds it (another hub?), or use {flag} {host}:0"))
                continue
        out.append(Check("ports", "ok", f"the {what} port {host}:{port} is free"))
    return out


def check_key(path: Path | None) -> list[Check]:
    """The installation key file."""
    if path is None:
        return [Check("key", "warn", "no installation key (agents stay pending until adopted)",
                      "anamnesis keygen KEYFILE, and key_file in the config")]
    from anamnesis.agents.protocol.key import load_key

    try:
        key = load_key(path)
    except ValueError as exc:
        return [Check("key", "fail", str(exc), f"anamnesis keygen {path}")]
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        return [Check("key", "fail", f"{path} is readable by others (mode {mode:o}): anyone who "
                                     "reads it can announce as an agent of the piece",
                      f"chmod 600 {path}")]
    return [Check("key", "ok", f"{path}: {len(key)} bytes, mode {mode:o}")]


def check_state(state_dir: Path) -> list[Check]:
    """The hub's state directory and its database."""
    from anamnesis.hub.core.store import DB_NAME, Store, StoreError

    fix = "choose --state-dir on a writable disk, owned by the hub's user"
    existing = state_dir
    while not existing.exists() and existing != existing.parent:   # nothing is created here
        existing = existing.parent
    try:
        if not existing.is_dir():
            raise NotADirectoryError(f"{existing} is not a directory")
        if existing == state_dir:
            with tempfile.NamedTemporaryFile(dir=state_dir, prefix=".doctor-"):
                pass
        elif not os.access(existing, os.W_OK | os.X_OK):
            raise PermissionError(f"{existing} is not writable")
    except OSError as exc:
        return [Check("state", "fail", f"cannot write in {state_dir} ({exc})", fix)]
    free = shutil.disk_usage(existing).free
    made = "writable" if existing == state_dir else f"can be made in {existing}"
    out = [Check("state", "ok" if free >= LOW_SPACE else "warn",
                 f"{state_dir}: {made}, {free / 2**30:.1f} GiB free",
                 "" if free >= LOW_SPACE else "free some space: recordings and logs need room")]
    db = state_dir / DB_NAME
    if db.exists():
        try:
            with Store(db, readonly=True) as store:
                out.append(Check("state", "ok", f"database {db.name}: schema {store.schema_version}"))
        except StoreError as exc:
            out.append(Check("state", "fail", str(exc), "see the message; move the file aside "
                                                        "to start afresh"))
    return out


# ---------------------------------------------------------------------------
# The command line
# ---------------------------------------------------------------------------


def add_doctor_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``anamnesis doctor``."""
    parser.add_argument("config", nargs="?", type=Path, help="installation config (TOML)")
    parser.add_argument("--interface", default="127.0.0.1",
                        help="the address the hub and agents use (default 127.0.0.1)")
    parser.add_argument("--http", default="127.0.0.1:8470", metavar="HOST:PORT",
                        help="the hub's dashboard address to check (default 127.0.0.1:8470)")
    parser.add_argument("--osc", default="127.0.0.1:8471", metavar="HOST:PORT",
                        help="the hub's OSC API address to check ('off': none)")
    parser.add_argument("--oscquery", default="127.0.0.1:8472", metavar="HOST:PORT",
                        help="the hub's OSCQuery address to check ('off': none)")
    parser.add_argument("--key-file", type=Path, help="installation key (default: the config's)")
    parser.add_argument("--state-dir", type=Path, help="the hub's state directory (default: "
                                                       "as `anamnesis hub` chooses)")
    parser.add_argument("--zeroconf-s", type=float, default=3.0, metavar="S",
                        help="seconds to wait for the zeroconf probe (default 3)")
    parser.add_argument("--json", action="store_true", help="print the checks as JSON")


def run_doctor(args: argparse.Namespace) -> int:
    """Run every check, print the report; 1 if a check failed."""
    from anamnesis.hub.cli.hub import default_state_dir, parse_address

    checks, config = check_config(args.config)
    steps: list[Callable[[], list[Check]]] = [
        lambda: check_audio(config),
        lambda: check_interface(args.interface),
        lambda: check_zeroconf(args.interface, config, args.zeroconf_s),
    ]
    try:
        http = parse_address(args.http, "--http")
        osc = None if args.osc == "off" else parse_address(args.osc, "--osc")
        oscquery_arg = getattr(args, "oscquery", "off")
        oscquery = None if oscquery_arg == "off" else parse_address(oscquery_arg, "--oscquery")
        hub = running_hub(http)
        steps += [lambda: check_ports(http, osc, hub, oscquery), lambda: check_hub(hub)]
    except ValueError as exc:
        checks.append(Check("ports", "fail", str(exc)))
    key_file = args.key_file or (config.key_path if config is not None else None)
    name = config.installation.name if config is not None else "anamnesis"
    steps += [lambda: check_key(key_file),
              lambda: check_state(args.state_dir or default_state_dir(name))]
    for step in steps:
        checks += step()
    if args.json:
        print(json.dumps([asdict(c) for c in checks], indent=1))
    else:
        for c in checks:
            print(c.line())
        failed = sum(c.status == "fail" for c in checks)
        print(f"{failed} problem(s)" if failed else "ready", flush=True)
    return 1 if any(c.status == "fail" for c in checks) else 0


if __name__ == "__main__":   # python -m anamnesis.hub.cli.doctor
    parser = argparse.ArgumentParser(prog="anamnesis doctor")
    add_doctor_arguments(parser)
    sys.exit(run_doctor(parser.parse_args()))


__all__ = ["Check", "add_doctor_arguments", "run_doctor"]
