"""The installation config as frozen data: one TOML file, checked once at the edge (STYLE 11).

A checked config is a frozen :class:`Config` of :class:`Installation`, an optional
:class:`Room`, :class:`AgentSpec` (``[[agent]]``), :class:`Route`, :class:`Ring` and
:class:`Source` (with its :class:`Envelope`); a config that fails its checks raises
one :class:`ConfigError` listing every :class:`ConfigProblem`. Reading and checking
(``load_config``, ``parse_config``, ``check_config_data``) live in
:mod:`anamnesis.hub.installation.check`, the TOML writer and the line finder in
:mod:`anamnesis.hub.installation.toml`.

Tables and keys (units in the key names or below)::

    [installation]   name ("anamnesis"), sample_rate (Hz, 48000), block (frames,
                     64-1024, 256), key_file (path of the installation key,
                     relative to the config file; the key itself never appears in a
                     config and is never printed), mode ("simulated" | "deployed"),
                     description (what to listen for: a few sentences, at most
                     1000 characters, shown by the dashboard and ``anamnesis demo``),
                     allow (addresses or networks, besides the hub and loopback,
                     that may steer the agents the hub spawns: each gets
                     ``--allow NET``; e.g. ["10.0.0.0/24"] for a controller on the LAN)
    [room]           optional: size [x, y, z] (m), rt60 (s) *or* absorption (0-1;
                     neither: rt60 0.5 s), max_order (image-source order cap,
                     default: the room model's choice), listener [x, y, z] (m,
                     default: the centre at 1.6 m), listener_azimuth (degrees,
                     counter-clockwise from +y, the way the listener faces),
                     mic_noise_db (self-noise of every simulated mic, dBFS RMS, -90)
    [[agent]]        id, model, preset (at least one of the two; the preset's
                     model and parameters are the starting point), params (a table:
                     model constructor arguments such as hidden_size, and
                     parameters such as lr — both checked against the model — and
                     the agent's own gain (dB, before its limiter) and mute),
                     speaker [x, y, z], mic [x, y, z] (m; required when there is a
                     room), channel (1-based audio-interface channel, deployed),
                     host (where the agent runs, deployed), spawn (true: the hub
                     starts it as a local process), seed (default: its index)
    [[route]]        from, to (agent ids), gain (linear, default 1), delay_ms (total
                     delay from the sender's output to the receiver's input; see
                     ``anamnesis.hub.engine.graph`` for the one-block minimum in lockstep),
                     lowpass_hz, highpass_hz (one-pole, omitted = off),
                     shape ("none" | "tanh")
    [[ring]]         agents (>= 2 ids: a -> b -> ... -> a), name (default ringN),
                     gain, delay_ms, lowpass_hz, highpass_hz, shape as a route
    [[source]]       kind ("noise", "sine", "file", or any other generator of
                     ``agents.signals``: saw, pulse, fm_sine, sines, silence),
                     args (the generator's arguments, e.g. amp, freq, seed; for
                     "file": path, loop, channel), envelope ({start, attack, hold,
                     release, every} or {start, fade, every}, seconds), gain
                     (linear), targets (agent ids), name (default sourceN)
    [[coupling]]     from, to (agent ids whose weight vectors have one shape), mode
                     ("blend" | "exchange" | "mean"), kappa (0-1, 0.05), rate_hz (how
                     often, 1-100 Hz, 20), gain (linear, of what is carried, 1),
                     noise (standard deviation of Gaussian noise added to what is
                     carried, weight units, 0), mask (indices into the flat weight
                     vector of the weights carried; omitted = all); see
                     ``anamnesis.hub.engine.weight_couplings``

``Config.to_dict()`` gives the same structure as plain data (JSON-ready) and
``Config.to_toml()`` writes it back as TOML, so a config edited through the API
is persisted and reloaded unchanged: ``parse_config(c.to_toml()) == c``
(:func:`anamnesis.hub.installation.check.parse_config`).
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

from anamnesis.agents.recipe import RESERVED_MODEL_ARGS
from anamnesis.hub.installation.edges import Edge
from anamnesis.hub.installation.toml import dump_toml

Vec3 = tuple[float, float, float]

MODES = ("simulated", "deployed")
FILE_KIND = "file"
#: Longest sound file a source may load (s): it is held in memory.
MAX_FILE_SECONDS = 600.0
#: Sabine's constant 24 ln(10) / c (s/m) with c = 343 m/s.
SABINE = 24.0 * math.log(10.0) / 343.0

# Keys each table accepts (for "unknown key" and "did you mean").
INSTALLATION_KEYS = ("name", "sample_rate", "block", "key_file", "mode", "description",
                     "allow")
#: Longest description of a piece (characters).
MAX_DESCRIPTION = 1000
ROOM_KEYS = ("size", "rt60", "absorption", "max_order", "listener", "listener_azimuth",
             "mic_noise_db")
AGENT_KEYS = ("id", "model", "preset", "params", "speaker", "mic", "channel", "host",
              "spawn", "seed")
EDGE_KEYS = ("gain", "delay_ms", "lowpass_hz", "highpass_hz", "shape")
ROUTE_KEYS = ("from", "to", *EDGE_KEYS)
RING_KEYS = ("agents", "name", *EDGE_KEYS)
SOURCE_KEYS = ("kind", "args", "envelope", "gain", "targets", "name")
COUPLING_KEYS = ("from", "to", "mode", "kappa", "rate_hz", "gain", "noise", "mask")
COUPLING_MODES = ("blend", "exchange", "mean")
ENVELOPE_KEYS = ("start", "attack", "hold", "release", "fade", "every")
FILE_ARGS = ("path", "loop", "channel")
TOP_KEYS = ("installation", "room", "agent", "route", "ring", "source", "coupling")


# ---------------------------------------------------------------------------
# Errors
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class ConfigProblem:
    """One problem: where (``file:line``, a readable path) and what."""

    source: str
    line: int | None
    where: str
    message: str

    def __str__(self) -> str:
        loc = f"{self.source}:{self.line}" if self.line else self.source
        return f"{loc}: {self.where}: {self.message}" if self.where else f"{loc}: {self.message}"


class ConfigError(ValueError):
    """Every problem of a config at once (``problems``), one per line of the message."""

    def __init__(self, problems: Sequence[ConfigProblem]) -> None:
        self.problems = tuple(problems)
        source = self.problems[0].source if self.problems else "config"
        count = len(self.problems)
        head = f"{source}: {count} problem{'s' if count != 1 else ''} in the installation config"
        super().__init__("\n  ".join([head, *map(str, self.problems)]))


# ---------------------------------------------------------------------------
# The frozen config
# ---------------------------------------------------------------------------


def _frozen(mapping: Mapping[str, Any] | None) -> Mapping[str, Any]:
    return MappingProxyType({k: _freeze(v) for k, v in (mapping or {}).items()})


def _freeze(value: Any) -> Any:
    if isinstance(value, Mapping):
        return _frozen(value)
    if isinstance(value, (list, tuple)):
        return tuple(_freeze(v) for v in value)
    return value


def _thaw(value: Any) -> Any:
    """Plain JSON-ready data from frozen values (tuples -> lists, mappings -> dicts)."""
    if isinstance(value, Mapping):
        return {k: _thaw(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_thaw(v) for v in value]
    return value


@dataclass(frozen=True)
class Installation:
    """``[installation]``: name, sample rate (Hz), block (frames), key file, mode, and
    a description of the piece (what to listen for), and the controller networks
    (``allow``) its spawned agents take OSC from besides the hub and loopback."""

    name: str = "anamnesis"
    sample_rate: int = 48000
    block: int = 256
    key_file: str | None = None
    mode: str = "simulated"
    description: str | None = None
    allow: tuple[str, ...] = ()


@dataclass(frozen=True)
class Room:
    """``[room]``: a shoebox of ``size`` m with an RT60 (s) or a wall absorption (0-1).

    ``max_order`` caps the image-source order (None: the room model decides);
    ``listener`` is the listening position (m), facing ``listener_azimuth``
    degrees counter-clockwise from +y; ``mic_noise_db`` is every simulated mic's
    self-noise (dBFS RMS).
    """

    size: Vec3
    rt60: float | None = 0.5
    absorption: float | None = None
    max_order: int | None = None
    listener: Vec3 = (0.0, 0.0, 0.0)
    listener_azimuth: float = 0.0
    mic_noise_db: float = -90.0

    def contains(self, point: Sequence[float]) -> bool:
        """True if ``point`` (m) is strictly inside the room."""
        return all(0.0 < p < s for p, s in zip(point, self.size, strict=False))


@dataclass(frozen=True)
class AgentSpec:
    """One ``[[agent]]``: what to build, where it stands, how to reach it.

    ``params`` is the config's table as written (constructor arguments and
    parameters mixed); :meth:`model_args` and :meth:`initial_params` split it
    and merge it over the preset's.
    """

    id: str
    model: str
    preset: str | None = None
    params: Mapping[str, Any] = field(default_factory=dict)
    speaker: Vec3 | None = None
    mic: Vec3 | None = None
    channel: int | None = None
    host: str | None = None
    spawn: bool = False
    seed: int = 0

    def __post_init__(self) -> None:
        object.__setattr__(self, "params", _frozen(self.params))

    def _split(self) -> tuple[dict[str, Any], dict[str, Any]]:
        names = constructor_args(self.model)
        args = {k: _thaw(v) for k, v in self.params.items() if k in names}
        params = {k: _thaw(v) for k, v in self.params.items() if k not in names}
        return args, params

    def model_args(self) -> dict[str, Any]:
        """Constructor arguments: the preset's, overridden by ``params`` (seed, rate and block excluded)."""
        base: dict[str, Any] = {}
        if self.preset is not None:
            from anamnesis.agents.presets import get_preset
            base.update(get_preset(self.preset).model_args)
        base.update(self._split()[0])
        return base

    def initial_params(self) -> dict[str, Any]:
        """Starting parameter values: the preset's, overridden by ``params``."""
        base: dict[str, Any] = {}
        if self.preset is not None:
            from anamnesis.agents.presets import get_preset
            base.update(get_preset(self.preset).params)
        base.update(self._split()[1])
        return base

    def create_model(self, sample_rate: int, max_block: int) -> Any:
        """Build this agent's model in-process (tests), the model's parameters applied
        (``gain`` and ``mute`` belong to the agent's safety chain, not its model)."""
        from anamnesis.agents.models import create_model

        model = create_model(self.model, seed=self.seed, sample_rate=sample_rate,
                             max_block=max_block, **self.model_args())
        for name, value in self.initial_params().items():
            if name not in ("gain", "mute"):
                model.set_param(name, value)
        return model


