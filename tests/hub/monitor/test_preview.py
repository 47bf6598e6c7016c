"""The headphone preview (:mod:`anamnesis.hub.monitor.headphones`): its single-producer/single-consumer ring,
unit-tested (order, priming, underruns, latency trimming, overflow, safety, block-size
independence, two real threads, no allocation on the audio side), and the player
against a real audio device: a private JACK server with the dummy driver (TESTING.md),
recorded by ffmpeg — and with no device or no PortAudio package, one line, no exception.

Device tests run the player in a subprocess: PortAudio must be initialised after
jackd starts (and this test process may already have initialised it without JACK).
"""

from __future__ import annotations

import ctypes.util
import json
import os
import subprocess
import sys
import threading
import time
import uuid

import numpy as np
import pytest
from support.agents import REPO
from support.alloc import traced_allocation
from support.jack import jack_ports, private_jackd

from anamnesis.hub.monitor.headphones import StereoRing

SR = 48000


def _ramp(start: int, n: int) -> np.ndarray:
    """Frames ``start .. start+n-1`` as (n, 2): left = k / 2**20, right = -left."""
    k = np.arange(start, start + n, dtype=np.float64) / 2.0 ** 20
    return np.stack([k, -k], axis=1)


# ---------------------------------------------------------------------------
# The ring
# ---------------------------------------------------------------------------


def test_ring_is_silent_until_primed_then_plays_in_order():
    ring = StereoRing(64, prime=10, high=40)
    out = np.ones((4, 2), dtype=np.float32)
    ring.write(_ramp(1, 8))
    ring.read(out)
    assert np.all(out == 0.0)
    assert ring.stats()["underruns"] == 0 and ring.stats()["played"] == 0   # not an underrun
    ring.write(_ramp(9, 8))                      # 16 waiting >= prime
    got = []
    for _ in range(4):
        ring.read(out)
        got.append(out.copy())
    np.testing.assert_array_equal(np.concatenate(got), _ramp(1, 16).astype(np.float32))
    assert ring.stats() == {"written": 16, "played": 16, "dropped": 0, "skipped": 0,
                            "silent": 0, "underruns": 0, "nonfinite": 0, "clipped": 0,
                            "waiting": 0, "prime": 10}


def test_an_underrun_is_silence_counted_and_waits_for_a_new_prime():
    ring = StereoRing(64, prime=8, high=40)
    ring.write(_ramp(1, 10))
    out = np.zeros((6, 2), dtype=np.float32)
    ring.read(out)
    ring.read(out)                              # 4 left: 4 frames then 2 of silence
    np.testing.assert_array_equal(out[:4], _ramp(7, 4).astype(np.float32))
    assert np.all(out[4:] == 0.0)
    s = ring.stats()
    assert (s["underruns"], s["silent"], s["played"]) == (1, 2, 10)
    ring.write(_ramp(11, 5))                    # 5 < prime: still silent, not another underrun
    ring.read(out)
    assert np.all(out == 0.0) and ring.stats()["underruns"] == 1
    ring.write(_ramp(16, 5))                    # 10 >= prime: plays from frame 11, no gap
    ring.read(out)
    np.testing.assert_array_equal(out, _ramp(11, 6).astype(np.float32))


def test_each_underrun_lengthens_the_prime_up_to_its_most():
    ring = StereoRing(256, prime=8, high=40, grow=4, max_prime=14)
    out = np.zeros((8, 2), dtype=np.float32)
    primes = []
    pos = 1
    for _ in range(3):
        ring.write(_ramp(pos, ring.prime))     # exactly one prime, then an underrun
        pos += ring.prime
        ring.read(out)
        ring.read(out)
        primes.append(ring.prime)
    assert primes == [12, 14, 14] and ring.stats()["underruns"] == 3
    ring.write(_ramp(pos, 13))                 # 13 < 14: still priming
    ring.read(out)
    assert np.all(out == 0.0)
    ring.write(_ramp(pos + 13, 1))
    ring.read(out)
    np.testing.assert_array_equal(out, _ramp(pos, 8).astype(np.float32))
    # The slack grows with the prime: 14 + 32 may wait before the reader skips.
    ring.write(_ramp(pos + 14, 40))
    ring.read(out)
    assert ring.stats()["skipped"] == 0


