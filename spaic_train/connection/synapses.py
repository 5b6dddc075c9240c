"""Synapse ops: the chain ``syn_type=[...]`` a connection applies, in list order.

Every op is an ``nn.Module`` taking and returning time-first tensors ``[T, B, *shape]``; stateless
ops fold ``T`` into the batch.  Exactly one op of the chain is the *weight op* (``'basic'`` or
``'conv'``), whose op the connection calls once per delay tap, then adds the bias; ops listed before it see
the presynaptic values, ops after it see the synaptic input.  Register a new op with::

    @SYNAPSES.register("my_op")
    class MyOp(Synapse):
        params = {"my_param": 1.0}        # read from syn_kwargs (or the connection's kwargs)
        def output_shape(self, in_shape): ...
        def forward(self, x): ...

==============  ====================================================================================
name            op
==============  ====================================================================================
``basic``       the link's weight op (matmul, elementwise, sparse or conv) — bias added right after
``conv``        the same for a ``conv`` link (an error with any other link type)
``maxpool``     ``max_pool2d`` (``pool_kernel_size=[2, 2]``, ``pool_stride`` = kernel, ``pool_padding=0``)
``avgpool``     ``avg_pool2d`` (same kwargs)
``sumpool``     sum over each window (``avg_pool2d`` times the window size; NIR's ``SumPool2d``; same kwargs)
``dropout``     dropout with ``p`` (default 0.5) from ``syn_kwargs``; one mask per sample shared by all
                time steps, kept until ``reset_state()``; identity in ``eval()``
``flatten``     ``(*shape)`` → ``(prod(shape),)``
``batchnorm``   batch norm over channels (dim 0 of the sample shape) with running statistics;
                training statistics over all ``T·B`` samples of a call
==============  ====================================================================================
"""

from __future__ import annotations

import math
from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

from ..registry import Registry
from .checks import int_pair
from .links import POOL_PARAMS, ConvLink, Link
from .spike_ops import spike_max_pool2d

__all__ = ["SYNAPSES", "Synapse", "BasicSynapse", "ConvSynapse", "MaxPool", "AvgPool", "SumPool", "Dropout",
           "Flatten", "BatchNorm"]

#: registry of synapse ops (``Connection(syn_type=[...])``)
SYNAPSES: Registry = Registry("synapse type")


def _fold(x: torch.Tensor) -> torch.Tensor:
    return x.reshape(x.shape[0] * x.shape[1], *x.shape[2:])


