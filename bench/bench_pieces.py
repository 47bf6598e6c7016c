"""Benchmark of the demo pieces as music: what a composer hears, measured.

Each piece of ``deploy/`` (default: the octophonic demo, dusk and storm) is rehearsed
offline (:class:`anamnesis.hub.clock.rehearse.Rehearsal`, the same loop as the live hub:
the room, the graph, the agents' models and safety chains) for ``--seconds`` (default
600: ten minutes), keeping every speaker's feed, what every agent heard (its input:
routes and microphone) and the 50 ms frames in which a model recovered from a blow-up.
:func:`anamnesis.hub.monitor.piece.analyse_speaker` then measures each speaker; the
targets (issue 15), per piece:

* every speaker touches the ceiling in at most 10 % of its 50 ms frames;
* no dropout to silence is a reset (the network's own silences are welcome);
* an audible pitch (a peak 15 dB over its third-octave neighbourhood) in at least
  half of the sounding 5 s windows of at least three speakers;
* the timbre changes over the piece: the spectral centroid of some speaker spans at
  least one octave;
* at least one agent's pitch follows what it hears within 2 % (in half of the windows
  where both have one).

Printed: one line per speaker and MET / MISSED per target; exit status 1 if a target
is missed. The reference, measured in the same run, is the same piece without its room
(``--no-reference`` skips it): what the agents do alone, so the figures say what the
air adds.

    .venv/bin/python bench/bench_pieces.py [--seconds 600] [--piece octophonic] [--json out.json]
        [--plots docs/pieces]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from anamnesis.hub.clock.rehearse import Rehearsal
from anamnesis.hub.installation.check import load_config
from anamnesis.hub.monitor.piece import FRAME_S, analyse_speaker

PIECES = ("octophonic", "dusk", "storm")
#: Targets (issue 15).
MAX_CEILING_SHARE = 0.10
MIN_PITCHED_SPEAKERS = 3
PITCHED_SHARE = 0.5
MIN_CENTROID_OCTAVES = 1.0
FOLLOW_SHARE = 0.5


def _resets(stats: dict[str, dict[str, float]], agent_id: str) -> float:
    s = stats.get(agent_id, {})
    return float(s.get("blowups", 0.0)) + float(s.get("seed_restores", 0.0))


def run_piece(config, seconds: float, *, seed: int = 0, room: bool = True) -> dict:
    """Rehearse ``config`` for ``seconds``; every speaker's measures and the wall time."""
    r = Rehearsal(config, seed=seed, room=room, listener=False)
    block, sr = r.block, r.sample_rate
    blocks = int(round(seconds * sr / block))
    n = len(r.agent_ids)
    outputs = np.zeros((blocks * block, n), dtype=np.float32)
    inputs = np.zeros((blocks * block, n), dtype=np.float32)
    frame = int(round(FRAME_S * sr))
    resets: dict[str, list[int]] = {a: [] for a in r.agent_ids}
    last = {a: 0.0 for a in r.agent_ids}
    t0 = time.perf_counter()
    for k in range(blocks):
        r.step()
        outputs[k * block:(k + 1) * block] = r.outputs
        inputs[k * block:(k + 1) * block] = r.inputs
        if (k + 1) * block // frame != k * block // frame:
            stats = r.agent_stats()
            for a in r.agent_ids:
                now = _resets(stats, a)
                if now > last[a]:
                    resets[a].extend([(k * block) // frame] * int(now - last[a]))
                    last[a] = now
    wall = time.perf_counter() - t0
    measures = {a: analyse_speaker(outputs[:, i], sr, x=inputs[:, i], reset_frames=resets[a])
                for i, a in enumerate(r.agent_ids)}
    return {"wall_s": wall, "speakers": measures, "outputs": outputs}


def plot(outputs: np.ndarray, sample_rate: int, labels, path: Path, title: str) -> None:
    """The speakers' spectrogram (``anamnesis rehearse --plot``'s picture) as a PNG."""
    import tempfile

    import soundfile

    from anamnesis.hub.cli.rehearse import plot_rehearsal

    with tempfile.TemporaryDirectory() as tmp:
        wav = Path(tmp) / "piece.wav"
        soundfile.write(wav, outputs, sample_rate, subtype="FLOAT")
        plot_rehearsal(path, wav, labels, title=title)


def _line(agent_id: str, m) -> str:
    pitch = f"{m.pitch_hz:7.1f} Hz" if m.pitch_hz else "      -   "
    follow = f"{m.follow_share:4.0%}" if m.follow_share is not None else "   -"
    lo, hi = m.centroid_hz or (0.0, 0.0)
    return (f"  {agent_id:>4}  rms {m.rms_db:6.1f} dBFS  ceiling {m.ceiling_share:5.1%}  "
            f"resets {m.resets:3d} (dropouts {m.reset_dropouts:2d}, own silences "
            f"{m.own_silences:2d})  pitched {m.pitched_share:4.0%} {pitch} "
            f"({m.prominence_db:4.1f} dB)  centroid {lo:6.0f}-{hi:6.0f} Hz "
            f"({m.centroid_octaves:3.1f} oct)  follows {follow}")


def judge(speakers: dict) -> list[tuple[str, bool, str]]:
    """The targets: (what, met, figure)."""
    ms = list(speakers.values())
    worst = max(m.ceiling_share for m in ms)
    dropouts = sum(m.reset_dropouts for m in ms)
    pitched = [a for a, m in speakers.items() if m.pitched_share >= PITCHED_SHARE]
    octaves = max(m.centroid_octaves for m in ms)
    followers = [a for a, m in speakers.items()
                 if m.follow_share is not None and m.follow_share >= FOLLOW_SHARE]
    return [
        ("ceiling share <= 10 % per speaker", worst <= MAX_CEILING_SHARE, f"worst {worst:.1%}"),
        ("reset dropouts = 0", dropouts == 0, f"{dropouts}"),
        (f"pitched speakers >= {MIN_PITCHED_SPEAKERS}", len(pitched) >= MIN_PITCHED_SPEAKERS,
         f"{len(pitched)} ({', '.join(pitched) or 'none'})"),
        ("centroid range >= 1 octave", octaves >= MIN_CENTROID_OCTAVES, f"{octaves:.2f} oct"),
        ("an agent follows what it hears within 2 %", bool(followers),
         ", ".join(followers) or "none"),
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=600.0)
    parser.add_argument("--piece", action="append", choices=PIECES,
                        help="a piece of deploy/ (repeatable; default: all three)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-reference", action="store_true",
                        help="skip the same piece without its room")
    parser.add_argument("--json", type=Path, help="write every measure to this file")
    parser.add_argument("--plots", type=Path, help="draw each piece's spectrogram to DIR/PIECE.png")
    args = parser.parse_args(argv)
    failed = False
    report: dict[str, dict] = {}
    for name in args.piece or PIECES:
        config = load_config(REPO / "deploy" / f"{name}.toml")
        result = run_piece(config, args.seconds, seed=args.seed)
        print(f"{name}: {args.seconds:g} s rehearsed in {result['wall_s']:.0f} s "
              f"({args.seconds / result['wall_s']:.1f}x real time)")
        for agent_id, m in result["speakers"].items():
            print(_line(agent_id, m), flush=True)
        for what, met, figure in judge(result["speakers"]):
            print(f"  {'MET   ' if met else 'MISSED'} {what}: {figure}")
            failed |= not met
        report[name] = {a: m.to_json() for a, m in result["speakers"].items()}
        if args.plots is not None:
            args.plots.mkdir(parents=True, exist_ok=True)
            plot(result["outputs"], config.installation.sample_rate, config.agent_ids,
                 args.plots / f"{name}.png", f"{name}: {args.seconds:g} s rehearsed, seed "
                 f"{args.seed}")
        del result
        if not args.no_reference and config.room is not None:
            alone = run_piece(config, args.seconds, seed=args.seed, room=False)
            quiet = sum(m.rms_db < -60 for m in alone["speakers"].values())
            pitched = sum(m.pitched_share >= PITCHED_SHARE for m in alone["speakers"].values())
            print(f"  reference without the room: {quiet} of {len(alone['speakers'])} speakers "
                  f"silent over the piece, {pitched} pitched")
            report[name + " (no room)"] = {a: m.to_json() for a, m in alone["speakers"].items()}
    if args.json is not None:
        args.json.write_text(json.dumps(report, indent=1))
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
