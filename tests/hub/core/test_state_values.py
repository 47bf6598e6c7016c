"""What the hub reads from an agent's replies as its parameters."""

from __future__ import annotations

from anamnesis.hub.core.agent_calls import state_values


def test_replies_that_are_not_parameters_are_not_read_as_parameters():
    """A /subscribed (the telemetry subscription's answer) arriving while /state is
    gathered once became a parameter called "subscribed"; no protocol reply may."""
    replies = [("/subscribed", [40123, 60.0]), ("/lr", [0.5]), ("/act_mix", [0.0, 1.0]),
               ("/reply_port", [9000]), ("/weights", [0.1, 0.2]), ("/pong", []),
               ("/error", ["/nope: unknown address"]), ("/panicked", [0]), ("/gain", [-3.0])]
    assert state_values(replies) == {"lr": 0.5, "act_mix": [0.0, 1.0], "gain": -3.0}
