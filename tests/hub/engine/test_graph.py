"""The routing graph: exact delays, smooth changes, rings, sources, offline fades, block-size
invariance, validation, and a seed ring of real AutoRegNN models in lockstep."""

from __future__ import annotations

import itertools
import math
from pathlib import Path

import numpy as np
import pytest
import soundfile
from numpy.testing import assert_allclose, assert_array_equal

from anamnesis.agents.signals import Sine
from anamnesis.hub.engine.graph import SOURCE_CHUNK, RoutingGraph, from_config
from anamnesis.hub.engine.sources import make_source_signal
from anamnesis.hub.installation.check import load_config
from anamnesis.hub.installation.config import Envelope
from anamnesis.hub.installation.edges import Edge, expand_ring, zero_delay_cycles

SR = 48000
DEPLOY = Path(__file__).resolve().parents[3] / "deploy"


def run(graph: RoutingGraph, outputs: np.ndarray, block: int | None = None) -> np.ndarray:
    """Feed a whole output stream through ``graph`` in ticks of ``block`` frames."""
    block = block or graph.max_block
    pieces = [graph.tick(np.ascontiguousarray(outputs[i:i + block]))
              for i in range(0, len(outputs), block)]
    return np.concatenate(pieces) if pieces else np.zeros((0, graph.n_agents))


def ms(samples: float) -> float:
    return samples * 1000.0 / SR


class Ones:
    """A source signal of constant 1 (so the graph's output is the envelope itself)."""

    def next(self, frames: int) -> np.ndarray:
        return np.ones(frames)

    def reset(self) -> None:
        pass


# --- delays ---------------------------------------------------------------------------------


@pytest.mark.parametrize("latency", [0, 64, 256])
@pytest.mark.parametrize("delay", [0, 1, 63, 256, 257, 4799])
def test_delay_is_exact_to_the_sample(latency, delay):
    graph = RoutingGraph(["a", "b"], SR, 256, 0.2, latency=latency)
    graph.add_edge("ab", Edge("a", "b", delay_ms=ms(delay)), fade_s=0)
    outputs = np.zeros((8192, 2))
    outputs[100, 0] = 1.0
    inputs = run(graph, outputs)
    heard = max(delay, latency)  # a delay below the latency is heard as the latency
    expected = np.zeros(8192)
    expected[100 + heard - latency] = 1.0  # tick's outputs are already `latency` samples old
    assert_array_equal(inputs[:, 1], expected)
    assert_array_equal(inputs[:, 0], 0.0)
    assert graph.edge_info("ab")["delay_effective_ms"] == pytest.approx(ms(heard))


def test_lockstep_convention_one_block_between_an_output_and_the_next_input():
    """In lockstep (latency = block), block k's inputs come from block k-1's outputs: an
    agent that plays an impulse at sample 5 of block 0 is heard at sample 5 of block 1."""
    block = 64
    graph = RoutingGraph(["a", "b"], SR, block, 0.1)
    assert graph.latency == block
    graph.add_edge("ab", Edge("a", "b"), fade_s=0)
    outputs = np.zeros((block, 2))  # before t = 0
    heard = []
    for k in range(3):
        inputs = graph.tick(outputs)
        heard.append(inputs[:, 1].copy())
        outputs = np.zeros((block, 2))
        if k == 0:
            outputs[5, 0] = 1.0  # agent a's output, block 0
    assert_array_equal(heard[0], 0.0)
    assert np.flatnonzero(heard[1]).tolist() == [5] and heard[1][5] == 1.0
    assert_array_equal(heard[2], 0.0)


def test_fractional_delay_interpolates_linearly():
    graph = RoutingGraph(["a", "b"], SR, 128, 0.1, latency=0)
    graph.add_edge("ab", Edge("a", "b", delay_ms=ms(100.25)), fade_s=0)
    outputs = np.zeros((1024, 2))
    outputs[10, 0] = 1.0
    y = run(graph, outputs)[:, 1]
    assert_allclose(y[110], 0.75, atol=1e-15)
    assert_allclose(y[111], 0.25, atol=1e-15)
    assert np.count_nonzero(y) == 2
    # A low sine through a fractional delay is the sine delayed (linear interpolation error
    # at 100 Hz / 48 kHz is below (π f/fs)² / 8 ≈ 5e-5).
    n = np.arange(4096)
    sine = np.sin(2 * np.pi * 100.0 * n / SR)
    graph = RoutingGraph(["a", "b"], SR, 128, 0.1, latency=0)
    graph.add_edge("ab", Edge("a", "b", delay_ms=ms(37.6)), fade_s=0)
    y = run(graph, np.column_stack([sine, np.zeros_like(sine)]))[:, 1]
    assert_allclose(y[64:], np.sin(2 * np.pi * 100.0 * (n[64:] - 37.6) / SR), atol=6e-5)


