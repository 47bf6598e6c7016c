"""Reading and checking the installation config (STYLE 11): TOML text in, a frozen config out.

``load_config(path)`` / ``parse_config(text, source_name)`` read a config and
return a frozen :class:`~anamnesis.hub.installation.config.Config`, or raise one
:class:`~anamnesis.hub.installation.config.ConfigError` that lists *every* problem
found, each with ``file:line`` where the line can be found (``tomllib`` gives no
positions, so :class:`anamnesis.hub.installation.toml._Locator` finds the line of a
key or table in the source text itself — a best effort: a problem whose key it
cannot place is reported at its table, or without a line). ``check_config_data``
runs the same checks on plain data in the TOML layout (an edit through the API;
no line numbers). An edited config is re-checked by exactly the round trip
``parse_config(c.to_toml())``. The tables, keys and units are listed in
:mod:`anamnesis.hub.installation.config`; sound files of ``kind = "file"`` sources
are checked by reading their header
(:func:`~anamnesis.hub.installation.sound_file.check_sound_file`).
"""

from __future__ import annotations

import difflib
import math
import re
import tomllib
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from anamnesis.agents.protocol.ids import ID_RE
from anamnesis.hub.installation.config import (
    AGENT_KEYS,
    INSTALLATION_KEYS,
    MAX_DESCRIPTION,
    MODES,
    RING_KEYS,
    ROOM_KEYS,
    ROUTE_KEYS,
    SABINE,
    TOP_KEYS,
    AgentSpec,
    Config,
    ConfigError,
    ConfigProblem,
    Installation,
    Ring,
    Room,
    Route,
    Vec3,
    _thaw,
    constructor_args,
)
from anamnesis.hub.installation.edges import (
    MAX_DELAY_MS,
    MAX_GAIN,
    SHAPES,
    Edge,
    cycle_problem,
    zero_delay_cycles,
)
from anamnesis.hub.installation.toml import _Locator

_SECRET_RE = re.compile(r"(^|_)(key|token|secret|password|passphrase)$", re.IGNORECASE)
#: Hosts that name the hub's own machine (where ``spawn = true`` starts an agent).
_LOCAL_HOSTS = ("localhost", "127.0.0.1", "::1")


# -- the checker ----------------------------------------------------------------


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    """``"; did you mean 'x'?"`` for the closest of ``choices``, or ``""``."""
    close = difflib.get_close_matches(str(word), list(choices), n=1, cutoff=0.6)
    return f"; did you mean {close[0]!r}?" if close else ""


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


_MISSING = object()   # a key the config does not have


