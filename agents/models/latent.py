"""Latent: a trained neural model in the nn~ convention as an agent (seed 004).

"You will hear how RAVE tries to [reproduce] the original sound based on the data used
to train the model": the agent's microphone goes through a TorchScript model exported
for nn~ (:mod:`~anamnesis.agents.models.nn_convention`), ``encode`` -> the latent,
steered -> ``decode``, or one audio-to-audio method (``forward``).

Streaming (both inference modes give the same samples)
======================================================

The model runs once per *chunk* of ``chunk`` samples (default 2048 — seed 004's "2048
samples each block = 43 ms" — and a multiple of the encoder's ratio R), never per
audio block. Chunk ``p`` is the microphone's samples ``[pN, (p+1)N)``; it is handed to
the model when its last sample arrives, and its output plays during ``[(p+2)N,
(p+3)N)``: the agent's latency is ``2N`` samples (:attr:`Latent.latency`, 85 ms at
2048 and 48 kHz; a streaming model's own delay comes on top). The model thus has one
whole chunk, 43 ms, to compute.

* On a worker thread (the live agent calls :meth:`Latent.start_worker` once, after
  building the model): :meth:`Latent.process`, on the audio thread, only copies
  samples and, once per chunk, the steering values into the job and releases a
  semaphore. A chunk whose result is not ready when it is due plays silence and
  counts as ``late``; a chunk that finds the worker still busy is skipped
  (``dropped``). The audio thread never waits for the model.
* Inline (the default: rehearsals, tests, and every throwaway model the hub builds to
  describe parameters): the model runs inside ``process`` at the chunk's end, so a
  rehearsal is deterministic; the output is what the worker gives when it is on time.
  Constructing a model starts no thread.

The latent, steerable (encode -> decode only)
=============================================

The encoder gives ``z`` of shape ``(L, N/R)``; before the decoder, every frame is::

    z <- held                           when hold = 1 (the encoder's last frame when hold went on)
    z <- scale * z + bias               per dimension (L values each)
    z <- z + blend * (pose - z)         toward a stored latent "pose" (blend 0..1)
    z <- z + noise * N(0, 1)            seeded by the agent's seed

The steering values in effect when a chunk is handed over apply to the whole chunk.
The model's own attributes (``get_attributes()``: RAVE's ``temperature`` ...) are
parameters too, applied by the inference side before its next call; one named like
something the agent answers to itself (``gain``, ``mute``, ``reset`` ...,
:data:`AGENT_NAMES`) is the parameter ``model_<name>``.

``/weights`` of a latent agent is its latent: :meth:`Latent.get_state` ``["latent"]`` is
the mean over the last chunk's frames of the steered latent (L values), and writing it
(:meth:`Latent.set_state`) sets the pose and blends fully to it — drawn on the
dashboard's multislider, the latent goes where it was drawn.
"""

from __future__ import annotations

import math
import threading
import time
from typing import Any

import numpy as np

from anamnesis.agents.models.base import Counters, ParamSpec, check_block, check_size
from anamnesis.agents.models.nn_convention import ScriptedModel, load_scripted
from anamnesis.agents.protocol.oscmap import COMMANDS

#: Samples per model call unless the config says (seed 004's nn~ buffer).
DEFAULT_CHUNK = 2048
#: Largest chunk (samples): 1.4 s at 48 kHz.
MAX_CHUNK = 65536
#: Range of the per-dimension bias and of the pose (latent units; RAVE's latents lie within a few units).
LATENT_RANGE = 8.0
#: Names an agent answers to itself (its safety chain's gain and mute, its commands): a
#: model attribute of one of these names is the parameter ``model_<name>``.
AGENT_NAMES = frozenset({"gain", "mute", *(address.strip("/") for address in COMMANDS)})
#: Warm-up calls at construction (TorchScript's profiling executor optimises on the first two).
WARM_CALLS = 3