def test_too_much_waiting_skips_back_to_the_prime():
    ring = StereoRing(256, prime=16, high=48)
    ring.write(_ramp(1, 100))                   # a burst: 100 > high
    out = np.zeros((8, 2), dtype=np.float32)
    ring.read(out)
    # The oldest 84 frames are skipped; playback resumes 16 frames behind the writer.
    np.testing.assert_array_equal(out, _ramp(85, 8).astype(np.float32))
    s = ring.stats()
    assert (s["skipped"], s["underruns"], s["waiting"]) == (84, 0, 8)


def test_a_full_ring_drops_the_new_block_and_counts_it():
    ring = StereoRing(32, prime=4, high=32)
    ring.write(_ramp(1, 30))
    ring.write(_ramp(31, 8))                    # does not fit: dropped whole
    assert ring.stats()["dropped"] == 8 and ring.waiting == 30
    out = np.zeros((30, 2), dtype=np.float32)
    ring.read(out)
    np.testing.assert_array_equal(out, _ramp(1, 30).astype(np.float32))


def test_only_finite_samples_within_the_ceiling_enter():
    ring = StereoRing(16, prime=1, high=16, ceiling=0.5)
    block = np.array([[np.nan, 0.25], [np.inf, -np.inf], [0.75, -2.0], [-0.5, 0.5]])
    block.flags.writeable = False               # as anamnesis.hub.monitor.listen hands it out
    ring.write(block)
    out = np.zeros((4, 2), dtype=np.float32)
    ring.read(out)
    np.testing.assert_array_equal(out, [[0.0, 0.25], [0.0, 0.0], [0.5, -0.5], [-0.5, 0.5]])
    assert ring.stats()["nonfinite"] == 3 and ring.stats()["clipped"] == 2


def test_mono_blocks_feed_both_ears_and_a_mono_device_gets_the_mid():
    ring = StereoRing(16, prime=1, high=16)
    ring.write(np.array([[0.5], [0.25]]))
    ring.write(np.array([[0.5, 0.1]]))
    out = np.zeros((3, 1), dtype=np.float32)
    ring.read(out)
    np.testing.assert_allclose(out[:, 0], [0.5, 0.25, 0.3], rtol=1e-6)
    wide = np.ones((2, 4), dtype=np.float32)    # a 4-channel device: extra channels silent
    ring.write(np.array([[0.1, 0.2], [0.3, 0.4]]))
    ring.read(wide)
    np.testing.assert_allclose(wide, [[0.1, 0.2, 0, 0], [0.3, 0.4, 0, 0]], rtol=1e-6)


@pytest.mark.parametrize("write_sizes, read_sizes", [
    ((256,), (256,)), ((64, 256, 1), (480,)), ((1000,), (1, 7, 128)), ((3, 512), (441, 64))])
def test_what_is_heard_does_not_depend_on_block_sizes(write_sizes, read_sizes):
    total = 6000
    ring = StereoRing(total, prime=1, high=total)
    pos = i = 0
    while pos < total:
        n = min(write_sizes[i % len(write_sizes)], total - pos)
        ring.write(_ramp(1 + pos, n))
        pos, i = pos + n, i + 1
    heard, i = [], 0
    while sum(len(h) for h in heard) < total:
        out = np.zeros((read_sizes[i % len(read_sizes)], 2), dtype=np.float32)
        ring.read(out)
        heard.append(out)
        i += 1
    heard = np.concatenate(heard)[:total]
    np.testing.assert_array_equal(heard, _ramp(1, total).astype(np.float32))