class _Checker:
    """Collects problems while the config is read; values come back checked or as a fallback."""

    def __init__(self, source: str, locator: _Locator) -> None:
        self.source = source
        self.locator = locator
        self.problems: list[ConfigProblem] = []

    def add(self, path: Sequence[Any], where: str, message: str) -> None:
        self.problems.append(ConfigProblem(self.source, self.locator.line(path), where, message))

    def table(self, value: Any, path: Sequence[Any], where: str) -> dict[str, Any]:
        if isinstance(value, Mapping):
            return dict(value)
        self.add(path, where, f"must be a table ({{ key = value, ... }}); got {type(value).__name__}")
        return {}

    def keys(self, table: Mapping[str, Any], known: Sequence[str], path: Sequence[Any],
             where: str) -> None:
        for key in table:
            if key not in known:
                hint = did_you_mean(key, known) or f" (known: {', '.join(known)})"
                if _SECRET_RE.search(key):
                    hint += "; secrets never go into the config: use key_file"
                self.add((*path, key), where, f"unknown key {key!r}{hint}")

    def number(self, table: Mapping[str, Any], key: str, path: Sequence[Any], where: str,
               default: Any, lo: float, hi: float, *, integer: bool = False,
               lo_open: bool = False, hi_open: bool = False, unit: str = "") -> Any:
        value = table.get(key, _MISSING)
        if value is _MISSING:
            return default
        label = f"{key}" + (f" ({unit})" if unit else "")
        kp = (*path, key)
        if integer:
            if not isinstance(value, int) or isinstance(value, bool):
                self.add(kp, where, f"{label} must be a whole number; got {self._safe(key, value)}")
                return default
        elif not _is_number(value):
            self.add(kp, where, f"{label} must be a number; got {self._safe(key, value)}")
            return default
        number = value if integer else float(value)
        if not math.isfinite(number):
            self.add(kp, where, f"{label} must be finite; got {number}")
            return default
        below = number <= lo if lo_open else number < lo
        above = number >= hi if hi_open else number > hi
        if below or above:
            lb, rb = ("(" if lo_open else "["), (")" if hi_open else "]")
            self.add(kp, where, f"{label} must be in {lb}{lo:g}, {hi:g}{rb}; got {number:g}")
            return default
        return number

    def string(self, table: Mapping[str, Any], key: str, path: Sequence[Any], where: str,
               default: Any, choices: Sequence[str] | None = None) -> Any:
        value = table.get(key, _MISSING)
        if value is _MISSING:
            return default
        if not isinstance(value, str):
            self.add((*path, key), where, f"{key} must be a string; got {self._safe(key, value)}")
            return default
        if choices is not None and value not in choices:
            hint = did_you_mean(value, choices) or f" (one of {', '.join(choices)})"
            self.add((*path, key), where, f"{key} {value!r} is not known{hint}")
            return default
        return value

    def boolean(self, table: Mapping[str, Any], key: str, path: Sequence[Any], where: str,
                default: bool) -> bool:
        value = table.get(key, _MISSING)
        if value is _MISSING:
            return default
        if not isinstance(value, bool):
            self.add((*path, key), where, f"{key} must be true or false; got {self._safe(key, value)}")
            return default
        return value

    def vec3(self, table: Mapping[str, Any], key: str, path: Sequence[Any], where: str) -> Vec3 | None:
        value = table.get(key, _MISSING)
        if value is _MISSING:
            return None
        if (not isinstance(value, list) or len(value) != 3
                or not all(_is_number(v) and math.isfinite(v) for v in value)):
            self.add((*path, key), where,
                     f"{key} must be three finite numbers [x, y, z] in metres; got {_show(value)}")
            return None
        return (float(value[0]), float(value[1]), float(value[2]))

    @staticmethod
    def _safe(key: str, value: Any) -> str:
        return "(a value not shown: it looks like a secret)" if _SECRET_RE.search(key) else _show(value)


def _cutoff(c: _Checker, t: Mapping[str, Any], key: str, path: Sequence[Any], where: str,
            sample_rate: int) -> float | None:
    return c.number(t, key, path, where, None, 0.0, sample_rate / 2.0, lo_open=True,
                    hi_open=True, unit="Hz")


# ---------------------------------------------------------------------------
# Reading
# ---------------------------------------------------------------------------


def load_config(path: str | Path) -> Config:
    """Read and check the installation config at ``path`` (ConfigError listing every problem)."""
    p = Path(path)
    try:
        raw = p.read_bytes()
    except OSError as exc:
        raise ConfigError([ConfigProblem(str(p), None, "", f"cannot read the config: {exc.strerror or exc}")]) from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError([ConfigProblem(str(p), None, "", f"not UTF-8 text ({exc.reason} at byte {exc.start})")]) from None
    return parse_config(text, str(p), base_dir=p.resolve().parent)


def parse_config(text: str, source_name: str = "config", *, base_dir: str | Path | None = None) -> Config:
    """Check the TOML ``text`` of an installation config and return it frozen.

    ``source_name`` prefixes every problem (a file name); relative paths are
    resolved against ``base_dir`` (default: the current directory). Raises
    :class:`ConfigError` listing every problem found.
    """
    base = Path(base_dir) if base_dir is not None else Path(".")
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        m = re.search(r"\(at line (\d+), column \d+\)", str(exc))
        msg = re.sub(r"\s*\(at line \d+, column \d+\)", "", str(exc)) or "invalid TOML"
        raise ConfigError([ConfigProblem(source_name, int(m.group(1)) if m else None, "",
                                         f"invalid TOML: {msg}")]) from None
    c = _Checker(source_name, _Locator(text))
    config = _read(c, data, source_name, base)
    if c.problems:
        raise ConfigError(sorted(c.problems, key=lambda p: (p.line is None, p.line or 0)))
    assert config is not None  # _read returns None only with problems recorded
    return config


