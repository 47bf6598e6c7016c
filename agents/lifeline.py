"""An agent a hub started ends with that hub, even a hub killed with ``kill -9``.

A hub gives every agent it starts its own pid in the environment (:data:`HUB_PID_ENV`).
Such an agent (:func:`hold`) asks the kernel for SIGTERM when its parent ends (Linux
``prctl(PR_SET_PDEATHSIG)``; the parent is the hub, or the hub's forkserver, which ends
with the hub) — its ordinary shutdown, so its autosave is written and its state
directory released for the next hub — and :func:`watch` checks every :data:`WATCH_S`
that the hub still runs: the same on a system without ``prctl``, and for a hub that
ended before the request was made. An agent started by hand (no variable) is left alone.
Started in their own session, agents would otherwise run on under init, holding their
state directories, and the next hub could not start them again.
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import logging
import os
import signal
import sys
from collections.abc import Callable, Mapping

log = logging.getLogger("anamnesis.agents.lifeline")

#: The environment variable that names the pid of the hub that started the agent.
HUB_PID_ENV = "ANAMNESIS_HUB_PID"
#: Seconds between two checks that the hub still runs.
WATCH_S = 1.0
_PR_SET_PDEATHSIG = 1   # <linux/prctl.h>


def hub_pid(environ: Mapping[str, str] = os.environ) -> int | None:
    """The pid of the hub that started this agent, or None (started by hand; a value
    that is not a pid is said once and ignored)."""
    value = environ.get(HUB_PID_ENV)
    if value is None:
        return None
    if value.isdigit() and int(value) > 1:
        return int(value)
    log.warning("%s=%r is not a process id; this agent will not end with its hub",
                HUB_PID_ENV, value)
    return None


def request_death_signal(signum: int = signal.SIGTERM) -> bool:
    """Ask the kernel for ``signum`` when this process's parent ends (Linux); False
    where it cannot (another system, or the call failed)."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        return libc.prctl(_PR_SET_PDEATHSIG, int(signum), 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


def running(pid: int) -> bool:
    """Whether process ``pid`` exists and has not ended (a zombie has ended)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True            # someone else's process: it exists
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True            # no /proc: os.kill said it exists


async def watch(pid: int, stop: Callable[[], None]) -> None:
    """Call ``stop()`` once the hub ``pid`` has ended (checked now, then every
    :data:`WATCH_S`)."""
    while running(pid):
        await asyncio.sleep(WATCH_S)
    log.warning("the hub that started this agent (pid %d) has ended; stopping with it", pid)
    stop()


def hold(stop: Callable[[], None]) -> asyncio.Task[None] | None:
    """If a hub started this agent: the death signal requested and the watch started
    (on the running loop; the caller cancels the task at shutdown). None otherwise."""
    pid = hub_pid()
    if pid is None:
        return None
    request_death_signal(signal.SIGTERM)
    return asyncio.create_task(watch(pid, stop), name="hub-lifeline")


__all__ = ["HUB_PID_ENV", "WATCH_S", "hold", "hub_pid", "request_death_signal", "running",
           "watch"]
