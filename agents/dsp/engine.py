"""The audio-thread side of an agent: model + safety chain, fed block by block.

:class:`AgentEngine` is what an audio backend's clock calls, once per block,
through :meth:`AgentEngine.process_block` (the *audio thread*: PortAudio's
callback thread or the null clock's thread). Everything else in this module
runs on the asyncio thread. The two meet only in three places (DESIGN
"Concurrency inside an agent", STYLE 6):

* **Commands** — small immutable objects in a bounded single-producer,
  single-consumer queue (a ``collections.deque``, whose ``append`` and
  ``popleft`` are atomic under the GIL), drained at block start. Model
  parameters, reset, and every read or write of the model's state travel this
  way, so the asyncio side never sees a half-updated model.
* **Safety targets** — gain, mute and panic are single float stores into the
  safety chain's target array (lock-free, like a JUCE ``std::atomic<float>``
  parameter): panic must work even when the queue is full.
* **Telemetry** — preallocated arrays that only the audio thread writes
  (levels with meter ballistics, counters, a ring of callback durations); the
  asyncio side copies them when it wants. Every element is one aligned store,
  so a reader may see fields from neighbouring blocks but never a torn number.
  The model's own figures (``error_rms``, ``blowups``: scalars its kernel
  keeps) are read the same way, by ``AgentControl.telemetry`` on the loop,
  so the callback never builds a dict for them.

Error policy (STYLE 7, written once, here): :meth:`~AgentEngine.process_block`
never raises. On an exception it writes silence, keeps the exception in a
preallocated slot, counts it, and asks the event loop (``call_soon_threadsafe``,
at most one pending request) to log it. After :data:`RESET_AFTER_FAILED_BLOCKS`
failed blocks in a row the asyncio side resets the model.

State reads and writes (:meth:`~AgentEngine.call`) run a function on the model
at a block boundary and deliver its result to the loop. When the audio clock is
not running (before start, after stop) the function runs directly on the
asyncio thread. When the clock is running but no block comes within
``timeout`` (a stalled device), the request is withdrawn — an atomic claim
decides whether the audio thread or the asyncio side runs it, never both — and
it runs directly; a stalled clock is not inside ``process``, so this cannot
tear the state unless the clock resumes at that very instant (logged).
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from numba import njit

from anamnesis.agents.dsp.safety import SafetyChain
from anamnesis.agents.models.base import Model

log = logging.getLogger(__name__)

#: Callback durations kept for percentiles (blocks; 2048 ≈ 11 s at 48 kHz / 256).
DURATION_RING = 2048
#: Time constant of the RMS meters (s) and decay time constant of the peak meters (s).
RMS_TAU_S = 0.100
PEAK_TAU_S = 0.300
#: Consecutive failed blocks after which the model is reset.
RESET_AFTER_FAILED_BLOCKS = 50
#: Default wait for a block boundary before a state request runs directly (s).
CALL_TIMEOUT_S = 1.0

#: Largest level a meter shows (linear; +120 dBFS): keeps telemetry finite.
_METER_LIMIT = 1.0e6

# Telemetry slots (float64, written by the audio thread only).
TL_OUT_MS, TL_OUT_PEAK, TL_IN_MS, TL_IN_PEAK = 0, 1, 2, 3
TL_BLOCKS, TL_FRAMES, TL_ERRORS, TL_CONSECUTIVE_ERRORS = 4, 5, 6, 7
TL_COMMANDS, TL_COMMAND_ERRORS, TL_DURATIONS, TL_LAST_NS = 8, 9, 10, 11
N_TELEMETRY = 12


class QueueFull(ValueError):
    """The command queue is full: the audio thread is not draining it fast enough."""


@dataclass(frozen=True, slots=True)
class SetParam:
    """Set model parameter ``name`` to an already validated ``value``."""

    name: str
    value: object


@dataclass(frozen=True, slots=True)
class Reset:
    """Re-initialise the model's learnt state (``seed`` None: its current seed)."""

    seed: int | None


class _Reply:
    """Where a :class:`ModelCall` answers: a future on the loop, claimed exactly once.

    ``claim`` pops the only element of a list; ``list.pop`` is atomic under the
    GIL, so of the audio thread and the asyncio side exactly one wins.
    """

    __slots__ = ("_token", "loop", "future")

    def __init__(self, loop: asyncio.AbstractEventLoop, future: asyncio.Future) -> None:
        self._token = [True]
        self.loop = loop
        self.future = future

    def claim(self) -> bool:
        try:
            self._token.pop()
        except IndexError:
            return False
        return True


