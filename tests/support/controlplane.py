"""Helpers for the control-plane tests (OSC, OSCQuery, zeroconf): a UDP OSC client and peers.

Every socket here binds 127.0.0.1 and talks only to 127.0.0.1 (TESTING.md).
"""

from __future__ import annotations

import asyncio
import gc
import os
import shutil
import time
from typing import Any

import pytest
import pytest_asyncio

from anamnesis.agents.protocol.oscmap import build_message, parse_packet

LOOPBACK = "127.0.0.1"


def require_program(name: str) -> str:
    """Path of a peer program; skip locally, fail in CI (where .ci/run installs peers)."""
    path = shutil.which(name)
    if path is None:
        message = (f"{name} not installed "
                   "(Debian: apt-get install --no-install-recommends liblo-tools)")
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI must provide peers: {message}")
        pytest.skip(message)
    return path


#: Longest the event loop may be held by one callback in these tests (s).
MAX_LOOP_STALL = 0.25


@pytest.fixture(scope="session")
def warm_kernels() -> None:
    """Import every module and load (or compile) the numba kernels of every model, the
    RTP link, the routing graph and the headphone ring once, before any loop is watched:
    numba holds the GIL while it compiles, which is start-up cost, not a blocked loop."""
    import importlib

    from anamnesis.agents.net import link
    from anamnesis.hub.engine.graph import RoutingGraph
    from anamnesis.hub.monitor.headphones import StereoRing

    # Every module of the project, imported once: a first import on a test's loop (aiohttp's
    # client loads the system's certificates, the hub imports its rooms lazily) is start-up.
    for name in agent_support.project_modules():
        if not name.endswith("__main__"):
            importlib.import_module(name)

    link.warm_up()                                  # rings, jitter buffer, PCM codec
    RoutingGraph(["a", "b"], SAMPLE_RATE, BLOCK).tick(np.zeros((BLOCK, 2)))
    StereoRing(4, prime=1, high=2).warm_up()
    for kind in MODEL_KINDS:
        try:
            model = create_model(kind, seed=0, sample_rate=SAMPLE_RATE, max_block=BLOCK)
            for name, spec in model.param_specs().items():   # every parameter's setter path
                model.set_param(name, spec.default)
            engine = AgentEngine(model, block=BLOCK, sample_rate=SAMPLE_RATE)
            engine.process_block(np.zeros(BLOCK), np.zeros(BLOCK, dtype=np.float32))
        except Exception:  # the test that uses this kind reports it
            continue


class _GcClock:
    """Seconds the garbage collector has run in this process (``gc.callbacks``): a full
    collection of a test session's millions of objects takes a few hundred ms on
    whichever thread triggers it, and that is not a test blocking its loop."""

    def __init__(self) -> None:
        self.total = 0.0
        self._started = 0.0
        gc.callbacks.append(self._phase)

    def _phase(self, phase: str, info: dict) -> None:
        if phase == "start":
            self._started = time.perf_counter()
        elif self._started:
            self.total += time.perf_counter() - self._started
            self._started = 0.0


_GC = _GcClock()


def _runqueue_waits_s() -> dict[str, float]:
    """Seconds each thread of this process has spent ready to run but not running (Linux
    schedstat, by thread id: time another process held the core); empty where the
    kernel does not say."""
    waits = {}
    try:
        tids = os.listdir("/proc/self/task")
    except OSError:
        return waits
    for tid in tids:
        try:
            with open(f"/proc/self/task/{tid}/schedstat") as f:
                waits[tid] = int(f.read().split()[1]) * 1e-9
        except (OSError, IndexError, ValueError):
            continue      # the thread ended
    return waits


def _runqueue_excuse_s(before: dict[str, float], after: dict[str, float]) -> float:
    """The longest any one thread waited for a core between two :func:`_runqueue_waits_s`:
    the loop's own thread, or whichever thread held the GIL it was waiting for (a thread
    preempted while it holds the GIL stalls the loop for as long as it waits)."""
    return max((after[tid] - before.get(tid, 0.0) for tid in after), default=0.0)


_TICK_S = 1.0 / (os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100)


def processes_waited_s(pids: list[int]) -> float:
    """Seconds every thread of the processes ``pids`` has spent, in all, ready to run but
    not running (Linux schedstat): how long a busy machine kept a chain of processes that
    wait on each other (a hub and the agents it clocks) from their cores; 0 elsewhere."""
    total = 0.0
    for pid in pids:
        try:
            tids = os.listdir(f"/proc/{pid}/task")
        except OSError:
            continue
        for tid in tids:
            try:
                with open(f"/proc/{pid}/task/{tid}/schedstat") as f:
                    total += int(f.read().split()[1]) * 1e-9
            except (OSError, IndexError, ValueError):
                continue
    return total


