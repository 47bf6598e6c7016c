"""The anamnesis hub (``anamnesis.hub``): discovery, routing, rooms, persistence, APIs
and the CLI. Installed and imported only as ``anamnesis.hub``, never as ``hub``."""

if __name__ != "anamnesis.hub":       # e.g. `import hub` from the checkout's root
    raise ImportError(f"import anamnesis.hub, not {__name__} (one package, one name)")
