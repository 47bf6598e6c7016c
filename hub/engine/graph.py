"""The routing graph: a pure, block-based engine that turns agents' outputs into their inputs.

Shared by every mode (DESIGN "The hub"; STYLE 1, 2, 5, 9): the simulated room's
lockstep, the offline rehearsal and the deployed hub all call the same
:meth:`RoutingGraph.tick`. It owns no socket, thread or file; the class
validates, allocates once (the constructor is *prepare*), and keeps the
bookkeeping; one numba kernel (:mod:`anamnesis.hub.engine.graph_kernel`) does
the per-sample work over explicit state arrays. Nothing is allocated per block (``tick`` with ``out`` given).

What it computes
----------------
Each agent's input is ``Σ edges into it + Σ sources aimed at it (+ its simulated
mic, passed in by the room)``. An **edge** carries one agent's output to another's
input through a delay, a high-pass, a low-pass, a gain and an optional ``tanh``
shape (gain before tanh: a safe default for feedback rings); a **ring** is
shorthand for the edges a -> b -> ... -> a; a **source** is a generator added to
its targets' inputs (:mod:`anamnesis.hub.engine.sources`). The kernel's module
describes the per-sample chain, the smoothing of every change (STYLE 5) and why
any split into ticks gives bit-identical inputs.

Timeline and latency (the convention)
-------------------------------------
The graph runs on the agents' *input* timeline: sample m is the m-th sample every
agent hears. An edge delay of d samples means ``input[m]`` gets
``output[m - d]``. ``tick(outputs)`` is handed outputs that are already
``latency`` samples old: the call that computes input samples [m, m + F)
receives the outputs of samples [m - L, m - L + F), L = ``latency``. So an
edge reads its history ``d - L`` samples back; a delay shorter than L cannot
be honoured and is heard as L (:meth:`RoutingGraph.edge_info` reports the
effective delay).

*Lockstep* (simulated mode, the default): L = one block. The hub runs::

    outputs = np.zeros((B, n))                  # the silence before t = 0
    for k in range(blocks):
        inputs = graph.tick(outputs, out=inputs)  # block k's inputs, from block k-1's outputs
        for i, agent in enumerate(agents):
            agent.process(inputs[:, i], out=outputs[:, i])   # block k

so every edge, and every feedback cycle, has at least one block of latency —
exactly SuperCollider's ``LocalIn``/``LocalOut``. ``delay_ms = 0`` means "as
soon as the clock allows": one block. Sources and mics are on the input
timeline: a source starting at 0 s is heard in block 0.

*Deployed* (L = 0): the hub routes each block received from the agents'
jitter buffers and sends it on at once; the network and the sound cards add
their own latency, the edge delay comes on top. A feedback cycle whose edges
all have zero delay is refused there: its loop time would be whatever the
network's jitter makes it.

Threads: the graph is not locked. Control methods (``add_edge`` ...) and
``tick`` must be called from the same thread (the hub drains its command queue
there, STYLE 6). The kernel releases the GIL.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, fields, replace
from typing import Any

import numpy as np

from anamnesis.hub.engine import graph_kernel as K
from anamnesis.hub.engine.sources import (
    SOURCE_CHUNK,
    Signal,
    SourceBank,
    fade_step,
    make_source_signal,
)
from anamnesis.hub.installation.config import MODES, Envelope
from anamnesis.hub.installation.edges import (
    Edge,
    edge_problems,
    edge_set_problems,
    expand_ring,
    is_finite_number,
    ring_edge_id,
)

#: Default time (s) for lags, crossfades and fades.
DEFAULT_LAG_S = 0.05
_HP_PARK_HZ = 20.0   # where a switched-off high-pass keeps tracking (no dip when it comes back)


@dataclass
class _EdgeSlot:
    slot: int
    edge: Edge


def _build_problems(ids: list[str], sample_rate: Any, max_block: Any, max_delay_s: Any, mode: Any,
                    latency: Any, lag_s: Any, crossfade_s: Any, capacity: Any, max_edges: Any,
                    max_sources: Any) -> list[str]:
    """Every problem of a routing graph's construction arguments (empty when fine)."""
    problems: list[str] = []
    if len(set(ids)) != len(ids):
        problems.append(f"agent ids must be unique; got {ids}")
    if not all(isinstance(a, str) and a for a in ids):
        problems.append("agent ids must be non-empty strings")
    if not (isinstance(sample_rate, (int, np.integer)) and 1000 <= sample_rate <= 768000):
        problems.append(f"sample_rate must be a whole number of Hz in [1000, 768000]; got {sample_rate!r}")
    if not (isinstance(max_block, (int, np.integer)) and 1 <= max_block <= 1 << 16):
        problems.append(f"max_block must be a whole number of frames in [1, 65536]; got {max_block!r}")
    if not (is_finite_number(max_delay_s) and 0.0 <= max_delay_s <= 60.0):
        problems.append(f"max_delay_s must be in [0, 60] s; got {max_delay_s!r}")
    if mode not in MODES:
        problems.append(f"mode must be one of {', '.join(MODES)}; got {mode!r}")
    for name, value in (("lag_s", lag_s), ("crossfade_s", crossfade_s)):
        if not (is_finite_number(value) and 0.0 <= value <= 10.0):
            problems.append(f"{name} must be in [0, 10] s; got {value!r}")
    if not (isinstance(capacity, int) and len(ids) <= capacity <= 4096 and capacity >= 1):
        problems.append(f"max_agents must be in [max(1, {len(ids)}), 4096]; got {capacity!r}")
    for name, value in (("max_edges", max_edges), ("max_sources", max_sources)):
        if not (isinstance(value, int) and 1 <= value <= 1 << 16):
            problems.append(f"{name} must be a whole number in [1, 65536]; got {value!r}")
    if latency is not None and not (isinstance(latency, (int, np.integer)) and 0 <= latency <= 1 << 16):
        problems.append(f"latency must be a whole number of samples >= 0; got {latency!r}")
    return problems


