"""Offline rehearsal (``anamnesis.hub.clock.rehearse``; the command ``anamnesis rehearse``,
``anamnesis.hub.cli.rehearse``): the in-process lockstep equals the live hub's (agents built
from the argv and OSC parameters the hub gives them), the bank path equals the per-agent
engines bit for bit, files are reproducible for a seed and differ across seeds, ring3 keeps
sounding after its noise burst, the CLI's output and its errors, and nothing half-written
after a failure."""

from __future__ import annotations

import hashlib
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile
from numpy.testing import assert_array_equal
from support.alloc import traced_allocation
from support.lockstep import twin_engines

from anamnesis.agents.dsp.safety import SafetyChain
from anamnesis.hub.cli import rehearse as cli_rehearse
from anamnesis.hub.clock import rehearse as R
from anamnesis.hub.clock import wav
from anamnesis.hub.engine.graph import from_config
from anamnesis.hub.installation.check import load_config, parse_config

REPO = Path(__file__).resolve().parents[3]
RING3 = REPO / "deploy" / "ring3.toml"
OCTOPHONIC = REPO / "deploy" / "octophonic.toml"
SR = 48000

# Every way an agent can be built: presets (one following its input, one with two inputs,
# one Unlearn), bare models with float parameters that OSC rounds (a list too), agents
# sharing a shape (a bank of four: sine200's and b3's explicit 12 x 8 and two default-sized
# ones) and a lone shape.
MIXED = """
[installation]
name = "mixed"
block = 128

[[agent]]
id = "s1"
preset = "sine200"
seed = 4

[[agent]]
id = "b1"
model = "autoregnn"
params = { lr = 0.3, ridge = 1e-4, act_mix = 0.25 }

[[agent]]
id = "saw"
preset = "saw_lrmod"

[[agent]]
id = "b2"
model = "autoregnn"
params = { lr = 0.7, ridge = 3e-5 }
seed = 9

[[agent]]
id = "duo"
preset = "interp_sine_pulse"

[[agent]]
id = "big"
model = "autoregnn"
params = { hidden_size = 10, lr = 0.9, ridge = 1e-5 }

[[agent]]
id = "un"
preset = "unlearn1"

[[agent]]
id = "b3"
model = "autoregnn"
params = { hidden_size = 8, lr = 0.05, act_mix = [0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 1.0] }
seed = 12

[[ring]]
agents = ["s1", "b1", "saw", "b2", "duo", "big", "un", "b3"]
gain = 0.5
delay_ms = 3.0
highpass_hz = 20.0
shape = "tanh"

[[route]]
from = "big"
to = "s1"
gain = 0.3
lowpass_hz = 2000.0

[[source]]
kind = "noise"
args = { amp = 0.2, seed = 3 }
envelope = { attack = 0.01, hold = 0.2, release = 0.2 }
targets = ["s1", "b2", "un"]

[[source]]
kind = "sine"
args = { freq = 220.0, amp = 0.3 }
targets = ["saw", "duo", "big"]
"""


def _render(config, blocks: int, **kwargs) -> np.ndarray:
    with R.Rehearsal(config, **kwargs) as r:
        out = np.zeros((blocks * r.block, len(r.agent_ids)))
        for k in range(blocks):
            r.step()
            out[k * r.block:(k + 1) * r.block] = r.outputs
    return out


def _sha256(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "anamnesis.hub.cli", "rehearse", *args], cwd=REPO,
                          capture_output=True, text=True, timeout=120, check=False)


# --- equal to the live lockstep ---------------------------------------------------------


