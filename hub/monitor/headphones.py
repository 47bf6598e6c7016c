"""The headphone preview: the room's listener, played on this computer's sound device.

``anamnesis demo`` lets a composer rehearse on headphones (JOURNEYS 1): the hub's
:class:`anamnesis.hub.monitor.listen.ListenTap` hands every block of the stereo listener preview to
:meth:`HeadphonePlayer.feed` on the event loop; a PortAudio output stream
(``sounddevice.OutputStream``, 2 channels, float32) plays it from its own thread.
Between the two sits a :class:`StereoRing`:

* **Single producer, single consumer, preallocated.** The event loop writes
  (:meth:`StereoRing.write`), PortAudio's callback reads (:meth:`StereoRing.read`);
  both are numba kernels over a float32 frame buffer and an int64 counter array,
  so neither side allocates, locks, logs or does IO. Each side moves only its own
  index (``written`` by the producer, ``read`` by the consumer), and the kernels
  keep the GIL (no ``nogil``), so one side's update is complete before the other
  sees it.
* **Latency.** Playback starts (and restarts after an underrun) once
  ``buffer_ms`` (80 ms) of audio is waiting — the *prime*; with PortAudio's
  "low" output latency (a few ms to ~20 ms) that is about 85–100 ms from the
  hub's clock to the ear; the prime rides out the hub's event loop pausing for
  up to 80 ms. Each underrun lengthens the prime by ``GROW_MS`` (20 ms), up to
  ``MAX_BUFFER_MS`` (250 ms): on a busy laptop the preview settles at the latency
  the hub's timing needs instead of stuttering. The hub's clock and the sound card's drift apart slowly (~100 ppm
  at worst) and a stalled event loop catches up in a burst (:mod:`anamnesis.hub.clock.pacing`):
  when more than ``buffer_ms + slack_ms`` (180 ms) is waiting, the reader skips
  the oldest audio back to the prime (counted as ``skipped`` frames) instead of
  letting the latency grow.
* **Underruns** (the hub did not deliver in time): the rest of the block is
  silence, the underrun is counted, and playback waits for a new prime. Silence
  before the first prime (the agents starting) is not an underrun.
* **Safety.** The headphones are a speaker too: each ear passes the agents'
  safety chain on the event loop before it enters the ring
  (:class:`anamnesis.hub.engine.coupling.ListenerPreview` at 0 dB: NaN guard, DC blocker, 20 Hz
  high-pass, a 1 ms lookahead limiter at ``ceiling_db``, −1 dBFS, each ear on
  its own). The hub has levelled and limited the preview already; this guard is
  the player's own, whatever it is fed. The ring itself
  stores only finite samples within the ceiling (non-finite → 0, louder →
  clipped, both counted), a last guarantee.
* **A full ring** (the device stopped calling back) drops the incoming block,
  counted; the clock never waits for the player.
* **Panic** (:meth:`HeadphonePlayer.panic`, the hub's): the next callback fades what it
  plays to silence within 2.5 ms and drops everything buffered, so the headphones are
  silent within one device buffer of the press, whatever the hub's clock does.
* **The callback never raises**: any exception fills silence and is counted
  (``callback_errors``); PortAudio's status flags are counted as ``xruns``.

:func:`open_player` is what the demo calls: it returns a started player, or
None and one line saying why the preview is in the browser only (no PortAudio,
no default output device, a device that refuses the sample rate).
"""

from __future__ import annotations

import logging
import math
from typing import Any

import numpy as np
from numba import njit

log = logging.getLogger(__name__)

#: Audio waiting before playback starts or restarts (ms): the preview's latency.
BUFFER_MS = 80.0
#: How much longer the prime gets after each underrun (ms), and its most (ms).
GROW_MS = 20.0
MAX_BUFFER_MS = 250.0
#: Audio waiting beyond the prime before the reader skips back to it (ms).
SLACK_MS = 100.0
#: Ring size (s): a burst of the hub's clock catching up fits.
CAPACITY_S = 1.0
#: Largest sample the player lets through (dBFS): the agents' limiter ceiling.
CEILING_DB = -1.0
#: The JACK client name of the player (patchbays show it).
CLIENT_NAME = "anamnesis-preview"

# Counter slots of the ring (int64 array): the producer writes WRITTEN, DROPPED,
# NONFINITE and CLIPPED; the consumer everything else.
WRITTEN, READ, DROPPED, UNDERRUNS, SILENT, SKIPPED, PRIMING, PLAYED, NONFINITE, CLIPPED = range(10)
PRIME = 10           # the current prime (frames): the consumer's
SILENCED = 11        # the hub's panic: 0 playing, 1 asked (control), 2 silent (consumer)
_N_COUNTS = 12
#: Fade to silence on a panic (frames of the current callback, at most).
_PANIC_FADE = 120
#: Frames the player limits per step (a longer block is taken in pieces).
_FEED_FRAMES = 1024


