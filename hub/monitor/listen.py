"""Live audio for listeners: every block of every agent's output and of the room's
listener preview, handed to whoever subscribed (the dashboard's listen stream,
``anamnesis demo``'s headphone player).

The mode's driver (:mod:`anamnesis.hub.clock.simulated`, :mod:`anamnesis.hub.clock.deployed`) calls
:meth:`ListenTap.add` once per block on the event loop. A subscriber names a
*source* — an agent id, or :data:`LISTENER` for the stereo preview at the
room's listener position — and its callback gets each block as a read-only
view of shape (frames, channels) float64 (1 channel for an agent, 2 for the
listener: left, right), valid only during the call: copy what you keep. With no
subscriber, ``add`` costs a dictionary lookup.

The dashboard's listen stream (``GET /ws/listen?source=ID``, :mod:`anamnesis.hub.api.ws`)
is one :class:`ListenStream` per WebSocket: it batches the blocks of its
source into messages of about :data:`MESSAGE_MS` ms, as 16-bit PCM, and hands
them to a bounded queue that the socket's sender drains; when a slow client
lets the queue fill, the oldest message is dropped and counted, so the clock
never waits for a listener. A binary message is a 28-byte little-endian header
then the samples::

    offset  size  field
    0       4     magic b"ANLS"
    4       1     format version (1)
    5       1     channels (1: an agent; 2: the listener, left then right)
    6       2     flags (u16): bit 0 = FLAG_PANIC, "the hub panicked: drop what you
                  have buffered" (on the message of silence a panic sends at once)
    8       4     sample rate, Hz (u32)
    12      4     seq (u32): +1 per message made for this socket, from 0; a gap
                  means the hub dropped messages (a slow client)
    16      8     hub_time_ms (f64): Unix time in ms when the hub sent it
    24      4     frames (u32)
    28      2*frames*channels  int16, interleaved: round(clip(x, -1, 1) * 32767)

:func:`encode_frame` and :func:`decode_frame` are the codec (pure; round-trip tested).
"""

from __future__ import annotations

import asyncio
import logging
import struct
import time
from collections.abc import Callable, Sequence
from typing import NamedTuple

import numpy as np

log = logging.getLogger(__name__)

#: The source name of the room's stereo listener preview.
LISTENER = "listener"
#: The listen stream's binary message header (see the module docstring).
LISTEN_HEADER = struct.Struct("<4sBBHIIdI")
LISTEN_MAGIC = b"ANLS"
LISTEN_VERSION = 1
#: Audio per listen message (ms; whole blocks, at least this much).
MESSAGE_MS = 20.0
#: Messages a listen socket may have waiting (about 0.5 s) before the oldest is dropped.
LISTEN_QUEUE = 25
#: Fade back in after the hub's unpanic (s), as the agents' own safety chains do.
UNPANIC_FADE_S = 0.25
#: Bit 0 of the header's reserved field: "panic: drop what you have buffered".
FLAG_PANIC = 1


class ListenFrame(NamedTuple):
    """A decoded listen message: header fields and ``samples`` (frames, channels) int16."""

    channels: int
    sample_rate: int
    seq: int
    hub_time_ms: float
    samples: np.ndarray
    flags: int = 0


_ONE, _MINUS_ONE, _FULL = np.float64(1.0), np.float64(-1.0), np.float64(32767.0)


def to_pcm16(block: np.ndarray, out: np.ndarray | None = None,
             scratch: np.ndarray | None = None, mask: np.ndarray | None = None) -> np.ndarray:
    """``block`` (frames, channels) float, full scale 1, as int16: round(clip(x) * 32767)
    (half to even); NaN becomes 0, ±inf ±32767. Written into ``out`` (same shape, int16)
    when given, using ``scratch`` (float64) and ``mask`` (bool) of the same shape when
    given: then nothing is allocated."""
    scaled = np.array(block, dtype=np.float64) if scratch is None else scratch
    if scratch is not None:
        scaled[...] = block
    nan = np.isnan(scaled) if mask is None else np.isnan(scaled, out=mask)
    np.putmask(scaled, nan, 0.0)
    np.minimum(scaled, _ONE, out=scaled)
    np.maximum(scaled, _MINUS_ONE, out=scaled)
    np.multiply(scaled, _FULL, out=scaled)
    np.rint(scaled, out=scaled)
    if out is None:
        out = np.empty(scaled.shape, dtype=np.int16)
    np.copyto(out, scaled, casting="unsafe")
    return out


