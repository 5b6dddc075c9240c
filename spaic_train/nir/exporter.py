"""Export a spaic_train network to a NIR graph (the conventions are in :mod:`spaic_train.nir`)."""

from __future__ import annotations

import io
from typing import Optional

import nir
import numpy as np
import torch

from ..assembly import NeuronGroup
from ..io import atomic_write_bytes
from ..network import Encoder, Network
from . import importer
from .convert import LINK_TO_NIR, NEURON_TO_NIR, SYNAPSE_TO_NIR, Affine, lookup, seconds_per_step


class _Builder:
    """Nodes under unique names and the edges between them."""

    def __init__(self):
        self.nodes: dict[str, nir.NIRNode] = {}
        self.edges: list[tuple[str, str]] = []

    def add(self, name: str, node: nir.NIRNode) -> str:
        unique, k = name, 1
        while unique in self.nodes:
            unique = f"{name}_{k}"
            k += 1
        self.nodes[unique] = node
        return unique

    def chain(self, src: str, name: str, node: nir.NIRNode) -> str:
        """Add ``node`` fed by ``src``; returns its name."""
        name = self.add(name, node)
        self.edges.append((src, name))
        return name


def export(model_or_network: Network, sample_input: Optional[torch.Tensor] = None,
           dt: Optional[float] = None) -> nir.NIRGraph:
    """The NIR graph of a :class:`~spaic_train.Network` (or Keras ``Model``/``Sequential``) in eval mode.

    Args:
        model_or_network: the network.  Its encoders become ``Input`` nodes (the graph's input is what the
            encoder emits each step: the value itself for ``'direct'``, spikes for the others), neuron groups
            ``LIF``/``IF`` nodes, each connection its synapse chain (``Flatten``, pooling, one weight node per
            distinct delay behind a ``Delay`` node), and each decoded group an ``Output`` node.
        sample_input: optional input ``[B, *shape]`` or ``[T, B, *shape]``: the graph is loaded back and both are
            run on it (eval mode, same random encoding); a ``RuntimeError`` names the first group whose spikes
            differ.
        dt: seconds per step in the graph (default ``net.dt`` ms converted to seconds).  Peers discretize the
            graph with their own step: export with ``dt=1e-4`` for snnTorch's importer, which assumes it.

    Returns:
        ``nir.NIRGraph`` (type-checked) with ``metadata`` ``{"dt": seconds, "order": group names,
        "time_steps": T}``; write it with ``nir.write(path, graph)``.

    Raises:
        ValueError: a part without a NIR form, naming it: soft reset, ``alif``/``izhikevich`` neurons, max
            pooling, a connection reading the membrane, conv ``upscale``, a batch norm that cannot be folded,
            a dense link into a multi-dimensional group.
    """
    net = model_or_network
    if not isinstance(net, Network):
        raise TypeError(f"spaic_train.nir.export expects a spaic_train Network or Keras Model, got "
                        f"{type(net).__name__}")
    dt_s = seconds_per_step(net.label, net.dt * 1e-3 if dt is None else dt)
    plan = net.compile_plan()
    component = {v: i for i, stage in enumerate(plan.stages) for v in stage.nodes}
    b = _Builder()
    names: dict[int, str] = {}
    for node in plan.nodes:
        if isinstance(node, Encoder):
            meta = {"coding": node.coding, **{k: v for k, v in node.params.items() if isinstance(v, (int, float))}}
            names[id(node)] = b.add(node.name, nir.Input(np.array(node.shape), metadata=meta))
        else:
            node.neuron.dt = net.dt  # as a run would: the decay depends on it
            to_nir = lookup(NEURON_TO_NIR, "neuron model", node.neuron.model_name, node.label)
            names[id(node)] = b.add(node.name, to_nir(node.neuron, node.shape, dt_s, node.label))
    for conn, (a, c) in zip(plan.conns, plan.edges):
        conn.dt = net.dt
        # the edge closing a cycle lags one step in NIR executors: only the delay beyond it is a Delay node
        lag = 1 if a >= c and component[a] == component[c] else 0
        _export_connection(b, conn, names, lag, dt_s)
    outputs: dict[int, tuple[NeuronGroup, Optional[str]]] = {}
    for d in plan.decoders:
        outputs.setdefault(id(d.target), (d.target, d.coding))
    if not outputs and net.groups:
        last = [n for n in plan.nodes if isinstance(n, NeuronGroup)][-1]
        outputs[id(last)] = (last, None)
    for group, coding in outputs.values():
        name = "output" if len(outputs) == 1 else f"output_{names[id(group)]}"
        b.chain(names[id(group)], name, nir.Output(np.array(group.shape),
                                                  metadata={} if coding is None else {"decoder": coding}))
    meta = {"dt": dt_s, "order": [names[id(n)] for n in plan.nodes]}
    if net.time_steps is not None:
        meta["time_steps"] = net.time_steps
    graph = nir.NIRGraph(nodes=b.nodes, edges=b.edges, metadata=meta, type_check=True)
    if sample_input is not None:
        _check_reproduces(net, graph, sample_input)
    return graph


