"""``Plan``: a network's elements compiled into nodes, edges, schedule stages and the variables to keep."""

from __future__ import annotations

from collections.abc import Sequence

from ..assembly import Assembly, NeuronGroup
from ..connection import Connection
from .decoders import Decoder
from .encoders import Encoder
from .monitors import StateMonitor
from .schedule import Stage, build_schedule

__all__ = ["Plan"]


class Plan:
    """A compiled network: nodes, connections, schedule stages and which variables to record.

    Args:
        owner: the network's label (for error messages).
        elements: the network's elements in declaration order.
        force_stepped: run every node step by step (``mode='step'``).

    Compiling marks each connection whose pre is declared after its post (or is its post) as feedback on its
    :class:`~spaic_train.connection.delays.DelayLine`: it reads the previous step at the earliest.
    """

    def __init__(self, owner: str, elements: Sequence[object], force_stepped: bool):
        self.nodes: list[Assembly] = [e for e in elements if isinstance(e, Assembly)]
        self.conns: list[Connection] = [e for e in elements if isinstance(e, Connection)]
        self.decoders: list[Decoder] = [e for e in elements if isinstance(e, Decoder)]
        self.monitors: list[StateMonitor] = [e for e in elements if isinstance(e, StateMonitor)]
        self.encoders: list[Encoder] = [n for n in self.nodes if isinstance(n, Encoder)]
        index = {id(n): i for i, n in enumerate(self.nodes)}
        self.index = index

        def node_of(obj: Assembly, user: str, role: str) -> int:
            if id(obj) not in index:
                raise ValueError(f"{owner}: {user} uses {role} {obj.label}, which is not part of the network; "
                                 "assign it as an attribute (or net.add it) first")
            return index[id(obj)]

        if not self.encoders:
            raise ValueError(f"{owner}: the network has no Encoder to feed its input into; add "
                             "spaic_train.Encoder(shape=..., coding=...) first")
        edges = []
        for c in self.conns:
            a = node_of(c.pre, f"connection {c.label}", "pre")
            b = node_of(c.post, f"connection {c.label}", "post")
            if isinstance(c.post, Encoder):
                raise ValueError(f"{owner}: connection {c.label} targets the encoder {c.post.label}; "
                                 "encoders take no input from connections")
            if c.pre_var_name not in c.pre.var_names:
                raise ValueError(f"{owner}: connection {c.label} reads {c.pre_var_name!r} from {c.pre.label}, "
                                 f"which only has {', '.join(c.pre.var_names)}")
            c.delay_line.set_feedback(a >= b)
            edges.append((a, b))
        self.edges = edges
        for d in self.decoders:
            node_of(d.target, repr(d), "target")
        for m in self.monitors:
            node_of(m.target, repr(m), "target")
        self.stages: list[Stage] = build_schedule(len(self.nodes), edges, force_stepped)
        # variables to keep per node beyond the spikes
        self.keep: dict[int, set] = {i: {"O"} for i in range(len(self.nodes))}
        for c, (a, _) in zip(self.conns, edges):
            self.keep[a].add(c.pre_var_name)
        for obj in [*self.decoders, *self.monitors]:
            self.keep[index[id(obj.target)]].add(obj.var_name)
        self.incoming: dict[int, list[int]] = {i: [] for i in range(len(self.nodes))}
        for k, (_, b) in enumerate(edges):
            self.incoming[b].append(k)

    def history_depths(self) -> list[int]:
        """Per node, the number of past steps of its variables the connections out of it read (the largest
        :attr:`~spaic_train.connection.Connection.history_steps`; call after setting ``dt``)."""
        depth = [0] * len(self.nodes)
        for c, (a, _) in zip(self.conns, self.edges):
            depth[a] = max(depth[a], c.history_steps)
        return depth

    def output_node(self) -> int:
        """The node whose spikes a network without decoders returns (the last neuron group; else node 0)."""
        groups = [i for i, n in enumerate(self.nodes) if isinstance(n, NeuronGroup)]
        return max(groups) if groups else 0
