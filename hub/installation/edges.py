"""The edge vocabulary of an installation: one shape of an edge (:class:`Edge`) for the
config, the hub's routes and the routing graph, its limits (:data:`SHAPES`,
:data:`MAX_GAIN`, :data:`MAX_DELAY_MS`), rings as edge cycles (:func:`expand_ring`,
:func:`ring_edge_id`) and the rule that a cycle of zero-delay edges is refused
(:func:`zero_delay_cycles`). Pure: imports nothing from the rest of the hub.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Container, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

#: Waveshapers an edge may apply after its gain.
SHAPES = ("none", "tanh")
#: Longest edge delay a config may ask for (ms).
MAX_DELAY_MS = 10_000.0
#: Largest |gain| of an edge or a source (linear; +24 dB).
MAX_GAIN = 16.0


# ---------------------------------------------------------------------------
# Values
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Edge:
    """One edge: ``source``'s output to ``target``'s input.

    gain linear; delay_ms the total delay output -> input (ms, >= 0);
    lowpass_hz / highpass_hz one-pole cutoffs (Hz, None = off); shape "none"
    or "tanh" (applied after the gain).
    """

    source: str
    target: str
    gain: float = 1.0
    delay_ms: float = 0.0
    lowpass_hz: float | None = None
    highpass_hz: float | None = None
    shape: str = "none"

    @property
    def id(self) -> str:
        """The edge's id in the routing graph (a plain route's): ``"a->b"``."""
        return f"{self.source}->{self.target}"


def is_finite_number(value: Any) -> bool:
    """A real, finite number (numpy scalars included; not a bool)."""
    return (isinstance(value, numbers.Real) and not isinstance(value, bool)
            and math.isfinite(float(value)))


# ---------------------------------------------------------------------------
# Checks
# ---------------------------------------------------------------------------


def edge_problems(edge_id: Any, edge: Any, *, agents: Container[str], sample_rate: int,
                  max_delay_s: float) -> list[str]:
    """Every problem of one edge on its own, against the ``agents`` it may join, a
    ``sample_rate`` (Hz; cutoffs below Nyquist) and the longest delay (s): empty when fine."""
    problems = []
    name = f"edge {edge_id!r}"
    if not isinstance(edge_id, str) or not edge_id:
        problems.append(f"edge id must be a non-empty string; got {edge_id!r}")
    if not isinstance(edge, Edge):
        return [*problems, f"{name} must be an Edge; got {type(edge).__name__}"]
    for end in ("source", "target"):
        agent = getattr(edge, end)
        if agent not in agents:
            problems.append(f"{name}: unknown {end} agent {agent!r}")
    if not is_finite_number(edge.gain):
        problems.append(f"{name}: gain must be a finite number; got {edge.gain!r}")
    if not is_finite_number(edge.delay_ms):
        problems.append(f"{name}: delay_ms must be a finite number; got {edge.delay_ms!r}")
    elif edge.delay_ms < 0:
        problems.append(f"{name}: delay_ms must be >= 0; got {edge.delay_ms!r}")
    elif edge.delay_ms / 1000.0 > max_delay_s:
        problems.append(f"{name}: delay_ms {edge.delay_ms:g} is longer than the graph's "
                        f"{max_delay_s * 1000:g} ms")
    for key in ("lowpass_hz", "highpass_hz"):
        hz = getattr(edge, key)
        if hz is None:
            continue
        if not is_finite_number(hz):
            problems.append(f"{name}: {key} must be a finite number or None; got {hz!r}")
        elif not 0.0 < hz < sample_rate / 2:
            problems.append(f"{name}: {key} must be in (0, {sample_rate / 2:g}) Hz; got {hz:g}")
    if edge.shape not in SHAPES:
        problems.append(f"{name}: shape must be one of {', '.join(SHAPES)}; got {edge.shape!r}")
    return problems


def edge_set_problems(edges: Mapping[str, Any], *, agents: Container[str], sample_rate: int,
                      max_delay_s: float, deployed: bool) -> list[str]:
    """Every problem of a whole edge set (each edge's, and in ``deployed`` mode each
    zero-delay feedback cycle): empty when fine."""
    problems: list[str] = []
    for edge_id, edge in edges.items():
        problems += edge_problems(edge_id, edge, agents=agents, sample_rate=sample_rate,
                                  max_delay_s=max_delay_s)
    if deployed:
        good = [e for e in edges.values() if isinstance(e, Edge) and is_finite_number(e.delay_ms)]
        problems += [cycle_problem(cycle, "edges") for cycle in zero_delay_cycles(good)]
    return problems


def cycle_problem(cycle: Sequence[str], parts: str) -> str:
    """The refusal of a zero-delay feedback ``cycle`` in deployed mode; ``parts`` names
    what may carry the delay ("edges", "routes or rings")."""
    return ("feedback cycle " + " -> ".join(cycle) + " has no delay: in deployed mode its "
            f"loop time would be the network's jitter; give one of its {parts} a delay_ms > 0")


def expand_ring(agents: Sequence[str]) -> list[tuple[str, str]]:
    """The (source, target) pairs of a ring a -> b -> ... -> a."""
    n = len(agents)
    return [(agents[i], agents[(i + 1) % n]) for i in range(n)]


def ring_edge_id(ring_id: str, source: str, target: str) -> str:
    """The id of a ring's edge: ``"ring_id:a->b"``."""
    return f"{ring_id}:{source}->{target}"


def zero_delay_cycles(edges: Iterable[Edge]) -> list[list[str]]:
    """One cycle (as agent ids, first repeated last) per strongly connected group of
    agents linked by zero-delay edges (self-loops included)."""
    graph: dict[str, set[str]] = {}
    for e in edges:
        if e.delay_ms == 0:
            graph.setdefault(e.source, set()).add(e.target)
            graph.setdefault(e.target, set())
    cycles = []
    for component in _strongly_connected(graph):
        members = set(component)
        start = min(members)
        if len(members) == 1 and start not in graph[start]:
            continue
        path, seen, node = [start], {start}, start
        while True:  # walk inside the component until a node repeats
            nxt = min(n for n in graph[node] if n in members)
            if nxt in seen:
                path = path[path.index(nxt):] + [nxt]
                break
            path.append(nxt)
            seen.add(nxt)
            node = nxt
        cycles.append(path)
    return sorted(cycles)


def _strongly_connected(graph: Mapping[str, set[str]]) -> list[list[str]]:
    """Tarjan's strongly connected components (iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    out: list[list[str]] = []
    counter = 0
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            advanced = False
            for child in children:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                    advanced = True
                    break
                if child in on_stack:
                    low[node] = min(low[node], index[child])
            if advanced:
                continue
            work.pop()
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                out.append(sorted(component))
    return out


__all__ = ["Edge", "cycle_problem", "edge_problems", "edge_set_problems", "expand_ring",
           "is_finite_number", "ring_edge_id", "zero_delay_cycles"]
