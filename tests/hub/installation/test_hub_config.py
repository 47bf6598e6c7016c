"""The installation config: every problem at once, with file:line and did-you-mean; the
deploy/ examples load; an edited config round-trips through TOML."""

from __future__ import annotations

import json
import math
import re
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import soundfile

from anamnesis.hub.installation.check import load_config, parse_config
from anamnesis.hub.installation.config import AgentSpec, Config, ConfigError, Envelope, Route
from anamnesis.hub.installation.toml import dump_toml

DEPLOY = Path(__file__).resolve().parents[3] / "deploy"

BASE = """\
[installation]
name = "test"
sample_rate = 48000
block = 256

[room]
size = [6.0, 5.0, 3.0]
rt60 = 0.5
listener = [3.0, 2.5, 1.6]

[[agent]]
id = "a"
preset = "sine200"
speaker = [1.0, 1.0, 1.5]
mic = [1.2, 1.0, 1.5]

[[agent]]
id = "b"
model = "autoregnn"
params = { hidden_size = 10, lr = 0.5 }
speaker = [5.0, 4.0, 1.5]
mic = [4.8, 4.0, 1.5]

[[route]]
from = "a"
to = "b"
gain = 0.5
delay_ms = 20.0

[[ring]]
agents = ["a", "b"]
gain = 0.3

[[source]]
kind = "noise"
args = { amp = 0.1 }
envelope = { fade = 2.0 }
targets = ["a"]
"""


def line_of(text: str, needle: str, last: bool = False) -> int:
    """1-based line of the first (or last) line containing ``needle``."""
    numbers = [n for n, line in enumerate(text.splitlines(), start=1) if needle in line]
    assert numbers, f"{needle!r} not in the text"
    return numbers[-1] if last else numbers[0]


def problems_of(text: str, name: str = "inst.toml", base_dir: Path | None = None) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        parse_config(text, name, base_dir=base_dir)
    return info.value


# --- the examples ---------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["octophonic", "dusk", "storm", "ring3", "duo"])
def test_deploy_configs_load_and_round_trip(name, tmp_path):
    config = load_config(DEPLOY / f"{name}.toml")
    assert config.source_name.endswith(f"{name}.toml")
    again = parse_config(config.to_toml(), "again.toml", base_dir=config.base_dir)
    assert again == config
    written = tmp_path / f"{name}.toml"
    written.write_text(config.to_toml())
    assert load_config(written) == config
    json.dumps(config.to_dict())  # plain data, JSON-ready


def test_octophonic_is_eight_autoregnn_on_a_circle_around_the_listener():
    config = load_config(DEPLOY / "octophonic.toml")
    assert len(config.agents) == 8
    assert {a.model for a in config.agents} == {"autoregnn"}
    room = config.room
    assert room is not None and config.installation.mode == "simulated"
    lx, ly, _ = room.listener
    radii = [math.hypot(a.speaker[0] - lx, a.speaker[1] - ly) for a in config.agents]
    np.testing.assert_allclose(radii, 3.5, atol=0.01)
    for agent in config.agents:
        assert room.contains(agent.speaker) and room.contains(agent.mic)
        assert 0.3 < math.dist(agent.speaker, agent.mic) < 1.0  # the mic stands beside its speaker
    assert len(config.rings) >= 1 and all(r.gain <= 0.5 for r in config.rings)
    assert any(s.kind == "noise" and s.envelope.length() < 10 for s in config.sources)
    assert sorted(a.channel for a in config.agents) == list(range(1, 9))


def test_ring3_is_the_seed_ring():
    config = load_config(DEPLOY / "ring3.toml")
    assert config.agent_ids == ("n1", "n2", "n3")
    lrs = [a.initial_params()["lr"] for a in config.agents]
    assert lrs == [0.8, 0.9, 0.8]
    for agent in config.agents:
        assert agent.model_args() == {"input_size": 12, "hidden_size": 10}
        assert agent.initial_params()["ridge"] == 1e-5
    routes = {(r.source, r.target): r for r in config.routes}
    assert set(routes) == {("n1", "n2"), ("n2", "n3"), ("n3", "n1"), ("n2", "n1")}
    assert all(r.highpass_hz == 2.0 for r in routes.values())
    assert routes["n3", "n1"].shape == "tanh" and routes["n2", "n1"].lowpass_hz == 10.0
    (burst,) = config.sources
    assert burst.kind == "noise" and burst.args["amp"] == 0.1 and burst.targets == ("n1",)
    assert burst.envelope == Envelope(attack=0.0, hold=0.0, release=2.0)
    model = config.agents[1].create_model(48000, 64)
    assert model.hidden_size == 10 and model.params()["lr"] == 0.9


