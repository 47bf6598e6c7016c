"""``anamnesis hub``: the command line of the hub.

:func:`run_hub` checks the options and the config, then :func:`serve` builds the
:class:`~anamnesis.hub.core.hub.Hub`, starts it, and only then attaches its fronts
(the aiohttp app of :mod:`anamnesis.hub.api.app` and, unless ``--osc off``, the
installation's OSC server :class:`~anamnesis.hub.api.osc.HubOscServer` and, unless
``--oscquery off``, its OSCQuery namespace, announced by zeroconf with the OSC API:
:mod:`anamnesis.hub.api.oscquery`), prints ``Dashboard: http://HOST:PORT/?token=…``
(then ``OSC: HOST:PORT`` and ``OSCQuery: http://HOST:PORT/``), and runs until
SIGINT/SIGTERM; the fronts close before the hub. :func:`parse_address` reads ``HOST:PORT`` (also for
``anamnesis demo``).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any

from anamnesis.hub.core.hub import Hub
from anamnesis.hub.core.store import StoreError
from anamnesis.hub.fleet.supervisor import LAUNCHES

if TYPE_CHECKING:
    from anamnesis.hub.api.oscquery import HubAnnouncer

log = logging.getLogger(__name__)


# ---------------------------------------------------------------------------
# The command line
# ---------------------------------------------------------------------------


def add_hub_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``anamnesis hub``."""
    parser.add_argument("config", nargs="?", type=Path, help="installation config (TOML)")
    parser.add_argument("--http", default="127.0.0.1:8470", metavar="HOST:PORT",
                        help="address of the dashboard and API (default 127.0.0.1:8470; "
                             "port 0 picks a free one)")
    parser.add_argument("--state-dir", type=Path,
                        help="hub state (token, database, logs; default "
                             "$XDG_STATE_HOME/anamnesis/hub-NAME)")
    parser.add_argument("--interface", default="127.0.0.1",
                        help="IP address for zeroconf and OSC (default 127.0.0.1)")
    parser.add_argument("--key-file", type=Path,
                        help="installation key file (default: the config's key_file)")
    parser.add_argument("--mode", choices=("simulated", "deployed"),
                        help="clocking mode (default: the config's)")
    parser.add_argument("--osc", default="127.0.0.1:8471", metavar="HOST:PORT",
                        help="UDP address of the installation's OSC API (default "
                             "127.0.0.1:8471; 'off' for none; OSC has no token)")
    parser.add_argument("--oscquery", metavar="HOST:PORT",
                        help="TCP address of the installation's OSCQuery namespace (default: "
                             f"the dashboard's host, port {OSCQUERY_PORT}, or a free one when "
                             "the dashboard's is 0; 'off' for none); announced with the OSC "
                             "API by zeroconf on --interface where they listen there")
    parser.add_argument("--no-spawn", action="store_true",
                        help="do not start the config's local agents")
    add_launch_argument(parser)
    parser.add_argument("--log-level", default="info",
                        choices=("debug", "info", "warning", "error"), help="stderr log level")


def add_launch_argument(parser: argparse.ArgumentParser) -> None:
    """``--agent-launch``: how the hub starts its local agents."""
    parser.add_argument("--agent-launch", choices=LAUNCHES, default="fork",
                        help="start local agents forked from one warm process (fork, the "
                             "default: they come up faster) or each as a new program (exec)")


#: The OSCQuery namespace's TCP port by default (the dashboard's is 8470, OSC's 8471).
OSCQUERY_PORT = 8472

#: ``run_hub``'s hook: awaited with the started hub; may return a function run at shutdown.
OnStarted = Callable[["Hub"], Awaitable[Callable[[], None] | None]]


def parse_address(text: str, option: str = "--http") -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    if not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"{option} must be HOST:PORT; got {text!r}")
    return host, int(port)


def port_taken(host: str, port: int, *, udp: bool = False) -> OSError | None:
    """The error binding ``host:port`` gives now (TCP, or UDP with ``udp``), as the hub
    would bind it (address reuse on, as aiohttp does), or None when it is free; port 0
    is always free. Checked before anything slow starts, so a busy port is said at once."""
    if port == 0:
        return None
    import socket

    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_DGRAM if udp else socket.SOCK_STREAM) as sock:
        if not udp:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            return exc
    return None


