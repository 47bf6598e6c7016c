"""Benchmark: the routing graph of 8 agents at 256-frame blocks, 48 kHz.

Scenarios, each ticked in-process as the simulated hub's lockstep does
(``RoutingGraph.tick(outputs, out=inputs)``, outputs = random audio):

* ``ring+edges``  — an 8-agent ring (HPF, LPF, tanh, 30 ms) plus four cross
  edges (one with a fractional delay) and two sources (a repeating noise
  burst, a sine): the issue's case;
* ``ring+edges, changing`` — the same with a parameter change every 20 blocks
  (gain, delay crossfade, cutoff: the control path included);
* ``octophonic.toml`` — the demo config's graph (two 8-agent rings, two sources);
* ``all-to-all`` — 56 edges, every agent to every other: a stress case.

Reported per scenario: mean, p50 and p99 µs per block (``time.perf_counter``
around each tick), CPU time per block (``time.process_time``), and the mean as
a percentage of one core (the block period is 5.33 ms). Target (issue "The
hub"): the whole hub routing ≤ 20 % of a core without the room. Exit status 1
if the issue's case misses it.

    .venv/bin/python bench/bench_graph.py [--seconds 20] [--block 256]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from anamnesis.hub.engine.graph import RoutingGraph, from_config
from anamnesis.hub.engine.sources import make_source_signal
from anamnesis.hub.installation.check import load_config
from anamnesis.hub.installation.config import Envelope
from anamnesis.hub.installation.edges import Edge

SR = 48000
TARGET_PERCENT = 20.0
AGENTS = [f"a{i}" for i in range(1, 9)]


def ring_and_edges(block: int) -> RoutingGraph:
    graph = RoutingGraph(AGENTS, SR, block, 2.0)
    graph.add_ring("circle", AGENTS, fade_s=0, gain=0.2, delay_ms=30.0, highpass_hz=30.0,
                   lowpass_hz=5000.0, shape="tanh")
    graph.add_edge("a1->a5", Edge("a1", "a5", gain=0.3, delay_ms=120.0, lowpass_hz=800.0), fade_s=0)
    graph.add_edge("a3->a7", Edge("a3", "a7", gain=0.3, delay_ms=47.123), fade_s=0)
    graph.add_edge("a6->a2", Edge("a6", "a2", gain=0.5, highpass_hz=100.0, shape="tanh"), fade_s=0)
    graph.add_edge("a8->a4", Edge("a8", "a4", gain=0.1, delay_ms=300.0), fade_s=0)
    graph.add_source("wake", make_source_signal("noise", {"amp": 0.3}, SR), AGENTS,
                     envelope=Envelope(attack=0.05, hold=1.0, release=2.0, every=5.0))
    graph.add_source("tone", make_source_signal("sine", {"freq": 220.0}, SR), {"a1": 0.2, "a5": 0.2})
    return graph


def all_to_all(block: int) -> RoutingGraph:
    graph = RoutingGraph(AGENTS, SR, block, 2.0)
    for i, a in enumerate(AGENTS):
        for j, b in enumerate(AGENTS):
            if a != b:
                graph.add_edge(f"{a}->{b}", Edge(a, b, gain=0.05, delay_ms=5.0 + i + 0.37 * j,
                                                  lowpass_hz=3000.0, highpass_hz=20.0, shape="tanh"),
                               fade_s=0)
    return graph


def octophonic(block: int) -> RoutingGraph:
    config = load_config(REPO / "deploy" / "octophonic.toml")
    if config.installation.block != block:
        from dataclasses import replace
        config = replace(config, installation=replace(config.installation, block=block))
    return from_config(config)


def changes(graph: RoutingGraph, k: int) -> None:
    """A burst of control every 20 blocks, as a dashboard slider would send."""
    if k % 20:
        return
    step = (k // 20) % 4
    if step == 0:
        graph.set_edge("a1->a5", gain=0.1 + 0.05 * (k % 7))
    elif step == 1:
        graph.set_edge("a8->a4", delay_ms=300.0 + (k % 50))
    elif step == 2:
        graph.set_edge("circle:a2->a3", lowpass_hz=2000.0 + 10.0 * (k % 100))
    else:
        graph.set_agent_online("a6", (k // 80) % 2 == 0)


def measure(graph: RoutingGraph, blocks: int, block: int, control=None) -> dict[str, float]:
    rng = np.random.default_rng(0)
    outputs = [np.ascontiguousarray(rng.uniform(-0.5, 0.5, (block, graph.n_agents))) for _ in range(16)]
    inputs = np.empty((block, graph.n_agents))
    for k in range(50):  # warm up: compile, fill caches
        graph.tick(outputs[k % 16], out=inputs)
    times = np.empty(blocks)
    cpu0 = time.process_time()
    for k in range(blocks):
        t0 = time.perf_counter()
        if control is not None:
            control(graph, k)
        graph.tick(outputs[k % 16], out=inputs)
        times[k] = time.perf_counter() - t0
    cpu = (time.process_time() - cpu0) / blocks
    period = block / SR
    return {"mean_us": times.mean() * 1e6, "p50_us": np.percentile(times, 50) * 1e6,
            "p99_us": np.percentile(times, 99) * 1e6, "cpu_us": cpu * 1e6,
            "percent": times.mean() / period * 100.0, "edges": len(graph.edges),
            "sources": len(graph.sources)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=20.0, help="audio seconds per scenario")
    parser.add_argument("--block", type=int, default=256, help="frames per block")
    args = parser.parse_args()
    blocks = max(100, int(args.seconds * SR / args.block))
    print(f"routing graph, 8 agents, {args.block}-frame blocks at {SR} Hz "
          f"(block period {args.block / SR * 1e3:.2f} ms), {blocks} blocks per scenario")
    scenarios = [
        ("ring+edges", ring_and_edges(args.block), None),
        ("ring+edges, changing", ring_and_edges(args.block), changes),
        ("octophonic.toml", octophonic(args.block), None),
        ("all-to-all", all_to_all(args.block), None),
    ]
    results = {}
    for name, graph, control in scenarios:
        r = measure(graph, blocks, args.block, control)
        results[name] = r
        print(f"  {name:22s} {r['edges']:3d} edges {r['sources']} sources: "
              f"mean {r['mean_us']:7.1f} µs  p50 {r['p50_us']:7.1f}  p99 {r['p99_us']:7.1f}  "
              f"cpu {r['cpu_us']:7.1f} µs/block  = {r['percent']:5.2f} % of a core")
    worst = max(results["ring+edges"]["percent"], results["ring+edges, changing"]["percent"])
    ok = worst <= TARGET_PERCENT
    print(f"target: hub routing <= {TARGET_PERCENT:g} % of a core: {worst:.2f} % -> "
          f"{'ok' if ok else 'MISSED'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
