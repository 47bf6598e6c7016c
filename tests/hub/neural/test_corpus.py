"""The synthesised corpus: files, names, levels, determinism; reading a folder back."""

import numpy as np
import pytest
import soundfile

from anamnesis.hub.neural.corpus import (
    NOTE_S,
    PATCHES,
    ROOTS,
    VARIANTS,
    midi_hz,
    read_corpus,
    render_scale,
    scale_notes,
    write_corpus,
)


def test_scales_go_up_and_back_down():
    notes = scale_notes(48, octaves=2)
    assert notes[0] == notes[-1] == 48 and max(notes) == 72
    assert len(notes) == 2 * 15 - 1
    assert midi_hz(69) == 440.0 and midi_hz(81) == pytest.approx(880.0)


def test_every_patch_variant_and_root_is_a_file(tmp_path):
    files = write_corpus(tmp_path, sample_rate=16000, patches=("saw", "noise"))
    assert len(files) == 2 * len(VARIANTS) * len(ROOTS)
    assert {f.name.split("-")[0] for f in files} == {"saw", "noise"}
    audio, rate = soundfile.read(str(files[0]))
    assert rate == 16000 and audio.ndim == 1
    assert audio.shape[0] == len(scale_notes(ROOTS[0])) * int(NOTE_S * 16000)
    assert 0.45 < np.abs(audio).max() <= 0.5 + 1e-4


def test_patches_differ_and_renders_repeat():
    a = render_scale("saw", 0.85, 48, 16000, seed=1)
    assert np.array_equal(a, render_scale("saw", 0.85, 48, 16000, seed=1))
    spectra = {}
    for patch in PATCHES:
        x = render_scale(patch, 0.85, 48, 16000, seed=1)
        spectra[patch] = np.abs(np.fft.rfft(x[:16384]))
    names = list(spectra)
    for i in range(len(names)):
        for j in range(i + 1, len(names)):
            a, b = spectra[names[i]], spectra[names[j]]
            assert np.corrcoef(np.log(a + 1e-6), np.log(b + 1e-6))[0, 1] < 0.99
    with pytest.raises(ValueError, match="unknown patch"):
        render_scale("kazoo", 0.5, 48, 16000)


def test_reading_a_folder_checks_what_it_finds(tmp_path):
    with pytest.raises(ValueError, match="no such folder"):
        read_corpus(tmp_path / "nowhere", 16000)
    with pytest.raises(ValueError, match="no sound files"):
        read_corpus(tmp_path, 16000)
    soundfile.write(str(tmp_path / "short.wav"), np.zeros(800), 16000)
    with pytest.raises(ValueError, match="at least 1 s"):
        read_corpus(tmp_path, 16000)
    soundfile.write(str(tmp_path / "stereo.wav"), np.ones((16000, 2)) * [0.5, -0.25], 16000)
    got = read_corpus(tmp_path, 16000)
    assert [p.name for p, _ in got] == ["short.wav", "stereo.wav"]
    assert got[1][1].dtype == np.float32 and got[1][1][0] == pytest.approx(0.125)
    soundfile.write(str(tmp_path / "other.wav"), np.zeros(44100), 44100)
    with pytest.raises(ValueError, match="resample it"):
        read_corpus(tmp_path, 16000)
