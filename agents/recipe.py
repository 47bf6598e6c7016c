"""How an agent's model is built: the one recipe of the agent process, the hub's
rehearsal and demo warm-up, and the tests' in-process twins.

* :func:`parse_model_args` reads ``--model-arg NAME=VALUE`` items as the model
  constructor's own types (a default's type decides; reserved arguments refused);
* :func:`build_model` gives a factory of the model with its preset applied
  (constructor arguments, then parameters) and the preset's input-following
  modulations for the engine;
* :func:`warm_up` runs every kernel of the audio path once on throwaway objects,
  so the first real block runs compiled (numba compiles, or loads from its cache,
  on first call); ``RuntimeError`` if the model fails on its first block.

No I/O beyond numba's cache; nothing here starts a thread or a loop.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any

log = logging.getLogger(__name__)


#: Constructor arguments the agent sets itself (not ``--model-arg``).
RESERVED_MODEL_ARGS = ("self", "seed", "sample_rate", "max_block")


def _model_arg_value(name: str, text: str, default: Any) -> Any:
    """``text`` as the type of the constructor default ``default`` (else a number or text)."""
    lowered = text.strip().lower()
    if isinstance(default, bool):
        if lowered in ("true", "1", "yes", "on"):
            return True
        if lowered in ("false", "0", "no", "off"):
            return False
        raise ValueError(f"--model-arg {name} must be true or false; got {text!r}")
    if default is None and lowered == "none":
        return None
    if isinstance(default, int) or default is None:
        try:
            return int(text)
        except ValueError:
            if default is not None:
                raise ValueError(f"--model-arg {name} must be an integer; got {text!r}") from None
    if isinstance(default, float) or default is None:
        try:
            return float(text)
        except ValueError:
            if default is not None:
                raise ValueError(f"--model-arg {name} must be a number; got {text!r}") from None
    return text


def parse_model_args(model: str, items: list[str], preset: str | None = None, *,
                     seed: int = 0, sample_rate: int = 48000,
                     max_block: int = 4096) -> dict[str, Any]:
    """The ``--model-arg NAME=VALUE`` items as constructor arguments of ``model``,
    checked by building the model once (with the preset's arguments beneath them);
    ``ValueError`` with one line naming every problem."""
    import inspect

    from anamnesis.agents.models import create_model, model_class

    if not items:
        return {}
    sig = inspect.signature(model_class(model).__init__)
    known = {n: p.default for n, p in sig.parameters.items()
             if n not in RESERVED_MODEL_ARGS and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)}
    out: dict[str, Any] = {}
    problems = []
    for item in items:
        name, sep, text = item.partition("=")
        name = name.strip()
        if not sep or not name:
            problems.append(f"--model-arg takes NAME=VALUE; got {item!r}")
        elif name not in known:
            import difflib
            close = difflib.get_close_matches(name, list(known), n=1, cutoff=0.6)
            hint = f"; did you mean {close[0]!r}?" if close else f" (known: {', '.join(known)})"
            problems.append(f"--model-arg {name}: {model} has no such argument{hint}")
        else:
            try:
                out[name] = _model_arg_value(name, text, known[name])
            except ValueError as exc:
                problems.append(str(exc))
    if not problems:
        base: dict[str, Any] = {}
        if preset is not None:
            from anamnesis.agents.presets import get_preset
            base.update(get_preset(preset).model_args)
        try:
            create_model(model, **{**base, **out}, seed=seed, sample_rate=sample_rate,
                         max_block=max_block)
        except (TypeError, ValueError) as exc:
            problems.append(f"--model-arg: {model}: {exc}")
    if problems:
        raise ValueError("; ".join(problems))
    return out


def build_model(model: str, *, preset: str | None = None,
                model_args: Mapping[str, Any] | None = None, seed: int = 0,
                sample_rate: int = 48000, block: int = 256) -> tuple[Callable[[], Any], list]:
    """A factory of the ``model`` kind with its preset applied (the preset's constructor
    arguments, then ``model_args`` over them, then the preset's parameters), and the
    preset's input-following modulations (:class:`~anamnesis.agents.dsp.engine.FollowInput`).
    ``block`` is the largest block (frames) the model will get; ``sample_rate`` in Hz."""
    from anamnesis.agents import presets
    from anamnesis.agents.dsp.engine import FollowInput
    from anamnesis.agents.models import create_model

    kwargs: dict[str, Any] = {}
    params: dict[str, object] = {}
    follow = []
    if preset is not None:
        chosen = presets.get_preset(preset)
        kwargs.update(chosen.model_args)
        params.update(chosen.params)
        for mod in chosen.modulations:
            if isinstance(mod, presets.FollowInput):
                follow.append(FollowInput(mod.param, mod.lo, mod.hi))
        timeline = [m for m in chosen.modulations if not isinstance(m, presets.FollowInput)]
        if timeline or chosen.events:
            log.info("preset %s: %d timed change(s) belong to offline renders and are not "
                     "played live", chosen.name, len(timeline) + len(chosen.events))
    kwargs.update(model_args or {})
    kwargs.update(seed=seed, sample_rate=sample_rate, max_block=block)

    def make() -> Any:
        made = create_model(model, **kwargs)
        for name, value in params.items():
            made.set_param(name, value)
        return made
    return make, follow


def preset_signals(preset: str | Any, sample_rate: int, *, seed: int = 0) -> list[tuple[str, Any]]:
    """The generators of a preset's input signals (``agents.signals``), with their kinds,
    in input order. ``preset`` is a name or a :class:`~anamnesis.agents.presets.Preset`;
    a noise input follows ``seed`` (a new seed is a new performance)."""
    from anamnesis.agents import presets
    from anamnesis.agents.signals import make_signal

    chosen = presets.get_preset(preset) if isinstance(preset, str) else preset
    signals = []
    for index, spec in enumerate(chosen.inputs):
        args = dict(spec.args)
        if spec.kind == "noise":
            args["seed"] = int(args.get("seed", 0)) + 1000 * seed + index
        signals.append((spec.kind, make_signal(spec.kind, sample_rate, **args)))
    return signals


def warm_up(make_model: Callable[[], Any], follow: list, *, block: int, sample_rate: int,
            ceiling_db: float = -1.0) -> None:
    """Compile every kernel of the audio path on throwaway objects (a twin engine on
    ``make_model()``, the RTP link's rings and codecs), so the first real callback runs
    at full speed; ``RuntimeError`` if the model fails on its first block."""
    import numpy as np

    from anamnesis.agents.dsp.engine import AgentEngine
    from anamnesis.agents.net.link import warm_up as warm_up_link

    twin = AgentEngine(make_model(), block=block, sample_rate=sample_rate,
                       ceiling_db=ceiling_db, follow=follow)
    speaker = np.zeros(block, dtype=np.float32)
    twin.process_block(np.zeros(block, dtype=np.float32), speaker)
    twin.process_block(np.zeros(block // 2, dtype=np.float32), speaker[:block // 2])
    if twin.last_error is not None:
        raise RuntimeError(f"the model fails on its first block: {twin.last_error!r}")
    warm_up_link()


def config_model(config: Any) -> tuple[Callable[[], Any], list]:
    """:func:`build_model` for an agent's checked options (an
    :class:`~anamnesis.agents.main.AgentConfig` or anything with its ``model``,
    ``preset``, ``model_args``, ``seed``, ``sample_rate`` and ``block``)."""
    return build_model(config.model, preset=config.preset, model_args=config.model_args,
                       seed=config.seed, sample_rate=config.sample_rate, block=config.block)


def config_warm_up(make_model: Callable[[], Any], follow: list, config: Any) -> None:
    """:func:`warm_up` with an agent's checked options (block, sample rate, ceiling)."""
    warm_up(make_model, follow, block=config.block, sample_rate=config.sample_rate,
            ceiling_db=config.ceiling_db)


__all__ = ["RESERVED_MODEL_ARGS", "build_model", "config_model", "config_warm_up",
           "parse_model_args", "warm_up"]