def test_a_producer_and_a_consumer_thread_never_tear_or_repeat_frames():
    """The event loop and PortAudio's thread, played by two threads with random block
    sizes: whatever the consumer plays is the producer's ramp in order, each frame
    once (gaps only where it underran and heard silence)."""
    total = 200_000
    ring = StereoRing(4096, prime=64, high=4096)
    heard: list[np.ndarray] = []
    done = threading.Event()

    def produce() -> None:
        rng = np.random.default_rng(1)
        pos = 0
        while pos < total:
            n = min(int(rng.integers(1, 700)), total - pos)
            before = ring.stats()["dropped"]
            ring.write(_ramp(1 + pos, n))
            if ring.stats()["dropped"] == before:
                pos += n
            else:
                time.sleep(0.0005)              # full: try the same frames again
        done.set()

    def consume() -> None:
        rng = np.random.default_rng(2)
        while not done.is_set() or ring.waiting:
            out = np.zeros((int(rng.integers(1, 600)), 2), dtype=np.float32)
            ring.read(out)
            heard.append(out)

    threads = [threading.Thread(target=produce, name="test-producer"),
               threading.Thread(target=consume, name="test-consumer")]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    played = np.concatenate(heard)
    played = played[played[:, 0] != 0.0]
    expected = _ramp(1, total).astype(np.float32)
    s = ring.stats()
    assert s["skipped"] == 0 and s["written"] == total
    np.testing.assert_array_equal(played, expected[:len(played)])
    assert len(played) == total


def test_the_audio_side_allocates_nothing():
    ring = StereoRing(48000, prime=256, high=40000)
    ring.warm_up()
    block = np.full((256, 2), 0.1)
    out = np.zeros((256, 2), dtype=np.float32)
    for _ in range(100):
        ring.write(block)

    def step() -> None:
        ring.read(out)

    step()
    peak, retained = traced_allocation(step, repeats=50)
    assert retained == 0 and peak < 1024, (peak, retained)


def test_bad_settings_are_refused():
    with pytest.raises(ValueError, match="prime <= high <= capacity"):
        StereoRing(16, prime=8, high=32)
    with pytest.raises(ValueError, match="max_prime"):
        StereoRing(64, prime=8, high=40, max_prime=40, grow=4)
    with pytest.raises(ValueError, match="ceiling"):
        StereoRing(16, prime=1, high=8, ceiling=1.5)


# ---------------------------------------------------------------------------
# The player on real devices (subprocesses)
# ---------------------------------------------------------------------------

PLAYER = r"""
import json, sys, time
import numpy as np
from anamnesis.hub.monitor.headphones import open_player
device = json.loads(sys.argv[1])
player, what = open_player(48000, device)
print(json.dumps({"opened": player is not None, "what": what}), flush=True)
if player is None:
    sys.exit(0)
sys.stdin.readline()                       # "go": the recorder is connected
t0, k, freq = time.monotonic(), 0, 440.0
while k * 256 < 2.5 * 48000:              # 2.5 s of a sine, paced like the hub's clock
    n = np.arange(k * 256, (k + 1) * 256)
    x = 0.25 * np.sin(2 * np.pi * freq * n / 48000)
    block = np.stack([x, -x], axis=1)
    block.flags.writeable = False
    player.feed(block)
    k += 1
    delay = t0 + k * 256 / 48000 - time.monotonic()
    if delay > 0:
        time.sleep(delay)
time.sleep(0.03)                           # most of the last prime plays out
stats = player.stats()
player.stop()
print(json.dumps({"stats": stats, "latency_ms": player.latency_ms()}), flush=True)
"""


