"""The latent model kind: a TorchScript model in the nn~ convention on the microphone.

Real torch (the [neural] extra; skipped without it, failed in CI), real scripted
modules written by tests/support/nn_models.py."""

import sys
import time

import numpy as np
import pytest
from numpy.testing import assert_allclose, assert_array_equal
from support.nn_models import require_torch, write_codec, write_plain

torch = require_torch()

from anamnesis.agents.dsp.engine import AgentEngine  # noqa: E402
from anamnesis.agents.models import create_model  # noqa: E402
from anamnesis.agents.models.latent import DEFAULT_CHUNK, Latent  # noqa: E402
from anamnesis.agents.models.nn_convention import (  # noqa: E402
    NeuralExtraMissing,
    import_torch,
    load_scripted,
)

RATIO, DIMS = 64, 4


@pytest.fixture(scope="module")
def codec(tmp_path_factory):
    return write_codec(tmp_path_factory.mktemp("nn") / "codec.ts", ratio=RATIO, latent=DIMS)


def _noise(frames, seed=0):
    return np.random.default_rng(seed).uniform(-0.9, 0.9, frames)


def _stream(model, x, blocks=(300, 17, 256, 1, 4000)):
    """``x`` through ``model`` in blocks of varying sizes."""
    out, pos, i = np.empty_like(x), 0, 0
    while pos < x.shape[0]:
        m = min(blocks[i % len(blocks)], x.shape[0] - pos)
        model.process(x[pos:pos + m], out=out[pos:pos + m])
        pos, i = pos + m, i + 1
    return out


def _offline(path, x, method="forward"):
    module = load_scripted(path).module
    with torch.inference_mode():
        return getattr(module, method)(torch.from_numpy(x.astype(np.float32))[None, None])[0, 0].numpy()


def test_reads_the_convention_as_nn_tilde_does(codec):
    # nn~'s backend: get_methods(), then each <method>_params buffer as 4 ints, get_attributes()
    module = load_scripted(codec).module     # torch.jit.load, its deprecation warning muted
    raw = {m: [int(v) for v in getattr(module, f"{m}_params").tolist()] for m in module.get_methods()}
    assert raw == {"encode": [1, 1, DIMS, RATIO], "decode": [DIMS, RATIO, 1, 1],
                   "forward": [1, 1, 1, 1]}
    scripted = load_scripted(codec)
    assert {n: [s.in_channels, s.in_ratio, s.out_channels, s.out_ratio]
            for n, s in scripted.methods.items()} == raw
    assert scripted.attributes == ("gain",) and scripted.get_attribute("gain") == 1.0
    assert scripted.sample_rate == 48000
    assert torch.get_num_threads() == 1   # an agent's torch runs on one thread


def test_streaming_equals_one_offline_call_after_the_latency(codec):
    model = create_model("latent", path=str(codec), seed=0)
    assert (model.method, model.dims, model.ratio) == ("encode_decode", DIMS, RATIO)
    assert model.chunk == DEFAULT_CHUNK and model.latency == 2 * DEFAULT_CHUNK
    x = _noise(12 * DEFAULT_CHUNK)
    out = _stream(model, x)
    ref = _offline(codec, x)
    lat = model.latency
    assert_array_equal(out[:lat], 0.0)
    assert_allclose(out[lat:], ref[:x.shape[0] - lat], atol=1e-5, rtol=0)
    assert np.abs(ref).max() > 0.05            # the model makes sound
    assert model.stats()["chunks"] == 12 and model.stats()["late"] == 0


def test_forward_method_and_chunk_options(codec):
    model = create_model("latent", path=str(codec), method="forward", chunk=512)
    assert (model.method, model.dims, model.latency) == ("forward", 0, 1024)
    x = _noise(8 * 512, seed=2)
    assert_allclose(_stream(model, x)[1024:], _offline(codec, x)[:-1024], atol=1e-5, rtol=0)
    # no latent to steer; the model's attribute "gain" is named apart from the agent's gain
    assert model.param_specs().keys() == {"model_gain"}
    assert model.get_state()["latent"].shape == (0,)


