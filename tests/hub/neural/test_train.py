"""Training the ConvVAE on the generated corpus: determinism, resume, the PCA, the export,
the command's errors. Short runs (a few steps); the time to a good model is a benchmark
(bench/bench_train.py)."""

import subprocess
import sys

import numpy as np
import pytest
import soundfile
from support.nn_models import require_torch

torch = require_torch()

from anamnesis.agents.models.nn_convention import load_scripted  # noqa: E402
from anamnesis.hub.neural.corpus import write_corpus  # noqa: E402
from anamnesis.hub.neural.train import dims_at, train  # noqa: E402

RATE = 16000
SMALL = dict(batch=2, crop=2048, sample_rate=RATE, capacity=4, latent=6, warmup=4)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    folder = tmp_path_factory.mktemp("corpus")
    write_corpus(folder, sample_rate=RATE, patches=("saw", "fm"))
    return folder


def _response(path):
    x = torch.from_numpy(np.sin(np.arange(4096) * 0.05).astype(np.float32)).reshape(1, 1, -1)
    return load_scripted(path).call("forward", x).numpy()


def test_a_seed_gives_the_same_model_and_resume_continues_it(corpus, tmp_path):
    a = train(corpus, tmp_path / "a.ts", steps=8, seed=1, **SMALL)
    b = train(corpus, tmp_path / "b.ts", steps=8, seed=1, **SMALL)
    assert np.array_equal(_response(a.out), _response(b.out))
    other = train(corpus, tmp_path / "c.ts", steps=8, seed=2, **SMALL)
    assert not np.array_equal(_response(a.out), _response(other.out))
    ckpt = tmp_path / "half.ckpt"

    def interrupt(step, loss):           # Ctrl-C after the checkpoint of step 4
        if step == 5:
            raise KeyboardInterrupt
    with pytest.raises(KeyboardInterrupt):
        train(corpus, tmp_path / "half.ts", steps=8, seed=1, checkpoint=ckpt,
              checkpoint_every=2, progress=interrupt, **SMALL)
    assert torch.load(str(ckpt), weights_only=False)["step"] == 4
    assert not (tmp_path / "half.ts").exists()
    resumed = train(corpus, tmp_path / "resumed.ts", steps=8, seed=1, checkpoint=ckpt,
                    resume=True, **SMALL)
    assert np.array_equal(_response(resumed.out), _response(a.out))
    assert resumed.distance_untrained == a.distance_untrained


def test_the_result_and_the_export(corpus, tmp_path):
    result = train(corpus, tmp_path / "m.ts", steps=6, seed=0, **SMALL)
    fid = np.array(result.fidelity)
    assert fid.shape == (6,) and np.all(np.diff(fid) >= -1e-12) and fid[-1] == pytest.approx(1.0)
    assert result.dims == dims_at(fid, 0.95) and 1 <= result.dims <= 6
    assert result.steps_per_second > 0 and result.distance_untrained > 0
    module = load_scripted(result.out).module
    assert module.encode_params.tolist() == [1, 1, result.dims, 128]
    assert int(module.sr) == RATE
    assert not (tmp_path / "m.ts.partial").exists()


def test_dims_at_a_threshold():
    fid = np.array([0.5, 0.9, 0.95, 1.0])
    assert dims_at(fid, 0.95) == 3 and dims_at(fid, 0.4) == 1 and dims_at(fid, 1.0) == 4


def test_bad_corpora_and_requests(corpus, tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no sound files"):
        train(tmp_path / "empty", tmp_path / "x.ts", steps=1, **SMALL)
    (tmp_path / "short").mkdir()
    soundfile.write(str(tmp_path / "short" / "a.wav"), np.zeros(5000), RATE)
    with pytest.raises(ValueError, match="too short for crops"):
        train(tmp_path / "short", tmp_path / "x.ts", steps=1, **SMALL)
    with pytest.raises(ValueError, match="nothing to resume"):
        train(corpus, tmp_path / "x.ts", steps=1, resume=True,
              checkpoint=tmp_path / "none.ckpt", **SMALL)
    with pytest.raises(ValueError, match="multiple of the model's ratio"):
        train(corpus, tmp_path / "x.ts", steps=1, **{**SMALL, "crop": 1000})


def _cli(*args):
    return subprocess.run([sys.executable, "-m", "anamnesis.hub.cli", *args],
                          capture_output=True, text=True, timeout=300, check=False)


def test_the_commands(tmp_path):
    made = _cli("corpus", str(tmp_path / "c"), "--sample-rate", str(RATE))
    assert made.returncode == 0 and "wrote 24 files" in made.stdout
    run = _cli("train", "convvae", str(tmp_path / "c"), "--out", str(tmp_path / "m.ts"),
               "--steps", "3", "--batch", "2", "--crop", "2048", "--capacity", "4",
               "--latent", "6", "--sample-rate", str(RATE), "--no-progress")
    assert run.returncode == 0, run.stderr
    assert "latent dimensions at fidelity 0.95" in run.stdout and (tmp_path / "m.ts").is_file()
    assert (tmp_path / "m.ts.ckpt").is_file()
    bad = _cli("train", "convvae", str(tmp_path / "nowhere"), "--out", str(tmp_path / "n.ts"))
    assert bad.returncode == 2
    assert bad.stderr.strip().splitlines() == [
        f"error: corpus {str(tmp_path / 'nowhere')!r}: no such folder"]


def test_evaluations_and_an_early_stop(corpus, tmp_path):
    result = train(corpus, tmp_path / "e.ts", steps=8, seed=0, evaluate_every=2, **SMALL)
    assert [e[0] for e in result.evaluations] == [2, 4, 6, 8] and result.steps == 8
    assert all(e[2] > 0 for e in result.evaluations)
    assert [e[1] for e in result.evaluations] == sorted(e[1] for e in result.evaluations)
    early = train(corpus, tmp_path / "s.ts", steps=8, seed=0, evaluate_every=2, stop_at=0.5,
                  **SMALL)                # any model is half as close as the untrained one
    assert early.steps == 2 and len(early.evaluations) == 1 and early.out.is_file()
