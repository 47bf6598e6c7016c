"""Simulated mode, live: the hub is the clock and drives its local agents in lockstep.

:class:`SimulatedDriver` runs, on the event loop, the loop that
:mod:`anamnesis.hub.engine.graph` describes::

    inputs = graph.tick(outputs)          # block k's inputs from block k-1's outputs
    outputs = await clock.step(inputs)    # every agent processes block k (RTP, anamnesis.hub.clock.lockstep)

paced at real time (one ``block / sample_rate`` per step, so the piece can be
heard and watched live). The agents are the config's agents, in config order,
started with ``--audio hub`` (:class:`anamnesis.hub.core.hub.Hub` does that in simulated
mode); their RTP ports come from their zeroconf records.

* Only online, adopted agents with an RTP port are driven, by one
  :class:`~anamnesis.hub.clock.lockstep.HubClock` on one socket for the driver's life (an
  agent answers only the hub port it is clocked by); the set is updated when it
  changes. An agent that misses a block's timeout is bypassed from the next block on
  (it fades out, and the others never wait for it again until it answers), long
  before the registry calls it offline; its edges fade out
  (``graph.set_agent_online``) and back in when it answers; a returning agent resumes
  its routes.
* Route edits reach the graph with :meth:`SimulatedDriver.set_routes` (new edges
  fade in, changed ones glide, removed ones fade out — anamnesis.hub.engine.graph's smoothing).
* If the loop falls more than ``max_lag_s`` behind real time (a suspended
  laptop), it resynchronises instead of racing to catch up. Its speed is measured
  (:class:`~anamnesis.hub.clock.pacing.BlockPacer`): while it is *overloaded* the
  scopes and spectra are shed (the tap is skipped) and ``on_overload`` tells the hub,
  once when it starts and once when it ends.
* Panic (``panicked``, set by the hub at once): the routes, the sources and the room
  carry silence to the agents until unpanic (the agents silence their own speakers).
* The first block waits until *every* agent of the graph is driven and
  ``ready(agent_id)`` (the hub: its parameters were sent), so a rehearsal
  starts from a known state: with fresh agents and the same seeds, the same
  piece (a deterministic start; later rebuilds are not).
* The room (``room`` and ``agents`` given: a config's ``[room]`` and its agents):
  every block, each agent's mic is the room's response to every speaker's previous
  block plus its self-noise (:class:`anamnesis.hub.engine.coupling.RoomCoupling`), added to its
  input by the graph; the listener's ears come from the same convolution. The
  responses are computed on a worker before the first block (cached on disk in
  ``cache_dir``) and again after every :meth:`SimulatedDriver.update_room` (a
  moved speaker, mic or listener, a new room), then swapped in between two blocks
  with a one-block crossfade; ``on_room`` (if set) is called when a recomputation
  starts and ends (``room_recomputing``, ``responses_ms``).
* Scopes: with ``tap`` set (a :class:`anamnesis.hub.monitor.scopes.ScopeTap`), every block of the
  driven agents' outputs goes to it as well; with ``listen`` set (a
  :class:`anamnesis.hub.monitor.listen.ListenTap`), every block of every agent's output and the
  listener's ears (one block behind the speakers: they hear the previous block),
  levelled and limited by :class:`anamnesis.hub.engine.coupling.ListenerPreview`.
* Recording (:meth:`SimulatedDriver.record_start`): every agent's output, one
  channel each in graph order, as it comes back from the clock (after the agents'
  safety chains and L24), written to a float64 WAV by one writer on the executor.

The graph's kernel is loaded (or compiled) on the executor before the first step.
Counters: ``steps``, ``resyncs``, ``rebuilds`` and the clock's per-agent stats.
"""

from __future__ import annotations

import asyncio
import importlib
import logging
import shutil
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from anamnesis.agents.net.tasks import cancel_and_wait
from anamnesis.hub.clock.driver import routes_to_edges
from anamnesis.hub.clock.lockstep import HubClock
from anamnesis.hub.clock.pacing import (
    BlockPacer,
    OverloadHook,
    PacedLoop,
    pace_stats,
    start_loop_task,
)
from anamnesis.hub.engine.graph import RoutingGraph

log = logging.getLogger(__name__)