def test_the_worker_thread_gives_the_inline_samples_when_on_time(codec):
    x = _noise(10 * DEFAULT_CHUNK, seed=3)
    inline = _stream(create_model("latent", path=str(codec), seed=5), x)
    model = create_model("latent", path=str(codec), seed=5)
    model.start_worker()
    try:
        assert model.inference == "thread"
        out = np.empty_like(x)
        for pos in range(0, x.shape[0], 256):
            model.process(x[pos:pos + 256], out=out[pos:pos + 256])
            # the audio thread's cadence, on any machine: the next block comes when the
            # worker has had its time (real time gives it a whole chunk, 43 ms)
            deadline = time.monotonic() + 30.0
            while model._busy and time.monotonic() < deadline:
                time.sleep(0.001)
        assert_array_equal(out, inline)
        assert model.stats()["late"] == 0 and model.stats()["dropped"] == 0
    finally:
        model.close()
    assert model.inference == "inline"


def test_a_late_worker_costs_silence_never_a_wait(codec):
    model = create_model("latent", path=str(codec))
    model.start_worker()
    try:
        x = _noise(20 * DEFAULT_CHUNK, seed=4)
        out = model.process(x)      # 20 chunks in one call: the worker cannot keep up
        stats = model.stats()
        assert stats["late"] + stats["dropped"] >= 1
        assert np.all(np.isfinite(out))
        # every chunk played is either the model's own output or silence
        ref = _offline(codec, x)
        lat = model.latency
        for c in range(18):
            got = out[lat + c * DEFAULT_CHUNK: lat + (c + 1) * DEFAULT_CHUNK]
            want = ref[c * DEFAULT_CHUNK:(c + 1) * DEFAULT_CHUNK]
            assert np.all(got == 0.0) or np.allclose(got, want, atol=1e-5)
    finally:
        model.close()


def test_latent_steering(codec):
    x = _noise(6 * DEFAULT_CHUNK, seed=6)
    plain = create_model("latent", path=str(codec))
    base = _stream(plain, x)
    z = load_scripted(codec).module.encode(torch.from_numpy(x[-DEFAULT_CHUNK:].astype(np.float32))[None, None])
    steered = create_model("latent", path=str(codec))
    steered.set_param("scale", [0.5, 1.0, 2.0, -1.0])
    steered.set_param("bias", [1.0, 0.0, -1.0, 0.25])
    out = _stream(steered, x)
    assert not np.allclose(out, base)
    want = z[0].detach().numpy().astype(np.float64) * np.array([0.5, 1, 2, -1])[:, None] \
        + np.array([1.0, 0, -1, 0.25])[:, None]
    assert_allclose(steered.get_state()["latent"], want.mean(axis=1), atol=1e-5)
    # blend 1 toward a pose: every chunk decodes the same latent, whatever is heard
    posed = create_model("latent", path=str(codec))
    posed.set_state({"latent": np.array([0.5, -0.5, 1.0, 0.0])})
    assert posed.params()["blend"] == 1.0
    y = _stream(posed, x)
    chunks = y[posed.latency:].reshape(-1, DEFAULT_CHUNK)
    assert np.abs(chunks).max() > 0.01
    assert_allclose(chunks[1:], chunks[:1].repeat(len(chunks) - 1, axis=0), atol=1e-6)


def test_hold_freezes_the_encoders_latent(codec):
    x = _noise(8 * DEFAULT_CHUNK, seed=7)
    model = create_model("latent", path=str(codec))
    _stream(model, x[:2 * DEFAULT_CHUNK])
    model.set_param("hold", 1)
    y = _stream(model, x[2 * DEFAULT_CHUNK:])
    frames = y[model.latency:].reshape(-1, RATIO)   # one decoded frame per latent frame
    assert_allclose(frames, frames[:1].repeat(len(frames), axis=0), atol=1e-6)


def test_noise_is_seeded(codec):
    x = _noise(5 * DEFAULT_CHUNK, seed=8)

    def run(seed):
        m = create_model("latent", path=str(codec), seed=seed)
        m.set_param("noise", 0.5)
        return _stream(m, x), m
    a, model = run(1)
    b, _ = run(1)
    c, _ = run(2)
    assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    model.reset(1)
    assert_array_equal(_stream(model, x), a)


