"""A latent agent beside a learning one in a rehearsal: the config's relative model path,
deterministic bytes, finite and under the ceiling."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest
import soundfile
from numpy.testing import assert_allclose
from support.nn_models import require_torch, write_codec

from anamnesis.hub.clock import rehearse as R
from anamnesis.hub.installation.check import ConfigError, parse_config

PIECE = """
[installation]
name = "latent-duo"
block = 256

[[agent]]
id = "ear"
model = "latent"
params = {{ path = "{path}", bias = [0.5, 0.0, -0.5, 0.0], noise = 0.2 }}

[[agent]]
id = "voice"
preset = "sine200"

[[ring]]
agents = ["ear", "voice"]
gain = 0.6
delay_ms = 2.0

[[source]]
kind = "noise"
args = {{ amp = 0.3, seed = 1 }}
envelope = {{ attack = 0.01, hold = 0.3, release = 0.2 }}
targets = ["ear"]
"""


@pytest.fixture
def piece(tmp_path):
    require_torch()
    (tmp_path / "models").mkdir()
    write_codec(tmp_path / "models" / "codec.ts", ratio=64, latent=4)
    return parse_config(PIECE.format(path="models/codec.ts"), "duo.toml", base_dir=tmp_path)


def test_the_model_path_is_relative_to_the_config(piece, tmp_path):
    spec = piece.agents[0]
    assert spec.model_args()["path"] == str((tmp_path / "models" / "codec.ts").resolve())


def test_a_missing_model_file_is_a_config_problem(tmp_path):
    require_torch()
    with pytest.raises(ConfigError, match="no such file"):
        parse_config(PIECE.format(path="nowhere.ts"), "duo.toml", base_dir=tmp_path)


def test_a_rehearsal_with_a_latent_agent_is_deterministic(piece, tmp_path):
    digests, audio = [], None
    for run in range(2):
        out = tmp_path / f"duo{run}.wav"
        R.rehearse(piece, 2.0, out, seed=3)
        digests.append(hashlib.sha256(out.read_bytes()).hexdigest())
        audio, rate = soundfile.read(str(out))
    assert digests[0] == digests[1]
    ear = audio[:, 0]
    latency = 2 * 2048
    assert np.all(np.isfinite(audio))
    assert np.abs(audio).max() <= 10 ** (R.CEILING_DB / 20) + 1e-6
    assert np.abs(ear[:latency]).max() < 1e-3          # the model's two chunks of latency
    assert np.sqrt(np.mean(ear[latency:] ** 2)) > 1e-3  # then it plays what it heard
    other = tmp_path / "other.wav"
    R.rehearse(piece, 2.0, other, seed=4)
    assert hashlib.sha256(other.read_bytes()).hexdigest() != digests[0]


COUPLED = """
[installation]
name = "latent-pair"
block = 256

[[agent]]
id = "lead"
model = "latent"
params = {{ path = "{path}" }}

[[agent]]
id = "follow"
model = "latent"
params = {{ path = "{path}" }}

[[source]]
kind = "sines"
args = {{ amp = 0.4 }}
targets = ["lead"]

[[coupling]]
from = "lead"
to = "follow"
mode = "blend"
kappa = 0.5
rate_hz = 20.0
gain = {gain}
"""


def test_a_coupling_carries_one_latent_into_anothers_pose(tmp_path):
    # the latent routes of issue 17, by the [[coupling]] machinery: a latent agent's
    # weight vector is its latent, and writing it steers the other's pose (blend 1)
    require_torch()
    write_codec(tmp_path / "codec.ts", ratio=64, latent=4)
    config = parse_config(COUPLED.format(path="codec.ts", gain=0.5), "pair.toml",
                          base_dir=tmp_path)
    with R.Rehearsal(config, seed=1) as r:
        for _ in range(int(2.0 * 48000 / 256)):
            r.step()
        lead, follow = (r.voices[i].engine.model for i in (0, 1))
        lead_latent = lead.get_state()["latent"]
        assert np.abs(lead_latent).max() > 0.01           # the lead hears its sines
        pose = follow.params()["pose"]
        assert follow.params()["blend"] == 1.0
        # kappa 0.5 at 20 Hz: the pose is within a few percent of gain x the lead's
        # latent (which moves slowly: the sines are steady)
        assert_allclose(pose, 0.5 * lead_latent, rtol=0.1, atol=0.02)
    outs = []
    for run in range(2):
        out = tmp_path / f"pair{run}.wav"
        R.rehearse(config, 1.0, out, seed=2)
        outs.append(hashlib.sha256(out.read_bytes()).hexdigest())
    assert outs[0] == outs[1]


def test_the_example_installation_rehearses(tmp_path):
    require_torch()
    from anamnesis.hub.installation.check import load_config
    from anamnesis.hub.resources import deploy_config

    config = load_config(deploy_config("latent.toml"))
    kinds = sorted({a.model for a in config.agents})
    assert kinds == ["autoregnn", "latent", "unlearn"]
    out, ears = tmp_path / "latent.wav", tmp_path / "ears.wav"
    R.rehearse(config, 2.0, out, preview=ears)
    audio, _ = soundfile.read(str(out))
    assert np.all(np.isfinite(audio)) and np.abs(audio).max() <= 10 ** (R.CEILING_DB / 20) + 1e-6
    z1 = audio[:, [a.id for a in config.agents].index("z1")]
    assert np.sqrt(np.mean(z1[2 * 4096:] ** 2)) > 1e-4      # the latent agent sounds