def check_config_data(data: Mapping[str, Any], source_name: str = "config", *,
                      base_dir: str | Path | None = None) -> Config:
    """Check a config given as plain data in the TOML layout (:meth:`Config.to_dict`'s, as
    an edit through the API makes it) with every check of :func:`parse_config`; problems
    have no line numbers. Raises :class:`ConfigError` listing every problem found."""
    base = Path(base_dir) if base_dir is not None else Path(".")
    c = _Checker(source_name, _Locator(""))
    config = _read(c, data, source_name, base)
    if c.problems:
        raise ConfigError(c.problems)
    assert config is not None
    return config


def _read(c: _Checker, data: Mapping[str, Any], source_name: str, base: Path) -> Config | None:
    c.keys(data, TOP_KEYS, (), "top level")
    inst = _read_installation(c, data.get("installation", {}))
    room = _read_room(c, data["room"]) if "room" in data else None
    ids: list[str] = []
    agents = _read_agents(c, data.get("agent", _MISSING), inst, room, ids, base)
    routes = _read_routes(c, data.get("route", []), ids, inst)
    rings = _read_rings(c, data.get("ring", []), ids, inst)
    from anamnesis.hub.installation.check_sources import read_sources
    sources = read_sources(c, data.get("source", []), ids, inst, base)
    from anamnesis.hub.installation.check_couplings import read_couplings

    couplings = read_couplings(c, data.get("coupling", []), ids)
    if inst.mode == "deployed":
        _check_deployed_cycles(c, routes, rings)
    if c.problems:
        return None
    return Config(installation=inst, agents=tuple(agents), room=room, routes=tuple(routes),
                  rings=tuple(rings), sources=tuple(sources), couplings=tuple(couplings),
                  source_name=source_name,
                  base_dir=base)


def _read_installation(c: _Checker, raw: Any) -> Installation:
    path, where = ("installation",), "[installation]"
    t = c.table(raw, path, where)
    c.keys(t, INSTALLATION_KEYS, path, where)
    d = Installation()
    name = c.string(t, "name", path, where, d.name)
    if not ID_RE.match(name):
        c.add((*path, "name"), where,
              f"name must be 1-32 letters, digits, '_' or '-' (it goes into zeroconf records); got {_show(name)}")
        name = d.name
    key_file = c.string(t, "key_file", path, where, None)
    if key_file is not None and not key_file.strip():
        c.add((*path, "key_file"), where, "key_file must be a path (or be left out)")
        key_file = None
    description = c.string(t, "description", path, where, None)
    if description is not None:
        description = " ".join(description.split())     # one paragraph, as shown
        if not 1 <= len(description) <= MAX_DESCRIPTION:
            c.add((*path, "description"), where, f"description must have 1 to "
                  f"{MAX_DESCRIPTION} characters; got {len(description)}")
            description = None
    return Installation(
        name=name,
        description=description,
        allow=_read_allow(c, t.get("allow", []), (*path, "allow"), where),
        sample_rate=c.number(t, "sample_rate", path, where, d.sample_rate, 8000, 192000,
                             integer=True, unit="Hz"),
        block=c.number(t, "block", path, where, d.block, 64, 1024, integer=True, unit="frames"),
        key_file=key_file,
        mode=c.string(t, "mode", path, where, d.mode, MODES),
    )


