"""Import a NIR graph as a core :class:`~spaic_train.Network` (:func:`load`).

:class:`GraphSpec` is the graph with its subgraphs inlined, every node converted to a part
(:mod:`spaic_train.nir.convert`), every path of non-neuron nodes between two assemblies turned into one
connection, the groups ordered and the feedback edges found (the conventions are in :mod:`spaic_train.nir`).  The
Keras side builds a ``Model`` from the same spec (:mod:`spaic_train.keras.nir_models`, ``spaic_train.from_nir``):
this package never imports ``spaic_train.keras``.
"""

from __future__ import annotations

import os
import re
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Union

import nir
import numpy as np
import torch

from ..assembly import NeuronGroup
from ..connection import Connection
from ..network import Decoder, Encoder, Network
from ..network.schedule import strongly_connected_components
from .convert import (
    NIR_TO_PART,
    Delay,
    Neuron,
    Op,
    Sink,
    Source,
    Weight,
    identity_weight,
    lookup,
    seconds_per_step,
    text,
)

GraphLike = Union[nir.NIRGraph, str, os.PathLike]


def node_attribute(name: str) -> str:
    """A NIR node name as a Python identifier (attribute and layer name): other characters become ``_``, and a
    name that does not start with a letter gets an ``n`` in front (``'0'`` → ``'n0'``, ``'fc.1'`` → ``'fc_1'``)."""
    s = re.sub(r"\W", "_", name)
    return s if s[:1].isalpha() else "n" + s


def read_graph(graph_or_path: GraphLike) -> nir.NIRGraph:
    """``graph_or_path`` itself, or the graph ``nir.read`` finds in that file."""
    if isinstance(graph_or_path, nir.NIRGraph):
        return graph_or_path
    if isinstance(graph_or_path, (str, os.PathLike)):
        path = Path(graph_or_path)
        if not path.is_file():
            raise FileNotFoundError(f"spaic_train.nir: no NIR file at {str(path)!r}")
        # shapes are worked out here; nir's own type check rejects grouped convolutions and some peers' graphs
        return nir.read(path, type_check=False)
    raise TypeError(f"spaic_train.nir: expected a nir.NIRGraph or the path of a .nir file, got "
                    f"{type(graph_or_path).__name__}")


def _inline(graph: nir.NIRGraph, prefix: str = "") -> tuple[dict[str, nir.NIRNode], list[tuple[str, str]]]:
    """Nodes and edges with every subgraph (e.g. snnTorch's recurrent ``RLeaky``) replaced by its inner nodes:
    edges into the subgraph go to what its ``Input`` feeds, edges out of it leave from what feeds its ``Output``."""
    nodes: dict[str, nir.NIRNode] = {}
    edges: list[tuple[str, str]] = []
    entries: dict[str, list[str]] = {}
    exits: dict[str, list[str]] = {}
    for name, node in graph.nodes.items():
        if not isinstance(node, nir.NIRGraph):
            nodes[prefix + name] = node
            continue
        inner, inner_edges = _inline(node, f"{prefix}{name}.")
        ins = [k for k, v in inner.items() if isinstance(v, nir.Input)]
        outs = [k for k, v in inner.items() if isinstance(v, nir.Output)]
        if len(ins) != 1 or len(outs) != 1:
            raise ValueError(f"NIR subgraph {prefix + name!r}: needs exactly one Input and one Output node to be "
                             f"inlined, has {len(ins)} and {len(outs)}")
        nodes.update({k: v for k, v in inner.items() if k not in (ins[0], outs[0])})
        entries[prefix + name] = [b for a, b in inner_edges if a == ins[0]]
        exits[prefix + name] = [a for a, b in inner_edges if b == outs[0]]
        edges += [(a, b) for a, b in inner_edges if a != ins[0] and b != outs[0]]
    for a, b in graph.edges:
        edges += [(x, y) for x in exits.get(prefix + a, [prefix + a]) for y in entries.get(prefix + b, [prefix + b])]
    return nodes, edges


