"""Soak test of the live demo: ``anamnesis demo`` left running, watched from outside.

Runs ``python -m hub.cli demo --no-audio --fresh`` (a temporary state directory, the
dashboard on a free port, no OSC API) for ``--minutes`` (10), listens to the
listener preview the whole time (``/ws/listen?source=listener``, as the dashboard
does), keeps the agents' newest telemetry (``/ws``), and every ``--every`` s (10)
samples:

* the resident memory (``VmRSS`` of ``/proc/PID/status``) of the hub and of each
  agent process (``/api/installation`` ``local_agents``);
* the hub clock (``/api/installation`` ``clock``): blocks stepped, ``missing``
  (an agent did not answer in time: silence for it), ``stale`` answers,
  ``resyncs`` (the clock fell > 0.5 s behind) and ``rebuilds``;
* the agents' own counters from their telemetry: ``xruns``, ``hub_fallbacks``
  (an agent stopped waiting for the hub and played free), ``hub_free_blocks``,
  ``hub_stale``, ``callback_errors``, ``safety_nonfinite``;
* the listen stream: messages, gaps in their sequence numbers (messages the hub
  dropped), non-finite or full-scale samples, the share of messages with sound;
* CPU (% of one core, over the last period) of the hub and of all agents together,
  and the machine's 1-minute load average (other work on the cores shows up as
  missing blocks and resyncs: read the figures with it).

It prints one table row per sample, then the verdict — exit status 1 if missed:

* **no underruns** after the start-up (counted from the first sample at which
  every agent is driven, so the agents' first blocks — compiled kernels being
  loaded — do not count): 0 missing and stale blocks, resyncs, agent xruns,
  fallbacks, free-running blocks, callback errors, dropped listen messages, and
  the listener never silent for more than a second;
* **no leak**: every process's RSS grows < 5 % from the 1-minute mark (after
  warm-up) to the end.

    .venv/bin/python bench/soak.py [--minutes 10] [--every 10] [--config octophonic.toml]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import math
import os
import re
import signal
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from anamnesis.hub.monitor.listen import LISTENER, decode_frame

DASHBOARD = re.compile(r"^Dashboard: http://127\.0\.0\.1:(\d+)/\?token=(\S+)$")
RSS_GROWTH_MAX = 0.05
WARM_UP_S = 60.0
#: The listener counts as silent below this RMS (full scale 1).
SILENT_RMS = 1e-4
#: Agent telemetry counters that must not grow once the piece runs.
AGENT_COUNTERS = ("xruns", "hub_fallbacks", "hub_free_blocks", "hub_stale", "callback_errors",
                  "safety_nonfinite")


def cpu_s(pid: int) -> float:
    """CPU time (user + system, s) of ``pid`` so far, NaN if it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return math.nan
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_mb(pid: int) -> float:
    """Resident memory of ``pid`` (MB), NaN if it is gone."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return math.nan


@dataclass
class Listening:
    """What the listen stream delivered."""

    messages: int = 0
    gaps: int = 0
    loud: int = 0
    nonfinite: int = 0
    full_scale: int = 0
    peak: float = 0.0
    last_loud: float = 0.0
    longest_silence_s: float = 0.0
    started: float = 0.0           # first loud message (monotonic s)
    _seq: int | None = None

    def add(self, data: bytes) -> None:
        frame = decode_frame(data)
        if self._seq is not None and frame.seq != (self._seq + 1) & 0xFFFFFFFF:
            self.gaps += (frame.seq - self._seq - 1) & 0xFFFFFFFF
        self._seq = frame.seq
        self.messages += 1
        x = frame.samples.astype(np.float64) / 32767.0
        if not np.all(np.isfinite(x)):
            self.nonfinite += 1
        self.full_scale += int(np.count_nonzero(np.abs(frame.samples) >= 32767))
        self.peak = max(self.peak, float(np.max(np.abs(x))))
        now = time.monotonic()
        if float(np.sqrt(np.mean(x * x))) > SILENT_RMS:
            self.loud += 1
            if not self.started:
                self.started = now
            self.last_loud = now
        elif self.started:
            self.longest_silence_s = max(self.longest_silence_s, now - self.last_loud)


@dataclass
class Sample:
    t: float
    hub_mb: float
    agents_mb: dict[str, float]
    clock: dict[str, Any]
    counters: dict[str, float]
    listen_messages: int
    listen_gaps: int
    listen_loud: int
    driven: int
    hub_cpu_s: float = 0.0
    agents_cpu_s: float = 0.0


@dataclass
class Totals:
    """Monotonic totals of counters that restart (a rebuilt hub clock, a restarted agent)."""

    last: dict[str, float] = field(default_factory=dict)
    total: dict[str, float] = field(default_factory=dict)

    def update(self, key: str, value: float) -> float:
        prev = self.last.get(key)
        delta = value if prev is None or value < prev else value - prev
        self.last[key] = value
        self.total[key] = self.total.get(key, 0.0) + delta
        return self.total[key]


async def soak(args: argparse.Namespace) -> int:
    import aiohttp

    work = Path(tempfile.mkdtemp(prefix="anamnesis-soak-"))
    state = work / "state"
    log = open(work / "demo.stderr", "w")  # noqa: ASYNC230, SIM115 (closed below)
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "anamnesis.hub.cli", "demo", "--no-audio", "--fresh", "--config", args.config,
        "--http", "127.0.0.1:0", "--osc", "off", "--state-dir", str(state), "--log-level", "info",
        cwd=REPO, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    stderr: list[str] = []

    async def drain_stderr() -> None:
        while line := await proc.stderr.readline():
            text = line.decode(errors="replace").rstrip()
            log.write(text + "\n")
            stderr.append(text)
            del stderr[:-200]

    async def drain_stdout() -> None:
        while line := await proc.stdout.readline():
            print(f"    demo | {line.decode(errors='replace').rstrip()}", flush=True)

    err_task = asyncio.create_task(drain_stderr())
    t0 = time.monotonic()
    port = token = None
    while port is None:
        line = await asyncio.wait_for(proc.stdout.readline(), 300)
        if not line:
            print("the demo exited before serving:\n" + "\n".join(stderr[-30:]))
            return 1
        text = line.decode(errors="replace").rstrip()
        print(f"    demo | {text}", flush=True)
        if m := DASHBOARD.match(text):
            port, token = int(m.group(1)), m.group(2)
    out_task = asyncio.create_task(drain_stdout())
    hub_started = time.monotonic()
    base = f"http://127.0.0.1:{port}"
    auth = {"Authorization": f"Bearer {token}"}
    listening = Listening()
    telemetry: dict[str, dict[str, float]] = {}
    samples: list[Sample] = []
    totals = Totals()
    agent_pids: set[int] = set()

    async with aiohttp.ClientSession() as http:
        async def listen() -> None:
            async with http.ws_connect(f"{base}/ws/listen?source={LISTENER}", headers=auth,
                                       max_msg_size=0) as ws:
                async for msg in ws:
                    if msg.type == aiohttp.WSMsgType.BINARY:
                        listening.add(msg.data)

        async def watch() -> None:
            async with http.ws_connect(f"{base}/ws", headers=auth, max_msg_size=0) as ws:
                async for msg in ws:
                    if msg.type != aiohttp.WSMsgType.TEXT:
                        continue
                    data = msg.json()
                    if data.get("type") == "telemetry":
                        for agent_id, frame in data["agents"].items():
                            telemetry.setdefault(agent_id, {}).update(
                                {k: v for k, v in frame.items() if isinstance(v, (int, float))})

        tasks = [asyncio.create_task(listen()), asyncio.create_task(watch())]
        end = hub_started + args.minutes * 60.0
        header = (f"{'t s':>5} {'hub MB':>7} {'agents MB':>13} {'driven':>6} {'steps':>7} "
                  f"{'missing':>7} {'stale':>5} {'resync':>6} {'xruns':>5} {'fallbk':>6} "
                  f"{'free':>5} {'listen':>6} {'gaps':>4} {'loud%':>5} {'load':>5} "
                  f"{'hub%':>5} {'agts%':>5}")
        print(header, flush=True)
        next_at = hub_started + args.every
        try:
            while time.monotonic() < end:
                await asyncio.sleep(max(0.0, next_at - time.monotonic()))
                next_at += args.every
                if proc.returncode is not None:
                    print(f"the demo exited ({proc.returncode}):\n" + "\n".join(stderr[-30:]))
                    return 1
                for task in tasks:
                    if task.done() and task.exception() is not None:
                        raise task.exception()
                async with http.get(base + "/api/installation") as r:
                    inst = await r.json()
                clock = inst.get("clock") or {}
                agent_pids.update(c["pid"] for c in inst["local_agents"] if c.get("pid"))
                per_agent = clock.get("agents") or {}
                for key in ("missing", "stale"):
                    totals.update(key, sum(a.get(key, 0) for a in per_agent.values()))
                totals.update("resyncs", clock.get("resyncs", 0))
                counters = {}
                for name in AGENT_COUNTERS:
                    counters[name] = sum(
                        totals.update(f"{a}:{name}", frame.get(name, 0.0))
                        for a, frame in telemetry.items()) if telemetry else 0.0
                s = Sample(
                    t=time.monotonic() - hub_started, hub_mb=rss_mb(proc.pid),
                    agents_mb={c["name"]: rss_mb(c["pid"]) for c in inst["local_agents"]
                               if c.get("pid")},
                    clock={"steps": clock.get("steps", 0), "missing": totals.total["missing"],
                           "stale": totals.total["stale"], "resyncs": totals.total["resyncs"],
                           "rebuilds": clock.get("rebuilds", 0)},
                    counters=counters, listen_messages=listening.messages,
                    listen_gaps=listening.gaps, listen_loud=listening.loud,
                    driven=len(clock.get("driven") or []),
                    hub_cpu_s=cpu_s(proc.pid),
                    agents_cpu_s=sum(cpu_s(c["pid"]) for c in inst["local_agents"]
                                     if c.get("pid")))
                samples.append(s)
                mbs = [v for v in s.agents_mb.values() if not math.isnan(v)]
                agents = f"{min(mbs):5.0f}–{max(mbs):<5.0f}" if mbs else "-"
                prev = samples[-2] if len(samples) > 1 else None
                new_msgs = s.listen_messages - (prev.listen_messages if prev else 0)
                new_loud = s.listen_loud - (prev.listen_loud if prev else 0)
                loud = 100.0 * new_loud / new_msgs if new_msgs else 0.0
                span = s.t - (prev.t if prev else 0.0)
                hub_pct = 100.0 * (s.hub_cpu_s - (prev.hub_cpu_s if prev else 0.0)) / span
                agents_pct = 100.0 * (s.agents_cpu_s - (prev.agents_cpu_s if prev else 0.0)) / span
                print(f"{s.t:5.0f} {s.hub_mb:7.1f} {agents:>13} {s.driven:6d} "
                      f"{s.clock['steps']:7d} {s.clock['missing']:7.0f} {s.clock['stale']:5.0f} "
                      f"{s.clock['resyncs']:6.0f} {counters['xruns']:5.0f} "
                      f"{counters['hub_fallbacks']:6.0f} {counters['hub_free_blocks']:5.0f} "
                      f"{s.listen_messages:6d} {s.listen_gaps:4d} {loud:5.0f} "
                      f"{os.getloadavg()[0]:5.1f} {hub_pct:5.0f} {agents_pct:5.0f}", flush=True)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            # Hang up first, as a closed browser tab does: a socket left open but unread
            # makes the hub wait for its close handshake (aiohttp: 10 s per socket).
            await http.close()
            stop_at = time.monotonic()
            if proc.returncode is None:
                proc.send_signal(signal.SIGINT)
            try:
                code = await asyncio.wait_for(proc.wait(), 30)
            except TimeoutError:
                print("the demo did not stop within 30 s of SIGINT: killing it and its agents")
                proc.kill()
                code = await proc.wait()
                for pid in agent_pids:    # orphans otherwise (they were the demo's children)
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, signal.SIGKILL)
            await asyncio.gather(err_task, out_task, return_exceptions=True)
            stopped_s = time.monotonic() - stop_at
            log.close()
            print(f"the demo's stderr: {work / 'demo.stderr'}")
    return verdict(samples, listening, code, stopped_s, stderr, state, hub_started - t0,
                   listening.started - hub_started if listening.started else math.nan)


def verdict(samples: list[Sample], listening: Listening, code: int, stopped_s: float,
            stderr: list[str], state: Path, warm_up_s: float, first_sound_s: float) -> int:
    """Print the figures and the verdict; the exit status."""
    problems = []
    if not samples:
        print("no samples taken")
        return 1
    full = [s for s in samples if s.driven == 8 or s.driven == len(s.agents_mb)]
    base = full[0] if full else samples[0]
    last = samples[-1]
    print(f"\nkernels and start-up before the dashboard: {warm_up_s:.1f} s; first sound at the "
          f"listener {first_sound_s:.1f} s after the dashboard line")
    print(f"counted from t = {base.t:.0f} s (every agent driven) to t = {last.t:.0f} s:")
    for key in ("missing", "stale", "resyncs"):
        grew = last.clock[key] - base.clock[key]
        print(f"  hub clock {key}: {grew:.0f} (since start {last.clock[key]:.0f})")
        if grew:
            problems.append(f"hub clock {key} +{grew:.0f}")
    for key in AGENT_COUNTERS:
        grew = last.counters[key] - base.counters[key]
        print(f"  agents' {key}: {grew:.0f} (since start {last.counters[key]:.0f})")
        if grew:
            problems.append(f"agents' {key} +{grew:.0f}")
    gaps = last.listen_gaps - base.listen_gaps
    msgs = last.listen_messages - base.listen_messages
    loud = last.listen_loud - base.listen_loud
    print(f"  listen stream: {msgs} messages, {gaps} dropped, {100.0 * loud / max(1, msgs):.1f} % "
          f"with sound, longest silence {listening.longest_silence_s:.2f} s, peak "
          f"{listening.peak:.3f}, {listening.full_scale} full-scale samples, "
          f"{listening.nonfinite} non-finite messages")
    if gaps:
        problems.append(f"{gaps} listen messages dropped")
    if listening.nonfinite:
        problems.append("non-finite listener samples")
    if listening.longest_silence_s > 1.0 or not listening.started:
        problems.append(f"the listener went silent for {listening.longest_silence_s:.1f} s")
    warm = [s for s in samples if s.t >= WARM_UP_S - 1e-6]
    if len(warm) >= 2:
        first, final = warm[0], warm[-1]
        print(f"RSS from t = {first.t:.0f} s to t = {final.t:.0f} s:")
        rows = [("hub", first.hub_mb, final.hub_mb)] + [
            (a, first.agents_mb.get(a, math.nan), final.agents_mb.get(a, math.nan))
            for a in sorted(final.agents_mb)]
        for name, a, b in rows:
            growth = (b - a) / a if a and not math.isnan(a) and not math.isnan(b) else math.nan
            print(f"  {name:>4}: {a:7.1f} -> {b:7.1f} MB ({100.0 * growth:+.2f} %)")
            if not growth < RSS_GROWTH_MAX:
                problems.append(f"{name} RSS {100.0 * growth:+.1f} %")
    else:
        problems.append(f"too short to judge memory (needs samples after {WARM_UP_S:.0f} s)")
    print(f"SIGINT: the demo exited {code} after {stopped_s:.1f} s; state in {state}")
    if code != 0:
        problems.append(f"exit status {code}")
    if problems:
        print("VERDICT: FAIL — " + "; ".join(problems))
        tail = [line for line in stderr if "WARNING" in line or "ERROR" in line][-10:]
        if tail:
            print("last warnings:\n  " + "\n  ".join(tail))
        return 1
    print("VERDICT: PASS — no underruns, no dropped listen messages, RSS growth < 5 %")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=10.0, help="how long (default 10)")
    parser.add_argument("--every", type=float, default=10.0, help="sample period, s (10)")
    parser.add_argument("--config", default="octophonic.toml", help="installation config")
    args = parser.parse_args()
    if args.minutes <= 0 or args.every <= 0:
        parser.error("--minutes and --every must be positive")
    return asyncio.run(soak(args))


if __name__ == "__main__":
    sys.exit(main())
