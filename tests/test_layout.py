"""The house rules of DESIGN "Layout" and REDESIGN 7.4, read off the source (static) and
checked by importing every module alone (as python-zeroconf's test_circular_imports).

* ``anamnesis.agents`` never imports ``anamnesis.hub``;
* ``agents.protocol``, ``agents.models``, ``hub.engine`` and ``hub.installation``
  import no asyncio, socket, aiohttp or zeroconf (``agents.dsp``: no socket, aiohttp
  or zeroconf);
* ``hub.core`` never imports ``hub.api`` or ``hub.cli``; ``hub.api`` never imports
  ``hub.cli``;
* no import cycle between modules (top-level imports; imports inside functions are
  lazy by intent and may point anywhere the rules above allow);
* every module imports alone in a fresh interpreter;
* no module over 700 lines but the numba kernel files (``_*_kernels.py``), no class
  over 400 lines.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest
from support.agents import REPO, project_modules

NO_IO = ("asyncio", "socket", "aiohttp", "zeroconf")
PURE = {  # package prefix -> modules it must not import
    "anamnesis.agents.protocol": NO_IO,
    "anamnesis.agents.models": NO_IO,
    "anamnesis.hub.engine": NO_IO,
    "anamnesis.hub.installation": NO_IO,
    "anamnesis.agents.dsp": ("socket", "aiohttp", "zeroconf"),
}
FORBIDDEN = {  # package prefix -> project packages it must not import
    "anamnesis.agents": ("anamnesis.hub",),
    "anamnesis.hub.core": ("anamnesis.hub.api", "anamnesis.hub.cli"),
    "anamnesis.hub.api": ("anamnesis.hub.cli",),
}


MODULES = project_modules()


def _imports(name: str, path: Path) -> tuple[set[str], set[str]]:
    """(every imported module, the ones imported at module level) of one module."""
    tree = ast.parse(path.read_text())
    is_package = path.name == "__init__.py"
    top = {id(n) for n in tree.body}
    for node in tree.body:    # `if TYPE_CHECKING:` and try/except blocks count as top level
        if isinstance(node, (ast.If, ast.Try)):
            top.update(id(n) for n in ast.walk(node))
    every: set[str] = set()
    toplevel: set[str] = set()
    for node in ast.walk(tree):
        found = []
        if isinstance(node, ast.Import):
            found = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = name if is_package else name.rpartition(".")[0]
                for _ in range(node.level - 1):
                    parent = parent.rpartition(".")[0]
                base = f"{parent}.{base}" if base else parent
            found = [base] + [f"{base}.{a.name}" for a in node.names
                              if f"{base}.{a.name}" in MODULES]
        every.update(found)
        if id(node) in top:
            toplevel.update(found)
    return every, toplevel


def _within(module: str, prefix: str) -> bool:
    return module == prefix or module.startswith(prefix + ".")


def test_the_tree_has_the_packages_of_the_layout():
    for package in ("anamnesis.agents.protocol", "anamnesis.agents.models",
                    "anamnesis.agents.presets", "anamnesis.agents.dsp",
                    "anamnesis.agents.audio", "anamnesis.agents.net",
                    "anamnesis.agents.recipe", "anamnesis.agents.main",
                    "anamnesis.hub.installation", "anamnesis.hub.engine",
                    "anamnesis.hub.clock", "anamnesis.hub.fleet", "anamnesis.hub.monitor",
                    "anamnesis.hub.core", "anamnesis.hub.api", "anamnesis.hub.cli"):
        assert package in MODULES, package


def test_imports_go_one_way():
    problems = []
    for name, path in MODULES.items():
        every, _ = _imports(name, path)
        for prefix, banned in FORBIDDEN.items():
            if _within(name, prefix):
                problems += [f"{name} imports {m}" for m in every
                             if any(_within(m, b) for b in banned)]
        for prefix, banned in PURE.items():
            if _within(name, prefix):
                problems += [f"{name} imports {m}" for m in every
                             if m.split(".")[0] in banned]
    assert not problems, "\n".join(sorted(problems))


def test_no_import_cycle_between_modules():
    graph = {}
    for name, path in MODULES.items():
        _, toplevel = _imports(name, path)
        graph[name] = {m for m in toplevel if m in MODULES and m != name}
    # A package's __init__ importing its own submodules is how a package is made,
    # not a cycle of rooms: drop the edges from a package to what it contains.
    for name in graph:
        if MODULES[name].name == "__init__.py":
            graph[name] = {m for m in graph[name] if not _within(m, name)}
    cycles = []
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                cycles.append(stack[stack.index(nxt):] + [nxt])
            elif nxt not in state:
                visit(nxt)
        stack.pop()
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node)
    assert not cycles, "\n".join(" -> ".join(c) for c in cycles)


MAX_MODULE_LINES = 700
MAX_CLASS_LINES = 400


def test_no_module_or_class_is_too_long():
    problems = []
    for name, path in MODULES.items():
        text = path.read_text()
        lines = text.count("\n")
        if lines > MAX_MODULE_LINES and not path.name.endswith("_kernels.py"):
            problems.append(f"{name}: {lines} lines (most {MAX_MODULE_LINES})")
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, ast.ClassDef):
                span = node.end_lineno - node.lineno + 1
                if span > MAX_CLASS_LINES:
                    problems.append(f"{name}.{node.name}: {span} lines (most {MAX_CLASS_LINES})")
    assert not problems, "\n".join(problems)


def test_bare_package_names_are_not_importable():
    for bare in ("agents", "hub"):
        result = subprocess.run([sys.executable, "-c", f"import {bare}"], cwd=REPO,
                                capture_output=True, text=True, timeout=60)
        assert result.returncode != 0
        assert f"import anamnesis.{bare}, not {bare}" in result.stderr or \
            f"No module named '{bare}'" in result.stderr, result.stderr


@pytest.mark.slow
def test_every_module_imports_alone_in_a_fresh_interpreter():
    # One interpreter per module would take a minute; each module here is imported in
    # a child that has imported nothing of the project before it (fork of a bare one),
    # as many at once as there are cores.
    script = (
        "import importlib, os, sys\n"
        "failed, running = [], {}\n"
        "def reap():\n"
        "    pid, status = os.wait()\n"
        "    if status:\n"
        "        failed.append(running[pid])\n"
        "    del running[pid]\n"
        "for name in sys.argv[1:]:\n"
        "    if len(running) >= (os.cpu_count() or 1):\n"
        "        reap()\n"
        "    pid = os.fork()\n"
        "    if pid == 0:\n"
        "        try:\n"
        "            importlib.import_module(name)\n"
        "        except BaseException as exc:\n"
        "            print(name, type(exc).__name__, exc, flush=True)\n"
        "            os._exit(1)\n"
        "        os._exit(0)\n"
        "    running[pid] = name\n"
        "while running:\n"
        "    reap()\n"
        "print('FAILED', ' '.join(failed))\n"
        "sys.exit(1 if failed else 0)\n")
    import importlib.util

    # the modules that are torch (the [neural] extra) need it installed
    needs_torch = {"anamnesis.hub.neural.convvae"}
    has_torch = importlib.util.find_spec("torch") is not None
    names = [n for n in MODULES if not n.endswith("__main__")
             and (has_torch or n not in needs_torch)]
    result = subprocess.run([sys.executable, "-c", script, *names], cwd="/",
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]


def test_torch_stays_out_of_everything_but_the_neural_modules():
    # the [neural] extra: the hub, the agent, the rehearsal, the latent model's module
    # and the corpus import without torch; only building a latent model or training does
    code = ("import sys\n"
            "import anamnesis.hub.cli.hub, anamnesis.hub.cli.demo, anamnesis.agents.main\n"
            "import anamnesis.hub.clock.rehearse, anamnesis.agents.models.latent\n"
            "import anamnesis.hub.neural.corpus, anamnesis.hub.cli.neural\n"
            "print(sorted(m for m in sys.modules if m.split('.')[0] == 'torch'))")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=REPO, timeout=120, check=False)
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == "[]"
    toplevel_torch = sorted(name for name, path in MODULES.items()
                            if "torch" in {m.split(".")[0] for m in _imports(name, path)[1]})
    assert toplevel_torch == ["anamnesis.hub.neural.convvae"]
