"""The shoebox room: direct-path delay and 1/r gain, RT60 of the decay, the disk
cache, the listener's ears and validation."""

import numpy as np
import pytest

from anamnesis.hub.engine.room import EAR_SPACING_M, SPEED_OF_SOUND_M_S, Room, listener_ears

SR = 48000
SIZE = (6.0, 5.0, 3.0)


def schroeder_rt60(h: np.ndarray, sample_rate: int) -> float:
    """RT60 (s) from the T20 slope (-5 to -25 dB) of the Schroeder backward integral."""
    energy = np.cumsum((h**2)[::-1])[::-1]
    db = 10.0 * np.log10(energy / energy[0] + 1e-300)
    i5 = int(np.argmax(db <= -5.0))
    i25 = int(np.argmax(db <= -25.0))
    return 3.0 * (i25 - i5) / sample_rate


def first_arrival(h: np.ndarray) -> tuple[int, float]:
    """Peak position (samples) and RMS-equivalent amplitude of the first arrival: the
    energy of ±20 samples around the first sample above half the global peak."""
    onset = int(np.argmax(np.abs(h) >= 0.5 * np.abs(h).max()))
    lo = max(onset - 20, 0)
    window = h[lo : onset + 21]
    return lo + int(np.argmax(np.abs(window))), float(np.sqrt(np.sum(window**2)))


def test_direct_path_arrives_after_distance_over_c():
    room = Room(SIZE, absorption=0.3, max_order=2, max_len_s=0.1)
    speaker = np.array([1.3, 1.1, 1.5])
    mics = np.array([[4.2, 3.7, 1.2], [2.05, 1.4, 1.6], [5.1, 0.7, 2.6]])
    irs = room.impulse_responses([speaker], mics)
    assert irs.shape == (3, 1, int(0.1 * SR))
    for m, mic in enumerate(mics):
        expected = np.linalg.norm(mic - speaker) / SPEED_OF_SOUND_M_S * SR
        peak, _ = first_arrival(irs[m, 0])
        assert abs(peak - expected) <= 1.0, (m, peak, expected)


def test_direct_path_amplitude_falls_as_one_over_r():
    # Only the direct path (order 0), so nothing else overlaps the window.
    room = Room(SIZE, absorption=0.3, max_order=0, max_len_s=0.1)
    speaker = np.array([1.0, 2.5, 1.5])
    mics = np.array([[2.0, 2.5, 1.5], [4.53, 2.5, 1.5]])  # 1 m and 3.53 m
    irs = room.impulse_responses([speaker], mics)
    (_, near), (_, far) = first_arrival(irs[0, 0]), first_arrival(irs[1, 0])
    np.testing.assert_allclose(near / far, 3.53, rtol=0.03)
    # Unity gain at 1 m (the windowed sinc keeps the energy of a unit impulse).
    np.testing.assert_allclose(near, 1.0, rtol=0.03)


def test_longer_rt60_gives_longer_decay():
    speaker, mic = [[1.3, 1.1, 1.5]], [[4.2, 3.7, 1.2]]
    estimates = {}
    for rt60, length in [(0.3, 0.5), (0.7, 1.0)]:
        room = Room(SIZE, rt60_s=rt60, max_order=80, max_len_s=length)
        estimates[rt60] = schroeder_rt60(room.impulse_responses(speaker, mic)[0, 0], SR)
        np.testing.assert_allclose(estimates[rt60], rt60, rtol=0.3)
    assert estimates[0.7] > 1.5 * estimates[0.3]


def test_response_is_capped_and_faded():
    room = Room(SIZE, rt60_s=1.0, max_order=20, max_len_s=0.25, fade_s=0.01)
    h = room.impulse_responses([[1.0, 1.0, 1.0]], [[5.0, 4.0, 2.0]])[0, 0]
    assert h.shape == (int(0.25 * SR),)
    assert h[-1] == 0.0
    fade = np.abs(h[-480:])
    before = np.abs(h[-960:-480])
    # Reverberant tail still well above zero before the fade, ramped to zero in it.
    assert before.max() > 1e-3
    assert np.abs(h[-48:]).max() < 0.1 * before.max()
    assert fade.max() <= before.max() * 1.5


