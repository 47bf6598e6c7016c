"""The lazy neuron's maths written out plainly (``math.tanh``, exact difference
identities), for the references the Unlearn and neuron kernels are tested against."""

from __future__ import annotations

import math


def act(name: str, z: float, trough: bool = False) -> float:
    if name == "tanh":
        return math.tanh(z)
    if name == "sine":
        return math.sin(z)
    return 0.5 * (1.0 - math.cos(z)) if trough else 0.5 * (1.0 + math.cos(z))


def act_prime(name: str, z: float, trough: bool = False) -> float:
    if name == "tanh":
        return 1.0 - math.tanh(z) ** 2
    if name == "sine":
        return math.cos(z)
    return 0.5 * math.sin(z) if trough else -0.5 * math.sin(z)


def g_fn(kind: str, a: float) -> float:
    return a if kind == "linear" else math.tanh(a)


def act_diff(name: str, z1: float, h: float, trough: bool = False) -> float:
    """f(z1 + h) - f(z1) through exact difference identities (no cancellation)."""
    z2 = z1 + h
    if name == "tanh":
        return math.sinh(h) / (math.cosh(z2) * math.cosh(z1))
    if name == "sine":
        return 2.0 * math.cos(0.5 * (z2 + z1)) * math.sin(0.5 * h)
    cos_diff = -2.0 * math.sin(0.5 * (z2 + z1)) * math.sin(0.5 * h)
    return -0.5 * cos_diff if trough else 0.5 * cos_diff


def g_diff(kind: str, a2: float, a1: float, d: float) -> float:
    """g(a2) - g(a1) where d = a2 - a1 is known accurately."""
    return d if kind == "linear" else math.sinh(d) / (math.cosh(a2) * math.cosh(a1))