def test_delay_change_crossfades_between_two_read_heads():
    """Through a ramp signal a delay jump 100 -> 300 samples would step by 200; the crossfade
    turns it into a glide of at most 1 + 200/2400 per sample, and a change arriving during
    a crossfade waits for it to end."""
    graph = RoutingGraph(["a", "b"], SR, 256, 0.1, latency=0, crossfade_s=0.05)
    graph.add_edge("ab", Edge("a", "b", delay_ms=ms(100)), fade_s=0)
    ramp = np.arange(20000, dtype=np.float64)
    outputs = np.column_stack([ramp, np.zeros_like(ramp)])
    first = run(graph, outputs[:1024])[:, 1]
    graph.set_edge("ab", delay_ms=ms(300))
    second = run(graph, outputs[1024:2048])[:, 1]
    graph.set_edge("ab", delay_ms=ms(50))          # during the first crossfade: queued
    rest = run(graph, outputs[2048:])[:, 1]
    y = np.concatenate([first, second, rest])
    assert_array_equal(y[200:1024], ramp[200:1024] - 100)
    steps = np.diff(y[1000:])
    assert steps.max() <= 1.0 + 250 / 2400 + 1e-9 and steps.min() >= 1.0 - 200 / 2400 - 1e-9
    assert_array_equal(y[1024 + 2400:1024 + 2400 + 1], ramp[1024 + 2400:1024 + 2401] - 300)
    assert_array_equal(y[1024 + 4800 + 10:], ramp[1024 + 4800 + 10:] - 50)


# --- smoothing ------------------------------------------------------------------------------


