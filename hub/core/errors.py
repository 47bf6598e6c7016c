"""The hub's domain error: :class:`HubError` carries a message for a person and the
HTTP status the fronts answer with (a later step of the house issue chooses the
status in ``api/`` instead)."""

from __future__ import annotations


class HubError(Exception):
    """A request the hub refuses; ``status`` is the HTTP status it maps to."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


__all__ = ["HubError"]