#: One ``[[route]]``: the installation's one edge shape (:class:`~.edges.Edge`: source,
#: target, gain, delay_ms, lowpass_hz, highpass_hz, shape; its ``id`` is ``"a->b"``).
Route = Edge


@dataclass(frozen=True)
class Ring:
    """One ``[[ring]]``: edges a -> b -> ... -> a with common parameters (see :class:`Route`)."""

    agents: tuple[str, ...]
    name: str
    gain: float = 1.0
    delay_ms: float = 0.0
    lowpass_hz: float | None = None
    highpass_hz: float | None = None
    shape: str = "none"

    def pairs(self) -> tuple[tuple[str, str], ...]:
        """The (from, to) pairs of the ring, closing back to the first agent."""
        n = len(self.agents)
        return tuple((self.agents[i], self.agents[(i + 1) % n]) for i in range(n))


@dataclass(frozen=True)
class Envelope:
    """A source's amplitude envelope (seconds): silent until ``start``, a linear
    ``attack`` to 1, ``hold`` (None = forever), a linear ``release`` to 0; with
    ``every`` it starts again every that many seconds after ``start``.
    ``{fade = 2}`` in TOML is attack 0, hold 0, release 2 (SuperCollider's
    ``Line.kr(1, 0, 2)``)."""

    start: float = 0.0
    attack: float = 0.0
    hold: float | None = None
    release: float = 0.0
    every: float | None = None

    def length(self) -> float:
        """Seconds from a (re)start to the end of the release (inf with hold None)."""
        return math.inf if self.hold is None else self.attack + self.hold + self.release


