"""RoomConvolver: non-uniform partitions equal direct convolution, cover every response
exactly once with one partition of slack per level, allocate nothing per block, and
turn a response swap over without a step."""

import numpy as np
import pytest
from support.alloc import traced_allocation

from anamnesis.hub.engine.partitions import GROWTH, MAX_PARTITION, RoomConvolver, levels

pytestmark = pytest.mark.usefixtures("fft_backend")


def reference(x: np.ndarray, irs: np.ndarray) -> np.ndarray:
    """Full-signal convolution (scipy's, by one FFT of the whole signal: another method
    than partitions), truncated to the input length: (n, n_out)."""
    from scipy.signal import fftconvolve

    n = x.shape[0]
    y = np.zeros((n, irs.shape[0]))
    for o in range(irs.shape[0]):
        for i in range(irs.shape[1]):
            y[:, o] += fftconvolve(x[:, i], irs[o, i])[:n]
    return y


def run_blocks(conv: RoomConvolver, x: np.ndarray, dtype=np.float64) -> np.ndarray:
    b = conv.block
    out = np.zeros((x.shape[0], conv.n_out), dtype=dtype)
    for start in range(0, x.shape[0], b):
        conv.process(x[start:start + b].astype(dtype), out[start:start + b])
    return out


@pytest.mark.parametrize("ir_len", [1, 40, 256, 2047, 2048, 2049, 8192, 24000, 100_000])
@pytest.mark.parametrize("block", [64, 256, 1024])
def test_levels_cover_the_response_once_with_slack(ir_len, block):
    got = levels(ir_len, block)
    assert got[0][:2] == (0, block)
    end = 0
    for k, (start, size, parts) in enumerate(got):
        assert start == end and parts >= 1
        assert size == min(block * GROWTH ** k, block * MAX_PARTITION)
        if k:
            assert start >= 2 * size          # one partition of slack before it is due
        end = start + parts * size
    assert end - got[-1][1] < ir_len <= end     # the last partition is the last needed


@pytest.mark.parametrize("block, ir_len", [(64, 1000), (64, 64 * 300 + 7), (256, 24000),
                                           (256, 40), (1024, 30000), (128, 9000)])
