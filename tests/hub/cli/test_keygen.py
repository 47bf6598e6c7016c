"""``anamnesis keygen``: a new key file, private, loadable; never overwritten."""

from __future__ import annotations

import stat

from anamnesis.agents.protocol.key import load_key
from anamnesis.hub.cli import main


def test_keygen_creates_a_private_key_and_refuses_to_overwrite_it(tmp_path, capsys):
    path = tmp_path / "etc" / "installation.key"
    assert main(["keygen", str(path)]) == 0
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    key = load_key(path)
    assert len(key) == 32
    assert main(["keygen", str(path)]) == 2
    assert "already exists" in capsys.readouterr().err
    assert load_key(path) == key
