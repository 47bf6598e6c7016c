"""The agent process: ``anamnesis agent`` and ``anamnesis devices``.

``anamnesis agent --id a1 --model autoregnn [--preset P] [--model-arg hidden_size=10 ...]
[--audio sounddevice|null|hub] ...`` runs one model on one mic/speaker channel
(DESIGN "The agent process"):

1. builds the model (from ``--preset`` or ``--model``), compiles its kernels on a
   throwaway twin (so the first audio callback does not wait for numba);
2. opens and locks the state directory; resumes the autosave unless ``--fresh``
   (the autosave wins over the preset's parameters: an installation restarts
   where it was);
3. opens its RTP port (``--rtp-port``; the audio link, :mod:`anamnesis.agents.net.link`: the
   hub-clocked mode with ``--audio hub``, otherwise the deployed mode's ``in``
   stream from ``--hub``, and listen-in copies via ``GET /streams/NAME.sdp``),
   starts the audio backend, then the control services (OSC, OSCQuery with the
   ``/streams`` routes, zeroconf announcing the RTP port);
4. ``gc.freeze()``, prints one line to stdout —
   ``agent ID ready osc=PORT http=PORT`` — and logs to stderr;
5. autosaves every ``--autosave-s`` seconds (30) and watches the audio thread;
6. on SIGINT/SIGTERM: closes the services (zeroconf unregisters first), stops
   the audio (threads joined), writes the autosave, releases the state
   directory, exits 0.

Threads: the asyncio main thread, the audio thread (PortAudio's, the null
clock's or the hub clock's), and one named executor thread ``anamnesis-disk``
for file work, created in :func:`_serve` and joined before exit.

Of a preset, a live agent uses the model, its constructor arguments, its
parameters, and ``FollowInput`` modulations (fed by its input). What it hears is
``--input``: the sound card's input channel (``mic``, a sound card's default), the
preset's first input signal looped (``preset``, the null clock's default when the
preset has one: a first try without a microphone plays) or ``silence``
(:mod:`anamnesis.agents.audio.inputs`); with ``--audio hub`` the hub sends it.
``Ramp`` and ``At`` timelines belong to offline renders and are not played live
(logged).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import ipaddress
import logging
import os
import signal
import socket
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from anamnesis.agents.protocol.ids import ID_RE
from anamnesis.agents.recipe import config_model, config_warm_up, parse_model_args

log = logging.getLogger("anamnesis.agents.main")
AUDIO_CHOICES = ("sounddevice", "null", "hub")
#: What an agent hears (``--input``, :mod:`anamnesis.agents.audio.inputs`).
INPUT_CHOICES = ("mic", "preset", "silence")
MODEL_CHOICES = ("autoregnn", "autoregnn2", "unlearn")
#: Seconds between checks of the audio thread (xruns, stalls).
MONITOR_S = 2.0


class StartupError(RuntimeError):
    """The agent cannot start; the message is one line for the user."""


def add_agent_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``anamnesis agent``."""
    parser.add_argument("--id", required=True, help="agent id (letters, digits, _ and -), e.g. a3")
    parser.add_argument("--model", choices=MODEL_CHOICES,
                        help="model kind (default: the preset's, else autoregnn)")
    parser.add_argument("--preset", help="start from a named preset (see `anamnesis render --list`)")
    parser.add_argument("--seed", type=int, default=0, help="initialisation seed (default 0)")
    parser.add_argument("--model-arg", action="append", default=[], metavar="NAME=VALUE",
                        help="a constructor argument of the model, e.g. hidden_size=10 "
                             "(repeatable; overrides the preset's)")
    parser.add_argument("--audio", choices=AUDIO_CHOICES, default="sounddevice",
                        help="audio backend: a sound card (sounddevice), a software clock "
                             "(null), or the hub's clock over RTP (hub; simulated mode)")
    parser.add_argument("--device", help="audio device index or part of its name "
                                         "(see `anamnesis devices`)")
    parser.add_argument("--input", choices=INPUT_CHOICES,
                        help="what the agent hears: the device's input channel (mic), its "
                             "preset's input signal in a loop (preset) or silence (default: "
                             "preset on the null clock when the preset has one, else mic)")
    parser.add_argument("--clock-ppm", type=float, default=0.0, metavar="PPM",
                        help="--audio null: run the clock PPM parts per million fast (+) or "
                             "slow (-), as a sound card's crystal would (rehearsing drift; "
                             "default 0)")
    parser.add_argument("--in-channel", type=int, default=1, metavar="N",
                        help="input (mic) channel of the device, from 1 (default 1)")
    parser.add_argument("--out-channel", type=int, default=1, metavar="N",
                        help="output (speaker) channel of the device, from 1 (default 1)")
    parser.add_argument("--block", type=int, default=256, help="frames per block (default 256)")
    parser.add_argument("--sample-rate", type=int, default=48000, help="Hz (default 48000)")
    parser.add_argument("--ceiling-db", type=float, default=-1.0,
                        help="highest level the speaker gets, dBFS (default -1)")
    parser.add_argument("--osc-port", type=int, default=0, help="OSC UDP port (0: pick a free one)")
    parser.add_argument("--http-port", type=int, default=0,
                        help="OSCQuery HTTP port (0: pick a free one)")
    parser.add_argument("--interface", help="IP address to bind and announce on "
                                            "(default: this host's LAN address, else 127.0.0.1)")
    parser.add_argument("--no-announce", action="store_true", help="do not register with zeroconf")
    parser.add_argument("--rtp-port", type=int, default=0,
                        help="UDP port of the RTP audio link (0: pick a free one; announced)")
    parser.add_argument("--hub", metavar="IP",
                        help="the hub's address: the only source of the `in` stream and of "
                             "the hub clock (default: the --interface address)")
    parser.add_argument("--hub-fallback-s", type=float, default=0.5, metavar="S",
                        help="--audio hub: seconds without a block from the hub before the "
                             "agent runs free on silence (default 0.5; longer on a slow LAN)")
    parser.add_argument("--installation", default="anamnesis",
                        help="installation name announced with the agent (default anamnesis)")
    parser.add_argument("--key-file", type=Path, help="installation key file (signs the announcement)")
    parser.add_argument("--state-dir", type=Path,
                        help="this agent's state directory (default: "
                             "$XDG_STATE_HOME/anamnesis/agent-ID)")
    parser.add_argument("--fresh", action="store_true",
                        help="ignore the autosave and start from the preset / initial weights")
    parser.add_argument("--autosave-s", type=float, default=30.0,
                        help="seconds between autosaves (default 30)")
    parser.add_argument("--log-level", default="info",
                        choices=("debug", "info", "warning", "error"), help="stderr log level")


