"""Keras models from NIR graphs: :func:`from_nir` (``spaic_train.from_nir``) builds a functional
:class:`~spaic_train.keras.Model` from the :class:`~spaic_train.nir.importer.GraphSpec` that
:func:`spaic_train.nir.load` builds a core ``Network`` from.

The dependency goes one way: this module imports :mod:`spaic_train.nir` (and so the optional ``nir`` package:
``pip install 'spaic_train[nir]'``), which never imports ``spaic_train.keras``; ``import spaic_train.keras`` does
not import this module.
"""

from __future__ import annotations

from typing import Optional

import torch

from ..connection import Connection
from ..nir.convert import Op, Source, lookup
from ..nir.importer import ConnSpec, GraphLike, GraphSpec, read_graph
from ..registry import Registry
from .layers import Conv2dSyn, Feedback, Flatten, Full, Input, Layer, OneToOne, Pool2d
from .models import Model

__all__ = ["LINK_TO_LAYER", "from_nir"]

#: link type → ``fn(conn_spec, **layer_kwargs) -> Layer`` building the Keras layer of a neuron node
LINK_TO_LAYER: Registry = Registry("link type with a Keras layer")


def _no_post_ops(c: ConnSpec, layer: str) -> None:
    if c.post:
        raise ValueError(f"{c.label}: {', '.join(op.syn for op in c.post)} after the weight has no place in a Keras "
                         f"{layer} layer; use spaic_train.nir.load for a core Network")


@LINK_TO_LAYER.register("full")
def _full_layer(c: ConnSpec, **kw):
    _no_post_ops(c, "Full")
    return Full(c.weight.weight.shape[0], **kw)


@LINK_TO_LAYER.register("one_to_one")
def _one_to_one_layer(c: ConnSpec, **kw):
    _no_post_ops(c, "OneToOne")
    return OneToOne(**kw)


@LINK_TO_LAYER.register("conv")
def _conv_layer(c: ConnSpec, **kw):
    pool = {}
    if c.post:
        (op, *rest) = c.post
        if rest or op.syn not in ("avgpool", "sumpool") or any(op.kwargs["pool_padding"]):
            raise ValueError(f"{c.label}: Conv2dSyn takes one unpadded avg or sum pool after the conv, got "
                             f"{[p.syn for p in c.post]}; use spaic_train.nir.load for a core Network")
        pool = {"pool": op.syn[:3], "pool_size": op.kwargs["pool_kernel_size"], "pool_stride": op.kwargs["pool_stride"]}
    w = c.weight
    return Conv2dSyn(w.weight.shape[0], **w.kwargs, **pool, **kw)


def _fold_layer(op: Op) -> Layer:
    if op.syn == "flatten":
        return Flatten()
    k = op.kwargs
    return Pool2d(op.syn[:3], k["pool_kernel_size"], k["pool_stride"], k["pool_padding"])


def assign_tensors(conn: Connection, c: ConnSpec, spec: GraphSpec) -> None:
    """Give a built connection the graph's tensors."""
    with torch.no_grad():
        conn.weight.copy_(c.weight.weight)
        if c.weight.bias is not None:
            conn.bias.copy_(c.weight.bias)
        if conn.delay is not None:
            conn.delay.copy_(spec.delay_ms(c))


def from_nir(graph_or_path: GraphLike, dt: Optional[float] = None, time_steps: Optional[int] = None,
             decoder: Optional[str] = None) -> Model:
    """Build a Keras functional :class:`~spaic_train.keras.Model` from a NIR graph or ``.nir`` file
    (``spaic_train.from_nir``).

    Same arguments and conventions as :func:`spaic_train.nir.load` (``dt`` in seconds per step); the result is
    the same network made of layers, so it can be ``compile``-d, ``fit`` and ``save``-d: an ``Input`` per
    ``Input`` node, per neuron node one layer of the link type of its inputs (``Full``, ``Conv2dSyn`` with an
    avg/sum ``pool``, ``OneToOne``) with ``Flatten``/``Pool2d`` in front as the graph has them, and a
    ``Feedback`` per edge closing a cycle.

    Raises:
        ValueError: besides :func:`spaic_train.nir.load`'s cases, a graph layers cannot express: a neuron node
            whose inputs use different kinds of weights, ops after a ``Full``/``OneToOne`` weight, a group that
            leads to no ``Output``.
    """
    spec = GraphSpec(read_graph(graph_or_path), dt)
    tensors, layers, inputs = {}, {}, []
    for name in spec.order:
        part, attr = spec.parts[name], spec.attr[name]
        if isinstance(part, Source):
            inputs.append(Input(spec.shapes[name], encoder=part.coding, name=attr, **part.params))
            tensors[name] = inputs[-1].output
            continue
        conns = spec.incoming(name, backward=False)
        kinds = {c.weight.link_type for c in conns}
        if len(kinds) != 1 or len({c.ops_signature()[1] for c in conns}) != 1:
            raise ValueError(f"NIR node {name!r}: a Keras layer gives all its inputs one link type and the same ops "
                             f"after the weight, but its inputs are {[c.label for c in conns]}; use "
                             "spaic_train.nir.load for a core Network")
        delayed = [float(spec.delay_ms(c).max()) for c in conns if c.delayed]
        kw = {"neuron": part.model, "neuron_kwargs": part.params, "name": attr,
              "max_delay": max(delayed, default=0.0), "delay": 0.0 if delayed else None,
              "bias": 0.0 if any(c.weight.bias is not None for c in conns) else None}
        layer = lookup(LINK_TO_LAYER, "link type", kinds.pop(), f"NIR node {name!r}")(conns[0], **kw)
        ins = []
        for c in conns:
            t = tensors[c.src]
            for op in c.pre:
                t = _fold_layer(op)(t)
            ins.append(t)
        tensors[name] = layer(ins)
        layers[name] = (layer, conns)
    feedback = []
    for c in [c for c in spec.conns if c.backward]:
        delay = {"max_delay": float(spec.delay_ms(c).max()), "delay": 0.0} if c.delayed else {}
        fb = Feedback(spec.attr[c.src], spec.attr[c.dst], link_type=c.weight.link_type, syn_type=c.syn_type,
                      syn_kwargs=c.syn_kwargs(), bias=None if c.weight.bias is None else 0.0, **c.weight.kwargs,
                      **delay)
        feedback.append((fb, c))
    reached = _reached(spec, [o for o, _ in spec.outputs])
    for name in layers:
        if name not in reached:
            raise ValueError(f"NIR node {name!r} leads to no Output through forward edges; a Keras model consists of "
                             "the layers its outputs depend on; use spaic_train.nir.load for a core Network")
    model = Model(inputs, [tensors[o] for o, _ in spec.outputs],
                  time_steps=time_steps if time_steps is not None else spec.time_steps,
                  decoder=[decoder or coding or "sequence" for _, coding in spec.outputs], dt=spec.dt_ms,
                  feedback=[fb for fb, _ in feedback])
    for layer, conns in layers.values():
        for conn, c in zip(layer.connections, conns):
            assign_tensors(conn, c, spec)
    for fb, c in feedback:
        assign_tensors(fb.connection, c, spec)
    return model


def _reached(spec: GraphSpec, outputs: list[str]) -> set[str]:
    """The assemblies the outputs depend on through forward connections."""
    seen, todo = set(outputs), list(outputs)
    while todo:
        for c in spec.incoming(todo.pop(), backward=False):
            if c.src not in seen:
                seen.add(c.src)
                todo.append(c.src)
    return seen
