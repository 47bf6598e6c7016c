"""The piece as checked data: the installation config (frozen dataclasses read from
TOML, every problem reported at once) and the edge vocabulary shared by the config,
the hub's routes and the routing graph. No sockets, no tasks.
"""