def test_lockstep_equals_the_agents_the_live_hub_would_start(tmp_path):
    """Each agent built as anamnesis.hub.core.hub starts it (its argv through anamnesis.agents.main, then the
    parameters the hub sends over OSC, float32), driven by anamnesis.hub.engine.graph's lockstep one by one:
    the rehearsal's outputs equal it bit for bit (no L24 here: the rehearsal has no RTP)."""
    from anamnesis.hub.core.hub import Hub

    # Every agent is one the hub starts itself (spawn), so it has an argv for each.
    config = parse_config(MIXED.replace("[[agent]]\n", "[[agent]]\nspawn = true\n"), "mixed.toml")
    hub = Hub(state_dir=tmp_path / "hub", interface="127.0.0.1", config=config)
    hub.seed_params()
    engines = twin_engines(config, hub)
    block, blocks = config.installation.block, 90
    graph = from_config(config)
    outputs, inputs = np.zeros((block, 8)), np.zeros((block, 8))
    want = np.zeros((blocks * block, 8))
    for k in range(blocks):
        graph.tick(outputs, out=inputs)
        for i, engine in enumerate(engines):
            engine.process_block(inputs[:, i], outputs[:, i])
        want[k * block:(k + 1) * block] = outputs

    got = _render(config, blocks)
    assert np.sqrt(np.mean(want[-block * 20:] ** 2, axis=0)).min() > 1e-3, "every agent plays"
    assert_array_equal(got, want)


def _grouping(config):
    r = R.Rehearsal(config)
    ids = config.agent_ids
    banks = sorted(sorted(ids[c] for c in v.columns)
                   for v in r.voices if isinstance(v, R.BankVoice))
    engines = sorted(ids[c] for v in r.voices if isinstance(v, R.EngineVoice) for c in v.columns)
    return banks, engines


def test_bank_path_equals_engines_bit_for_bit(monkeypatch):
    config = parse_config(MIXED, "mixed.toml")
    # s1 (sine200, 12x8), b3 (12x8 given) and b1, b2 (default 12x8) share a bank; big
    # (12x10) is alone, too few for a bank; saw follows its input, duo and un are other
    # models: engines.
    assert _grouping(config) == ([["b1", "b2", "b3", "s1"]], ["big", "duo", "saw", "un"])
    engines = _render(config, 80, banks=False)
    assert_array_equal(_render(config, 80), engines)
    monkeypatch.setattr(R, "BANK_MIN_AGENTS", 1)   # a bank of one is bit-identical too
    assert _grouping(config) == ([["b1", "b2", "b3", "s1"], ["big"]], ["duo", "saw", "un"])
    assert_array_equal(_render(config, 80), engines)


def _without_sources(text: str) -> str:
    """A config's text without its [[source]] tables (they render 4096-frame chunks)."""
    return text.split("[[source]]")[0]


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("which", ["mixed", "octophonic"])
def test_a_step_allocates_nothing(which, threads, tmp_path):
    if which == "mixed":
        config = parse_config(_without_sources(MIXED), "mixed.toml")
    else:
            config = parse_config(_without_sources(OCTOPHONIC.read_text()), str(OCTOPHONIC))
    r = R.Rehearsal(config, cache_dir=tmp_path, threads=threads)
    for _ in range(5):
        r.step()
    peak, retained = traced_allocation(r.step, repeats=50)
    r.close()
    # One block of the installation's arrays would be 8 KiB (mixed) or 16 KiB (octophonic).
    # The small temporaries of a step (numpy's views and wrappers, ~2.5 KiB at most) may
    # coincide on two threads (tracemalloc counts every thread's).
    assert peak < (4096 if threads == 1 else 6144) and retained < 1024, (peak, retained)


# --- files: reproducible, seeded, complete ----------------------------------------------


