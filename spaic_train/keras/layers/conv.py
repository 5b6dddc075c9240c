"""``Conv2dSyn``: conv synapses (optionally + batch norm, pooling, dropout) into neurons, with an optional
residual shortcut (a ResNet basic block is two of them)."""

from __future__ import annotations

import math
from typing import Any, Optional, Union

from ... import init as _init
from ...connection import Connection
from ...connection.synapses import SYNAPSES
from .base import PendingOp, Shape, SymbolicTensor, format_shape, register_layer
from .checks import (
    batchnorm_op,
    check_batchnorm,
    check_bias,
    check_fraction,
    check_int_pair,
    check_padding,
    check_positive_int,
)
from .config import to_json_value
from .neuron import NeuronLayer

__all__ = ["Conv2dSyn"]


@register_layer
class Conv2dSyn(NeuronLayer):
    """Convolutional spiking layer: conv synapses (optionally + batch norm, pooling, dropout) into neurons.

    Builds ``Connection(link_type='conv', syn_type=['conv'[, 'batchnorm'][, pool][, 'dropout']])`` (pool:
    ``'maxpool'``, ``'avgpool'`` or ``'sumpool'``) into a ``NeuronGroup`` whose shape the connection infers.  The
    pool / batch norm / dropout act on the synaptic current, before the neurons; ``pool_position='after'`` pools
    the spikes instead (as a ``Pool2d`` layer after this one would).

    Args:
        out_channels: output channels.
        kernel_size, stride, padding, dilation, groups: as ``torch.nn.Conv2d`` (``padding`` may be
            ``'same'``/``'valid'``).
        pool: ``None``, ``'max'``, ``'avg'`` or ``'sum'``.
        pool_size: pooling window (int or pair); ``pool_stride`` defaults to the window.
        pool_position: ``'before'`` (default) the neurons: pool the synaptic current, so the neurons have the pooled
            shape; ``'after'``: pool the neurons' spikes (SpikingJelly's conv-BN-LIF-pool order): the neurons have
            the conv's shape, the layer's output the pooled one, and the pool is folded into the next neuron layer's
            synapses like a ``Pool2d`` layer (so a model cannot end on it).
        dropout: drop probability in ``[0, 1)`` (one mask per sample, shared by all steps) or ``None``.
        batchnorm: ``False``, ``True``, or a dict of ``eps``/``momentum``/``affine``.  In training the
            statistics are taken over all ``T·B`` samples (and ``H·W``) of a run, as tdBN does.
        shortcut: ``None`` (default), or the residual shortcut of a ResNet basic block for a layer called
            on two inputs ``[h, x]``: ``h`` goes through the layer's conv chain, and ``x`` (the block's
            input) is added to the current of the same neurons, ``out = neuron(BN(conv(h)) + shortcut(x))``:

            * ``'identity'``: one-to-one synapses of fixed weight 1 (``Connection(link_type='one_to_one',
              is_parameter=False)``); ``x`` must have the output shape;
            * ``'projection'``: a 1×1 conv (no bias; stride = input size // output size, so it matches a
              strided first conv of the block), then batch norm when the layer has ``batchnorm``;
            * ``'auto'``: ``'identity'`` when ``x`` has the output shape, else ``'projection'``.

            Without a shortcut, every input gets its own copy of the conv chain (their currents sum).
        bias: ``True`` (default, as ``nn.Conv2d``), ``False``/``None``, a number, a tensor ``(out_channels,)`` or an
            initializer; see :class:`Full`.
        neuron, neuron_kwargs, surrogate, max_delay, delay, name, **connection_kwargs: see :class:`Full`;
            delays are per ``(out_channel, in_channel/groups)`` pair (main path only).

    Input ``(C, H, W)``; output ``(out_channels, H', W')`` with
    ``H' = floor((H + 2p - d(k-1) - 1)/s) + 1`` then ``floor((H' - pool)/pool_stride) + 1``.
    Parameters: ``out·(C/groups)·kh·kw`` (+ ``out`` with a bias, + ``2·out`` with an affine batch norm;
    a projection shortcut adds ``out·C_x`` (+ ``2·out``), an identity one ``C·H·W`` frozen weights).
    """

    #: values of ``shortcut=``
    SHORTCUTS = (None, "auto", "identity", "projection")
    #: values of ``pool_position=``
    POOL_POSITIONS = ("before", "after")

    default_name = "conv"
    link_type = "conv"
    takes_bias = True

    def __init__(self, out_channels: int, kernel_size=3, stride=1, padding=0, dilation=1, groups: int = 1,
                 pool: Optional[str] = None, pool_size=2, pool_stride=None, dropout: Optional[float] = None,
                 batchnorm: Union[bool, dict[str, Any]] = False, shortcut: Optional[str] = None,
                 neuron: Optional[str] = "lif", neuron_kwargs=None, surrogate=None, max_delay: float = 0.0,
                 delay=None, name: Optional[str] = None, bias=True, pool_position: str = "before",
                 **connection_kwargs):
        super().__init__(neuron, neuron_kwargs, surrogate, max_delay, delay, name, **connection_kwargs)
        self.bias = check_bias(self.label, bias)
        self.out_channels = check_positive_int(self.label, "out_channels", out_channels)
        self.kernel_size = check_int_pair(self.label, "kernel_size", kernel_size)
        self.stride = check_int_pair(self.label, "stride", stride)
        self.padding = check_padding(self.label, padding, stride)
        self.dilation = check_int_pair(self.label, "dilation", dilation)
        self.groups = check_positive_int(self.label, "groups", groups)
        if self.out_channels % self.groups:
            raise ValueError(f"{self.label}: groups={groups!r} must divide out_channels={out_channels!r} (and the "
                             "input's channels)")
        if pool not in (None, "max", "avg", "sum"):
            raise ValueError(f"{self.label}: pool must be None, 'max', 'avg' or 'sum', got {pool!r}")
        self.pool = pool
        self.pool_size = check_int_pair(self.label, "pool_size", pool_size)
        self.pool_stride = None if pool_stride is None else check_int_pair(self.label, "pool_stride", pool_stride)
        if pool_position not in self.POOL_POSITIONS:
            raise ValueError(f"{self.label}: pool_position must be 'before' (pool the synaptic current) or 'after' "
                             f"(pool the spikes), got {pool_position!r}")
        if pool_position == "after" and pool is None:
            raise ValueError(f"{self.label}: pool_position='after' needs a pool ('max', 'avg' or 'sum'), got pool=None")
        self.pool_position = pool_position
        if dropout is not None:
            check_fraction(self.label, "dropout", dropout)
        self.dropout = dropout
        self.batchnorm = check_batchnorm(self.label, batchnorm)
        if shortcut not in self.SHORTCUTS:
            raise ValueError(f"{self.label}: shortcut must be one of {self.SHORTCUTS}, got {shortcut!r}")
        self.shortcut = shortcut

    def _build(self, inputs):
        return self._pool_spikes(self._build_neurons(inputs))

    def _build_neurons(self, inputs):
        if self.shortcut is None:
            return super()._build(inputs)
        if len(inputs) != 2:
            raise ValueError(f"shortcut={self.shortcut!r} needs exactly two inputs [h, x] (h through the conv, x the "
                             f"block input added through the shortcut), got {len(inputs)}")
        main, skip = inputs
        self._check_input(skip)
        if skip.ops:
            raise ValueError(f"the shortcut input from {skip.layer.label} passes through "
                             f"{', '.join(op.layer.label for op in skip.ops)}; a shortcut reads the output of a neuron "
                             "layer or Input directly")
        out = super()._build([main])
        self.connections.append(self._shortcut_connection(skip, out.shape))
        return out

    def _pool_spikes(self, out: SymbolicTensor) -> SymbolicTensor:
        """With ``pool_position='after'``: the neurons' output with the pool pending, folded into the next layer."""
        if self.pool_position != "after":
            return out
        syn = f"{self.pool}pool"
        params = {"pool_kernel_size": self.pool_size, "pool_stride": self.pool_stride}
        shape = tuple(SYNAPSES.get(syn)(self.label, out.shape, params).output_shape(out.shape))
        return SymbolicTensor(self, shape, out.node, (PendingOp(syn, params, self),))

    def _shortcut_connection(self, skip: SymbolicTensor, out_shape: Shape) -> Connection:
        kind = self.shortcut
        if kind == "auto":
            kind = "identity" if skip.shape == out_shape else "projection"
        if kind == "identity":
            if skip.shape != out_shape:
                raise ValueError(f"shortcut='identity' needs the input from {skip.layer.label} to have the output "
                                 f"shape {format_shape(out_shape)}, got {format_shape(skip.shape)}; use "
                                 "shortcut='projection' or 'auto'")
            return Connection(skip.node, self.group, link_type="one_to_one", weight=1.0, is_parameter=False)
        weight = self.connection_kwargs.get("weight")
        if not isinstance(weight, _init.Initializer):
            weight = _init.kaiming_uniform(a=math.sqrt(5))
        stride = tuple(max(1, i // o) for i, o in zip(skip.shape[1:], out_shape[1:]))
        return Connection(skip.node, self.group, link_type="conv",
                          syn_type=["conv", "batchnorm"] if self.batchnorm else ["conv"],
                          syn_kwargs=dict(self.batchnorm) if isinstance(self.batchnorm, dict) else {},
                          out_channels=self.out_channels, kernel_size=1, stride=stride, weight=weight)

    def _check_input(self, t):
        if len(t.shape) != 3:
            raise ValueError(f"expected an input of shape (C, H, W), got {format_shape(t.shape)} from {t.layer.label}")

    def _group_shape(self, inputs):
        return None  # inferred by the conv connection

    def _weight_op(self):
        return "conv"

    def _link_kwargs(self):
        return {"out_channels": self.out_channels, "kernel_size": self.kernel_size, "stride": self.stride,
                "padding": self.padding, "dilation": self.dilation, "groups": self.groups}

    def _post_ops(self):
        ops = batchnorm_op(self.batchnorm)
        if self.pool is not None and self.pool_position == "before":
            ops.append((f"{self.pool}pool", {"pool_kernel_size": self.pool_size, "pool_stride": self.pool_stride}))
        if self.dropout is not None:
            ops.append(("dropout", {"p": float(self.dropout)}))
        return ops

    def get_config(self):
        return {"out_channels": self.out_channels, "kernel_size": to_json_value(self.label, "kernel_size",
                                                                                self.kernel_size),
                "stride": to_json_value(self.label, "stride", self.stride),
                "padding": to_json_value(self.label, "padding", self.padding),
                "dilation": to_json_value(self.label, "dilation", self.dilation), "groups": self.groups,
                "pool": self.pool, "pool_size": to_json_value(self.label, "pool_size", self.pool_size),
                "pool_stride": to_json_value(self.label, "pool_stride", self.pool_stride),
                "dropout": self.dropout, "batchnorm": to_json_value(self.label, "batchnorm", self.batchnorm),
                "shortcut": self.shortcut, "pool_position": self.pool_position, **super().get_config()}