class RoutingGraph:
    """Routes agents' outputs to their inputs through edges and sources (see the module docstring).

    ``agent_ids`` name the columns of ``tick``'s arrays, in order;
    ``sample_rate`` Hz; ``max_block`` the most frames per ``tick``;
    ``max_delay_s`` the longest edge delay (s). ``mode`` "simulated" |
    "deployed"; ``latency`` (samples) how old the outputs handed to ``tick``
    are (default: ``max_block`` when simulated — the lockstep's one block —,
    0 when deployed). ``lag_s``, ``crossfade_s`` (s): parameter lag and delay
    crossfade times. ``max_agents``, ``max_edges``, ``max_sources``: capacity
    allocated now (agents may be added later up to ``max_agents``).
    """

    def __init__(self, agent_ids: Sequence[str], sample_rate: int, max_block: int,
                 max_delay_s: float = 2.0, *, mode: str = "simulated", latency: int | None = None,
                 lag_s: float = DEFAULT_LAG_S, crossfade_s: float = DEFAULT_LAG_S,
                 max_agents: int | None = None, max_edges: int = 512,
                 max_sources: int = 16) -> None:
        ids = list(agent_ids)
        capacity = len(ids) if max_agents is None else max_agents
        problems = _build_problems(ids, sample_rate, max_block, max_delay_s, mode, latency, lag_s,
                                   crossfade_s, capacity, max_edges, max_sources)
        if problems:
            raise ValueError("cannot build the routing graph:\n  " + "\n  ".join(problems))

        self.sample_rate = int(sample_rate)
        self.max_block = int(max_block)
        self.max_delay_s = float(max_delay_s)
        self.mode = mode
        self.latency = int(latency if latency is not None else (max_block if mode == "simulated" else 0))
        self.lag_s = float(lag_s)
        self.crossfade_s = float(crossfade_s)
        self._ids: list[str] = ids
        self._index = {a: i for i, a in enumerate(ids)}
        self.max_agents = capacity
        self._lag_c = K._lag_coefficient(self.lag_s, self.sample_rate)
        self._xf_step = 1.0 if self.crossfade_s <= 0 else 1.0 / (self.crossfade_s * self.sample_rate)

        history = K._next_pow2(math.ceil(self.max_delay_s * self.sample_rate) + 2 + self.max_block)
        self._hist = np.zeros((capacity, max(history, 2)))
        self._clock = np.zeros(1, dtype=np.int64)
        self._counters = np.zeros(1, dtype=np.int64)
        self._ei = np.zeros((max_edges, 3), dtype=np.int64)
        self._ep = np.zeros((max_edges, K._N_P))
        self._es = np.zeros((max_edges, K._N_S))
        self._edges: dict[str, _EdgeSlot] = {}
        self._draining: set[int] = set()
        self._n_edges = 0
        self._offline: set[str] = set()
        self._bank = SourceBank(self._index, capacity, max_sources, self.max_block, self.sample_rate)
        self._no_mics = np.zeros((0, 0))

    # --- agents -------------------------------------------------------------------

    @property
    def agent_ids(self) -> tuple[str, ...]:
        """The agents, in the column order of ``tick``'s arrays."""
        return tuple(self._ids)

    @property
    def n_agents(self) -> int:
        """Number of agents (columns)."""
        return len(self._ids)

    def add_agent(self, agent_id: str) -> int:
        """Add an agent (a new last column); returns its column. ValueError when full or known."""
        if not isinstance(agent_id, str) or not agent_id:
            raise ValueError(f"agent id must be a non-empty string; got {agent_id!r}")
        if agent_id in self._index:
            raise ValueError(f"agent {agent_id!r} is already in the graph")
        if len(self._ids) >= self.max_agents:
            raise ValueError(f"the routing graph is full ({self.max_agents} agents): "
                             "build a new one with a larger max_agents")
        column = len(self._ids)
        self._hist[column] = 0.0
        self._bank.clear_column(column)
        self._ids.append(agent_id)
        self._index[agent_id] = column
        return column

    def set_agent_online(self, agent_id: str, online: bool, fade_s: float = DEFAULT_LAG_S) -> None:
        """Fade every edge from or to ``agent_id`` out (offline) or back in (online) over
        ``fade_s`` seconds; the edges are kept, so a returning agent resumes its routes."""
        self._column(agent_id)
        step = self._fade_step(fade_s)
        if online:
            self._offline.discard(agent_id)
        else:
            self._offline.add(agent_id)
        for entry in self._edges.values():
            if agent_id in (entry.edge.source, entry.edge.target):
                self._ep[entry.slot, K._P_ENSTEP] = step
                self._ep[entry.slot, K._P_EN] = 1.0 if self._edge_online(entry.edge) else 0.0

    def is_online(self, agent_id: str) -> bool:
        """False after ``set_agent_online(agent_id, False)``."""
        self._column(agent_id)
        return agent_id not in self._offline

    def _edge_online(self, edge: Edge) -> bool:
        return edge.source not in self._offline and edge.target not in self._offline

    def _column(self, agent_id: str) -> int:
        try:
            return self._index[agent_id]
        except KeyError:
            raise ValueError(f"unknown agent {agent_id!r}; agents: {', '.join(self._ids)}") from None

    def _fade_step(self, fade_s: float) -> float:
        return fade_step(fade_s, self.sample_rate)

    # --- validation ---------------------------------------------------------------

    def check_edge(self, edge_id: str, edge: Edge) -> list[str]:
        """Every problem of one edge on its own (empty list when fine)."""
        return edge_problems(edge_id, edge, agents=self._index, sample_rate=self.sample_rate,
                             max_delay_s=self.max_delay_s)

    def check_edges(self, edges: Mapping[str, Edge]) -> list[str]:
        """Every problem of a whole edge set, cycles included (empty list when fine)."""
        return edge_set_problems(edges, agents=self._index, sample_rate=self.sample_rate,
                                 max_delay_s=self.max_delay_s, deployed=self.mode == "deployed")

    def validate_edges(self, edges: Mapping[str, Edge]) -> None:
        """Raise one ValueError listing every problem of ``edges``."""
        problems = self.check_edges(edges)
        if problems:
            raise ValueError(f"{len(problems)} problem{'s' if len(problems) != 1 else ''} "
                             "in the routing graph:\n  " + "\n  ".join(problems))

    # --- edges --------------------------------------------------------------------

    @property
    def edges(self) -> dict[str, Edge]:
        """The live edges (not those fading out after removal), by id."""
        return {k: v.edge for k, v in self._edges.items()}

    def add_edge(self, edge_id: str, edge: Edge, fade_s: float = DEFAULT_LAG_S) -> None:
        """Add ``edge`` as ``edge_id``, fading in over ``fade_s`` s (0: at once).
        Raises ValueError (every problem) for a bad edge, a known id or a full graph."""
        if edge_id in self._edges:
            raise ValueError(f"edge {edge_id!r} exists already; use set_edge to change it")
        self.validate_edges({**self.edges, edge_id: edge})
        self._install(edge_id, edge, fade_s)

    def add_ring(self, ring_id: str, agents: Sequence[str], fade_s: float = DEFAULT_LAG_S,
                 **params: Any) -> list[str]:
        """Add the edges of a ring a -> b -> ... -> a (ids ``"ring_id:a->b"``) with common
        ``params`` (gain, delay_ms, lowpass_hz, highpass_hz, shape). Returns the edge ids."""
        if len(agents) < 2 or len(set(agents)) != len(agents):
            raise ValueError(f"ring {ring_id!r} needs at least two different agents; got {list(agents)}")
        new = {ring_edge_id(ring_id, a, b): Edge(a, b, **params) for a, b in expand_ring(agents)}
        clash = [k for k in new if k in self._edges]
        if clash:
            raise ValueError(f"ring {ring_id!r} exists already ({', '.join(clash)})")
        self.validate_edges({**self.edges, **new})
        for edge_id, edge in new.items():
            self._install(edge_id, edge, fade_s)
        return list(new)

    def set_edge(self, edge_id: str, **changes: Any) -> Edge:
        """Change fields of an edge (gain, delay_ms, lowpass_hz, highpass_hz, shape; smoothed).
        Changing source or target replaces the edge with a crossfade. Returns the new edge."""
        entry = self._edges.get(edge_id)
        if entry is None:
            raise ValueError(f"unknown edge {edge_id!r}")
        known = {f.name for f in fields(Edge)}
        unknown = [k for k in changes if k not in known]
        if unknown:
            raise ValueError(f"unknown edge field(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")
        edge = replace(entry.edge, **changes)
        self.validate_edges({**self.edges, edge_id: edge})
        self._change(edge_id, edge)
        return edge

    def _change(self, edge_id: str, edge: Edge) -> None:
        """Apply a validated change: new targets, or a crossfaded replacement when the
        edge now joins other agents."""
        entry = self._edges[edge_id]
        if (edge.source, edge.target) != (entry.edge.source, entry.edge.target):
            self._drain(entry.slot, DEFAULT_LAG_S)
            del self._edges[edge_id]
            self._install(edge_id, edge, DEFAULT_LAG_S)
        else:
            entry.edge = edge
            self._write_targets(entry.slot, edge)

    def remove_edge(self, edge_id: str, fade_s: float = DEFAULT_LAG_S) -> None:
        """Fade an edge out over ``fade_s`` s; its slot is reused once silent."""
        entry = self._edges.pop(edge_id, None)
        if entry is None:
            raise ValueError(f"unknown edge {edge_id!r}")
        self._drain(entry.slot, fade_s)

    def set_edges(self, edges: Mapping[str, Edge], fade_s: float = DEFAULT_LAG_S) -> None:
        """Make the edge set exactly ``edges``: new ones fade in, gone ones fade out,
        kept ones glide to their new values. Validated as a whole first (one ValueError)."""
        self.validate_edges(edges)
        self._fade_step(fade_s)
        if len(edges) > len(self._ei):
            raise ValueError(f"the routing graph holds at most {len(self._ei)} edges; got {len(edges)}")
        # Validated as a whole: the steps below may pass through states that alone would
        # not validate (a cycle's delay moving from one edge to another), so they skip it.
        for edge_id in [k for k in self._edges if k not in edges]:
            self.remove_edge(edge_id, fade_s)
        for edge_id, edge in edges.items():
            entry = self._edges.get(edge_id)
            if entry is None:
                self._install(edge_id, edge, fade_s)
            elif entry.edge != edge:
                self._change(edge_id, edge)

    def edge_info(self, edge_id: str) -> dict[str, Any]:
        """The edge, its effective delay (ms) and its current (smoothed) gain and fade."""
        entry = self._edges.get(edge_id)
        if entry is None:
            raise ValueError(f"unknown edge {edge_id!r}")
        delay = entry.edge.delay_ms * self.sample_rate / 1000.0
        return {
            "edge": entry.edge,
            "delay_effective_ms": max(delay, self.latency) * 1000.0 / self.sample_rate,
            "gain_now": float(self._es[entry.slot, K._P_GAIN]),
            "fade_now": float(self._es[entry.slot, K._S_EN]),
            "online": self._edge_online(entry.edge),
        }

    def _install(self, edge_id: str, edge: Edge, fade_s: float) -> None:
        step = self._fade_step(fade_s)
        slot = self._free_slot()
        self._ei[slot] = (self._index[edge.source], self._index[edge.target], 1)
        self._ep[slot] = 0.0
        self._ep[slot, K._P_HP] = math.exp(-2.0 * math.pi * _HP_PARK_HZ / self.sample_rate)
        self._write_targets(slot, edge)
        self._ep[slot, K._P_ENSTEP] = step
        self._ep[slot, K._P_EN] = 1.0 if self._edge_online(edge) else 0.0
        es = self._es[slot]
        es[:] = 0.0
        es[:K._N_LAGGED] = self._ep[slot, :K._N_LAGGED]      # a new edge starts at its values
        es[K._S_DA] = es[K._S_DB] = self._ep[slot, K._P_DELAY]
        es[K._S_EN] = self._ep[slot, K._P_EN] if fade_s == 0 else 0.0
        self._edges[edge_id] = _EdgeSlot(slot, edge)

    def _write_targets(self, slot: int, edge: Edge) -> None:
        ep = self._ep[slot]
        sr = self.sample_rate
        ep[K._P_GAIN] = float(edge.gain)
        ep[K._P_LP] = 0.0 if edge.lowpass_hz is None else math.exp(-2.0 * math.pi * edge.lowpass_hz / sr)
        if edge.highpass_hz is not None:
            ep[K._P_HP] = math.exp(-2.0 * math.pi * edge.highpass_hz / sr)
        ep[K._P_HPW] = 0.0 if edge.highpass_hz is None else 1.0
        ep[K._P_SHAPE] = 1.0 if edge.shape == "tanh" else 0.0
        delay = edge.delay_ms * sr / 1000.0
        ep[K._P_DELAY] = max(0.0, delay - self.latency)

    def _drain(self, slot: int, fade_s: float) -> None:
        self._ep[slot, K._P_ENSTEP] = self._fade_step(fade_s)
        self._ep[slot, K._P_EN] = 0.0
        self._draining.add(slot)
        self._reclaim()

    def _reclaim(self) -> None:
        """Free the slots of removed edges and sources that have faded to silence."""
        for slot in [s for s in self._draining if self._es[s, K._S_EN] == 0.0]:
            self._draining.discard(slot)
            self._ei[slot, K._I_USED] = 0
        used = np.flatnonzero(self._ei[:, K._I_USED])
        self._n_edges = int(used[-1]) + 1 if used.size else 0
        self._bank.reclaim()

    def _free_slot(self) -> int:
        self._reclaim()
        free = np.flatnonzero(self._ei[:, K._I_USED] == 0)
        if not free.size:
            raise ValueError(f"the routing graph holds at most {len(self._ei)} edges "
                             "(fading ones included): build one with a larger max_edges")
        slot = int(free[0])
        self._ei[slot, K._I_USED] = 1
        self._n_edges = max(self._n_edges, slot + 1)
        return slot

    # --- sources ------------------------------------------------------------------

    @property
    def sources(self) -> tuple[str, ...]:
        """The live sources' ids."""
        return self._bank.ids

    def add_source(self, source_id: str, signal: Signal, targets: Mapping[str, float] | Iterable[str],
                   *, gain: float = 1.0, envelope: Envelope | None = None,
                   fade_s: float = 0.0) -> None:
        """Add a source (:meth:`SourceBank.add <anamnesis.hub.engine.sources.SourceBank.add>`)."""
        self._bank.add(source_id, signal, targets, gain=gain, envelope=envelope, fade_s=fade_s)

    def set_source(self, source_id: str, *, gain: float | None = None,
                   targets: Mapping[str, float] | Iterable[str] | None = None) -> None:
        """Change a source's gain or targets (smoothed)."""
        self._bank.set(source_id, gain=gain, targets=targets)

    def trigger_source(self, source_id: str) -> None:
        """Start a source's envelope and signal again from the beginning, now."""
        self._bank.trigger(source_id)

    def remove_source(self, source_id: str, fade_s: float = DEFAULT_LAG_S) -> None:
        """Fade a source out over ``fade_s`` s and forget it."""
        self._bank.remove(source_id, fade_s)

    # --- processing ---------------------------------------------------------------

    def tick(self, outputs: np.ndarray, out: np.ndarray | None = None,
             mics: np.ndarray | None = None) -> np.ndarray:
        """Route one block: ``outputs`` (frames, n_agents) -> the agents' inputs (frames, n_agents).

        ``frames`` is 0..max_block; the outputs are ``latency`` samples older than
        the inputs computed (module docstring). ``mics`` (frames, n_agents), when
        given, is added (the room's acoustic coupling). With float64 C-contiguous
        ``outputs``, ``out`` and ``mics``, nothing is allocated (a source generator
        renders a chunk of :data:`SOURCE_CHUNK` frames when it runs low).
        """
        frames = self._check_block("outputs", outputs, None)
        out = self._out(out, frames)
        use_mics = mics is not None
        if use_mics:
            self._check_block("mics", mics, frames)
        bank = self._bank
        if any(self._es[slot, K._S_EN] == 0.0 for slot in self._draining) or bank.faded():
            self._reclaim()  # a removed edge or source has faded out: free its slot
        if bank.count:
            bank.render(frames)
        K.route_kernel(frames, outputs, out, mics if use_mics else self._no_mics, use_mics,
                       len(self._ids), self._hist, self._clock, self._ei, self._ep, self._es,
                       self._n_edges, self._lag_c, self._xf_step, bank.si, bank.sp, bank.ss,
                       bank.buf, bank.weights, bank.smoothed, bank.count, self._counters)
        return out

    def _check_block(self, name: str, block: np.ndarray, frames: int | None) -> int:
        if not isinstance(block, np.ndarray) or block.dtype != np.float64 or block.ndim != 2:
            raise ValueError(f"{name} must be a float64 array of shape (frames, {len(self._ids)})")
        if block.shape[1] != len(self._ids) or not 0 <= block.shape[0] <= self.max_block:
            raise ValueError(f"{name} must have shape (0..{self.max_block}, {len(self._ids)}); "
                             f"got {block.shape}")
        if frames is not None and block.shape[0] != frames:
            raise ValueError(f"{name} must have {frames} frames; got {block.shape[0]}")
        return block.shape[0]

    def _out(self, out: np.ndarray | None, frames: int) -> np.ndarray:
        shape = (frames, len(self._ids))
        if out is None:
            return np.empty(shape)
        if (not isinstance(out, np.ndarray) or out.dtype != np.float64 or out.shape != shape
                or not out.flags.c_contiguous or not out.flags.writeable):
            raise ValueError(f"out must be a writeable C-contiguous float64 array of shape {shape}")
        return out

    def reset(self) -> None:
        """Back to time 0: history and filters cleared, lags at their targets, crossfades
        and fades finished, sources restarted. Edges, sources and parameters are kept."""
        self._reclaim()
        self._hist[:] = 0.0
        self._clock[0] = 0
        used = self._ei[:, K._I_USED] == 1
        self._es[used, :K._N_LAGGED] = self._ep[used, :K._N_LAGGED]
        self._es[used, K._S_LPY:K._S_HPS + 1] = 0.0
        self._es[used, K._S_DA] = self._es[used, K._S_DB] = self._ep[used, K._P_DELAY]
        self._es[used, K._S_XF] = self._es[used, K._S_XFON] = 0.0
        self._es[used, K._S_EN] = self._ep[used, K._P_EN]
        self._bank.reset()

    @property
    def position(self) -> int:
        """Samples routed since the start (or the last reset)."""
        return int(self._clock[0])

    def stats(self) -> dict[str, int]:
        """Counters: samples routed, non-finite output samples replaced by 0, edges, sources."""
        return {"position": self.position, "nonfinite": int(self._counters[K._C_NONFINITE]),
                "edges": len(self._edges), "fading_edges": len(self._draining),
                "sources": len(self._bank)}


