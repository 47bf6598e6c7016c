"""The contract every learning synth of anamnesis keeps.

A model is a real-time processor shaped like a SuperCollider UGen or a JUCE
AudioProcessor (DESIGN "The models"):

* the constructor is *prepare*: it allocates every state array once, sized from
  the model's shape and ``max_block`` (frames);
* ``process(x, mod=None, out=None)`` runs one numba kernel over preallocated
  state; given ``out`` it allocates nothing, and any split of a signal into
  blocks of 0..n frames gives bit-identical output to one call;
* ``reset(seed)`` re-initialises the learnt state.

Parameters are validated here, at the edge, by :class:`ParamSpec`; kernels
never see an invalid value. A parameter may be given per block (a scalar) or,
for the parameters a model marks ``per_sample``, per sample as an array of
``frames`` values in ``mod`` (audio-rate modulation, as the seeds modulate the
learning rate by the input signal itself).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal, Protocol, runtime_checkable

import numpy as np

Scale = Literal["lin", "log"]
ParamKind = Literal["float", "int", "bool", "choice", "array"]


@dataclass(frozen=True)
class ParamSpec:
    """Description and validator of one model parameter.

    ``minimum``/``maximum`` bound every element (inclusive). ``scale`` tells a
    user interface how to draw a slider ("log" for learning rates and ridge,
    whose useful values span decades). ``kind`` is "float", "int", "bool"
    (0/1), "choice" (one of ``choices``, a string) or "array" (``size``
    floats, or a scalar broadcast to all of them). ``per_sample`` marks
    parameters that ``process`` also accepts as audio-rate arrays in ``mod``.
    ``aliases`` are other names the parameter answers to in the agent's words that
    every model shares (``"lr"`` for Unlearn's λ, which the seeds call the learning
    rate), so that one OSC message reaches the same thing in every model.
    """

    name: str
    default: object
    minimum: float = -math.inf
    maximum: float = math.inf
    unit: str = ""
    scale: Scale = "lin"
    description: str = ""
    kind: ParamKind = "float"
    choices: tuple[str, ...] = ()
    size: int | None = None
    per_sample: bool = False
    aliases: tuple[str, ...] = ()

    def validate(self, value: object) -> object:
        """Return ``value`` checked and normalised, or raise ``ValueError``.

        Floats come back as ``float``, ints and bools as ``int``, choices as
        ``str`` and arrays as a fresh float64 array of ``size`` elements.
        """
        if self.kind == "choice":
            if not isinstance(value, str) or value not in self.choices:
                raise ValueError(
                    f"{self.name} must be one of {', '.join(self.choices)}; got {value!r}")
            return value
        if self.kind == "array":
            arr = np.asarray(value, dtype=np.float64)
            if arr.ndim == 0:
                arr = np.full(self.size or 1, float(arr))
            if arr.ndim != 1 or (self.size is not None and arr.shape[0] != self.size):
                raise ValueError(
                    f"{self.name} must be a scalar or {self.size} values; got shape {arr.shape}")
            self._check_range(arr)
            return arr.copy()
        if isinstance(value, (str, bytes)) or np.ndim(value) != 0:
            raise ValueError(f"{self.name} must be a single number; got {value!r}")
        try:
            number = float(value)  # type: ignore[arg-type]
        except (TypeError, ValueError):
            raise ValueError(f"{self.name} must be a number; got {value!r}") from None
        if self.kind in ("int", "bool"):
            if not number.is_integer():
                raise ValueError(f"{self.name} must be a whole number; got {value!r}")
            if self.kind == "bool" and number not in (0.0, 1.0):
                raise ValueError(f"{self.name} must be 0 or 1; got {value!r}")
            self._check_range(np.array([number]))
            return int(number)
        self._check_range(np.array([number]))
        return number

    def validate_block(self, values: np.ndarray, frames: int) -> np.ndarray:
        """Check an audio-rate array of ``frames`` values for a ``per_sample`` parameter."""
        if not self.per_sample:
            raise ValueError(f"{self.name} cannot be modulated per sample")
        arr = np.asarray(values, dtype=np.float64)
        if arr.shape != (frames,):
            raise ValueError(
                f"{self.name} modulation must have shape ({frames},); got {arr.shape}")
        self._check_range(arr)
        return arr

    def _check_range(self, arr: np.ndarray) -> None:
        if arr.size == 0:
            return
        # min/max propagate NaN and keep ±inf, so two reductions check finiteness
        # too, without the temporary array np.isfinite would allocate per block.
        lo, hi = float(np.min(arr)), float(np.max(arr))
        if not (math.isfinite(lo) and math.isfinite(hi)):
            raise ValueError(f"{self.name} must be finite")
        if lo < self.minimum or hi > self.maximum:
            bad = lo if lo < self.minimum else hi
            raise ValueError(
                f"{self.name} must be in [{self.minimum:g}, {self.maximum:g}]"
                f"{' ' + self.unit if self.unit else ''}; got {bad:g}")

    def describe(self) -> dict[str, object]:
        """A JSON-ready description (for OSCQuery, the REST API and the dashboard)."""
        out: dict[str, object] = {
            "name": self.name, "kind": self.kind, "unit": self.unit, "scale": self.scale,
            "description": self.description, "per_sample": self.per_sample,
        }
        if self.kind == "choice":
            out["choices"] = list(self.choices)
            out["default"] = self.default
        else:
            out["min"] = None if math.isinf(self.minimum) else self.minimum
            out["max"] = None if math.isinf(self.maximum) else self.maximum
            default = self.default
            out["default"] = default.tolist() if isinstance(default, np.ndarray) else default
        if self.size is not None:
            out["size"] = self.size
        if self.aliases:
            out["aliases"] = list(self.aliases)
        return out


@runtime_checkable
class Model(Protocol):
    """What the agent process, the hub and the renderer rely on."""

    kind: str
    sample_rate: int
    max_block: int
    #: Channels ``process`` takes: 1 means ``x`` of shape (frames,), more (frames, channels).
    input_channels: int
    #: State keys whose arrays, flattened and concatenated in this order, are the
    #: weight vector the outside world reads and writes (OSC ``/weights``, the dashboard).
    WEIGHT_KEYS: tuple[str, ...]

    def process(self, x: np.ndarray, mod: dict[str, np.ndarray] | None = None,
                out: np.ndarray | None = None) -> np.ndarray: ...
    def set_param(self, name: str, value: object) -> None: ...
    def apply_param(self, name: str, value: object) -> None: ...  # checked already
    def params(self) -> dict[str, object]: ...
    def param_specs(self) -> dict[str, ParamSpec]: ...
    def get_state(self) -> dict[str, np.ndarray]: ...
    def set_state(self, state: dict[str, np.ndarray]) -> None: ...
    def reset(self, seed: int | None = None) -> None: ...
    def stats(self) -> dict[str, float]: ...


@dataclass
class Counters:
    """Event counters a model keeps (read by telemetry, never reset by it)."""

    blowups: int = 0
    nonfinite_inputs: int = 0
    extra: dict[str, int] = field(default_factory=dict)


#: Byte alignment of kernel state arrays (a cache line; two AVX-512 vectors of float64).
STATE_ALIGN = 64
#: Bytes kept free after each state array (beyond any distance a vectorised loop checks).
STATE_GAP = 1024


def state_arrays(specs: Mapping[str, tuple[int | tuple[int, ...], type]]) -> dict[str, np.ndarray]:
    """Zeroed arrays for a kernel's state, ``name -> (shape, dtype)``, carved in order from
    one buffer, each starting on a :data:`STATE_ALIGN`-byte boundary with
    :data:`STATE_GAP` bytes free after it.

    A kernel compiled with reassociation (``fastmath``) vectorises its reductions, and
    the code LLVM then runs depends on where the arrays lie: it peels loops to an
    alignment, and it checks at run time how far apart two arrays are before taking
    the vector path. Separately allocated state puts those distances at the heap's
    whim, and two models of one seed drift an ulp apart within a second. Carved from
    one buffer at fixed offsets, a model's output is a function of its seed and its
    input alone (block-wise equals one-shot, rehearsals bit-identical)."""
    offsets = {}
    size = 0
    for name, (shape, dtype) in specs.items():
        n = int(np.prod(shape)) * np.dtype(dtype).itemsize
        offsets[name] = size
        size += -(-n // STATE_ALIGN) * STATE_ALIGN + STATE_GAP
    buf = np.zeros(size + STATE_ALIGN, dtype=np.uint8)
    base = -buf.ctypes.data % STATE_ALIGN
    out = {}
    for name, (shape, dtype) in specs.items():
        n = int(np.prod(shape)) * np.dtype(dtype).itemsize
        start = base + offsets[name]
        out[name] = buf[start:start + n].view(dtype).reshape(shape)
    return out


def check_size(name: str, value: object, minimum: int, maximum: int) -> int:
    """Validate a structural size (neurons, inputs, frames) given to a constructor."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise ValueError(f"{name} must be a whole number; got {value!r}")
    if not minimum <= int(value) <= maximum:
        raise ValueError(f"{name} must be in [{minimum}, {maximum}]; got {value}")
    return int(value)