@dataclass(frozen=True)
class Source:
    """One ``[[source]]``: a generator ``kind`` with ``args``, shaped by ``envelope``,
    scaled by ``gain`` (linear), added to the inputs of ``targets``."""

    kind: str
    name: str
    targets: tuple[str, ...]
    args: Mapping[str, Any] = field(default_factory=dict)
    envelope: Envelope = field(default_factory=Envelope)
    gain: float = 1.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "args", _frozen(self.args))


@dataclass(frozen=True)
class Coupling:
    """One ``[[coupling]]``: agent ``source``'s learned weights carried into ``target``'s
    (``mode``, strength ``kappa``, ``rate_hz`` times a second, what is carried scaled by
    ``gain``, with Gaussian ``noise`` added, restricted to the indices ``mask``; None:
    every weight). Its id is ``"a~>b"``. The maths: :mod:`anamnesis.hub.engine.weight_couplings`."""

    source: str
    target: str
    mode: str = "blend"
    kappa: float = 0.05
    rate_hz: float = 20.0
    gain: float = 1.0
    noise: float = 0.0
    mask: tuple[int, ...] | None = None

    @property
    def id(self) -> str:
        """``"from~>to"``: a coupling's name in the API, the store and the event log."""
        return coupling_id(self.source, self.target)


def coupling_id(source: str, target: str) -> str:
    """The id of the coupling from ``source`` to ``target``."""
    return f"{source}~>{target}"


