"""How the supervisor starts a local agent: exec'd, or forked from a warm server.

Two ways, one handle (:class:`Child`: ``pid``, ``send_signal``, ``wait``):

* :func:`exec_child` starts the agent's argv as a new program, as a shell would
  (``python -m anamnesis.agents …``): every agent pays its interpreter's imports
  and numba's start-up itself, about 1.3 s of CPU each.
* :func:`fork_child` forks it from one server process per hub, started once,
  which has imported :mod:`anamnesis.agents.preload` (numpy, numba, aiohttp, zeroconf and
  the kernels every agent runs); the child then only builds its own model. This
  is :mod:`multiprocessing`'s ``forkserver`` (the server is a fresh interpreter,
  not a fork of the hub, so it holds none of the hub's threads or sockets).
  Eight agents of the octophonic demo come up in about a third of the time.

Either way the child runs in its own session (a Ctrl-C in the hub's terminal
reaches the hub alone, which stops its agents in order), its stdout and stderr
go to its log file, its environment names the hub (:mod:`anamnesis.agents.lifeline`:
it ends when the hub does, even a hub killed with ``kill -9``), and its exit status
reads as :mod:`asyncio`'s does (the code, or minus the signal that killed it). A forked agent's process title reads as the
command it stands for (``anamnesis agent --id a3 …``), so ``ps`` and ``top`` tell
the agents apart.
"""

from __future__ import annotations

import asyncio
import importlib
import multiprocessing
import os
import signal
import sys
from collections.abc import Sequence
from typing import IO, Protocol

import setproctitle

from anamnesis.agents.lifeline import HUB_PID_ENV

#: What the agents' forkserver imports before it forks anything.
PRELOAD = ("anamnesis.agents.preload",)


class Child(Protocol):
    """A started local agent, as the supervisor sees it."""

    pid: int

    def send_signal(self, signum: int) -> None:
        """Send ``signum``; ``ProcessLookupError`` once the child is gone."""

    async def wait(self) -> int:
        """Its exit status once it exits: the code, or ``-signum``."""


class _Exec:
    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self._proc = proc
        self.pid = proc.pid

    def send_signal(self, signum: int) -> None:
        if self._proc.returncode is not None:
            raise ProcessLookupError(self.pid)
        self._proc.send_signal(signum)

    async def wait(self) -> int:
        return await self._proc.wait()


async def exec_child(argv: Sequence[str], log: IO[bytes], cwd: str | None) -> Child:
    """Start ``argv`` as a new program (its own session), output to ``log``."""
    proc = await asyncio.create_subprocess_exec(
        *argv, stdin=asyncio.subprocess.DEVNULL, stdout=log, stderr=log, cwd=cwd,
        start_new_session=True, env={**os.environ, HUB_PID_ENV: str(os.getpid())})
    return _Exec(proc)


def _context() -> multiprocessing.context.ForkServerContext:
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(list(PRELOAD))
    return ctx


def start_forkserver() -> None:
    """Start the agents' forkserver now (idempotent; it imports :data:`PRELOAD` in the
    background), so that it is warm when the first agent is forked. Blocks briefly."""
    _context()
    from multiprocessing import forkserver

    forkserver.ensure_running()


def _run_forked(entry: str, args: Sequence[str], title: str, log_path: str,
                cwd: str | None, hub_pid: int) -> None:
    """The forked child: its own session and log, then ``entry(args)`` (``module:function``,
    returning the exit status), told which hub it ends with."""
    os.setsid()
    os.environ[HUB_PID_ENV] = str(hub_pid)
    fd = os.open(log_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    for target in (1, 2):
        os.dup2(fd, target)
    os.close(fd)
    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGCHLD):
        signal.signal(signum, signal.SIG_DFL)
    if cwd is not None:
        os.chdir(cwd)
    setproctitle.setproctitle(title)
    module, _, function = entry.partition(":")
    main = getattr(importlib.import_module(module), function)
    sys.argv = [title.split(" ", 1)[0], *args]
    sys.exit(main(list(args)))


class _Forked:
    def __init__(self, proc: multiprocessing.process.BaseProcess) -> None:
        self._proc = proc
        self.pid = int(proc.pid or 0)
        self._code: int | None = None
        self._ended: asyncio.Future[int] | None = None   # shared by every waiter

    def send_signal(self, signum: int) -> None:
        if self._code is not None:
            raise ProcessLookupError(self.pid)
        os.kill(self.pid, signum)

    async def wait(self) -> int:
        if self._ended is None:
            loop = asyncio.get_running_loop()
            self._ended = loop.create_future()
            loop.add_reader(self._proc.sentinel, self._exited)
        return await asyncio.shield(self._ended)

    def _exited(self) -> None:
        """The sentinel is readable: the forkserver wrote the exit status (on the loop)."""
        assert self._ended is not None
        asyncio.get_running_loop().remove_reader(self._proc.sentinel)
        self._proc.join(1.0)            # reads the status from the sentinel
        code = self._proc.exitcode
        self._code = -signal.SIGKILL if code is None else int(code)
        self._proc.close()
        if not self._ended.done():
            self._ended.set_result(self._code)


def fork_child(entry: str, args: Sequence[str], *, title: str, log_path: str,
               cwd: str | None) -> Child:
    """Fork ``entry(args)`` from the agents' forkserver (blocking: run it on a worker).
    ``title`` names the process (``ps``); output is appended to ``log_path``."""
    proc = _context().Process(target=_run_forked, args=(entry, tuple(args), title, log_path, cwd,
                                                     os.getpid()),
                              name=title, daemon=True)
    proc.start()
    return _Forked(proc)


__all__ = ["PRELOAD", "Child", "exec_child", "fork_child", "start_forkserver"]
