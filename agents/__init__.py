"""Everything that runs inside one anamnesis agent process.

Imports go one way: ``hub`` may import ``agents``; ``agents`` never imports ``hub``.
"""

__version__ = "0.1.0"
