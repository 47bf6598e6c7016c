"""Errors shared by the protocol codecs of anamnesis (STYLE 8).

Every pure codec (the OSC address map, the zeroconf TXT schema, RTP framing, the
WebSocket and REST message schemas) raises :class:`ProtocolError` for malformed
input from the network. It is a ``ValueError``, so a caller that validates user
input generically still catches it, but it is never swallowed: the services that
receive untrusted input count it, answer it (``/error`` over OSC, HTTP 400) and
log it at a bounded rate.
"""

from __future__ import annotations


class ProtocolError(ValueError):
    """Malformed or unacceptable protocol input (wrong type, arity, framing, signature)."""


__all__ = ["ProtocolError"]
