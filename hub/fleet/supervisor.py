"""Local agents as supervised subprocesses (config agents with ``spawn = true``).

:class:`Supervisor` owns one :class:`ChildSpec` per local agent: it starts
``python -m anamnesis.agents ...`` (the argv comes from the hub), appends the
child's stdout and stderr to ``LOG_DIR/ID.log``, restarts a child that exits
with an exponential back-off (``backoff_s`` doubling up to ``max_backoff_s``;
reset when a child stayed up ``stable_s``), and on :meth:`Supervisor.close`
sends SIGTERM to every child, then SIGKILL to those still running after
``stop_timeout_s``. Each child runs in its own session: a Ctrl-C in the hub's
terminal reaches the hub alone, which stops its agents in order.

A child whose :class:`ChildSpec` names a ``fork_main`` is forked from the agents'
warm forkserver (:func:`anamnesis.hub.fleet.launcher.fork_child`) when the supervisor was made with
``launch="fork"`` (the hub's default); otherwise, or if forking fails, its argv is
exec'd. Everything runs on the event loop; opening log files and forking go to
the supervisor's own worker thread (``anamnesis-launch``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from anamnesis.hub.fleet.launcher import Child, exec_child, fork_child, start_forkserver

log = logging.getLogger(__name__)

#: How children may be started (see :class:`Supervisor`).
LAUNCHES = ("fork", "exec")


@dataclass(frozen=True)
class ChildSpec:
    """One local agent: ``name`` (the agent id) and its full argv (``argv[0]`` the program).
    ``fork_main`` (``module:function``) says the same program can run forked as
    ``function(argv[3:])`` (for an argv ``python -m module ...``)."""

    name: str
    argv: tuple[str, ...]
    cwd: str | None = None
    fork_main: str | None = None


def agent_argv(agent_id: str, *, model: str | None = None, preset: str | None = None,
               audio: str = "null", interface: str = "127.0.0.1", installation: str = "anamnesis",
               key_file: Path | None = None, state_dir: Path | None = None,
               model_args: Mapping[str, Any] | None = None, allow: Sequence[str] = (),
               extra: Sequence[str] = ()) -> tuple[str, ...]:
    """The argv of ``python -m anamnesis.agents`` for one local agent (this interpreter);
    ``model_args`` (constructor arguments such as hidden_size) become ``--model-arg``s,
    ``allow`` (networks that may steer it besides the hub and loopback) ``--allow``s."""
    argv = [sys.executable, "-m", "anamnesis.agents", "--id", agent_id, "--audio", audio,
            "--interface", interface, "--installation", installation]
    if model:
        argv += ["--model", model]
    if preset:
        argv += ["--preset", preset]
    if key_file is not None:
        argv += ["--key-file", str(key_file)]
    if state_dir is not None:
        argv += ["--state-dir", str(state_dir)]
    for network in allow:
        argv += ["--allow", network]
    for name, value in (model_args or {}).items():
        text = str(value).lower() if isinstance(value, bool) else str(value)
        argv += ["--model-arg", f"{name}={text}"]
    return tuple(argv) + tuple(extra)


@dataclass
class ChildState:
    """The live state of one supervised child (read it, do not change it)."""

    spec: ChildSpec
    pid: int | None = None
    starts: int = 0
    last_exit: int | None = None
    running: bool = False
    next_backoff_s: float = 0.0
    started_at: float = 0.0
    history: list[int] = field(default_factory=list)   # exit codes, most recent last (≤ 20)

    def to_json(self) -> dict[str, object]:
        """JSON-ready summary."""
        return {"name": self.spec.name, "pid": self.pid, "running": self.running,
                "starts": self.starts, "last_exit": self.last_exit,
                "next_backoff_s": self.next_backoff_s}


class Supervisor:
    """Starts, restarts and stops local agents (see the module docstring).

    ``log_dir`` receives one ``NAME.log`` per child (appended across restarts);
    ``launch`` is ``"fork"`` (children with a ``fork_main`` forked warm) or ``"exec"``.
    """

    def __init__(self, log_dir: Path, *, backoff_s: float = 1.0, max_backoff_s: float = 30.0,
                 stable_s: float = 30.0, stop_timeout_s: float = 10.0,
                 launch: str = "exec", on_exit: Callable[[str], None] | None = None) -> None:
        if launch not in LAUNCHES:
            raise ValueError(f"launch must be one of {', '.join(LAUNCHES)}; got {launch!r}")
        self.launch = launch
        #: Called with a child's name when it exits on its own (not at :meth:`close`).
        self.on_exit = on_exit
        self.log_dir = Path(log_dir)
        self.backoff_s = float(backoff_s)
        self.max_backoff_s = float(max_backoff_s)
        self.stable_s = float(stable_s)
        self.stop_timeout_s = float(stop_timeout_s)
        self.children: dict[str, ChildState] = {}
        self._procs: dict[str, Child] = {}
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._closing = False
        self._closed = asyncio.Event()   # set by close(): a back-off ends at once
        self._worker: ThreadPoolExecutor | None = None
        self.fork_failures = 0

    def _executor(self) -> ThreadPoolExecutor:
        if self._worker is None:
            self._worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="anamnesis-launch")
        return self._worker

    def prepare(self) -> None:
        """Start warming the forkserver now (with ``launch="fork"``), on the worker, so the
        first agent forks warm; a no-op otherwise."""
        if self.launch == "fork":
            asyncio.get_running_loop().run_in_executor(self._executor(), self._start_forkserver)

    def _start_forkserver(self) -> None:
        try:
            start_forkserver()
        except Exception as exc:   # the first fork retries, then falls back to exec
            log.warning("the agents' forkserver could not start: %s", exc)

    def start(self, spec: ChildSpec) -> ChildState:
        """Supervise ``spec`` (started in the background); ``ValueError`` for a duplicate name."""
        if spec.name in self.children:
            raise ValueError(f"local agent {spec.name!r} is already supervised")
        state = ChildState(spec, next_backoff_s=self.backoff_s)
        self.children[spec.name] = state
        self._tasks[spec.name] = asyncio.create_task(self._keep_running(state),
                                                     name=f"supervise {spec.name}")
        return state

    def log_path(self, name: str) -> Path:
        """Where the output of child ``name`` goes."""
        return self.log_dir / f"{name}.log"

    def _open_log(self, name: str) -> IO[bytes]:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        f = open(self.log_path(name), "ab", buffering=0)  # noqa: SIM115 (closed by the task)
        f.write(f"--- {time.strftime('%Y-%m-%d %H:%M:%S')} starting {name}\n".encode())
        return f

    async def _launch(self, spec: ChildSpec, logfile: IO[bytes]) -> Child:
        """Fork ``spec`` warm if it can be, else exec its argv (``OSError`` if neither)."""
        if self.launch == "fork" and spec.fork_main is not None:
            title = "anamnesis agent " + " ".join(spec.argv[3:])
            try:
                return await asyncio.get_running_loop().run_in_executor(
                    self._executor(), lambda: fork_child(
                        spec.fork_main, spec.argv[3:], title=title, log_path=logfile.name,
                        cwd=spec.cwd))
            except Exception as exc:   # a dead forkserver: exec instead, said once
                self.fork_failures += 1
                if self.fork_failures == 1:
                    log.warning("local agent %s: cannot fork it warm (%s: %s); starting "
                                "agents as new programs", spec.name, type(exc).__name__, exc)
                self.launch = "exec"
        return await exec_child(spec.argv, logfile, spec.cwd)

    async def _keep_running(self, state: ChildState) -> None:
        loop = asyncio.get_running_loop()
        name = state.spec.name
        while not self._closing:
            logfile = await loop.run_in_executor(self._executor(), self._open_log, name)
            try:
                try:
                    proc = await self._launch(state.spec, logfile)
                except OSError as exc:
                    log.error("local agent %s: cannot start %s: %s", name, state.spec.argv[0], exc)
                    code = -1
                else:
                    if self._closing:
                        # close() began while this child was starting (a restart racing
                        # the hub's shutdown): it goes too, never left running alone.
                        await self._stop(name, proc)
                        return
                    self._procs[name] = proc
                    state.pid, state.running = proc.pid, True
                    state.starts += 1
                    state.started_at = loop.time()
                    log.info("local agent %s started (pid %d)", name, proc.pid)
                    code = await proc.wait()
                    state.running = False
                    self._procs.pop(name, None)
            finally:
                await loop.run_in_executor(self._executor(), logfile.close)
            state.last_exit = code
            state.history = (state.history + [code])[-20:]
            if self._closing:
                return
            if self.on_exit is not None:
                try:
                    self.on_exit(name)
                except Exception:   # a listener's bug must not stop the supervision
                    log.exception("local agent %s: the exit listener failed", name)
            if state.started_at and loop.time() - state.started_at >= self.stable_s:
                state.next_backoff_s = self.backoff_s
            delay = state.next_backoff_s
            state.next_backoff_s = min(delay * 2.0, self.max_backoff_s)
            log.warning("local agent %s exited with %s; restarting in %.1f s (log: %s)",
                        name, code, delay, self.log_path(name))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._closed.wait(), delay)

    async def _stop(self, name: str, proc: Child) -> None:
        """SIGTERM, then SIGKILL after ``stop_timeout_s``; returns once it is reaped."""
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(proc.wait(), self.stop_timeout_s)
        except TimeoutError:
            log.warning("local agent %s ignored SIGTERM for %.0f s; killing it",
                        name, self.stop_timeout_s)
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGKILL)
            await proc.wait()

    async def close(self) -> None:
        """Stop every child: SIGTERM, then SIGKILL after ``stop_timeout_s``; wait for all.

        No task is cancelled while it may be starting a child (a cancelled launch could
        leave that child running with nobody to stop it): each task sees the closing,
        stops a child it has just started itself, and returns; a back-off ends at once."""
        self._closing = True
        self._closed.set()
        await asyncio.gather(*(self._stop(n, p) for n, p in list(self._procs.items())))
        tasks = [t for t in self._tasks.values() if not t.done()]
        if tasks:
            _, late = await asyncio.wait(tasks, timeout=self.stop_timeout_s + 5.0)
            for task in late:       # a launch that hangs: the last resort
                task.cancel()
        for task in self._tasks.values():
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks.clear()
        if self._worker is not None:
            worker, self._worker = self._worker, None
            await asyncio.get_running_loop().run_in_executor(None, worker.shutdown)


__all__ = ["LAUNCHES", "ChildSpec", "ChildState", "Supervisor", "agent_argv"]
