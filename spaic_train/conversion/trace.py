"""Trace an ANN with ``torch.fx`` and turn its graph into a :class:`~.plan.NetworkPlan` (one converter per node)."""

from __future__ import annotations

from typing import Optional

import torch
from torch import fx, nn
from torch.fx.passes.shape_prop import ShapeProp

from .converters import FUNCTION_CONVERTERS, MODULE_CONVERTERS, describe_supported, function_name
from .plan import INPUT, Act, ConversionError, Fold, LayerPlan, NetworkPlan, Pre

__all__ = ["MAXPOOL_MODES", "TraceContext", "trace"]

#: how a max pooling after an activation is converted (see :func:`spaic_train.convert`)
MAXPOOL_MODES = ("current", "spikes", "avg")


def _nodes_of(value):
    if isinstance(value, fx.Node):
        return [value]
    if isinstance(value, (list, tuple)):
        return [n for v in value for n in _nodes_of(v)]
    return []


class _Tracer(fx.Tracer):
    """``torch.fx``'s tracer, with every module that has a converter (QCFS, ...) kept whole, as torch's own are."""

    def is_leaf_module(self, m: nn.Module, qualname: str) -> bool:
        return type(m).__name__ in MODULE_CONVERTERS or super().is_leaf_module(m, qualname)


class TraceContext:
    """What the converters see: shapes, the layers so far, options, and :meth:`fail`."""

    def __init__(self, gm: fx.GraphModule, owner: str, maxpool: str):
        self.gm = gm
        self.owner = owner
        self.maxpool = maxpool
        self.layers: list[LayerPlan] = []
        self.nodes = {n.name: n for n in gm.graph.nodes}

    # ---- shapes ------------------------------------------------------------------------------------------------
    @staticmethod
    def _shape(node: fx.Node) -> tuple:
        meta = node.meta.get("tensor_meta")
        return tuple(meta.shape[1:]) if meta is not None and hasattr(meta, "shape") else ()

    def out_shape(self, node: fx.Node) -> tuple:
        """Shape of one sample of ``node``'s value (no batch)."""
        return self._shape(node)

    def in_shape(self, node: fx.Node) -> tuple:
        """Shape of one sample of ``node``'s first argument."""
        return self._shape(node.args[0])

    # ---- names and errors --------------------------------------------------------------------------------------
    def path(self, node: fx.Node) -> str:
        """The node's place in the ANN: a module's dotted path, or the function node inside its module."""
        if node.op == "call_module":
            return str(node.target)
        stack = node.meta.get("nn_module_stack") or {}
        inner = next(reversed(stack.values()))[0] if stack else ""
        inner = inner if isinstance(inner, str) else ""
        return f"{inner}.{node.name}" if inner else node.name

    def describe(self, node: fx.Node) -> str:
        if node.op == "call_module":
            return f"{type(self.gm.get_submodule(node.target)).__name__} at {self.path(node)!r}"
        if node.op == "get_attr":
            return f"the tensor at {node.target!r}"
        return f"{function_name(node.target)}() at {self.path(node)!r}"

    def fail(self, node: fx.Node, why: str):
        raise ConversionError(f"convert: {self.describe(node)} in {self.owner}: {why}. Supported parts: "
                              f"{describe_supported()}")

    # ---- building ----------------------------------------------------------------------------------------------
    def new_layer(self, node: fx.Node, pre: Pre, clip: Optional[float] = None, qcfs=None) -> Act:
        if not any(t.affine is not None for t in pre.terms):
            self.fail(node, "the activation reads no weight op")
        self.layers.append(LayerPlan(list(pre.terms), node.name, self.path(node), self.out_shape(node), clip, qcfs))
        return Act(len(self.layers) - 1, [], node.name)

    def move_pool_into_layer(self, node: fx.Node, value: Act, fold: Fold) -> bool:
        """Move a max pooling of a layer's activation before its neurons (max and a monotone activation commute),
        when nothing else reads the unpooled activation; ``False`` when it cannot be moved."""
        if value.layer == INPUT or value.folds or fold.padding != (0, 0):
            return False
        layer = self.layers[value.layer]
        if len(layer.terms) != 1 or layer.terms[0].affine is None or layer.terms[0].affine.kind != "conv" \
                or layer.terms[0].post:
            return False
        current = self.nodes[value.node]
        while current is not node:  # the activation must reach this pooling alone (through no-op nodes)
            if len(current.users) != 1:
                return False
            current = next(iter(current.users))
        layer.terms[0].post.append(fold)
        layer.node = node.name
        layer.shape = self.out_shape(node)
        return True


