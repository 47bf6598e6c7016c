"""Random parameter settings of every model kind through the safety chain, long run
(issue 14: 10,000 per model kind, extremes included, a Nyquist-rate oscillation
provoked). Printed per kind: settings, samples, non-finite and over-ceiling samples at
the speaker, the worst level above 20 kHz at the speaker and at the model's own output,
and how many settings provoked the oscillation (model output above -40 dBFS there).
Exit status 1 if any sample was non-finite or over the ceiling, or the speaker got more
than -40 dBFS above 20 kHz. ``tests/reliability/test_random_settings.py`` runs 300.

    .venv/bin/python bench/fuzz_settings.py [--settings 10000] [--seed 0]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))

from support.settings_fuzz import VARIANTS, fuzz_kind  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--settings", type=int, default=10_000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    bad = 0
    for kind in sorted(VARIANTS):
        started = time.perf_counter()
        f = fuzz_kind(kind, args.settings, seed=args.seed)
        ok = f.nonfinite == 0 and f.over_ceiling == 0 and f.worst_tweeter_dbfs <= -40.0
        bad += not ok
        print(f"{kind:10s} {f.settings} settings, {f.samples} samples in "
              f"{time.perf_counter() - started:.1f} s: non-finite {f.nonfinite}, over the "
              f"ceiling {f.over_ceiling}; above 20 kHz at the speaker "
              f"{f.worst_tweeter_dbfs:.1f} dBFS (target <= -40), at the model "
              f"{f.worst_model_tweeter_dbfs:.1f} dBFS; provoked in {f.provoked}; "
              f"refused values {f.refused or 0} {'ok' if ok else 'FAILED'}")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
