"""ConvVAE: a small streaming waveform VAE in RAVE's shape, and its nn~ export.

Architecture (seed 004's RAVE, far smaller so that it trains on one core)
==========================================================================

Encoder: a causal convolution (kernel 7) to ``capacity`` channels, then per ratio r of
``ratios`` (default [4, 4, 4, 2], R = 128 samples per latent frame) a LeakyReLU(0.2) and
a strided causal convolution (kernel 2r, stride r) doubling the channels (at most
:data:`MAX_CHANNELS`), then a causal convolution (kernel 3) to 2L channels: the
posterior's mean and log-variance, one frame per R samples. Decoder: a causal
convolution (kernel 3) from the L latent channels, then per ratio, in reverse, a
LeakyReLU, a transposed convolution (kernel = stride = r: its output frames do not
overlap) halving the channels, a LeakyReLU and a causal convolution (kernel 3); last a
causal convolution (kernel 7) to one channel and tanh.

Streaming: every causal convolution is a :class:`CachedConv1d`. Offline (training) it
pads its input on the left with ``kernel - stride`` zeros; streaming (the export) it
pads with the last ``kernel - stride`` samples of its previous call's input instead.
A signal cut into chunks of any multiple of R therefore gives, chunk by chunk, exactly
the samples of one offline call on the whole of it (within float32 rounding): the
model adds no latency of its own beyond the host's chunk.

Export (nn~ convention, :func:`export`): ``encode`` = the posterior mean, centred by
the validation latents' mean, projected on their principal axes and truncated to the
``dims`` informative dimensions (RAVE's "fidelity": the smallest count whose explained
variance reaches the threshold); ``decode`` = those dimensions padded back to L with
``pad_noise`` x N(0, 1) (an attribute; 0 by default, so a decode is deterministic),
projected back, un-centred, decoded. ``encode_params = [1, 1, dims, R]``,
``decode_params = [dims, R, 1, 1]``, ``forward_params = [1, 1, 1, 1]``, ``sr``.
"""

from __future__ import annotations

import torch
from torch import nn

#: Channel cap of the encoder (and the decoder's widest layer).
MAX_CHANNELS = 64
DEFAULT_RATIOS = (4, 4, 4, 2)
#: Taps of the decoder's last (causal) convolution: long enough to learn the corpus's
#: spectral tilt, so the decoder's broadband floor stays under the corpus's quiet bands.
OUT_KERNEL = 7


