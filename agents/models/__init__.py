"""The learning synths: numba kernels over explicit state, and thin classes on top.

``create_model(kind, ...)`` builds any model by its ``kind`` name; the modules are
imported lazily so a process pays the numba compile cost only for what it runs.
"""

from __future__ import annotations

import importlib

from anamnesis.agents.models.base import Model, ParamSpec

MODEL_KINDS: dict[str, tuple[str, str]] = {
    "autoregnn": ("anamnesis.agents.models.autoregnn", "AutoRegNN"),
    "autoregnn2": ("anamnesis.agents.models.autoregnn", "AutoRegNN2"),
    "unlearn": ("anamnesis.agents.models.unlearn", "Unlearn"),
    "neuron": ("anamnesis.agents.models.neuron", "Neuron"),
}


def model_class(kind: str) -> type:
    """The class implementing ``kind``; ``ValueError`` naming the known kinds otherwise."""
    try:
        module_name, class_name = MODEL_KINDS[kind]
    except KeyError:
        raise ValueError(
            f"unknown model {kind!r}; known models: {', '.join(sorted(MODEL_KINDS))}") from None
    return getattr(importlib.import_module(module_name), class_name)


def create_model(kind: str, **kwargs: object) -> Model:
    """Construct a model of ``kind`` with constructor arguments ``kwargs``."""
    return model_class(kind)(**kwargs)


__all__ = ["MODEL_KINDS", "Model", "ParamSpec", "create_model", "model_class"]