def stolen_s() -> list[float]:
    """Seconds each virtual CPU has been stolen by the hypervisor (/proc/stat, the 8th
    column of every ``cpuN`` line): on a virtual machine the host runs other guests on
    our cores, and a thread that was "running" then did not run. Empty where not Linux."""
    try:
        with open("/proc/stat") as f:
            lines = f.read().splitlines()
    except OSError:
        return []
    steal = []
    for line in lines:
        fields = line.split()
        if fields and fields[0].startswith("cpu") and fields[0] != "cpu" and len(fields) > 8:
            steal.append(int(fields[8]) * _TICK_S)
    return steal


def steal_excuse_s(before: list[float], after: list[float]) -> float:
    """The most any one virtual CPU was stolen between two :func:`stolen_s` (s), plus one
    tick of the counters' resolution when any was."""
    worst = max((a - b for a, b in zip(after, before, strict=False)), default=0.0)
    return worst + _TICK_S if worst > 0 else 0.0


@pytest_asyncio.fixture
async def loop_watchdog(warm_kernels):
    """Fail a test during which the event loop was blocked for more than MAX_LOOP_STALL s
    (STYLE 14): a 10 ms ticker measures how late it wakes up, less the time the kernel
    kept the loop's thread (or the thread holding the GIL) waiting for a core — a busy
    machine delays the loop without anything blocking it, and that is not the test's
    fault —, less the time the hypervisor stole the cores (:func:`stolen_s`) and less
    the time the garbage collector ran (:class:`_GcClock`)."""
    loop = asyncio.get_running_loop()
    worst = [0.0]

    async def tick() -> None:
        while True:
            before, waited, collected = loop.time(), _runqueue_waits_s(), _GC.total
            stolen = stolen_s()
            await asyncio.sleep(0.01)
            late = loop.time() - before - 0.01
            excused = (_runqueue_excuse_s(waited, _runqueue_waits_s())
                       + steal_excuse_s(stolen, stolen_s()) + (_GC.total - collected))
            worst[0] = max(worst[0], late - excused)

    task = asyncio.create_task(tick())
    yield worst
    task.cancel()
    try:
        await task
    except asyncio.CancelledError:
        pass
    assert worst[0] < MAX_LOOP_STALL, f"event loop blocked for {worst[0] * 1000:.0f} ms"