def _player(env: dict[str, str], device: object = None) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", PLAYER, json.dumps(device)], cwd=REPO,
                            env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def _wait_port(env: dict[str, str], port: str, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while port not in jack_ports(env):
        assert time.monotonic() < deadline, f"JACK port {port} missing: {jack_ports(env)}"
        time.sleep(0.1)


@pytest.fixture
def jack_env(tmp_path):
    """A private jackd (dummy driver, 48 kHz, 256 frames) for one test (TESTING.md)."""
    with private_jackd(tmp_path, SR, 2, prefix="anm-preview") as env:
        yield env


def test_the_player_plays_on_jacks_default_output_without_underruns(tmp_path, jack_env):
    player = _player(jack_env)
    recorder = None
    try:
        opened = json.loads(player.stdout.readline() or "{}")
        assert opened.get("opened"), (opened, player.stderr.read() if player.poll() else "")
        assert opened["what"].startswith("'system', 2 ch at 48000 Hz"), opened
        _wait_port(jack_env, "anamnesis-preview:out_0")
        wav = tmp_path / "preview.wav"
        recorder = subprocess.Popen(
            ["ffmpeg", "-hide_banner", "-loglevel", "error", "-nostdin", "-f", "jack",
             "-channels", "2", "-i", "anm-rec", "-t", "3.5", "-c:a", "pcm_f32le", "-y",
             str(wav)], env=jack_env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        _wait_port(jack_env, "anm-rec:input_2")
        for ear in (0, 1):
            subprocess.run(["jack_connect", f"anamnesis-preview:out_{ear}",
                            f"anm-rec:input_{ear + 1}"], env=jack_env, check=True,
                           capture_output=True, timeout=10)
        player.stdin.write("go\n")
        player.stdin.flush()
        result = json.loads(player.stdout.readline() or "{}")
        assert player.wait(20) == 0, player.stderr.read()
        _, err = recorder.communicate(timeout=30)
        assert recorder.returncode == 0, err.decode(errors="replace")
    finally:
        for proc in (player, recorder):
            if proc is not None and proc.poll() is None:
                proc.kill()
                proc.wait()
    stats = result["stats"]
    print(f"\npreview on JACK dummy: latency {result['latency_ms']:.0f} ms, {stats}")
    assert stats["underruns"] == 0 and stats["callback_errors"] == 0, stats
    assert stats["written"] == -(-int(2.5 * SR) // 256) * 256 and stats["dropped"] == 0
    # The dummy driver runs on a plain timer (no RT priority, a busy machine): it may
    # fall behind (xrun flags) and the ring then trims the latency (skipped frames);
    # the rest is played.
    assert stats["played"] + stats["skipped"] + stats["waiting"] == stats["written"]
    assert stats["played"] >= 1.5 * SR, stats
    assert 40.0 <= result["latency_ms"] <= 150.0

    import soundfile

    y, rate = soundfile.read(str(wav), dtype="float64")
    assert rate == SR and y.shape[1] == 2
    assert np.all(np.isfinite(y)) and np.max(np.abs(y)) <= 10 ** (-1 / 20)
    loud = np.flatnonzero(np.abs(y[:, 0]) > 0.01)
    assert len(loud) > SR, "the recording holds less than 1 s of the sine"
    middle = y[loud[0] + SR // 4: loud[0] + SR // 4 + SR // 2]   # 0.5 s inside the sine
    rms = np.sqrt(np.mean(middle ** 2, axis=0))
    np.testing.assert_allclose(rms, 0.25 / np.sqrt(2), rtol=0.05)
    assert np.corrcoef(middle[:, 0], middle[:, 1])[0, 1] < -0.99     # left and right kept
    spectrum = np.abs(np.fft.rfft(middle[:, 0] * np.hanning(len(middle))))
    freqs = np.fft.rfftfreq(len(middle), 1 / SR)
    assert abs(freqs[np.argmax(spectrum)] - 440.0) <= 2.0


def _unavailable(env: dict[str, str], device: object = None, prelude: str = "") -> dict:
    code = prelude + PLAYER
    result = subprocess.run([sys.executable, "-c", code, json.dumps(device)], cwd=REPO,
                            env=env, capture_output=True, text=True, timeout=60,
                            check=False)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.splitlines()[0])


def test_without_an_output_device_the_player_says_so_and_does_not_raise():
    if ctypes.util.find_library("portaudio") is None:
        pytest.skip("libportaudio2 not installed: covered by the no-PortAudio case")
    # No JACK server by that name; CI machines have no sound card (TESTING.md).
    env = {**os.environ, "JACK_DEFAULT_SERVER": f"anm-none-{uuid.uuid4().hex[:6]}",
           "JACK_NO_START_SERVER": "1"}
    got = _unavailable(env)
    if got["opened"] and os.environ.get("CI") != "true":
        pytest.skip(f"this machine has a sound card: {got['what']}")
    assert got == {"opened": False, "what": "no default output device"}
    got = _unavailable(env, "no such device")
    assert not got["opened"] and got["what"].startswith("output device 'no such device'")


def test_without_the_sounddevice_package_the_player_says_so():
    prelude = "import sys; sys.modules['sounddevice'] = None\n"
    got = _unavailable(dict(os.environ), prelude=prelude)
    assert got == {"opened": False, "what": "the Python package sounddevice is not installed "
                                            "(pip install sounddevice)"}
