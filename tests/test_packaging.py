"""A plain ``pip install .`` has a working demo: the wheel installs one import package,
``anamnesis``, carrying the dashboard (web/) and the example installations (deploy/),
and anamnesis.hub.resources finds them there. Building it, as a wheel or as the
editable install ``make venv`` makes, draws no warning from setuptools."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
#: Lines of a build's output that warn (pip's "WARNING:", setuptools' "…Warning: …",
#: distutils' "warning: …").
WARNING = re.compile(r"warn", re.IGNORECASE)
#: pip on a machine whose pip.conf names an extra index that lacks a project: about that
#: machine's configuration, not about anamnesis.
MACHINE_CONFIG = re.compile(r"^WARNING: Location '[^']*' is ignored: it is neither a file "
                            r"nor a directory\.$")
#: setuptools' notice on every editable install it serves through an import finder (any
#: layout but src/ mapped whole, ours being one package from two folders): that the
#: checkout's folders may shadow it. Nothing in pyproject.toml can answer it.
EDITABLE_NOTICE = re.compile(r"BuildBackendWarning: Editable installation\.$")


def copy_sources(dest: Path) -> Path:
    """The checkout without what a build leaves behind (setuptools reuses a build/ folder,
    where the files of an older layout may linger)."""
    shutil.copytree(REPO, dest, ignore=shutil.ignore_patterns(
        ".git", ".venv", "build", "out", "*.egg-info", "__pycache__", "node_modules"))
    return dest


@pytest.mark.slow
def test_the_wheel_carries_web_and_deploy_and_finds_them(tmp_path):
    source = copy_sources(tmp_path / "source")
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


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["wheel", "editable"])
def test_building_draws_no_warning_from_setuptools(tmp_path, kind):
    """pip's whole output (-v: setuptools' own log too) of building the wheel, or of the
    editable install `make venv` does, has no warning but the two that are not ours. It
    used to have the license table's deprecation and web/ui and deploy/systemd "absent
    from the packages configuration", a screenful each."""
    source = copy_sources(tmp_path / "source")
    # PYTHONDONTWRITEBYTECODE (set on some machines) makes setuptools say it skips
    # byte-compiling: the environment's choice, not the packaging's.
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    if kind == "wheel":
        argv = [sys.executable, "-m", "pip", "wheel", "-v", "--no-deps", "-w",
                str(tmp_path / "dist"), str(source)]
    else:   # into a venv of its own (no pip in it: this pip installs there)
        venv = tmp_path / "venv"
        subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True,
                       timeout=120)
        argv = [sys.executable, "-m", "pip", "--python", str(venv / "bin" / "python"),
                "install", "-v", "--no-deps", "-e", str(source)]
    built = subprocess.run(argv, capture_output=True, text=True, timeout=240, env=env)
    # This test's own folder is named after it ("…no_warning…"): out of the way.
    output = (built.stdout + built.stderr).replace(str(tmp_path), "TMP")
    assert built.returncode == 0, output[-3000:]
    assert "running build_py" in output       # -v did show setuptools' own log
    warnings = [line.strip() for line in output.splitlines() if WARNING.search(line)]
    allowed = [MACHINE_CONFIG] + ([EDITABLE_NOTICE] if kind == "editable" else [])
    ours = [line for line in warnings if not any(p.search(line) for p in allowed)]
    assert ours == [], "\n".join(ours)
    if kind == "editable":   # and it works: the checkout's web/ is where it finds the dashboard
        probe = subprocess.run(
            [str(venv / "bin" / "python"), "-c",
             "import anamnesis.hub.resources as r; print(r.web_dir())"],
            cwd=tmp_path, capture_output=True, text=True, timeout=60)
        assert probe.returncode == 0, probe.stderr
        assert Path(probe.stdout.strip()) == source / "web"
