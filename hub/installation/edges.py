"""The edge vocabulary of an installation: one shape of an edge (:class:`Edge`) for the
config, the hub's routes and the routing graph, its limits (:data:`SHAPES`,
:data:`MAX_GAIN`, :data:`MAX_DELAY_MS`), rings as edge cycles (:func:`expand_ring`,
:func:`ring_edge_id`) and the rule that a cycle of zero-delay edges is refused
(:func:`zero_delay_cycles`). Pure: imports nothing from the rest of the hub.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

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


__all__ = ["Edge", "expand_ring", "ring_edge_id", "zero_delay_cycles"]