def encode_frame(pcm: np.ndarray, *, sample_rate: int, seq: int,
                 hub_time_ms: float | None = None, flags: int = 0) -> bytes:
    """One listen message: header + ``pcm`` ((frames, channels) int16, or a float block,
    which is converted with :func:`to_pcm16`). ``hub_time_ms`` defaults to now; ``flags``
    go into the reserved field (:data:`FLAG_PANIC`)."""
    if pcm.ndim != 2 or not 1 <= pcm.shape[1] <= 255:
        raise ValueError(f"a listen block is (frames, channels); got shape {pcm.shape}")
    if pcm.dtype != np.int16:
        pcm = to_pcm16(pcm)
    frames, channels = pcm.shape
    when = time.time() * 1000.0 if hub_time_ms is None else float(hub_time_ms)
    header = LISTEN_HEADER.pack(LISTEN_MAGIC, LISTEN_VERSION, channels, int(flags),
                                int(sample_rate),
                                int(seq) & 0xFFFFFFFF, when, frames)
    return header + np.ascontiguousarray(pcm, dtype="<i2").tobytes()


def decode_frame(data: bytes) -> ListenFrame:
    """Read a listen message back; ``ValueError`` if it is not one (tests, scripts)."""
    if len(data) < LISTEN_HEADER.size:
        raise ValueError(f"a listen message has a {LISTEN_HEADER.size}-byte header; "
                         f"got {len(data)} bytes")
    magic, version, channels, flags, rate, seq, when, frames = LISTEN_HEADER.unpack_from(data)
    if magic != LISTEN_MAGIC or version != LISTEN_VERSION or channels == 0:
        raise ValueError("not a listen message (magic, version or channels)")
    size = frames * channels * 2
    if len(data) != LISTEN_HEADER.size + size:
        raise ValueError(f"a listen message of {frames} frames x {channels} channels has "
                         f"{size} sample bytes; got {len(data) - LISTEN_HEADER.size}")
    samples = np.frombuffer(data, dtype="<i2", offset=LISTEN_HEADER.size)
    return ListenFrame(channels, rate, seq, when,
                       samples.reshape(frames, channels).astype(np.int16), flags)

Callback = Callable[[np.ndarray], None]


