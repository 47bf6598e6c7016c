"""What a hub's agent forkserver imports once, so that each forked agent starts warm.

A local agent started as ``python -m anamnesis.agents`` spends about 1.3 s of CPU
before it plays (measured on a 2-core EPYC): 0.5 s importing numpy, numba (which
imports scipy.linalg), aiohttp and zeroconf, 0.35 s initialising numba's CPU
target on its first cached kernel, and the rest on its own model. Eight of them
started at once on two cores keep the installation silent for 6 s or more. A hub
that forks its agents from a server process which has done the common part once
(:mod:`anamnesis.hub.fleet.launcher`) pays it once; each agent then builds and warms only its own
model.

Importing this module does that common part: it imports what every agent process
imports and loads the kernels every agent runs (the safety chain, the RTP link's
rings and jitter buffer), which also initialises numba. It starts no thread, opens
no socket and creates no event loop: the process that imports it is forked.
"""

from __future__ import annotations


def _preload() -> None:
    import numpy as np
    import zeroconf  # noqa: F401  (the announcer's; imported lazily by services)

    from anamnesis.agents import control, main, process, recipe, snapshots  # noqa: F401
    from anamnesis.agents.audio import backends, hubclock  # noqa: F401
    from anamnesis.agents.dsp.engine import AgentEngine
    from anamnesis.agents.models import create_model, unlearn  # noqa: F401
    from anamnesis.agents.net import link, oscquery, services  # noqa: F401

    link.warm_up()                       # rings, jitter buffer, PCM codecs
    engine = AgentEngine(create_model("autoregnn", sample_rate=48000, max_block=256),
                         block=256, sample_rate=48000)
    engine.process_block(np.zeros(256, dtype=np.float32), np.zeros(256, dtype=np.float32))


try:
    _preload()
except Exception as exc:   # the agents then start cold, each warming itself
    import sys

    print(f"agents.preload: the agents' forkserver starts cold: {type(exc).__name__}: {exc}",
          file=sys.stderr, flush=True)