def add_devices_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``anamnesis devices`` (none yet)."""


@dataclass(frozen=True)
class AgentConfig:
    """The checked options of one agent."""

    agent_id: str
    model: str
    preset: str | None
    seed: int
    audio: str
    device: int | str | None
    in_channel: int
    out_channel: int
    block: int
    sample_rate: int
    ceiling_db: float
    osc_port: int
    http_port: int
    interface: str
    announce: bool
    installation: str
    key_file: Path | None
    state_dir: Path
    fresh: bool
    autosave_s: float
    model_args: dict[str, Any] = field(default_factory=dict)
    rtp_port: int = 0
    hub: str = "127.0.0.1"
    #: ``--audio hub``: seconds without hub input before running free on silence.
    hub_fallback_s: float = 0.5
    #: ``--audio null``: the clock's rate offset (ppm, + fast).
    clock_ppm: float = 0.0
    #: What the agent hears (``mic``, ``preset``, ``silence``; None with ``--audio hub``).
    input: str | None = "mic"


def default_state_dir(agent_id: str) -> Path:
    """``$XDG_STATE_HOME/anamnesis/agent-ID`` (``~/.local/state/...`` by default)."""
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "anamnesis" / f"agent-{agent_id}"


def default_interface() -> str:
    """This host's LAN address (the source address of its default route; no packet
    is sent), or 127.0.0.1 on a machine without one."""
    with contextlib.suppress(OSError), socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.connect(("192.0.2.1", 9))  # TEST-NET-1: only selects a route
        address = s.getsockname()[0]
        if address and not ipaddress.ip_address(address).is_unspecified:
            return address
    return "127.0.0.1"


def check_args(args: argparse.Namespace) -> AgentConfig:
    """Check the options together; ``ValueError`` naming every problem found."""
    from anamnesis.agents.audio.backends import MAX_CLOCK_PPM, parse_device

    problems = []
    if not ID_RE.match(args.id or ""):
        problems.append(f"--id must be 1-32 letters, digits, '_' or '-'; got {args.id!r}")
    if not 16 <= args.block <= 4096:
        problems.append(f"--block must be in [16, 4096] frames; got {args.block}")
    if not 8000 <= args.sample_rate <= 192000:
        problems.append(f"--sample-rate must be in [8000, 192000] Hz; got {args.sample_rate}")
    if not -60.0 <= args.ceiling_db <= 0.0:
        problems.append(f"--ceiling-db must be in [-60, 0] dBFS; got {args.ceiling_db:g}")
    for name in ("osc_port", "http_port", "rtp_port"):
        if not 0 <= getattr(args, name) <= 65535:
            problems.append(f"--{name.replace('_', '-')} must be in [0, 65535]")
    for name in ("in_channel", "out_channel"):
        if getattr(args, name) < 1:
            problems.append(f"--{name.replace('_', '-')} counts from 1; got {getattr(args, name)}")
    if not 0.1 <= args.autosave_s <= 86400:
        problems.append(f"--autosave-s must be in [0.1, 86400] s; got {args.autosave_s:g}")
    if not 0.01 <= args.hub_fallback_s <= 60.0:
        problems.append(f"--hub-fallback-s must be in [0.01, 60] s; got {args.hub_fallback_s:g}")
    if not -MAX_CLOCK_PPM <= args.clock_ppm <= MAX_CLOCK_PPM:
        problems.append(f"--clock-ppm must be in [-{MAX_CLOCK_PPM:g}, {MAX_CLOCK_PPM:g}]; "
                        f"got {args.clock_ppm:g}")
    elif args.clock_ppm and args.audio != "null":
        problems.append("--clock-ppm is for the null clock (--audio null); a sound card and "
                        "the hub keep their own time")
    if args.seed < 0:
        problems.append(f"--seed must be >= 0; got {args.seed}")
    from anamnesis.agents.protocol.txt import check_token

    try:
        check_token(args.installation, "--installation")
    except ValueError as exc:
        problems.append(str(exc))
    interface = args.interface or default_interface()
    try:
        if ipaddress.ip_address(interface).is_unspecified:
            problems.append("--interface must be a concrete address, not 0.0.0.0")
    except ValueError:
        problems.append(f"--interface must be an IP address; got {interface!r}")
    hub = args.hub or interface
    try:
        if ipaddress.ip_address(hub).version != 4 or ipaddress.ip_address(hub).is_unspecified:
            problems.append(f"--hub must be a concrete IPv4 address; got {hub!r}")
    except ValueError:
        problems.append(f"--hub must be an IP address; got {hub!r}")
    model = args.model
    if args.preset is not None:
        from anamnesis.agents.presets import get_preset
        try:
            preset = get_preset(args.preset)
        except ValueError as exc:
            problems.append(str(exc))
        else:
            if model is not None and model != preset.model:
                problems.append(f"preset {args.preset!r} is for model {preset.model}, "
                                f"not {model}")
            model = preset.model
    model_args: dict[str, Any] = {}
    if not problems:
        try:
            model_args = parse_model_args(model or "autoregnn", args.model_arg, args.preset,
                                          seed=args.seed, sample_rate=args.sample_rate,
                                          max_block=args.block)
        except ValueError as exc:
            problems.append(str(exc))
    hears = _check_input(args.input, args.audio, args.preset, problems)
    if problems:
        raise ValueError("; ".join(problems))
    return AgentConfig(
        agent_id=args.id, model=model or "autoregnn", preset=args.preset, seed=args.seed,
        audio=args.audio, device=parse_device(args.device), in_channel=args.in_channel,
        out_channel=args.out_channel, block=args.block, sample_rate=args.sample_rate,
        ceiling_db=args.ceiling_db, osc_port=args.osc_port, http_port=args.http_port,
        interface=interface, announce=not args.no_announce, installation=args.installation,
        key_file=args.key_file, state_dir=args.state_dir or default_state_dir(args.id),
        fresh=args.fresh, autosave_s=args.autosave_s, model_args=model_args,
        rtp_port=args.rtp_port, hub=hub, hub_fallback_s=args.hub_fallback_s,
        clock_ppm=args.clock_ppm, input=hears)


def _check_input(choice: str | None, audio: str, preset: str | None,
                 problems: list[str]) -> str | None:
    """What the agent hears (the ``--input`` choice, or its default); a problem noted
    for a choice that cannot be."""
    if audio == "hub":
        if choice is not None:
            problems.append("--input does not apply with --audio hub: the hub sends the input")
        return None
    if choice is None:
        from anamnesis.agents.presets import get_preset

        with contextlib.suppress(ValueError):   # an unknown preset is reported already
            if audio == "null" and preset is not None and get_preset(preset).inputs:
                return "preset"
        return "mic"
    if choice == "preset" and preset is None:
        problems.append("--input preset needs a --preset (its input signal is what is heard)")
    return choice


def _input_source(config: AgentConfig) -> tuple[Any, str]:
    """The backend's ``source`` for what the agent hears (None: the device's input) and
    a description for the log. Renders a preset's input, so off the event loop."""
    import numpy as np

    from anamnesis.agents.audio.inputs import LoopedSignal, preset_input

    if config.input is None:
        return None, "the hub's input"
    if config.input == "silence":
        source = LoopedSignal(np.zeros(1), "silence")
    elif config.input == "preset":
        source = preset_input(config.preset, config.sample_rate, seed=config.seed)
        if source is None:
            return None, f"silence (preset {config.preset} has no input signal)"
    elif config.audio == "null":
        return None, "silence (the null clock has no microphone; --input preset plays the preset's)"
    else:
        return None, f"the device's input channel {config.in_channel}"
    source.warm_up()
    return source, source.description


