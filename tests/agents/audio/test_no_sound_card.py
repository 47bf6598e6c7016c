"""An agent on a machine without a sound card says so plainly, and what to do."""

from __future__ import annotations

import subprocess
import sys

import pytest


def test_an_agent_without_a_sound_card_says_what_to_do(tmp_path):
    sd = pytest.importorskip("sounddevice")
    try:
        sd.query_devices(None, "input")
        sd.query_devices(None, "output")
    except (ValueError, sd.PortAudioError):
        pass
    else:
        pytest.skip("this machine has a default sound device")
    done = subprocess.run(
        [sys.executable, "-m", "anamnesis.agents", "--id", "nocard", "--audio", "sounddevice",
         "--interface", "127.0.0.1", "--no-announce", "--state-dir", str(tmp_path)],
        capture_output=True, text=True, timeout=120)
    assert done.returncode != 0
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("anamnesis agent: error: no sound card found")
    for advice in ("--audio null", "--audio hub", "--device", "anamnesis devices"):
        assert advice in last
    assert "device -1" not in done.stderr and "None" not in last


@pytest.mark.parametrize(("factor", "text"), [(0.57, "0.57x"), (0.057, "0.057x"),
                                              (0.996, "1.0x"), (1.0, "1.0x"), (3.44, "3.4x"),
                                              (9.94, "9.9x"), (9.96, "10x"), (112.4, "112x")])
def test_a_real_time_factor_reads_as_measured(factor, text):
    from anamnesis.agents.render import realtime_text

    assert realtime_text(factor) == text
