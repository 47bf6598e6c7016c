"""Small TorchScript models in the nn~ convention, written for the latent agent's tests.

:func:`write_codec` scripts and saves a real ``torch.jit`` module with what nn~'s backend
reads (``get_methods()``, ``<method>_params`` buffers, ``get_attributes()`` with
``get_<a>``/``set_<a>``), shaped like a streaming RAVE export: ``encode_params = [1, 1,
L, R]``, ``decode_params = [L, R, 1, 1]``, ``forward_params = [1, 1, 1, 1]``. Its encoder
is a strided convolution (one latent frame per R samples, no memory across frames), so
streaming and one offline call agree exactly after the host's latency.

:func:`require_torch` skips a test without torch (the ``[neural]`` extra) and fails it
in CI, which installs it.
"""

# No ``from __future__ import annotations``: TorchScript reads the annotations below as types.
import os
import warnings
from pathlib import Path

import pytest


def require_torch():
    """``torch``; skip without it (fail in CI)."""
    try:
        import torch
    except ImportError:
        message = "torch is not installed (the [neural] extra: pip install torch==2.13.0)"
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI must install torch: {message}")
        pytest.skip(message)
    return torch


def write_codec(path: Path, *, ratio: int = 64, latent: int = 4, seed: int = 0,
                methods=("encode", "decode", "forward")) -> Path:
    """A scripted encode/decode model at ``path`` (see the module docstring)."""
    torch = require_torch()

    class Codec(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            torch.manual_seed(seed)
            self.enc = torch.nn.Conv1d(1, latent, ratio, stride=ratio)
            self.dec = torch.nn.ConvTranspose1d(latent, 1, ratio, stride=ratio)
            with torch.no_grad():
                self.dec.weight.mul_(0.5)
            self.gain = 1.0
            self.register_buffer("encode_params", torch.tensor([1, 1, latent, ratio]))
            self.register_buffer("decode_params", torch.tensor([latent, ratio, 1, 1]))
            self.register_buffer("forward_params", torch.tensor([1, 1, 1, 1]))
            self.register_buffer("sr", torch.tensor(48000))
            self.names = list(methods)

        @torch.jit.export
        def encode(self, x):
            return self.enc(x)

        @torch.jit.export
        def decode(self, z):
            return torch.tanh(self.dec(z)) * self.gain

        def forward(self, x):
            return self.decode(self.encode(x))

        @torch.jit.export
        def get_methods(self) -> list[str]:
            return self.names

        @torch.jit.export
        def get_attributes(self) -> list[str]:
            return ["gain"]

        @torch.jit.export
        def get_gain(self) -> float:
            return self.gain

        @torch.jit.export
        def set_gain(self, value: float) -> int:
            if value < 0.0:
                raise ValueError("gain must not be negative")
            self.gain = value
            return 0

    _save(torch, Codec(), path)
    return path


def write_plain(path: Path) -> Path:
    """A scripted module without ``get_methods()`` (not an nn~ model)."""
    torch = require_torch()

    class Plain(torch.nn.Module):
        def forward(self, x):
            return x * 2.0

    _save(torch, Plain(), path)
    return path


def _save(torch, module, path: Path) -> None:
    with warnings.catch_warnings():   # torch 2.13+ calls TorchScript deprecated; nn~ needs it
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.jit.script(module).save(str(path))


__all__ = ["require_torch", "write_codec", "write_plain"]