def test_the_models_own_attribute_is_a_parameter(codec):
    x = _noise(5 * DEFAULT_CHUNK, seed=9)
    one = _stream(create_model("latent", path=str(codec)), x)
    model = create_model("latent", path=str(codec))
    spec = model.param_specs()["model_gain"]      # "gain" is the agent's own (dB)
    assert spec.kind == "float" and spec.default == 1.0
    model.set_param("model_gain", 0.25)
    quarter = _stream(model, x)
    assert_allclose(quarter, 0.25 * one, atol=1e-6)
    model.set_param("model_gain", -1.0)           # the model refuses: counted, the chunk plays on
    _stream(model, x[:2 * DEFAULT_CHUNK])
    assert model.stats()["errors"] == 1 and "gain must not be negative" in model.last_error


@pytest.mark.parametrize("case", ["nan", "silence", "full_scale"])
def test_any_input_gives_finite_output_under_the_ceiling(codec, case):
    frames = 6 * DEFAULT_CHUNK
    x = {"nan": np.where(np.arange(frames) % 7 == 0, np.nan, _noise(frames)),
         "silence": np.zeros(frames),
         "full_scale": np.sign(_noise(frames)) * 1.0}[case]
    engine = AgentEngine(create_model("latent", path=str(codec)), block=256,
                         sample_rate=48000, ceiling_db=-1.0)
    engine.model.set_param("model_gain", 40.0)     # the model itself drives its tanh hard
    speaker = np.zeros(frames)
    for pos in range(0, frames, 256):
        engine.process_block(x[pos:pos + 256], speaker[pos:pos + 256])
    assert np.all(np.isfinite(speaker))
    assert np.abs(speaker).max() <= engine.safety.ceiling + 1e-12
    if case == "nan":
        assert engine.model.stats()["nonfinite_inputs"] > 0
    if case != "silence":
        assert np.abs(speaker).max() > 0.1


def test_a_block_between_chunk_ends_only_copies(codec):
    from support.alloc import traced_allocation

    model = create_model("latent", path=str(codec))
    x, out = _noise(256), np.empty(256)
    for _ in range(3):
        model.process(x, out=out)           # 768 of the chunk's 2048 samples
    # ten blocks of 100 (1768 < 2048): copies in and out; the only objects are the
    # slices' views (measured: 512 bytes at once) and the position, a Python int
    # (measured: 48 bytes kept)
    peak, retained = traced_allocation(lambda: model.process(x[:100], out=out[:100]), repeats=10)
    assert peak < 1024 and retained < 128


@pytest.mark.parametrize("kwargs, message", [
    ({}, "needs path"),
    ({"path": "/nonexistent/model.ts"}, "no such file"),
    ({"method": "encode"}, "not audio to audio"),
    ({"method": "transmogrify"}, "no method 'transmogrify'"),
    ({"chunk": 1000}, "multiple of the model's ratio 64"),
])
def test_clear_errors(codec, kwargs, message):
    args = {"path": str(codec), **kwargs} if "path" not in kwargs and kwargs != {} else kwargs
    with pytest.raises(ValueError, match=message):
        Latent(**args)


def test_files_that_are_not_nn_models(tmp_path):
    garbage = tmp_path / "garbage.ts"
    garbage.write_bytes(b"not a zip at all")
    with pytest.raises(ValueError, match="not a TorchScript file"):
        load_scripted(garbage)
    with pytest.raises(ValueError, match="no get_methods"):
        load_scripted(write_plain(tmp_path / "plain.ts"))
    only_forward = write_codec(tmp_path / "fwd.ts", methods=("forward", "decode", "encode", "extra"))
    with pytest.raises(ValueError, match="extra_params"):
        load_scripted(only_forward)


def test_without_torch_one_line_says_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "torch", None)   # import torch then raises ImportError
    with pytest.raises(NeuralExtraMissing, match=r"pip install 'anamnesis\[neural\]'"):
        import_torch()
