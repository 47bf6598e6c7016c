"""Benchmark: the hub's scaling curve in deployed mode — N = 8, 16, 32, 64 agents.

For each N the hub runs as its own process (``anamnesis hub CONFIG --no-spawn``: N
agents in a ring of routes, gain 1, the installation's key) and a fleet of N fake agents
(``bench/fake_agents.py``: real zeroconf, OSC, HTTP and RTP on 127.0.0.1, no models) is
found, adopted and routed by it (the ring's return to f00 has a 5 ms delay, which a
deployed cycle needs; f00's latency is not counted): for every agent the hub receives its ``out`` stream
(187.5 packets/s), sends its ``in`` stream, pings it and takes its 30 Hz telemetry. No
browser watches. Once every agent is routed, over ``--seconds`` s:

* the hub's CPU (``/proc/PID/stat``, utime + stime: the hub alone), in % of one core,
  and per agent;
* its memory (VmRSS, MB);
* the routing latency, from a fake agent's sending a block to the arrival of the
  ``in`` packet that carries it to the next agent (p50 / p99 / max ms; the jitter
  buffers' 40 ms target is most of it);
* the hub clock's blocks per second (187.5 is real time), and the ``in`` packets each
  agent got per second.

The yardstick is the hub itself at N = 8, measured in the same run: the per-agent cost
at 64 divided by that at 8 should not exceed 1 (MET at ≤ 1.10, the spread of repeated
runs here), and 64 agents should take under 50 % of one core. Writes the table to
``docs/hub_scaling.md`` and the curve to ``docs/hub_scaling.png`` with ``--docs``. The
targets (issue 19) are said MET or MISSED; the exit status is 1 only if the benchmark
could not run (agents not routed).

    .venv/bin/python bench/bench_hub_scaling.py [--seconds 20] [--sizes 8,16,32,64] [--docs]
"""

from __future__ import annotations

import argparse
import json
import re
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from procstat import cpu_seconds, memory_kib  # noqa: E402 (bench/, the script's folder)

from anamnesis.agents.protocol.key import generate_key  # noqa: E402

TARGET_64_PERCENT = 50.0
TARGET_FLAT = 1.10


def get_json(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=10) as r:
        return json.loads(r.read())


def config_text(n: int, name: str) -> str:
    lines = [f'[installation]\nname = "{name}"\nmode = "deployed"\nblock = 256\n'
             f'sample_rate = 48000\nkey_file = "key"\n']
    for i in range(n):
        lines.append(f'[[agent]]\nid = "f{i:02d}"\nmodel = "autoregnn"\n')
    for i in range(n):      # the ring's return to f00 has the delay a deployed cycle needs
        delay = 5.0 if i == n - 1 else 0.0
        lines.append(f'[[route]]\nfrom = "f{i:02d}"\nto = "f{(i + 1) % n:02d}"\ngain = 1.0\n'
                     f'delay_ms = {delay}\n')
    return "\n".join(lines)