class SimulatedDriver(PacedLoop):
    """Drives ``graph``'s agents through a :class:`HubClock` (see the module docstring).

    ``registry`` is the hub's :class:`anamnesis.hub.fleet.discovery.AgentRegistry`; ``interface`` the
    hub's address; ``timeout_s`` how long a step waits for the slowest agent (s).
    """

    def __init__(self, graph: RoutingGraph, registry: Any, *, interface: str,
                 timeout_s: float = 0.05, max_lag_s: float = 0.5,
                 ready: Callable[[str], bool] | None = None, room: Any = None,
                 agents: Sequence[Any] = (), seed: int = 0,
                 cache_dir: Path | None = None) -> None:
        self.graph = graph
        self.registry = registry
        self.interface = interface
        self.timeout_s = float(timeout_s)
        self.max_lag_s = float(max_lag_s)
        self.ready = ready or (lambda agent_id: True)
        self.started = False         # the first block was sent
        self.tap: Any = None         # anamnesis.hub.monitor.scopes.ScopeTap: every block of outputs, if set
        self.listen: Any = None      # anamnesis.hub.monitor.listen.ListenTap: outputs and ears, if set
        self.on_room: Callable[[], None] | None = None
        self.coupling: Any = None    # anamnesis.hub.engine.coupling.RoomCoupling once computed
        self.room_recomputing = False
        self.responses_ms: float | None = None
        self.room_failures = 0
        self._room_request: tuple[Any, tuple[Any, ...]] | None = None
        self._room_task: asyncio.Task[None] | None = None
        self._seed = int(seed)
        self._cache_dir = cache_dir
        if room is not None:
            if len(agents) != graph.n_agents:
                raise ValueError("the room needs every agent of the graph, in graph order")
            self._room_request = (room, tuple(agents))
        self._recorder: _Recorder | None = None
        self.block = graph.max_block
        self.sample_rate = graph.sample_rate
        n = graph.n_agents
        self._outputs = np.zeros((self.block, n))
        self._inputs = np.zeros((self.block, n))
        self._mics = np.zeros((self.block, n))
        self._ears = np.zeros((self.block, 2))
        from anamnesis.hub.engine.coupling import ListenerPreview

        self._preview = ListenerPreview(self.sample_rate, self.block)
        self._clock: HubClock | None = None
        self._driven: tuple[tuple[str, str, int], ...] = ()   # (agent id, host, rtp port)
        self._task: asyncio.Task[None] | None = None
        self.steps = 0
        self._pacer = BlockPacer(self.block / self.sample_rate, max_lag_s,
                                 on_overload=self._overload)
        #: ``on_overload(overloaded, speed, cpu)`` (the hub's), see :mod:`.pacing`.
        self.on_overload: OverloadHook | None = None
        #: True after the hub's panic: the routes carry silence until unpanic.
        self.panicked = False
        self.rebuilds = 0

    def set_routes(self, routes: dict[str, dict[str, Any]]) -> list[str]:
        """Make the graph's edges the hub's routes between agents it drives; returns the
        ids of routes left out (an agent the graph does not have)."""
        edges, skipped = routes_to_edges(self.graph.agent_ids, routes)
        self.graph.set_edges(edges)
        return skipped

    def _wanted(self) -> tuple[tuple[str, str, int], ...]:
        out = []
        for agent_id in self.graph.agent_ids:
            entry = self.registry.get(agent_id)
            if entry is not None and entry.adopted and entry.online and entry.rtp_port \
                    and self.ready(agent_id):
                out.append((agent_id, entry.host, entry.rtp_port))
        return tuple(out)

    async def _rebuild(self, wanted: tuple[tuple[str, str, int], ...]) -> None:
        now = {a for a, _, _ in wanted}
        for agent_id in self.graph.agent_ids:
            if self.graph.is_online(agent_id) != (agent_id in now):
                self.graph.set_agent_online(agent_id, agent_id in now)
        self._driven = wanted
        self._outputs[:] = 0.0
        if wanted:
            agents = [(h, p) for _, h, p in wanted]
            if self._clock is None:   # one socket for the driver's life: agents keep their hub
                self._clock = HubClock(agents, block=self.block, sample_rate=self.sample_rate,
                                       interface=self.interface, timeout_s=self.timeout_s)
                await self._clock.open()
            else:
                self._clock.set_agents(agents)
        self.rebuilds += 1
        log.info("simulated mode: driving %s", ", ".join(sorted(now)) or "no agent")

    def _follow_absences(self) -> None:
        """An agent the clock stopped waiting for fades out of the routes, and back in
        when it answers again (before the registry even calls it offline)."""
        assert self._clock is not None
        for (agent_id, _, _), peer in zip(self._driven, self._clock.peers, strict=True):
            if self.graph.is_online(agent_id) == peer.absent:
                self.graph.set_agent_online(agent_id, not peer.absent)

    @property
    def resyncs(self) -> int:
        """Times the loop fell more than ``max_lag_s`` behind and restarted its clock."""
        return self._pacer.resyncs

    def update_room(self, room: Any, agents: Sequence[Any]) -> None:
        """A new room (a config ``[room]``, or None for none) or new positions of
        ``agents`` (config order): recomputed on a worker, then crossfaded in. Changes
        arriving during a recomputation are coalesced (the latest wins)."""
        if len(agents) != self.graph.n_agents:
            raise ValueError("the room needs every agent of the graph, in graph order")
        self._room_request = (room, tuple(agents))
        if self._task is not None and not self.room_recomputing:   # else the running one takes it
            self.room_recomputing = True
            self._room_task = asyncio.create_task(self._recompute(), name="hub-room-responses")

    def _room_changed(self) -> None:
        if self.on_room is not None:
            try:
                self.on_room()
            except Exception:
                log.exception("the room listener failed")

    async def _recompute(self) -> None:
        """Compute pending room responses on a worker and swap them in (on the loop)."""
        from anamnesis.hub.engine.coupling import RoomCoupling, compute_responses

        loop = asyncio.get_running_loop()
        while self._room_request is not None:
            room, agents = self._room_request
            self._room_request = None
            self.room_recomputing = True
            self._room_changed()
            t0 = loop.time()
            try:
                if room is None:
                    if self.coupling is not None:
                        zeros = np.zeros((self.graph.n_agents + 2, self.graph.n_agents,
                                          self.coupling.convolver.ir_len))
                        self.coupling.swap(await loop.run_in_executor(
                            None, self.coupling.prepare, zeros))
                        self.coupling.set_noise_db(-200.0)
                elif self.coupling is None:
                    self.coupling = await loop.run_in_executor(
                        None, lambda room=room, agents=agents: RoomCoupling(
                            room, agents, sample_rate=self.sample_rate, block=self.block,
                            seed=self._seed, cache_dir=self._cache_dir))
                else:
                    coupling = self.coupling

                    def prepare(room=room, agents=agents, coupling=coupling
                                ) -> tuple[np.ndarray, np.ndarray]:
                        irs = compute_responses(room, agents, self.sample_rate,
                                                cache_dir=self._cache_dir)
                        return coupling.prepare(irs)
                    coupling.swap(await loop.run_in_executor(None, prepare))
                    coupling.set_noise_db(room.mic_noise_db)
                self.responses_ms = (loop.time() - t0) * 1000.0
                log.info("room responses ready in %.0f ms", self.responses_ms)
            except Exception:   # keep the responses we have; the piece plays on
                self.room_failures += 1
                log.exception("room responses could not be computed; keeping the previous ones")
            finally:
                self.room_recomputing = self._room_request is not None
                self._room_changed()

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        if self._room_request is not None:   # the first responses, before the first block
            await self._recompute()
            # The responses may have come from the disk cache: import the room model now,
            # not at the first move (its import holds the loop up for most of a second).
            await loop.run_in_executor(None, importlib.import_module, "pyroomacoustics")
        # Load (or compile) the routing kernel off the loop with a throwaway graph.
        warm = RoutingGraph(self.graph.agent_ids, self.sample_rate, self.block)
        await loop.run_in_executor(None, warm.tick, np.zeros((self.block, warm.n_agents)))
        columns = {a: i for i, a in enumerate(self.graph.agent_ids)}
        while not self.started:   # a known start: every agent there and set up
            if len(self._wanted()) == self.graph.n_agents:
                self.started = True
            else:
                await asyncio.sleep(0.05)
        while True:
            wanted = self._wanted()
            if wanted != self._driven:
                await self._rebuild(wanted)
            coupling = self.coupling
            if coupling is not None:
                coupling.process(self._outputs, self._mics, self._ears)
                self._preview.process(self._ears)
                self.graph.tick(self._outputs, out=self._inputs, mics=self._mics)
            else:
                self.graph.tick(self._outputs, out=self._inputs)
            if self.panicked:       # the routes and the room carry nothing to the agents
                self._inputs.fill(0.0)
            driving = self._clock is not None and bool(self._driven)
            if driving:
                idx = [columns[a] for a, _, _ in self._driven]
                result = await self._clock.step(self._inputs[:, idx].T)
                self._outputs[:] = 0.0
                self._outputs[:, idx] = result.T
                self._follow_absences()
            if self._recorder is not None:
                self._recorder.add(self._outputs)
            if self.tap is not None and not self._pacer.overloaded and driving:
                self.tap.add(self._outputs, idx)
            if self.listen is not None:
                self.listen.add(self._outputs, self._ears if coupling is not None else None)
            self.steps += 1
            await self._pacer.wait()

    def start(self) -> None:
        """Start driving in the background."""
        if self._task is None:
            self._task = start_loop_task(self._run(), name="hub-simulated-clock",
                                         what="simulated mode: the hub clock")

    def record_start(self, path: Path, max_seconds: float = 3600.0) -> None:
        """Record every agent's output to ``path`` (WAV, float64, one channel per agent in
        graph order) for at most ``max_seconds`` s; ``RuntimeError`` if already recording,
        ``OSError`` if the file cannot be made."""
        if self._recorder is not None:
            raise RuntimeError(f"already recording to {self._recorder.path}")
        recorder = _Recorder(Path(path), self.sample_rate, self.graph.n_agents,
                             int(max_seconds * self.sample_rate))
        recorder.start()
        self._recorder = recorder

    async def record_stop(self) -> dict[str, Any]:
        """Stop recording; waits until the file is complete. Its path, frames and seconds."""
        recorder, self._recorder = self._recorder, None
        if recorder is None:
            raise RuntimeError("not recording")
        return await recorder.stop()

    @property
    def recording(self) -> str | None:
        """The file being recorded, or None."""
        return None if self._recorder is None else str(self._recorder.path)

    @property
    def recording_error(self) -> str | None:
        """Why the recording in progress stopped writing (a full disk), or None."""
        return None if self._recorder is None else self._recorder.error

    def stats(self) -> dict[str, Any]:
        """Steps, resyncs, rebuilds, the driven agents and the clock's counters."""
        out: dict[str, Any] = {"steps": self.steps, "resyncs": self.resyncs,
                               "rebuilds": self.rebuilds,
                               "driven": [a for a, _, _ in self._driven],
                               **pace_stats(self._pacer)}
        if self._clock is not None and self._driven:
            out["agents"] = dict(zip(out["driven"], self._clock.stats(), strict=False))
            out["rtt_ms"] = self._clock.rtt_ms()
        return out

    async def close(self) -> None:
        """Stop driving (the agents then run free on silence, anamnesis.agents.audio.hubclock)."""
        await cancel_and_wait(self._room_task)
        self._room_task = None
        await cancel_and_wait(self._task)
        self._task = None
        if self._clock is not None:
            self._clock.close()
            self._clock = None
        if self._recorder is not None:
            await self.record_stop()