def test_duo_couples_an_autoregnn_and_an_unlearn():
    config = load_config(DEPLOY / "duo.toml")
    assert sorted(a.model for a in config.agents) == ["autoregnn", "unlearn"]
    pairs = {(r.source, r.target) for r in config.routes}
    assert pairs == {("ar", "un"), ("un", "ar")}
    assert config.agent("ar").initial_params()["lr"] == 0.2  # params override the preset's


def test_lr_names_the_learning_rate_of_an_unlearn_agent_in_a_config():
    """The seeds call Unlearn's λ the learning rate: ``lr`` in its params is λ, checked
    against λ's range; given with ``lambda_`` too it is one problem, not a silent pick."""
    unlearn = BASE.replace('model = "autoregnn"\nparams = { hidden_size = 10, lr = 0.5 }',
                           'model = "unlearn"\nparams = { lr = 0.4 }')
    assert unlearn != BASE
    config = parse_config(unlearn, "inst.toml")
    assert dict(config.agents[1].params) == {"lambda_": 0.4}
    error = problems_of(unlearn.replace("lr = 0.4", "lr = 5000.0"))
    assert any("lambda_ must be in [0, 1000]" in p.message for p in error.problems), str(error)
    error = problems_of(unlearn.replace("lr = 0.4", "lr = 0.4, lambda_ = 2.0"))
    assert [p.message for p in error.problems] == [
        "lr and lambda_ both set lambda_ of unlearn: keep one"]


def test_a_piece_has_a_description_and_each_agent_a_speaker_gain():
    text = BASE.replace('block = 256', 'block = 256\ndescription = """Listen for\n  the lock."""')
    text = text.replace("lr = 0.5 }", "lr = 0.5, gain = -12.0 }")
    config = parse_config(text, "inst.toml")
    assert config.installation.description == "Listen for the lock."
    assert dict(config.agents[1].params)["gain"] == -12.0
    assert "gain" not in config.agents[1].model_args()
    assert parse_config(dump_toml(config.to_dict()), "again.toml").installation.description \
        == "Listen for the lock."
    error = problems_of(text.replace("gain = -12.0", "gain = 30.0"))
    assert any("gain must be in [-60, 12] dB" in p.message for p in error.problems), str(error)
    error = problems_of(text.replace('"""Listen for\n  the lock."""', '"' + "x" * 1001 + '"'))
    assert [p.message for p in error.problems] == [
        "description must have 1 to 1000 characters; got 1001"]


def test_base_config_is_valid_and_defaults_fill_in():
    config = parse_config(BASE, "inst.toml")
    assert config.installation.mode == "simulated" and config.installation.key_file is None
    assert config.agent("a").model == "autoregnn"  # from the preset
    assert [a.seed for a in config.agents] == [0, 1]  # default: the agent's index
    assert config.rings[0].name == "ring1" and config.rings[0].pairs() == (("a", "b"), ("b", "a"))
    assert config.sources[0].name == "source1"
    assert config.routes[0].id == "a->b"


# --- errors, table-driven -------------------------------------------------------------------