def busy_port_message(what: str, option: str, host: str, port: int, exc: OSError) -> str:
    """One line for a port that cannot be bound: which one, why, and what to do."""
    import errno

    if exc.errno == errno.EADDRINUSE:
        return (f"{what} port {host}:{port} is taken (another demo or hub still running?): "
                f"stop that one, or start this one elsewhere with {option} {host}:0 "
                "(any free port)")
    return f"{what} address {host}:{port} cannot be used ({exc.strerror or exc}); see {option}"


def first_busy(http: tuple[str, int], osc: tuple[str, int] | None,
               oscquery: tuple[str, int] | None) -> str | None:
    """The message for the first of the hub's addresses that cannot be bound now, else
    None: the dashboard (TCP), the OSC API (UDP), OSCQuery (TCP)."""
    for what, option, address, udp in (("the dashboard's", "--http", http, False),
                                       ("the OSC API's", "--osc", osc, True),
                                       ("OSCQuery's", "--oscquery", oscquery, False)):
        if address is not None:
            exc = port_taken(*address, udp=udp)
            if exc is not None:
                return busy_port_message(what, option, *address, exc)
    return None


def oscquery_address(args: argparse.Namespace, host: str, port: int) -> tuple[str, int] | None:
    """Where the hub serves OSCQuery: ``--oscquery``, else beside the dashboard (its own
    port; a free one when the dashboard's is)."""
    oscquery_arg = getattr(args, "oscquery", None)
    if oscquery_arg is None:
        return (host, OSCQUERY_PORT if port else 0)
    return None if oscquery_arg == "off" else parse_address(oscquery_arg, "--oscquery")


def default_state_dir(name: str) -> Path:
    """A hub's state directory by default: ``$XDG_STATE_HOME/anamnesis/hub-NAME``."""
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "anamnesis" / f"hub-{name}"