def _latent_specs(dims: int) -> dict[str, ParamSpec]:
    if dims == 0:
        return {}
    return {
        "bias": ParamSpec("bias", 0.0, -LATENT_RANGE, LATENT_RANGE, "", "lin",
                          "added to every latent dimension (after scale)", kind="array",
                          size=dims),
        "scale": ParamSpec("scale", 1.0, -4.0, 4.0, "", "lin",
                           "multiplies every latent dimension", kind="array", size=dims),
        "pose": ParamSpec("pose", 0.0, -LATENT_RANGE, LATENT_RANGE, "", "lin",
                          "a stored latent to blend toward", kind="array", size=dims),
        "blend": ParamSpec("blend", 0.0, 0.0, 1.0, "", "lin",
                           "how far the latent moves toward the pose (1: the pose alone)"),
        "noise": ParamSpec("noise", 0.0, 0.0, LATENT_RANGE, "", "lin",
                           "standard deviation of the Gaussian noise added to the latent"),
        "hold": ParamSpec("hold", 0, 0, 1, "", "lin",
                          "freeze the encoder's latent at its last frame (steering still acts)",
                          kind="bool"),
    }


def _attribute_spec(name: str, value: Any) -> ParamSpec | None:
    """A parameter for one of the model's own attributes, typed by its current value."""
    text = f"the model's own attribute {name}"
    if isinstance(value, bool):
        return ParamSpec(name, int(value), 0, 1, "", "lin", text, kind="bool")
    if isinstance(value, int):
        return ParamSpec(name, value, description=text, kind="int")
    if isinstance(value, float) and math.isfinite(value):
        return ParamSpec(name, value, description=text)
    return None   # strings, lists, tensors: read-only, not steered from OSC


