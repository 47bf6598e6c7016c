"""RoomCoupling: each mic hears every speaker through the room (plus its self-noise), the
listener's ears likewise; a moved speaker crossfades without a click; nothing is allocated
per block."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from support.alloc import traced_allocation

from anamnesis.hub.engine.coupling import RoomCoupling, compute_responses, ears
from anamnesis.hub.engine.room import SPEED_OF_SOUND_M_S
from anamnesis.hub.installation.config import AgentSpec, Room

SR, BLOCK = 48000, 256
ROOM = Room(size=(6.0, 5.0, 3.0), rt60=0.3, max_order=4, listener=(3.0, 2.5, 1.6),
            mic_noise_db=-200.0)
AGENTS = (
    AgentSpec(id="a", model="autoregnn", speaker=(1.0, 1.0, 1.5), mic=(1.2, 1.0, 1.5)),
    AgentSpec(id="b", model="autoregnn", speaker=(5.0, 4.0, 1.5), mic=(4.8, 4.0, 1.5)),
    AgentSpec(id="c", model="autoregnn"),            # no positions: takes no part
)


@pytest.fixture(scope="module")
def irs():
    return compute_responses(ROOM, AGENTS, SR)


def run(coupling: RoomCoupling, outputs: np.ndarray):
    n = outputs.shape[0]
    mics, ear = np.zeros((n, 3)), np.zeros((n, 2))
    for k in range(0, n, BLOCK):
        coupling.process(outputs[k:k + BLOCK], mics[k:k + BLOCK], ear[k:k + BLOCK])
    return mics, ear


def test_a_click_arrives_after_the_distance(irs):
    coupling = RoomCoupling(ROOM, AGENTS, sample_rate=SR, block=BLOCK, irs=irs,
                            dtype=np.float64)
    outputs = np.zeros((8 * BLOCK, 3))
    outputs[0, 0] = 1.0                                # a click from a's speaker
    mics, ear = run(coupling, outputs)
    d = np.linalg.norm(np.subtract(AGENTS[1].mic, AGENTS[0].speaker))
    expected = d / SPEED_OF_SOUND_M_S * SR
    # The first arrival (the direct path, a fractional delay spread over two samples;
    # later, coinciding reflections of this symmetric room may peak higher).
    onset = np.flatnonzero(np.abs(mics[:, 1]) > 0.4 / d)[0]
    assert abs(onset - expected) <= 1.0, (onset, expected)
    assert not mics[:onset - 48, 1].any() or np.abs(mics[:onset - 48, 1]).max() < 0.05 / d
    assert not mics[:, 2].any(), "an agent without a mic hears nothing"
    r = np.linalg.norm(ears(ROOM)[0] - AGENTS[0].speaker)
    onset = np.flatnonzero(np.abs(ear[:, 0]) > 0.4 / r)[0]
    assert abs(onset - r / SPEED_OF_SOUND_M_S * SR) <= 1.0


def test_without_a_listener_the_mics_are_the_same(irs):
    outputs = np.random.default_rng(2).standard_normal((4 * BLOCK, 3)) * 0.1
    with_ears = RoomCoupling(ROOM, AGENTS, sample_rate=SR, block=BLOCK, irs=irs)
    without = RoomCoupling(ROOM, AGENTS, sample_rate=SR, block=BLOCK, irs=irs, listener=False)
    mics, ear = run(with_ears, outputs)
    mics_only, no_ear = run(without, outputs)
    np.testing.assert_array_equal(mics, mics_only)
    assert ear.any() and not no_ear.any()


def test_the_listener_faces_its_azimuth():
    pair = ears(dataclasses.replace(ROOM, listener_azimuth=90.0))   # facing -x: left is -y
    np.testing.assert_allclose(pair[0], [3.0, 2.5 - 0.085, 1.6], atol=1e-12)
    np.testing.assert_allclose(pair[1], [3.0, 2.5 + 0.085, 1.6], atol=1e-12)


def test_self_noise_has_its_level_and_its_seed(irs):
    room = dataclasses.replace(ROOM, mic_noise_db=-40.0)
    outputs = np.zeros((64 * BLOCK, 3))
    mics, _ = run(RoomCoupling(room, AGENTS, sample_rate=SR, block=BLOCK, irs=irs, seed=3),
                  outputs)
    rms = np.sqrt(np.mean(mics[:, :2] ** 2, axis=0))
    np.testing.assert_allclose(rms, 0.01, rtol=0.03)
    assert not mics[:, 2].any()
    again, _ = run(RoomCoupling(room, AGENTS, sample_rate=SR, block=BLOCK, irs=irs, seed=3),
                   outputs)
    other, _ = run(RoomCoupling(room, AGENTS, sample_rate=SR, block=BLOCK, irs=irs, seed=4),
                   outputs)
    np.testing.assert_array_equal(mics, again)
    assert not np.array_equal(mics, other)


def test_moving_a_speaker_crossfades_without_a_click(irs):
    coupling = RoomCoupling(ROOM, AGENTS, sample_rate=SR, block=BLOCK, irs=irs)
    t = np.arange(40 * BLOCK) / SR
    outputs = np.zeros((t.size, 3))
    outputs[:, 0] = 0.5 * np.sin(2 * np.pi * 220.0 * t)
    moved = (dataclasses.replace(AGENTS[0], speaker=(2.5, 3.5, 1.5)),) + AGENTS[1:]
    prepared = coupling.prepare(compute_responses(ROOM, moved, SR))
    mics, ear = np.zeros((t.size, 3)), np.zeros((t.size, 2))
    swap_at = 30 * BLOCK
    for k in range(0, t.size, BLOCK):
        if k == swap_at:
            coupling.swap(prepared)
        coupling.process(outputs[k:k + BLOCK], mics[k:k + BLOCK], ear[k:k + BLOCK])
    steps = np.abs(np.diff(ear[:, 0]))
    before = steps[20 * BLOCK:swap_at - 1].max()
    after = steps[swap_at + BLOCK:].max()
    across = steps[swap_at - 1:swap_at + BLOCK].max()
    assert across <= 1.1 * max(before, after), (before, across, after)
    assert not np.allclose(ear[-BLOCK:], 0.0)


def test_process_allocates_nothing(irs):
    coupling = RoomCoupling(dataclasses.replace(ROOM, mic_noise_db=-60.0), AGENTS,
                            sample_rate=SR, block=BLOCK, irs=irs)
    outputs = np.random.default_rng(1).standard_normal((BLOCK, 3)) * 0.1
    mics, ear = np.zeros((BLOCK, 3)), np.zeros((BLOCK, 2))
    for _ in range(3):
        coupling.process(outputs, mics, ear)
    peak, retained = traced_allocation(lambda: coupling.process(outputs, mics, ear), 50)
    # As anamnesis.hub.engine.convolve's own test: numpy's call overhead only, no block-sized array.
    assert peak < 3072 and retained < 512, (peak, retained)