class CachedConv1d(nn.Module):
    """A causal ``Conv1d`` (module docstring: offline zero padding, streaming cache)."""

    def __init__(self, cin: int, cout: int, kernel: int, stride: int = 1,
                 dilation: int = 1) -> None:
        super().__init__()
        if kernel < stride:
            raise ValueError("kernel must be at least the stride")
        self.conv = nn.Conv1d(cin, cout, kernel, stride, dilation=dilation)
        self.pad = (kernel - 1) * dilation + 1 - stride
        self.streaming = False
        self.register_buffer("cache", torch.zeros(1, cin, max(self.pad, 1)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.pad > 0:
            if self.streaming:
                x = torch.cat([self.cache, x], -1)
                self.cache.copy_(x[:, :, x.shape[-1] - self.pad:])
            else:
                x = nn.functional.pad(x, (self.pad, 0))
        return self.conv(x)


def _channels(capacity: int, ratios: tuple[int, ...]) -> list[int]:
    out = [capacity]
    for _ in ratios:
        out.append(min(2 * out[-1], MAX_CHANNELS))
    return out


class ConvVAE(nn.Module):
    """Encoder, reparameterisation, decoder (module docstring). ``forward(x)`` on
    ``(batch, 1, frames)`` (frames a multiple of :attr:`ratio`) gives ``(y, mean,
    logvar)``."""

    def __init__(self, capacity: int = 8, latent: int = 16,
                 ratios: tuple[int, ...] = DEFAULT_RATIOS) -> None:
        super().__init__()
        self.latent = int(latent)
        self.ratios = tuple(int(r) for r in ratios)
        ratio = 1
        for r in self.ratios:
            ratio *= r
        self.ratio = ratio
        ch = _channels(capacity, self.ratios)
        enc: list[nn.Module] = [CachedConv1d(1, ch[0], 7)]
        for i, r in enumerate(self.ratios):
            enc += [nn.LeakyReLU(0.2), CachedConv1d(ch[i], ch[i + 1], 2 * r, stride=r)]
        enc += [nn.LeakyReLU(0.2), CachedConv1d(ch[-1], 2 * latent, 3)]
        self.encoder = nn.Sequential(*enc)
        dec: list[nn.Module] = [CachedConv1d(latent, ch[-1], 3)]
        for i in reversed(range(len(self.ratios))):
            r = self.ratios[i]
            dec += [nn.LeakyReLU(0.2), nn.ConvTranspose1d(ch[i + 1], ch[i], r, stride=r),
                    nn.LeakyReLU(0.2), CachedConv1d(ch[i], ch[i], 3)]
        dec += [nn.LeakyReLU(0.2), CachedConv1d(ch[0], 1, OUT_KERNEL)]
        self.decoder = nn.Sequential(*dec)

    def posterior(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(mean, log-variance), each ``(batch, latent, frames / ratio)``."""
        h = self.encoder(x)
        return h[:, :self.latent], h[:, self.latent:].clamp(-12.0, 6.0)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.decoder(z))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        mean, logvar = self.posterior(x)
        z = mean + torch.exp(0.5 * logvar) * torch.randn_like(mean) if self.training else mean
        return self.decode(z), mean, logvar

    def set_streaming(self, on: bool) -> None:
        """Streaming caches on (export) or off (training), caches cleared."""
        for m in self.modules():
            if isinstance(m, CachedConv1d):
                m.streaming = bool(on)
                m.cache.zero_()


def kl_divergence(mean: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(q || N(0, 1)) summed over latent dimensions, averaged over batch and frames."""
    return 0.5 * (mean.pow(2) + logvar.exp() - 1.0 - logvar).sum(1).mean()


#: The multi-scale STFT's window sizes (hop = size / 4).
STFT_SCALES = (2048, 1024, 512, 256, 128)


def spectral_distance(x: torch.Tensor, y: torch.Tensor,
                      scales: tuple[int, ...] = STFT_SCALES) -> torch.Tensor:
    """Multi-scale spectral distance of ``y`` from ``x`` (both ``(batch, 1, frames)``):
    the mean over scales of the relative L1 distance of the magnitudes plus the mean
    absolute difference of their logarithms (RAVE's reconstruction loss)."""
    total = x.new_zeros(())
    a, b = x.reshape(-1, x.shape[-1]), y.reshape(-1, y.shape[-1])
    for n in scales:
        window = torch.hann_window(n, device=x.device, dtype=x.dtype)
        sa = torch.stft(a, n, n // 4, window=window, center=True, return_complex=True).abs()
        sb = torch.stft(b, n, n // 4, window=window, center=True, return_complex=True).abs()
        total = total + (sa - sb).abs().sum() / sa.abs().sum().clamp_min(1e-7)
        total = total + (torch.log(sa + 1e-7) - torch.log(sb + 1e-7)).abs().mean()
    return total / len(scales)


class NnTildeExport(nn.Module):
    """The trained VAE in the nn~ convention (module docstring); built by :func:`export`."""

    def __init__(self, vae: ConvVAE, mean: torch.Tensor, components: torch.Tensor,
                 dims: int, sample_rate: int) -> None:
        super().__init__()
        self.encoder = vae.encoder
        self.decoder = vae.decoder
        self.latent = vae.latent
        self.dims = int(dims)
        self.pad_noise = 0.0
        ratio = vae.ratio
        self.register_buffer("encode_params", torch.tensor([1, 1, self.dims, ratio]))
        self.register_buffer("decode_params", torch.tensor([self.dims, ratio, 1, 1]))
        self.register_buffer("forward_params", torch.tensor([1, 1, 1, 1]))
        self.register_buffer("sr", torch.tensor(int(sample_rate)))
        self.register_buffer("latent_mean", mean.reshape(1, -1, 1).clone())
        self.register_buffer("components", components.clone())   # (L, L): rows = axes

    @torch.jit.export
    def encode(self, x: torch.Tensor) -> torch.Tensor:
        mean = self.encoder(x)[:, :self.latent] - self.latent_mean
        return torch.einsum("kl,blt->bkt", self.components, mean)[:, :self.dims]

    @torch.jit.export
    def decode(self, z: torch.Tensor) -> torch.Tensor:
        pad = torch.zeros(z.shape[0], self.latent - self.dims, z.shape[2], dtype=z.dtype)
        if self.pad_noise != 0.0:
            pad = pad + self.pad_noise * torch.randn_like(pad)
        full = torch.cat([z, pad], 1)
        mean = torch.einsum("kl,bkt->blt", self.components, full) + self.latent_mean
        return torch.tanh(self.decoder(mean))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decode(self.encode(x))

    @torch.jit.export
    def get_methods(self) -> list[str]:
        return ["encode", "decode", "forward"]

    @torch.jit.export
    def get_attributes(self) -> list[str]:
        return ["pad_noise"]

    @torch.jit.export
    def get_pad_noise(self) -> float:
        return self.pad_noise

    @torch.jit.export
    def set_pad_noise(self, value: float) -> int:
        if value < 0.0:
            raise ValueError("pad_noise must not be negative")
        self.pad_noise = value
        return 0


def export(vae: ConvVAE, mean: torch.Tensor, components: torch.Tensor, dims: int,
           sample_rate: int, path: str) -> None:
    """Script :class:`NnTildeExport` of a copy of ``vae`` (streaming) and save it to ``path``."""
    import copy
    import warnings

    twin = copy.deepcopy(vae).eval()
    twin.set_streaming(True)
    with warnings.catch_warnings():   # torch 2.13+ calls TorchScript deprecated; nn~ needs it
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.jit.script(NnTildeExport(twin, mean, components, dims, sample_rate)).save(path)


__all__ = ["ConvVAE", "CachedConv1d", "DEFAULT_RATIOS", "NnTildeExport", "export",
           "kl_divergence", "spectral_distance"]
