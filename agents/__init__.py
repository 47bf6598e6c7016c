"""Everything that runs inside one anamnesis agent process (``anamnesis.agents``).

Imports go one way: ``anamnesis.hub`` may import ``anamnesis.agents``; ``agents``
never imports ``hub``. The checkout keeps this folder at its top as ``agents/``; it
is installed (and imported) only as ``anamnesis.agents``, never as ``agents``.
"""

if __name__ != "anamnesis.agents":    # e.g. `import agents` from the checkout's root
    raise ImportError(f"import anamnesis.agents, not {__name__} (one package, one name)")

__version__ = "0.1.0"