def _settle(future: asyncio.Future, result: object, error: BaseException | None) -> None:
    if future.done():  # the waiter gave up (cancelled)
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(result)


@dataclass(frozen=True, slots=True)
class ModelCall:
    """Run ``fn(model)`` at a block boundary and send its result (or exception) back."""

    fn: Callable[[Model], object]
    reply: _Reply


Command = SetParam | Reset | ModelCall


@dataclass(frozen=True, slots=True)
class FollowInput:
    """Parameter ``param`` follows the mic, mapped from [-1, 1] to [``lo``, ``hi``]
    (a preset's audio-rate modulation, as ``agents.presets.FollowInput``)."""

    param: str
    lo: float
    hi: float


@njit(cache=True)
def _meter(x, n, tele, i_ms, i_peak, k_ms, k_peak):
    """Update the smoothed mean square and the decaying peak in ``tele`` from ``x[:n]``."""
    if n == 0:
        return
    ss = 0.0
    pk = 0.0
    for i in range(n):
        a = abs(x[i])
        if a != a:  # NaN: not a level (the safety chain counts it)
            continue
        if a > _METER_LIMIT:  # Inf or huge: the meter saturates instead of overflowing
            a = _METER_LIMIT
        ss += a * a
        if a > pk:
            pk = a
    tele[i_ms] += (ss / n - tele[i_ms]) * k_ms
    held = tele[i_peak] * k_peak
    tele[i_peak] = pk if pk > held else held


@njit(cache=True)
def _follow(x, n, lo, hi, out):
    """``out[:n] = lo + (clip(x, -1, 1) + 1) / 2 * (hi - lo)`` (NaN maps to ``lo``)."""
    for i in range(n):
        v = x[i]
        if not (v >= -1.0):
            v = -1.0
        elif v > 1.0:
            v = 1.0
        out[i] = lo + (v + 1.0) * 0.5 * (hi - lo)


def input_channels(model: Model) -> int:
    """Input channels ``model.process`` expects (the contract's ``input_channels``)."""
    return int(model.input_channels)