@njit(cache=True)
def _ring_write(buf, counts, block, ceiling):
    """Append ``block`` (frames, channels ≥ 1) to ``buf``; a mono block goes to both
    sides. Drops the whole block (counted) if it does not fit."""
    cap = buf.shape[0]
    n = block.shape[0]
    w = counts[WRITTEN]
    if w + n - counts[READ] > cap:
        counts[DROPPED] += n
        return
    stereo = block.shape[1] >= 2
    for k in range(n):
        i = (w + k) % cap
        for c in range(2):
            v = block[k, c] if stereo else block[k, 0]
            if not math.isfinite(v):
                v = 0.0
                counts[NONFINITE] += 1
            elif v > ceiling:
                v = ceiling
                counts[CLIPPED] += 1
            elif v < -ceiling:
                v = -ceiling
                counts[CLIPPED] += 1
            buf[i, c] = v
    counts[WRITTEN] = w + n


@njit(cache=True)
def _ring_read(buf, counts, out, slack, grow, max_prime):
    """Fill ``out`` (frames, channels) from ``buf``: silence while priming, skip back to
    the prime when more than prime + ``slack`` frames wait, silence and re-prime on an
    underrun — with a prime ``grow`` frames longer (at most ``max_prime``). One output
    channel gets the mid (L + R) / 2; channels beyond two get silence."""
    prime = counts[PRIME]
    high = prime + slack
    cap = buf.shape[0]
    n = out.shape[0]
    ch = out.shape[1]
    for k in range(n):
        for c in range(ch):
            out[k, c] = 0.0
    avail = counts[WRITTEN] - counts[READ]
    if counts[SILENCED] != 0:          # the hub's panic: fade what plays, drop what waits
        if counts[SILENCED] == 1 and counts[PRIMING] == 0:
            r = counts[READ]
            m = min(n, avail, _PANIC_FADE)
            for k in range(m):
                i = (r + k) % cap
                g = 1.0 - (k + 1) / m
                if ch == 1:
                    out[k, 0] = g * 0.5 * (buf[i, 0] + buf[i, 1])
                else:
                    out[k, 0] = g * buf[i, 0]
                    out[k, 1] = g * buf[i, 1]
        counts[SILENCED] = 2
        counts[READ] = counts[WRITTEN]
        counts[PRIMING] = 1
        return
    if counts[PRIMING] != 0:
        if avail < prime or avail <= 0:
            return
        counts[PRIMING] = 0
    if avail > high:
        skip = avail - prime
        counts[READ] += skip
        counts[SKIPPED] += skip
        avail = prime
    r = counts[READ]
    m = min(n, avail)
    for k in range(m):
        i = (r + k) % cap
        if ch == 1:
            out[k, 0] = 0.5 * (buf[i, 0] + buf[i, 1])
        else:
            out[k, 0] = buf[i, 0]
            out[k, 1] = buf[i, 1]
    counts[READ] = r + m
    counts[PLAYED] += m
    if m < n:
        counts[UNDERRUNS] += 1
        counts[SILENT] += n - m
        counts[PRIMING] = 1
        counts[PRIME] = min(prime + grow, max_prime)


