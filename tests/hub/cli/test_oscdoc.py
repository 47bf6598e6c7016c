"""docs/osc.md is `anamnesis osc-doc`'s output, and that covers what the servers accept."""

from __future__ import annotations

import subprocess
import sys

from support.agents import REPO

from anamnesis.agents.protocol.oscmap import COMMANDS
from anamnesis.hub.api.osc import ADDRESSES
from anamnesis.hub.api.oscquery import HUB_COMMANDS
from anamnesis.hub.cli.oscdoc import render


def test_docs_osc_md_is_the_generated_tables():
    assert (REPO / "docs" / "osc.md").read_text() == render(), \
        "docs/osc.md is stale: run `make docs`"


def test_the_tables_cover_every_address_the_servers_serve():
    text = render()
    for address in COMMANDS:
        assert f"| `{address}` |" in text, address
    assert set(ADDRESSES) == set(HUB_COMMANDS)     # the hub's OSCQuery and docs name them all
    for address in HUB_COMMANDS:
        assert f"| `{address}` |" in text, address
    for kind_address in ("/lr", "/gain", "/mute"):
        assert f"| `{kind_address}` |" in text
    assert "| `/lambda` or `/lr` |" in text        # Unlearn's λ answers to /lr too


def test_the_command_prints_them():
    done = subprocess.run([sys.executable, "-m", "anamnesis.hub.cli", "osc-doc"], cwd=REPO,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and done.stdout == render()
