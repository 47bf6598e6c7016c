"""The ``anamnesis`` command: one entry point for every part of the installation.

Each subcommand's options and behaviour live beside the code they drive
(``agents.render``, ``anamnesis.agents.main``); this module only wires them up, and
imports each lazily so ``anamnesis render`` does not pay for the network stack.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

# subcommand -> (module, function adding its arguments, function running it, help)
SUBCOMMANDS: dict[str, tuple[str, str, str, str]] = {
    "render": ("anamnesis.agents.render", "add_render_arguments", "run_render",
               "render a preset offline to a WAV file (inputs, then output)"),
    "agent": ("anamnesis.agents.main", "add_agent_arguments", "run_agent",
              "run one learning agent on an audio channel, steered over OSC"),
    "devices": ("anamnesis.agents.main", "add_devices_arguments", "run_devices",
                "list the audio devices PortAudio can see"),
    "hub": ("anamnesis.hub.cli.hub", "add_hub_arguments", "run_hub",
            "run the hub: discovery, local agents, routes, scenes, dashboard and API"),
    "rehearse": ("anamnesis.hub.cli.rehearse", "add_rehearse_arguments", "run_rehearse",
                 "render a whole installation offline, through its simulated room"),
    "keygen": ("anamnesis.hub.cli.keygen", "add_keygen_arguments", "run_keygen",
               "create an installation key (signs the agents' announcements)"),
    "doctor": ("anamnesis.hub.cli.doctor", "add_doctor_arguments", "run_doctor",
               "check this machine for the piece: audio, network, zeroconf, ports, key, state"),
    "osc-doc": ("anamnesis.hub.cli.oscdoc", "add_oscdoc_arguments", "run_oscdoc",
                "print the OSC address tables of an agent and of the hub (docs/osc.md)"),
    "demo": ("anamnesis.hub.cli.demo", "add_demo_arguments", "run_demo",
             "the octophonic demo: a hub, eight agents in a simulated room, the dashboard"),
    "corpus": ("anamnesis.hub.cli.neural", "add_corpus_arguments", "run_corpus",
               "synthesise a training corpus: synth patches playing scales (WAV files)"),
    "train": ("anamnesis.hub.cli.neural", "add_train_arguments", "run_train",
              "train a latent model on a corpus and export it for nn~ and latent agents"),
}


def build_parser() -> tuple[argparse.ArgumentParser, dict[str, argparse.ArgumentParser]]:
    """The top-level parser and one sub-parser per subcommand."""
    from anamnesis.agents import __version__

    parser = argparse.ArgumentParser(
        prog="anamnesis",
        description="A networked installation of neural networks that learn while they play.")
    parser.add_argument("--version", action="version", version=f"anamnesis {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    parsers = {}
    for name, (module, add, _run, help_text) in SUBCOMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        adder = getattr(importlib.import_module(module), add, None)
        if adder is not None:
            adder(p)
        parsers[name] = p
    return parser, parsers


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``anamnesis``; returns the process exit status."""
    parser, _ = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    module, _add, run, _help = SUBCOMMANDS[args.command]
    return int(getattr(importlib.import_module(module), run)(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
