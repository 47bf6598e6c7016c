"""The in-process twin of the live simulated hub, for the tests that compare the two.

:func:`twin_engines` builds every agent as its process builds it (from the argv the hub
gives it) with the parameters the hub sends it over OSC (float32, as OSC carries
floats) before the first block; :func:`clock_blocks` lets a started hub clock ``blocks``
blocks and returns the clock's stats. A test that compares the two builds its hub with
``step_timeout_s=PATIENT_STEP_S``: a block given up as silence would end the comparison.
"""

from __future__ import annotations

import argparse
import asyncio
from typing import Any

import numpy as np

from anamnesis.agents.dsp.engine import AgentEngine
from anamnesis.agents.main import add_agent_arguments, check_args
from anamnesis.agents.recipe import config_model

#: How long a compared hub's blocks wait for the slowest agent (s). Live, a block waits
#: 50 ms and is then silence (counted, ``missing``); a loaded test machine can keep an
#: agent process off its core for longer, and one silent block ends the comparison.
PATIENT_STEP_S = 5.0


def _as_sent(value: Any) -> Any:
    """A parameter value as the agent gets it over OSC ("f": float32)."""
    if isinstance(value, list):
        return [_as_sent(v) for v in value]
    return float(np.float32(value)) if isinstance(value, float) else value


def twin_engines(config: Any, hub: Any) -> list[AgentEngine]:
    """Each agent's model and safety chain as its process builds them, in config order,
    with ``hub.params`` applied (names as OSC has them: ``lambda`` is ``lambda_``)."""
    engines = []
    argv = {spec.name: spec.argv for spec in hub.local_agents()}
    for spec in config.agents:
        parser = argparse.ArgumentParser()
        add_agent_arguments(parser)
        agent_config = check_args(parser.parse_args(list(argv[spec.id][3:])))
        make, follow = config_model(agent_config)
        model = make()
        for name, value in hub.params[spec.id].items():
            name = name if name in model.param_specs() else name + "_"
            model.set_param(name, _as_sent(value))
        engines.append(AgentEngine(model, block=agent_config.block,
                                   sample_rate=agent_config.sample_rate,
                                   ceiling_db=agent_config.ceiling_db, follow=follow))
    return engines


async def clock_blocks(hub: Any, blocks: int, timeout_s: float = 60.0) -> dict[str, Any]:
    """Wait until the started ``hub``'s simulated clock has stepped ``blocks`` blocks
    (failing after ``timeout_s`` s with its stats); its stats then."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while hub.driver.steps < blocks:
        assert loop.time() < deadline, f"clock: {hub.driver.stats()}"
        await asyncio.sleep(0.05)
    return hub.driver.stats()
