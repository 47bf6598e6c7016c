"""The jitter buffer of an RTP receiver: timestamp-ordered, concealing, drift-absorbing.

One writer (the receiver, on the asyncio thread) puts decoded samples at their
position on the buffer's *timeline*; one reader (the audio thread, or the hub's
clock) takes ``n`` samples per block from its play position. The timeline is the
reader's own sample clock: the play position advances by ``n`` on every read,
data or not, and the receiver maps each sender's RTP timestamps onto it (so an
SSRC change or a sender restart is only a new mapping, see
:class:`anamnesis.agents.net.link.RtpReceiver`).

Storage is preallocated: a ring of ``capacity`` samples and, per sample, the
timeline position it holds (a *stamp*); a sample is valid when its stamp equals
the position asked for. So any packet size works, reordered packets simply land
where they belong, and duplicates rewrite the same values.

Reading, per sample (one numba kernel, no allocation):

* valid → played, and remembered in a history of the last ``hist`` samples;
* missing → **concealed**: the history is repeated from its oldest sample with a
  linear fade over ``fade`` samples, then silence; when data returns it is
  crossfaded in over ``xfade`` samples (from the continuing concealment);
* concealed samples count as ``concealed_frames`` when newer samples are
  already buffered (a hole: the packet is lost or late), as
  ``underrun_frames`` when nothing is (the sender stopped or fell behind); an
  empty buffer at block start counts one **underrun** (per run of empty
  blocks); after ``idle`` samples of concealment the stream counts as idle
  (silence, counted in ``idle_frames`` only).

**Slips** keep the depth (newest sample − play position) at the target: with
``absorb_drift`` or ``adaptive`` the reader smooths the depth (time constant
``depth_tau_s``) and, when it strays more than ``slip_threshold`` from the
target, drops or repeats ``slip`` samples with a linear crossfade (both segments valid, counted as ``skips`` / ``repeats``). This is how
the receiver absorbs the clock drift between two sound cards (≈ 5 samples/s at
100 ppm: one 64-sample slip every ~13 s) and how an adaptive target takes
effect. **Adaptive** mode (JackTrip's auto mode, simplified): every glitch (an
underrun, or a packet the receiver found late) raises the target by ``grow``
samples up to ``max_target``; each ``shrink_after_s`` without a glitch lowers it
by ``shrink`` samples down to ``min_target``.

**Jumps and re-anchors.** Slips are for drift: a few samples a second. A depth
more than ``jump_threshold`` above the target (a sender that starts with a burst —
ffmpeg's ``-re`` sends its first half second at once — or a reader that stalled) is
dropped in one **jump**: the excess skipped with the same crossfade, counted in
``jumps``, instead of hundreds of slips warbling the pitch for seconds. The smoothed
depth is only updated while something is buffered (an empty buffer between two
senders says nothing of the next one's depth), and each new mapping of a sender
(:meth:`JitterBuffer.reanchor`, called by the receiver for a new SSRC, a restart or
a resync) restarts it at the depth actually buffered, so a second sender starts as
cleanly as the first.

Threading: both kernels are compiled *without* ``nogil``, so writer and reader
exclude each other through the GIL (which is also the memory barrier between
them); each kernel runs for a few microseconds. Counters in the state array
have one writer each (written by the reader unless marked "writer").
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from anamnesis.agents.protocol.pcm import pcm_sample

# --- state slots (int64) ------------------------------------------------------
S_POS = 0            # next timeline position to play
S_HI = 1             # writer: end (exclusive) of the newest sample written
S_STARTED = 2        # writer: 1 once any sample was written
S_PKT = 3            # writer: frames of the latest packet
S_LATE = 4           # writer: late packets (the reader treats a change as a glitch)
S_TARGET = 5         # target depth (samples)
S_CONCEAL_RUN = 6    # consecutive concealed samples so far
S_XFADE = 7          # crossfade-in samples left
S_XFADE_J = 8        # concealment index continued during the crossfade
S_HPOS = 9           # oldest sample of the history ring
S_CONCEALED_FRAMES = 10
S_CONCEALED_BLOCKS = 11
S_UNDERRUNS = 12
S_SKIPS = 13
S_REPEATS = 14
S_READS = 15
S_SLIP_LEFT = 16     # crossfade samples left of a slip in progress
S_SLIP_D = 17        # its offset: +slip (skip) or -slip (repeat)
S_LATE_SEEN = 18
S_LAST_GLITCH = 19   # play position at the last glitch (or shrink)
S_EMPTY = 20
S_IDLE_FRAMES = 21
S_GROWS = 22
S_SHRINKS = 23
S_COOLDOWN = 24      # no new slip before this play position
S_PLAYED = 25        # samples played from valid data
S_PRIMED = 26        # 1 once the first valid sample was played (before: pre-roll, not concealment)
S_UNDERRUN_FRAMES = 27  # samples generated with nothing buffered (stream stopped or starved)
S_ANCHORS = 28       # writer: new mappings of a sender onto the timeline (re-anchors)
S_ANCHORS_SEEN = 29
S_JUMPS = 30         # excess depth dropped in one crossfaded jump
N_STATE = 31

# --- parameters (int64) --------------------------------------------------------
P_HIST, P_FADE, P_XFADE, P_SLIP, P_SLIP_THRESH, P_ADAPTIVE, P_SLIPS = 0, 1, 2, 3, 4, 5, 6
P_MIN_TARGET, P_MAX_TARGET, P_GROW, P_SHRINK, P_SHRINK_AFTER, P_IDLE, P_COOLDOWN = 7, 8, 9, 10, 11, 12, 13
P_JUMP_THRESH = 14
N_PARAMS = 15

# --- float state ---------------------------------------------------------------
F_DEPTH, F_TAU = 0, 1   # smoothed depth (samples), smoothing time constant (samples)
N_FSTATE = 2

#: write() results
WRITTEN, LATE, PARTLY_LATE, OVERRUN = 0, 1, 2, 3


@njit(cache=True)
def _write_pcm(ring, stamps, st, payload, start, n, width):
    """Decode ``n`` big-endian samples of ``width`` bytes (3: L24, 2: L16) from the
    uint8 array ``payload`` onto the timeline at ``start``."""
    mask = ring.shape[0] - 1
    for i in range(n):
        p = start + i
        ring[p & mask] = pcm_sample(payload, i, width)
        stamps[p & mask] = p
    st[S_HI] = max(st[S_HI], start + n)
    st[S_PKT] = n
    st[S_STARTED] = 1


@njit(cache=True)
def _write_float(ring, stamps, st, x, start, n):
    mask = ring.shape[0] - 1
    for i in range(n):
        v = x[i]
        if v != v:
            v = 0.0
        p = start + i
        ring[p & mask] = v
        stamps[p & mask] = p
    st[S_HI] = max(st[S_HI], start + n)
    st[S_PKT] = n
    st[S_STARTED] = 1


@njit(cache=True)
def _all_valid(stamps, mask, a, b):
    for p in range(a, b):
        if stamps[p & mask] != p:
            return False
    return True


@njit(cache=True)
def _read(ring, stamps, hist, st, prm, fs, out, n):
    """Fill ``out[:n]`` from the play position; see the module docstring."""
    mask = ring.shape[0] - 1
    H = hist.shape[0]
    pos = st[S_POS]
    if st[S_STARTED] == 0:
        for k in range(n):
            out[k] = 0.0
        st[S_POS] = pos + n
        return
    st[S_READS] += 1
    hi = st[S_HI]
    glitch = False
    if hi <= pos and st[S_PRIMED] != 0:
        if st[S_EMPTY] == 0:
            st[S_UNDERRUNS] += 1
            glitch = True
        st[S_EMPTY] = 1
    else:
        st[S_EMPTY] = 0
    if st[S_LATE] != st[S_LATE_SEEN]:
        st[S_LATE_SEEN] = st[S_LATE]
        glitch = True
    depth = hi - pos
    if st[S_ANCHORS] != st[S_ANCHORS_SEEN]:  # a new sender mapping: measure afresh
        st[S_ANCHORS_SEEN] = st[S_ANCHORS]
        fs[F_DEPTH] = max(depth, 0)
        st[S_COOLDOWN] = pos
    target = st[S_TARGET]
    if prm[P_ADAPTIVE] != 0:
        if glitch:
            target = min(prm[P_MAX_TARGET], target + prm[P_GROW])
            st[S_LAST_GLITCH] = pos
            st[S_GROWS] += 1
        elif pos - st[S_LAST_GLITCH] > prm[P_SHRINK_AFTER] and target > prm[P_MIN_TARGET]:
            target = max(prm[P_MIN_TARGET], target - prm[P_SHRINK])
            st[S_LAST_GLITCH] = pos
            st[S_SHRINKS] += 1
        st[S_TARGET] = target
    # smoothed depth (only while something is buffered), jumps and slips
    if depth > 0:
        k_ema = 1.0 - math.exp(-n / fs[F_TAU])
        fs[F_DEPTH] += (depth - fs[F_DEPTH]) * k_ema
    slip = prm[P_SLIP]
    if (prm[P_SLIPS] != 0 and st[S_SLIP_LEFT] == 0 and st[S_CONCEAL_RUN] == 0
            and st[S_XFADE] == 0 and pos >= st[S_COOLDOWN] and st[S_EMPTY] == 0):
        ref = target + st[S_PKT] // 2
        jump = depth - ref
        if (jump > prm[P_JUMP_THRESH] and _all_valid(stamps, mask, pos, pos + slip)
                and _all_valid(stamps, mask, pos + jump, pos + jump + slip)):
            st[S_SLIP_LEFT] = slip
            st[S_SLIP_D] = jump
            st[S_JUMPS] += 1
            fs[F_DEPTH] = ref
            st[S_COOLDOWN] = pos + prm[P_COOLDOWN]
        elif fs[F_DEPTH] > ref + prm[P_SLIP_THRESH] and _all_valid(stamps, mask, pos, pos + 2 * slip):
            st[S_SLIP_LEFT] = slip
            st[S_SLIP_D] = slip
            st[S_SKIPS] += 1
            fs[F_DEPTH] -= slip
            st[S_COOLDOWN] = pos + prm[P_COOLDOWN]
        elif (fs[F_DEPTH] < ref - prm[P_SLIP_THRESH]
              and _all_valid(stamps, mask, pos - slip, pos + slip)):
            st[S_SLIP_LEFT] = slip
            st[S_SLIP_D] = -slip
            st[S_REPEATS] += 1
            fs[F_DEPTH] += slip
            st[S_COOLDOWN] = pos + prm[P_COOLDOWN]
    fade = prm[P_FADE]
    xlen = prm[P_XFADE]
    idle = prm[P_IDLE]
    hpos = st[S_HPOS]
    run = st[S_CONCEAL_RUN]
    xleft = st[S_XFADE]
    xj = st[S_XFADE_J]
    concealed = 0
    played = 0
    primed = st[S_PRIMED]
    for k in range(n):
        left = st[S_SLIP_LEFT]
        if left > 0:
            d = st[S_SLIP_D]
            i = slip - left
            w = (i + 0.5) / slip
            v = (1.0 - w) * ring[pos & mask] + w * ring[(pos + d) & mask]
            out[k] = v
            hist[hpos] = v
            hpos += 1
            if hpos == H:
                hpos = 0
            pos += 1
            left -= 1
            st[S_SLIP_LEFT] = left
            if left == 0:
                pos += d
            played += 1
            continue
        if stamps[pos & mask] == pos:
            v = ring[pos & mask]
            primed = 1
            if run > 0:
                xleft = xlen
                xj = run
                run = 0
            if xleft > 0:
                g = 1.0 - xj / fade if xj < fade else 0.0
                c = hist[(hpos + xj) % H] * g
                xj += 1
                w = (xlen - xleft + 1.0) / (xlen + 1.0)
                out[k] = (1.0 - w) * c + w * v
                xleft -= 1
            else:
                out[k] = v
                hist[hpos] = v
                hpos += 1
                if hpos == H:
                    hpos = 0
            played += 1
        elif primed == 0:
            out[k] = 0.0  # pre-roll: the first packet's place is ahead of the play position
        else:
            if run < fade:
                out[k] = hist[(hpos + run) % H] * (1.0 - run / fade)
            else:
                out[k] = 0.0
            xleft = 0
            if run >= idle:
                st[S_IDLE_FRAMES] += 1
            elif pos < hi:
                concealed += 1      # a hole: later samples are here, this one is lost or late
            else:
                st[S_UNDERRUN_FRAMES] += 1
            run += 1
        pos += 1
    st[S_POS] = pos
    st[S_HPOS] = hpos
    st[S_CONCEAL_RUN] = run
    st[S_XFADE] = xleft
    st[S_XFADE_J] = xj
    st[S_PLAYED] += played
    st[S_PRIMED] = primed
    if concealed:
        st[S_CONCEALED_FRAMES] += concealed
        st[S_CONCEALED_BLOCKS] += 1


def _pow2_at_least(n: int) -> int:
    return 1 << max(0, int(n - 1).bit_length())


class JitterBuffer:
    """A jitter buffer on the reader's sample timeline (see the module docstring).

    Sizes are in samples at ``sample_rate`` Hz unless named ``_ms`` / ``_s``:
    ``target_ms`` initial target depth; ``capacity_s`` ring size (rounded up to a
    power of two; bounds memory and the largest depth); ``hist`` history repeated
    when concealing (default one ``block``); ``fade`` concealment fade length
    (default two blocks); ``xfade`` crossfade back in (64); ``slip`` slip size
    (64); ``slip_threshold`` (default one block) and ``depth_tau_s`` (2 s) the
    slip decision; ``adaptive``, ``min_target_ms``, ``max_target_ms``, ``grow``
    (one block), ``shrink`` (block/8), ``shrink_after_s`` (5 s) the adaptive
    mode; ``absorb_drift`` enables slips with a fixed target; ``jump_threshold``
    (default the larger of 4 blocks and 50 ms) the excess depth dropped in one jump
    (with slips only); ``idle_s`` (0.5 s) after which a silent stream stops counting
    as concealed.
    """

    def __init__(self, *, sample_rate: int = 48000, block: int = 256, target_ms: float = 20.0,
                 capacity_s: float = 0.5, hist: int | None = None, fade: int | None = None,
                 xfade: int = 64, slip: int = 64, slip_threshold: int | None = None,
                 depth_tau_s: float = 2.0, adaptive: bool = False, absorb_drift: bool = False,
                 min_target_ms: float | None = None, max_target_ms: float = 200.0,
                 grow: int | None = None, shrink: int | None = None, shrink_after_s: float = 5.0,
                 idle_s: float = 0.5, jump_threshold: int | None = None) -> None:
        if not 8000 <= sample_rate <= 384000:
            raise ValueError(f"sample_rate must be in [8000, 384000] Hz; got {sample_rate}")
        if not 1 <= block <= 8192:
            raise ValueError(f"block must be in [1, 8192] frames; got {block}")
        target = round(target_ms * sample_rate / 1000.0)
        max_target = round(max_target_ms * sample_rate / 1000.0)
        min_target = round((min_target_ms if min_target_ms is not None else
                            min(target_ms, 1000.0 * block / sample_rate)) * sample_rate / 1000.0)
        capacity = _pow2_at_least(max(int(capacity_s * sample_rate), 4 * (max_target + block)))
        if not 0 <= target <= max_target:
            raise ValueError(f"target_ms must be in [0, max_target_ms={max_target_ms:g}]; "
                             f"got {target_ms:g}")
        if not 1 <= slip <= block * 4 or not 1 <= xfade <= 8192:
            raise ValueError("slip must be in [1, 4 * block] and xfade in [1, 8192] samples")
        self.sample_rate = int(sample_rate)
        self.block = int(block)
        self.capacity = capacity
        self.adaptive = bool(adaptive)
        self.absorb_drift = bool(absorb_drift)
        self._ring = np.zeros(capacity)
        self._stamps = np.full(capacity, -1, dtype=np.int64)
        self._hist = np.zeros(hist or block)
        self._st = np.zeros(N_STATE, dtype=np.int64)
        self._prm = np.zeros(N_PARAMS, dtype=np.int64)
        self._fs = np.zeros(N_FSTATE)
        p = self._prm
        p[P_HIST] = self._hist.size
        p[P_FADE] = max(1, fade if fade is not None else 2 * block)
        p[P_XFADE] = xfade
        p[P_SLIP] = slip
        p[P_SLIP_THRESH] = slip_threshold if slip_threshold is not None else max(block, slip)
        p[P_ADAPTIVE] = int(adaptive)
        p[P_SLIPS] = int(adaptive or absorb_drift)
        p[P_MIN_TARGET] = min(min_target, target)
        p[P_MAX_TARGET] = max_target
        p[P_GROW] = grow if grow is not None else block
        p[P_SHRINK] = shrink if shrink is not None else max(1, block // 8)
        p[P_SHRINK_AFTER] = round(shrink_after_s * sample_rate)
        p[P_IDLE] = round(idle_s * sample_rate)
        p[P_COOLDOWN] = 4 * slip + block
        p[P_JUMP_THRESH] = (jump_threshold if jump_threshold is not None
                            else max(4 * block, round(0.05 * sample_rate)))
        self._st[S_TARGET] = target
        self._fs[F_TAU] = max(1.0, depth_tau_s * sample_rate)
        self._fs[F_DEPTH] = target
        #: Writes refused because they would overwrite unplayed samples.
        self.overruns = 0
        self._tmp = np.zeros(block)

    # --- writer (asyncio thread) ------------------------------------------------------
    @property
    def position(self) -> int:
        """The reader's play position on the timeline (samples)."""
        return int(self._st[S_POS])

    @property
    def target(self) -> int:
        """Current target depth (samples)."""
        return int(self._st[S_TARGET])

    @property
    def written_end(self) -> int:
        """End (exclusive) of the newest sample written on the timeline (0 before any)."""
        return int(self._st[S_HI])

    def _check_span(self, start: int, n: int) -> int:
        pos = int(self._st[S_POS])
        if start + n > pos + self.capacity - self.block:
            self.overruns += 1
            return OVERRUN
        if start + n <= pos:
            return LATE
        return PARTLY_LATE if start < pos else WRITTEN

    def write_pcm(self, payload: np.ndarray, start: int, n: int, width: int) -> int:
        """Decode ``n`` samples of ``width`` bytes (3 L24, 2 L16) from the uint8 array
        ``payload`` to timeline position ``start``. Returns :data:`WRITTEN`,
        :data:`PARTLY_LATE` (written; its head was already played), :data:`LATE`
        (not written) or :data:`OVERRUN` (not written: beyond the ring)."""
        status = self._check_span(start, n)
        if status in (WRITTEN, PARTLY_LATE):
            _write_pcm(self._ring, self._stamps, self._st, payload, start, n, width)
        return status

    def write(self, samples: np.ndarray, start: int) -> int:
        """Write float64 ``samples`` (frames,) at timeline position ``start``; as
        :meth:`write_pcm`."""
        x = np.ascontiguousarray(samples, dtype=np.float64)
        status = self._check_span(start, x.size)
        if status in (WRITTEN, PARTLY_LATE):
            _write_float(self._ring, self._stamps, self._st, x, start, x.size)
        return status

    def note_late(self) -> None:
        """The receiver found a late packet: a glitch for the adaptive mode (writer)."""
        self._st[S_LATE] += 1

    def reanchor(self) -> None:
        """The receiver mapped a sender onto the timeline anew (a new SSRC, a restart, a
        resync): the reader measures the depth afresh (writer)."""
        self._st[S_ANCHORS] += 1

    # --- reader (audio thread / hub clock) ---------------------------------------------
    def read(self, out: np.ndarray) -> None:
        """Fill ``out`` (float64, contiguous, any length) and advance the play position
        by ``len(out)``. Allocation-free; safe from the audio thread."""
        _read(self._ring, self._stamps, self._hist, self._st, self._prm, self._fs, out,
              out.shape[0])

    # --- either thread ---------------------------------------------------------------
    def depth(self) -> int:
        """Samples buffered ahead of the play position (newest written − play position;
        0 when nothing is)."""
        st = self._st
        return max(0, int(st[S_HI] - st[S_POS])) if st[S_STARTED] else 0

    def stats(self) -> dict[str, float]:
        """Reader counters (concealed frames/blocks, underruns, slips, ...) and depths
        (samples and ms)."""
        st = self._st
        ms = 1000.0 / self.sample_rate
        return {
            "concealed": float(st[S_CONCEALED_BLOCKS]),
            "concealed_frames": float(st[S_CONCEALED_FRAMES]),
            "underruns": float(st[S_UNDERRUNS]),
            "underrun_frames": float(st[S_UNDERRUN_FRAMES]),
            "overruns": float(self.overruns),
            "skips": float(st[S_SKIPS]),
            "repeats": float(st[S_REPEATS]),
            "slips": float(st[S_SKIPS] + st[S_REPEATS]),
            "jumps": float(st[S_JUMPS]),
            "idle_frames": float(st[S_IDLE_FRAMES]),
            "played_frames": float(st[S_PLAYED]),
            "reads": float(st[S_READS]),
            "depth": float(self.depth()),
            "depth_ms": self.depth() * ms,
            "depth_smoothed_ms": float(self._fs[F_DEPTH]) * ms,
            "target": float(st[S_TARGET]),
            "target_ms": float(st[S_TARGET]) * ms,
            "grows": float(st[S_GROWS]),
            "shrinks": float(st[S_SHRINKS]),
        }


def warm_up() -> None:
    """Compile (or load from cache) the kernels, off the audio path."""
    jb = JitterBuffer(block=64)
    jb.write_pcm(np.zeros(192, dtype=np.uint8), 1000, 64, 3)
    jb.write_pcm(np.zeros(128, dtype=np.uint8), 1064, 64, 2)
    # the receiver's payloads are read-only views of a datagram (another numba signature)
    jb.write_pcm(np.frombuffer(bytes(192), dtype=np.uint8), 1128, 64, 3)
    jb.write(np.zeros(64), 1192)
    out = np.zeros(64)
    jb.read(out)


__all__ = ["LATE", "OVERRUN", "PARTLY_LATE", "WRITTEN", "JitterBuffer", "warm_up"]