# (description, text edit (old, new), message regex, the text of the line the problem points at)
CASES = [
    ("unknown key", ('block = 256', 'blokc = 256'), r"unknown key 'blokc'; did you mean 'block'\?",
     'blokc = 256'),
    ("block out of range", ('block = 256', 'block = 2048'), r"block \(frames\) must be in \[64, 1024\]; got 2048",
     'block = 2048'),
    ("sample rate type", ('sample_rate = 48000', 'sample_rate = "48k"'), r"sample_rate \(Hz\) must be a whole number",
     'sample_rate = "48k"'),
    ("mode", ('block = 256', 'block = 256\nmode = "simulatd"'), r"mode 'simulatd' is not known; did you mean 'simulated'\?",
     'mode = "simulatd"'),
    ("unknown preset", ('preset = "sine200"', 'preset = "sine20"'), r"unknown preset 'sine20'; did you mean 'sine200'\?",
     'preset = "sine20"'),
    ("unknown model", ('model = "autoregnn"', 'model = "autoregn"'), r"model 'autoregn' is not known; did you mean 'autoregnn'\?",
     'model = "autoregn"'),
    ("unknown parameter", ('lr = 0.5 }', 'lrr = 0.5 }'), r"unknown parameter 'lrr' for autoregnn; did you mean 'lr'\?",
     'lrr = 0.5'),
    ("parameter out of range", ('lr = 0.5 }', 'lr = 90.0 }'), r"lr must be in \[0, 50\]; got 90",
     'lr = 90.0'),
    ("constructor argument out of range", ('hidden_size = 10', 'hidden_size = 0'), r"autoregnn: hidden_size must be in \[1, 128\]",
     'hidden_size = 0'),
    ("preset and model disagree", ('preset = "sine200"', 'preset = "sine200"\nmodel = "unlearn"'),
     r"model 'unlearn' does not match preset 'sine200', which is a autoregnn", 'model = "unlearn"'),
    ("bad id", ('id = "b"', 'id = "b c"'), r"id must be 1-32 letters", 'id = "b c"'),
    ("duplicate id", ('id = "b"', 'id = "a"'), r"id 'a' is used twice", ('id = "a"', "last")),
    ("speaker outside the room", ('speaker = [5.0, 4.0, 1.5]', 'speaker = [5.0, 7.0, 1.5]'),
     r"speaker \[5.0, 7.0, 1.5\] is outside the room \[6.0, 5.0, 3.0\] m", 'speaker = [5.0, 7.0, 1.5]'),
    ("position not a vector", ('mic = [4.8, 4.0, 1.5]', 'mic = [4.8, 4.0]'), r"mic must be three finite numbers",
     'mic = [4.8, 4.0]'),
    ("route to an unknown agent", ('to = "b"', 'to = "bb"'), r"to names unknown agent 'bb'; did you mean 'b'\?",
     'to = "bb"'),
    ("negative delay", ('delay_ms = 20.0', 'delay_ms = -1.0'), r"delay_ms \(ms\) must be in \[0, 10000\]; got -1",
     'delay_ms = -1.0'),
    ("cutoff above Nyquist", ('gain = 0.5', 'gain = 0.5\nlowpass_hz = 30000.0'), r"lowpass_hz \(Hz\) must be in \(0, 24000\)",
     'lowpass_hz = 30000.0'),
    ("shape", ('gain = 0.5', 'gain = 0.5\nshape = "tahn"'), r"shape 'tahn' is not known; did you mean 'tanh'\?",
     'shape = "tahn"'),
    ("ring of one", ('agents = ["a", "b"]', 'agents = ["a"]'), r"agents must list at least two agent ids",
     'agents = ["a"]'),
    ("ring member unknown", ('agents = ["a", "b"]', 'agents = ["a", "c"]'), r"agents names unknown agent 'c'",
     'agents = ["a", "c"]'),
    ("source kind", ('kind = "noise"', 'kind = "nosie"'), r"kind 'nosie' is not known; did you mean 'noise'\?",
     'kind = "nosie"'),
    ("source argument", ('args = { amp = 0.1 }', 'args = { ampp = 0.1 }'),
     r"unknown argument 'ampp' for a noise source; did you mean 'amp'\?", 'args = { ampp = 0.1 }'),
    ("source argument value", ('args = { amp = 0.1 }', 'args = { amp = 0.1, fade = -1.0 }'),
     r"noise source: fade must be a positive number", 'args = { amp = 0.1, fade = -1.0 }'),
    ("envelope clash", ('envelope = { fade = 2.0 }', 'envelope = { fade = 2.0, release = 1.0 }'),
     r"fade is short for attack 0, hold 0, release <fade>: do not combine it with release", 'envelope = {'),
    ("envelope repeats too fast", ('envelope = { fade = 2.0 }', 'envelope = { fade = 2.0, every = 1.0 }'),
     r"every \(1 s\) is shorter than the envelope \(2 s\)", 'envelope = {'),
    ("source target", ('targets = ["a"]', 'targets = ["x"]'), r"targets names unknown agent 'x'", 'targets = ["x"]'),
    ("rt60 infeasible", ('rt60 = 0.5', 'rt60 = 0.02'), r"rt60 0.02 s is too short for a 6 x 5 x 3 m room",
     'rt60 = 0.02'),
    ("rt60 and absorption", ('rt60 = 0.5', 'rt60 = 0.5\nabsorption = 0.3'), r"give rt60 or absorption, not both",
     'absorption = 0.3'),
    ("listener outside", ('listener = [3.0, 2.5, 1.6]', 'listener = [3.0, 2.5, 3.6]'), r"listener .* is outside the room",
     'listener = [3.0, 2.5, 3.6]'),
    ("unknown table", ('[room]', '[rooom]'), r"unknown key 'rooom'; did you mean 'room'\?", '[rooom]'),
    ("agent not an array", ('[[agent]]\nid = "a"', '[agent]\nid = "a"'), None, None),
]


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_each_problem_is_reported_with_its_line(case):
    _, (old, new), pattern, at = case
    assert old in BASE
    text = BASE.replace(old, new, 1)
    if pattern is None:  # a malformed document: tomllib's own error, with its line
        error = problems_of(text)
        assert len(error.problems) == 1 and error.problems[0].line is not None
        return
    error = problems_of(text)
    matching = [p for p in error.problems if re.search(pattern, p.message)]
    assert matching, f"no problem matches {pattern!r}: {error}"
    needle, last = (at[0], True) if isinstance(at, tuple) else (at, False)
    assert matching[0].line == line_of(text, needle, last)
    assert str(matching[0]).startswith(f"inst.toml:{matching[0].line}: ")


