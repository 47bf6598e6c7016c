"""Benchmark: how soon ``anamnesis demo`` sounds (JOURNEYS 1: "the first sound comes
within 10 s of the dashboard line").

Runs the real demo (``python -m hub.cli demo --no-audio --http 127.0.0.1:0 --osc off``,
a fresh state directory each run, the octophonic installation: eight agent processes
clocked by the hub over RTP on loopback) and reads its terminal: the seconds from
the ``Dashboard:`` line to the demo's own ``Sound: the listener hears the agents``
line (its listener preview above RMS 1e-4), and from the command's start to that
line. Each run ends with SIGINT.

Reported, same run, median of ``--runs``:

* **fork** — the default: the agents forked from the hub's warm forkserver
  (:mod:`anamnesis.hub.fleet.launcher`);
* **exec** (the peer) — the same demo with ``--agent-launch exec``: every agent a new
  program, paying its own imports and numba start-up;
* the ratio fork / exec, and whether the promise (≤ 10 s from the dashboard line)
  is MET or MISSED (exit status 1 if missed).

The machine is shared and a start is mostly CPU: run it on a quiet machine; numba's
cache is warmed by a first, unreported run.

    .venv/bin/python bench/bench_demo_start.py [--runs 3]
"""

from __future__ import annotations

import argparse
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
#: The promise of README and JOURNEYS 1 (s from the dashboard line to sound).
PROMISE_S = 10.0
#: Longest a run may take before it counts as silent (s).
GIVE_UP_S = 180.0
DASHBOARD = re.compile(r"^Dashboard: http://")
SOUND = re.compile(r"^  Sound: the listener hears the agents")


def one_run(launch: str, state: Path) -> tuple[float, float]:
    """(dashboard line -> sound, command start -> sound), seconds, for one demo run."""
    t0 = time.monotonic()
    proc = subprocess.Popen(
        [sys.executable, "-u", "-m", "anamnesis.hub.cli", "demo", "--no-audio", "--http", "127.0.0.1:0",
         "--osc", "off", "--fresh", "--state-dir", str(state), "--agent-launch", launch],
        cwd=REPO, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL, text=True)
    dashboard = sound = None
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            now = time.monotonic()
            if dashboard is None and DASHBOARD.match(line):
                dashboard = now
            elif SOUND.match(line):
                sound = now
                break
            if now - t0 > GIVE_UP_S:
                break
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    if dashboard is None or sound is None:
        raise SystemExit(f"the demo ({launch}) never sounded within {GIVE_UP_S:.0f} s")
    return sound - dashboard, sound - t0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    results: dict[str, list[tuple[float, float]]] = {"fork": [], "exec": []}
    with tempfile.TemporaryDirectory(prefix="bench-demo-") as tmp:
        one_run("fork", Path(tmp) / "warm")          # numba's cache, the room's responses
        for i in range(args.runs):
            for launch in results:                   # interleaved: the same machine load
                results[launch].append(one_run(launch, Path(tmp) / f"{launch}{i}"))
    med = {k: (statistics.median(a for a, _ in v), statistics.median(b for _, b in v))
           for k, v in results.items()}
    print(f"anamnesis demo, first sound at the listener (median of {args.runs} runs):")
    for launch, (after_dash, after_cmd) in med.items():
        runs = ", ".join(f"{a:.1f}" for a, _ in results[launch])
        print(f"  {launch:4s}  {after_dash:5.1f} s after the dashboard line ({runs}); "
              f"{after_cmd:5.1f} s after the command")
    ratio = med["fork"][0] / med["exec"][0]
    met = med["fork"][0] <= PROMISE_S
    print(f"  fork / exec: {ratio:.2f} after the dashboard line, "
          f"{med['fork'][1] / med['exec'][1]:.2f} after the command")
    print(f"  promise: sound within {PROMISE_S:.0f} s of the dashboard line: "
          f"{'MET' if met else 'MISSED'} ({med['fork'][0]:.1f} s)")
    return 0 if met else 1


if __name__ == "__main__":
    sys.exit(main())
