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

``--first-run`` measures instead what a new user meets (README, "The two commands"):
a fresh ``git clone`` of this checkout's HEAD (or ``--commit``), then ``make demo``
in it as typed (only ``DEMO_ARGS="--http 127.0.0.1:0 --osc 127.0.0.1:0"``, so that a
demo already running on this machine does not collide; state and room cache in a
throwaway ``XDG_STATE_HOME`` / ``XDG_CACHE_HOME``): the lines the terminal shows before
the ``Dashboard:`` line (stdout and stderr, as a terminal merges them), the seconds
from ``make demo`` to that line, to the demo's own first line (the venv built) and to
the first sound; then the same for a second ``make demo`` in that clone (the venv and
numba's cache made). ``--make-args`` passes variables to both makes (e.g. ``V=1``).
Each demo ends with SIGINT to its process group, as Ctrl-C does.

    .venv/bin/python bench/bench_demo_start.py [--runs 3]
    .venv/bin/python bench/bench_demo_start.py --first-run [--commit REV] [--make-args ...]
"""

from __future__ import annotations

import argparse
import os
import re
import shlex
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


def make_demo(clone: Path, tmp: Path, make_args: list[str]) -> dict[str, float | int]:
    """One ``make demo`` in ``clone`` until its first sound: lines before the dashboard
    line, and seconds from the command to the demo's first line, the dashboard line and
    the first sound."""
    env = {**os.environ, "XDG_STATE_HOME": str(tmp / "state"),
           "XDG_CACHE_HOME": str(tmp / "cache")}
    env.pop("V", None)
    t0 = time.monotonic()
    proc = subprocess.Popen(
        ["make", "demo", "DEMO_ARGS=--http 127.0.0.1:0 --osc 127.0.0.1:0", *make_args],
        cwd=clone, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, text=True, start_new_session=True)
    seen: list[str] = []
    at: dict[str, float] = {}
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            now = time.monotonic() - t0
            if "demo" not in at and line.startswith("anamnesis demo:"):
                at["demo"] = now
            if "dashboard" not in at:
                if DASHBOARD.match(line):
                    at["dashboard"] = now
                else:
                    seen.append(line.rstrip("\n"))
            elif SOUND.match(line):
                at["sound"] = now
                break
            if now > GIVE_UP_S + 600:      # the venv is part of it: pip may take minutes
                break
    finally:
        os.killpg(proc.pid, signal.SIGINT)   # Ctrl-C: the whole foreground group
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    if set(at) != {"demo", "dashboard", "sound"}:
        print("\n".join(seen[-40:]), file=sys.stderr)
        raise SystemExit(f"make demo never sounded (reached: {', '.join(at) or 'nothing'})")
    return {"lines": len(seen), **at}


def first_run(commit: str, make_args: list[str]) -> int:
    """``--first-run``: a fresh clone's first and second ``make demo``."""
    with tempfile.TemporaryDirectory(prefix="bench-first-run-") as tmp:
        clone = Path(tmp) / "clone"
        subprocess.run(["git", "clone", "-q", str(REPO), str(clone)], check=True)
        subprocess.run(["git", "-C", str(clone), "checkout", "-q", commit], check=True)
        rev = subprocess.run(["git", "-C", str(clone), "rev-parse", "--short", "HEAD"],
                             capture_output=True, text=True, check=True).stdout.strip()
        runs = [make_demo(clone, Path(tmp), make_args) for _ in range(2)]
    extra = f" {shlex.join(make_args)}" if make_args else ""
    print(f"make demo{extra} on a fresh clone of {rev} (seconds from the command):")
    for label, r in zip(("first", "second"), runs, strict=True):
        print(f"  {label:6s}  {r['lines']:3d} lines before the dashboard line; demo starts "
              f"{r['demo']:6.1f} s, dashboard {r['dashboard']:6.1f} s, first sound "
              f"{r['sound']:6.1f} s ({r['sound'] - r['dashboard']:.1f} s after the dashboard)")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--first-run", action="store_true",
                        help="a fresh clone's first and second `make demo` instead")
    parser.add_argument("--commit", default="HEAD", help="what --first-run clones")
    parser.add_argument("--make-args", nargs="*", default=[], metavar="VAR=VALUE",
                        help="variables for --first-run's makes")
    args = parser.parse_args()
    if args.first_run:
        return first_run(args.commit, args.make_args)
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