def test_every_problem_is_reported_at_once():
    text = BASE
    edits = [('block = 256', 'block = 10'), ('preset = "sine200"', 'preset = "nope"'),
             ('to = "b"', 'to = "zz"'), ('kind = "noise"', 'kind = "nosie"'),
             ('rt60 = 0.5', 'rt60 = 0.01'), ('lr = 0.5 }', 'lr = -1.0 }')]
    for old, new in edits:
        text = text.replace(old, new, 1)
    error = problems_of(text)
    assert len(error.problems) == len(edits), str(error)
    message = str(error)
    assert message.startswith("inst.toml: 6 problems in the installation config")
    for needle in ("block", "unknown preset 'nope'", "unknown agent 'zz'", "'nosie'", "rt60 0.01",
                   "lr must be in"):
        assert needle in message
    lines = [p.line for p in error.problems]
    assert lines == sorted(lines)  # in file order


def test_toml_syntax_error_has_a_line():
    text = BASE.replace('gain = 0.5', 'gain = = 0.5')
    error = problems_of(text)
    assert error.problems[0].line == line_of(text, "gain = = 0.5")
    assert "invalid TOML" in str(error)


def test_secrets_are_never_printed():
    text = BASE.replace('block = 256', 'block = 256\nkey = "s3cr3t-hunter2"\napi_token = 123987456')
    error = problems_of(text)
    message = str(error)
    assert "s3cr3t-hunter2" not in message and "123987456" not in message
    assert "secrets never go into the config: use key_file" in message
    text = BASE.replace('block = 256', 'block = 256\nkey_file = 42')
    assert "key_file must be a string" in str(problems_of(text))


def test_missing_agents_and_required_keys():
    error = problems_of('[installation]\nname = "x"\n')
    assert "the installation has no agents" in str(error)
    text = BASE.replace('id = "b"\n', '')
    assert "id is required" in str(problems_of(text))
    text = BASE.replace('mic = [1.2, 1.0, 1.5]\n', '')
    error = problems_of(text)
    assert "mic [x, y, z] (m) is required: the installation has a room" in str(error)
    text = BASE.replace('preset = "sine200"\n', '')
    assert "needs a model or a preset" in str(problems_of(text))


def test_no_room_means_positions_are_optional():
    text = BASE.split("[room]")[0] + "[[agent]]" + BASE.split("[[agent]]", 1)[1]
    text = text.replace('speaker = [5.0, 4.0, 1.5]\n', '')
    config = parse_config(text)
    assert config.room is None and config.agent("b").speaker is None


def test_line_numbers_in_sub_tables_and_multi_line_arrays():
    text = BASE.replace('params = { hidden_size = 10, lr = 0.5 }\n', '') + """
[[agent]]
id = "c"
model = "autoregnn"
speaker = [
  1.0,
  [2.0],
  1.5,
]
mic = [1.0, 1.0, 1.0]

[agent.params]
lr = 77.0
"""
    error = problems_of(text)
    by_message = {p.message.split(";")[0]: p.line for p in error.problems}
    assert by_message["lr must be in [0, 50]"] == line_of(text, "lr = 77.0")
    speaker = [p for p in error.problems if p.message.startswith("speaker must be")]
    assert speaker and speaker[0].line == text.splitlines().index("speaker = [") + 1


