"""Benchmark: the RTP audio link — 16 streams (8 agents × in/out) at 256-frame blocks.

Two processes on 127.0.0.1, in the hub-clocked mode at real time (one step per
block period, 187.5 steps/s at 48 kHz):

* the **hub** (this process): a ``anamnesis.hub.clock.lockstep.HubClock`` sends 8 ``in`` streams
  and receives 8 ``out`` streams — 16 streams, 3000 packets/s;
* the **agents** (a child process): 8 ``anamnesis.agents.net.link.AgentLink`` endpoints, each
  with a ``HubClockBackend`` clock thread and an engine whose model only copies
  its input (so what is measured is the link, not a neural network) — also 16
  streams.

Reported: CPU of each process over wall time, as a percentage of one core
(``/proc/PID/stat``, all threads), per stream; the round trip of a step (hub
sends 8 blocks → has all 8 processed blocks back) p50 / p99 / max; missing
blocks. Target (issue "Audio link"): ≤ 10 % of a core for 16 streams — checked
on the hub's side, which carries all 16 streams of an installation.

    .venv/bin/python bench/bench_link.py [--seconds 20] [--agents 8] [--block 256]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from procstat import cpu_seconds  # bench/, the script's own folder

from anamnesis.agents.audio.hubclock import HubClockBackend
from anamnesis.agents.dsp.engine import AgentEngine
from anamnesis.agents.models.base import ParamSpec
from anamnesis.agents.net.link import AgentLink, warm_up
from anamnesis.hub.clock.lockstep import HubClock

LOOPBACK = "127.0.0.1"
SR = 48000
TARGET_PERCENT = 10.0


class Echo:
    """A model that plays its input: the engine around it costs almost nothing."""

    kind = "echo"
    input_channels = 1

    def __init__(self, sample_rate: int, max_block: int) -> None:
        self.sample_rate = sample_rate
        self.max_block = max_block

    def process(self, inp: np.ndarray, mod: object = None, out: np.ndarray | None = None) -> np.ndarray:
        np.copyto(out, inp)
        return out

    def set_param(self, name: str, value: object) -> None:
        raise ValueError("echo has no parameters")

    def params(self) -> dict[str, object]:
        return {}

    def param_specs(self) -> dict[str, ParamSpec]:
        return {}

    def get_state(self) -> dict[str, np.ndarray]:
        return {}

    def set_state(self, state: dict[str, np.ndarray]) -> None:
        pass

    def reset(self, seed: int | None = None) -> None:
        pass


async def run_agents(count: int, block: int) -> None:
    """Child: ``count`` echo agents in hub-clocked mode; prints their RTP ports, runs
    until SIGTERM."""
    warm_up()
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    sys.setswitchinterval(0.001)
    links, backends = [], []
    for i in range(count):
        engine = AgentEngine(Echo(SR, block), block=block, sample_rate=SR)
        engine.process_block(np.zeros(block), np.zeros(block))   # compile the safety chain
        link = AgentLink(agent_id=f"b{i}", interface=LOOPBACK, block=block, sample_rate=SR,
                         hub_host=LOOPBACK)
        await link.open()
        backend = HubClockBackend(engine, link, fallback_s=5.0)
        backend.start()
        links.append(link)
        backends.append(backend)
    print(json.dumps([link.port for link in links]), flush=True)
    await stop.wait()
    for backend, link in zip(backends, links, strict=False):
        backend.stop()
        link.close()


async def run_hub(args: argparse.Namespace) -> int:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, __file__, "--agents-child", str(args.agents), "--block", str(args.block),
        stdout=asyncio.subprocess.PIPE)
    try:
        ports = json.loads(await asyncio.wait_for(proc.stdout.readline(), 60))
        loop = asyncio.get_running_loop()
        rng = np.random.default_rng(0)
        x = 0.25 * rng.standard_normal((args.agents, args.block))
        period = args.block / SR
        async with HubClock([(LOOPBACK, p) for p in ports], block=args.block, sample_rate=SR,
                            timeout_s=0.05) as clock:
            async def steps(seconds: float) -> None:
                t0 = loop.time()
                k = 0
                while loop.time() - t0 < seconds:
                    await clock.step(x)
                    k += 1
                    await asyncio.sleep(max(0.0, t0 + k * period - loop.time()))

            await steps(2.0)        # warm up
            clock._rtt[:] = 0.0
            clock.steps = 0
            missing0 = sum(p.missing for p in clock.peers)
            me, child = os.getpid(), proc.pid
            c_hub, c_agents, w0 = cpu_seconds(me), cpu_seconds(child), time.monotonic()
            await steps(args.seconds)
            wall = time.monotonic() - w0
            hub_pct = 100.0 * (cpu_seconds(me) - c_hub) / wall
            agents_pct = 100.0 * (cpu_seconds(child) - c_agents) / wall
            rtt = clock.rtt_ms()
            missing = sum(p.missing for p in clock.peers) - missing0
            steps_done = clock.steps
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(proc.wait(), 10)
            except TimeoutError:
                proc.kill()
    streams = 2 * args.agents
    print(f"RTP link, {args.agents} agents x in/out = {streams} streams, {args.block}-frame "
          f"blocks at {SR} Hz ({SR / args.block:.1f} packets/s per stream), {wall:.1f} s")
    print(f"  hub process    : {hub_pct:5.2f} % of a core  ({hub_pct / streams:.3f} % per stream)"
          f"   target <= {TARGET_PERCENT:g} %")
    print(f"  agents process : {agents_pct:5.2f} % of a core  ({agents_pct / streams:.3f} % per "
          f"stream; 8 links + 8 clock threads + engines with an echo model)")
    print(f"  round trip (hub sends {args.agents} blocks -> all {args.agents} processed blocks "
          f"back): p50 {rtt['p50']:.3f} ms, p99 {rtt['p99']:.3f} ms, max {rtt['max']:.3f} ms "
          f"(block period {1000 * period:.2f} ms)")
    print(f"  steps {steps_done}, missing blocks {missing}")
    return 0 if hub_pct <= TARGET_PERCENT and missing == 0 else 1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--agents", type=int, default=8)
    parser.add_argument("--block", type=int, default=256)
    parser.add_argument("--agents-child", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.agents_child:
        asyncio.run(run_agents(args.agents_child, args.block))
        return 0
    return asyncio.run(run_hub(args))


if __name__ == "__main__":
    sys.exit(main())