def trace(ann: nn.Module, sample: torch.Tensor, maxpool: str = "current") -> tuple[NetworkPlan, fx.GraphModule]:
    """``(plan, graph module)`` of ``ann`` (in eval mode) for inputs like ``sample`` ``[B, *shape]``."""
    owner = type(ann).__name__
    if maxpool not in MAXPOOL_MODES:
        raise ValueError(f"convert: maxpool must be one of {MAXPOOL_MODES}, got {maxpool!r}")
    try:
        tracer = _Tracer()
        graph = tracer.trace(ann)
        gm = fx.GraphModule(tracer.root, graph)
    except Exception as e:  # noqa: BLE001 - fx raises many types; all mean the same to the user
        raise ConversionError(f"convert: {owner} cannot be traced by torch.fx ({type(e).__name__}: {e}); control flow "
                              "that depends on tensor values has no static graph") from e
    with torch.no_grad():
        ShapeProp(gm).propagate(sample)
    ctx = TraceContext(gm, owner, maxpool)
    values: dict[str, object] = {}
    placeholders = [n for n in gm.graph.nodes if n.op == "placeholder"]
    if len(placeholders) != 1:
        raise ConversionError(f"convert: {owner}.forward takes {len(placeholders)} inputs; exactly one is supported")
    result = None
    for node in gm.graph.nodes:
        def resolve(a):
            return values.get(a.name) if isinstance(a, fx.Node) else a

        args = [fx.node.map_aggregate(a, resolve) for a in node.args]
        kwargs = {k: fx.node.map_aggregate(v, resolve) for k, v in node.kwargs.items()}
        if node.op == "placeholder":
            values[node.name] = Act(INPUT, [], node.name)
        elif node.op == "call_module":
            mod = gm.get_submodule(node.target)
            key = type(mod).__name__
            if key not in MODULE_CONVERTERS:
                ctx.fail(node, f"{key} is not a convertible module")
            values[node.name] = MODULE_CONVERTERS.get(key)(ctx, node, mod, args, kwargs)
        elif node.op in ("call_function", "call_method"):
            key = function_name(node.target)
            if key not in FUNCTION_CONVERTERS:
                ctx.fail(node, f"{key}() is not a convertible function")
            fn = node.target if node.op == "call_function" else None
            values[node.name] = FUNCTION_CONVERTERS.get(key)(ctx, node, fn, args, kwargs)
        elif node.op == "get_attr":
            ctx.fail(node, f"the forward pass reads the tensor {node.target!r} directly (only module calls are "
                           "converted)")
        elif node.op == "output":
            result = args[0]
            out_node = _nodes_of(node.args[0])
            if not isinstance(result, Pre) or len(out_node) != 1:
                ctx.fail(node, "the network must end with one weight op (the logits, e.g. a final Linear) and no "
                               "activation after it")
            main = [t for t in result.terms if t.affine is not None]
            if len(result.terms) != 1 or main[0].affine.kind != "linear" or main[0].post:
                ctx.fail(out_node[0], "the readout must be a single Linear (after flattening)")
            ctx.layers.append(LayerPlan(list(result.terms), out_node[0].name, ctx.path(out_node[0]),
                                        ctx.out_shape(out_node[0]), readout=True))
    input_shape = ctx.out_shape(placeholders[0])
    return NetworkPlan(input_shape, ctx.layers), gm
