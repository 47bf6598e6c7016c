"""Audio backends: what clocks an agent's :class:`~anamnesis.agents.dsp.engine.AgentEngine`.

One backend is chosen at start (``--audio``):

* ``null`` — :class:`NullBackend`, a software clock at the block rate in one
  named thread (headless runs, tests, benchmarks). Its mic hears silence unless
  a ``source`` fills it; its speaker output is kept in ``last_output``.
* ``sounddevice`` — :class:`SoundDeviceBackend`, a real interface through
  PortAudio: one input and one output channel of one device. PortAudio is
  imported lazily, so the other backends work on machines without it.

The null clock and a sound card may also serve several agents, each a :class:`Lane`
with its own channels, from one thread or one stream (``--channels 1-8``: one
process, one open of an 8-channel interface, eight agents):
:func:`create_shared_backend`.
* ``hub`` — the hub-clocked mode (the hub sends the simulated mic block and
  awaits the output block) over the agent's RTP link:
  :class:`anamnesis.agents.audio.hubclock.HubClockBackend`.

With an :class:`anamnesis.agents.net.link.AgentLink` (``link=``), the null and sounddevice
backends run in the deployed mode: the model hears the mic plus the ``in``
stream from the hub (jitter-buffered, drift absorbed), and ``out`` / ``mic`` /
``in`` are tapped for listen-in copies (``GET /streams/NAME.sdp?port=P``).

Threads: the null clock's thread is created here, named
``anamnesis-null-clock``, and joined by :meth:`NullBackend.stop`. PortAudio's
callback thread belongs to PortAudio; :meth:`SoundDeviceBackend.stop` returns
after PortAudio has stopped calling it.
"""

from __future__ import annotations

import ctypes
import logging
import threading
import time
from collections.abc import Callable
from typing import Any, Protocol

import numpy as np

from anamnesis.agents.dsp.engine import AgentEngine
from anamnesis.agents.net.link import AgentLink

log = logging.getLogger(__name__)

AUDIO_BACKENDS = ("sounddevice", "null", "hub")

PORTAUDIO_MISSING = ("PortAudio library not found: install the Debian package libportaudio2 "
                     "(sudo apt-get install libportaudio2), or run with --audio null")

#: The null clock resynchronises (and counts a late block) when it falls this
#: many block periods behind (a suspended machine, a stopped debugger).
NULL_MAX_LATE_BLOCKS = 4
#: Largest offset of the null clock's rate (``--clock-ppm``), parts per million.
MAX_CLOCK_PPM = 1000.0


class BackendError(RuntimeError):
    """An audio backend cannot start; the message is one line for the user."""


class AudioBackend(Protocol):
    """What the agent process needs from a backend."""

    name: str

    def start(self) -> None: ...
    def stop(self) -> None: ...
    def stats(self) -> dict[str, float]: ...
    def describe(self) -> str: ...


class Lane:
    """One agent on a clock that may serve several (``--channels``): its engine, its RTP
    link (the deployed mode), what it hears instead of its input channel (``source``),
    and its input and output channels (1-based) of a multichannel stream.

    :meth:`run` is the audio thread's whole job for one agent and one block: allocation-
    free, and it never raises (a failing ``source`` gives silence, counted)."""

    def __init__(self, engine: AgentEngine, *, link: AgentLink | None = None,
                 source: Callable[[np.ndarray], None] | None = None,
                 in_channel: int = 1, out_channel: int = 1) -> None:
        for label, ch in (("input channel", in_channel), ("output channel", out_channel)):
            if not isinstance(ch, int) or not 1 <= ch <= 256:
                raise BackendError(f"the {label} must be a number from 1; got {ch!r}")
        self.engine = engine
        self.link = link
        self.source = source
        self.in_idx = in_channel - 1
        self.out_idx = out_channel - 1
        self._own_in = np.zeros(engine.block)
        self.source_errors = 0

    def run(self, mic: np.ndarray, speaker: np.ndarray, frames: int) -> None:
        """Process ``frames`` samples: ``mic`` heard (unless ``source``), ``speaker`` filled."""
        if self.source is not None and frames <= self._own_in.shape[0]:
            mic = self._own_in if frames == self._own_in.shape[0] else self._own_in[:frames]
            try:
                self.source(mic)
            except Exception:  # a broken source gives silence, counted
                mic.fill(0.0)
                self.source_errors += 1
        link = self.link
        if link is None:
            self.engine.process_block(mic, speaker)
        else:
            self.engine.process_block(link.before_block(mic, frames), speaker)
            link.after_block(speaker, frames)