def test_deployed_mode_refuses_feedback_cycles_without_delay():
    text = BASE.replace('block = 256', 'block = 256\nmode = "deployed"')
    (problem,) = problems_of(text).problems            # the ring a -> b -> a has no delay
    assert "feedback cycle a -> b -> a has no delay" in problem.message
    assert problem.line == line_of(text, "[[ring]]")
    ok = text.replace('gain = 0.3', 'gain = 0.3\ndelay_ms = 2.0')
    assert parse_config(ok).installation.mode == "deployed"
    both = ok.replace("delay_ms = 20.0", "delay_ms = 0.0") + '[[route]]\nfrom = "b"\nto = "a"\n'
    (problem,) = problems_of(both).problems            # two routes make a zero-delay cycle
    assert "feedback cycle a -> b -> a" in problem.message
    assert problem.line == line_of(both, "[[route]]")
    assert parse_config(both.replace('block = 256\nmode = "deployed"', 'block = 256'))  # fine in lockstep


def test_spawn_with_a_remote_host_and_shared_channels():
    text = BASE.replace('id = "b"', 'id = "b"\nspawn = true\nhost = "10.0.0.7"\nchannel = 1')
    text = text.replace('id = "a"', 'id = "a"\nhost = "10.0.0.7"\nchannel = 1')
    message = str(problems_of(text))
    assert "spawn = true starts the agent on the hub's machine, but host is '10.0.0.7'" in message
    assert "channel 1 on 10.0.0.7 is already agent 'a'" in message


def test_file_sources_are_checked_against_the_file(tmp_path):
    sr = 48000
    soundfile.write(tmp_path / "rain.wav", np.zeros((4800, 2)), sr, subtype="FLOAT")
    soundfile.write(tmp_path / "cd.wav", np.zeros(4410), 44100)
    source = '[[source]]\nkind = "file"\nargs = {{ path = "{path}"{extra} }}\ntargets = ["a"]\n'
    good = BASE + source.format(path="rain.wav", extra=", loop = true, channel = 2")
    config = parse_config(good, "inst.toml", base_dir=tmp_path)
    assert config.sources[-1].args == {"path": "rain.wav", "loop": True, "channel": 2}
    for path, extra, pattern in [
        ("missing.wav", "", r"cannot read sound file .*missing.wav"),
        ("cd.wav", "", r"is at 44100 Hz, the installation at 48000 Hz: resample it"),
        ("rain.wav", ", channel = 3", r"channel must be a whole number in \[1, 2\]"),
        ("rain.wav", ", loops = true", r"unknown key 'loops'; did you mean 'loop'\?"),
    ]:
        error = problems_of(BASE + source.format(path=path, extra=extra), base_dir=tmp_path)
        assert any(re.search(pattern, p.message) for p in error.problems), str(error)


def test_load_config_reports_unreadable_files(tmp_path):
    with pytest.raises(ConfigError, match=r"cannot read the config"):
        load_config(tmp_path / "nope.toml")
    bad = tmp_path / "latin1.toml"
    bad.write_bytes('[installation]\nname = "caf\xe9"\n'.encode("latin-1"))
    with pytest.raises(ConfigError, match=r"latin1.toml: .*not UTF-8"):
        load_config(bad)


def test_edited_config_round_trips_through_toml(tmp_path):
    config = parse_config(BASE, "inst.toml")
    edited = replace(config, routes=(*config.routes, Route("b", "a", gain=-0.25, delay_ms=12.5,
                                                             lowpass_hz=800.0, shape="tanh")),
                     agents=(replace(config.agents[0], params={"lr": 0.25, "act_mix": [0.5] * 8},
                                     spawn=True, channel=3),
                             config.agents[1]))
    text = edited.to_toml()
    again = parse_config(text, "saved.toml")
    assert again == edited
    assert again.agents[0].params["act_mix"] == (0.5,) * 8
    assert again.agent("a").initial_params()["act_mix"] == [0.5] * 8


def test_dump_toml_writes_what_tomllib_reads():
    import tomllib

    data = {"title": 'quote " and \\ and \x7f and é', "n": 3, "x": 1e-05, "flag": False,
            "table": {"a": [1, 2.5], "weird key": {"inner": "v"}},
            "item": [{"k": 1}, {"k": 2, "sub": {"z": 0.0}}]}
    assert tomllib.loads(dump_toml(data)) == data
    with pytest.raises(ValueError, match="non-finite"):
        dump_toml({"x": float("nan")})


def test_config_is_frozen():
    config = parse_config(BASE)
    with pytest.raises(AttributeError):
        config.installation.block = 512  # type: ignore[misc]
    with pytest.raises(TypeError):
        config.agents[1].params["lr"] = 3  # type: ignore[index]
    assert isinstance(config, Config) and isinstance(config.agents[0], AgentSpec)
