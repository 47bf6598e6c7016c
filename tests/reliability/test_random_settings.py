"""Whatever the parameters, the speaker gets finite samples under the ceiling and almost
nothing above 20 kHz (issue 14, item 9 and "Safety first in a room").

Every model kind, in every activation, takes random settings of all its parameters (a
third of them at an end of their range) and of the agent's gain (often +12 dB), with a
full-scale 23.9 kHz tone under noise at its input, at 1x, 10x and 1000x, so that the
learner oscillates near the Nyquist rate (counted: from 1 % of the settings of
AutoRegNN2 to 90 % of AutoRegNN's, at up to +5 dBFS there). The safety
chain's output never carries a non-finite sample or one above the ceiling, and its
level above 20 kHz stays at or under -40 dBFS. ``bench/fuzz_settings.py`` runs 10,000
settings per model kind.
"""

from __future__ import annotations

import pytest
from support.settings_fuzz import VARIANTS, fuzz_kind

SETTINGS = 300


@pytest.mark.parametrize("kind", sorted(VARIANTS))
def test_random_settings_never_reach_the_tweeter(kind):
    figures = fuzz_kind(kind, SETTINGS, seed=14)
    print(f"\n{kind}: {figures}")
    assert figures.settings >= SETTINGS - len(VARIANTS[kind])
    assert figures.refused == {}, figures.refused         # every value drawn is in range
    assert figures.nonfinite == 0 and figures.over_ceiling == 0, figures
    assert figures.worst_tweeter_dbfs <= -40.0, figures
    # The fuzz did provoke it: the model itself put a loud tone above 20 kHz.
    assert figures.provoked >= 1 and figures.worst_model_tweeter_dbfs >= -20.0, figures
