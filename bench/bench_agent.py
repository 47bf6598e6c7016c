"""Benchmark: one whole agent process on the null clock — CPU, callback timing, memory.

Starts ``python -m anamnesis.agents --audio null`` (AutoRegNN, 48 kHz, 256-frame
blocks by default) on 127.0.0.1, subscribes to its OSC telemetry at 20 Hz as a
hub would, lets it warm up, then measures over ``--seconds``:

* CPU: the process's user + system time (``/proc/PID/stat``) over wall time,
  as a percentage of one core (all its threads: audio clock, asyncio, disk);
* callback p50 / p99 / max (ms), from the agent's own telemetry (the engine's
  ring of the last 2048 callback durations), against the block period;
* RSS and peak RSS (``/proc/PID/status``).

Targets (issue "The agent process"): CPU <= 10 % of a core, p99 <= 25 % of
the block period. The null clock's mic hears silence; AutoRegNN's per-sample
cost does not depend on the input's values. Exit status 1 if a target is missed.

    .venv/bin/python bench/bench_agent.py [--seconds 20] [--model autoregnn] [--block 256]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import signal
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from procstat import cpu_seconds, memory_kib  # bench/, the script's own folder

from anamnesis.agents.protocol.oscmap import build_message, parse_packet

LOOPBACK = "127.0.0.1"
READY = re.compile(r"^agent (\S+) ready osc=(\d+) http=(\d+)$")


class _Telemetry(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.latest: dict[str, float] = {}
        self.frames = 0

    def datagram_received(self, data: bytes, addr: object) -> None:
        for address, args in parse_packet(data):
            if len(args) == 1 and isinstance(args[0], (int, float)):
                self.latest[address.lstrip("/")] = float(args[0])
        self.frames += 1


async def bench(args: argparse.Namespace) -> dict[str, float]:
    with tempfile.TemporaryDirectory(prefix="anamnesis-bench-") as state:
        model_args = [a for item in getattr(args, "model_arg", []) for a in ("--model-arg", item)]
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "anamnesis.agents", "--id", "bench", "--model", args.model,
            *model_args, "--audio", "null", "--interface", LOOPBACK, "--no-announce", "--fresh",
            "--block", str(args.block), "--sample-rate", str(args.sample_rate),
            "--state-dir", state, "--log-level", "warning", cwd=REPO,
            stdout=asyncio.subprocess.PIPE)
        try:
            line = (await asyncio.wait_for(proc.stdout.readline(), 120)).decode().strip()
            match = READY.match(line)
            if match is None:
                raise SystemExit(f"the agent did not start: {line!r}")
            osc_port = int(match.group(2))
            loop = asyncio.get_running_loop()
            transport, telemetry = await loop.create_datagram_endpoint(
                _Telemetry, local_addr=(LOOPBACK, 0))
            transport.sendto(build_message("/subscribe", []), (LOOPBACK, osc_port))
            await asyncio.sleep(args.warmup)
            cpu0, wall0 = cpu_seconds(proc.pid), time.monotonic()
            renew = wall0
            while time.monotonic() - wall0 < args.seconds:
                await asyncio.sleep(0.5)
                if time.monotonic() - renew > 5.0:  # renew the telemetry lease
                    transport.sendto(build_message("/subscribe", []), (LOOPBACK, osc_port))
                    renew = time.monotonic()
            cpu1, wall1 = cpu_seconds(proc.pid), time.monotonic()
            mem = memory_kib(proc.pid)
            tele = dict(telemetry.latest)
            transport.close()
        finally:
            if proc.returncode is None:
                proc.send_signal(signal.SIGTERM)
                await asyncio.wait_for(proc.wait(), 30)
    period_ms = 1e3 * args.block / args.sample_rate
    return {
        "model": args.model, "block": args.block, "sample_rate": args.sample_rate,
        "seconds": wall1 - wall0,
        "cpu_percent": 100.0 * (cpu1 - cpu0) / (wall1 - wall0),
        "callback_p50_ms": tele.get("callback_p50_ms", float("nan")),
        "callback_p99_ms": tele.get("callback_p99_ms", float("nan")),
        "callback_max_ms": tele.get("callback_max_ms", float("nan")),
        "block_period_ms": period_ms,
        "xruns": tele.get("xruns", float("nan")),
        "telemetry_frames": float(telemetry.frames),
        "rss_mib": mem.get("VmRSS", 0) / 1024.0,
        "peak_rss_mib": mem.get("VmHWM", 0) / 1024.0,
        "telemetry": tele,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=20.0, help="measured time (s)")
    parser.add_argument("--warmup", type=float, default=3.0, help="time before measuring (s)")
    parser.add_argument("--model", default="autoregnn", help="model kind (default autoregnn)")
    parser.add_argument("--model-arg", action="append", default=[], metavar="NAME=VALUE",
                        help="a constructor argument of the model (as the agent's)")
    parser.add_argument("--block", type=int, default=256, help="frames per block")
    parser.add_argument("--sample-rate", type=int, default=48000, help="Hz")
    parser.add_argument("--json", type=Path, help="also write the figures to this JSON file")
    args = parser.parse_args()
    r = asyncio.run(bench(args))
    p99_share = 100.0 * r["callback_p99_ms"] / r["block_period_ms"]
    cpu_ok, p99_ok = r["cpu_percent"] <= 10.0, p99_share <= 25.0
    print(f"agent bench: {r['model']}, null clock, {r['block']} frames at {r['sample_rate']} Hz, "
          f"{r['seconds']:.1f} s measured")
    print(f"  CPU            {r['cpu_percent']:6.2f} % of a core   (target <= 10 %)  "
          f"{'ok' if cpu_ok else 'MISSED'}")
    print(f"  callback p50   {r['callback_p50_ms']:6.3f} ms   p99 {r['callback_p99_ms']:6.3f} ms "
          f"= {p99_share:.1f} % of the {r['block_period_ms']:.2f} ms block (target <= 25 %)  "
          f"{'ok' if p99_ok else 'MISSED'}")
    print(f"  callback max   {r['callback_max_ms']:6.3f} ms   xruns {r['xruns']:.0f}")
    print(f"  RSS            {r['rss_mib']:6.1f} MiB   (peak {r['peak_rss_mib']:.1f} MiB)")
    if args.json:
        args.json.write_text(json.dumps(r, indent=2))
    return 0 if cpu_ok and p99_ok else 1


if __name__ == "__main__":
    sys.exit(main())