def check_block(x: np.ndarray, channels: int | None = None) -> np.ndarray:
    """Return ``x`` as a float64 array of shape (frames,) or (frames, channels).

    Raises ``ValueError`` for another shape. Does not copy a float64 input.
    """
    arr = np.asarray(x, dtype=np.float64)
    if channels is None:
        if arr.ndim != 1:
            raise ValueError(f"input must have shape (frames,); got {arr.shape}")
    elif arr.ndim != 2 or arr.shape[1] != channels:
        raise ValueError(f"input must have shape (frames, {channels}); got {arr.shape}")
    return arr


def flat_weights(model: Model) -> np.ndarray:
    """``model``'s flat weight vector: its ``WEIGHT_KEYS`` state arrays, raveled and
    concatenated in that order (what OSC ``/weights`` reads)."""
    state = model.get_state()
    return np.concatenate([np.asarray(state[k], dtype=np.float64).ravel()
                           for k in model.WEIGHT_KEYS])


def set_flat_weights(model: Model, flat: np.ndarray) -> None:
    """Set ``model``'s weights from a vector laid out as :func:`flat_weights`'s
    (``ValueError`` on a wrong length; the model checks the values)."""
    state = model.get_state()
    vec = np.asarray(flat, dtype=np.float64).ravel()
    update, pos = {}, 0
    for key in model.WEIGHT_KEYS:
        shape = np.shape(state[key])
        size = int(np.prod(shape))
        update[key] = vec[pos:pos + size].reshape(shape)
        pos += size
    if pos != vec.size:
        raise ValueError(f"weights must have {pos} values; got {vec.size}")
    model.set_state(update)