class StereoRing:
    """A preallocated single-producer/single-consumer FIFO of stereo float32 frames
    (see the module docstring).

    ``capacity`` frames; ``prime`` frames must wait before reading starts (and
    restarts after an underrun); more than ``high`` waiting makes the reader skip
    back to the prime; samples beyond ``ceiling`` (linear) are clipped. Each underrun
    makes the prime ``grow`` frames longer, up to ``max_prime`` (default: no growth),
    and ``high`` with it: a jitter buffer that settles at what the hub's timing needs.
    """

    def __init__(self, capacity: int, *, prime: int, high: int, ceiling: float = 1.0,
                 grow: int = 0, max_prime: int | None = None) -> None:
        max_prime = prime if max_prime is None else int(max_prime)
        if not 0 < prime <= high <= capacity or not prime <= max_prime \
                or max_prime + high - prime > capacity or grow < 0:
            raise ValueError(f"need 0 < prime <= high <= capacity, prime <= max_prime, "
                             f"max_prime + high - prime <= capacity, grow >= 0; got prime "
                             f"{prime}, high {high}, capacity {capacity}, max_prime "
                             f"{max_prime}, grow {grow} frames")
        if not 0.0 < ceiling <= 1.0:
            raise ValueError(f"ceiling must be in (0, 1]; got {ceiling}")
        self.capacity, self.slack = int(capacity), int(high) - int(prime)
        self.grow, self.max_prime = int(grow), max_prime
        self.ceiling = float(ceiling)
        self.buf = np.zeros((self.capacity, 2), dtype=np.float32)
        self.counts = np.zeros(_N_COUNTS, dtype=np.int64)
        self.counts[PRIMING] = 1
        self.counts[PRIME] = int(prime)

    def write(self, block: np.ndarray) -> None:
        """Producer: append ``block`` (frames, 1 or 2 channels; float). Never blocks; a
        block that does not fit is dropped (:attr:`dropped` frames)."""
        _ring_write(self.buf, self.counts, block, self.ceiling)

    def read(self, out: np.ndarray) -> None:
        """Consumer (the audio thread): fill ``out`` (frames, channels) float32."""
        _ring_read(self.buf, self.counts, out, self.slack, self.grow, self.max_prime)

    def silence(self, on: bool) -> None:
        """Control (any thread): ``on`` fades what plays to silence within the consumer's
        next callback and drops whatever waits; off plays again after a new prime."""
        self.counts[SILENCED] = 1 if on else 0

    @property
    def prime(self) -> int:
        """The current prime (frames)."""
        return int(self.counts[PRIME])

    def warm_up(self) -> None:
        """Compile (or load) both kernels for the types the player uses, off the audio path."""
        scratch = StereoRing(4, prime=1, high=2)
        block = np.zeros((2, 2))
        block.flags.writeable = False          # ListenTap hands out read-only views
        scratch.write(block)
        scratch.write(np.zeros((2, 2)))
        scratch.read(np.zeros((2, 2), dtype=np.float32))
        scratch.read(np.zeros((2, 1), dtype=np.float32))

    @property
    def waiting(self) -> int:
        """Frames written and not yet read."""
        return int(self.counts[WRITTEN] - self.counts[READ])

    def stats(self) -> dict[str, int]:
        """Frames ``written``, ``played``, ``dropped`` (ring full), ``skipped`` (latency
        trimmed), ``silent`` (of underruns); ``underruns`` (events); samples made
        finite (``nonfinite``) or ``clipped``; ``waiting`` frames; the current
        ``prime`` (frames)."""
        c = self.counts
        return {"written": int(c[WRITTEN]), "played": int(c[PLAYED]),
                "dropped": int(c[DROPPED]), "skipped": int(c[SKIPPED]),
                "silent": int(c[SILENT]), "underruns": int(c[UNDERRUNS]),
                "nonfinite": int(c[NONFINITE]), "clipped": int(c[CLIPPED]),
                "waiting": self.waiting, "prime": int(c[PRIME])}


class PreviewUnavailable(RuntimeError):
    """The preview cannot play on this computer; the message is one line for the user."""