@dataclass
class ConnSpec:
    """One connection to build: ``src → dst`` with its synapse chain, tensors and delays."""

    src: str
    dst: str
    pre: list[Op]
    weight: Weight
    post: list[Op]
    #: NIR node names on the path, for messages
    path: list[str]
    #: delay of the path in steps (its Delay nodes, plus the step an edge closing a cycle lags)
    delay: int = 0
    #: whether the engine treats it as feedback (``src`` not before ``dst`` in the order)
    backward: bool = False
    #: per-synapse delays in steps (the link's delay shape)
    steps: Optional[torch.Tensor] = None
    #: whether ``steps`` differs from the engine's own (0 forward, 1 feedback), i.e. needs a delay buffer
    delayed: bool = False

    @property
    def label(self) -> str:
        return f"NIR path {' → '.join([self.src, *self.path, self.dst])}"

    @property
    def syn_type(self) -> list[str]:
        return [op.syn for op in self.pre] + [self.weight.weight_op] + [op.syn for op in self.post]

    def syn_kwargs(self) -> dict:
        merged: dict = {}
        for op in [*self.pre, *self.post]:
            for k, v in op.kwargs.items():
                if merged.setdefault(k, v) != v:
                    raise ValueError(f"{self.label}: two pooling ops with different {k} ({merged[k]} and {v}); the ops "
                                     "of one spaic_train connection share their parameters")
        return merged

    def ops_signature(self) -> tuple:
        return tuple((op.syn, tuple(sorted(op.kwargs.items()))) for op in self.pre), \
            tuple((op.syn, tuple(sorted(op.kwargs.items()))) for op in self.post)