def start_hub(config: Path, state: Path, profile: Path | None = None
              ) -> tuple[subprocess.Popen, str]:
    profiler = ["-m", "cProfile", "-o", str(profile)] if profile else []
    proc = subprocess.Popen(
        [sys.executable, *profiler, "-m", "anamnesis.hub.cli", "hub", str(config), "--state-dir", str(state),
         "--http", "127.0.0.1:0", "--osc", "127.0.0.1:0", "--oscquery", "off", "--no-spawn",
         "--log-level", "warning"],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    deadline = time.monotonic() + 60
    for line in proc.stdout:
        match = re.match(r"Dashboard: (http://[^/]+)/", line)
        if match:
            return proc, match.group(1)
        if time.monotonic() > deadline:
            break
    proc.kill()
    raise SystemExit("the hub did not print its dashboard URL")


def clock(base: str) -> dict:
    return get_json(base + "/api/installation")["clock"] or {}


def measure(n: int, seconds: float, profile: Path | None = None) -> dict:
    """One point of the curve: the hub with ``n`` fake agents (see the module docstring)."""
    with tempfile.TemporaryDirectory(prefix=f"anamnesis-scale{n}-") as tmp:
        root = Path(tmp)
        name = f"scale{n}"
        generate_key(root / "key")
        config = root / f"{name}.toml"
        config.write_text(config_text(n, name))
        hub, base = start_hub(config, root / "state", profile)
        ready, report = root / "ready.json", root / "report.json"
        fleet = subprocess.Popen(
            [sys.executable, str(REPO / "bench" / "fake_agents.py"), "--agents", str(n),
             "--installation", name, "--key-file", str(root / "key"),
             "--ready", str(ready), "--report", str(report)],
            cwd=REPO, stdout=subprocess.DEVNULL)
        try:
            t0 = time.monotonic()
            while len(clock(base).get("routed", [])) < n:
                if time.monotonic() - t0 > 120 or fleet.poll() is not None:
                    raise SystemExit(f"N={n}: only {len(clock(base).get('routed', []))} "
                                     f"of {n} agents routed after {time.monotonic() - t0:.0f} s")
                time.sleep(0.5)
            routed_s = time.monotonic() - t0
            time.sleep(3.0)                       # the jitter buffers settle
            fleet.send_signal(signal.SIGUSR1)
            s0, w0, c0, f0 = (clock(base).get("steps", 0), time.monotonic(),
                              cpu_seconds(hub.pid), cpu_seconds(fleet.pid))
            time.sleep(seconds)
            c1, f1, w1 = cpu_seconds(hub.pid), cpu_seconds(fleet.pid), time.monotonic()
            stats = clock(base)
            wall = w1 - w0
            fleet.send_signal(signal.SIGUSR2)
            fleet.wait(timeout=30)
            got = json.loads(report.read_text())
            return {
                "agents": n, "routed_after_s": routed_s,
                "hub_percent": 100.0 * (c1 - c0) / wall,
                "per_agent_percent": 100.0 * (c1 - c0) / wall / n,
                "rss_mb": memory_kib(hub.pid)["VmRSS"] / 1024.0,
                "blocks_per_s": (stats.get("steps", 0) - s0) / wall,
                "resyncs": stats.get("resyncs", 0),
                "fleet_percent": 100.0 * (f1 - f0) / wall,
                "fleet_late_ticks": got["late_ticks"],
                "in_packets_per_agent_s": got["in_packets_per_agent_s"],
                "latency_ms": got["latency_ms"],
                "osc": got["osc"],
            }
        finally:
            for proc in (fleet, hub):
                if proc.poll() is None:
                    proc.send_signal(signal.SIGTERM)
                    try:
                        proc.wait(timeout=20)
                    except subprocess.TimeoutExpired:
                        proc.kill()


def table(points: list[dict]) -> str:
    rows = ["| agents | hub CPU (% of a core) | per agent (%) | RSS (MB) | latency p50 / p99 / max "
            "(ms) | clock (blocks/s) | in packets per agent per s |",
            "|---:|---:|---:|---:|---|---:|---:|"]
    for p in points:
        lat = p["latency_ms"]
        rows.append(f"| {p['agents']} | {p['hub_percent']:.1f} | {p['per_agent_percent']:.2f} | "
                    f"{p['rss_mb']:.0f} | {lat.get('p50', float('nan')):.1f} / "
                    f"{lat.get('p99', float('nan')):.1f} / {lat.get('max', float('nan')):.1f} | "
                    f"{p['blocks_per_s']:.1f} | {p['in_packets_per_agent_s']:.1f} |")
    return "\n".join(rows)


def plot(points: list[dict], path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = [p["agents"] for p in points]
    fig, (left, right) = plt.subplots(1, 2, figsize=(9, 3.4))
    left.plot(n, [p["hub_percent"] for p in points], "o-", label="hub")
    left.axhline(TARGET_64_PERCENT, color="grey", ls=":", label="target at 64")
    left.set(xlabel="agents", ylabel="% of one core", title="hub CPU, deployed mode")
    left.legend()
    right.plot(n, [p["per_agent_percent"] for p in points], "o-")
    right.set(xlabel="agents", ylabel="% of one core per agent", title="per agent",
              ylim=(0, None))
    for ax in (left, right):
        ax.set_xticks(n)
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--sizes", default="8,16,32,64")
    parser.add_argument("--profile", type=Path,
                        help="run the hub under cProfile, writing its profile here (one size)")
    parser.add_argument("--docs", action="store_true",
                        help="write docs/hub_scaling.md and docs/hub_scaling.png")
    args = parser.parse_args()
    points = []
    for n in (int(s) for s in args.sizes.split(",")):
        point = measure(n, args.seconds, args.profile)
        points.append(point)
        lat = point["latency_ms"]
        print(f"N={n:3d}: hub {point['hub_percent']:5.1f} % of a core "
              f"({point['per_agent_percent']:.2f} % per agent), {point['rss_mb']:.0f} MB, "
              f"latency p99 {lat.get('p99', float('nan')):.1f} ms, clock "
              f"{point['blocks_per_s']:.1f} blocks/s, {point['in_packets_per_agent_s']:.1f} "
              f"in packets/agent/s (fleet {point['fleet_percent']:.0f} %, "
              f"{point['fleet_late_ticks']} late ticks; routed after "
              f"{point['routed_after_s']:.1f} s; the hub's OSC to the fleet: {point['osc']})",
              flush=True)
    print(table(points))
    by_n = {p["agents"]: p for p in points}
    if 8 in by_n and 64 in by_n:
        flat = by_n[64]["per_agent_percent"] / by_n[8]["per_agent_percent"]
        met = flat <= TARGET_FLAT
        print(f"per-agent cost at 64 / at 8 (same run): {by_n[64]['per_agent_percent']:.2f} / "
              f"{by_n[8]['per_agent_percent']:.2f} % = {flat:.2f} (target <= {TARGET_FLAT}): "
              f"{'MET' if met else 'MISSED'}")
    if 64 in by_n:
        met = by_n[64]["hub_percent"] < TARGET_64_PERCENT
        print(f"64 agents: hub {by_n[64]['hub_percent']:.1f} % of a core "
              f"(target < {TARGET_64_PERCENT:.0f} %): {'MET' if met else 'MISSED'}")
    if args.docs:
        (REPO / "docs" / "hub_scaling.md").write_text(
            "# The hub's scaling curve (deployed mode)\n\n"
            "`bench/bench_hub_scaling.py --docs`: N fake agents (real zeroconf, OSC, HTTP and "
            "RTP on 127.0.0.1, no models) in a ring of routes; the hub's own CPU over "
            f"{args.seconds:.0f} s once every agent is routed.\n\n" + table(points) + "\n\n"
            "![hub CPU against agents](hub_scaling.png)\n\n"
            "Where the time goes at 64 agents (cProfile, `--profile`): per agent and block "
            "the hub receives one packet (the RTP receiver and jitter buffer, ~12 µs of "
            "Python) and sends one (header, L24 encoding, `sendto`: ~10 µs, half of it the "
            "kernel's); the routing kernel takes ~140 µs a block for the ring. What grew "
            "before issue 19 and was removed: every agent's 30 Hz telemetry parsed for no "
            "one (now parsed only when a dashboard takes it, by a reader 2.2x faster than "
            "python-osc's), one asyncio datagram callback per packet on one socket per "
            "agent (now one socket, drained in bites), the registry walked every block "
            "(now when it changes). Then: 82 % of a core at 64 agents. Memory grows by "
            "~2.8 MB per agent (its history in the routing graph, 2 s at 48 kHz, and its "
            "jitter buffer).\n")
        plot(points, REPO / "docs" / "hub_scaling.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
