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


def test_every_parameter_of_every_model_has_a_label_in_words():
    """Issue 15: 'act_mix … [8] ≈ 0' means nothing to an artist. Every parameter of every
    model kind the hub describes (agents/models via anamnesis.hub.fleet.specs, as the
    dashboard gets them) reads in words through web/params.js's labelOf; Unlearn's and
    the neuron's λ is labelled a learning rate as AutoRegNN's lr is, and keeps /lambda
    and its alias /lr in view for OSC users."""
    import json

    from anamnesis.agents.models import MODEL_KINDS
    from anamnesis.hub.fleet.specs import model_specs

    node = require_node()
    specs = {kind: list(model_specs(kind).values()) for kind in MODEL_KINDS}
    script = """
        import { labelOf, oscAddresses, LABELS } from "./web/params.js";
        const specs = JSON.parse(process.argv[1]);
        const out = {};
        for (const [kind, list] of Object.entries(specs))
          out[kind] = list.map((s) => [s.name, labelOf(s), oscAddresses(s), s.name in LABELS]);
        console.log(JSON.stringify(out));
    """
    result = subprocess.run([node, "--input-type=module", "-e", script, json.dumps(specs)],
                            check=False, capture_output=True, text=True, timeout=60,
                            cwd=WEB.parent)
    assert result.returncode == 0, result.stderr[-2000:]
    labels = json.loads(result.stdout)
    assert set(labels) == set(MODEL_KINDS) and all(labels.values())
    unlabelled = [f"{kind}.{name}" for kind, rows in labels.items()
                  for name, _, _, known in rows if not known]
    assert unlabelled == []
    by_name = {name: (label, osc) for rows in labels.values() for name, label, osc, _ in rows}
    assert by_name["lr"] == ("learning rate", ["/lr"])
    assert by_name["lambda"] == ("learning rate λ", ["/lambda", "/lr"])
    assert by_name["act_mix"][0] == "sine share of each hidden unit"
    # words, not the OSC name again (but where the name is already the word)
    same = {name for name, (label, _) in by_name.items() if label == name}
    assert same <= {"activation", "mute"}, same