class ListenTap:
    """Fans every block of ``agent_ids``' outputs (and the listener's ears) out to subscribers.

    ``sample_rate`` Hz; ``listener``: whether the mode produces a listener preview, or a
    function telling it now (the room can be added or removed while the hub runs); a
    subscriber of the listener gets nothing while there is none
    (a simulated room).
    """

    def __init__(self, agent_ids: Sequence[str], sample_rate: int, *,
                 listener: bool | Callable[[], bool] = False) -> None:
        self.agent_ids = tuple(agent_ids)
        self.sample_rate = int(sample_rate)
        self._listener = listener if callable(listener) else (lambda: bool(listener))
        self._columns = {a: i for i, a in enumerate(self.agent_ids)}
        self._subs: dict[str, list[Callback]] = {}
        self._panic_hooks: dict[Callback, Callable[[bool], None]] = {}
        self.failures = 0
        #: The hub's panic: listeners get silence; after it, a fade in over UNPANIC_FADE_S.
        self.panicked = False
        self._level = 1.0                  # the fade-in's gain now
        self._step = 1.0 / max(1.0, UNPANIC_FADE_S * self.sample_rate)
        self._scratch: dict[tuple[int, int], np.ndarray] = {}
        self._ramp = np.zeros(0)

    @property
    def sources(self) -> tuple[str, ...]:
        """What can be listened to: every agent, then the listener if there is one."""
        return self.agent_ids + ((LISTENER,) if self.listener else ())

    @property
    def listener(self) -> bool:
        """Whether there is a listener preview to listen to now."""
        return bool(self._listener())

    def channels(self, source: str) -> int:
        """1 for an agent, 2 for the listener."""
        self._check(source)
        return 2 if source == LISTENER else 1

    def _check(self, source: str) -> None:
        if source not in self.sources:
            raise KeyError(f"nothing to listen to called {source!r} (there is: "
                           f"{', '.join(self.sources) or 'nothing'})")

    def subscribe(self, source: str, callback: Callback, *,
                  on_panic: Callable[[bool], None] | None = None) -> Callable[[], None]:
        """Call ``callback(block)`` with every block of ``source``; returns the unsubscribe
        function. ``on_panic(on)`` (if given) is called at once on the hub's panic and
        unpanic, to drop what the listener has buffered. ``KeyError`` for an unknown
        source."""
        self._check(source)
        self._subs.setdefault(source, []).append(callback)
        if on_panic is not None:
            self._panic_hooks[callback] = on_panic
            if self.panicked:
                on_panic(True)

        def unsubscribe() -> None:
            subs = self._subs.get(source, [])
            if callback in subs:
                subs.remove(callback)
            self._panic_hooks.pop(callback, None)
            if not subs:
                self._subs.pop(source, None)
        return unsubscribe

    def panic(self, on: bool) -> None:
        """The hub's panic (event loop): from the next block every listener gets silence,
        and each ``on_panic`` hook drops what it buffered now, whatever the clock does;
        unpanic fades the listeners back in over :data:`UNPANIC_FADE_S`."""
        self.panicked = bool(on)
        self._level = 0.0
        for hook in list(self._panic_hooks.values()):
            try:
                hook(self.panicked)
            except Exception:   # noqa: BLE001 (one bad listener must not stop a panic)
                self.failures += 1
                log.exception("a listener's panic hook failed")

    def _faded(self, block: np.ndarray, frames: int) -> np.ndarray:
        """``block`` times the panic's gain (silence, or the fade in), in scratch kept
        per shape (allocated once per shape)."""
        out = self._scratch.get(block.shape)
        if out is None:
            out = self._scratch[block.shape] = np.zeros(block.shape)
        if self.panicked:
            out.fill(0.0)
        else:
            np.multiply(block, self._ramp[:frames, None], out=out)
        return out

    @property
    def active(self) -> bool:
        """True when someone listens."""
        return bool(self._subs)

    def add(self, outputs: np.ndarray, ears: np.ndarray | None = None) -> None:
        """One block: ``outputs`` (frames, n_agents) in ``agent_ids`` order, ``ears``
        (frames, 2) or None. Event loop thread."""
        if not self._subs:
            return
        frames = outputs.shape[0]
        fading = self.panicked or self._level < 1.0
        if fading and not self.panicked:    # the fade in: this block's gains
            if self._ramp.shape[0] < frames:
                self._ramp = np.zeros(frames)
            np.minimum(self._level + self._step * np.arange(1, frames + 1), 1.0,
                       out=self._ramp[:frames])
            self._level = float(self._ramp[frames - 1])
        for source, subs in list(self._subs.items()):
            if source == LISTENER:
                if ears is None:
                    continue
                block = ears
            else:
                i = self._columns[source]
                block = outputs[:, i:i + 1]
            if fading:
                block = self._faded(block, frames)
            view = block.view()
            view.flags.writeable = False
            for callback in list(subs):
                try:
                    callback(view)
                except Exception:   # one bad listener must not stop the clock
                    self.failures += 1
                    if self.failures == 1 or self.failures % 1000 == 0:
                        log.exception("a listener of %s failed (%d failures)", source, self.failures)


