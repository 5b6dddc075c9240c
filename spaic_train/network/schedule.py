"""Compile a network's graph of assemblies and connections into an execution schedule.

Nodes are assemblies, edges are connections.  An edge whose pre was declared after its post
(or pre == post) is a *feedback* edge and reads the previous step at the earliest.  Strongly
connected components, in topological order, become the schedule's stages: a single node
without a self-edge is *time-batched* (all ``T`` steps at once), a cycle is *stepped*.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field


@dataclass
class Stage:
    """One schedule stage: node indices in declaration order, and whether it loops over time."""

    nodes: list[int]
    stepped: bool
    #: connection indices entering the stage from earlier stages
    external: list[int] = field(default_factory=list)
    #: connection indices inside the stage (pre and post both in it)
    internal: list[int] = field(default_factory=list)


def strongly_connected_components(n: int, edges: Sequence[tuple[int, int]]) -> list[list[int]]:
    """Tarjan's algorithm (iterative); returns components in reverse topological order."""
    succ: dict[int, list[int]] = {v: [] for v in range(n)}
    for a, b in edges:
        succ[a].append(b)
    index: dict[int, int] = {}
    low: dict[int, int] = {}
    on_stack: dict[int, bool] = {}
    stack: list[int] = []
    out: list[list[int]] = []
    counter = 0
    for root in range(n):
        if root in index:
            continue
        work = [(root, 0)]
        while work:
            v, i = work.pop()
            if i == 0:
                index[v] = low[v] = counter
                counter += 1
                stack.append(v)
                on_stack[v] = True
            recurse = False
            for j in range(i, len(succ[v])):
                w = succ[v][j]
                if w not in index:
                    work.append((v, j + 1))
                    work.append((w, 0))
                    recurse = True
                    break
                if on_stack.get(w):
                    low[v] = min(low[v], index[w])
            if recurse:
                continue
            if low[v] == index[v]:
                comp = []
                while True:
                    w = stack.pop()
                    on_stack[w] = False
                    comp.append(w)
                    if w == v:
                        break
                out.append(sorted(comp))
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[v])
    return out


def build_schedule(n_nodes: int, edges: Sequence[tuple[int, int]], force_stepped: bool = False) -> list[Stage]:
    """Stages in execution order for ``n_nodes`` nodes and ``edges[k] = (pre, post)`` of connection ``k``.

    With ``force_stepped`` the whole network is one stepped stage in declaration order (the
    reference semantics the time-batched schedule must reproduce).
    """
    if force_stepped:
        stages = [Stage(list(range(n_nodes)), stepped=True)]
    else:
        comps = list(reversed(strongly_connected_components(n_nodes, edges)))
        self_loop = {a for a, b in edges if a == b}
        stages = [Stage(c, stepped=len(c) > 1 or c[0] in self_loop) for c in comps]
    where = {v: s for s, stage in enumerate(stages) for v in stage.nodes}
    for k, (a, b) in enumerate(edges):
        stage = stages[where[b]]
        (stage.internal if where[a] == where[b] else stage.external).append(k)
    return stages