def _check_lanes(lanes: list[Lane]) -> None:
    if not lanes:
        raise BackendError("a clock needs at least one agent")
    first = lanes[0].engine
    for lane in lanes[1:]:
        if (lane.engine.block, lane.engine.sample_rate) != (first.block, first.sample_rate):
            raise BackendError("the agents on one clock must share its block and sample rate")
    outs = [lane.out_idx for lane in lanes]
    if len(set(outs)) != len(outs):
        raise BackendError("two agents on one clock cannot play on the same output channel")


class NullBackend:
    """A software clock: calls ``engine.process_block`` every ``block / sample_rate`` s.

    Deadlines are ``t0 + k * period`` on the monotonic clock, computed in
    integer nanoseconds from the block count (no accumulated drift); the thread
    sleeps on an event between blocks (never a busy loop) and wakes at once on
    :meth:`stop`. ``source(mic)``, if given, fills the mic buffer (frames,)
    before each block, on the clock thread. ``ppm`` makes the clock run that many
    parts per million fast (+) or slow (−) against the monotonic clock, as a sound
    card's crystal does: a deployed installation's drift rehearsed on one machine.
    ``lanes`` (instead of ``engine``, ``source`` and ``link``) clocks several agents
    block by block, in order (``--channels``).
    """

    name = "null"

    def __init__(self, engine: AgentEngine | None = None, *,
                 source: Callable[[np.ndarray], None] | None = None,
                 link: AgentLink | None = None, ppm: float = 0.0,
                 lanes: list[Lane] | None = None) -> None:
        if not -MAX_CLOCK_PPM <= ppm <= MAX_CLOCK_PPM:
            raise BackendError(f"the clock's ppm must be in [-{MAX_CLOCK_PPM:g}, "
                               f"{MAX_CLOCK_PPM:g}]; got {ppm!r}")
        if lanes is None:
            if engine is None:
                raise BackendError("the null clock needs an engine or lanes")
            lanes = [Lane(engine, link=link, source=source)]
        elif engine is not None:
            raise BackendError("give the null clock an engine or lanes, not both")
        _check_lanes(lanes)
        self.lanes = list(lanes)
        self._engine = self.lanes[0].engine
        self.ppm = float(ppm)
        self._mic = np.zeros(self._engine.block)       # the null clock's mic hears silence
        self._speakers = [np.zeros(self._engine.block, dtype=np.float32) for _ in self.lanes]
        #: The speaker signal of the first agent's latest block (float32, like a sound
        #: card's buffer).
        self.last_output = self._speakers[0]
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.late_blocks = 0
        #: Time given up when the clock resynchronised (ns): the stream is that much short.
        self.lost_ns = 0
        self.blocks = 0

    @property
    def source_errors(self) -> int:
        """Blocks a failing source left silent (every agent's)."""
        return sum(lane.source_errors for lane in self.lanes)

    def describe(self) -> str:
        e = self._engine
        off = f", {self.ppm:+g} ppm" if self.ppm else ""
        agents = f", {len(self.lanes)} agents" if len(self.lanes) > 1 else ""
        return f"null clock, {e.block} frames at {e.sample_rate} Hz{off}{agents}"

    def start(self) -> None:
        """Start the clock thread (once)."""
        if self._thread is not None:
            raise BackendError("the null clock is already started")
        for lane in self.lanes:
            lane.engine.clock_running = True
        self._thread = threading.Thread(target=self._run, name="anamnesis-null-clock",
                                        daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop the clock and join its thread (idempotent)."""
        self._stop.set()
        thread = self._thread
        if thread is not None:
            thread.join(timeout=5.0)
            if thread.is_alive():
                log.error("the null clock thread did not stop within 5 s")
                return
        for lane in self.lanes:
            lane.engine.clock_running = False

    def _run(self) -> None:
        engine = self._engine
        # period = step_ns / rate, rate = sample_rate * (1 + ppm / 1e6) in parts per 1e9
        step_ns = engine.block * 1_000_000_000 * 1_000_000_000
        sr = engine.sample_rate * (1_000_000_000 + round(self.ppm * 1000))
        max_late = NULL_MAX_LATE_BLOCKS * step_ns // sr
        t0 = time.monotonic_ns()
        k = 0
        block = engine.block
        lanes = list(zip(self.lanes, self._speakers, strict=True))
        while not self._stop.is_set():
            for lane, speaker in lanes:
                lane.run(self._mic, speaker, block)
            self.blocks += 1
            k += 1
            deadline = t0 + k * step_ns // sr
            now = time.monotonic_ns()
            if now - deadline > max_late:
                self.late_blocks += 1
                self.lost_ns += now - deadline
                t0, k = now, 0
                continue
            if deadline > now:
                self._stop.wait((deadline - now) / 1e9)

    def stats(self) -> dict[str, float]:
        """``xruns``: times the clock fell behind and resynchronised; ``clock_lost_ms``
        the time it gave up doing so (a busy machine's software clock runs that much slow)."""
        return {"xruns": float(self.late_blocks), "backend_blocks": float(self.blocks),
                "clock_lost_ms": self.lost_ns / 1e6}


def import_sounddevice() -> Any:
    """Import ``sounddevice`` (and so PortAudio); :class:`BackendError` with one clear
    line when the Python package or the PortAudio library is missing."""
    try:
        import sounddevice
    except ModuleNotFoundError:
        raise BackendError("the Python package sounddevice is not installed "
                           "(pip install sounddevice), or run with --audio null") from None
    except OSError:
        raise BackendError(PORTAUDIO_MISSING) from None
    return sounddevice


def close_stream(stream: Any) -> None:
    """Stop a PortAudio stream, then close it even if stopping failed; returns after its
    last callback. ``None`` (no stream) is nothing to close."""
    if stream is None:
        return
    try:
        stream.stop()
    finally:
        stream.close()


def set_jack_client_name(sd: Any, name: bytes) -> bool:
    """Name our JACK client (shown by patchbays) before PortAudio connects to JACK.

    ``PaJack_SetClientName`` must precede ``Pa_Initialize``, which sounddevice
    calls on import, so PortAudio is re-initialised (nothing is open yet). Best
    effort: False if this PortAudio has no JACK support.
    """
    try:
        lib = ctypes.CDLL(sd._libname)
        setter = lib.PaJack_SetClientName
    except (OSError, AttributeError):
        return False
    setter.argtypes = [ctypes.c_char_p]
    sd._terminate()
    setter(name)  # PortAudio keeps the pointer: the caller keeps ``name`` alive
    sd._initialize()
    return True


class SoundDeviceBackend:
    """A real interface through PortAudio: input channel ``in_channel`` and output
    channel ``out_channel`` (1-based) of ``device`` (index or name; None: default).

    The stream asks PortAudio for its "high" (safe) latency: an installation
    values glitch-free sound over a few milliseconds. Status flags of the
    callback (input overflow/underflow, output underflow/overflow) count as
    xruns. On JACK the client is named ``client_name``. ``source(block)``, if given,
    fills the model's input instead of the input channel (``--input preset|silence``,
    :mod:`anamnesis.agents.audio.inputs`), on PortAudio's thread. ``lanes`` (instead of
    ``engine``, the channels, ``link`` and ``source``) serves several agents from one
    stream of the one device, each on its own channels (``--channels``: an ALSA
    hardware device opens once).
    """

    name = "sounddevice"

    def __init__(self, engine: AgentEngine | None = None, *, device: int | str | None = None,
                 in_channel: int = 1, out_channel: int = 1,
                 client_name: str = "anamnesis", link: AgentLink | None = None,
                 source: Callable[[np.ndarray], None] | None = None,
                 lanes: list[Lane] | None = None) -> None:
        if lanes is None:
            if engine is None:
                raise BackendError("the sound card needs an engine or lanes")
            for label, ch in (("--in-channel", in_channel), ("--out-channel", out_channel)):
                if not isinstance(ch, int) or not 1 <= ch <= 256:
                    raise BackendError(f"{label} must be a channel number from 1; got {ch!r}")
            lanes = [Lane(engine, link=link, source=source, in_channel=in_channel,
                          out_channel=out_channel)]
        elif engine is not None:
            raise BackendError("give the sound card an engine or lanes, not both")
        _check_lanes(lanes)
        self.lanes = list(lanes)
        self._engine = self.lanes[0].engine
        self._device = device
        self._in_idx = max(lane.in_idx for lane in self.lanes)    # the highest channels used
        self._out_idx = max(lane.out_idx for lane in self.lanes)
        self._client_name = client_name.encode("utf-8", "replace")[:60]
        self._stream: Any = None
        self.xruns = 0
        self.flags = {"input_underflow": 0, "input_overflow": 0, "output_underflow": 0,
                      "output_overflow": 0}
        self.callback_errors = 0
        self._description = "sounddevice (not started)"

    def describe(self) -> str:
        return self._description

    def _resolve(self, sd: Any) -> tuple[int, int]:
        """Device indices for input and output, checked against the channel numbers."""
        try:
            in_info = sd.query_devices(self._device, "input")
            out_info = sd.query_devices(self._device, "output")
        except (ValueError, sd.PortAudioError) as exc:
            if self._device is None:      # PortAudio says "Error querying device -1"
                raise BackendError(
                    "no sound card found: PortAudio has no default input and output device. "
                    "Run with --audio null (a software clock), --audio hub (the hub's clock), "
                    "or choose one with --device (`anamnesis devices` lists them)") from None
            raise BackendError(f"audio device {self._device!r}: {exc} "
                               "(see `anamnesis devices`)") from None
        if in_info["max_input_channels"] <= self._in_idx:
            raise BackendError(f"input channel {self._in_idx + 1} does not exist: "
                               f"{in_info['name']!r} has {in_info['max_input_channels']} "
                               "input channels")
        if out_info["max_output_channels"] <= self._out_idx:
            raise BackendError(f"output channel {self._out_idx + 1} does not exist: "
                               f"{out_info['name']!r} has {out_info['max_output_channels']} "
                               "output channels")
        return int(in_info["index"]), int(out_info["index"])

    def start(self) -> None:
        """Open and start the stream; :class:`BackendError` with one line if impossible."""
        sd = import_sounddevice()
        if any("JACK" in api["name"] for api in sd.query_hostapis()):
            set_jack_client_name(sd, self._client_name)
        dev_in, dev_out = self._resolve(sd)
        engine = self._engine
        try:
            stream = sd.Stream(
                samplerate=engine.sample_rate, blocksize=engine.block,
                device=(dev_in, dev_out), channels=(self._in_idx + 1, self._out_idx + 1),
                dtype="float32", latency="high", callback=self._callback)
        except (sd.PortAudioError, ValueError) as exc:
            raise BackendError(f"cannot open the audio device at {engine.sample_rate} Hz, "
                               f"{engine.block} frames: {exc}") from None
        for lane in self.lanes:
            lane.engine.clock_running = True
        try:
            stream.start()
        except sd.PortAudioError as exc:
            for lane in self.lanes:
                lane.engine.clock_running = False
            stream.close()
            raise BackendError(f"cannot start the audio stream: {exc}") from None
        self._stream = stream
        lat_in, lat_out = stream.latency
        names = (sd.query_devices(dev_in)["name"], sd.query_devices(dev_out)["name"])
        ins = ",".join(str(lane.in_idx + 1) for lane in self.lanes)
        outs = ",".join(str(lane.out_idx + 1) for lane in self.lanes)
        self._description = (f"sounddevice in {names[0]!r} ch {ins}, out "
                             f"{names[1]!r} ch {outs}, {engine.block} frames at "
                             f"{engine.sample_rate} Hz, latency in {lat_in * 1e3:.1f} ms / out "
                             f"{lat_out * 1e3:.1f} ms")

    def _callback(self, indata: np.ndarray, outdata: np.ndarray, frames: int,
                  time_info: Any, status: Any) -> None:
        # PortAudio's thread. The engine never raises; the guard around it keeps a
        # bug in this adapter from aborting the stream.
        try:
            if status:
                self._count(status)
            if outdata.shape[1] > len(self.lanes):
                outdata.fill(0.0)           # channels no agent plays on stay silent
            for lane in self.lanes:
                lane.run(indata[:, lane.in_idx], outdata[:, lane.out_idx], frames)
        except Exception:
            outdata.fill(0.0)
            self.callback_errors += 1

    def _count(self, status: Any) -> None:
        hit = False
        for flag in self.flags:
            if getattr(status, flag):
                self.flags[flag] += 1
                hit = True
        if hit:
            self.xruns += 1

    def stop(self) -> None:
        """Stop and close the stream; returns after the last callback (idempotent)."""
        stream, self._stream = self._stream, None
        close_stream(stream)
        for lane in self.lanes:
            lane.engine.clock_running = False

    def stats(self) -> dict[str, float]:
        """``xruns`` (callbacks with an over/underflow flag), per-flag counts, and
        callback errors of this adapter."""
        out = {"xruns": float(self.xruns), "callback_errors": float(self.callback_errors)}
        out.update({k: float(v) for k, v in self.flags.items()})
        return out


def create_shared_backend(kind: str, lanes: list[Lane], *, device: int | str | None = None,
                          client_name: str = "anamnesis", clock_ppm: float = 0.0) -> AudioBackend:
    """One clock for several agents (``--channels``): ``null`` or ``sounddevice``."""
    if kind == "null":
        return NullBackend(lanes=lanes, ppm=clock_ppm)
    if kind == "sounddevice":
        return SoundDeviceBackend(device=device, client_name=client_name, lanes=lanes)
    raise BackendError(f"--channels needs --audio sounddevice or null (the hub clocks each "
                       f"agent of --audio {kind} on its own)")


def create_backend(kind: str, engine: AgentEngine, *, device: int | str | None = None,
                   in_channel: int = 1, out_channel: int = 1,
                   client_name: str = "anamnesis", link: AgentLink | None = None,
                   source: Callable[[np.ndarray], None] | None = None,
                   hub_fallback_s: float = 0.5, clock_ppm: float = 0.0) -> AudioBackend:
    """The backend called ``kind`` (see :data:`AUDIO_BACKENDS`) for ``engine``; not started.
    ``link`` (the agent's open RTP link) is required by ``hub``; with the others it
    enables the deployed mode (``in`` mixed into the mic, streams tapped). ``source``
    fills the model's input in place of the mic (null and sounddevice; the hub sends
    its own). ``hub_fallback_s``: see :class:`HubClockBackend` (``hub`` only, s);
    ``clock_ppm``: see :class:`NullBackend` (``null`` only)."""
    if kind == "null":
        return NullBackend(engine, link=link, source=source, ppm=clock_ppm)
    if kind == "sounddevice":
        return SoundDeviceBackend(engine, device=device, in_channel=in_channel,
                                  out_channel=out_channel, client_name=client_name, link=link,
                                  source=source)
    if kind == "hub":
        if link is None:
            raise BackendError("--audio hub needs the agent's RTP link: the hub sends each "
                               "input block to the agent's RTP port and awaits its output")
        from anamnesis.agents.audio.hubclock import HubClockBackend
        return HubClockBackend(engine, link, fallback_s=hub_fallback_s)
    raise BackendError(f"unknown audio backend {kind!r}; choose one of "
                       f"{', '.join(AUDIO_BACKENDS)}")


def parse_device(text: str | None) -> int | str | None:
    """``--device`` as PortAudio wants it: an index if it is a number, else a name
    (a substring of the device name, as sounddevice matches it)."""
    if text is None or text == "":
        return None
    return int(text) if text.strip().isdigit() else text


def list_devices() -> list[dict[str, object]]:
    """Every PortAudio device: index, name, host API, input/output channels, default
    sample rate (Hz), and whether it is the default input/output. Raises
    :class:`BackendError` when PortAudio is missing."""
    sd = import_sounddevice()
    apis = sd.query_hostapis()
    default_in, default_out = sd.default.device
    out = []
    for info in sd.query_devices():
        out.append({
            "index": int(info["index"]), "name": str(info["name"]),
            "hostapi": str(apis[info["hostapi"]]["name"]),
            "inputs": int(info["max_input_channels"]),
            "outputs": int(info["max_output_channels"]),
            "sample_rate": float(info["default_samplerate"]),
            "default_input": int(info["index"]) == default_in,
            "default_output": int(info["index"]) == default_out,
        })
    return out


def format_devices(devices: list[dict[str, object]]) -> str:
    """A table of :func:`list_devices` for the terminal."""
    if not devices:
        return "no audio devices found"
    lines = []
    for d in devices:
        mark = ("<" if d["default_input"] else " ") + (">" if d["default_output"] else " ")
        lines.append(f"{mark} {d['index']:3d}  {d['name']}  ({d['hostapi']}; "
                     f"{d['inputs']} in, {d['outputs']} out; {d['sample_rate']:g} Hz)")
    lines.append("< default input, > default output; use --device INDEX or a part of the name")
    return "\n".join(lines)
