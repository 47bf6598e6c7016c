"""Reading the ``[[source]]`` tables of an installation config (the checks of
:mod:`anamnesis.hub.installation.check`, for :class:`~.config.Source` and its
:class:`~.config.Envelope`): a generator of :mod:`anamnesis.agents.signals` with its
arguments checked by building it once, or a sound file checked by opening it.
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from anamnesis.hub.installation.check import (
    _MISSING,
    _agent_ref,
    _array_of_tables,
    _Checker,
    _show,
    did_you_mean,
    read_name,
)
from anamnesis.hub.installation.config import (
    ENVELOPE_KEYS,
    FILE_ARGS,
    FILE_KIND,
    SOURCE_KEYS,
    Envelope,
    Installation,
    Source,
    _thaw,
)
from anamnesis.hub.installation.edges import MAX_GAIN
from anamnesis.hub.installation.sound_file import check_sound_file


def _read_envelope(c: _Checker, raw: Any, path: Sequence[Any], where: str) -> Envelope:
    t = c.table(raw, path, where)
    c.keys(t, ENVELOPE_KEYS, path, where)
    big = 1e6

    def sec(key: str, default: Any, lo_open: bool = False) -> Any:
        return c.number(t, key, path, where, default, 0.0, big, lo_open=lo_open, unit="s")

    start = sec("start", 0.0)
    every = sec("every", None, lo_open=True)
    if "fade" in t:
        clash = [k for k in ("attack", "hold", "release") if k in t]
        if clash:
            c.add((*path, "fade"), where, f"fade is short for attack 0, hold 0, release <fade>: "
                  f"do not combine it with {', '.join(clash)}")
        fade = sec("fade", 0.0, lo_open=True)
        env = Envelope(start=start, attack=0.0, hold=0.0, release=fade, every=every)
    else:
        env = Envelope(start=start, attack=sec("attack", 0.0), hold=sec("hold", None),
                       release=sec("release", 0.0), every=every)
    if env.every is not None and env.length() > env.every:
        c.add((*path, "every"), where,
              f"every ({env.every:g} s) is shorter than the envelope ({env.length():g} s); "
              "give a hold and a release that fit")
    return env


def read_sources(c: _Checker, raw: Any, ids: Sequence[str], inst: Installation,
                 base: Path) -> list[Source]:
    """The ``[[source]]`` tables (see :class:`Source`), problems added to ``c``."""
    from anamnesis.agents.signals import SIGNALS

    kinds = (*SIGNALS, FILE_KIND)
    sources: list[Source] = []
    names: set[str] = set()
    for i, item in enumerate(_array_of_tables(c, raw, "source")):
        path = ("source", i)
        where = f"[[source]] #{i + 1}"
        t = c.table(item, path, where)
        c.keys(t, SOURCE_KEYS, path, where)
        name = read_name(c, t, path, where, names, "source", f"source{i + 1}")
        kind = c.string(t, "kind", path, where, None, kinds)
        if "kind" not in t:
            c.add(path, where, f"kind is required (one of {', '.join(kinds)})")
        args = c.table(t.get("args", {}), (*path, "args"), where)
        if kind is not None:
            _check_source_args(c, kind, args, inst, base, (*path, "args"), where)
        env = _read_envelope(c, t.get("envelope", {}), (*path, "envelope"), where)
        gain = c.number(t, "gain", path, where, 1.0, -MAX_GAIN, MAX_GAIN)
        targets_raw = t.get("targets", _MISSING)
        targets: list[str] = []
        if targets_raw is _MISSING:
            c.add(path, where, "targets (a list of agent ids) is required")
        elif not isinstance(targets_raw, list) or not targets_raw:
            c.add((*path, "targets"), where, f"targets must list agent ids; got {_show(targets_raw)}")
        else:
            for target in targets_raw:
                ref = _agent_ref(c, target, ids, (*path, "targets"), where, "targets")
                if ref is not None and ref not in targets:
                    targets.append(ref)
        if kind is not None and targets:
            sources.append(Source(kind=kind, name=name, targets=tuple(targets), args=args,
                                  envelope=env, gain=gain))
    return sources


def _check_source_args(c: _Checker, kind: str, args: Mapping[str, Any], inst: Installation,
                       base: Path, path: Sequence[Any], where: str) -> None:
    if kind == FILE_KIND:
        c.keys(args, FILE_ARGS, path, where)
        try:
            check_sound_file(args, inst.sample_rate, base)
        except ValueError as exc:
            key = "channel" if "channel" in str(exc) else "path"
            c.add((*path, key), where, str(exc))
        return
    from anamnesis.agents.signals import SIGNALS, make_signal

    names = tuple(inspect.signature(SIGNALS[kind]).parameters)
    known = tuple(n for n in names if n not in ("sample_rate",))
    bad = [k for k in args if k not in known]
    for key in bad:
        c.add((*path, key), where, f"unknown argument {key!r} for a {kind} source"
              f"{did_you_mean(key, known) or ' (known: ' + ', '.join(known) + ')'}")
    if bad:
        return
    try:
        make_signal(kind, inst.sample_rate, **{k: _thaw(v) for k, v in args.items()})
    except (TypeError, ValueError) as exc:
        c.add(path, where, f"{kind} source: {exc}")


__all__ = ["read_sources"]
