"""``python -m anamnesis.agents ...``: one agent process (``anamnesis agent ...``)."""

import sys

from anamnesis.agents.main import main

sys.exit(main())
