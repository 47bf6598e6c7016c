"""The supervisor of local agents: real child processes, restarts, logs, SIGTERM/SIGKILL,
each test both ways a child can start (exec'd as a new program, forked from the warm
forkserver of anamnesis.hub.fleet.launcher)."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
from pathlib import Path

import pytest
from support.waiting import wait_for

from anamnesis.hub.fleet.supervisor import ChildSpec, Supervisor, agent_argv

SLEEPER = ("import signal, sys, time\n"
           "print('up', sys.argv[1], flush=True)\n"
           "print('to stderr', file=sys.stderr, flush=True)\n"
           "if sys.argv[2] == 'stubborn': signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
           "time.sleep(60)\n")




def sleeper(args: list[str]) -> int:
    """SLEEPER as a function: what a forked child runs (``fork_main``)."""
    name, mode = args
    print("up", name, flush=True)
    print("to stderr", file=sys.stderr, flush=True)
    if mode == "stubborn":
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    time.sleep(60)
    return 0


def _spec(name: str, mode: str = "polite") -> ChildSpec:
    return ChildSpec(name, (sys.executable, "-c", SLEEPER, name, mode),
                     fork_main=f"{__name__}:sleeper")


LAUNCHES = pytest.mark.parametrize("launch", ["exec", "fork"])




@LAUNCHES
async def test_restart_with_backoff_and_logs(tmp_path, launch):
    sup = Supervisor(tmp_path / "logs", backoff_s=0.2, max_backoff_s=0.8, stop_timeout_s=2.0,
                     launch=launch)
    state = sup.start(_spec("c1"))
    try:
        await wait_for(lambda: state.running and sup.log_path("c1").exists()
                        and b"up c1" in sup.log_path("c1").read_bytes(), 10.0, "first start")
        first = state.pid
        os.kill(first, signal.SIGKILL)
        killed = time.monotonic()
        await wait_for(lambda: state.starts == 2 and state.running, 10.0, "restart")
        restart_s = time.monotonic() - killed
        assert state.last_exit == -signal.SIGKILL and state.pid != first
        assert 0.2 <= restart_s < 3.0
        assert state.next_backoff_s == 0.4   # doubled after the restart
        await wait_for(lambda: sup.log_path("c1").read_text().count("to stderr") == 2, 10.0,
                        "second start's output")
        os.kill(state.pid, signal.SIGKILL)
        await wait_for(lambda: state.starts == 3 and state.running, 10.0, "second restart")
        assert state.next_backoff_s == 0.8
        await wait_for(lambda: sup.log_path("c1").read_text().count("to stderr") == 3, 10.0,
                        "third start's output")
        log_text = sup.log_path("c1").read_text()
        assert log_text.count("up c1") == 3 and log_text.count("to stderr") == 3
    finally:
        await sup.close()
    assert not state.running and state.last_exit == -signal.SIGTERM
    assert sup.children["c1"].starts == 3   # not restarted after close


@LAUNCHES
async def test_close_kills_a_child_that_ignores_sigterm(tmp_path, launch):
    sup = Supervisor(tmp_path / "logs", stop_timeout_s=0.5, launch=launch)
    polite, stubborn = sup.start(_spec("p")), sup.start(_spec("s", "stubborn"))
    await wait_for(lambda: all(b"up" in sup.log_path(n).read_bytes()
                                for n in ("p", "s") if sup.log_path(n).exists())
                    and polite.running and stubborn.running
                    and sup.log_path("s").exists() and sup.log_path("p").exists(),
                    10.0, "both up")
    # The stubborn child installs its handler after printing; give it a moment.
    await asyncio.sleep(0.2)
    t0 = time.monotonic()
    await sup.close()
    took = time.monotonic() - t0
    assert polite.last_exit == -signal.SIGTERM
    assert stubborn.last_exit == -signal.SIGKILL
    assert 0.5 <= took < 3.0


async def test_duplicate_name_refused_and_agent_argv(tmp_path):
    sup = Supervisor(tmp_path)
    sup.start(_spec("a"))
    try:
        try:
            sup.start(_spec("a"))
        except ValueError as exc:
            assert "already supervised" in str(exc)
        else:
            raise AssertionError("duplicate accepted")
    finally:
        await sup.close()
    argv = agent_argv("a3", model="unlearn", preset="unlearn1", interface="127.0.0.1",
                      installation="studio", key_file=tmp_path / "k", state_dir=tmp_path / "s",
                      model_args={"n_neurons": 24, "self_loops": True})
    assert " --model-arg n_neurons=24 --model-arg self_loops=true" in " ".join(argv)
    assert argv[:3] == (sys.executable, "-m", "anamnesis.agents")
    assert ("--id", "a3") == argv[3:5] and "--preset" in argv and str(tmp_path / "k") in argv


def quitter(args: list[str]) -> int:
    """A forked child that prints where it runs, then exits with the status it is given."""
    print("session", os.getsid(0), "pid", os.getpid(), "cwd", os.getcwd(), flush=True)
    return int(args[1])


async def test_a_forked_child_runs_in_its_own_session_with_a_title_and_its_status(tmp_path):
    sup = Supervisor(tmp_path / "logs", backoff_s=30.0, launch="fork")
    work = tmp_path / "work"
    work.mkdir()
    state = sup.start(ChildSpec("q", (sys.executable, "-m", "nothing", "q", "sleepy"),
                                cwd=str(work), fork_main=f"{__name__}:sleeper"))
    quit_state = sup.start(ChildSpec("x", (sys.executable, "-m", "nothing", "x", "3"),
                                     cwd=str(work), fork_main=f"{__name__}:quitter"))
    try:
        await wait_for(lambda: quit_state.last_exit is not None, 30.0, "the quitter's exit")
        assert quit_state.last_exit == 3 and quit_state.history == [3]
        text = sup.log_path("x").read_text()
        session, pid = (int(w) for w in text.split("session ")[1].split()[:3:2])
        assert session == pid != os.getsid(0)          # its own session: no hub's Ctrl-C
        assert f"cwd {work}" in text
        await wait_for(lambda: state.running and b"up q" in sup.log_path("q").read_bytes(),
                        30.0, "the sleeper")
        title = Path(f"/proc/{state.pid}/cmdline").read_bytes().replace(b"\0", b" ")
        assert title.startswith(b"anamnesis agent q sleepy"), title     # what ps shows
    finally:
        await sup.close()
    assert state.last_exit == -signal.SIGTERM


FLAKY = ("import os, sys, time\n"
         "open(sys.argv[1], 'a').write(f'{os.getpid()}\\n')\n"
         "time.sleep(float(sys.argv[2]))\n"
         "sys.exit(3)\n")


def flaky(args: list[str]) -> int:
    """FLAKY as a function: what a forked child runs."""
    open(args[0], "a").write(f"{os.getpid()}\n")
    time.sleep(float(args[1]))
    return 3


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:       # a zombie is dead to us (its parent has not reaped it yet)
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except OSError:
        return False


@LAUNCHES
async def test_close_racing_restarts_leaves_no_child_running(tmp_path, launch):
    """Children that exit at once and are restarted every few ms, closed at 12 moments
    after the first of them has started: every child ever started is gone when close()
    returns (a restart racing the hub's shutdown used to leave its new child running
    alone). Each round waits for a child to have started (a launcher, a loaded machine
    may take seconds), then 0, 20 … 220 ms more."""
    pids = tmp_path / "pids"
    loop = asyncio.get_running_loop()
    for i in range(12):
        before = len(pids.read_text().split()) if pids.exists() else 0
        sup = Supervisor(tmp_path / f"logs{i}", backoff_s=0.002, max_backoff_s=0.004,
                         stop_timeout_s=2.0, launch=launch)
        for n in range(3):
            sup.start(ChildSpec(f"f{n}", (sys.executable, "-c", FLAKY, str(pids),
                                          str(0.01 * (n + 1))),
                                fork_main=f"{__name__}:flaky"))
        deadline = loop.time() + 60.0
        while (len(pids.read_text().split()) if pids.exists() else 0) == before:
            assert loop.time() < deadline, f"round {i}: no child started in 60 s"
            await asyncio.sleep(0.005)
        await asyncio.sleep(0.02 * i)
        await sup.close()
        started = [int(p) for p in pids.read_text().split()]
        assert not [p for p in started if _alive(p)], (i, started)
        assert len(started) > before, i
