"""Benchmark: a latent agent beside an AutoRegNN agent, each a whole process on the null
clock (bench_agent's measurement), alternated.

The latent agent runs a ConvVAE export of the default training shape (``anamnesis train
convvae``: ratios [4, 4, 4, 2], capacity 8, latent 16; an untrained one unless
``--model`` names a ``.ts``: the cost per call does not depend on the weights), its model
on the worker thread, one call per 2048-sample chunk. Printed for both, from the agents'
own telemetry: CPU (% of a core), callback p50 / p99 / max (ms), xruns, RSS; for the
latent agent also its chunks, late and dropped chunks and inference ms per 2048 block
(last and max). Targets (issue 17): 0 late or dropped chunks, 0 xruns, and the latent
agent's callback p99 at most :data:`P99_RATIO` x the AutoRegNN agent's, measured in the
same run (its callback only copies). Exit status 1 if one is missed.

Needs torch (the ``[neural]`` extra): ``make neural``.

    .venv/bin/python bench/bench_latent.py [--seconds 60] [--rounds 1] [--model MODEL.ts]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench_agent import bench  # bench/, the script's own folder

#: The latent agent's callback p99 may be this many times the AutoRegNN agent's.
P99_RATIO = 1.5


def _args(model: str, model_args: list[str], seconds: float) -> argparse.Namespace:
    return argparse.Namespace(model=model, model_arg=model_args, seconds=seconds, warmup=3.0,
                              block=256, sample_rate=48000)


def _export_default(path: Path) -> None:
    import torch

    from anamnesis.hub.neural.convvae import ConvVAE, export

    torch.manual_seed(0)
    vae = ConvVAE().eval()
    export(vae, torch.zeros(vae.latent), torch.eye(vae.latent), 8, 48000, str(path))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=60.0, help="measured time per agent (s)")
    parser.add_argument("--rounds", type=int, default=1, help="alternations (medians compared)")
    parser.add_argument("--model", type=Path, help="a .ts in the nn~ convention")
    args = parser.parse_args()
    try:
        import torch  # noqa: F401
    except ImportError:
        print("bench_latent: torch is not installed (make neural); skipped")
        return 0
    runs: dict[str, list[dict]] = {"autoregnn": [], "latent": []}
    with tempfile.TemporaryDirectory(prefix="anamnesis-latent-") as tmp:
        model = args.model or Path(tmp) / "convvae.ts"
        if args.model is None:
            _export_default(model)
        for _ in range(args.rounds):
            runs["autoregnn"].append(asyncio.run(bench(_args("autoregnn", [], args.seconds))))
            runs["latent"].append(asyncio.run(bench(_args("latent", [f"path={model}"],
                                                          args.seconds))))

    def med(kind: str, key: str) -> float:
        return statistics.median(r[key] for r in runs[kind])

    def tele(key: str) -> float:
        return max(r["telemetry"].get(key, float("nan")) for r in runs["latent"])

    print(f"latent agent bench: {model.name if args.model else 'ConvVAE (default shape)'}, "
          f"null clock, 256 frames at 48000 Hz, {args.seconds:g} s x {args.rounds}")
    for kind in runs:
        print(f"  {kind:9s} CPU {med(kind, 'cpu_percent'):6.2f} %   callback p50 "
              f"{med(kind, 'callback_p50_ms'):.3f} ms  p99 {med(kind, 'callback_p99_ms'):.3f} ms"
              f"  max {med(kind, 'callback_max_ms'):.3f} ms   xruns {med(kind, 'xruns'):.0f}   "
              f"RSS {med(kind, 'rss_mib'):.0f} MiB")
    ratio = med("latent", "callback_p99_ms") / med("autoregnn", "callback_p99_ms")
    late, dropped, xruns = tele("late"), tele("dropped"), med("latent", "xruns")
    print(f"  latent model: {tele('chunks'):.0f} chunks, {late:.0f} late, {dropped:.0f} dropped; "
          f"inference {tele('inference_ms'):.2f} ms per 2048 block (max "
          f"{tele('inference_max_ms'):.2f} ms); latency {tele('latency_ms'):.1f} ms")
    ok_p99 = ratio <= P99_RATIO
    ok_clean = late == 0 and dropped == 0 and xruns == 0
    print(f"target callback p99 <= {P99_RATIO:g}x the AutoRegNN agent's: "
          f"{'MET' if ok_p99 else 'MISSED'} ({ratio:.2f}x)")
    print(f"target 0 late, 0 dropped, 0 xruns: {'MET' if ok_clean else 'MISSED'}")
    return 0 if ok_p99 and ok_clean else 1


if __name__ == "__main__":
    sys.exit(main())
