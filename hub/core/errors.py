"""The hub's domain errors: what a person asked that the hub will not do, and why.

:class:`HubError` is a request the hub refuses because of what it asked (a bad value, a
name that breaks a rule); its kinds say more: :class:`NotFound` (no such agent, route,
scene or snapshot), :class:`Conflict` (it exists already, or the installation's state
forbids it now: an agent pending or offline, a deployed installation asked to record)
and :class:`Unavailable` (an agent that does not answer as it should, or too many
requests at once). The core knows no protocol: each front chooses how to say it (HTTP
statuses in :mod:`anamnesis.hub.api.access`, ``/hub/error`` over OSC).
"""

from __future__ import annotations


class HubError(Exception):
    """A request the hub refuses (the message says why, for a person)."""


class NotFound(HubError):
    """What the request names does not exist."""


class Conflict(HubError):
    """The request clashes with the installation's state (it exists, or not now)."""


class Unavailable(HubError):
    """An agent did not answer as it should, or the hub is too busy to ask it."""


__all__ = ["Conflict", "HubError", "NotFound", "Unavailable"]