def _unfold(y: torch.Tensor, T: int) -> torch.Tensor:
    return y.reshape(T, y.shape[0] // T, *y.shape[1:])


class Synapse(nn.Module):
    """Base class of synapse ops.

    Args:
        owner: label of the owning connection (for error messages).
        in_shape: shape of one sample entering the op (no time, no batch).
        params: the connection's kwargs merged with ``syn_kwargs`` (``syn_kwargs`` wins); each op
            reads the keys of its :attr:`params` dict.
        link: the connection's link (used by the weight ops).
    """

    #: kwargs read by this op, with defaults
    params: dict[str, object] = {}
    #: True for the op that applies the connection's weight
    is_weight_op = False

    def __init__(self, owner: str, in_shape: tuple[int, ...], params: dict, link: Optional[Link] = None):
        super().__init__()
        self.owner = owner
        self.in_shape = tuple(in_shape)

    def output_shape(self, in_shape: tuple[int, ...]) -> tuple[int, ...]:
        """Shape of one sample after the op."""
        return tuple(in_shape)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # [T, B, *in] -> [T, B, *out]
        return x

    def reset_state(self) -> None:
        """Forget per-run state (nothing by default)."""


@SYNAPSES.register("basic")
class BasicSynapse(Synapse):
    """The link's weight op; the connection calls it once per delay tap (with the tap's weight) and adds the bias."""

    is_weight_op = True

    def __init__(self, owner, in_shape, params, link=None):
        super().__init__(owner, in_shape, params, link)
        self._link = (link,)  # not a module

    @property
    def link(self) -> Link:
        return self._link[0]

    def output_shape(self, in_shape):
        return self.link.output_shape(in_shape)

    def forward(self, x: torch.Tensor, weight: torch.Tensor, bits: Optional[torch.Tensor] = None,
                **buffers: torch.Tensor) -> torch.Tensor:
        """Undelayed weight op without bias, ``[T, B, *in] → [T, B, *out]`` (``buffers``: the link's extra buffers,
        see :meth:`~spaic_train.connection.links.Link.op`; ``bits``: ``x`` as bool when it holds spikes, so that
        only 1 byte per spike is saved for backward, see :mod:`~spaic_train.connection.spike_ops`)."""
        if bits is not None:
            return _unfold(self.link.spike_op(_fold(x), _fold(bits), weight, **buffers), x.shape[0])
        return _unfold(self.link.op(_fold(x), weight, **buffers), x.shape[0])


@SYNAPSES.register("conv", "conv2d")
class ConvSynapse(BasicSynapse):
    """Convolution synapse: the weight op of a ``conv`` link (SPAIC pairs conv links with it)."""

    def __init__(self, owner, in_shape, params, link=None):
        if not isinstance(link, ConvLink):
            name = link.name if link is not None else None
            raise ValueError(f"{owner}: synapse type 'conv' needs link_type='conv', got link_type={name!r}; "
                             "use syn_type=['basic'] for other link types")
        super().__init__(owner, in_shape, params, link)


class _Pool(Synapse):
    params = dict(POOL_PARAMS)
    _fn = None

    def __init__(self, owner, in_shape, params, link=None):
        super().__init__(owner, in_shape, params, link)
        kind = type(self).__name__
        if len(self.in_shape) != 3:
            raise ValueError(f"{owner}: {kind} needs an input of shape (channels, height, width), got {self.in_shape}")
        self.kernel_size = int_pair(owner, "pool_kernel_size", params.get("pool_kernel_size", [2, 2]))
        stride = params.get("pool_stride", None)
        self.stride = self.kernel_size if stride is None else int_pair(owner, "pool_stride", stride)
        self.padding = int_pair(owner, "pool_padding", params.get("pool_padding", 0), allow_zero=True)
        if any(2 * p > k for p, k in zip(self.padding, self.kernel_size)):
            raise ValueError(f"{owner}: pool_padding={self.padding} must be at most half of "
                             f"pool_kernel_size={self.kernel_size}")
        self.output_shape(self.in_shape)

    def output_shape(self, in_shape):
        out = []
        for size, k, s, p in zip(in_shape[1:], self.kernel_size, self.stride, self.padding):
            n = (size + 2 * p - k) // s + 1
            if n < 1:
                raise ValueError(f"{self.owner}: {type(self).__name__} input {tuple(in_shape)} is too small for "
                                 f"pool_kernel_size={self.kernel_size}, pool_padding={self.padding}")
            out.append(n)
        return (in_shape[0], *out)

    def forward(self, x):
        y = type(self)._fn(_fold(x), self.kernel_size, self.stride, self.padding)
        return _unfold(y, x.shape[0])

    def extra_repr(self):
        return f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}"


@SYNAPSES.register("maxpool", "max_pool", "maxpool2d")
class MaxPool(_Pool):
    """2-D max pooling over ``(C, H, W)`` samples (really max; SPAIC's pool link averages).  A spike input is
    kept for backward as 1 byte per spike (:func:`~spaic_train.connection.spike_ops.spike_max_pool2d`)."""

    _fn = F.max_pool2d

    def forward(self, x):
        return _unfold(spike_max_pool2d(_fold(x), self.kernel_size, self.stride, self.padding), x.shape[0])


