"""The dashboard's pure modules (web/state.js, params.js, frames.js, util.js) under
``node --test web/test/``, and a check that no module of web/ parses network data as
HTML (STYLE 15: names from the network go through textContent)."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

from support.web import require_node

WEB = Path(__file__).resolve().parents[2] / "web"


def test_node_unit_tests_of_the_reducer_and_codecs_pass():
    node = require_node()
    result = subprocess.run([node, "--test", "--test-reporter=tap", str(WEB / "test")],
                            check=False, capture_output=True, text=True, timeout=120,
                            cwd=WEB.parent)
    tail = result.stdout[-3000:] + result.stderr[-2000:]
    assert result.returncode == 0, tail
    passed = re.search(r"^# pass (\d+)$", result.stdout, re.MULTILINE)
    failed = re.search(r"^# fail (\d+)$", result.stdout, re.MULTILINE)
    assert passed and failed, tail
    print(f"\nnode --test web/test/: {passed.group(1)} passed")
    assert int(failed.group(1)) == 0 and int(passed.group(1)) >= 15, tail


def test_no_module_parses_html():
    sinks = re.compile(r"\.(innerHTML|outerHTML)\s*=|insertAdjacentHTML|document\.write|"
                       r"\beval\s*\(|new Function\s*\(")
    offenders = []
    modules = sorted(WEB.rglob("*.js"))
    assert len(modules) >= 10
    for path in modules:
        for n, line in enumerate(path.read_text().splitlines(), 1):
            if sinks.search(line):
                offenders.append(f"{path.relative_to(WEB)}:{n}: {line.strip()}")
    assert offenders == []