def test_cache_hit_is_identical_and_a_moved_speaker_misses(tmp_path):
    room = Room(SIZE, rt60_s=0.4, max_order=10, max_len_s=0.2)
    speakers = [[1.0, 1.0, 1.0], [5.0, 4.0, 2.0]]
    mics = [[2.0, 3.0, 1.5]]
    first = room.impulse_responses(speakers, mics, cache_dir=tmp_path)
    files = sorted(tmp_path.iterdir())
    assert len(files) == 1 and files[0].suffix == ".npz"
    mtime = files[0].stat().st_mtime_ns
    again = room.impulse_responses(speakers, mics, cache_dir=tmp_path)
    np.testing.assert_array_equal(again, first)
    assert files[0].stat().st_mtime_ns == mtime
    moved = room.impulse_responses(
        [[1.0, 1.2, 1.0], [5.0, 4.0, 2.0]], mics, cache_dir=tmp_path
    )
    assert len(list(tmp_path.glob("*.npz"))) == 2
    assert not np.array_equal(moved, first)
    np.testing.assert_array_equal(
        moved[:, 1], first[:, 1]
    )  # the other speaker is unchanged
    assert not list(tmp_path.glob("*.tmp"))
    # The room itself is part of the key.
    other = Room(SIZE, rt60_s=0.5, max_order=10, max_len_s=0.2)
    assert other.cache_key(speakers, mics) != room.cache_key(speakers, mics)


def test_listener_is_a_pair_17_cm_apart_facing_plus_y():
    ears = listener_ears([3.0, 2.0, 1.6])
    np.testing.assert_allclose(
        ears, [[3.0 - 0.085, 2.0, 1.6], [3.0 + 0.085, 2.0, 1.6]], rtol=0, atol=1e-12
    )
    assert EAR_SPACING_M == pytest.approx(0.17)
    # A speaker to the listener's left (-x) reaches the left ear first and louder.
    room = Room(SIZE, absorption=0.5, max_order=0, max_len_s=0.05)
    irs = room.coupling_responses([[1.0, 2.0, 1.6]], [[4.0, 4.0, 1.0]], [3.0, 2.0, 1.6])
    assert irs.shape == (3, 1, int(0.05 * SR))
    (t_left, a_left), (t_right, a_right) = (
        first_arrival(irs[1, 0]),
        first_arrival(irs[2, 0]),
    )
    assert t_right - t_left == pytest.approx(
        EAR_SPACING_M / SPEED_OF_SOUND_M_S * SR, abs=1.0
    )
    assert a_left > a_right


def test_room_errors_are_reported_together():
    with pytest.raises(
        ValueError,
        match=r"size_m must be > 0.*exactly one of rt60_s or absorption.*max_order",
    ):
        Room((6.0, 0.0, 3.0), max_order=-1)
    with pytest.raises(
        ValueError, match=r"rt60_s 0.05 s is infeasible.*shortest is 0\.\d+ s"
    ):
        Room(SIZE, rt60_s=0.05)
    with pytest.raises(
        ValueError, match=r"absorption must be in \(0, 1\].*fade_s must be in"
    ):
        Room(SIZE, absorption=1.5, max_len_s=0.1, fade_s=0.2)


def test_position_errors_are_reported_together():
    room = Room(SIZE, absorption=0.3)
    with pytest.raises(
        ValueError,
        match=r"speakers\[1\] \(6\.0, 1\.0, 1\.0\) is not strictly inside.*mics\[0\] \(1\.0, -0\.5, 1\.0\)",
    ):
        room.impulse_responses([[1.0, 1.0, 1.0], [6.0, 1.0, 1.0]], [[1.0, -0.5, 1.0]])
    with pytest.raises(ValueError, match=r"mics must be a non-empty \(n, 3\) array"):
        room.impulse_responses([[1.0, 1.0, 1.0]], [[1.0, 1.0]])
