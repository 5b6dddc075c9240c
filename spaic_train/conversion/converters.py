"""One converter per ANN part, in two registries: :data:`MODULE_CONVERTERS` (leaf ``nn.Module`` classes, by class
name) and :data:`FUNCTION_CONVERTERS` (functions and tensor methods in the traced graph, by name).

A converter is ``fn(ctx, node, module, args, kwargs) -> value``: ``args``/``kwargs`` are the node's arguments with
graph values replaced by :class:`~.plan.Act` / :class:`~.plan.Pre` (``None`` for non-tensors such as ``x.size(0)``);
it returns the node's value.  ``ctx`` is the :class:`~.trace.TraceContext` (shapes, layers, options, errors).
Adding a part is one decorated function here.
"""

from __future__ import annotations

import operator
from typing import Any

import torch
from torch import nn

from ..registry import Registry
from .plan import Act, Affine, Fold, Pre, Term

__all__ = ["FUNCTION_CONVERTERS", "MODULE_CONVERTERS"]

MODULE_CONVERTERS: Registry = Registry("convertible module")
FUNCTION_CONVERTERS: Registry = Registry("convertible function")



def _pair(v) -> tuple:
    return tuple(v) if isinstance(v, (tuple, list)) else (int(v), int(v))


def _arg(args, kwargs, i: int, name: str, default=None):
    if len(args) > i:
        return args[i]
    return kwargs.get(name, default)


# ---------------------------------------------------------------------------------------------- weight ops
def _affine_on(ctx, node, value, affine: Affine):
    if isinstance(value, Pre):
        ctx.fail(node, f"a {affine.kind} weight op reads a pre-activation (two weight ops with no activation between "
                       "them); put a ReLU between them or merge them into one layer")
    if not isinstance(value, Act):
        ctx.fail(node, "a weight op must read the network input or an activation")
    return Pre([Term(value.layer, list(value.folds), affine)])


@MODULE_CONVERTERS.register_each("Conv2d")
def _conv2d(ctx, node, mod: nn.Conv2d, args, kwargs):
    if mod.padding_mode != "zeros":
        ctx.fail(node, f"padding_mode={mod.padding_mode!r} (only 'zeros' is supported)")
    conv = {"kernel_size": tuple(mod.kernel_size), "stride": tuple(mod.stride), "dilation": tuple(mod.dilation),
            "groups": mod.groups,
            "padding": mod.padding if isinstance(mod.padding, str) else tuple(mod.padding)}
    bias = None if mod.bias is None else mod.bias.detach().clone()
    return _affine_on(ctx, node, args[0], Affine("conv", mod.weight.detach().clone(), bias, ctx.path(node), conv))


@MODULE_CONVERTERS.register_each("Linear")
def _linear(ctx, node, mod: nn.Linear, args, kwargs):
    value = args[0]
    if isinstance(value, Act) and len(ctx.in_shape(node)) != 1:
        ctx.fail(node, f"a Linear reads a value of shape {ctx.in_shape(node)} per sample; flatten it first")
    bias = None if mod.bias is None else mod.bias.detach().clone()
    return _affine_on(ctx, node, value, Affine("linear", mod.weight.detach().clone(), bias, ctx.path(node)))


@MODULE_CONVERTERS.register_each("BatchNorm1d", "BatchNorm2d")
def _batchnorm(ctx, node, mod: nn.modules.batchnorm._BatchNorm, args, kwargs):
    value = args[0]
    if not isinstance(value, Pre) or any(t.affine is None for t in value.terms):
        ctx.fail(node, "batch norm is folded into the weight op before it, but none precedes it directly")
    if mod.running_mean is None:
        ctx.fail(node, "batch norm without running statistics (track_running_stats=False) cannot be folded")
    if any(f.kind != "avgpool" for t in value.terms for f in t.post):
        ctx.fail(node, "batch norm after a max pooling of the current cannot be folded (a negative scale would "
                       "change which input is the maximum)")
    scale = torch.rsqrt(mod.running_var.detach().double() + mod.eps)
    if mod.weight is not None:
        scale = scale * mod.weight.detach().double()
    shift = -mod.running_mean.detach().double() * scale
    if mod.bias is not None:
        shift = shift + mod.bias.detach().double()
    terms = []
    for i, t in enumerate(value.terms):
        a = t.affine
        w = a.weight.double() * scale.view(-1, *([1] * (a.weight.dim() - 1)))
        b = None if a.bias is None else a.bias.double() * scale
        if i == 0:
            b = shift if b is None else b + shift
        dtype = a.weight.dtype
        terms.append(Term(t.source, t.folds, Affine(a.kind, w.to(dtype), None if b is None else b.to(dtype),
                                                    a.path, a.conv), list(t.post)))
    return Pre(terms)