def _read_allow(c: _Checker, raw: Any, path: Sequence[Any], where: str) -> tuple[str, ...]:
    from anamnesis.agents.net.access import parse_networks

    if not isinstance(raw, list) or not all(isinstance(v, str) for v in raw):
        c.add(path, where, f"allow must list addresses or networks such as \"10.0.0.0/24\"; "
              f"got {_show(raw)}")
        return ()
    try:
        return tuple(str(net) for net in parse_networks(raw))
    except ValueError as exc:
        c.add(path, where, str(exc).replace("--allow takes", "allow takes"))
        return ()


def _read_room(c: _Checker, raw: Any) -> Room | None:
    path, where = ("room",), "[room]"
    t = c.table(raw, path, where)
    c.keys(t, ROOM_KEYS, path, where)
    ok = True
    size = c.vec3(t, "size", path, where)
    if size is None:
        if "size" not in t:
            c.add(path, where, "size [x, y, z] (m) is required")
        ok = False
    elif not all(0.1 <= s <= 1000.0 for s in size):   # (a 1e-300 m room divided by zero)
        c.add((*path, "size"), where, f"size must be three lengths in [0.1, 1000] m; got {list(size)}")
        ok, size = False, None
    if "rt60" in t and "absorption" in t:
        c.add((*path, "absorption"), where, "give rt60 or absorption, not both")
        ok = False
    rt60 = c.number(t, "rt60", path, where, None, 0.0, 20.0, lo_open=True, unit="s")
    absorption = c.number(t, "absorption", path, where, None, 0.0, 1.0, lo_open=True)
    if "rt60" not in t and "absorption" not in t:
        rt60 = Room.rt60
    if rt60 is not None and size is not None:
        x, y, z = size
        shortest = SABINE * x * y * z / (2.0 * (x * y + y * z + x * z))
        if rt60 < shortest:
            c.add((*path, "rt60"), where,
                  f"rt60 {rt60:g} s is too short for a {x:g} x {y:g} x {z:g} m room: even fully "
                  f"absorbent walls give {shortest:.3g} s (Sabine)")
            ok = False
    max_order = c.number(t, "max_order", path, where, None, 0, 100, integer=True)
    listener = c.vec3(t, "listener", path, where)
    if listener is None and size is not None and "listener" not in t:
        listener = (size[0] / 2, size[1] / 2, min(1.6, size[2] / 2))
    if listener is not None and size is not None and not Room(size).contains(listener):
        c.add((*path, "listener"), where, f"listener {list(listener)} is outside the room {list(size)} m")
        ok = False
    azimuth = c.number(t, "listener_azimuth", path, where, 0.0, -360.0, 360.0, unit="degrees")
    noise = c.number(t, "mic_noise_db", path, where, Room.mic_noise_db, -200.0, 0.0, unit="dBFS")
    if size is None:
        return None
    if not ok or listener is None:  # still good enough to check positions against
        return Room(size=size, listener=listener or (size[0] / 2, size[1] / 2, size[2] / 2))
    return Room(size=size, rt60=rt60, absorption=absorption, max_order=max_order,
                listener=listener, listener_azimuth=azimuth, mic_noise_db=noise)


def _array_of_tables(c: _Checker, raw: Any, name: str) -> list[Any]:
    if isinstance(raw, list):
        return raw
    c.add((name,), f"[{name}]", f"{name} must be an array of tables: write [[{name}]] for each")
    return []