def run_hub(args: argparse.Namespace, *, on_started: OnStarted | None = None) -> int:
    """Run ``anamnesis hub`` until SIGINT/SIGTERM; the exit status. ``on_started(hub)``
    (``anamnesis demo``'s hook) is awaited once the dashboard is served; the function it
    may return is called first on shutdown."""
    logging.basicConfig(level=args.log_level.upper(), stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # The clock runs on the event loop: a worker thread (room responses, the store) must
    # hand the GIL back within 1 ms, not Python's default 5.
    sys.setswitchinterval(0.001)
    os.umask(0o077)   # the database, logs, recordings and agents' state: the owner's alone
    from anamnesis.agents.protocol.key import load_key

    try:
        host, port = parse_address(args.http)
        osc_api = None if args.osc == "off" else parse_address(args.osc, "--osc")
        oscquery = oscquery_address(args, host, port)
        busy = first_busy((host, port), osc_api, oscquery)
        if busy is not None:
            print(f"anamnesis hub: {busy}", file=sys.stderr)
            return 1
        config = None
        if args.config is not None:
            from anamnesis.hub.installation.check import load_config

            config = load_config(args.config)
        key_file = args.key_file or (config.key_path if config is not None else None)
        key = load_key(key_file) if key_file is not None else None
    except ValueError as exc:  # ConfigError is a ValueError listing every problem
        print(f"anamnesis hub: {exc}", file=sys.stderr)
        return 2
    name = config.installation.name if config is not None else "anamnesis"
    state_dir = args.state_dir or default_state_dir(name)
    mode = args.mode or (config.installation.mode if config is not None else "simulated")
    return asyncio.run(serve(state_dir=state_dir, host=host, port=port, config=config, key=key,
                              key_file=key_file, interface=args.interface, mode=mode,
                              spawn=not args.no_spawn, osc_api=osc_api, oscquery=oscquery,
                              agent_launch=getattr(args, "agent_launch", "fork"),
                              on_started=on_started))


def state_dir_hint(state_dir: Path) -> str:
    """A sentence for a start that failed on ``state_dir``: that it is read-only or not
    writable, when it is (else nothing)."""
    if state_dir.is_dir() and not os.access(state_dir, os.W_OK):
        return (f"\n  the state directory {state_dir} is read-only: the hub keeps its database "
                f"there; mount it read-write, or give another --state-dir")
    return ""


async def serve(*, state_dir: Path, host: str, port: int, config: Any, key: bytes | None,
                 key_file: Path | None, interface: str, mode: str, spawn: bool,
                 osc_api: tuple[str, int] | None, oscquery: tuple[str, int] | None = None,
                 agent_launch: str = "fork",
                 on_started: OnStarted | None = None) -> int:
    """Run a hub with its fronts until SIGINT/SIGTERM (see the module docstring)."""
    from aiohttp import web

    from anamnesis.hub.api.app import create_app
    from anamnesis.hub.api.connections import (
        IDLE_S,
        ConnectionCap,
        cap_connections,
        raise_descriptor_limit,
    )
    from anamnesis.hub.api.keys import CONNECTIONS
    from anamnesis.hub.api.osc import HubOscServer
    from anamnesis.hub.api.oscquery import HubAnnouncer, create_oscquery_app

    hub = Hub(state_dir=state_dir, interface=interface, config=config, key=key,
              key_file=key_file, mode=mode, spawn=spawn, agent_launch=agent_launch)
    osc_server: HubOscServer | None = None
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    # The hub's worker threads (room responses, recordings, state files, kernel warm-up)
    # are named, so a thread dump says whose they are; asyncio.run joins them at exit.
    loop.set_default_executor(ThreadPoolExecutor(thread_name_prefix="anamnesis-hub-worker"))
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    raise_descriptor_limit()
    # Handlers get 5 s to finish on shutdown (aiohttp's default is 60); a connection
    # without a request closes after IDLE_S (aiohttp's default is an hour).
    runner = web.AppRunner(create_app(hub), access_log=None, shutdown_timeout=5.0,
                           keepalive_timeout=IDLE_S)
    query_runner: web.AppRunner | None = None
    announcer: HubAnnouncer | None = None
    on_stop: Callable[[], None] | None = None
    try:
        try:
            await hub.start()
            if osc_api is not None:
                osc_server = HubOscServer(hub)
                await osc_server.start(*osc_api)
            await runner.setup()
            cap_connections(runner, runner.app[CONNECTIONS])
            site = web.TCPSite(runner, host, port)
            await site.start()
            osc_bound = (osc_api[0], osc_server.port) if osc_server and osc_api else None
            if oscquery is not None:
                app = create_oscquery_app(hub, osc_ip=osc_bound[0] if osc_bound else interface,
                                          osc_port=osc_bound[1] if osc_bound else 0)
                query_runner = web.AppRunner(app, access_log=None, shutdown_timeout=2.0,
                                             keepalive_timeout=IDLE_S)
                await query_runner.setup()
                cap_connections(query_runner, ConnectionCap())
                await web.TCPSite(query_runner, *oscquery).start()
        except (OSError, StoreError) as exc:   # a port in use, an address not here, a disk
            print(f"anamnesis hub: cannot start: {exc}{state_dir_hint(hub.state_dir)}",
                  file=sys.stderr)
            return 1
        bound = runner.addresses[0][1] if runner.addresses else port
        shown = host if host not in ("0.0.0.0", "::") else "127.0.0.1"
        if os.environ.get("JOURNAL_STREAM"):   # systemd's journal: readable by many
            print(f"Dashboard: http://{shown}:{bound}/ (the token is in "
                  f"{hub.state_dir / 'token'})", flush=True)
        else:
            print(f"Dashboard: http://{shown}:{bound}/?token={hub.token}", flush=True)
        if osc_bound is not None:
            print(f"OSC: {osc_bound[0]}:{osc_bound[1]}", flush=True)
        query_bound = None
        if query_runner is not None and oscquery is not None:
            query_bound = (oscquery[0], int(query_runner.addresses[0][1]))
            print(f"OSCQuery: http://{query_bound[0]}:{query_bound[1]}/", flush=True)
        announcer = HubAnnouncer(name=hub.name, interface=interface, oscquery=query_bound,
                                 osc=osc_bound)
        announcer.start()
        log.info("hub %s serving on %s:%d (%s mode)", hub.name, host, bound, mode)
        if on_started is not None:
            on_stop = await on_started(hub)
        await stop.wait()
        log.info("shutting down")
    finally:
        if on_stop is not None:
            on_stop()
        if announcer is not None:
            await announcer.close()
        if query_runner is not None:
            await query_runner.cleanup()
        await runner.cleanup()
        if osc_server is not None:
            await osc_server.close()
        await hub.close()
    return 0


__all__ = ["add_hub_arguments", "default_state_dir", "parse_address", "run_hub"]