# ---------------------------------------------------------------------------------------------- activations
def _activation(ctx, node, value, clip=None, qcfs=None):
    if isinstance(value, Act):
        if clip is not None or qcfs is not None:
            ctx.fail(node, "a clipping activation directly after another activation has no spiking form")
        return value  # ReLU of a rate is the rate
    if not isinstance(value, Pre):
        ctx.fail(node, "an activation must read a pre-activation (the output of a weight op)")
    return ctx.new_layer(node, value, clip=clip, qcfs=qcfs)


@MODULE_CONVERTERS.register_each("ReLU")
def _relu(ctx, node, mod, args, kwargs):
    return _activation(ctx, node, args[0])


@FUNCTION_CONVERTERS.register_each("relu", "relu_")
def _relu_fn(ctx, node, fn, args, kwargs):
    return _activation(ctx, node, args[0])


@MODULE_CONVERTERS.register_each("ReLU6")
def _relu6(ctx, node, mod, args, kwargs):
    return _activation(ctx, node, args[0], clip=6.0)


@MODULE_CONVERTERS.register_each("Hardtanh")
def _hardtanh(ctx, node, mod: nn.Hardtanh, args, kwargs):
    if mod.min_val != 0.0 or mod.max_val <= 0:
        ctx.fail(node, f"Hardtanh(min_val={mod.min_val}, max_val={mod.max_val}): only a clip to [0, max_val] with "
                       "max_val > 0 has a spiking form")
    return _activation(ctx, node, args[0], clip=float(mod.max_val))


@FUNCTION_CONVERTERS.register_each("clamp", "clip")
def _clamp(ctx, node, fn, args, kwargs):
    lo, hi = _arg(args, kwargs, 1, "min"), _arg(args, kwargs, 2, "max")
    if lo != 0 or not isinstance(hi, (int, float)) or hi <= 0:
        ctx.fail(node, f"clamp(min={lo}, max={hi}): only a clip to [0, max] with a number max > 0 has a spiking form")
    return _activation(ctx, node, args[0], clip=float(hi))


@MODULE_CONVERTERS.register_each("QCFS")
def _qcfs(ctx, node, mod, args, kwargs):
    return _activation(ctx, node, args[0], clip=float(mod.threshold.detach()), qcfs=(mod.levels, mod.shift))


# ---------------------------------------------------------------------------------------------- pooling, shapes
def _pool(ctx, node, value, kind: str, size, stride, padding):
    size = _pair(size)
    stride = size if stride is None or stride == [] else _pair(stride)
    if kind == "maxpool" and ctx.maxpool == "avg":
        kind = "avgpool"
    fold = Fold(kind, ctx.path(node), size, stride, _pair(padding))
    if isinstance(value, Pre):
        if len(value.terms) != 1 or value.terms[0].affine is None or value.terms[0].affine.kind != "conv" \
                or value.terms[0].post or fold.padding != (0, 0):
            ctx.fail(node, "pooling of a pre-activation is supported right after a single conv (no padding)")
        t = value.terms[0]
        return Pre([Term(t.source, t.folds, t.affine, [fold])])
    if kind == "maxpool" and ctx.maxpool == "current" and ctx.move_pool_into_layer(node, value, fold):
        return Act(value.layer, [], node.name)
    return Act(value.layer, value.folds + [fold], value.node)


@MODULE_CONVERTERS.register_each("MaxPool2d")
def _maxpool(ctx, node, mod: nn.MaxPool2d, args, kwargs):
    if mod.ceil_mode or mod.return_indices or _pair(mod.dilation) != (1, 1):
        ctx.fail(node, "MaxPool2d with ceil_mode, return_indices or dilation is not supported")
    return _pool(ctx, node, args[0], "maxpool", mod.kernel_size, mod.stride, mod.padding)


@FUNCTION_CONVERTERS.register_each("max_pool2d")
def _maxpool_fn(ctx, node, fn, args, kwargs):
    if _arg(args, kwargs, 5, "ceil_mode", False) or _pair(_arg(args, kwargs, 4, "dilation", 1)) != (1, 1):
        ctx.fail(node, "max_pool2d with ceil_mode or dilation is not supported")
    return _pool(ctx, node, args[0], "maxpool", _arg(args, kwargs, 1, "kernel_size"),
                 _arg(args, kwargs, 2, "stride"), _arg(args, kwargs, 3, "padding", 0))


@MODULE_CONVERTERS.register_each("AvgPool2d")
def _avgpool(ctx, node, mod: nn.AvgPool2d, args, kwargs):
    if mod.ceil_mode or mod.divisor_override is not None or (_pair(mod.padding) != (0, 0)
                                                            and not mod.count_include_pad):
        ctx.fail(node, "AvgPool2d with ceil_mode, divisor_override or count_include_pad=False is not supported")
    return _pool(ctx, node, args[0], "avgpool", mod.kernel_size, mod.stride, mod.padding)


