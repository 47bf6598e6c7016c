"""Weight couplings in a rehearsal: applied by the clock at exact block boundaries, as
the agents' ``/weights`` carries them (float32), bit-identical per seed."""

from __future__ import annotations

import numpy as np
import pytest

from anamnesis.hub.clock.rehearse import Rehearsal
from anamnesis.hub.engine.weight_couplings import distance
from anamnesis.hub.installation.check import parse_config

# Two AutoRegNN agents learning different sounds, slowly (lr 0.05) so that a coupling
# can hold its own against their learning.
DUET = """
[installation]
name = "duet"
block = 256

[[agent]]
id = "a"
preset = "sine200"
params = {{ lr = {lr} }}
seed = 1

[[agent]]
id = "b"
preset = "fm"
params = {{ lr = {lr} }}
seed = 2

[[source]]
name = "tone"
kind = "sine"
args = {{ freq = 200.0, amp = 0.5 }}
targets = ["a"]

[[source]]
name = "glide"
kind = "fm_sine"
args = {{ amp = 0.5 }}
targets = ["b"]
"""


def duet(coupling: str = "", lr: float = 0.05, seed: int = 0) -> Rehearsal:
    return Rehearsal(parse_config(DUET.format(lr=lr) + coupling), seed=seed, listener=False)


def run(r: Rehearsal, seconds: float) -> np.ndarray:
    blocks = int(seconds * r.sample_rate / r.block)
    out = np.empty((blocks * r.block, len(r.agent_ids)))
    for b in range(blocks):
        r.step()
        out[b * r.block:(b + 1) * r.block] = r.outputs
    return out


def blend(kappa: float, **extra: object) -> str:
    more = "".join(f"{k} = {v}\n" for k, v in extra.items())
    return f'\n[[coupling]]\nfrom = "a"\nto = "b"\nkappa = {kappa}\nrate_hz = 20\n{more}'


@pytest.mark.parametrize(("kappa", "bound"), [(0.05, 0.10), (0.0, None)])
def test_a_blend_draws_the_weights_together_while_both_play(kappa, bound):
    """kappa 0.05 at 20 Hz: the distance falls below 10 % of its start within 30 s;
    kappa 0: the two learn apart (they stay above 20 %)."""
    r = duet(blend(kappa))
    start = distance(r.read_weights("a"), r.read_weights("b"))
    y = run(r, 30.0)
    ratio = distance(r.read_weights("a"), r.read_weights("b")) / start
    if bound is None:
        assert ratio > 0.2
    else:
        assert ratio < bound
    last = y[-r.sample_rate:]
    assert np.all(np.std(last, axis=0) > 0.1)              # both keep playing
    assert np.all(np.isfinite(y)) and np.max(np.abs(y)) <= 10 ** (-1 / 20) + 1e-9


def test_exchange_swaps_exactly_at_its_boundary():
    """Learning off (lr 0): the weights change only at the coupling's times, where the
    two vectors trade places exactly (as float32, what /weights carries)."""
    r = duet('\n[[coupling]]\nfrom = "a"\nto = "b"\nmode = "exchange"\nrate_hz = 20\n', lr=0.0)
    run(r, 0.01)                                        # two blocks
    a, b = r.read_weights("a"), r.read_weights("b")
    while r.blocks < 10:                                # 20 Hz: the first time is boundary 10
        r.step()
        np.testing.assert_array_equal(r.read_weights("a"), a)
    r.step()
    np.testing.assert_array_equal(r.read_weights("a"), b)
    np.testing.assert_array_equal(r.read_weights("b"), a)
    assert r.couplings.applied == [1]


def test_a_rehearsal_with_couplings_is_bit_identical_per_seed():
    coupling = blend(0.2, noise=0.01) + (
        '\n[[coupling]]\nfrom = "b"\nto = "a"\nmode = "mean"\nkappa = 0.5\nrate_hz = 7\n')
    with pytest.raises(Exception, match="coupled twice"):
        duet(coupling)
    coupling = blend(0.2, noise=0.01, mask=[0, 5, 9, 40])
    first, again, other = (run(duet(coupling, seed=s), 3.0) for s in (1, 1, 2))
    np.testing.assert_array_equal(first, again)
    assert np.max(np.abs(first - other)) > 1e-3


def test_agents_of_different_shapes_cannot_be_coupled():
    config = DUET.format(lr=0.05).replace('preset = "fm"', 'model = "unlearn"').replace(
        "params = { lr = 0.05 }\nseed = 2", "seed = 2")
    with pytest.raises(ValueError, match=r"a has \d+ weights and b 48; .*one shape"):
        Rehearsal(parse_config(config + blend(0.1)), listener=False)