def _read_agents(c: _Checker, raw: Any, inst: Installation, room: Room | None,
                 ids: list[str], base: Path = Path(".")) -> list[AgentSpec]:
    """Read every [[agent]]; ``ids`` receives each well-formed id (for the references
    of routes, rings and sources, even when the agent has other problems)."""
    from anamnesis.agents.models import EXTRA_KINDS, MODEL_KINDS
    from anamnesis.agents.presets import all_presets

    if raw is _MISSING:
        c.add((), "top level", "the installation has no agents: add at least one [[agent]]")
        return []
    presets = all_presets()
    agents: list[AgentSpec] = []
    seen: dict[str, int] = {}
    channels: dict[tuple[str, int], str] = {}
    for i, item in enumerate(_array_of_tables(c, raw, "agent")):
        path = ("agent", i)
        where = f"[[agent]] #{i + 1}"
        t = c.table(item, path, where)
        c.keys(t, AGENT_KEYS, path, where)
        agent_id = c.string(t, "id", path, where, None)
        if agent_id is None:
            if "id" not in t:
                c.add(path, where, "id is required")
        elif not ID_RE.match(agent_id):
            c.add((*path, "id"), where,
                  f"id must be 1-32 letters, digits, '_' or '-', starting with a letter or digit; "
                  f"got {_show(agent_id)}")
            agent_id = None
        else:
            where = f"agent {agent_id!r}"
            if agent_id in seen:
                c.add((*path, "id"), where, f"id {agent_id!r} is used twice (also [[agent]] #{seen[agent_id] + 1})")
            else:
                seen[agent_id] = i
                ids.append(agent_id)
        model = c.string(t, "model", path, where, None, (*MODEL_KINDS, *EXTRA_KINDS))
        preset_name = c.string(t, "preset", path, where, None)
        preset = None
        if preset_name is not None:
            preset = presets.get(preset_name)
            if preset is None:
                c.add((*path, "preset"), where, f"unknown preset {preset_name!r}"
                      f"{did_you_mean(preset_name, presets) or ' (see anamnesis render --list)'}")
        if preset is not None:
            if model is None and "model" not in t:
                model = preset.model
            elif model is not None and model != preset.model:
                c.add((*path, "model"), where,
                      f"model {model!r} does not match preset {preset.name!r}, which is a {preset.model}")
        if model is None and preset_name is None and "model" not in t:
            c.add(path, where, "needs a model or a preset")
        seed = c.number(t, "seed", path, where, i, 0, 2**63 - 1, integer=True)
        params = c.table(t.get("params", {}), (*path, "params"), where)
        model_file = params.get("path") if model in EXTRA_KINDS else None
        if isinstance(model_file, str) and model_file:   # a model file, relative to the config
            file = Path(model_file).expanduser()
            params = {**params, "path": str(file if file.is_absolute() else (base / file).resolve())}
        if model is not None and (preset is not None or preset_name is None):
            _check_model(c, model, preset, params, seed, inst, (*path, "params"), where)
        speaker = c.vec3(t, "speaker", path, where)
        mic = c.vec3(t, "mic", path, where)
        if room is not None:
            for key, pos in (("speaker", speaker), ("mic", mic)):
                if pos is None and key not in t:
                    c.add(path, where, f"{key} [x, y, z] (m) is required: the installation has a room")
                elif pos is not None and not room.contains(pos):
                    c.add((*path, key), where, f"{key} {list(pos)} is outside the room {list(room.size)} m")
        channel = c.number(t, "channel", path, where, None, 1, 256, integer=True)
        host = c.string(t, "host", path, where, None)
        spawn = c.boolean(t, "spawn", path, where, False)
        if spawn and host is not None and host not in _LOCAL_HOSTS:
            c.add((*path, "host"), where,
                  f"spawn = true starts the agent on the hub's machine, but host is {host!r}")
        if channel is not None and agent_id is not None:
            place = (host or "local", channel)
            if place in channels:
                c.add((*path, "channel"), where,
                      f"channel {channel} on {place[0]} is already agent {channels[place]!r}'s")
            else:
                channels[place] = agent_id
        if agent_id is not None and model is not None:
            agents.append(AgentSpec(id=agent_id, model=model, preset=preset_name, params=params,
                                    speaker=speaker, mic=mic, channel=channel, host=host,
                                    spawn=spawn, seed=seed))
    if isinstance(raw, list) and not raw:
        c.add(("agent",), "top level", "the installation has no agents: add at least one [[agent]]")
    return agents


