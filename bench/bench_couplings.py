"""The hub's CPU for weight couplings, live: a deployed hub on 127.0.0.1 with eight real
agent processes on their own (null) clocks, with and without eight couplings at 20 Hz.

    .venv/bin/python bench/bench_couplings.py [--seconds 10] [--rate 20]

The hub runs in this process (the agents are children, not counted): its CPU time over
``--seconds`` is measured first with no coupling (the hub's own work: liveness, the
agents' telemetry, discovery) and then with a ring of eight blends a1 ~> a2 ~> ... ~>
a8 ~> a1 at ``--rate`` Hz (each time: two ``/weights`` reads of 85 values, one write).
Printed: the CPU share of one core for both, the couplings' share (the difference),
per coupling and per application, and the ratio of the two runs. The couplings'
applied and stale counts say whether they kept their rate.
"""

from __future__ import annotations

import argparse
import asyncio
import resource
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from support.controlplane import AgentProcess  # the tests' real agent processes

from anamnesis.agents.protocol.key import generate_key
from anamnesis.hub.core.hub import Hub
from anamnesis.hub.installation.check import parse_config

LOOPBACK = "127.0.0.1"
N = 8


def config_text() -> str:
    agents = "".join(f'\n[[agent]]\nid = "bc{i}"\nmodel = "autoregnn"\n'
                     f"params = {{ hidden_size = 6, lr = 0.05 }}\n" for i in range(1, N + 1))
    return f'[installation]\nname = "benchcpl"\nmode = "deployed"\n{agents}'


def cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def window(seconds: float) -> tuple[float, float]:
    """(CPU s, wall s) of this process over ``seconds``."""
    c0, t0 = cpu_s(), time.monotonic()
    await asyncio.sleep(seconds)
    return cpu_s() - c0, time.monotonic() - t0


async def run(seconds: float, rate: float) -> int:
    from anamnesis.hub.installation.config import Coupling

    with tempfile.TemporaryDirectory(prefix="anamnesis-bench-cpl-") as tmp_name:
        tmp = Path(tmp_name)
        key_file = tmp / "k"
        key = generate_key(key_file)
        extra = ("--installation", "benchcpl", "--key-file", str(key_file), "--hub", LOOPBACK,
                 "--preset", "sine200")
        ids = [f"bc{i}" for i in range(1, N + 1)]
        agents = await asyncio.gather(*(AgentProcess.start(tmp / a, agent_id=a, extra=extra)
                                        for a in ids))
        hub = Hub(state_dir=tmp / "hub", interface=LOOPBACK, key=key,
                  config=parse_config(config_text(), "benchcpl.toml"))
        await hub.start()
        try:
            loop = asyncio.get_running_loop()
            end = loop.time() + 60
            while not all(hub._online_peer(a) for a in ids):
                if loop.time() > end:
                    print("the agents did not come online", file=sys.stderr)
                    return 1
                await asyncio.sleep(0.1)
            await asyncio.sleep(2.0)                           # settle
            idle_cpu, idle_wall = await window(seconds)
            ring = {f"{a}~>{b}": Coupling(a, b, kappa=0.05, rate_hz=rate)
                    for a, b in zip(ids, ids[1:] + ids[:1], strict=True)}
            await hub.coupling_driver.set(ring)
            await asyncio.sleep(1.0)
            applied0 = sum(t.applied for t in hub.coupling_driver.tasks.values())
            cpl_cpu, cpl_wall = await window(seconds)
            tasks = hub.coupling_driver.tasks.values()
            applied = sum(t.applied for t in tasks) - applied0
            stale = sum(t.stale for t in tasks)
        finally:
            await hub.close()
            await asyncio.gather(*(a.stop() for a in agents))
    idle = idle_cpu / idle_wall
    busy = cpl_cpu / cpl_wall
    extra_share = busy - idle
    expected = N * rate * cpl_wall
    print(f"hub CPU, {N} agents, no coupling:          {100 * idle:6.2f} % of a core")
    print(f"hub CPU, {N} couplings at {rate:g} Hz:        {100 * busy:6.2f} % of a core "
          f"(ratio {busy / max(idle, 1e-9):.2f})")
    print(f"the couplings' share: {100 * extra_share:.2f} % of a core; "
          f"{100 * extra_share / N:.3f} % per coupling; "
          f"{1e6 * extra_share * cpl_wall / max(applied, 1):.0f} us per application")
    print(f"applied {applied} of {expected:.0f} due ({applied / expected:.0%}); stale {stale}")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--rate", type=float, default=20.0)
    args = parser.parse_args()
    return asyncio.run(run(args.seconds, args.rate))


if __name__ == "__main__":
    sys.exit(main())
