"""The safety chain: whatever a model emits, a speaker gets finite samples <= the ceiling."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from numpy.testing import assert_allclose, assert_array_equal

from anamnesis.agents.dsp import safety
from anamnesis.agents.dsp.safety import SafetyChain, db_to_lin

SR = 48000
WILD = [np.nan, np.inf, -np.inf, 1e30, -1e30, 1e308, -1e308, 5e-324, 0.0, 1.0, -1.0]


def _segments(total: int, sizes: list[int]) -> list[tuple[int, int]]:
    out, pos, k = [], 0, 0
    while pos < total:
        step = sizes[k % len(sizes)] if sizes else total
        out.append((pos, min(total, pos + step)))
        pos += step
        k += 1
    return out


@st.composite
def wild_signals(draw, max_frames: int = 4000):
    """Signals mixing noise, DC, full-scale squares and non-finite/huge spikes."""
    frames = draw(st.integers(1, max_frames))
    kind = draw(st.sampled_from(["noise", "dc", "square", "huge", "wild"]))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    if kind == "noise":
        x = rng.normal(0.0, draw(st.floats(1e-3, 1e3)), frames)
    elif kind == "dc":
        x = np.full(frames, draw(st.floats(-1e6, 1e6)))
    elif kind == "square":
        period = draw(st.integers(2, 2000))
        x = np.where((np.arange(frames) // (period // 2 + 1)) % 2 == 0, 1.0, -1.0)
    elif kind == "huge":
        x = rng.choice([1e30, -1e30, 1e10, -3e5], frames)
    else:
        x = rng.choice(np.array(WILD), frames)
    spikes = draw(st.lists(st.tuples(st.integers(0, frames - 1), st.sampled_from(WILD)),
                           max_size=8))
    for i, v in spikes:
        x[i] = v
    return x


@settings(max_examples=150, deadline=None)
@given(x=wild_signals(), gain_db=st.floats(-60.0, 12.0),
       ceiling_db=st.floats(-60.0, 0.0), block=st.integers(1, 1024),
       mute=st.booleans())
def test_any_input_gives_finite_output_at_or_below_the_ceiling(x, gain_db, ceiling_db, block,
                                                                 mute):
    chain = SafetyChain(SR, block, ceiling_db)
    chain.set_gain_db(gain_db)
    chain.set_mute(mute)
    y = chain.process(x)
    assert np.all(np.isfinite(y))
    assert np.max(np.abs(y)) <= chain.ceiling
    assert np.max(np.abs(y.astype(np.float32))) <= db_to_lin(ceiling_db)
    # The limiter itself holds the ceiling: the hard clamp never had to catch it.
    assert chain.counters()["clamped"] == 0
    expected_nonfinite = int(np.sum(~np.isfinite(x)))
    assert chain.counters()["nonfinite"] == expected_nonfinite


@settings(max_examples=40, deadline=None)
@given(x=wild_signals(max_frames=3000), sizes=st.lists(st.integers(0, 700), min_size=1,
                                                        max_size=6))
def test_blockwise_output_equals_one_shot(x, sizes):
    one = SafetyChain(SR, 4096)
    expected = one.process(x)
    split = SafetyChain(SR, 4096)
    got = np.empty_like(x)
    if not any(sizes):
        sizes = [1]
    for a, b in _segments(len(x), [s for s in sizes if s] or [1]):
        split.process(x[a:b], out=got[a:b])
        split.process(x[b:b])  # a zero-length block changes nothing
    assert_array_equal(got, expected)


@settings(max_examples=40, deadline=None)
@given(block=st.sampled_from([32, 64, 256, 512, 1024]), amp=st.floats(0.01, 100.0),
       when=st.integers(0, 20))
def test_panic_reaches_exact_silence_within_50_ms_and_stays_there(block, amp, when):
    chain = SafetyChain(SR, block)
    rng = np.random.default_rng(1)
    for _ in range(when):
        chain.process(rng.normal(0.0, amp, block))
    chain.panic()
    after = np.concatenate([chain.process(rng.normal(0.0, amp, block)) for _ in range(60)])
    # In real time the call lands while a block is in flight: the fade begins at the
    # next block start, up to one block later.
    limit = int(0.050 * SR) - block
    assert np.all(after[limit:] == 0.0)
    assert chain.panicked
    # still silent much later, whatever comes in
    later = chain.process(np.full(block, 1e30))
    assert np.all(later == 0.0)


def test_unpanic_fades_back_in_without_a_jump():
    chain = SafetyChain(SR, 256)
    x = 0.5 * np.sin(2 * np.pi * 1000.0 * np.arange(SR) / SR)
    chain.panic()
    chain.process(x[: SR // 2])
    chain.unpanic()
    y = chain.process(x[SR // 2:])
    fade = int(safety.UNPANIC_FADE_S * SR)
    env_early = np.max(np.abs(y[: fade // 10]))
    assert env_early < 0.5 * 0.11  # the first tenth of the fade stays below 11 % of the level
    assert_allclose(np.max(np.abs(y[fade + 1000:])), 0.5, rtol=0.01)


@pytest.mark.parametrize("toggle, before, after", [
    ("mute", 1.0, 0.0), ("unmute", 0.0, 1.0), ("gain_down", 1.0, 1e-3), ("gain_up", 1e-3, 1.0)])
def test_gain_and_mute_ramps_are_click_free(toggle, before, after):
    """A change lands as a ramp of about 10 ms, not as a step: the gain trajectory,
    read as the ratio to a reference chain left at unity, moves by at most
    1/(9 ms) of the whole change per sample, and reaches its target."""
    amp, freq, switch = 0.5, 1000.0, 12000  # the switch falls on a sine peak
    x = amp * np.sin(2 * np.pi * freq * np.arange(SR // 2) / SR)
    reference = SafetyChain(SR, 240).process(x)
    chain = SafetyChain(SR, 240)
    chain.set_mute(toggle == "unmute")
    chain.set_gain_db(-60.0 if toggle == "gain_up" else 0.0)
    chain.reset()  # start from the settled state
    first = chain.process(x[:switch])
    if toggle in ("mute", "unmute"):
        chain.set_mute(toggle == "mute")
    else:
        chain.set_gain_db(-60.0 if toggle == "gain_down" else 0.0)
    y = np.concatenate([first, chain.process(x[switch:])])
    valid = np.flatnonzero(np.abs(reference) > 0.2)
    valid = valid[valid > 2000]  # after the high-pass has settled
    ratio = y[valid] / reference[valid]
    slope = np.abs(np.diff(ratio)) / np.diff(valid)
    assert np.max(slope) <= abs(after - before) / (0.009 * SR)
    assert_allclose(ratio[valid < switch], before, rtol=1e-6, atol=1e-9)
    settled = valid > switch + 0.011 * SR + chain.latency
    assert_allclose(ratio[settled], after, rtol=1e-6, atol=1e-9)


def test_dc_is_removed_and_audio_passes_at_unity():
    chain = SafetyChain(SR, 1024)
    t = np.arange(2 * SR) / SR
    y = chain.process(0.4 + 0.3 * np.sin(2 * np.pi * 200.0 * t))
    tail = y[SR:]
    assert abs(np.mean(tail)) < 1e-4
    assert_allclose(np.max(np.abs(tail)), 0.3, rtol=0.005)  # 200 Hz: within 0.05 dB
    assert chain.counters()["limited"] == 0


def test_highpass_corner_is_20_hz():
    chain = SafetyChain(SR, 4096)
    t = np.arange(4 * SR) / SR
    y = chain.process(0.5 * np.sin(2 * np.pi * 20.0 * t))
    ratio = np.max(np.abs(y[2 * SR:])) / 0.5
    assert_allclose(20 * math.log10(ratio), -3.0, atol=0.3)  # Butterworth corner


def test_lowpass_is_scipys_twelfth_order_butterworth_at_17_khz():
    """The speaker-protecting low-pass against an independent design (scipy's butter,
    second-order sections) over the same 20 Hz high-pass."""
    from scipy.signal import butter, sosfilt

    rng = np.random.default_rng(3)
    x = rng.normal(0.0, 0.05, 3 * SR)       # quiet: the limiter never acts
    on, off = SafetyChain(SR, 1024), SafetyChain(SR, 1024, lowpass_hz=None)
    assert on.lowpass_hz == 17000.0 and off.lowpass_hz is None
    expected = sosfilt(butter(12, 17000.0, fs=SR, output="sos"), off.process(x))
    got = on.process(x)
    assert on.counters()["limited"] == 0
    assert_allclose(got, expected, atol=1e-12)


@pytest.mark.parametrize(("hz", "lo_db", "hi_db"), [
    (1000.0, -0.01, 0.01), (10000.0, -0.01, 0.01), (15000.0, -0.05, 0.01),
    (17000.0, -3.2, -2.8), (20000.0, -90.0, -63.0), (21000.0, -130.0, -94.0),
    (23900.0, -400.0, -150.0)])
def test_lowpass_passes_the_audible_band_and_stops_the_tweeter_band(hz, lo_db, hi_db):
    chain = SafetyChain(SR, 4096)
    t = np.arange(2 * SR) / SR
    y = chain.process(0.5 * np.sin(2 * np.pi * hz * t))
    level = 20 * math.log10(max(np.sqrt(2 * np.mean(y[SR:] ** 2)), 1e-30) / 0.5)
    assert lo_db <= level <= hi_db, f"{hz:g} Hz: {level:.2f} dB"


def test_a_model_oscillating_near_nyquist_leaves_the_speaker_below_minus_40_dbfs():
    """A learner locked into a full-scale oscillation at 20-24 kHz (every model's output
    is bounded by its activation: |y| <= 1) reaches the speaker at most -40 dBFS, at the
    largest gain (+12 dB) too."""
    t = np.arange(SR) / SR
    for hz in (20000.0, 21500.0, 23000.0, 24000.0):
        x = np.cos(2 * np.pi * hz * t)
        y = SafetyChain(SR, 256).process(x)
        assert np.max(np.abs(y[SR // 4:])) <= db_to_lin(-40.0), hz
        loud = SafetyChain(SR, 256)
        loud.set_gain_db(SafetyChain.GAIN_MAX_DB)
        assert np.max(np.abs(loud.process(x)[SR // 4:])) <= db_to_lin(-40.0), hz
        assert np.max(np.abs(SafetyChain(SR, 256, lowpass_hz=None).process(x)[SR // 4:])) \
            >= db_to_lin(-1.1), "without the low-pass the tone reaches the ceiling"


def test_lowpass_is_checked_and_capped_below_nyquist():
    assert SafetyChain(32000, 64).lowpass_hz == pytest.approx(0.45 * 32000)
    for bad in (0.0, 500.0, math.nan, math.inf, "17k"):
        with pytest.raises(ValueError, match="lowpass must be None"):
            SafetyChain(SR, 64, lowpass_hz=bad)


def test_limiter_holds_full_scale_square_and_releases():
    chain = SafetyChain(SR, 512, ceiling_db=-6.0)
    sq = np.where((np.arange(SR) // 120) % 2 == 0, 1.0, -1.0)
    y = chain.process(np.concatenate([sq, 0.05 * np.sin(2 * np.pi * 440 * np.arange(SR) / SR)]))
    assert np.max(np.abs(y)) <= chain.ceiling
    assert np.max(np.abs(y[SR // 2:SR])) > 0.95 * chain.ceiling  # it sits at the ceiling
    # after the release (100 ms time constant) the quiet sine is untouched
    assert_allclose(np.max(np.abs(y[SR + SR // 2:])), 0.05, rtol=0.01)


def test_nonfinite_input_does_not_poison_the_state():
    chain = SafetyChain(SR, 256)
    x = 0.3 * np.sin(2 * np.pi * 300.0 * np.arange(SR) / SR)
    x[1000:1010] = np.nan
    x[2000] = np.inf
    y = chain.process(x)
    assert np.all(np.isfinite(y))
    assert chain.counters()["nonfinite"] == 11
    assert_allclose(np.max(np.abs(y[SR // 2:])), 0.3, rtol=0.01)


def test_kernel_without_jit_matches_the_compiled_kernel():
    rng = np.random.default_rng(7)
    x = rng.normal(0.0, 2.0, 3000)
    x[[5, 600]] = [np.nan, 1e30]
    compiled = SafetyChain(SR, 3000)
    expected = compiled.process(x)
    plain = SafetyChain(SR, 3000)
    got = np.empty_like(x)
    safety.safety_kernel.py_func(x, got, len(x), plain._targets, plain._state, plain._coef,
                                 plain._delay, plain._released, plain._hold_val,
                                 plain._hold_age, plain._lim, plain._counters, plain._lpc,
                                 plain._lpz)
    assert_array_equal(got, expected)


def _scan_limiter(v: np.ndarray, ceil: float, lookahead: int, release_k: float) -> np.ndarray:
    """The limiter of the module docstring, step 5, written as the scans it describes:
    the needed gain min-held over L+1 samples, released, averaged over L, the signal
    delayed by L; then the hard clamp."""
    hold, boxed = [1.0] * (lookahead + 1), [1.0] * lookahead
    delay = [0.0] * lookahead
    r, out = 1.0, np.zeros(len(v))
    for i, x in enumerate(v):
        a = abs(x)
        hold[i % len(hold)] = 1.0 if a <= ceil else ceil / a
        held = min(hold)
        r = held if held < r else r + (held - r) * release_k
        boxed[i % lookahead] = r
        out[i] = delay[i % lookahead] * (sum(boxed) / lookahead)
        delay[i % lookahead] = x
    return np.clip(out, -ceil, ceil)


@pytest.mark.parametrize("lookahead_ms", [0.02, 1.0, 5.0])
def test_the_limiter_equals_its_scans(lookahead_ms):
    """The monotonic queue and the fixed-point running sum give the scans' limiter:
    the pre-limiter signal is what a chain whose limiter never acts plays (delayed by
    L), and a chain at -20 dBFS on the same input must equal the scans applied to it."""
    rng = np.random.default_rng(11)
    n = 6000
    x = rng.normal(0.0, 0.05, n) * (1.0 + 3.0 * (np.arange(n) % 1500 < 200))   # bursts
    x[2500:2600] = 0.5 * np.sign(np.sin(np.arange(100) * 0.3))                    # a square
    clean = SafetyChain(SR, n, ceiling_db=0.0, lookahead_ms=lookahead_ms, lowpass_hz=None)
    through = clean.process(x)
    L = clean.latency
    assert clean.counters()["limited"] == 0
    v = through[L:]                      # the signal entering the limiter, samples 0..n-L
    loud = SafetyChain(SR, 256, ceiling_db=-20.0, lookahead_ms=lookahead_ms, lowpass_hz=None)
    got = loud.process(x)
    expected = _scan_limiter(v, loud.ceiling, L, loud._coef[safety.C_RELEASE_K])
    assert loud.counters()["limited"] > 1000
    assert_allclose(got[:n - L], expected, rtol=1e-12, atol=1e-15)
    assert np.max(np.abs(got)) <= loud.ceiling


def test_ceiling_is_a_float32_value_not_above_the_requested_level():
    chain = SafetyChain(SR, 64, ceiling_db=-1.0)
    assert chain.ceiling <= db_to_lin(-1.0)
    assert float(np.float32(chain.ceiling)) == chain.ceiling
    assert db_to_lin(-1.0) - chain.ceiling < 1e-7


@pytest.mark.parametrize("kwargs, match", [
    ({"ceiling_db": 3.0}, r"ceiling must be in \[-60, 0\] dBFS"),
    ({"ceiling_db": float("nan")}, r"ceiling must be in"),
    ({"sample_rate": 100}, r"sample_rate must be a whole number in \[8000, 384000\]"),
    ({"max_block": 0}, r"max_block must be a whole number in \[1, 65536\]"),
    ({"lookahead_ms": 50.0}, r"lookahead must be in \[0, 20\] ms"),
])
def test_constructor_rejects_bad_settings(kwargs, match):
    args = {"sample_rate": SR, "max_block": 256, **kwargs}
    with pytest.raises(ValueError, match=match):
        SafetyChain(**args)


@pytest.mark.parametrize("db", [12.5, -61.0, float("inf"), float("nan")])
def test_gain_out_of_range_is_rejected_and_unchanged(db):
    chain = SafetyChain(SR, 64)
    chain.set_gain_db(-6.0)
    with pytest.raises(ValueError, match=r"gain must be in \[-60, 12\] dB"):
        chain.set_gain_db(db)
    assert chain.gain_db == -6.0
