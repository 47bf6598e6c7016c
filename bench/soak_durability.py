"""Soak: kill -9 a real hub during write bursts, ``--rounds`` times (issue 14, item 1).

Each round is ``tests/reliability/test_hub_durability.py``'s: a real ``anamnesis hub``
process, six clients (REST, WebSocket, OSC) writing routes at once, SIGKILL the moment the
last answer arrives, then the database opened again. Printed per round: the routes
standing as acknowledged, how many of them are missing or differ on disk, and SQLite's
integrity check; then the totals. Exit status 1 if any acknowledged write was lost or
any integrity check failed. (The test runs one round in ``make test``.)

    .venv/bin/python bench/soak_durability.py [--rounds 20]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))

from reliability.test_hub_durability import kill_during_burst  # noqa: E402


async def soak(rounds: int) -> int:
    lost_total = integrity_errors = acked_total = 0
    t0 = time.perf_counter()
    for k in range(rounds):
        with tempfile.TemporaryDirectory() as tmp:
            want, stored, integrity = await kill_during_burst(Path(tmp))
        # (OSC carries a gain as float32: equal within float32's 1e-7 relative precision)
        lost = sum(1 for rid, gain in want.items()
                   if rid not in stored or abs(stored[rid] - gain) > 1e-6 * abs(gain))
        extra = sorted(set(stored) - set(want))
        lost_total += lost + len(extra)
        acked_total += len(want)
        integrity_errors += integrity != "ok"
        print(f"round {k + 1:2d}: {len(want)} routes standing as acknowledged, {lost} lost or "
              f"different, {len(extra)} deleted but on disk, integrity {integrity}", flush=True)
    print(f"{rounds} rounds of kill -9 in {time.perf_counter() - t0:.0f} s: {acked_total} "
          f"acknowledged routes, {lost_total} lost, {integrity_errors} integrity errors — "
          f"{'MET' if lost_total == integrity_errors == 0 else 'MISSED'}")
    return 1 if lost_total or integrity_errors else 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=20)
    return asyncio.run(soak(parser.parse_args().rounds))


if __name__ == "__main__":
    sys.exit(main())
