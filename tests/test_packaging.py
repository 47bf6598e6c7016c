"""A plain ``pip install .`` has a working demo: the wheel carries the dashboard (web/)
and the example installations (deploy/), and hub.resources finds them there."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_the_wheel_carries_web_and_deploy_and_finds_them(tmp_path):
    built = subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w",
                            str(tmp_path / "dist"), str(REPO)], capture_output=True, text=True,
                           timeout=240)
    assert built.returncode == 0, built.stderr[-2000:]
    wheel, = (tmp_path / "dist").glob("anamnesis-*.whl")
    with zipfile.ZipFile(wheel) as z:
        names = set(z.namelist())
        z.extractall(tmp_path / "site")
    web = {p.relative_to(REPO / "web").as_posix() for p in (REPO / "web").rglob("*")
           if p.suffix in (".html", ".js", ".css", ".svg") and "test" not in p.parts}
    assert {f"hub/web/{name}" for name in web} <= names, sorted(web - names)
    assert {"hub/deploy/octophonic.toml", "hub/deploy/ring3.toml", "hub/deploy/GUIDE.md"} <= names
    # From somewhere else, with only the unpacked wheel on the path (not the checkout).
    probe = subprocess.run(
        [sys.executable, "-c", "import hub.resources as r; print(r.web_dir()); "
         "print(r.deploy_config('octophonic.toml'))"],
        cwd=tmp_path, env={"PYTHONPATH": str(tmp_path / "site"), "PATH": "/usr/bin:/bin"},
        capture_output=True, text=True, timeout=60)
    assert probe.returncode == 0, probe.stderr
    web_dir, octophonic = probe.stdout.split()
    assert Path(web_dir) == tmp_path / "site" / "hub" / "web"
    assert (Path(web_dir) / "index.html").is_file() and Path(octophonic).is_file()
