"""The agent-id rule: what ``--id`` accepts (letters, digits, ``_`` and ``-``, 1 to 32
characters, starting with a letter or digit), shared by the agent process and the hub's
installation config."""

from __future__ import annotations

import re

ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,31}$")