def _setup_logging(level: str) -> None:
    root = logging.getLogger()
    if not root.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter(
            "%(asctime)s %(levelname)s %(name)s: %(message)s", "%H:%M:%S"))
        root.addHandler(handler)
    root.setLevel(level.upper())


def run_agent(args: argparse.Namespace) -> int:
    """Run ``anamnesis agent`` until SIGINT/SIGTERM; returns the exit status
    (0 clean, 1 could not start, 2 bad options)."""
    _setup_logging(getattr(args, "log_level", "info"))
    try:
        config = check_args(args)
    except ValueError as exc:
        print(f"anamnesis agent: error: {exc}", file=sys.stderr)
        return 2
    try:
        return asyncio.run(_serve(config))
    except StartupError as exc:
        print(f"anamnesis agent: error: {exc}", file=sys.stderr)
        return 1


def run_devices(args: argparse.Namespace) -> int:
    """Print the audio devices PortAudio sees; 1 with one line if PortAudio is missing."""
    from anamnesis.agents.audio.backends import BackendError, format_devices, list_devices

    try:
        devices = list_devices()
    except BackendError as exc:
        print(f"anamnesis devices: error: {exc}", file=sys.stderr)
        return 1
    print(format_devices(devices))
    return 0


async def _serve(config: AgentConfig) -> int:
    from anamnesis.agents.audio.backends import BackendError, create_backend
    from anamnesis.agents.control import AgentControl
    from anamnesis.agents.dsp.engine import AgentEngine
    from anamnesis.agents.snapshots import SnapshotStore, StateDirLocked

    sys.setswitchinterval(0.001)  # the audio callback must not wait 5 ms for the GIL
    loop = asyncio.get_running_loop()
    executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="anamnesis-disk")
    loop.set_default_executor(executor)
    stop = asyncio.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)

    key = None
    if config.key_file is not None:
        from anamnesis.agents.protocol.key import load_key
        try:
            key = load_key(config.key_file)
        except ValueError as exc:
            raise StartupError(str(exc)) from None

    try:
        make_model, follow = config_model(config)
        model = make_model()
        engine = AgentEngine(model, block=config.block, sample_rate=config.sample_rate,
                             ceiling_db=config.ceiling_db, follow=follow)
    except ValueError as exc:
        raise StartupError(f"cannot build the {config.model} model: {exc}") from None
    except Exception as exc:  # a broken model module: say what, in one line (details in debug)
        log.debug("model construction failed", exc_info=True)
        raise StartupError(f"cannot build the {config.model} model: "
                           f"{type(exc).__name__}: {exc}") from None
    try:
        await loop.run_in_executor(None, config_warm_up, make_model, follow, config)
    except RuntimeError as exc:
        raise StartupError(str(exc)) from None

    store = SnapshotStore(config.state_dir, agent_id=config.agent_id, model_kind=config.model)
    try:
        await loop.run_in_executor(None, store.open)
    except StateDirLocked as exc:
        raise StartupError(str(exc)) from None
    except OSError as exc:
        raise StartupError(f"cannot use the state directory {config.state_dir}: {exc}") from None

    from anamnesis.agents.net.link import AgentLink
    try:
        link = AgentLink(agent_id=config.agent_id, interface=config.interface,
                         block=config.block, sample_rate=config.sample_rate, hub_host=config.hub)
        await link.open(config.rtp_port)
    except (OSError, ValueError) as exc:
        store.close()
        raise StartupError(f"cannot open the RTP port {config.interface}:{config.rtp_port}: "
                           f"{exc}") from None
    link.set_deployed(config.audio != "hub")
    source, hears = await loop.run_in_executor(None, _input_source, config)
    try:
        backend = create_backend(config.audio, engine, device=config.device,
                                 in_channel=config.in_channel, out_channel=config.out_channel,
                                 client_name=f"anamnesis-{config.agent_id}", link=link,
                                 source=source, hub_fallback_s=config.hub_fallback_s,
                                 clock_ppm=config.clock_ppm)
    except BackendError as exc:
        link.close()
        store.close()
        raise StartupError(str(exc)) from None
    control = AgentControl(engine, agent_id=config.agent_id, store=store,
                           backend_stats=lambda: {**backend.stats(), **link.telemetry()})
    services = None
    tasks: list[asyncio.Task] = []
    started = False
    try:
        if not config.fresh:
            await _resume(control, store)
        engine.attach_loop(loop)
        # Everything heavy (imports, a full collection) happens before the audio
        # clock starts: each would hold the GIL long enough to make the callback late.
        from anamnesis.agents.net.services import start_control_services
        gc.collect()
        gc.freeze()
        try:
            backend.start()
        except BackendError as exc:
            raise StartupError(str(exc)) from None
        started = True
        log.info("agent %s: %s model on %s; hears %s", config.agent_id, config.model,
                 backend.describe(), hears)
        try:
            services = await start_control_services(
                control, interface=config.interface, osc_port=config.osc_port,
                http_port=config.http_port, installation=config.installation, key=key,
                announce=config.announce, rtp_port=link.port, link=link)
        except OSError as exc:
            raise StartupError(f"cannot open the control ports on {config.interface}: "
                               f"{exc}") from None
        gc.freeze()  # start-up objects never reach the collector again: shorter GC pauses
        print(f"agent {config.agent_id} ready osc={services.osc_port} http={services.http_port}",
              flush=True)
        tasks = [asyncio.create_task(_autosave_loop(control, config.autosave_s), name="autosave"),
                 asyncio.create_task(_monitor_loop(control, engine, config), name="monitor")]
        await stop.wait()
        log.info("agent %s: shutting down", config.agent_id)
    finally:
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if services is not None:
            try:
                await services.close()
            except Exception:
                log.exception("closing the control services failed")
        backend.stop()
        link.close()
        if started:
            try:
                await control.autosave()
                log.info("agent %s: state saved to %s", config.agent_id, config.state_dir)
            except Exception:
                log.exception("the final autosave failed")
        store.close()
        tele = control.telemetry()
        log.info("agent %s: stopped after %d blocks; xruns %d, audio errors %d, blow-ups %d",
                 config.agent_id, tele["blocks"], tele["xruns"], tele["errors"],
                 tele.get("blowups", 0.0))
        executor.shutdown(wait=True)
    return 0