def test_same_seed_same_bytes_other_seed_other_piece(tmp_path):
    config = load_config(RING3)
    paths = {name: tmp_path / f"{name}.wav" for name in ("a", "b", "c")}
    for name, seed in (("a", 0), ("b", 0), ("c", 1)):
        result = R.rehearse(config, 1.0, paths[name], seed=seed)
        assert result.frames == SR and result.seconds == 1.0 and result.realtime_factor > 0
    assert _sha256(paths["a"]) == _sha256(paths["b"])
    assert _sha256(paths["a"]) != _sha256(paths["c"])
    data, rate = soundfile.read(paths["a"], dtype="float64")
    assert rate == SR and data.shape == (SR, 3)
    # The file holds the lockstep's outputs (as float32), every block of them.
    want = _render(config, SR // 64)
    assert_array_equal(data, want.astype(np.float32).astype(np.float64))
    other, _ = soundfile.read(paths["c"], dtype="float64")
    assert np.sqrt(np.mean((data - other) ** 2)) > 1e-3
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.wav", "b.wav", "c.wav"]


def test_seed_offsets_agents_and_noise():
    spec = load_config(RING3).agents[1]
    kwargs0, settings, follow = R.agent_recipe(spec, SR, 64, seed=0)
    kwargs3, _, _ = R.agent_recipe(spec, SR, 64, seed=3)
    assert kwargs0["seed"] == spec.seed == 2 and kwargs3["seed"] == 2 + 3 * R.SEED_STRIDE
    assert kwargs0["input_size"] == 12 and kwargs0["hidden_size"] == 10 and follow == []
    # The hub's OSC parameters arrive as float32: 0.9 becomes 0.8999999761581421.
    assert dict(settings)["lr"] == float(np.float32(0.9)) != 0.9


def test_any_number_of_threads_gives_the_same_bytes(tmp_path):
    """The crew (agents, the room's tails and the preview on several threads) changes
    nothing: the speakers' and the listener's files have one sha256 for 1, 2 and 3
    threads, through the room (octophonic) and with a bank (mixed)."""
    octophonic = load_config(OCTOPHONIC)
    mixed = parse_config(MIXED, "mixed.toml")
    for name, config, preview in (("octo", octophonic, True), ("mixed", mixed, False)):
        digests = set()
        for threads in (1, 2, 3):
            out = tmp_path / f"{name}-{threads}.wav"
            ears = tmp_path / f"{name}-{threads}-ears.wav" if preview else None
            R.rehearse(config, 2.0, out, preview=ears, seed=3, cache_dir=tmp_path / "rooms",
                       threads=threads)
            digests.add((_sha256(out), _sha256(ears) if ears else None))
        assert len(digests) == 1, (name, digests)
    assert _grouping(mixed)[0], "the mixed piece has a bank"


def test_an_interrupted_rehearsal_leaves_nothing(tmp_path):
    config = load_config(RING3)
    seen = []

    def progress(frames):
        seen.append(frames)
        if len(seen) == 300:   # past the first chunk written to disk
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        R.rehearse(config, 2.0, tmp_path / "piece.wav", progress=progress)
    assert list(tmp_path.iterdir()) == []


def test_float_wav_writer_reads_back_and_switches_to_rf64(tmp_path, monkeypatch):
    rng = np.random.default_rng(0)
    for channels in (1, 2, 8):
        data = rng.uniform(-1, 1, (1000, channels)).astype(np.float32)
        w = wav.FloatWavWriter(tmp_path / f"x{channels}.wav", SR, channels, 1000)
        w.write(data[:300])
        w.write(data[300:])
        w.close()
        info = soundfile.info(str(tmp_path / f"x{channels}.wav"))
        assert (info.format, info.subtype, info.channels, info.frames) == \
            ("WAVEX" if channels > 2 else "WAV", "FLOAT", channels, 1000)
        assert_array_equal(soundfile.read(tmp_path / f"x{channels}.wav", dtype="float32")[0],
                           data if channels > 1 else data[:, 0])
    monkeypatch.setattr(wav, "_RIFF_LIMIT", 4000)   # pretend 4 kB is 4 GiB
    w = wav.FloatWavWriter(tmp_path / "big.wav", SR, 3, 1000)
    w.write(data[:, :3])
    w.close()
    assert soundfile.info(str(tmp_path / "big.wav")).format == "RF64"
    assert_array_equal(soundfile.read(tmp_path / "big.wav", dtype="float32")[0], data[:, :3])
    with pytest.raises(ValueError, match="999 of 1000"):
        w = wav.FloatWavWriter(tmp_path / "short.wav", SR, 1, 1000)
        w.write(np.zeros((999, 1), np.float32))
        w.close()


# --- ring3: the seed's three-network feedback keeps itself going -----------------------


def test_ring3_keeps_sounding_after_the_noise_burst():
    """Seed 001: the burst fades out over 2 s; after it only the ring feeds n1. Seconds
    8-10 must still sound (RMS > 1e-2 in every channel), where the same installation
    with the ring's return to n1 cut has decayed to nothing (the floor: its RMS, < 1e-9,
    about the size of float rounding); every sample finite and within the ceiling."""
    text = RING3.read_text()
    config = parse_config(text, str(RING3))
    head, _, rest = text.partition("[[route]]                     # the ring's return")
    cut = parse_config(head + "[[source]]" + rest.split("[[source]]", 1)[1], "ring3-cut.toml")
    assert [(r.source, r.target) for r in cut.routes] == [("n1", "n2"), ("n2", "n3")]
    blocks = 10 * SR // 64
    ring, open_ring = _render(config, blocks), _render(cut, blocks)
    late = slice(8 * SR, 10 * SR)
    rms = np.sqrt(np.mean(ring[late] ** 2, axis=0))
    floor = np.sqrt(np.mean(open_ring[late] ** 2))
    print(f"\nring3 RMS 8-10 s per agent {rms}, with the ring cut {floor:.2e}")
    assert floor < 1e-9
    assert rms.min() > 1e-2 and rms.min() > 1e6 * floor
    ceiling = SafetyChain(SR, 64, R.CEILING_DB).ceiling
    assert np.all(np.isfinite(ring)) and np.abs(ring).max() <= ceiling
    assert np.abs(ring).max() >= 0.5 * ceiling          # it really plays, up to the limiter


# --- the command ----------------------------------------------------------------------

SUMMARY = re.compile(r"^ring3: 0\.5 s of 3 speakers rendered in [\d.]+ s \(([\d.]+)x real time\)"
                     r" -> .*piece\.wav, .*piece\.png$")


def test_cli_renders_plots_and_reports(tmp_path):
    done = _cli(str(RING3), "--seconds", "0.5", "--out", str(tmp_path / "piece.wav"),
                "--plot", str(tmp_path / "piece.png"), "--seed", "2")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.strip().splitlines()
    assert len(lines) == 1 and SUMMARY.match(lines[0]), done.stdout
    assert float(SUMMARY.match(lines[0]).group(1)) > 0
    data, rate = soundfile.read(tmp_path / "piece.wav")
    assert rate == SR and data.shape == (SR // 2, 3)
    assert (tmp_path / "piece.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["piece.png", "piece.wav"]


@pytest.mark.parametrize("case", ["seconds", "config", "preview", "folder", "threads"])
def test_cli_bad_input_exits_2_with_one_message(tmp_path, case):
    bad = tmp_path / "bad.toml"
    bad.write_text('[installation]\nblock = 7\n\n[[agent]]\nid = "a"\nmodel = "autoregnn"\n'
                   'params = { lr = -1 }\n')
    args = {"seconds": [str(RING3), "--seconds", "-1"],
            "config": [str(bad), "--seconds", "1"],
            "preview": [str(RING3), "--seconds", "1", "--preview", str(tmp_path / "ears.wav")],
            "folder": [str(RING3), "--seconds", "1", "--out", str(tmp_path / "no" / "x.wav")],
            "threads": [str(RING3), "--seconds", "1", "--threads", "0"],
            }[case]
    if "--out" not in args:
        args += ["--out", str(tmp_path / "x.wav")]
    done = _cli(*args, "--quiet")
    assert done.returncode == 2, (done.stdout, done.stderr)
    assert done.stdout == "" and "Traceback" not in done.stderr
    first = done.stderr.strip().splitlines()[0]
    assert first.startswith("anamnesis rehearse: error: "), done.stderr
    if case == "config":    # ConfigError lists every problem, one per line
        assert "block" in done.stderr and "lr" in done.stderr
    else:
        assert len(done.stderr.strip().splitlines()) == 1, done.stderr
        assert {"seconds": "--seconds", "preview": "[room]", "folder": "does not exist",
                "threads": "--threads must be 1..64; got 0"}[case] in first
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.toml"]


# --- the room -----------------------------------------------------------------------


def test_octophonic_through_the_room_with_a_preview(tmp_path):
    config = load_config(OCTOPHONIC)
    result = R.rehearse(config, 1.0, tmp_path / "o.wav", preview=tmp_path / "ears.wav",
                        seed=1, cache_dir=tmp_path / "rooms")
    speakers, _ = soundfile.read(tmp_path / "o.wav")
    ears, rate = soundfile.read(tmp_path / "ears.wav")
    assert rate == SR and speakers.shape == (SR, 8) and ears.shape == (SR, 2)
    assert np.all(np.isfinite(ears)) and np.all(np.isfinite(speakers))
    assert np.sqrt(np.mean(ears[SR // 2:] ** 2, axis=0)).min() > 1e-4, "the listener hears"
    assert np.abs(speakers).max() <= SafetyChain(SR, 256, R.CEILING_DB).ceiling
    assert np.abs(ears).max() <= SafetyChain(SR, 256, R.CEILING_DB).ceiling, "headphone-safe"
    assert result.preview == tmp_path / "ears.wav"
    assert any((tmp_path / "rooms").iterdir()), "the room's responses are cached"
    # Through the room too (mic self-noise, float32 convolution): the same seed gives the
    # same bytes, another seed another piece.
    for seed, name in ((1, "again"), (2, "other")):
        R.rehearse(config, 1.0, tmp_path / f"{name}.wav", preview=tmp_path / f"{name}-ears.wav",
                   seed=seed, cache_dir=tmp_path / "rooms")
    assert _sha256(tmp_path / "again.wav") == _sha256(tmp_path / "o.wav")
    assert _sha256(tmp_path / "again-ears.wav") == _sha256(tmp_path / "ears.wav")
    assert _sha256(tmp_path / "other.wav") != _sha256(tmp_path / "o.wav")
    cli_rehearse.plot_rehearsal(tmp_path / "o.png", tmp_path / "o.wav", config.agent_ids,
                     tmp_path / "ears.wav")
    assert (tmp_path / "o.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_spectrogram_levels_are_dbfs(tmp_path):
    """A full-scale 1 kHz sine reads 0 dBFS (within the window's scalloping) in the band
    holding 1 kHz and below -60 dBFS in every band under 500 Hz or over 2 kHz; silence
    reads the floor (-200 dBFS)."""
    t = np.arange(SR) / SR
    data = np.stack([np.sin(2 * np.pi * 1000.0 * t), np.zeros(SR)], axis=1).astype(np.float32)
    soundfile.write(tmp_path / "s.wav", data, SR, subtype="FLOAT")
    levels, edges, seconds = cli_rehearse.spectrogram_rows(tmp_path / "s.wav", columns=10)
    assert seconds == 1.0 and levels.shape[:2] == (2, cli_rehearse.PLOT_BANDS) and levels.shape[2] > 1
    assert edges[0] == cli_rehearse.PLOT_LOW_HZ and edges[-1] == cli_rehearse.PLOT_HIGH_HZ
    band = np.searchsorted(edges, 1000.0) - 1
    assert np.all(np.abs(levels[0, band]) < 1.5)    # Hann scalloping: at most 1.42 dB
    far = (edges[1:] < 500.0) | (edges[:-1] > 2000.0)
    assert levels[0][far].max() < -60.0
    assert levels[1].max() <= -199.0


GAINED = """
[installation]
name = "gained"
block = 256

[[agent]]
id = "loud"
model = "autoregnn"
params = { lr = 0.2, gain = -6.0 }
seed = 1

[[agent]]
id = "soft"
model = "autoregnn"
params = { lr = 0.2, gain = -26.0 }
seed = 1

[[source]]
name = "tone"
kind = "sine"
args = { freq = 300.0, amp = 0.1 }
targets = ["loud", "soft"]
"""


@pytest.mark.parametrize("banks", [False, True])
def test_an_agents_gain_in_the_config_is_its_speaker_level(banks, monkeypatch):
    """``gain`` (dB) in an agent's params is its safety chain's output gain, not the
    model's: two equal agents hearing the same thing, one 20 dB down, 10x apart (both
    under the limiter's ceiling, which would otherwise take its own share)."""
    monkeypatch.setattr(R, "BANK_MIN_AGENTS", 2)
    config = parse_config(GAINED, "gained.toml")
    r = R.Rehearsal(config, banks=banks)
    assert (len(r.voices) == 1) == banks
    out = []
    for _ in range(200):
        r.step()
        out.append(r.outputs.copy())
    out = np.concatenate(out)[4800:]                       # after the gain's 10 ms ramp
    loud, soft = out[:, 0], out[:, 1]
    assert 0.02 < np.abs(loud).max() < 10 ** (-1 / 20)
    np.testing.assert_allclose(soft, loud * 10 ** (-20 / 20), rtol=1e-9, atol=1e-12)
