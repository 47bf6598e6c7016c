"""The agent process: ``anamnesis agent`` and ``anamnesis devices``.

``anamnesis agent --id a1 --model autoregnn [--preset P] [--model-arg hidden_size=10 ...]
[--audio sounddevice|null|hub] ...`` runs one model on one mic/speaker channel
(DESIGN "The agent process"); ``--channels 1-8`` runs one per channel of one stream
in the same process, each its own agent (id, state, OSC, OSCQuery, zeroconf). This
module reads and checks the options (:func:`check_args`, :func:`expand_channels`);
:mod:`anamnesis.agents.process` runs the agents: it builds each model (its kernels
compiled on a throwaway twin), locks its state directory, resumes its autosave unless
``--fresh``, opens its RTP port, starts the audio, then the control services; prints
``agent ID ready osc=PORT http=PORT`` per agent; autosaves every ``--autosave-s``
seconds; and on SIGINT/SIGTERM closes the services, stops the audio, writes the
autosaves and exits 0.

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
import ipaddress
import logging
import os
import socket
import sys
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from anamnesis.agents.models import EXTRA_KINDS, MODEL_KINDS
from anamnesis.agents.net.access import parse_networks
from anamnesis.agents.protocol.ids import ID_RE
from anamnesis.agents.recipe import parse_model_args

log = logging.getLogger("anamnesis.agents.main")
AUDIO_CHOICES = ("sounddevice", "null", "hub")
#: What an agent hears (``--input``, :mod:`anamnesis.agents.audio.inputs`).
INPUT_CHOICES = ("mic", "preset", "silence")
#: ``--model``: every kind of the registry (``anamnesis.agents.models``).
MODEL_CHOICES = (*MODEL_KINDS, *EXTRA_KINDS)
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
    parser.add_argument("--channels", metavar="LIST",
                        help="one agent per channel of one stream, in one process (an ALSA "
                             "device opens once): e.g. 1-8 or 1,3,5; each agent's id is --id "
                             "followed by the channel (a1 ... a8), it hears and plays that "
                             "channel; given ports are the first agent's, the others count up")
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
    parser.add_argument("--prefer-ports", action="store_true",
                        help="the ports given are wishes: one taken by another program is "
                             "replaced by a free one, said in the log (how a hub starts its "
                             "agents on the ports they had)")
    parser.add_argument("--hub", metavar="IP",
                        help="the hub's address: the only source of the `in` stream and of "
                             "the hub clock (default: the --interface address)")
    parser.add_argument("--allow", action="append", default=[], metavar="NET",
                        help="a host or network (10.0.0.0/24) whose controllers may steer "
                             "this agent over OSC and take its streams, besides the hub and "
                             "loopback (repeatable; everything else is dropped and counted)")
    parser.add_argument("--offer-mic", action="store_true",
                        help="let allowed hosts listen to the microphone stream (by "
                             "default only the hub may)")
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
    #: True when ``--state-dir`` was given (``--channels`` puts each agent in a subdir).
    state_dir_given: bool = False
    #: ``--prefer-ports``: a taken port is replaced by a free one instead of failing.
    prefer_ports: bool = False
    #: What the agent hears (``mic``, ``preset``, ``silence``; None with ``--audio hub``).
    input: str | None = "mic"
    #: ``--allow``: hosts and networks that may steer it besides the hub and loopback.
    allow: tuple[str, ...] = ()
    #: ``--offer-mic``: allowed hosts may take the microphone stream, not only the hub.
    offer_mic: bool = False


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


#: Most agents one process serves (``--channels``).
MAX_CHANNEL_AGENTS = 64


def parse_channels(text: str) -> list[int]:
    """``1-8``, ``1,3,5`` or ``1-2,7``: channel numbers from 1, each once, in order given;
    ``ValueError`` naming what is wrong."""
    channels: list[int] = []
    for part in text.split(","):
        lo, sep, hi = part.strip().partition("-")
        try:
            first, last = int(lo), int(hi) if sep else int(lo)
        except ValueError:
            raise ValueError(f"--channels takes channel numbers like 1-8 or 1,3,5; "
                             f"got {text!r}") from None
        if not 1 <= first <= last <= 256:
            raise ValueError(f"--channels: {part.strip()!r} is not a range of channels "
                             "from 1 to 256")
        channels += range(first, last + 1)
    if len(set(channels)) != len(channels):
        raise ValueError(f"--channels names a channel twice: {text!r}")
    if len(channels) > MAX_CHANNEL_AGENTS:
        raise ValueError(f"--channels: at most {MAX_CHANNEL_AGENTS} agents in one process")
    return channels


def expand_channels(config: AgentConfig, text: str) -> list[AgentConfig]:
    """One config per channel of ``--channels`` (see its help): id + channel, that input
    and output channel, ports counting up from those given (0 stays 0: free ones), state
    directories ``--state-dir``/ID (given) or each id's default."""
    out = []
    for k, channel in enumerate(parse_channels(text)):
        agent_id = f"{config.agent_id}{channel}"
        out.append(replace(
            config, agent_id=agent_id, in_channel=channel, out_channel=channel,
            osc_port=config.osc_port + k if config.osc_port else 0,
            http_port=config.http_port + k if config.http_port else 0,
            rtp_port=config.rtp_port + k if config.rtp_port else 0,
            state_dir=(config.state_dir / agent_id if config.state_dir_given
                       else default_state_dir(agent_id)),
            seed=config.seed + k))
    return out


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
    channels = getattr(args, "channels", None)
    if channels is not None:
        try:
            parse_channels(channels)
        except ValueError as exc:
            problems.append(str(exc))
        if args.audio == "hub":
            problems.append("--channels is for a sound card or the null clock; with --audio "
                            "hub the hub clocks each agent on its own")
        if not ID_RE.match(f"{args.id or ''}1"):
            problems.append(f"--id {args.id!r} followed by a channel number is not an agent id")
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
    try:
        parse_networks(getattr(args, "allow", []) or [])
    except ValueError as exc:
        problems.append(str(exc))
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
        clock_ppm=args.clock_ppm, input=hears, state_dir_given=args.state_dir is not None,
        prefer_ports=getattr(args, "prefer_ports", False),
        allow=tuple(getattr(args, "allow", []) or ()), offer_mic=getattr(args, "offer_mic", False))


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
    os.umask(0o077)   # autosaves, snapshots and logs: the owner's alone
    try:
        config = check_args(args)
    except ValueError as exc:
        print(f"anamnesis agent: error: {exc}", file=sys.stderr)
        return 2
    from anamnesis.agents.process import StartupError, serve

    channels = getattr(args, "channels", None)
    configs = [config] if channels is None else expand_channels(config, channels)
    try:
        return asyncio.run(serve(configs))
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


def main(argv: list[str] | None = None) -> int:
    """``python -m anamnesis.agents ...``: the same as ``anamnesis agent ...``."""
    parser = argparse.ArgumentParser(prog="anamnesis agent")
    add_agent_arguments(parser)
    return run_agent(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
