"""The anamnesis hub: discovery, routing, rooms, persistence, APIs and the CLI."""