def test_gain_change_is_lagged_no_step_larger_than_the_lag_allows():
    lag_s = 0.05
    graph = RoutingGraph(["a", "b"], SR, 256, 0.1, latency=0, lag_s=lag_s)
    graph.add_edge("ab", Edge("a", "b", gain=0.0), fade_s=0)
    ones = np.ones((SR // 4, 2))
    run(graph, ones[:256])
    graph.set_edge("ab", gain=1.0)
    y = run(graph, ones)[:, 1]
    c = 0.001 ** (1.0 / (lag_s * SR))
    steps = np.diff(np.concatenate([[0.0], y]))
    assert steps.min() >= 0.0                                  # monotonic, no overshoot
    assert steps.max() <= (1.0 - c) * 1.0 + 1e-12             # at most (1-c) of the distance
    n_lag = int(lag_s * SR)
    assert 1.0 - y[n_lag - 1] <= 1.0e-3 + 1e-9                  # -60 dB after the lag time
    assert 1.0 - y[n_lag // 2] > 1.0e-2                         # ... and not a jump
    assert y[-1] == 1.0                                         # settles exactly on the target


def test_filter_and_shape_changes_are_smooth():
    rng = np.random.default_rng(1)
    noise = rng.uniform(-0.5, 0.5, (SR // 2, 2))
    graph = RoutingGraph(["a", "b"], SR, 256, 0.1, latency=0)
    graph.add_edge("ab", Edge("a", "b"), fade_s=0)
    before = run(graph, noise[:4096])[:, 1]
    graph.set_edge("ab", lowpass_hz=200.0, highpass_hz=50.0, shape="tanh", gain=3.0)
    after = run(graph, noise[4096:])[:, 1]
    y = np.concatenate([before, after])
    assert_array_equal(before, noise[:4096, 0])
    # the sample after the change is still (almost) the unfiltered input: no jump
    assert abs(after[0] - noise[4096, 0]) < 0.02
    # later it is band-passed, saturated noise: bounded by 1 (tanh after the gain)
    assert np.abs(y).max() <= 1.0
    late = after[-SR // 8:]
    spectrum = np.abs(np.fft.rfft(late * np.hanning(len(late))))
    freqs = np.fft.rfftfreq(len(late), 1 / SR)
    assert spectrum[freqs > 5000].mean() < 0.05 * spectrum[(freqs > 50) & (freqs < 200)].mean()


# --- rings, sources ---------------------------------------------------------------------------


def test_ring_expands_to_a_cycle_of_edges():
    assert expand_ring(["a", "b", "c"]) == [("a", "b"), ("b", "c"), ("c", "a")]
    graph = RoutingGraph(["a", "b", "c", "d"], SR, 64, 0.1, latency=0)
    ids = graph.add_ring("r", ["a", "b", "c"], fade_s=0, gain=0.5, delay_ms=ms(3))
    assert ids == ["r:a->b", "r:b->c", "r:c->a"]
    assert graph.edges["r:c->a"] == Edge("c", "a", gain=0.5, delay_ms=ms(3))
    for source, target in (("a", 1), ("b", 2), ("c", 0)):
        g = RoutingGraph(["a", "b", "c", "d"], SR, 64, 0.1, latency=0)
        g.add_ring("r", ["a", "b", "c"], fade_s=0, gain=0.5, delay_ms=ms(3))
        outputs = np.zeros((64, 4))
        outputs[0, ["a", "b", "c"].index(source)] = 1.0
        y = g.tick(outputs)
        assert np.argwhere(y).tolist() == [[3, target]] and y[3, target] == 0.5
    with pytest.raises(ValueError, match="at least two different agents"):
        graph.add_ring("s", ["a"])
    config = load_config(DEPLOY / "octophonic.toml")
    edges = from_config(config).edges
    assert len(edges) == 16 and edges["circle:a8->a1"].gain == 0.2


def test_sources_envelope_start_attack_hold_release_every():
    graph = RoutingGraph(["a", "b"], SR, 256, 0.1, latency=0)
    env = Envelope(start=0.01, attack=0.01, hold=0.02, release=0.01, every=0.1)
    graph.add_source("s", Ones(), ["b"], gain=0.5, envelope=env)
    y = run(graph, np.zeros((SR // 4, 2)))
    assert_array_equal(y[:, 0], 0.0)
    b = y[:, 1]
    t = np.arange(len(b)) / SR
    u = np.mod(t - 0.01, 0.1)
    expected = np.where(u < 0.01, u / 0.01, np.where(u < 0.03, 1.0, np.clip(1 - (u - 0.03) / 0.01, 0, 1)))
    expected[t < 0.01] = 0.0
    assert_allclose(b, 0.5 * expected, atol=1e-9)
    assert b[480 + 480 + 500] == 0.5 and b[480 + 480 + 960 + 480] == 0.0


def test_noise_burst_fades_like_line_kr_and_sine_and_file_sources_play(tmp_path):
    graph = RoutingGraph(["a", "b", "c"], SR, 256, 0.1, latency=0)
    noise = make_source_signal("noise", {"amp": 0.1, "seed": 4}, SR)
    graph.add_source("burst", noise, ["a"], envelope=Envelope(hold=0.0, release=2.0))
    graph.add_source("tone", make_source_signal("sine", {"freq": 440.0}, SR), {"b": 0.25})
    clip = np.sin(np.linspace(0, 40, 10000)) * 0.3
    soundfile.write(tmp_path / "clip.wav", clip, SR, subtype="DOUBLE")
    graph.add_source("clip", make_source_signal("file", {"path": "clip.wav"}, SR, base_dir=tmp_path),
                     ["c"])
    y = run(graph, np.zeros((3 * SR, 3)))
    reference = make_source_signal("noise", {"amp": 0.1, "seed": 4}, SR).next(3 * SR)
    line = np.clip(1.0 - np.arange(3 * SR) / (2.0 * SR), 0.0, 1.0)
    assert_allclose(y[:, 0], reference * line, atol=1e-15)
    assert_array_equal(y[2 * SR:, 0], 0.0)
    assert_allclose(y[:, 1], 0.25 * Sine(SR, freq=440.0).next(3 * SR), atol=1e-15)
    assert_allclose(y[:10000, 2], clip, atol=1e-15)
    assert_array_equal(y[10000:, 2], 0.0)          # played once
    other_seed = make_source_signal("noise", {"amp": 0.1, "seed": 4}, SR, seed=1).next(1000)
    assert not np.allclose(other_seed, reference[:1000])


def test_source_gain_targets_trigger_and_removal():
    graph = RoutingGraph(["a", "b"], SR, 256, 0.1, latency=0)
    graph.add_source("s", Ones(), ["a"], envelope=Envelope(hold=0.01, release=0.0))
    y = run(graph, np.zeros((2048, 2)))
    assert_array_equal(y[:480, 0], 1.0) and np.all(y[480:, 0] == 0.0)
    graph.trigger_source("s")
    graph.set_source("s", targets={"a": 1.0, "b": 0.5})
    y = run(graph, np.zeros((2048, 2)))
    assert y[0, 0] == 1.0 and 0 < y[0, 1] < 0.01          # the new target fades in (lag)
    assert_allclose(y[470, 1], 0.5 * (1 - 0.001 ** (471 / 2400)), rtol=1e-9)
    graph.remove_source("s", fade_s=0.0)
    assert graph.sources == ()
    with pytest.raises(ValueError, match="unknown target agent 'zz'"):
        graph.add_source("t", Ones(), ["zz"])


def test_file_source_loops(tmp_path):
    clip = np.linspace(-0.5, 0.5, 3000)
    soundfile.write(tmp_path / "loop.wav", np.column_stack([clip, -clip]), SR, subtype="DOUBLE")
    signal = make_source_signal("file", {"path": str(tmp_path / "loop.wav"), "loop": True,
                                         "channel": 2}, SR)
    y = signal.next(7000)
    assert_array_equal(y, np.concatenate([-clip, -clip, -clip[:1000]]))


# --- agents going offline, edges removed ------------------------------------------------------


def test_offline_agent_edges_fade_out_and_back_in():
    graph = RoutingGraph(["a", "b", "c"], SR, 240, 0.1, latency=0)
    graph.add_edge("ab", Edge("a", "b"), fade_s=0)
    graph.add_edge("cb", Edge("c", "b", gain=0.5), fade_s=0)
    graph.add_edge("ba", Edge("b", "a", gain=0.25), fade_s=0)
    ones = np.ones((4800, 3))
    run(graph, ones[:240])
    graph.set_agent_online("a", False, fade_s=0.05)
    y = run(graph, ones)
    fade = np.clip(1.0 - np.arange(1, 4801) / 2400.0, 0.0, 1.0)
    assert_allclose(y[:, 1], fade + 0.5, atol=1e-12)     # a -> b fades linearly; c -> b stays
    assert_allclose(y[:, 0], 0.25 * fade, atol=1e-12)     # b -> a fades too
    assert_array_equal(y[2400:, 0], 0.0)
    assert not graph.is_online("a") and not graph.edge_info("ab")["online"]
    graph.add_edge("ca", Edge("c", "a"), fade_s=0)        # an edge to an offline agent starts silent
    assert_array_equal(run(graph, ones[:480])[:, 0], 0.0)
    graph.set_agent_online("a", True, fade_s=0.01)
    y = run(graph, ones[:960])
    assert_allclose(y[479:, 0], 1.25, atol=1e-12)
    assert_allclose(y[:10, 0], 1.25 * np.arange(1, 11) / 480, atol=1e-12)


def test_removed_edge_fades_then_frees_its_slot():
    graph = RoutingGraph(["a", "b"], SR, 256, 0.1, latency=0, max_edges=2)
    graph.add_edge("e1", Edge("a", "b"), fade_s=0)
    graph.add_edge("e2", Edge("b", "a"), fade_s=0)
    with pytest.raises(ValueError, match="at most 2 edges"):
        graph.add_edge("e3", Edge("a", "a", delay_ms=1.0))
    graph.remove_edge("e1", fade_s=0.01)
    assert "e1" not in graph.edges and graph.stats()["fading_edges"] == 1
    y = run(graph, np.ones((1024, 2)))
    assert_allclose(y[:480, 1], 1.0 - np.arange(1, 481) / 480, atol=1e-12)
    assert_array_equal(y[480:, 1], 0.0)
    graph.add_edge("e3", Edge("a", "a", delay_ms=1.0))     # the faded slot is reused
    assert graph.stats()["fading_edges"] == 0


def test_set_edges_replaces_the_whole_set_smoothly():
    graph = RoutingGraph(["a", "b", "c"], SR, 256, 0.1, latency=0)
    graph.set_edges({"ab": Edge("a", "b"), "bc": Edge("b", "c")}, fade_s=0)
    graph.set_edges({"ab": Edge("a", "b", gain=0.5), "ca": Edge("c", "a")})
    assert set(graph.edges) == {"ab", "ca"} and graph.edges["ab"].gain == 0.5
    y = run(graph, np.ones((12000, 3)))
    assert y[0, 1] > 0.99 and y[-1, 1] == 0.5              # glides from 1 to 0.5
    assert y[0, 2] > 0.99 and y[-1, 2] == 0.0               # bc faded out
    assert y[0, 0] < 0.01 and y[-1, 0] == 1.0               # ca faded in


def test_agents_can_be_added_up_to_capacity():
    graph = RoutingGraph(["a"], SR, 64, 0.1, latency=0, max_agents=2)
    assert graph.add_agent("z") == 1 and graph.agent_ids == ("a", "z")
    graph.add_edge("az", Edge("a", "z"), fade_s=0)
    y = graph.tick(np.ones((64, 2)))
    assert_array_equal(y[:, 1], 1.0)
    with pytest.raises(ValueError, match="full"):
        graph.add_agent("q")


# --- validation -----------------------------------------------------------------------------


def test_validation_lists_every_problem_together():
    graph = RoutingGraph(["a", "b"], SR, 256, 0.5, latency=0)
    bad = {
        "e1": Edge("a", "x"),
        "e2": Edge("a", "b", delay_ms=-3.0),
        "e3": Edge("b", "a", gain=float("nan")),
        "e4": Edge("a", "b", lowpass_hz=30000.0),
        "e5": Edge("a", "b", shape="sqrt"),
        "e6": Edge("a", "b", delay_ms=900.0),
    }
    with pytest.raises(ValueError, match=r"^6 problems in the routing graph") as info:
        graph.set_edges(bad)
    message = str(info.value)
    for needle in ("unknown target agent 'x'", "delay_ms must be >= 0", "gain must be a finite number",
                   "lowpass_hz must be in (0, 24000) Hz", "shape must be one of none, tanh",
                   "longer than the graph's 500 ms"):
        assert needle in message
    assert graph.edges == {}  # nothing was applied
    with pytest.raises(ValueError, match=r"sample_rate must be .*\n  max_block must be"):
        RoutingGraph(["a"], 12, 0)


def test_zero_delay_cycles_are_refused_in_deployed_mode_only():
    cycle = {"ab": Edge("a", "b"), "bc": Edge("b", "c"), "ca": Edge("c", "a"), "dd": Edge("d", "d")}
    deployed = RoutingGraph(["a", "b", "c", "d"], SR, 256, 0.1, mode="deployed")
    assert deployed.latency == 0
    with pytest.raises(ValueError, match=r"2 problems") as info:
        deployed.set_edges(cycle)
    assert "feedback cycle a -> b -> c -> a has no delay" in str(info.value)
    assert "feedback cycle d -> d has no delay" in str(info.value)
    deployed.set_edges({**cycle, "ca": Edge("c", "a", delay_ms=5.0), "dd": Edge("d", "d", delay_ms=1.0)})
    with pytest.raises(ValueError, match="feedback cycle a -> b -> c -> a"):
        deployed.set_edge("ca", delay_ms=0.0)
    # The whole set is checked, not each step: moving the cycle's delay from c -> a to
    # a -> b passes through a state without any delay, yet is a valid change.
    deployed.set_edges({"ca": Edge("c", "a"), "ab": Edge("a", "b", delay_ms=5.0),
                        "bc": Edge("b", "c"), "dd": Edge("d", "d", delay_ms=1.0)})
    assert deployed.edges["ca"].delay_ms == 0.0 and deployed.edges["ab"].delay_ms == 5.0
    simulated = RoutingGraph(["a", "b", "c", "d"], SR, 256, 0.1)
    simulated.set_edges(cycle)  # lockstep gives every cycle one block
    assert zero_delay_cycles([Edge("a", "b"), Edge("b", "a", delay_ms=1.0)]) == []


def test_tick_checks_its_arrays_and_survives_non_finite_outputs():
    graph = RoutingGraph(["a", "b"], SR, 64, 0.1, latency=0)
    graph.add_edge("ab", Edge("a", "b", lowpass_hz=100.0), fade_s=0)
    with pytest.raises(ValueError, match=r"outputs must have shape \(0..64, 2\)"):
        graph.tick(np.zeros((65, 2)))
    with pytest.raises(ValueError, match="float64"):
        graph.tick(np.zeros((64, 2), dtype=np.float32))
    with pytest.raises(ValueError, match="mics must have 64 frames"):
        graph.tick(np.zeros((64, 2)), mics=np.zeros((32, 2)))
    outputs = np.ones((64, 2))
    outputs[3, 0], outputs[4, 0] = np.nan, np.inf
    y = graph.tick(outputs, mics=np.full((64, 2), 0.5))
    assert np.all(np.isfinite(y)) and graph.stats()["nonfinite"] == 2
    assert_array_equal(y[:, 0], 0.5)  # the mic term
    assert graph.tick(np.zeros((0, 2))).shape == (0, 2)


# --- block-size invariance ------------------------------------------------------------------


def build_busy_graph(block: int) -> RoutingGraph:
    graph = RoutingGraph(["a", "b", "c"], SR, block, 0.2, latency=0, crossfade_s=0.01)
    graph.add_ring("r", ["a", "b", "c"], fade_s=0, gain=0.7, delay_ms=3.3, highpass_hz=30.0, shape="tanh")
    graph.add_edge("ac", Edge("a", "c", gain=1.5, delay_ms=ms(17.75), lowpass_hz=900.0), fade_s=0)
    graph.add_source("n", make_source_signal("noise", {"amp": 0.2, "seed": 9}, SR), ["a", "b"],
                     envelope=Envelope(attack=0.01, hold=0.05, release=0.1, every=0.2))
    graph.add_source("s", make_source_signal("sine", {"freq": 330.0}, SR), {"c": 0.3})
    return graph


CHANGES = {
    3000: lambda g: g.set_edge("ac", delay_ms=ms(250.5), gain=0.2),
    7000: lambda g: g.set_agent_online("b", False, fade_s=0.02),
    9000: lambda g: g.set_edge("r:c->a", lowpass_hz=400.0, shape="none"),
    12000: lambda g: g.remove_edge("r:a->b", fade_s=0.01),
    14000: lambda g: g.set_agent_online("b", True),
    15000: lambda g: g.trigger_source("n"),
}


def render_with_splits(sizes: list[int], max_block: int) -> np.ndarray:
    rng = np.random.default_rng(5)
    outputs = rng.uniform(-1, 1, (20000, 3))
    graph = build_busy_graph(max_block)
    pieces, pos = [], 0
    for size in sizes:
        if pos in CHANGES:
            CHANGES[pos](graph)
        pieces.append(graph.tick(np.ascontiguousarray(outputs[pos:pos + size])).copy())
        pos += size
    assert pos == len(outputs)
    return np.concatenate(pieces)


def splits(rng: np.random.Generator, max_block: int) -> list[int]:
    """Random block sizes 0..max_block that land on every change position."""
    sizes, pos = [], 0
    stops = sorted([*CHANGES, 20000])
    for stop in stops:
        while pos < stop:
            size = min(int(rng.integers(0, max_block + 1)), stop - pos)
            sizes.append(size)
            pos += size
    return sizes


@pytest.mark.parametrize("max_block", [64, 256, 1000])
def test_any_block_split_gives_identical_inputs(max_block):
    stops = [0, *sorted(CHANGES), 20000]
    regular = []
    for a, b in itertools.pairwise(stops):
        regular += [min(max_block, b - i) for i in range(a, b, max_block)]
    reference = render_with_splits(regular, max_block)
    assert np.abs(reference).max() > 0.1
    for seed in (1, 2):
        assert_array_equal(render_with_splits(splits(np.random.default_rng(seed), max_block), max_block),
                           reference)


def test_reset_plays_the_same_again():
    rng = np.random.default_rng(3)
    outputs = rng.uniform(-1, 1, (6000, 3))
    graph = build_busy_graph(256)
    first = run(graph, outputs)
    graph.reset()
    assert graph.position == 0
    assert_array_equal(run(graph, outputs), first)


# --- the seed ring in lockstep --------------------------------------------------------------


def lockstep(config, seconds: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Run the installation's agents (real models) and its graph in lockstep; returns
    (inputs, outputs) of every agent, (frames, n)."""
    block = config.installation.block
    sr = config.installation.sample_rate
    graph = from_config(config, seed=seed)
    models = [a.create_model(sr, block) for a in config.agents]
    blocks = int(seconds * sr) // block
    inputs = np.zeros((blocks * block, len(models)))
    outputs = np.zeros((blocks * block, len(models)))
    last = np.zeros((block, len(models)))
    column = np.empty(block)
    for k in range(blocks):
        rows = slice(k * block, (k + 1) * block)
        graph.tick(last, out=inputs[rows])
        for i, model in enumerate(models):
            model.process(np.ascontiguousarray(inputs[rows, i]), out=column)
            last[:, i] = column
        outputs[rows] = last
    return inputs, outputs


def reference_ring3_inputs(outputs: np.ndarray, burst: np.ndarray, block: int) -> np.ndarray:
    """ring3's routing written out plainly: one-block latency, one-pole HPF 2 Hz on every
    edge, LPF 10 Hz on n2 -> n1, tanh on the edges into n1, the burst into n1."""
    hp = math.exp(-2 * math.pi * 2.0 / SR)
    lp = math.exp(-2 * math.pi * 10.0 / SR)
    past = np.vstack([np.zeros((block, 3)), outputs[:-block]])  # outputs one block earlier
    inputs = np.zeros_like(outputs)
    state = {key: 0.0 for key in ("12", "23", "31", "21", "21lp")}

    def highpass(key: str, x: float) -> float:
        state[key] = x + hp * (state[key] - x)
        return x - state[key]

    for n in range(len(outputs)):
        n1, n2, n3 = past[n]
        inputs[n, 1] = highpass("12", n1)
        inputs[n, 2] = highpass("23", n2)
        x = highpass("21", n2)
        state["21lp"] = x + lp * (state["21lp"] - x)
        inputs[n, 0] = math.tanh(highpass("31", n3)) + math.tanh(state["21lp"]) + burst[n]
    return inputs


@pytest.mark.slow
def test_ring3_of_real_autoregnn_models_in_lockstep_is_deterministic():
    config = load_config(DEPLOY / "ring3.toml")
    block = config.installation.block
    inputs, outputs = lockstep(config, 1.0, seed=0)
    again_in, again_out = lockstep(config, 1.0, seed=0)
    assert_array_equal(again_out, outputs)
    assert_array_equal(again_in, inputs)
    _, other_out = lockstep(config, 1.0, seed=1)     # another seed: another burst
    assert not np.allclose(other_out, outputs)
    rms = np.sqrt(np.mean(outputs[-SR // 4:] ** 2, axis=0))
    assert np.all(rms > 0.01), rms                            # the three networks sound
    burst = make_source_signal("noise", {"amp": 0.1, "seed": 1}, SR).next(len(outputs))
    burst *= np.clip(1.0 - np.arange(len(outputs)) / (2.0 * SR), 0.0, 1.0)
    expected = reference_ring3_inputs(outputs, burst, block)
    assert_allclose(inputs, expected, rtol=0, atol=1e-12)


@pytest.mark.parametrize("name", ["octophonic", "duo"])
def test_deploy_configs_build_graphs(name):
    config = load_config(DEPLOY / f"{name}.toml")
    graph = from_config(config)
    block = config.installation.block
    assert graph.agent_ids == config.agent_ids and graph.latency == block
    y = graph.tick(np.zeros((block, len(config.agents))))
    assert y.shape == (block, len(config.agents)) and np.abs(y).max() > 0  # the sources play
    assert SOURCE_CHUNK >= block


# --- the kernel against a sample-by-sample reference ---------------------------------


def reference_edges(graph: RoutingGraph, outputs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The edges' maths sample by sample, edge by edge, in plain Python, on copies of the
    graph's state: what every input gets (no sources, no mics) and the edge state after."""
    from anamnesis.hub.engine import graph_kernel as K

    hist, ep, es, ei = graph._hist.copy(), graph._ep.copy(), graph._es.copy(), graph._ei
    lag_c, xf_step, mask = graph._lag_c, graph._xf_step, graph._hist.shape[1] - 1
    pos = int(graph._clock[0])
    frames, n_agents = outputs.shape
    out = np.zeros_like(outputs)

    def read(src: int, p: int, d: float) -> float:
        i = int(d)
        f = d - i
        a = hist[src, (p - i) & mask]
        return a if f == 0.0 else a + f * (hist[src, (p - i - 1) & mask] - a)

    for n in range(frames):
        p = pos + n
        for a in range(n_agents):
            v = outputs[n, a]
            hist[a, p & mask] = v if math.isfinite(v) else 0.0
        for e in range(graph._n_edges):
            if ei[e, K._I_USED] == 0:
                continue
            for k in range(K._N_LAGGED):
                dist = es[e, k] - ep[e, k]
                es[e, k] = ep[e, k] if abs(dist) < 1e-12 else ep[e, k] + lag_c * dist
            en, goal = es[e, K._S_EN], ep[e, K._P_EN]
            es[e, K._S_EN] = (min(goal, en + ep[e, K._P_ENSTEP]) if en < goal else
                              max(goal, en - ep[e, K._P_ENSTEP]) if en > goal else en)
            if es[e, K._S_XFON] == 0.0 and ep[e, K._P_DELAY] != es[e, K._S_DA]:
                es[e, K._S_DB], es[e, K._S_XF], es[e, K._S_XFON] = ep[e, K._P_DELAY], 0.0, 1.0
            src = ei[e, K._I_SRC]
            x = read(src, p, es[e, K._S_DA])
            if es[e, K._S_XFON] != 0.0:
                xb = read(src, p, es[e, K._S_DB])
                f = es[e, K._S_XF] + xf_step
                if f >= 1.0:
                    x, es[e, K._S_DA], es[e, K._S_XF], es[e, K._S_XFON] = xb, es[e, K._S_DB], 0.0, 0.0
                else:
                    x, es[e, K._S_XF] = x + f * (xb - x), f
            s = x + es[e, K._P_HP] * (es[e, K._S_HPS] - x)
            s = 0.0 if abs(s) < 1e-30 else s
            es[e, K._S_HPS] = s
            x = x - es[e, K._P_HPW] * s
            y = x + es[e, K._P_LP] * (es[e, K._S_LPY] - x)
            y = 0.0 if abs(y) < 1e-30 else y
            es[e, K._S_LPY] = y
            y = y * (es[e, K._P_GAIN] * es[e, K._S_EN])
            if es[e, K._P_SHAPE] != 0.0:
                y = y + es[e, K._P_SHAPE] * (math.tanh(y) - y)
            out[n, ei[e, K._I_DST]] += y
    return out, es


def test_kernel_equals_the_sample_by_sample_maths_bit_for_bit():
    """The kernel runs each edge over the whole block, and a settled plain edge by a short
    path; both give exactly the reference's bits (signed zeros and tiny values included)
    through glides, fades, a delay crossfade, filters and tanh."""
    block = 64
    graph = RoutingGraph(["a", "b", "c", "d"], SR, block, 0.1, latency=0, crossfade_s=0.002)
    graph.add_edge("ab", Edge("a", "b", gain=0.5), fade_s=0)                        # plain
    graph.add_edge("bc", Edge("b", "c", gain=0.8, delay_ms=ms(3.25)), fade_s=0.001)   # fades in
    graph.add_edge("cd", Edge("c", "d", gain=1.2, highpass_hz=40.0), fade_s=0)
    graph.add_edge("da", Edge("d", "a", gain=2.0, lowpass_hz=500.0, shape="tanh"), fade_s=0)
    graph.add_edge("ad", Edge("a", "d", gain=-1.0, delay_ms=ms(7)), fade_s=0)        # plain
    rng = np.random.default_rng(3)
    changes = {5: lambda: graph.set_edge("ab", gain=0.25),
               9: lambda: graph.set_edge("ad", delay_ms=ms(2.5)),
               14: lambda: graph.set_edge("ab", highpass_hz=10.0)}
    for i in range(20):
        outputs = rng.standard_normal((block, 4)) * 0.3
        outputs[rng.random((block, 4)) < 0.1] = -0.0
        outputs[rng.random((block, 4)) < 0.05] = 1e-35
        if i in changes:
            changes[i]()
        expected, state = reference_edges(graph, outputs)
        got = graph.tick(outputs)
        assert_array_equal(got, expected)
        assert_array_equal(np.signbit(got), np.signbit(expected))
        assert_array_equal(graph._es, state)
