"""``--channels``: the options of several agents in one process, checked and expanded."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from anamnesis.agents.main import add_agent_arguments, check_args, expand_channels, parse_channels


def _args(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_agent_arguments(parser)
    return parser.parse_args(["--id", "c", "--audio", "null", "--interface", "127.0.0.1",
                              *argv])


def test_channel_lists():
    assert parse_channels("1-8") == [1, 2, 3, 4, 5, 6, 7, 8]
    assert parse_channels("1,3, 5") == [1, 3, 5]
    assert parse_channels("2-3,7") == [2, 3, 7]
    for bad, says in (("3-1", "not a range"), ("0-2", "not a range"), ("1,1", "twice"),
                      ("a-b", "like 1-8"), ("1-100", "at most 64")):
        with pytest.raises(ValueError, match=says):
            parse_channels(bad)


def test_each_agent_gets_its_channel_id_ports_seed_and_state_dir(tmp_path):
    args = _args("--channels", "1-3", "--osc-port", "9001", "--state-dir", str(tmp_path),
                 "--seed", "5")
    configs = expand_channels(check_args(args), args.channels)
    assert [c.agent_id for c in configs] == ["c1", "c2", "c3"]
    assert [(c.in_channel, c.out_channel) for c in configs] == [(1, 1), (2, 2), (3, 3)]
    assert [c.osc_port for c in configs] == [9001, 9002, 9003]
    assert [c.http_port for c in configs] == [0, 0, 0]           # 0: each a free one
    assert [c.seed for c in configs] == [5, 6, 7]                # not three identical nets
    assert [c.state_dir for c in configs] == [tmp_path / "c1", tmp_path / "c2", tmp_path / "c3"]
    default = expand_channels(check_args(_args("--channels", "1-2")), "1-2")
    assert [c.state_dir.name for c in default] == ["agent-c1", "agent-c2"]
    assert all(isinstance(c.state_dir, Path) for c in default)


def test_what_cannot_be_is_refused_with_a_reason():
    for argv, says in ((("--channels", "1-2,2"), "twice"),
                       (("--channels", "1-2", "--audio", "hub"), "hub clocks each agent")):
        with pytest.raises(ValueError, match=says):
            check_args(_args(*argv))
