"""``[[coupling]]`` in the installation config: defaults, every check, the round trip."""

from __future__ import annotations

import pytest

from anamnesis.hub.installation.check import parse_config
from anamnesis.hub.installation.config import ConfigError, Coupling

BASE = """
[installation]
name = "pair"

[[agent]]
id = "a"
model = "autoregnn"

[[agent]]
id = "b"
model = "autoregnn"
"""


def test_defaults_and_round_trip():
    config = parse_config(BASE + '[[coupling]]\nfrom = "a"\nto = "b"\n'
                          'mask = [4, 0, 2]\nnoise = 0.01\n')
    assert config.couplings == (Coupling("a", "b", mode="blend", kappa=0.05, rate_hz=20.0,
                                         gain=1.0, noise=0.01, mask=(0, 2, 4)),)
    assert config.couplings[0].id == "a~>b"
    assert parse_config(config.to_toml()) == config


@pytest.mark.parametrize(("table", "message"), [
    ('from = "a"\nto = "c"', "to names unknown agent 'c'"),
    ('from = "a"', r"to \(an agent id\) is required"),
    ('from = "a"\nto = "a"', "two different agents"),
    ('from = "a"\nto = "b"\nmode = "swap"', "mode 'swap' is not known"),
    ('from = "a"\nto = "b"\nkappa = 1.5', r"kappa must be in \[0, 1\]"),
    ('from = "a"\nto = "b"\nrate_hz = 200', r"rate_hz \(Hz\) must be in \[1, 100\]"),
    ('from = "a"\nto = "b"\nnoise = -1', r"noise must be in \[0, 100\]"),
    ('from = "a"\nto = "b"\nmask = []', "mask must be a non-empty list"),
    ('from = "a"\nto = "b"\nmask = [1, 1]', "names a weight twice"),
    ('from = "a"\nto = "b"\nrate = 2', "unknown key 'rate'"),
])
def test_problems_are_named_with_their_line(table, message):
    with pytest.raises(ConfigError, match=message) as info:
        parse_config(BASE + "[[coupling]]\n" + table + "\n")
    assert all(p.line is not None for p in info.value.problems)


def test_one_coupling_per_pair_in_either_direction():
    text = BASE + '[[coupling]]\nfrom = "a"\nto = "b"\n[[coupling]]\nfrom = "b"\nto = "a"\n'
    with pytest.raises(ConfigError, match="coupled twice"):
        parse_config(text)
