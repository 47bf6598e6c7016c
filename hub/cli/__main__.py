"""``python -m anamnesis.hub.cli ...``: the ``anamnesis`` command (the Makefile uses it)."""

import sys

from anamnesis.hub.cli import main

sys.exit(main())
