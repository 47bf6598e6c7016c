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
#: Kinds that need an optional extra and a file (their constructors have no defaults to
#: build from, so the places that build every kind with its defaults skip them).
EXTRA_KINDS: dict[str, tuple[str, str]] = {
    "latent": ("anamnesis.agents.models.latent", "Latent"),   # [neural]: torch
}


def model_class(kind: str) -> type:
    """The class implementing ``kind``; ``ValueError`` naming the known kinds otherwise."""
    known = {**MODEL_KINDS, **EXTRA_KINDS}
    try:
        module_name, class_name = known[kind]
    except KeyError:
        raise ValueError(f"unknown model {kind!r}; known models: "
                         f"{', '.join(sorted(known))}") from None
    return getattr(importlib.import_module(module_name), class_name)


def create_model(kind: str, **kwargs: object) -> Model:
    """Construct a model of ``kind`` with constructor arguments ``kwargs``."""
    return model_class(kind)(**kwargs)


__all__ = ["EXTRA_KINDS", "MODEL_KINDS", "Model", "ParamSpec", "create_model", "model_class"]
