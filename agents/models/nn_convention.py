"""TorchScript models in the nn~ convention, read as nn~'s backend reads them.

A model exported for nn~ (RAVE's ``rave export --streaming``, nn~'s own Python tools,
or ours) is a ``torch.jit.ScriptModule`` that says what it can do:

* ``get_methods()`` — the names of its audio methods (RAVE: ``encode``, ``decode``,
  ``forward``);
* a buffer ``<method>_params`` per method, four integers ``[in_ch, in_ratio, out_ch,
  out_ratio]``: the method takes ``in_ch`` channels at one value per ``in_ratio``
  samples and gives ``out_ch`` channels at one per ``out_ratio``. A streaming RAVE has
  ``encode_params = [1, 1, L, R]`` (audio in, L latent channels at one frame per R
  samples), ``decode_params = [L, R, 1, 1]`` and ``forward_params = [1, 1, 1, 1]``;
* ``get_attributes()`` (optional) with ``get_<a>()`` / ``set_<a>(value)`` for each.

A method is called on a float32 tensor of shape ``(1, in_ch, frames / in_ratio)`` and
returns ``(1, out_ch, frames / out_ratio)``. :func:`load_scripted` checks all of that
once, with one clear line per problem; :class:`ScriptedModel` then calls it.

torch is imported here lazily (the optional extra ``[neural]``): without it,
:func:`load_scripted` raises :class:`NeuralExtraMissing`, a ``ValueError`` saying how to
install it, so an agent or a config check fails with one line.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

#: What to tell a user without torch.
INSTALL_HINT = ("the latent model needs PyTorch, the optional extra [neural]: "
                "pip install 'anamnesis[neural]' (on these machines: pip install torch==2.13.0)")


class NeuralExtraMissing(ValueError):
    """torch is not installed (the ``[neural]`` extra)."""


def import_torch() -> Any:
    """``torch``, or :class:`NeuralExtraMissing` with the install line."""
    try:
        import torch
    except ImportError as exc:
        raise NeuralExtraMissing(f"{INSTALL_HINT} ({exc})") from None
    return torch


@dataclass(frozen=True)
class MethodShape:
    """One method's ``<method>_params``: channels and samples per value, in and out."""

    name: str
    in_channels: int
    in_ratio: int
    out_channels: int
    out_ratio: int


class ScriptedModel:
    """A loaded TorchScript model in the nn~ convention (checked by :func:`load_scripted`).

    ``methods`` maps each method to its :class:`MethodShape`; ``attributes`` lists the
    model's own settable attributes. ``call(method, tensor)`` runs one method under
    ``torch.inference_mode`` (the GIL is released while TorchScript computes)."""

    def __init__(self, path: Path, module: Any, methods: dict[str, MethodShape],
                 attributes: tuple[str, ...], sample_rate: int | None) -> None:
        self.path = path
        self.module = module
        self.methods = methods
        self.attributes = attributes
        #: The rate the model was trained at (its ``sr`` buffer or ``get_sample_rate()``), if it says.
        self.sample_rate = sample_rate
        #: The torch module (imported lazily, once).
        self.torch = import_torch()

    def call(self, method: str, tensor: Any) -> Any:
        """``method`` on ``tensor`` (float32, ``(1, in_ch, n)``), no autograd."""
        with self.torch.inference_mode():
            return getattr(self.module, method)(tensor)

    def get_attribute(self, name: str) -> Any:
        """The model's attribute ``name`` (its ``get_<name>()``)."""
        if name not in self.attributes:
            raise ValueError(f"{self.path.name} has no attribute {name!r}; "
                             f"attributes: {', '.join(self.attributes) or 'none'}")
        value = getattr(self.module, f"get_{name}")()
        return value[0] if isinstance(value, (list, tuple)) and len(value) == 1 else value

    def set_attribute(self, name: str, value: Any) -> None:
        """Set the model's attribute ``name`` (its ``set_<name>(value)``); ``ValueError``
        with the model's own message if it refuses."""
        if name not in self.attributes:
            raise ValueError(f"{self.path.name} has no attribute {name!r}; "
                             f"attributes: {', '.join(self.attributes) or 'none'}")
        try:
            result = getattr(self.module, f"set_{name}")(value)
        except Exception as exc:  # a TorchScript type error or the model's own check
            raise ValueError(f"{self.path.name}: set_{name}({value!r}) failed: "
                             f"{str(exc).strip().splitlines()[-1]}") from None
        if isinstance(result, int) and result not in (0, None):
            raise ValueError(f"{self.path.name}: set_{name}({value!r}) returned {result}")


def load_scripted(path: str | Path, *, threads: int = 1) -> ScriptedModel:
    """Load ``path`` with ``torch.jit.load`` on the CPU and check the nn~ convention.

    ``threads`` is torch's intra-op thread count for this process (1 in an agent: on a
    shared 2-core host two OpenMP threads spin and cost 2-5x the CPU, NEURAL.md).
    ``ValueError`` (one line) for a missing file, a file that is not TorchScript, or a
    model without ``get_methods()`` or with a malformed ``<method>_params``."""
    torch = import_torch()
    path = Path(path).expanduser()
    if not path.is_file():
        raise ValueError(f"latent model {str(path)!r}: no such file")
    if torch.get_num_threads() != threads:
        torch.set_num_threads(int(threads))
    try:
        with warnings.catch_warnings():   # torch 2.13+ calls TorchScript deprecated; nn~ needs it
            warnings.simplefilter("ignore", DeprecationWarning)
            module = torch.jit.load(str(path), map_location="cpu")
    except Exception as exc:  # zip, pickle or TorchScript errors: all one "not a model"
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ValueError(f"latent model {path.name}: not a TorchScript file ({first})") from None
    module.eval()
    if not hasattr(module, "get_methods"):
        raise ValueError(f"latent model {path.name}: no get_methods(); not an nn~ model "
                         f"(export it with nn_tilde or `rave export --streaming`)")
    methods = {}
    for name in module.get_methods():
        shape = _method_shape(module, path, str(name))
        methods[shape.name] = shape
    if not methods:
        raise ValueError(f"latent model {path.name}: get_methods() lists no method")
    attributes: tuple[str, ...] = ()
    if hasattr(module, "get_attributes"):
        attributes = tuple(str(a) for a in module.get_attributes()
                           if hasattr(module, f"get_{a}") and hasattr(module, f"set_{a}"))
    return ScriptedModel(path, module, methods, attributes, _model_rate(module))


def _method_shape(module: Any, path: Path, name: str) -> MethodShape:
    buffer = getattr(module, f"{name}_params", None)
    if buffer is None or not hasattr(module, name):
        raise ValueError(f"latent model {path.name}: method {name!r} is listed by "
                         f"get_methods() but has no {name}_params buffer or no method")
    values = [int(v) for v in buffer.reshape(-1).tolist()]
    if len(values) != 4 or min(values) < 1:
        raise ValueError(f"latent model {path.name}: {name}_params must be four positive "
                         f"integers [in_ch, in_ratio, out_ch, out_ratio]; got {values}")
    return MethodShape(name, *values)


def _model_rate(module: Any) -> int | None:
    for read in (lambda: module.sr, lambda: module.get_sample_rate()):
        try:
            value = read()
        except Exception:  # noqa: S112 - the model simply does not say
            continue
        value = value.item() if hasattr(value, "item") else value
        if isinstance(value, (int, float)) and math.isfinite(value) and value > 0:
            return int(value)
    return None


__all__ = ["INSTALL_HINT", "MethodShape", "NeuralExtraMissing", "ScriptedModel",
           "import_torch", "load_scripted"]
