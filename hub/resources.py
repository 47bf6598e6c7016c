"""Where the dashboard (``web/``) and the example installations (``deploy/``) are.

In a checkout (or an editable install) they sit beside the packages, at the top
of the repository (DESIGN "Layout"); a wheel carries them inside the ``hub``
package as ``hub/web`` and ``hub/deploy`` (pyproject's ``package-dir``), so a
plain ``pip install .`` finds them too.
"""

from __future__ import annotations

from pathlib import Path

_HUB = Path(__file__).resolve().parent


def _find(name: str) -> Path:
    for candidate in (_HUB / name, _HUB.parent / name):
        if candidate.is_dir():
            return candidate
    raise FileNotFoundError(f"the {name}/ directory is missing: looked in {_HUB} and {_HUB.parent} "
                            "(reinstall anamnesis)")


def web_dir() -> Path:
    """The dashboard's static files."""
    return _find("web")


def deploy_dir() -> Path:
    """The example installation configs (``octophonic.toml`` ...)."""
    return _find("deploy")


def deploy_config(name: str) -> Path:
    """An example config by file name (``"octophonic.toml"``), or FileNotFoundError."""
    path = deploy_dir() / name
    if not path.is_file():
        known = ", ".join(sorted(p.name for p in deploy_dir().glob("*.toml")))
        raise FileNotFoundError(f"no example installation {name!r} (there are: {known})")
    return path


__all__ = ["deploy_config", "deploy_dir", "web_dir"]