@SYNAPSES.register("avgpool", "avg_pool", "avgpool2d")
class AvgPool(_Pool):
    """2-D average pooling over ``(C, H, W)`` samples (zero padding counted, as in torch)."""

    _fn = F.avg_pool2d


def _sum_pool2d(x, kernel_size, stride, padding):
    return F.avg_pool2d(x, kernel_size, stride, padding, divisor_override=1)


@SYNAPSES.register("sumpool", "sum_pool", "sumpool2d")
class SumPool(_Pool):
    """2-D sum pooling over ``(C, H, W)`` samples: the sum of each window (zero padding adds nothing)."""

    _fn = _sum_pool2d


@SYNAPSES.register("dropout")
class Dropout(Synapse):
    """Dropout with drop probability ``p`` (``syn_kwargs={'p': ...}``, default 0.5).

    One mask of shape ``[B, *shape]`` (scaled by ``1/(1-p)``) per call sequence, shared by all time
    steps, so a neuron dropped in a sample stays dropped for the whole run; it is kept across
    step-by-step calls until :meth:`reset_state` (or until the batch size/device changes).
    Identity in ``eval()`` mode.
    """

    params = {"p": 0.5}

    def __init__(self, owner, in_shape, params, link=None):
        super().__init__(owner, in_shape, params, link)
        p = params.get("p", 0.5)
        if isinstance(p, bool) or not isinstance(p, (int, float)) or not (0.0 <= p < 1.0):
            raise ValueError(f"{owner}: dropout p must be a number in [0, 1), got {p!r}")
        self.p = float(p)
        self._mask: Optional[torch.Tensor] = None

    def reset_state(self):
        self._mask = None

    def forward(self, x):
        if not self.training or self.p == 0.0:
            return x
        m = self._mask
        if m is None or m.shape != x.shape[1:] or m.device != x.device or m.dtype != x.dtype:
            keep = 1.0 - self.p
            m = torch.empty(x.shape[1:], dtype=x.dtype, device=x.device).bernoulli_(keep) / keep
            self._mask = m
        return x * m

    def extra_repr(self):
        return f"p={self.p}"


@SYNAPSES.register("flatten")
class Flatten(Synapse):
    """``[T, B, *shape]`` → ``[T, B, prod(shape)]``."""

    def output_shape(self, in_shape):
        return (math.prod(in_shape),)

    def forward(self, x):
        return x.reshape(x.shape[0], x.shape[1], -1)


@SYNAPSES.register("batchnorm", "batchnorm2d", "batchnorm1d", "bn")
class BatchNorm(Synapse):
    """Batch normalisation over channels (dim 0 of the sample shape) with running statistics.

    ``(C,)`` and ``(C, L)`` samples use ``BatchNorm1d``, ``(C, H, W)`` ``BatchNorm2d``, ``(C, D, H, W)``
    ``BatchNorm3d``.  In training, statistics are taken over all ``T·B`` samples of a call
    (a step-by-step call normalises over ``B``).  ``syn_kwargs``: ``eps=1e-5``, ``momentum=0.1``,
    ``affine=True``.
    """

    params = {"eps": 1e-5, "momentum": 0.1, "affine": True}

    def __init__(self, owner, in_shape, params, link=None):
        super().__init__(owner, in_shape, params, link)
        cls = {1: nn.BatchNorm1d, 2: nn.BatchNorm1d, 3: nn.BatchNorm2d, 4: nn.BatchNorm3d}.get(len(self.in_shape))
        if cls is None:
            raise ValueError(f"{owner}: batchnorm supports samples of 1 to 4 dims (channels first), "
                             f"got {self.in_shape}")
        self.bn = cls(self.in_shape[0], eps=params.get("eps", 1e-5), momentum=params.get("momentum", 0.1),
                      affine=bool(params.get("affine", True)))

    def forward(self, x):
        return _unfold(self.bn(_fold(x)), x.shape[0])