def _check_model(c: _Checker, model: str, preset: Any, params: dict[str, Any], seed: int,
                 inst: Installation, path: Sequence[Any], where: str) -> None:
    """Build the model once with the merged arguments: its own checks are the authority.
    A parameter given by an alias (``lr`` of Unlearn's λ) is renamed in ``params``."""
    from anamnesis.agents.models import create_model

    def build(args: Mapping[str, Any]) -> Any:
        return create_model(model, seed=seed, sample_rate=inst.sample_rate,
                            max_block=inst.block, **{k: _thaw(v) for k, v in args.items()})

    names = constructor_args(model)
    model_args = dict(preset.model_args) if preset is not None else {}
    values = dict(preset.params) if preset is not None else {}
    model_args.update({k: v for k, v in params.items() if k in names})
    try:
        instance = build(model_args)
    except (TypeError, ValueError) as exc:
        bad = [k for k in params if k in names and k in str(exc)]
        c.add((*path, bad[0]) if bad else path, where, f"{model}: {exc}")
        try:  # still check the parameters against the model as the preset builds it
            instance = build(dict(preset.model_args) if preset is not None else {})
        except (TypeError, ValueError):
            return
    from anamnesis.agents.control import GAIN_SPEC, MUTE_SPEC

    # every agent's own output gain (dB, before its limiter) and mute, beside the model's
    specs = {**instance.param_specs(), "gain": GAIN_SPEC, "mute": MUTE_SPEC}
    for key, value in list(params.items()):
        if key in names:
            continue
        alias_of = next((n for n, s in specs.items() if key in s.aliases), None)
        if key not in specs and alias_of is not None:   # ``lr`` of Unlearn's λ is λ
            if alias_of in params:
                c.add((*path, key), where, f"{key} and {alias_of} both set {alias_of} of "
                      f"{model}: keep one")
                continue
            params[alias_of] = params.pop(key)
            key = alias_of
        if key not in specs:
            known = [*names, *specs]
            c.add((*path, key), where, f"unknown parameter {key!r} for {model}"
                  f"{did_you_mean(key, known) or ' (known: ' + ', '.join(known) + ')'}")
            continue
        values[key] = value
    for key, value in values.items():
        if key in specs:
            try:
                specs[key].validate(_thaw(value))
            except ValueError as exc:
                c.add((*path, key), where, str(exc))


def _read_edge_params(c: _Checker, t: Mapping[str, Any], path: Sequence[Any], where: str,
                      inst: Installation) -> dict[str, Any]:
    return {
        "gain": c.number(t, "gain", path, where, 1.0, -MAX_GAIN, MAX_GAIN),
        "delay_ms": c.number(t, "delay_ms", path, where, 0.0, 0.0, MAX_DELAY_MS, unit="ms"),
        "lowpass_hz": _cutoff(c, t, "lowpass_hz", path, where, inst.sample_rate),
        "highpass_hz": _cutoff(c, t, "highpass_hz", path, where, inst.sample_rate),
        "shape": c.string(t, "shape", path, where, "none", SHAPES),
    }


def _agent_ref(c: _Checker, value: Any, ids: Sequence[str], path: Sequence[Any], where: str,
               what: str) -> str | None:
    if not isinstance(value, str):
        c.add(path, where, f"{what} must be an agent id (a string); got {_show(value)}")
        return None
    if value not in ids:
        c.add(path, where, f"{what} names unknown agent {value!r}"
              f"{did_you_mean(value, ids) or ' (agents: ' + ', '.join(ids) + ')'}")
        return None
    return value


def read_ends(c: _Checker, t: Mapping[str, Any], ids: Sequence[str], path: Sequence[Any],
              where: str) -> list[str | None]:
    """The ``from`` and ``to`` agent ids of an edge-like table (a route, a coupling); None
    for each that is missing or unknown (the problem added)."""
    ends: list[str | None] = []
    for key in ("from", "to"):
        if key not in t:
            c.add(path, where, f"{key} (an agent id) is required")
            ends.append(None)
        else:
            ends.append(_agent_ref(c, t[key], ids, (*path, key), where, key))
    return ends