class Latent:
    """A TorchScript model in the nn~ convention on the agent's microphone (module docstring).

    ``path``: the ``.ts`` file. ``method``: "auto" (encode -> decode when the model has
    both, else ``forward``), "encode_decode", or the name of an audio-to-audio method.
    ``chunk``: samples per model call (a multiple of the encoder's ratio; default
    :data:`DEFAULT_CHUNK`, raised to the ratio; 0 means that default).
    """

    kind = "latent"
    input_channels = 1
    WEIGHT_KEYS = ("latent",)

    def __init__(self, path: str = "", method: str = "auto", chunk: int = 0,
                 seed: int = 0, sample_rate: int = 48000, max_block: int = 4096) -> None:
        if not path:
            raise ValueError("the latent model needs path = the .ts file of an nn~ model")
        self.sample_rate = check_size("sample_rate", sample_rate, 1000, 768000)
        self.max_block = check_size("max_block", max_block, 1, 1 << 20)
        self.seed = check_size("seed", seed, 0, 2**63 - 1)
        self.scripted: ScriptedModel = load_scripted(path)
        self.path = str(self.scripted.path)
        self.method, self.dims, ratio = self._pipeline(method)
        if chunk == 0:
            chunk = -(-max(DEFAULT_CHUNK, ratio) // ratio) * ratio
        self.chunk = check_size("chunk", chunk, 1, MAX_CHUNK)
        if self.chunk % ratio:
            raise ValueError(f"chunk must be a multiple of the model's ratio {ratio}; "
                             f"got {self.chunk}")
        self.ratio = ratio
        #: Samples from a sound at the microphone to its echo at the speaker (2 chunks).
        self.latency = 2 * self.chunk
        in_ch = self.scripted.methods["encode" if self.method == "encode_decode"
                                      else self.method].in_channels
        self._specs = _latent_specs(self.dims)
        self._attr_specs: dict[str, ParamSpec] = {}
        self._attr_names: dict[str, str] = {}          # parameter -> the model's attribute
        for attr in self.scripted.attributes:
            name = f"model_{attr}" if attr in AGENT_NAMES or attr in self._specs else attr
            spec = _attribute_spec(name, self.scripted.get_attribute(attr))
            if spec is not None:
                self._attr_specs[name] = spec
                self._attr_names[name] = attr
        self._specs.update(self._attr_specs)
        self._params: dict[str, object] = {}
        for name, spec in self._specs.items():
            self._params[name] = (np.full(self.dims, float(spec.default))
                                  if spec.kind == "array" else spec.default)
        n, dims = self.chunk, self.dims
        # the audio thread's side
        self._fill = 0                      # samples of the current chunk received
        self._chunk_index = 0               # p: the chunk being received
        self._generation = 0                # bumped by reset: stale jobs are ignored
        self._inbuf = np.zeros(n)
        self._zeros = np.zeros(n)
        self._out = np.zeros((2, n))        # y of chunks p-1 and p-2, by p % 2
        self._ready = np.full(2, -1, dtype=np.int64)
        self._play = self._zeros
        # the job handed to the model (written by the audio thread only while idle)
        self._job_audio = np.zeros((in_ch, n), dtype=np.float32)
        self._job_steer = np.zeros((3, max(dims, 1)))   # bias, scale, pose
        self._job_scalars = np.zeros(3)                 # blend, noise, hold
        self._job_index = 0
        self._job_generation = 0
        self._pending_attrs: dict[str, object] = {}
        self._busy = False
        # the inference side's state
        self._held = np.zeros(max(dims, 1))
        self._latent = np.zeros(dims)
        self._rng = np.random.default_rng(self.seed)
        self.counters = Counters(extra={"chunks": 0, "late": 0, "dropped": 0, "errors": 0})
        self._inference_ms = np.zeros(2)    # last, max
        self.last_error: str | None = None
        for _ in range(WARM_CALLS):
            self._infer(np.zeros((in_ch, n), dtype=np.float32), steer=False)
        self._stop = False
        self._wake = threading.Semaphore(0)
        self._worker: threading.Thread | None = None

    def _pipeline(self, method: str) -> tuple[str, int, int]:
        """(method, latent dimensions L, samples per model value R) for ``method``."""
        methods = self.scripted.methods
        name = self.scripted.path.name
        if method == "auto":
            method = ("encode_decode" if "encode" in methods and "decode" in methods
                      else "forward")
        if method == "encode_decode":
            enc, dec = methods.get("encode"), methods.get("decode")
            if enc is None or dec is None:
                raise ValueError(f"{name} has no encode and decode methods "
                                 f"(methods: {', '.join(methods)})")
            if enc.in_ratio != 1 or dec.out_ratio != 1:
                raise ValueError(f"{name}: encode must take audio and decode give audio "
                                 f"(encode_params {enc}, decode_params {dec})")
            if (enc.out_channels, enc.out_ratio) != (dec.in_channels, dec.in_ratio):
                raise ValueError(f"{name}: encode gives {enc.out_channels} channels every "
                                 f"{enc.out_ratio} samples but decode takes "
                                 f"{dec.in_channels} every {dec.in_ratio}")
            return method, enc.out_channels, enc.out_ratio
        shape = methods.get(method)
        if shape is None:
            raise ValueError(f"{name} has no method {method!r} "
                             f"(methods: {', '.join(methods)}, or encode_decode)")
        if shape.in_ratio != 1 or shape.out_ratio != 1:
            raise ValueError(f"{name}: {method} is not audio to audio ({method}_params "
                             f"[{shape.in_channels}, {shape.in_ratio}, {shape.out_channels}, "
                             f"{shape.out_ratio}])")
        return method, 0, 1

    # --- audio -----------------------------------------------------------------------

    def process(self, x: np.ndarray, mod: dict[str, np.ndarray] | None = None,
                out: np.ndarray | None = None) -> np.ndarray:
        """Microphone block ``x`` (frames,) in; the model's output of ``latency`` samples
        ago out. Copies only (once :meth:`start_worker` has run); allocates nothing given
        ``out``; any split into blocks gives the same samples."""
        x = check_block(x)
        frames = x.shape[0]
        if out is None:
            out = np.empty(frames)
        elif not (isinstance(out, np.ndarray) and out.dtype == np.float64
                  and out.shape == (frames,)):
            raise ValueError(f"out must be a float64 array of shape ({frames},)")
        if mod:
            raise ValueError("the latent model has no per-sample parameters")
        n, pos = self.chunk, 0
        while pos < frames:
            k = min(frames - pos, n - self._fill)
            f = self._fill
            self._inbuf[f:f + k] = x[pos:pos + k]
            out[pos:pos + k] = self._play[f:f + k]
            self._fill = f + k
            pos += k
            if self._fill == n:
                self._chunk_done()
        return out

    def _chunk_done(self) -> None:
        """Chunk p complete: play chunk p-1's output next, hand chunk p to the model."""
        p = self._chunk_index
        self._fill = 0
        self._chunk_index = p + 1
        slot = (p - 1) % 2
        if p >= 1 and self._ready[slot] == p - 1:
            self._play = self._out[slot]
        else:
            self._play = self._zeros
            if p >= 1:
                self.counters.extra["late"] += 1
        if self._busy:
            self.counters.extra["dropped"] += 1
            return
        audio = self._job_audio
        np.copyto(audio, self._inbuf)           # broadcast over the model's input channels
        if self.dims:
            p_ = self._params
            self._job_steer[0] = p_["bias"]
            self._job_steer[1] = p_["scale"]
            self._job_steer[2] = p_["pose"]
            self._job_scalars[:] = (p_["blend"], p_["noise"], p_["hold"])
        self._job_index = p
        self._job_generation = self._generation
        self._busy = True
        if self._worker is None:
            self._run_job()
        else:
            self._wake.release()

    # --- inference (the worker thread, or inline) ---------------------------------------

    @property
    def inference(self) -> str:
        """"thread" once :meth:`start_worker` has run, else "inline"."""
        return "thread" if self._worker is not None else "inline"

    def start_worker(self) -> None:
        """Run the model on a worker thread of its own from the next chunk on (the live
        agent; module docstring). Idempotent; :meth:`close` stops it."""
        if self._worker is None:
            self._stop = False
            self._worker = threading.Thread(target=self._work, name="anamnesis-latent",
                                            daemon=True)
            self._worker.start()

    def _work(self) -> None:
        while True:
            self._wake.acquire()
            if self._stop:
                return
            self._run_job()

    def _run_job(self) -> None:
        p, generation = self._job_index, self._job_generation
        for name in list(self._pending_attrs):
            value = self._pending_attrs.pop(name)
            try:
                self.scripted.set_attribute(self._attr_names[name], value)
            except ValueError as exc:
                self.last_error = str(exc)
                self.counters.extra["errors"] += 1
        t0 = time.perf_counter()
        try:
            y = self._infer(self._job_audio, steer=True)
        except Exception as exc:  # a model that fails plays silence for the chunk, counted
            self.last_error = f"{type(exc).__name__}: {exc}"
            self.counters.extra["errors"] += 1
            y = None
        ms = 1e3 * (time.perf_counter() - t0)
        self._inference_ms[0] = ms
        self._inference_ms[1] = max(self._inference_ms[1], ms)
        if generation == self._generation:
            slot = p % 2
            if y is None:
                self._out[slot] = 0.0
            else:
                self._out[slot] = y
                bad = ~np.isfinite(self._out[slot])
                if bad.any():
                    self._out[slot][bad] = 0.0
                    self.counters.blowups += 1
            self._ready[slot] = p
            self.counters.extra["chunks"] += 1
        self._busy = False

    def _infer(self, audio: np.ndarray, *, steer: bool) -> np.ndarray:
        """One model call on ``audio`` (in_ch, N) float32 -> (N,) float64."""
        torch = self.scripted.torch
        bad = ~np.isfinite(audio)
        if bad.any():
            audio[bad] = 0.0
            self.counters.nonfinite_inputs += int(bad.sum())
        tensor = torch.from_numpy(audio)[None]
        if self.method != "encode_decode":
            y = self.scripted.call(self.method, tensor)
        else:
            z = self.scripted.call("encode", tensor)[0].numpy().astype(np.float64)
            if steer:
                z = self._steer(z)
            y = self.scripted.call("decode", torch.from_numpy(z.astype(np.float32))[None])
        y = y[0].numpy()
        return y.mean(axis=0) if y.shape[0] > 1 else y[0]

    def _steer(self, z: np.ndarray) -> np.ndarray:
        """The module docstring's latent transform of ``z`` (L, frames), in place."""
        bias, scale, pose = self._job_steer
        blend, noise, hold = self._job_scalars
        if hold:
            z[:] = self._held[:, None]
        else:
            self._held[:] = z[:, -1]
        z *= scale[:, None]
        z += bias[:, None]
        if blend:
            z += blend * (pose[:, None] - z)
        if noise:
            z += noise * self._rng.standard_normal(z.shape)
        self._latent[:] = z.mean(axis=1)
        return z

    def close(self) -> None:
        """Stop the worker thread, after its job in hand; inference is inline again."""
        worker = self._worker
        if worker is not None:
            self._stop = True
            self._wake.release()
            worker.join(timeout=5.0)
            self._worker = None

    # --- lifetime, parameters, state --------------------------------------------------

    def reset(self, seed: int | None = None) -> None:
        """Forget the audio in flight (silence for ``latency`` samples), re-seed the noise;
        steering values and the model's attributes are kept."""
        if seed is not None:
            self.seed = check_size("seed", seed, 0, 2**63 - 1)
        self._generation += 1
        self._rng = np.random.default_rng(self.seed)
        self._fill = 0
        self._chunk_index = 0
        self._ready[:] = -1
        self._play = self._zeros
        self._inbuf[:] = 0.0
        self._held[:] = 0.0

    def set_param(self, name: str, value: object) -> None:
        """Set parameter ``name`` (:meth:`param_specs`); ``ValueError`` if invalid."""
        spec = self._specs.get(name)
        if spec is None:
            raise ValueError(f"unknown parameter {name!r}; parameters: "
                             f"{', '.join(self._specs) or 'none'}")
        self.apply_param(name, spec.validate(value))

    def apply_param(self, name: str, value: object) -> None:
        """Apply a checked value; a model attribute reaches the model before its next call."""
        if name in self._attr_specs:
            self._pending_attrs[name] = value
            self._params[name] = value
        elif isinstance(self._params.get(name), np.ndarray):
            self._params[name][:] = value
        else:
            self._params[name] = value

    def params(self) -> dict[str, object]:
        """Current values (arrays copied)."""
        return {k: (v.copy() if isinstance(v, np.ndarray) else v) for k, v in self._params.items()}

    def param_specs(self) -> dict[str, ParamSpec]:
        """Steering of the latent (encode -> decode) and the model's own attributes."""
        return dict(self._specs)

    def get_state(self) -> dict[str, np.ndarray]:
        """``latent``: the steered latent of the last chunk (L,); the steering arrays."""
        state = {"latent": self._latent.copy()}
        if self.dims:
            for key in ("bias", "scale", "pose"):
                state[key] = self._params[key].copy()
        return state

    def set_state(self, state: dict[str, np.ndarray]) -> None:
        """Restore ``bias``/``scale``/``pose`` (a snapshot). ``latent`` written alone (the
        weights' path: OSC ``/weights``, the dashboard, a ``[[coupling]]``) sets the pose,
        clipped into its range, and blends fully to it; beside the other keys (a whole
        snapshot) it is what the latent was, and is not applied."""
        unknown = set(state) - {"latent", "bias", "scale", "pose"}
        if unknown:
            raise ValueError(f"unknown state {', '.join(sorted(unknown))} for a latent model")
        steer = set(state) == {"latent"}
        checked = {}
        for key, value in state.items():
            if key == "latent" and not steer:
                continue
            spec = self._specs.get("pose" if key == "latent" else key)
            if spec is None:
                if np.size(value) == 0:
                    continue               # a model without a latent: nothing to set
                raise ValueError(f"{self.scripted.path.name} has no latent to set ({key})")
            if key == "latent":            # a weights write (a coupling's noise ...): clipped in
                value = np.clip(np.nan_to_num(np.asarray(value, dtype=np.float64)),
                                spec.minimum, spec.maximum)
            checked[key] = spec.validate(value)
        for key, value in checked.items():
            if key == "latent":
                self.apply_param("pose", value)
                self.apply_param("blend", 1.0)
            else:
                self.apply_param(key, value)

    def stats(self) -> dict[str, float]:
        """Counters (``chunks``, ``late``, ``dropped``, ``errors``, ``blowups`` = non-finite
        model outputs, ``nonfinite_inputs``), ``latency_ms``, ``inference_ms`` (last) and
        ``inference_max_ms``, and ``model_rate``: the rate the model says it was trained
        at (0: it does not say; another rate than the agent's plays it transposed)."""
        out = {k: float(v) for k, v in self.counters.extra.items()}
        out.update(blowups=float(self.counters.blowups),
                   nonfinite_inputs=float(self.counters.nonfinite_inputs),
                   model_rate=float(self.scripted.sample_rate or 0),
                   latency_ms=1e3 * self.latency / self.sample_rate,
                   inference_ms=float(self._inference_ms[0]),
                   inference_max_ms=float(self._inference_ms[1]))
        return out


__all__ = ["AGENT_NAMES", "DEFAULT_CHUNK", "Latent"]