@dataclass(frozen=True)
class Config:
    """A checked installation config. ``source_name`` names where it came from;
    ``base_dir`` is where relative paths (key_file, sound files) are resolved."""

    installation: Installation
    agents: tuple[AgentSpec, ...]
    room: Room | None = None
    routes: tuple[Route, ...] = ()
    rings: tuple[Ring, ...] = ()
    sources: tuple[Source, ...] = ()
    couplings: tuple[Coupling, ...] = ()
    source_name: str = field(default="config", compare=False)
    base_dir: Path = field(default=Path("."), compare=False)

    @property
    def agent_ids(self) -> tuple[str, ...]:
        """Agent ids in config order (the column order of the routing graph)."""
        return tuple(a.id for a in self.agents)

    def agent(self, agent_id: str) -> AgentSpec:
        """The agent called ``agent_id`` (KeyError otherwise)."""
        for a in self.agents:
            if a.id == agent_id:
                return a
        raise KeyError(agent_id)

    def resolve(self, path: str) -> Path:
        """A path of the config (key_file, a sound file) made absolute against ``base_dir``."""
        p = Path(path).expanduser()
        return p if p.is_absolute() else (self.base_dir / p)

    @property
    def key_path(self) -> Path | None:
        """The installation key file's absolute path (the key is read by the hub, never here)."""
        kf = self.installation.key_file
        return None if kf is None else self.resolve(kf)

    def to_dict(self) -> dict[str, Any]:
        """The config as plain data in the TOML layout (omitted keys = defaults)."""
        out: dict[str, Any] = {"installation": _drop_none(vars_of(self.installation))}
        if self.room is not None:
            out["room"] = _drop_none(vars_of(self.room))
        out["agent"] = [_drop_none({**vars_of(a), "params": _thaw(a.params) or None,
                                    "spawn": a.spawn or None})
                        for a in self.agents]
        if self.routes:
            out["route"] = [_drop_none({"from": r.source, "to": r.target,
                                        **_edge_dict(r)}) for r in self.routes]
        if self.rings:
            out["ring"] = [_drop_none({"agents": list(r.agents), "name": r.name,
                                       **_edge_dict(r)}) for r in self.rings]
        if self.sources:
            out["source"] = [_drop_none({
                "name": s.name, "kind": s.kind, "args": _thaw(s.args) or None,
                "envelope": _envelope_dict(s.envelope) or None, "gain": s.gain,
                "targets": list(s.targets)}) for s in self.sources]
        if self.couplings:
            out["coupling"] = [coupling_dict(k) for k in self.couplings]
        return out

    def to_toml(self) -> str:
        """The config as TOML text that :func:`parse_config` reads back to an equal config."""
        return dump_toml(self.to_dict(), header="anamnesis installation config")


def coupling_dict(k: Coupling) -> dict[str, Any]:
    """A coupling in the TOML layout (``from``/``to``; mask as a list, omitted = all)."""
    return _drop_none({"from": k.source, "to": k.target, "mode": k.mode, "kappa": k.kappa,
                       "rate_hz": k.rate_hz, "gain": k.gain, "noise": k.noise,
                       "mask": None if k.mask is None else list(k.mask)})


def vars_of(obj: Any) -> dict[str, Any]:
    """A dataclass's fields as a plain dict (tuples as lists)."""
    return {k: _thaw(v) for k, v in obj.__dict__.items()}


def _drop_none(d: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in d.items() if v is not None}


def _edge_dict(e: Route | Ring) -> dict[str, Any]:
    return {"gain": e.gain, "delay_ms": e.delay_ms, "lowpass_hz": e.lowpass_hz,
            "highpass_hz": e.highpass_hz, "shape": e.shape}


def _envelope_dict(env: Envelope) -> dict[str, Any]:
    d: dict[str, Any] = {}
    if env.start:
        d["start"] = env.start
    if env.attack:
        d["attack"] = env.attack
    if env.hold is not None:
        d["hold"] = env.hold
    if env.release:
        d["release"] = env.release
    if env.every is not None:
        d["every"] = env.every
    return d


def constructor_args(model: str) -> tuple[str, ...]:
    """Names of ``model``'s constructor arguments that a config may set."""
    from anamnesis.agents.models import model_class

    sig = inspect.signature(model_class(model).__init__)
    return tuple(n for n, p in sig.parameters.items()
                 if n not in RESERVED_MODEL_ARGS and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD))


__all__ = ["AgentSpec", "Config", "ConfigError", "ConfigProblem", "Coupling", "Envelope",
           "Installation", "Ring", "Room", "Route", "Source", "constructor_args",
           "coupling_dict", "coupling_id"]