@FUNCTION_CONVERTERS.register_each("avg_pool2d")
def _avgpool_fn(ctx, node, fn, args, kwargs):
    return _pool(ctx, node, args[0], "avgpool", _arg(args, kwargs, 1, "kernel_size"),
                 _arg(args, kwargs, 2, "stride"), _arg(args, kwargs, 3, "padding", 0))


def _adaptive_avg(ctx, node, value, output_size):
    h, w = ctx.in_shape(node)[-2:]
    oh, ow = _pair(output_size)
    if h % oh or w % ow:
        ctx.fail(node, f"adaptive average pooling from {h}x{w} to {oh}x{ow}: only whole windows are supported")
    return _pool(ctx, node, value, "avgpool", (h // oh, w // ow), None, 0)


@MODULE_CONVERTERS.register_each("AdaptiveAvgPool2d")
def _adaptive(ctx, node, mod, args, kwargs):
    return _adaptive_avg(ctx, node, args[0], mod.output_size)


@FUNCTION_CONVERTERS.register_each("adaptive_avg_pool2d")
def _adaptive_fn(ctx, node, fn, args, kwargs):
    return _adaptive_avg(ctx, node, args[0], _arg(args, kwargs, 1, "output_size"))


def _flatten(ctx, node, value):
    out = ctx.out_shape(node)
    if len(out) != 1:
        ctx.fail(node, f"only a flatten to one dimension per sample is supported, got {out}")
    if len(ctx.in_shape(node)) == 1:
        return value
    if not isinstance(value, Act):
        ctx.fail(node, "flattening a pre-activation (a weight op with no activation after it) is not supported")
    return Act(value.layer, value.folds + [Fold("flatten", ctx.path(node))], value.node)


@MODULE_CONVERTERS.register_each("Flatten")
def _flatten_mod(ctx, node, mod, args, kwargs):
    return _flatten(ctx, node, args[0])


@FUNCTION_CONVERTERS.register_each("flatten", "view", "reshape")
def _flatten_fn(ctx, node, fn, args, kwargs):
    return _flatten(ctx, node, args[0])


@FUNCTION_CONVERTERS.register_each("mean")
def _mean(ctx, node, fn, args, kwargs):
    dims = _arg(args, kwargs, 1, "dim")
    dims = tuple(d % 4 for d in (dims if isinstance(dims, (tuple, list)) else (dims,))) if dims is not None else ()
    if len(ctx.in_shape(node)) != 3 or sorted(dims) != [2, 3] or _arg(args, kwargs, 2, "keepdim", False):
        ctx.fail(node, "mean is supported as global average pooling, x.mean((2, 3)) of an [N, C, H, W] value")
    h, w = ctx.in_shape(node)[-2:]
    pooled = _pool(ctx, node, args[0], "avgpool", (h, w), None, 0)
    return Act(pooled.layer, pooled.folds + [Fold("flatten", ctx.path(node))], pooled.node)


# ---------------------------------------------------------------------------------------------- no-ops
@MODULE_CONVERTERS.register_each("Dropout", "Dropout1d", "Dropout2d", "Identity")
def _identity(ctx, node, mod, args, kwargs):
    return args[0]


@FUNCTION_CONVERTERS.register_each("dropout", "contiguous")
def _identity_fn(ctx, node, fn, args, kwargs):
    return args[0]


@FUNCTION_CONVERTERS.register_each("size", "dim", "getattr", "getitem")
def _meta(ctx, node, fn, args, kwargs):
    if fn is operator.getitem and isinstance(args[0], (Act, Pre)):
        ctx.fail(node, "indexing a value of the network is not supported")
    return None


# ---------------------------------------------------------------------------------------------- residual sums
@FUNCTION_CONVERTERS.register_each("add", "add_", "iadd")
def _add(ctx, node, fn, args, kwargs):
    a, b = args[0], args[1]
    if not isinstance(a, (Act, Pre)) or not isinstance(b, (Act, Pre)):
        ctx.fail(node, "only the sum of two values of the network (a residual addition) is supported, not the "
                       "addition of a constant")
    if isinstance(a, Act) and isinstance(b, Act):
        ctx.fail(node, "a sum of two activations without a weight op on either side has no spiking layer to drive; "
                       "residual additions are supported as weight op + shortcut")
    terms = []
    for v in (a, b):
        terms += v.terms if isinstance(v, Pre) else [Term(v.layer, list(v.folds), None)]
    return Pre(terms)


def describe_supported() -> str:
    """Every convertible part, for error messages."""
    return f"modules: {MODULE_CONVERTERS.describe()}; functions: {FUNCTION_CONVERTERS.describe()}"


def function_name(target: Any) -> str:
    """The registry key of a ``call_function`` / ``call_method`` target (``operator.add`` → ``'add'``)."""
    if isinstance(target, str):
        return target
    return getattr(target, "__name__", repr(target))
