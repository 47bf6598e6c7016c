"""A plain ``pip install .`` has a working demo: the wheel installs one import package,
``anamnesis``, carrying the dashboard (web/) and the example installations (deploy/),
and anamnesis.hub.resources finds them there."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_the_wheel_carries_web_and_deploy_and_finds_them(tmp_path):
    # Built from a copy of the sources: setuptools reuses a checkout's build/ folder, where
    # a wheel of an older layout may linger.
    source = tmp_path / "source"
    shutil.copytree(REPO, source, ignore=shutil.ignore_patterns(
        ".git", ".venv", "build", "out", "*.egg-info", "__pycache__", "node_modules"))
    built = subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w",
                            str(tmp_path / "dist"), str(source)], capture_output=True, text=True,
                           timeout=240)
    assert built.returncode == 0, built.stderr[-2000:]
    wheel, = (tmp_path / "dist").glob("anamnesis-*.whl")
    with zipfile.ZipFile(wheel) as z:
        names = set(z.namelist())
        z.extractall(tmp_path / "site")
    web = {p.relative_to(REPO / "web").as_posix() for p in (REPO / "web").rglob("*")
           if p.suffix in (".html", ".js", ".css", ".svg") and "test" not in p.parts}
    # Exactly one top-level import package: no generic `agents` or `hub` in site-packages.
    tops = {n.split("/", 1)[0] for n in names if not n.split("/", 1)[0].endswith(".dist-info")}
    assert tops == {"anamnesis"}, tops
    assert "anamnesis/__init__.py" not in names      # a namespace: anamnesis.agents, .hub
    assert {"anamnesis/agents/__init__.py", "anamnesis/agents/__main__.py",
            "anamnesis/agents/models/base.py", "anamnesis/hub/cli/__main__.py"} <= names
    assert {f"anamnesis/hub/web/{name}" for name in web} <= names, sorted(web - names)
    assert {"anamnesis/hub/deploy/octophonic.toml", "anamnesis/hub/deploy/ring3.toml",
            "anamnesis/hub/deploy/GUIDE.md"} <= names
    # Every package of the checkout is in the wheel (a package missing from pyproject's
    # list would be silently left out).
    for init in (REPO / "agents").rglob("__init__.py"):
        assert f"anamnesis/{init.relative_to(REPO).as_posix()}" in names, init
    for init in (REPO / "hub").rglob("__init__.py"):
        assert f"anamnesis/{init.relative_to(REPO).as_posix()}" in names, init
    # From somewhere else, with only the unpacked wheel on the path (not the checkout).
    probe = subprocess.run(
        [sys.executable, "-c", "import anamnesis.hub.resources as r; print(r.web_dir()); "
         "print(r.deploy_config('octophonic.toml'))"],
        cwd=tmp_path, env={"PYTHONPATH": str(tmp_path / "site"), "PATH": "/usr/bin:/bin"},
        capture_output=True, text=True, timeout=60)
    assert probe.returncode == 0, probe.stderr
    web_dir, octophonic = probe.stdout.split()
    assert Path(web_dir) == tmp_path / "site" / "anamnesis" / "hub" / "web"
    assert (Path(web_dir) / "index.html").is_file() and Path(octophonic).is_file()
