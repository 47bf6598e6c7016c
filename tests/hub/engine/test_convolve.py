"""MatrixConvolver: partitioned overlap-save equals direct convolution, allocates
nothing per block, and crossfades a response swap over one block."""


import numpy as np
import pytest
from support.alloc import traced_allocation

from anamnesis.hub.engine.convolve import MatrixConvolver

pytestmark = pytest.mark.usefixtures("fft_backend")


def reference(x: np.ndarray, irs: np.ndarray) -> np.ndarray:
    """Full-signal numpy.convolve, truncated to the input length: (n, n_out)."""
    n = x.shape[0]
    n_out, n_in, _ = irs.shape
    y = np.zeros((n, n_out))
    for o in range(n_out):
        for i in range(n_in):
            y[:, o] += np.convolve(x[:, i], irs[o, i])[:n]
    return y


def run_blocks(conv: MatrixConvolver, x: np.ndarray) -> np.ndarray:
    b = conv.block
    out = np.zeros((x.shape[0], conv.n_out))
    for start in range(0, x.shape[0], b):
        conv.process(x[start : start + b], out[start : start + b])
    return out


@pytest.mark.parametrize(
    "block, ir_len",
    [
        (64, 1000),  # many partitions (16)
        (256, 2000),
        (1024, 3000),
        (256, 40),  # IR shorter than a block
        (64, 64 * 40 + 7),  # 41 partitions, the last one a 7-sample stub
    ],
)
def test_blockwise_equals_numpy_convolve(block, ir_len):
    rng = np.random.default_rng(block * 7 + ir_len)
    irs = rng.normal(0.0, 1.0, (3, 2, ir_len))
    x = rng.normal(0.0, 1.0, (block * 12, 2))
    got = run_blocks(MatrixConvolver(irs, block), x)
    np.testing.assert_allclose(got, reference(x, irs), rtol=0, atol=1e-9)


def test_float32_matches_to_single_precision():
    rng = np.random.default_rng(3)
    irs = rng.normal(0.0, 0.05, (2, 3, 900))
    x = rng.normal(0.0, 1.0, (256 * 8, 3))
    conv = MatrixConvolver(irs.astype(np.float32), 256, dtype=np.float32)
    out = np.zeros((x.shape[0], 2), dtype=np.float32)
    for s in range(0, x.shape[0], 256):
        conv.process(x[s : s + 256].astype(np.float32), out[s : s + 256])
    np.testing.assert_allclose(out, reference(x, irs), rtol=0, atol=2e-5)


def test_reset_forgets_history():
    rng = np.random.default_rng(4)
    irs = rng.normal(0.0, 1.0, (1, 1, 500))
    conv = MatrixConvolver(irs, 64)
    run_blocks(conv, rng.normal(0.0, 1.0, (640, 1)))
    conv.reset()
    x = rng.normal(0.0, 1.0, (640, 1))
    np.testing.assert_allclose(
        run_blocks(conv, x), reference(x, irs), rtol=0, atol=1e-9
    )


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_process_allocates_nothing_per_block(dtype):
    rng = np.random.default_rng(5)
    conv = MatrixConvolver(
        rng.normal(0.0, 0.1, (10, 8, 4000)).astype(dtype), 256, dtype=dtype
    )
    x = rng.normal(0.0, 0.3, (256, 8)).astype(dtype)
    out = np.zeros((256, 10), dtype=dtype)
    for _ in range(5):
        conv.process(x, out)
    peak, retained = traced_allocation(lambda: conv.process(x, out))
    # One block's arrays would be ≥ 20 kB; the rest is numpy's call overhead, freed.
    assert peak < 3072
    assert retained < 512


def test_set_irs_crossfades_over_one_block():
    block = 128
    rng = np.random.default_rng(6)
    old_irs = rng.normal(0.0, 1.0, (2, 2, 700))
    new_irs = -3.0 * old_irs[:, :, ::-1].copy()
    # Low sines: outputs that move slowly, so a jump at the switch would stand out.
    t = np.arange(block * 10)[:, None]
    x = np.sin(
        2 * np.pi * np.array([[90.0, 130.0]]) / 48000 * t + np.array([[0.0, 1.0]])
    )
    y_old = reference(x, old_irs)
    y_new = reference(x, new_irs)
    conv = MatrixConvolver(old_irs, block)
    out = np.zeros_like(y_old)
    switch = 6
    for b in range(10):
        if b == switch:
            conv.set_irs(new_irs)
        conv.process(x[b * block : (b + 1) * block], out[b * block : (b + 1) * block])
    s, e = switch * block, (switch + 1) * block
    np.testing.assert_allclose(out[:s], y_old[:s], rtol=0, atol=1e-9)
    np.testing.assert_allclose(out[e:], y_new[e:], rtol=0, atol=1e-9)
    # Inside the fade block: the linear mix (n + 1) / block of new.
    w = (np.arange(1, block + 1) / block)[:, None]
    np.testing.assert_allclose(
        out[s:e], (1 - w) * y_old[s:e] + w * y_new[s:e], rtol=0, atol=1e-9
    )
    # No step larger than the signals' own steps plus the fade's share of their difference.
    steps = np.abs(np.diff(out[s - 1 : e + 1], axis=0))
    own = np.maximum(
        np.abs(np.diff(y_old[s - 1 : e + 1], axis=0)),
        np.abs(np.diff(y_new[s - 1 : e + 1], axis=0)),
    )
    gap = np.abs(y_new[s - 1 : e + 1] - y_old[s - 1 : e + 1]).max(axis=0)
    assert np.all(steps <= own + gap / block + 1e-9)
    # The same bound catches an abrupt switch (old up to the block, new from it).
    abrupt = np.concatenate([y_old[s - 1 : s], y_new[s : e + 1]])
    assert not np.all(np.abs(np.diff(abrupt, axis=0)) <= own + gap / block + 1e-9)


def test_rejects_bad_arguments():
    with pytest.raises(ValueError, match="block must be in 64..1024"):
        MatrixConvolver(np.zeros((1, 1, 10)), 32)
    with pytest.raises(
        ValueError, match=r"irs must have shape \(n_out, n_in, ir_len\)"
    ):
        MatrixConvolver(np.zeros((1, 10)), 64)
    conv = MatrixConvolver(np.zeros((2, 3, 10)), 64)
    with pytest.raises(ValueError, match=r"x must have shape \(64, 3\)"):
        conv.process(np.zeros((64, 2)))
    with pytest.raises(ValueError, match=r"new irs must have shape \(2, 3, 10\)"):
        conv.set_irs(np.zeros((2, 3, 11)))