async def _resume(control: Any, store: Any) -> None:
    """Apply the newest good autosave, or say why the agent starts fresh."""
    loop = asyncio.get_running_loop()
    snap = await loop.run_in_executor(None, store.load_autosave_sync)
    if snap is None:
        log.info("agent %s: no autosave to resume in %s; starting fresh", control.agent_id,
                 store.state_dir)
        return
    try:
        await control.apply_snapshot(snap, what="autosave")
    except ValueError as exc:
        log.error("agent %s: cannot resume the autosave (%s); starting fresh",
                  control.agent_id, exc)
        return
    age = max(0.0, time.time() - snap.created)
    log.info("agent %s: resumed the autosave of %s (%.0f s old, digest %s)", control.agent_id,
             time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(snap.created)), age,
             snap.digest()[:16])


async def _autosave_loop(control: Any, every_s: float) -> None:
    """Write the autosave every ``every_s`` seconds; a failure is logged, never fatal."""
    failures = 0
    while True:
        await asyncio.sleep(every_s)
        try:
            await control.autosave()
            failures = 0
        except Exception as exc:
            failures += 1
            if failures == 1 or failures % 20 == 0:
                log.error("autosave failed (%d in a row): %s: %s", failures,
                          type(exc).__name__, exc)


async def _monitor_loop(control: Any, engine: Any, config: AgentConfig) -> None:
    """Log new xruns (at most every 30 s) and a stalled audio clock."""
    last_xruns = 0.0
    last_blocks = -1.0
    last_log = -1e9
    stalled = False
    while True:
        await asyncio.sleep(MONITOR_S)
        tele = control.telemetry()
        now = time.monotonic()
        if tele["xruns"] > last_xruns and now - last_log >= 30.0:
            log.warning("agent %s: %d new xrun(s) (total %d); callback p99 %.2f ms of %.2f ms",
                        config.agent_id, tele["xruns"] - last_xruns, tele["xruns"],
                        tele["callback_p99_ms"], tele["block_period_ms"])
            last_xruns, last_log = tele["xruns"], now
        if tele["blocks"] == last_blocks and engine.clock_running:
            if not stalled:
                log.error("agent %s: no audio block for %.0f s: the audio clock is stalled",
                          config.agent_id, MONITOR_S)
                stalled = True
        elif stalled:
            log.info("agent %s: the audio clock runs again", config.agent_id)
            stalled = False
        last_blocks = tele["blocks"]


def main(argv: list[str] | None = None) -> int:
    """``python -m anamnesis.agents ...``: the same as ``anamnesis agent ...``."""
    parser = argparse.ArgumentParser(prog="anamnesis agent")
    add_agent_arguments(parser)
    return run_agent(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