# ---------------------------------------------------------------------------
# From the installation config
# ---------------------------------------------------------------------------


def edges_from_config(config: Any) -> dict[str, Edge]:
    """Every edge of a :class:`anamnesis.hub.installation.config.Config`: its routes (``"a->b"``) and its rings
    expanded (``"ring:a->b"``)."""
    edges: dict[str, Edge] = {}
    for route in config.routes:
        edges[route.id] = Edge(route.source, route.target, route.gain, route.delay_ms,
                               route.lowpass_hz, route.highpass_hz, route.shape)
    for ring in config.rings:
        for a, b in ring.pairs():
            edges[ring_edge_id(ring.name, a, b)] = Edge(a, b, ring.gain, ring.delay_ms,
                                                        ring.lowpass_hz, ring.highpass_hz,
                                                        ring.shape)
    return edges


def from_config(config: Any, *, seed: int = 0, latency: int | None = None,
                max_delay_s: float | None = None, lag_s: float = DEFAULT_LAG_S,
                max_agents: int | None = None) -> RoutingGraph:
    """Build the routing graph of an installation config: its agents (in config order),
    edges (routes and rings, at full level at once) and sources (``seed`` varies the
    noise). ``max_delay_s`` defaults to 2 s or the config's longest delay (+ 0.1 s)."""
    inst = config.installation
    edges = edges_from_config(config)
    longest = max((e.delay_ms for e in edges.values()), default=0.0) / 1000.0
    graph = RoutingGraph(
        config.agent_ids, inst.sample_rate, inst.block,
        max(2.0, longest + 0.1) if max_delay_s is None else max_delay_s,
        mode=inst.mode, latency=(inst.block if inst.mode == "simulated" else 0) if latency is None else latency,
        lag_s=lag_s, max_agents=max_agents if max_agents is not None else len(config.agents) + 8,
        max_edges=max(512, 2 * len(edges)))
    graph.set_edges(edges, fade_s=0.0)
    for source in config.sources:
        signal = make_source_signal(source.kind, source.args, inst.sample_rate,
                                    base_dir=config.base_dir, seed=seed)
        graph.add_source(source.name, signal, source.targets, gain=source.gain,
                         envelope=source.envelope, fade_s=0.0)
    return graph


__all__ = ["DEFAULT_LAG_S", "SOURCE_CHUNK", "RoutingGraph", "edges_from_config", "from_config"]