class GraphSpec:
    """A NIR graph read into spaic_train terms: assemblies in order, their shapes, connections and outputs.

    Args:
        graph: the NIR graph.
        dt: seconds per step; default the graph's ``metadata["dt"]`` (an error names the first node needing it
            when neither is there).
    """

    def __init__(self, graph: nir.NIRGraph, dt: Optional[float] = None):
        meta = graph.metadata if isinstance(graph.metadata, dict) else {}
        if dt is None and "dt" in meta:
            dt = float(meta["dt"])
        if dt is not None:
            dt = seconds_per_step("spaic_train.nir.load", dt)
        self.dt_ms = 1.0 if dt is None else dt * 1e3
        self.time_steps = int(meta["time_steps"]) if "time_steps" in meta else None
        nodes, edges = _inline(graph)
        self.parts = {n: lookup(NIR_TO_PART, "NIR node type", type(node).__name__, f"NIR node {n!r}")(node, n, dt)
                      for n, node in nodes.items()}
        self.preds: dict[str, list[str]] = defaultdict(list)
        for a, b in edges:
            self.preds[b].append(a)
        assemblies = [n for n, p in self.parts.items() if isinstance(p, (Source, Neuron))]
        self.conns = [c for q in assemblies if isinstance(self.parts[q], Neuron) for c in self._paths_into(q)]
        self.outputs: list[tuple[str, Optional[str]]] = []
        for name, part in self.parts.items():
            if isinstance(part, Sink):
                for p in self.preds[name]:
                    if not isinstance(self.parts[p], Neuron):
                        raise ValueError(f"NIR node {name!r} (Output) reads {p!r} ({type(nodes[p]).__name__}); "
                                         "spaic_train's outputs are neuron groups (LIF or IF nodes)")
                    self.outputs.append((p, part.decoder))
        order = [text(x) for x in np.asarray(meta.get("order", [])).reshape(-1)]
        self.order = order if sorted(order) == sorted(assemblies) else self._dfs_order(assemblies)
        self.attr = self._attributes()
        self._place_edges()
        self.shapes = self._shapes()
        self._set_delays()
        self.conns = self._merged()

    # ---- structure ------------------------------------------------------------------------------------------------
    def _paths_into(self, dst: str) -> list[ConnSpec]:
        """One connection per path of non-assembly nodes from an assembly into ``dst``."""
        found = []

        def walk(node: str, chain: list[str]) -> None:
            for p in self.preds[node]:
                part = self.parts[p]
                if isinstance(part, (Source, Neuron)):
                    found.append(self._conn(p, dst, chain))
                elif isinstance(part, Sink):
                    raise ValueError(f"NIR node {p!r} is an Output but feeds {node!r}")
                elif p in chain:
                    raise ValueError(f"NIR nodes {' → '.join([p, *chain[:chain.index(p) + 1]])} form a cycle without "
                                     "a neuron; spaic_train's cycles run through neuron groups")
                else:
                    walk(p, [p, *chain])

        walk(dst, [])
        return found

    def _conn(self, src: str, dst: str, chain: list[str]) -> ConnSpec:
        pre, post, weight, where, delay = [], [], None, None, 0
        for n in chain:
            part = self.parts[n]
            if isinstance(part, Delay):
                delay += part.steps
            elif isinstance(part, Weight):
                if weight is not None:
                    raise ValueError(f"NIR nodes {where!r} and {n!r} are two weight nodes on one path from {src!r} to "
                                     f"{dst!r}; a spaic_train connection has one weight op (put a neuron between them)")
                weight, where = part, n
            else:
                (pre if weight is None else post).append(part)
        return ConnSpec(src, dst, pre, weight, post, chain, delay)

    def _dfs_order(self, assemblies: list[str]) -> list[str]:
        """Reverse postorder of a depth-first search from the inputs: every edge not closing a cycle goes forward."""
        succ: dict[str, list[str]] = defaultdict(list)
        for c in self.conns:
            succ[c.src].append(c.dst)
        done: set[str] = set()
        post: list[str] = []
        starts = [n for n in assemblies if isinstance(self.parts[n], Source)] + assemblies
        for start in starts:
            if start in done:
                continue
            done.add(start)
            stack = [(start, iter(succ[start]))]
            while stack:
                node, it = stack[-1]
                nxt = next((w for w in it if w not in done), None)
                if nxt is None:
                    post.append(node)
                    stack.pop()
                else:
                    done.add(nxt)
                    stack.append((nxt, iter(succ[nxt])))
        return post[::-1]

    def _attributes(self) -> dict[str, str]:
        attr: dict[str, str] = {}
        taken: set[str] = set()
        for name in self.order:
            base = a = node_attribute(name)
            k = 1
            while a in taken:
                a, k = f"{base}_{k}", k + 1
            attr[name] = a
            taken.add(a)
        return attr

    def _place_edges(self) -> None:
        """Mark feedback connections; the edge closing a cycle lags one step, delays come on top."""
        pos = {n: i for i, n in enumerate(self.order)}
        comp = {}
        for i, members in enumerate(strongly_connected_components(len(self.order),
                                                                  [(pos[c.src], pos[c.dst]) for c in self.conns])):
            comp.update({v: i for v in members})
        for c in self.conns:
            a, b = pos[c.src], pos[c.dst]
            c.backward = a >= b
            lag = int(c.backward and comp[a] == comp[b])
            c.delay += lag
            if c.backward and c.delay == 0:
                raise ValueError(f"{c.label}: the group order in the graph's metadata puts {c.src!r} after {c.dst!r}, "
                                 "but no cycle or Delay node lets this edge lag a step")

    def _shapes(self) -> dict[str, tuple[int, ...]]:
        shapes: dict[str, tuple[int, ...]] = {}
        for name in self.order:
            part = self.parts[name]
            if isinstance(part, Source):
                shapes[name] = self._source_shape(name, part)
                continue
            shape = part.shape
            for c in self.conns:
                if c.dst == name and c.src in shapes:
                    shape = self._conn_shape(c, shapes[c.src])
                    break
            if shape is None:
                raise ValueError(f"NIR node {name!r}: its shape is unknown (scalar parameters and no input from an "
                                 "earlier node)")
            shapes[name] = shape
        return shapes

    def _source_shape(self, name: str, part: Source) -> tuple[int, ...]:
        """The ``Input`` shape, without a leading 1 that only dense links read (Norse 1.1 writes ``[1, n]``)."""
        shape = part.shape
        outs = [c for c in self.conns if c.src == name]
        if len(shape) == 2 and shape[0] == 1 and outs and all(
                not c.pre and c.weight is not None and c.weight.link_type == "full" for c in outs):
            return shape[1:]
        return shape

    def _conn_shape(self, c: ConnSpec, in_shape: tuple[int, ...]) -> tuple[int, ...]:
        shape = tuple(in_shape)
        for op in c.pre:
            shape = op.out_shape(shape, c.label)
        if c.weight is None:
            c.weight = identity_weight(shape)
        shape = c.weight.out_shape(shape)
        for op in c.post:
            shape = op.out_shape(shape, c.label)
        return shape

    def _set_delays(self) -> None:
        for c in self.conns:
            self._conn_shape(c, self.shapes[c.src])  # gives direct edges their identity weight
            c.delayed = c.delay != int(c.backward)
            c.steps = torch.full(self._delay_shape(c.weight), c.delay, dtype=torch.long)

    @staticmethod
    def _delay_shape(w: Weight) -> tuple[int, ...]:
        return tuple(w.weight.shape[:2]) if w.link_type == "conv" else tuple(w.weight.shape)

    def _merged(self) -> list[ConnSpec]:
        """Parallel paths between the same groups that differ only by delay and hold disjoint synapses (what
        :func:`~spaic_train.nir.export` writes for per-synapse delays) become one connection again."""
        groups: dict[tuple, list[ConnSpec]] = {}
        for c in self.conns:
            groups.setdefault((c.src, c.dst, c.ops_signature(), c.weight.signature()), []).append(c)
        out = []
        for members in groups.values():
            support = torch.stack([c.weight.support() for c in members])
            if len(members) == 1 or int(support.sum(0).max()) > 1:
                out += members
                continue
            first = members[0]
            biases = [c.weight.bias for c in members if c.weight.bias is not None]
            first.weight = Weight(first.weight.link_type, sum(c.weight.weight for c in members),
                                  sum(biases) if biases else None, first.weight.kwargs, first.weight.shape)
            first.steps = sum(c.steps * m for c, m in zip(members, support))
            first.delayed = any(c.delayed for c in members)
            first.path = [n for c in members for n in c.path]
            out.append(first)
        return out

    # ---- helpers for the builders -----------------------------------------------------------------------------------
    def delay_ms(self, c: ConnSpec) -> torch.Tensor:
        return c.steps.to(torch.get_default_dtype()) * self.dt_ms

    def incoming(self, name: str, backward: bool) -> list[ConnSpec]:
        return [c for c in self.conns if c.dst == name and c.backward == backward]