class _Recorder:
    """Blocks handed over on the loop, written to a WAV by one task on the executor.

    The file is opened by :meth:`start` (a disk that refuses it is an ``OSError`` then,
    not a silent failure later); ``add`` copies a block into a bounded queue (about 10 s
    of audio); if the disk cannot keep up, blocks are dropped and counted rather than
    stalling the clock. A write that fails (a full disk) ends the writing, not the
    recording: ``error`` says why, later blocks are dropped, and :meth:`stop` still
    returns (the file keeps what was written).
    """

    def __init__(self, path: Path, sample_rate: int, channels: int, max_frames: int) -> None:
        self.path, self.sample_rate, self.channels = path, sample_rate, channels
        self.max_frames = max_frames
        self.frames = 0
        self.dropped = 0
        self.error: str | None = None
        self._queue: asyncio.Queue[np.ndarray | None] = asyncio.Queue(maxsize=2048)
        self._task: asyncio.Task[None] | None = None
        self._file: Any = None

    def start(self) -> None:
        import soundfile as sf

        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._file = sf.SoundFile(self.path, "w", samplerate=self.sample_rate,
                                      channels=self.channels, subtype="DOUBLE")
        except (OSError, RuntimeError) as exc:   # soundfile's errors are RuntimeErrors
            raise OSError(f"cannot record to {self.path.name}: {exc}") from None
        self._task = asyncio.create_task(self._write(), name="hub-record")

    def add(self, block: np.ndarray) -> None:
        if self.frames >= self.max_frames or self.error is not None:
            self.dropped += self.error is not None
            return
        block = block[: self.max_frames - self.frames]
        try:
            self._queue.put_nowait(block.copy())
            self.frames += len(block)
        except asyncio.QueueFull:
            self.dropped += 1

    async def _write(self) -> None:
        loop = asyncio.get_running_loop()
        f = self._file
        try:
            while (block := await self._queue.get()) is not None:
                if self.error is not None:
                    continue            # drained, so that stop() never waits on a full queue
                try:
                    await loop.run_in_executor(None, f.write, block)
                except (OSError, RuntimeError) as exc:   # libsndfile says "System error."
                    self.error = f"writing {self.path.name} failed: {exc} ({_free(self.path)})"
                    self.frames -= len(block)
                    log.error("recording: %s; recording no more (the file keeps what was "
                              "written)", self.error)
        finally:
            try:
                await loop.run_in_executor(None, f.close)
            except (OSError, RuntimeError) as exc:
                self.error = self.error or f"closing {self.path.name} failed: {exc}"

    async def stop(self) -> dict[str, Any]:
        await self._queue.put(None)
        if self._task is not None:
            await self._task
        return {"path": str(self.path), "frames": self.frames,
                "seconds": self.frames / self.sample_rate, "dropped_blocks": self.dropped,
                "error": self.error}


def _free(path: Path) -> str:
    """How much room the disk of ``path`` has left, said for a person."""
    try:
        free = shutil.disk_usage(path.parent).free
    except OSError as exc:
        return f"its disk cannot be read: {exc}"
    return "its disk is full" if free < 1 << 20 else f"its disk has {free / 1e6:.0f} MB free"


__all__ = ["SimulatedDriver"]