def write(graph: nir.NIRGraph, path) -> None:
    """``nir.write(path, graph)`` that never leaves a partially written file at ``path`` (temporary file, fsync,
    rename)."""
    buf = io.BytesIO()
    nir.write(buf, graph)
    atomic_write_bytes(buf.getbuffer(), path)


def _export_connection(b: _Builder, conn, names: dict[int, str], lag: int, dt_s: float) -> None:
    owner = conn.label
    if conn.pre_var_name != "O":
        raise ValueError(f"{owner}: reads {conn.pre_var_name!r} of {conn.pre.label}; NIR edges carry a node's output "
                         "(spikes), so only pre_var_name='O' can be exported")
    ops = list(conn.synapses)
    wi = conn.weight_index
    src, shape = names[id(conn.pre)], tuple(conn.pre.shape)
    for op, op_name in zip(ops[:wi], conn.syn_type[:wi]):
        node = lookup(SYNAPSE_TO_NIR, "synapse op", op_name, owner)(op, shape, None, owner)
        if node is not None:
            src = b.chain(src, f"{conn.name}_{op_name}", node)
        shape = tuple(op.output_shape(shape))
    link = lookup(LINK_TO_NIR, "link type", conn.link_type, owner)(conn, shape)
    for node in link.pre:
        src = b.chain(src, f"{conn.name}_flatten", node)
    affine = Affine(conn.effective_weight().detach(), None if conn.bias is None else conn.bias.detach())
    shape = tuple(conn.link.output_shape(shape))
    targets = []
    for j, (op, op_name) in enumerate(zip(ops[wi + 1:], conn.syn_type[wi + 1:])):
        node = lookup(SYNAPSE_TO_NIR, "synapse op", op_name, owner)(op, shape, affine if j == 0 else None, owner)
        if node is not None:
            targets.append(b.add(f"{conn.name}_{op_name}", node))
        shape = tuple(op.output_shape(shape))
    targets.append(names[id(conn.post)])
    b.edges.extend(zip(targets, targets[1:]))
    # one weight node per distinct delay d (in steps): W ⊙ [delay == d], behind a Delay node of d − lag steps
    taps = conn.integer_delay_taps(affine.weight.dtype)
    for i, (d, g) in enumerate(taps):
        w = affine.weight if g is None else affine.weight * conn.link.expand_delay(g)
        s = src
        if d > lag:
            s = b.chain(s, f"{conn.name}_delay{d}", nir.Delay(np.full(link.shape, (d - lag) * dt_s)))
        name = conn.name if len(taps) == 1 else f"{conn.name}_d{d}"
        b.edges.append((b.chain(s, name, link.node(w, affine.bias if i == 0 else None)), targets[0]))


def _check_reproduces(net: Network, graph: nir.NIRGraph, x: torch.Tensor) -> None:
    """Load ``graph`` back, run it and ``net`` on ``x`` (eval mode, same seed) and compare every group's spikes."""
    twin = importer.load(graph)
    was_training = net.training
    net.eval()
    runs = []
    try:
        for model in (net, twin):
            with torch.no_grad(), model.record(("O",)) as rec, torch.random.fork_rng(devices=[]):
                torch.manual_seed(0)
                model(x, time_steps=None if model is net else net.time_steps)
            runs.append(rec)
    finally:
        net.train(was_training)
    mine, theirs = runs
    for group in net.groups:
        a, b = mine[group.name]["O"], theirs[importer.node_attribute(group.name)]["O"]
        if not torch.equal(a, b):
            n = int((a != b).sum())
            raise RuntimeError(f"{net.label}: the exported graph does not reproduce {group.label} on sample_input: "
                               f"{n} of {a.numel()} spikes differ")