class HeadphonePlayer:
    """Plays a stereo stream at ``sample_rate`` Hz on ``device`` (index or name; None:
    the default output), through a :class:`StereoRing` (see the module docstring).

    :meth:`feed` is the :class:`anamnesis.hub.monitor.listen.ListenTap` callback (event loop);
    :meth:`start` opens the device (:class:`PreviewUnavailable` with one line if it
    cannot); :meth:`stop` closes it (after PortAudio's last callback).
    """

    def __init__(self, sample_rate: int, *, device: int | str | None = None,
                 buffer_ms: float = BUFFER_MS, slack_ms: float = SLACK_MS,
                 ceiling_db: float = CEILING_DB) -> None:
        if not 8000 <= int(sample_rate) <= 384000:
            raise ValueError(f"sample_rate must be 8000..384000 Hz; got {sample_rate}")
        if not 5.0 <= buffer_ms <= 1000.0 or not 0.0 < slack_ms <= 1000.0:
            raise ValueError(f"buffer_ms must be 5..1000 and slack_ms 0..1000; got "
                             f"{buffer_ms}, {slack_ms}")
        self.sample_rate = int(sample_rate)
        self.device = device
        prime = max(1, round(buffer_ms * self.sample_rate / 1000.0))
        high = prime + max(1, round(slack_ms * self.sample_rate / 1000.0))
        most = max(prime, round(MAX_BUFFER_MS * self.sample_rate / 1000.0))
        capacity = max(most + high - prime, round(CAPACITY_S * self.sample_rate))
        from anamnesis.hub.engine.coupling import ListenerPreview

        # The hub levels and limits the preview already; this is the speaker's own guard.
        self._ears = ListenerPreview(self.sample_rate, _FEED_FRAMES, gain_db=0.0,
                                     ceiling_db=ceiling_db)
        self.ring = StereoRing(capacity, prime=prime, high=high, ceiling=self._ears.ceiling,
                               grow=round(GROW_MS * self.sample_rate / 1000.0), max_prime=most)
        self._limited = np.zeros((_FEED_FRAMES, 2))
        self._stream: Any = None
        self._device_latency_s = 0.0
        self.xruns = 0
        self.callback_errors = 0
        self.description = "not started"

    def feed(self, block: np.ndarray) -> None:
        """A block of the listener (frames, 1 or 2 channels) float: each ear through its
        safety chain, then into the ring. The event loop (a ListenTap callback)."""
        n = block.shape[0]
        right = 1 if block.shape[1] > 1 else 0
        for start in range(0, n, _FEED_FRAMES):
            m = min(_FEED_FRAMES, n - start)
            x = self._limited[:m]
            x[:, 0] = block[start:start + m, 0]
            x[:, 1] = block[start:start + m, right]
            self._ears.process(x)
            self.ring.write(x)

    def panic(self, on: bool) -> None:
        """The hub's panic (a :class:`~anamnesis.hub.monitor.listen.ListenTap` hook): the
        headphones fall silent at PortAudio's next callback (a few ms), whatever is
        buffered; unpanic plays again from fresh audio."""
        self.ring.silence(on)

    def limited(self) -> int:
        """Samples the ears' limiters turned down so far."""
        return self._ears.limited()

    def _callback(self, outdata: np.ndarray, frames: int, time_info: Any, status: Any) -> None:
        # PortAudio's thread: fill the output, whatever happens (STYLE 7).
        try:
            if status:
                self.xruns += 1
            self.ring.read(outdata)
        except Exception:  # noqa: BLE001 (silence and a count, never an exception into PortAudio)
            outdata.fill(0.0)
            self.callback_errors += 1

    def start(self) -> None:
        """Open the output device and start playing (silence until the first prime)."""
        from anamnesis.agents.audio.backends import (
            BackendError,
            import_sounddevice,
            set_jack_client_name,
        )

        try:
            sd = import_sounddevice()
        except BackendError as exc:
            raise PreviewUnavailable(str(exc).split(", or run with")[0]) from None
        self.ring.warm_up()
        try:
            if any("JACK" in api["name"] for api in sd.query_hostapis()):
                self._jack_name = CLIENT_NAME.encode()   # PortAudio keeps the pointer
                set_jack_client_name(sd, self._jack_name)
            info = sd.query_devices(self.device, "output")
        except (ValueError, sd.PortAudioError) as exc:
            what = "no default output device" if self.device is None else \
                f"output device {self.device!r}: {exc}"
            raise PreviewUnavailable(what) from None
        channels = min(2, int(info["max_output_channels"]))
        if channels < 1:
            raise PreviewUnavailable(f"{info['name']!r} has no output channels")
        try:
            stream = sd.OutputStream(samplerate=self.sample_rate, device=int(info["index"]),
                                     channels=channels, dtype="float32", latency="low",
                                     callback=self._callback)
            stream.start()
        except (sd.PortAudioError, ValueError) as exc:
            raise PreviewUnavailable(f"{info['name']!r} cannot play {channels} channel(s) at "
                                     f"{self.sample_rate} Hz: {exc}") from None
        self._stream = stream
        self._device_latency_s = float(stream.latency)
        self.description = (f"{info['name']!r}, {channels} ch at {self.sample_rate} Hz, "
                            f"latency {self.latency_ms():.0f} ms")

    def latency_ms(self) -> float:
        """The prime plus the device's output latency (ms): how late the ear hears the hub."""
        return 1000.0 * (self.ring.prime / self.sample_rate + self._device_latency_s)

    def stop(self) -> None:
        """Stop and close the stream (idempotent); returns after the last callback."""
        from anamnesis.agents.audio.backends import close_stream

        stream, self._stream = self._stream, None
        close_stream(stream)

    @property
    def playing(self) -> bool:
        """True while the stream runs."""
        return self._stream is not None and bool(self._stream.active)

    def stats(self) -> dict[str, int]:
        """The ring's counters plus PortAudio ``xruns``, ``callback_errors`` and the
        samples the ears' limiters turned down (``limited``)."""
        return {**self.ring.stats(), "xruns": self.xruns,
                "callback_errors": self.callback_errors, "limited": self.limited()}


def open_player(sample_rate: int, device: int | str | None = None,
                **kwargs: Any) -> tuple[HeadphonePlayer | None, str]:
    """A started :class:`HeadphonePlayer` and its description, or None and the one-line
    reason the preview is in the browser only. Never raises for a missing or refusing
    device."""
    player = HeadphonePlayer(sample_rate, device=device, **kwargs)
    try:
        player.start()
    except PreviewUnavailable as exc:
        return None, str(exc)
    return player, player.description


__all__ = ["BUFFER_MS", "CEILING_DB", "HeadphonePlayer", "PreviewUnavailable", "StereoRing",
           "open_player"]