class AgentEngine:
    """Model + safety chain + command queue + telemetry of one agent.

    ``block`` is the largest number of frames a backend hands to
    :meth:`process_block` (longer blocks are processed in pieces); it and
    ``sample_rate`` (Hz) must match the model's. ``ceiling_db`` (dBFS) is the
    safety chain's ceiling; ``queue_size`` bounds the command queue; ``follow``
    lists parameters that track the mic (audio-rate modulation). A model with
    several input channels hears the mic on each of them.
    """

    def __init__(self, model: Model, *, block: int, sample_rate: int, ceiling_db: float = -1.0,
                 queue_size: int = 256, follow: Sequence[FollowInput] = ()) -> None:
        if not isinstance(block, int) or not 1 <= block <= 8192:
            raise ValueError(f"block must be a whole number in [1, 8192] frames; got {block!r}")
        if model.sample_rate != sample_rate:
            raise ValueError(f"the model runs at {model.sample_rate} Hz, the engine at "
                             f"{sample_rate} Hz")
        if not isinstance(queue_size, int) or not 1 <= queue_size <= 65536:
            raise ValueError(f"queue_size must be in [1, 65536]; got {queue_size!r}")
        specs = model.param_specs()
        for f in follow:
            if f.param not in specs:
                raise ValueError(f"cannot follow the input with unknown parameter {f.param!r}")
            specs[f.param].validate(f.lo)
            specs[f.param].validate(f.hi)
        self.model = model
        self.block = block
        self.sample_rate = int(sample_rate)
        self.queue_size = queue_size
        self.safety = SafetyChain(self.sample_rate, block, ceiling_db)
        self._chunk = min(block, int(model.max_block))
        self._channels = input_channels(model)
        self._mic = np.zeros(block)
        self._in = np.zeros((block, self._channels)) if self._channels > 1 else self._mic
        self._raw = np.zeros(block)
        self._out = np.zeros(block)
        self._per_sample = [(f, np.zeros(block)) for f in follow if specs[f.param].per_sample]
        self._mod_full = {f.param: buf for f, buf in self._per_sample}  # reused every full block
        self._per_block = [f for f in follow if not specs[f.param].per_sample]
        self._queue: deque[Command] = deque()
        self._tele = np.zeros(N_TELEMETRY)
        self._durations = np.zeros(DURATION_RING, dtype=np.int64)
        self._k_ms_full = 1.0 - math.exp(-block / (RMS_TAU_S * sample_rate))
        self._k_peak_full = math.exp(-block / (PEAK_TAU_S * sample_rate))
        #: The last exception of the audio thread (preallocated slot; read on the loop).
        self.last_error: BaseException | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._report_pending = False
        self._reported_errors = 0
        self._last_log = -1e9
        #: True while a backend's clock calls process_block (set by the backend).
        self.clock_running = False

    # --- audio thread ---------------------------------------------------------------
    def process_block(self, mic: np.ndarray, speaker: np.ndarray) -> None:
        """Fill ``speaker`` (frames,) from ``mic`` (frames,), any float dtype, strided views
        allowed. Audio thread only; never raises; allocates nothing but small views."""
        t0 = time.perf_counter_ns()
        tele = self._tele
        try:
            self._drain()
            n = speaker.shape[0]
            pos = 0
            while pos < n:
                m = min(self._chunk, n - pos)
                if m == n:
                    self._run(mic, speaker, m)
                else:
                    self._run(mic[pos:pos + m], speaker[pos:pos + m], m)
                pos += m
            tele[TL_CONSECUTIVE_ERRORS] = 0.0
        except Exception as exc:  # the one error policy: silence, record, count, report
            self._fail(exc, speaker)
        tele[TL_BLOCKS] += 1.0
        t1 = time.perf_counter_ns()
        count = int(tele[TL_DURATIONS])
        self._durations[count % DURATION_RING] = t1 - t0
        tele[TL_DURATIONS] = count + 1
        tele[TL_LAST_NS] = t1

    def _run(self, mic: np.ndarray, speaker: np.ndarray, m: int) -> None:
        full = m == self.block
        x = self._mic if full else self._mic[:m]
        np.copyto(x, mic)
        if self._channels > 1:
            xin = self._in if full else self._in[:m]
            for c in range(self._channels):
                xin[:, c] = x
        else:
            xin = x
        mod = None
        if self._per_sample:
            mod = self._mod_full if full else {}
            for f, buf in self._per_sample:
                b = buf if full else buf[:m]
                _follow(x, m, f.lo, f.hi, b)
                if not full:
                    mod[f.param] = b
        for f in self._per_block:
            v = min(1.0, max(-1.0, float(x[0]))) if m else 0.0
            self.model.apply_param(f.param, f.lo + (v + 1.0) * 0.5 * (f.hi - f.lo))
        raw = self._raw if full else self._raw[:m]
        out = self._out if full else self._out[:m]
        self.model.process(xin, mod, out=raw)
        self.safety.process(raw, out=out)
        np.copyto(speaker, out)
        tele = self._tele
        if full:
            k_ms, k_peak = self._k_ms_full, self._k_peak_full
        else:
            k_ms = 1.0 - math.exp(-m / (RMS_TAU_S * self.sample_rate))
            k_peak = math.exp(-m / (PEAK_TAU_S * self.sample_rate))
        _meter(out, m, tele, TL_OUT_MS, TL_OUT_PEAK, k_ms, k_peak)
        _meter(x, m, tele, TL_IN_MS, TL_IN_PEAK, k_ms, k_peak)
        tele[TL_FRAMES] += m

    def _drain(self) -> None:
        queue = self._queue
        while queue:
            command = queue.popleft()
            self._tele[TL_COMMANDS] += 1.0
            try:
                if isinstance(command, SetParam):   # validated once, by AgentControl
                    self.model.apply_param(command.name, command.value)
                elif isinstance(command, ModelCall):
                    self._answer(command)
                else:
                    self.model.reset(command.seed)
            except Exception as exc:  # a rejected command fails alone, the block goes on
                self._tele[TL_COMMAND_ERRORS] += 1.0
                self.last_error = exc
                self._request_report()

    def _answer(self, call: ModelCall) -> None:
        if not call.reply.claim():
            return  # withdrawn: the asyncio side ran it after a timeout
        try:
            result, error = call.fn(self.model), None
        except Exception as exc:
            result, error = None, exc
        try:
            call.reply.loop.call_soon_threadsafe(_settle, call.reply.future, result, error)
        except RuntimeError:  # the loop is closed: nobody is waiting any more
            self._tele[TL_COMMAND_ERRORS] += 1.0

    def _fail(self, exc: Exception, speaker: np.ndarray) -> None:
        try:
            speaker.fill(0.0)
        except Exception as fill_error:  # not an array at all: nothing left to write to
            exc = fill_error
        self.last_error = exc
        self._tele[TL_ERRORS] += 1.0
        self._tele[TL_CONSECUTIVE_ERRORS] += 1.0
        self._request_report()

    def _request_report(self) -> None:
        loop = self._loop
        if loop is None or self._report_pending:
            return
        self._report_pending = True
        try:
            loop.call_soon_threadsafe(self._report)
        except RuntimeError:  # loop closed during shutdown; the count remains
            self._report_pending = False

    # --- asyncio thread -------------------------------------------------------------
    def attach_loop(self, loop: asyncio.AbstractEventLoop) -> None:
        """Let the audio thread report errors to ``loop`` (call once, from the loop)."""
        self._loop = loop

    def _report(self) -> None:
        """Log the audio thread's latest error (at most every 5 s) and recover."""
        self._report_pending = False
        errors = int(self._tele[TL_ERRORS] + self._tele[TL_COMMAND_ERRORS])
        now = time.monotonic()
        if now - self._last_log >= 5.0:
            new = errors - self._reported_errors
            self._reported_errors = errors
            self._last_log = now
            error = self.last_error
            log.error("audio thread: %d error(s) since the last report (output silenced for "
                      "failed blocks); latest: %s: %s", new, type(error).__name__, error,
                      exc_info=(type(error), error, error.__traceback__) if error else None)
        if self._tele[TL_CONSECUTIVE_ERRORS] >= RESET_AFTER_FAILED_BLOCKS:
            log.error("audio thread: %d blocks failed in a row; resetting the model",
                      int(self._tele[TL_CONSECUTIVE_ERRORS]))
            try:
                self.post(Reset(None))
            except QueueFull:
                log.error("cannot reset the model: the command queue is full")

    def post(self, command: Command) -> None:
        """Queue ``command`` for the next block start. Asyncio thread only (single
        producer). Raises :class:`QueueFull` (a ``ValueError``) when full."""
        if len(self._queue) >= self.queue_size:
            raise QueueFull(f"command queue full ({self.queue_size} commands waiting for the "
                            "audio thread); try again")
        self._queue.append(command)

    @property
    def queue_depth(self) -> int:
        """Commands waiting for the next block start."""
        return len(self._queue)

    async def call(self, fn: Callable[[Model], Any], *, timeout: float = CALL_TIMEOUT_S) -> Any:
        """Run ``fn(model)`` at a block boundary and return its result (or raise its
        exception). Runs directly when the clock is stopped; see the module doc for
        the ``timeout`` (s) fallback."""
        if not self.clock_running:
            return fn(self.model)
        loop = asyncio.get_running_loop()
        future: asyncio.Future = loop.create_future()
        reply = _Reply(loop, future)
        self.post(ModelCall(fn, reply))
        try:
            return await asyncio.wait_for(asyncio.shield(future), timeout)
        except TimeoutError:
            if reply.claim():
                log.warning("no audio block for %.2f s (clock stalled?): running a state "
                            "request directly", timeout)
                return fn(self.model)
            return await future  # the audio thread took it just now; its answer is coming

    def telemetry(self) -> dict[str, float]:
        """Levels (linear, full scale 1.0; RMS with a 100 ms time constant, peaks decaying
        over 300 ms), counters, and callback duration percentiles (ms) over the last
        :data:`DURATION_RING` blocks."""
        tele = self._tele.copy()
        count = int(tele[TL_DURATIONS])
        recent = self._durations[:min(count, DURATION_RING)].copy()
        if recent.size:
            p50, p99 = np.percentile(recent, [50.0, 99.0]) / 1e6
            worst = float(recent.max()) / 1e6
        else:
            p50 = p99 = worst = 0.0
        period_ms = 1e3 * self.block / self.sample_rate
        return {
            "rms": float(np.sqrt(tele[TL_OUT_MS])),
            "peak": float(tele[TL_OUT_PEAK]),
            "in_rms": float(np.sqrt(tele[TL_IN_MS])),
            "in_peak": float(tele[TL_IN_PEAK]),
            "blocks": float(tele[TL_BLOCKS]),
            "frames": float(tele[TL_FRAMES]),
            "errors": float(tele[TL_ERRORS]),
            "command_errors": float(tele[TL_COMMAND_ERRORS]),
            "commands": float(tele[TL_COMMANDS]),
            "queue_depth": float(len(self._queue)),
            "callback_p50_ms": float(p50),
            "callback_p99_ms": float(p99),
            "callback_max_ms": worst,
            "block_period_ms": period_ms,
            "load_p99": float(p99) / period_ms,
        }

    def durations_ns(self) -> np.ndarray:
        """A copy of the recent callback durations (ns), oldest first."""
        count = int(self._tele[TL_DURATIONS])
        if count <= DURATION_RING:
            return self._durations[:count].copy()
        start = count % DURATION_RING
        return np.concatenate([self._durations[start:], self._durations[:start]])
