"""ConvVAE: shapes, causal caches (streaming equals offline), the nn~ export as nn~ and
the latent agent read it, the spectral distance."""

import numpy as np
import pytest
from support.nn_models import require_torch

torch = require_torch()

from anamnesis.agents.models import create_model  # noqa: E402
from anamnesis.agents.models.nn_convention import load_scripted  # noqa: E402
from anamnesis.hub.neural.convvae import (  # noqa: E402
    CachedConv1d,
    ConvVAE,
    export,
    spectral_distance,
)


def _signal(frames, seed=0):
    g = torch.Generator().manual_seed(seed)
    return 0.3 * torch.randn(1, 1, frames, generator=g)


def test_shapes_and_ratio():
    vae = ConvVAE(capacity=4, latent=6)
    assert vae.ratio == 128
    with torch.no_grad():
        y, mean, logvar = vae(_signal(1024).repeat(3, 1, 1))
    assert y.shape == (3, 1, 1024) and mean.shape == logvar.shape == (3, 6, 8)
    assert float(y.abs().max()) <= 1.0


def test_a_cached_convolution_streams_exactly():
    torch.manual_seed(0)
    conv = CachedConv1d(2, 3, 8, stride=4)
    x = torch.randn(1, 2, 64)
    offline = conv(x)
    conv.streaming = True
    streamed = torch.cat([conv(x[..., i:i + 16]) for i in range(0, 64, 16)], -1)
    assert offline.shape == (1, 3, 16)
    assert torch.allclose(offline, streamed, atol=1e-6)
    with pytest.raises(ValueError):
        CachedConv1d(1, 1, 2, stride=4)


def test_spectral_distance_is_zero_for_equal_and_grows_with_difference():
    x = _signal(4096)
    assert float(spectral_distance(x, x)) == pytest.approx(0.0, abs=1e-6)
    near = float(spectral_distance(x, x + 0.01 * _signal(4096, 1)))
    far = float(spectral_distance(x, 0.1 * _signal(4096, 2)))
    assert 0.0 < near < far


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    torch.manual_seed(3)
    vae = ConvVAE(capacity=4, latent=6).eval()
    g = torch.Generator().manual_seed(1)
    axes = torch.linalg.qr(torch.randn(6, 6, generator=g))[0]   # an orthonormal basis
    path = tmp_path_factory.mktemp("cv") / "cv.ts"
    export(vae, torch.full((6,), 0.1), axes, 4, 48000, str(path))
    return path, vae, axes


def test_the_export_keeps_the_nn_tilde_convention(exported):
    path, vae, _ = exported
    module = load_scripted(path).module
    assert list(module.get_methods()) == ["encode", "decode", "forward"]
    assert module.encode_params.tolist() == [1, 1, 4, 128]
    assert module.decode_params.tolist() == [4, 128, 1, 1]
    assert module.forward_params.tolist() == [1, 1, 1, 1]
    assert int(module.sr) == 48000 and list(module.get_attributes()) == ["pad_noise"]


def test_the_export_streams_as_one_offline_call(exported):
    path, vae, _ = exported
    x = _signal(2048 * 6, seed=4)
    offline = load_scripted(path).call("forward", x)
    stream = load_scripted(path)
    chunks = [stream.call("forward", x[..., i:i + 2048]) for i in range(0, x.shape[-1], 2048)]
    assert torch.allclose(offline, torch.cat(chunks, -1), atol=1e-5)
    assert float(offline.abs().max()) > 1e-3


def test_encode_projects_and_decode_inverts_the_pca(exported):
    path, vae, axes = exported
    scripted = load_scripted(path)
    x = _signal(1024, seed=5)
    mean, _ = vae.posterior(x)
    z = scripted.call("encode", x)
    want = torch.einsum("kl,blt->bkt", axes, mean - 0.1)[:, :4]
    assert torch.allclose(z, want, atol=1e-5)
    # all six dimensions kept: decode(encode(x)) is the VAE's own reconstruction
    full = exported[0].with_name("full.ts")
    export(vae, torch.full((6,), 0.1), axes, 6, 48000, str(full))
    both = load_scripted(full)
    assert torch.allclose(both.call("forward", x), vae.decode(mean), atol=1e-5)


def test_a_latent_agent_plays_the_export(exported):
    path, _, _ = exported
    model = create_model("latent", path=str(path))
    assert (model.dims, model.ratio, model.latency) == (4, 128, 4096)
    out = model.process(np.random.default_rng(0).uniform(-0.5, 0.5, 6 * 2048))
    assert np.all(np.isfinite(out)) and np.abs(out[4096:]).max() > 1e-3