def load(graph_or_path: GraphLike, dt: Optional[float] = None, time_steps: Optional[int] = None,
         decoder: Optional[str] = None) -> Network:
    """Build a core :class:`~spaic_train.Network` from a NIR graph (or a ``.nir`` file).

    Args:
        graph_or_path: a ``nir.NIRGraph`` or the path of a file written by ``nir.write``.
        dt: seconds per step to discretize the graph with; default the graph's ``metadata["dt"]`` (written by
            :func:`~spaic_train.nir.export`).  Graphs from snnTorch and SpikingJelly need ``dt=1e-4`` (their
            exporters' step), Norse's the ``dt`` given to its exporter (default ``1e-3``).  The network's
            ``dt`` is this in ms.
        time_steps: default ``T`` for static inputs (default the graph's ``metadata["time_steps"]``).
        decoder: decoder of every output group; default what the graph's ``Output`` metadata names, else
            ``'sequence'`` (the spikes ``[T, B, *shape]``).

    Returns:
        A ``Network`` with one ``Encoder`` per ``Input`` node (coding from its metadata, default ``'direct'``:
        the graph's input is given as is every step), a ``NeuronGroup`` per ``LIF``/``IF`` node, a
        ``Connection`` per path of weight / pooling / flatten / delay nodes between them and a ``Decoder`` per
        ``Output``.  Names are the node names made identifiers (:func:`node_attribute`).

    Raises:
        ValueError: a node or structure without a spaic_train counterpart, naming it.
        FileNotFoundError / TypeError: no such file / not a graph.
    """
    spec = GraphSpec(read_graph(graph_or_path), dt)
    net = Network(dt=spec.dt_ms, time_steps=time_steps if time_steps is not None else spec.time_steps)
    objs = {}
    for name in spec.order:
        part = spec.parts[name]
        if isinstance(part, Source):
            obj = Encoder(shape=spec.shapes[name], coding=part.coding, **part.params)
        else:
            obj = NeuronGroup(shape=spec.shapes[name], model=part.model, **part.params)
        objs[name] = net.add(obj, spec.attr[name])
    for c in spec.conns:
        w = c.weight
        delay = {"max_delay": float(c.steps.max()) * spec.dt_ms, "delay": spec.delay_ms(c)} if c.delayed else {}
        conn = Connection(objs[c.src], objs[c.dst], link_type=w.link_type, syn_type=c.syn_type,
                          syn_kwargs=c.syn_kwargs(), weight=w.weight, bias=w.bias, **w.kwargs, **delay)
        net.add(conn, _unused(net, f"{spec.attr[c.src]}_to_{spec.attr[c.dst]}"))
    for out, coding in spec.outputs:
        name = "decoder" if len(spec.outputs) == 1 else f"decoder_{spec.attr[out]}"
        net.add(Decoder(objs[out], coding=decoder or coding or "sequence"), name)
    return net


def _unused(net: Network, base: str) -> str:
    name, k = base, 1
    while name in net.__dict__ or name in net._modules:
        name, k = f"{base}_{k}", k + 1
    return name
