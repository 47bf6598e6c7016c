"""The maths of weight couplings (hub.engine.weight_couplings): every mode, the mask,
the noise, the schedule of times."""

from __future__ import annotations

import numpy as np
import pytest

from anamnesis.hub.engine.weight_couplings import BlockCouplings, couple, distance, due
from anamnesis.hub.installation.config import Coupling

A = np.array([1.0, -2.0, 3.0, 0.5])
B = np.array([-1.0, 4.0, 0.0, 2.5])


def test_blend_moves_the_target_only_by_kappa():
    new_a, new_b = couple("blend", 0.25, A, B)
    assert new_a is None
    np.testing.assert_allclose(new_b, 0.75 * B + 0.25 * A, rtol=0, atol=1e-15)
    assert distance(A, new_b) == pytest.approx(0.75 * distance(A, B), rel=1e-12)


def test_exchange_swaps_exactly_and_mean_meets_in_the_middle():
    new_a, new_b = couple("exchange", 0.7, A, B)
    np.testing.assert_array_equal(new_a, B)
    np.testing.assert_array_equal(new_b, A)
    new_a, new_b = couple("mean", 1.0, A, B)
    np.testing.assert_allclose(new_a, (A + B) / 2, atol=1e-15)
    np.testing.assert_allclose(new_b, (A + B) / 2, atol=1e-15)
    new_a, new_b = couple("mean", 0.2, A, B)
    np.testing.assert_allclose(new_a + new_b, A + B, atol=1e-14)   # the mean is kept


def test_kappa_zero_changes_nothing_and_the_inputs_are_not_written():
    a, b = A.copy(), B.copy()
    for mode in ("blend", "mean"):
        new_a, new_b = couple(mode, 0.0, a, b)
        np.testing.assert_array_equal(new_b, B)
        if new_a is not None:
            np.testing.assert_array_equal(new_a, A)
    np.testing.assert_array_equal(a, A)
    np.testing.assert_array_equal(b, B)


def test_mask_gain_and_noise_shape_what_is_carried():
    _, new_b = couple("blend", 1.0, A, B, mask=(1, 3), gain=-0.5)
    np.testing.assert_array_equal(new_b, [B[0], -0.5 * A[1], B[2], -0.5 * A[3]])
    rng1, rng2 = np.random.default_rng(4), np.random.default_rng(4)
    _, n1 = couple("blend", 1.0, A, B, noise=0.1, rng=rng1)
    _, n2 = couple("blend", 1.0, A, B, noise=0.1, rng=rng2)
    np.testing.assert_array_equal(n1, n2)                      # seeded
    assert 0.0 < np.max(np.abs(n1 - A)) < 0.6                  # noise of 0.1 (6 sigma)


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"w_to": np.zeros(3)}, "4 and 3 values"),
    ({"mask": (4,)}, "reaches weight 4"),
    ({"mode": "swap"}, "unknown coupling mode"),
    ({"noise": 0.1}, "random generator"),
])
def test_errors_are_clear(kwargs, match):
    args = {"mode": "blend", "kappa": 0.5, "w_from": A, "w_to": B, **kwargs}
    with pytest.raises(ValueError, match=match):
        couple(args.pop("mode"), args.pop("kappa"), args.pop("w_from"), args.pop("w_to"),
               **args)


def test_times_are_the_first_boundaries_after_each_period():
    # 20 Hz at 48 kHz in blocks of 256: 2400 frames apart, so boundaries 10, 19, 29, 38 ...
    fired = [k for k in range(60) if due(k, 256, 48000, 20.0)]
    assert fired == [10, 19, 29, 38, 47, 57]
    assert all(due(k, 256, 48000, 100.0 * 48000 / 256) for k in range(1, 20))
    assert not due(0, 256, 48000, 100.0)
    # over a minute the count is the rate's, to one
    count = sum(due(k, 64, 44100, 7.0) for k in range(60 * 44100 // 64))
    assert abs(count - 7 * 60) <= 1


def test_block_couplings_check_and_step():
    weights = {"a": A.copy(), "b": B.copy(), "c": np.zeros(3)}

    def write(agent_id, w):
        weights[agent_id] = w

    with pytest.raises(ValueError, match="a has 4 weights and c 3"):
        BlockCouplings([Coupling("a", "c")], sample_rate=48000, block=256).check(weights.get)
    bc = BlockCouplings([Coupling("a", "b", mode="exchange", rate_hz=20.0)],
                        sample_rate=48000, block=256)
    bc.check(weights.get)
    acted = [bc.step(k, weights.get, write) for k in range(11)]
    assert acted == [0] * 10 + [1] and bc.applied == [1]
    np.testing.assert_array_equal(weights["a"], B)
    np.testing.assert_array_equal(weights["b"], A)