def test_blockwise_equals_one_whole_signal_convolution(block, ir_len):
    rng = np.random.default_rng(block + ir_len)
    irs = rng.normal(0.0, 1.0, (3, 2, ir_len))
    x = rng.normal(0.0, 1.0, (block * 40 + ir_len // block * block, 2))
    got = run_blocks(RoomConvolver(irs, block), x)
    ref = reference(x, irs)
    np.testing.assert_allclose(got, ref, rtol=0, atol=1e-9 * np.abs(ref).max())


def test_float32_matches_to_single_precision_relative():
    rng = np.random.default_rng(3)
    irs = rng.normal(0.0, 0.05, (10, 8, 24000))
    x = rng.normal(0.0, 0.3, (256 * 120, 8))
    got = run_blocks(RoomConvolver(irs.astype(np.float32), 256, dtype=np.float32), x,
                     np.float32)
    ref = reference(x, irs)
    assert np.max(np.abs(got - ref)) <= 1e-5 * np.max(np.abs(ref))


def test_reset_forgets_history_and_pending_tails():
    rng = np.random.default_rng(4)
    irs = rng.normal(0.0, 1.0, (1, 1, 5000))
    conv = RoomConvolver(irs, 64)
    run_blocks(conv, rng.normal(0.0, 1.0, (64 * 50, 1)))
    conv.reset()
    x = rng.normal(0.0, 1.0, (64 * 100, 1))
    np.testing.assert_allclose(run_blocks(conv, x), reference(x, irs), rtol=0, atol=1e-8)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_process_allocates_nothing_per_block(dtype):
    rng = np.random.default_rng(5)
    conv = RoomConvolver(rng.normal(0.0, 0.1, (10, 8, 24000)).astype(dtype), 256, dtype=dtype)
    x = rng.normal(0.0, 0.3, (256, 8)).astype(dtype)
    out = np.zeros((256, 10), dtype=dtype)
    for _ in range(40):
        conv.process(x, out)
    # Every level's turn comes within 16 blocks: trace a whole cycle of them.
    def cycle() -> None:
        for _ in range(16):
            conv.process(x, out)
    peak, retained = traced_allocation(cycle)
    assert peak < 4096 and retained < 512


def test_a_swap_turns_over_level_by_level_without_a_step():
    block = 128
    rng = np.random.default_rng(6)
    old_irs = rng.normal(0.0, 0.2, (2, 2, 6000)) * np.exp(-np.arange(6000) / 1500)
    new_irs = -2.0 * old_irs[:, :, ::-1].copy() * np.exp(-np.arange(6000) / 800)
    n = block * 200
    t = np.arange(n)[:, None]
    x = np.sin(2 * np.pi * np.array([[90.0, 130.0]]) / 48000 * t + np.array([[0.0, 1.0]]))
    y_old, y_new = reference(x, old_irs), reference(x, new_irs)
    conv = RoomConvolver(old_irs, block)
    out = np.zeros_like(y_old)
    switch = 100
    for b in range(n // block):
        if b == switch:
            conv.set_irs(new_irs)
        conv.process(x[b * block:(b + 1) * block], out[b * block:(b + 1) * block])
    s = switch * block
    start, size, _ = conv.levels[-1]
    settled = s + start + 2 * size                 # the last level's first new partition
    np.testing.assert_allclose(out[:s], y_old[:s], rtol=0, atol=1e-9)
    np.testing.assert_allclose(out[settled:], y_new[settled:], rtol=0, atol=1e-9)
    # During the turnover no step is larger than the signals' own steps plus the fades'
    # share of their difference (each level fades over at least one block).
    gap = np.abs(y_new - y_old)[s - 1:settled + 1].max(axis=0)
    steps = np.abs(np.diff(out[s - 1:settled + 1], axis=0))
    own = np.maximum(np.abs(np.diff(y_old[s - 1:settled + 1], axis=0)),
                     np.abs(np.diff(y_new[s - 1:settled + 1], axis=0)))
    assert np.all(steps <= own + len(conv.levels) * gap / block + 1e-9)
    # The same bound catches an abrupt switch (old up to the swap, new from it).
    abrupt = np.concatenate([y_old[s - 1:s], y_new[s:settled + 1]])
    assert not np.all(np.abs(np.diff(abrupt, axis=0)) <= own + len(conv.levels) * gap / block
                      + 1e-9)


def test_rejects_bad_arguments():
    with pytest.raises(ValueError, match="block must be in 64..1024"):
        RoomConvolver(np.zeros((1, 1, 10)), 32)
    with pytest.raises(ValueError, match="irs must have shape"):
        RoomConvolver(np.zeros((1, 10)), 64)
    conv = RoomConvolver(np.zeros((2, 3, 10)), 64)
    with pytest.raises(ValueError, match="new irs must have shape"):
        conv.prepare(np.zeros((2, 3, 11)))
    with pytest.raises(ValueError, match="x must have shape"):
        conv.process(np.zeros((64, 2)))


def test_each_levels_multiply_adds_are_spread_over_its_blocks():
    """No block does a tail level's whole multiply-accumulate: each does at most its
    share, ceil(n / (m - 1)) partitions of a level of n partitions of m blocks."""
    conv = RoomConvolver(np.zeros((2, 2, 24000)), 256)
    done: list[list[int]] = [[] for _ in conv.levels[1:]]
    for k, stage in enumerate(conv._stages[1:]):
        def spy(p0, p1, real=stage.accumulate, k=k):
            done[k][-1] += p1 - p0
            real(p0, p1)
        stage.accumulate = spy
    x = np.zeros((256, 2))
    for _ in range(3 * 64):
        for counts in done:
            counts.append(0)
        conv.process(x)
    for (_, size, parts), counts in zip(conv.levels[1:], done, strict=True):
        m = size // 256
        assert max(counts) <= -(-parts // (m - 1)), (size, counts[:2 * m])
        assert sum(counts) >= parts * (len(counts) // m - 1)     # and all of it is done


def test_tails_on_another_thread_while_the_input_is_overwritten_give_the_same_bits():
    """process_head then process_tails on a second thread, the caller overwriting its
    input block meanwhile (as the rehearsal's voices do), equals process bit for bit;
    a head whose tails were never run runs them first."""
    import threading

    rng = np.random.default_rng(7)
    irs = rng.normal(0.0, 0.1, (3, 2, 9000)).astype(np.float32)
    x = rng.normal(0.0, 0.3, (256 * 60, 2))
    whole = run_blocks(RoomConvolver(irs, 256, dtype=np.float32), x, np.float32)
    conv = RoomConvolver(irs, 256, dtype=np.float32)
    split = np.zeros_like(whole)
    block = np.zeros((256, 2), dtype=np.float32)
    for b in range(60):
        block[...] = x[b * 256:(b + 1) * 256]
        conv.process_head(block, split[b * 256:(b + 1) * 256])
        if b % 7 == 3:
            continue                      # left to the next process_head
        tails = threading.Thread(target=conv.process_tails)
        tails.start()
        block[...] = np.nan               # the caller's next use of its buffer
        tails.join()
    assert_equal = np.testing.assert_array_equal
    assert_equal(split, whole)
