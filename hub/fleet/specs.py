"""What an agent's parameters are, for the dashboard's sliders: ranges, scales, units.

:func:`model_specs` describes the real-time parameters of a model kind (the
:data:`anamnesis.agents.models.MODEL_KINDS` registry), built from the model's own
:class:`anamnesis.agents.models.base.ParamSpec`\\ s plus every agent's own ``gain`` (dB) and
``mute`` (:mod:`anamnesis.agents.control`), keyed by the parameter's OSC name (``lambda_`` is
``lambda``, as the agent's ``/state``, the hub's ``params`` and ``set_params`` name it;
``name`` repeats it)::

    {"lr": {"name": "lr", "kind": "float", "min": 0.0, "max": 50.0, "default": 0.1,
            "scale": "log", "unit": "", "description": "learning rate: ...",
            "per_sample": true}, ...}

``scale`` is the ParamSpec's own: ``"log"`` (learning rate, ridge: useful values span
decades) or ``"lin"``; ``min``/``max`` are null when unbounded; ``aliases`` (when there
are any) the other OSC names it answers to (``["lr"]`` for Unlearn's λ); a ``"choice"`` has
``choices`` instead, an ``"array"`` its ``size`` (which depends on the agent's
constructor arguments, ``hidden_size`` ...: pass them as ``model_args``). An
unknown model kind (or one whose constructor refuses the arguments) gives ``{}``.

Descriptions are cached per (kind, arguments). The first one of a kind imports the
model's module (numba: a fraction of a second): :func:`warm` does that for every kind
off the loop when the hub starts, so the loop never pays it.
"""

from __future__ import annotations

import json
import logging
from functools import lru_cache
from typing import Any

log = logging.getLogger(__name__)


def _describe(name: str, spec: Any) -> dict[str, Any]:
    raw = spec.describe()
    out: dict[str, Any] = {"name": name, "kind": raw["kind"], "scale": raw["scale"],
                           "unit": raw["unit"], "description": raw["description"],
                           "default": raw["default"], "per_sample": raw["per_sample"]}
    for key in ("min", "max", "choices", "size", "aliases"):
        if key in raw:
            out[key] = raw[key]
    return out


@lru_cache(maxsize=64)
def _cached(kind: str, args_json: str) -> str:
    from anamnesis.agents.control import GAIN_SPEC, MUTE_SPEC
    from anamnesis.agents.models import EXTRA_KINDS, MODEL_KINDS, create_model

    if kind not in MODEL_KINDS and kind not in EXTRA_KINDS:
        return "{}"
    try:
        model = create_model(kind, max_block=16, **json.loads(args_json))
    except (TypeError, ValueError) as exc:
        log.warning("no parameter descriptions for model %s %s: %s", kind, args_json, exc)
        return "{}"
    specs = dict(model.param_specs(), gain=GAIN_SPEC, mute=MUTE_SPEC)
    return json.dumps({name.rstrip("_"): _describe(name.rstrip("_"), spec)
                       for name, spec in specs.items()})


def model_specs(kind: object, model_args: dict[str, Any] | None = None) -> dict[str, Any]:
    """The parameters of model ``kind`` built with ``model_args`` (see the module docstring);
    a fresh dict each call."""
    if not isinstance(kind, str):
        return {}
    try:
        args_json = json.dumps(model_args or {}, sort_keys=True)
    except (TypeError, ValueError):
        args_json = "{}"
    return json.loads(_cached(kind, args_json))


def _config_args(config: Any, agent_id: str, kind: object) -> dict[str, Any] | None:
    """The constructor arguments the config gives agent ``agent_id`` (if it runs ``kind``)."""
    if config is None:
        return None
    for spec in config.agents:
        if spec.id == agent_id and spec.model == kind:
            try:
                return spec.model_args()
            except (KeyError, ValueError):
                return None
    return None


def agent_specs(config: Any, agent_id: str, kind: object) -> dict[str, Any]:
    """The parameters of agent ``agent_id`` running ``kind``: with the constructor arguments
    of the config's agent of that id (array sizes follow ``hidden_size`` ...), else the
    model's defaults."""
    return model_specs(kind, _config_args(config, agent_id, kind))


def warm(config: Any = None) -> None:
    """Describe every model kind (defaults) and every agent of ``config`` now, importing
    the models (blocking: call it on an executor, before agents can be discovered)."""
    from anamnesis.agents.models import MODEL_KINDS

    for kind in MODEL_KINDS:
        model_specs(kind)
    for spec in config.agents if config is not None else ():
        agent_specs(config, spec.id, spec.model)


__all__ = ["agent_specs", "model_specs", "warm"]