def _read_routes(c: _Checker, raw: Any, ids: Sequence[str], inst: Installation) -> list[Route]:
    routes: list[Route] = []
    seen: dict[tuple[str, str], int] = {}
    for i, item in enumerate(_array_of_tables(c, raw, "route")):
        path = ("route", i)
        where = f"[[route]] #{i + 1}"
        t = c.table(item, path, where)
        c.keys(t, ROUTE_KEYS, path, where)
        ends = read_ends(c, t, ids, path, where)
        params = _read_edge_params(c, t, path, where, inst)
        src, dst = ends
        if src is None or dst is None:
            continue
        where = f"route {src} -> {dst}"
        if (src, dst) in seen:
            c.add(path, where, f"route {src} -> {dst} is given twice (also [[route]] #{seen[src, dst] + 1}); "
                  "merge them")
            continue
        seen[src, dst] = i
        routes.append(Route(source=src, target=dst, **params))
    return routes


def read_name(c: _Checker, t: Mapping[str, Any], path: Sequence[Any], where: str,
              names: set[str], what: str, default: str) -> str:
    """A table's ``name`` (an id, unique among ``names``, which it joins)."""
    name = c.string(t, "name", path, where, default)
    if not ID_RE.match(name):
        c.add((*path, "name"), where, f"name must be 1-32 letters, digits, '_' or '-'; got {_show(name)}")
    elif name in names:
        c.add((*path, "name"), where, f"{what} name {name!r} is used twice")
    names.add(name)
    return name


def _read_rings(c: _Checker, raw: Any, ids: Sequence[str], inst: Installation) -> list[Ring]:
    rings: list[Ring] = []
    names: set[str] = set()
    for i, item in enumerate(_array_of_tables(c, raw, "ring")):
        path = ("ring", i)
        where = f"[[ring]] #{i + 1}"
        t = c.table(item, path, where)
        c.keys(t, RING_KEYS, path, where)
        name = read_name(c, t, path, where, names, "ring", f"ring{i + 1}")
        members = t.get("agents", _MISSING)
        agents: list[str] = []
        if members is _MISSING:
            c.add(path, where, "agents (a list of at least two agent ids) is required")
        elif not isinstance(members, list) or len(members) < 2:
            c.add((*path, "agents"), where, f"agents must list at least two agent ids; got {_show(members)}")
        else:
            for member in members:
                ref = _agent_ref(c, member, ids, (*path, "agents"), where, "agents")
                if ref is not None:
                    if ref in agents:
                        c.add((*path, "agents"), where, f"agent {ref!r} appears twice in the ring")
                    agents.append(ref)
        params = _read_edge_params(c, t, path, where, inst)
        if isinstance(members, list) and len(agents) == len(members) >= 2 and len(set(agents)) == len(agents):
            rings.append(Ring(agents=tuple(agents), name=name, **params))
    return rings


def _check_deployed_cycles(c: _Checker, routes: Sequence[Route], rings: Sequence[Ring]) -> None:
    """In deployed mode a feedback cycle needs a delay somewhere (see ``anamnesis.hub.engine.graph``)."""
    owners: dict[tuple[str, str], tuple[Any, ...]] = {}
    edges = []
    for i, r in enumerate(routes):
        edges.append(Edge(r.source, r.target, delay_ms=r.delay_ms))
        if r.delay_ms == 0:
            owners.setdefault((r.source, r.target), ("route", i))
    for i, ring in enumerate(rings):
        for a, b in ring.pairs():
            edges.append(Edge(a, b, delay_ms=ring.delay_ms))
            if ring.delay_ms == 0:
                owners.setdefault((a, b), ("ring", i))
    for cycle in zero_delay_cycles(edges):
        first = next((owners[pair] for pair in zip(cycle, cycle[1:], strict=False) if pair in owners), ())
        c.add(first, "[installation] mode = \"deployed\"", cycle_problem(cycle, "routes or rings"))


__all__ = ["check_config_data", "did_you_mean", "load_config", "parse_config"]