class ListenStream:
    """One listener's stream: blocks of ``channels`` channels batched into PCM16 messages of
    at least ``message_ms`` ms, queued (at most ``queue_size``) for a sender.

    :meth:`add` is a :class:`ListenTap` callback (event loop; copies the block into a
    preallocated batch). :meth:`next` waits for the next message's ``(seq, pcm)``;
    :meth:`encode` makes the bytes to send. ``dropped`` counts messages dropped because
    the queue was full (and calls ``on_drop()`` for each).
    """

    def __init__(self, channels: int, sample_rate: int, *, message_ms: float = MESSAGE_MS,
                 queue_size: int = LISTEN_QUEUE,
                 on_drop: Callable[[], None] | None = None) -> None:
        self.channels = int(channels)
        self.sample_rate = int(sample_rate)
        self.target = max(1, round(message_ms * self.sample_rate / 1000.0))
        self._batch = np.zeros((self.target * 2, self.channels), dtype=np.int16)
        self._scratch = np.zeros((self.target, self.channels))
        self._mask = np.zeros((self.target, self.channels), dtype=bool)
        self._filled = 0
        self._seq = 0
        self.dropped = 0
        self.on_drop = on_drop
        self._panic_seq = -1               # the seq of the last panic's silence
        self._queue: asyncio.Queue[tuple[int, np.ndarray]] = asyncio.Queue(maxsize=queue_size)

    def add(self, block: np.ndarray) -> None:
        """Append a (frames, channels) float block; a full batch becomes a queued message."""
        n = block.shape[0]
        if self._filled + n > self._batch.shape[0]:   # a block larger than expected
            grown = np.zeros((self._filled + n, self.channels), dtype=np.int16)
            grown[:self._filled] = self._batch[:self._filled]
            self._batch = grown
        if self._scratch.shape[0] < n:
            self._scratch = np.zeros((n, self.channels))
            self._mask = np.zeros((n, self.channels), dtype=bool)
        to_pcm16(block, out=self._batch[self._filled:self._filled + n],
                 scratch=self._scratch[:n], mask=self._mask[:n])
        self._filled += n
        if self._filled >= self.target:
            message = (self._seq, self._batch[:self._filled].copy())
            self._seq = (self._seq + 1) & 0xFFFFFFFF
            self._filled = 0
            if self._queue.full():      # a slow client: drop the oldest, never wait
                self._queue.get_nowait()
                self.dropped += 1
                if self.on_drop is not None:
                    self.on_drop()
            self._queue.put_nowait(message)

    def panic(self, on: bool) -> None:
        """The hub's panic (a :class:`ListenTap` hook): every queued message and the batch
        being filled are dropped, and one message of silence flagged :data:`FLAG_PANIC`
        is queued at once — the client drops what it buffered and hears silence within
        its next network round trip, however late the hub's clock is."""
        if not on:
            return
        while not self._queue.empty():
            self._queue.get_nowait()
        self._filled = 0
        self._panic_seq = self._seq
        self._queue.put_nowait((self._seq, np.zeros((self.target, self.channels),
                                                    dtype=np.int16)))
        self._seq = (self._seq + 1) & 0xFFFFFFFF

    async def next(self) -> tuple[int, np.ndarray]:
        """The next message's sequence number and samples (frames, channels) int16."""
        return await self._queue.get()

    def encode(self, seq: int, pcm: np.ndarray) -> bytes:
        """The binary message for ``(seq, pcm)``, stamped with the time now (the panic's
        silence with :data:`FLAG_PANIC`)."""
        flags = FLAG_PANIC if seq == self._panic_seq else 0
        return encode_frame(pcm, sample_rate=self.sample_rate, seq=seq, flags=flags)


__all__ = ["FLAG_PANIC", "LISTENER", "LISTEN_HEADER", "LISTEN_MAGIC", "LISTEN_VERSION", "ListenFrame",
           "ListenStream", "ListenTap", "decode_frame", "encode_frame", "to_pcm16"]
