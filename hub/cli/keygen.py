"""``anamnesis keygen PATH``: create an installation key.

The key signs every agent's zeroconf announcement (:mod:`anamnesis.agents.net.announce`); a
hub given the same key adopts those agents by itself. Create it once, on the
hub's machine, and copy the file (mode 0600) to every agent host. An existing
file is never overwritten: a new key would orphan every agent holding the old one.
"""

from __future__ import annotations

import argparse
import sys


def add_keygen_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``anamnesis keygen``."""
    parser.add_argument("path", help="the key file to create (e.g. /etc/anamnesis/installation.key)")


def run_keygen(args: argparse.Namespace) -> int:
    """Create the key file; 0 on success, 2 (one line on stderr) if it exists or cannot be written."""
    from anamnesis.agents.protocol.key import generate_key

    try:
        generate_key(args.path)
    except FileExistsError as exc:
        print(f"anamnesis keygen: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"anamnesis keygen: cannot write {args.path}: {exc.strerror}", file=sys.stderr)
        return 2
    print(f"created {args.path} (mode 0600): copy it to every agent host, and give it to the hub "
          "with --key-file or the config's key_file")
    return 0