class _ClientProtocol(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.queue: asyncio.Queue[bytes] = asyncio.Queue()
        #: Every (host, port) a datagram came from.
        self.senders: set[tuple[str, int]] = set()

    def datagram_received(self, data: bytes, addr: Any) -> None:
        self.senders.add((str(addr[0]), int(addr[1])))
        self.queue.put_nowait(data)


class OscTestClient:
    """A UDP OSC peer on 127.0.0.1 that sends to one agent and collects what comes back."""

    def __init__(self, transport: asyncio.DatagramTransport, protocol: _ClientProtocol,
                 target: tuple[str, int]) -> None:
        self.transport, self.protocol, self.target = transport, protocol, target

    @classmethod
    async def open(cls, port: int, local_host: str = LOOPBACK) -> OscTestClient:
        """A client socket on ``local_host`` (another 127.x address is another peer host)."""
        loop = asyncio.get_running_loop()
        transport, protocol = await loop.create_datagram_endpoint(
            _ClientProtocol, local_addr=(local_host, 0))
        return cls(transport, protocol, (LOOPBACK, port))  # type: ignore[arg-type]

    @property
    def port(self) -> int:
        return int(self.transport.get_extra_info("sockname")[1])

    def send(self, address: str, *args: object) -> None:
        self.transport.sendto(build_message(address, args), self.target)

    def send_raw(self, data: bytes) -> None:
        self.transport.sendto(data, self.target)

    async def recv(self, timeout: float = 2.0) -> list[tuple[str, list[object]]]:
        """The messages of the next datagram (a bundle gives several)."""
        data = await asyncio.wait_for(self.protocol.queue.get(), timeout)
        return parse_packet(data)

    async def recv_one(self, timeout: float = 2.0) -> tuple[str, list[object]]:
        messages = await self.recv(timeout)
        assert len(messages) == 1, messages
        return messages[0]

    async def request(self, address: str, *args: object,
                      timeout: float = 2.0) -> tuple[str, list[object]]:
        self.send(address, *args)
        return await self.recv_one(timeout)

    async def request_all(self, address: str, *args: object,
                          timeout: float = 2.0) -> list[tuple[str, list[object]]]:
        self.send(address, *args)
        return await self.recv(timeout)

    async def expect(self, address: str, timeout: float = 2.0) -> list[object]:
        """Skip other traffic (telemetry) until a message to ``address`` arrives; its args."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            for got, args in await self.recv(max(0.0, deadline - loop.time())):
                if got == address:
                    return args

    def drain(self) -> int:
        n = 0
        while not self.protocol.queue.empty():
            self.protocol.queue.get_nowait()
            n += 1
        return n

    def close(self) -> None:
        self.transport.close()


# ---------------------------------------------------------------------------
# Real agents: in this process (to read the services' counters) or as processes
# ---------------------------------------------------------------------------

import contextlib  # noqa: E402
from collections.abc import AsyncIterator  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

from anamnesis.agents.audio.backends import NullBackend
from anamnesis.agents.control import AgentControl  # noqa: E402
from anamnesis.agents.dsp.engine import AgentEngine
from anamnesis.agents.models import create_model  # noqa: E402
from anamnesis.agents.snapshots import SnapshotStore  # noqa: E402
from support import agents as agent_support  # noqa: E402

SAMPLE_RATE = 48_000
BLOCK = 256
#: Model kinds whose control plane the tests exercise.
MODEL_KINDS = ("autoregnn", "autoregnn2", "unlearn")


def _sine_source(frequency: float = 200.0, amplitude: float = 0.5):
    phase = [0.0]
    step = 2.0 * np.pi * frequency / SAMPLE_RATE

    def fill(mic: np.ndarray) -> None:
        n = len(mic)
        mic[:] = amplitude * np.sin(phase[0] + step * np.arange(n))
        phase[0] = (phase[0] + step * n) % (2.0 * np.pi)
    return fill


@contextlib.asynccontextmanager
async def running_agent(state_dir: Path, kind: str = "autoregnn",
                        agent_id: str = "t1") -> AsyncIterator:
    """A real AgentControl over a real model, engine and null clock (fed a 200 Hz sine),
    with a snapshot store in ``state_dir``; the clock is stopped on exit."""
    loop = asyncio.get_running_loop()

    def build() -> AgentEngine:
        # Off the loop: numba loads (or compiles) the kernels on the first block.
        model = create_model(kind, seed=0, sample_rate=SAMPLE_RATE, max_block=BLOCK)
        warm = AgentEngine(create_model(kind, seed=0, sample_rate=SAMPLE_RATE, max_block=BLOCK),
                           block=BLOCK, sample_rate=SAMPLE_RATE)
        warm.process_block(np.zeros(BLOCK), np.zeros(BLOCK, dtype=np.float32))
        return AgentEngine(model, block=BLOCK, sample_rate=SAMPLE_RATE)

    engine = await loop.run_in_executor(None, build)
    store = SnapshotStore(state_dir, agent_id=agent_id, model_kind=kind)
    await loop.run_in_executor(None, store.open)
    backend = NullBackend(engine, source=_sine_source())
    control = AgentControl(engine, agent_id=agent_id, store=store, backend_stats=backend.stats)
    engine.attach_loop(loop)
    backend.start()
    try:
        yield control
    finally:
        await loop.run_in_executor(None, backend.stop)
        store.close()


class AgentProcess(agent_support.AgentProcess):
    """``python -m anamnesis.agents ... --audio null --interface 127.0.0.1`` as a child process."""

    agent_id: str

    @classmethod
    async def start(cls, state_dir: Path, *, agent_id: str = "p1", model: str = "autoregnn",
                    extra: tuple[str, ...] = ("--no-announce",),
                    timeout: float = 60.0) -> AgentProcess:
        agent = await agent_support.spawn(
            "--id", agent_id, "--model", model, "--audio", "null", "--interface", LOOPBACK,
            "--state-dir", str(state_dir), "--log-level", "warning", *extra, factory=cls)
        agent.agent_id = agent_id
        try:
            await agent.ready(timeout)
        except TimeoutError:
            agent.kill()
            await agent.wait()
            raise AssertionError(f"agent {agent_id} not ready within {timeout} s") from None
        return agent


@contextlib.asynccontextmanager
async def served_agent(state_dir: Path, kind: str = "autoregnn") -> AsyncIterator:
    """:func:`running_agent` with its control services (OSC and OSCQuery on 127.0.0.1,
    not announced) and an OSC client: (control, services, client)."""
    from anamnesis.agents.net.services import start_control_services

    async with running_agent(state_dir, kind) as control:
        services = await start_control_services(
            control, interface=LOOPBACK, osc_port=0, http_port=0, installation="test",
            key=None, announce=False)
        client = await OscTestClient.open(services.osc_port)
        try:
            yield control, services, client
        finally:
            client.close()
            await services.close()
