"""The hub's fronts: the aiohttp app (REST, WebSocket, static dashboard, OpenAPI) and
the installation's OSC server; they translate protocols into core calls and hold no
rule of their own.
"""
