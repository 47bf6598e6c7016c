"""The hub's side of every agent: discovery and liveness (zeroconf), OSC requests,
telemetry, parameter specs, and the supervisor and launcher of local agents.
"""
