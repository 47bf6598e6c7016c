"""The hub-clock wire constants both sides speak (DESIGN "Clocking", simulated mode).

Every output packet of an agent under the hub's clock carries an RFC 8285 one-byte
header extension, element :data:`EXT_CLOCK`, whose value says whose clock made it:
:data:`CLOCK_HUB` (one output per hub input) or :data:`CLOCK_FREE` (the agent ran on
its own clock with silence in: the hub stopped sending). The agent's backend is
:mod:`anamnesis.agents.audio.hubclock`; the hub's driver reads the flag."""

from __future__ import annotations

#: One-byte header extension element carrying the agent's clock state.
EXT_CLOCK = 1
CLOCK_HUB = 0
CLOCK_FREE = 1


__all__ = ["CLOCK_FREE", "CLOCK_HUB", "EXT_CLOCK"]
