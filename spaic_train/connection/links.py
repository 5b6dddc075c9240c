"""Link types: the topology of a connection (what weight tensor exists, its shape, mask and op).

A link is a plain object (not a module) owned by its :class:`~spaic_train.connection.Connection`,
built from a :class:`LinkContext` (the owner's label, the post group's label and shape): it keeps no
reference to the connection or the groups.  The connection holds the tensors (``weight`` parameter,
``mask``/``indices``/``delay`` buffers) and passes the effective weight and the link's own buffers
(:meth:`Link.extra_buffers`, by name) to :meth:`Link.op`.  Register a new link type with::

    @LINKS.register("my_link", "alias")
    class MyLink(Link): ...

Shapes (``N`` is the folded time·batch dimension; ``in_shape`` is the shape reaching the weight
op, i.e. ``pre.shape`` after any synapse ops listed before ``'basic'``/``'conv'``):

============================  ================================  =================================
link type                     weight (parameter)                op: ``[N, *in_shape]`` →
============================  ================================  =================================
``full``                      ``(post_num, in_num)``            ``x @ W.T`` → ``[N, *post.shape]``
``sparse_connect``/``sparse`` ``(post_num, in_num)`` + mask     same as ``full``
``random``                    ``(post_num, in_num)`` + mask     same as ``full``
``one_to_one``                ``(num,)`` (the diagonal)         ``x * W`` → ``[N, *post.shape]``
``one_to_one_sparse``         ``(nnz,)`` + ``indices (2, nnz)`` COO gather/scatter, same result
``conv``                      ``(out, in/groups, kh, kw)``      ``conv2d`` → ``[N, out, H', W']``
============================  ================================  =================================
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional

import torch
import torch.nn.functional as F

from ..registry import Registry
from .checks import fraction, int_pair, is_int
from .spike_ops import spike_conv2d, spike_linear

__all__ = ["LINKS", "LinkContext", "Link", "FullLink", "SparseLink", "RandomLink", "OneToOneLink",
           "OneToOneSparseLink", "ConvLink", "POOL_PARAMS"]

#: registry of link types (``Connection(link_type=...)``)
LINKS: Registry = Registry("link type")

#: pooling kwargs a conv connection accepts (used by the ``maxpool``/``avgpool`` synapses)
POOL_PARAMS = {"pool_kernel_size": [2, 2], "pool_stride": None, "pool_padding": 0}


@dataclass(frozen=True)
class LinkContext:
    """What a link knows of its connection and the groups it joins.

    Attributes:
        owner: label of the owning connection (for error messages).
        name: the canonical link type name.
        post_label: label of the post group (for error messages).
        post_shape: shape of the post group, ``None`` while unknown (only ``conv`` infers it).
        self_loop: whether pre and post are the same group.
    """

    owner: str
    name: str
    post_label: str
    post_shape: Optional[tuple[int, ...]]
    self_loop: bool = False


class Link:
    """Base class of link types.

    Subclasses set :attr:`params` (the kwargs they read, with defaults), :attr:`w_mean`/:attr:`w_std`
    (default init ``normal(w_mean, w_std)``) and implement the shape/op methods.

    Args:
        ctx: the owner's label, the link type name, and the post group's label and shape.
        in_shape: shape of one sample reaching the weight op.
        params: the connection's kwargs merged with ``syn_kwargs``.
    """

    #: canonical name (set from the registry by the connection)
    name = ""
    #: kwargs read by this link type, with defaults
    params: dict[str, object] = {}
    w_mean: float = 0.005
    w_std: Optional[float] = 0.05

    def __init__(self, ctx: LinkContext, in_shape: tuple[int, ...], params: dict):
        self.owner = ctx.owner
        self.name = ctx.name
        self.in_shape = tuple(in_shape)
        self.in_num = math.prod(self.in_shape)

    # ---- shapes --------------------------------------------------------------------------
    weight_shape: tuple[int, ...] = ()
    bias_shape: tuple[int, ...] = ()
    delay_shape: tuple[int, ...] = ()
    fan_in: int = 1
    fan_out: int = 1

    def output_shape(self, in_shape: tuple[int, ...]) -> tuple[int, ...]:
        """Shape of one sample after the weight op."""
        raise NotImplementedError

    # ---- weights -------------------------------------------------------------------------
    def default_weight(self, w_mean: float, w_std: Optional[float]) -> torch.Tensor:
        """Initial weight when none is given: ``normal(w_mean, w_std)`` of :attr:`weight_shape`."""
        w = torch.empty(self.weight_shape)
        if w_std is None:
            return w.fill_(w_mean)
        return w.normal_(w_mean, w_std)

    def coerce_weight(self, weight: torch.Tensor) -> torch.Tensor:
        """Check a user-given weight tensor (exact :attr:`weight_shape`) and return it."""
        if tuple(weight.shape) != tuple(self.weight_shape):
            raise ValueError(f"{self.owner}: weight has shape {tuple(weight.shape)}, but link type "
                             f"{self.name!r} needs {tuple(self.weight_shape)}")
        return weight

    #: whether this link type has a random topology mask (an explicit weight tensor then
    #: defines the topology instead: mask = ``weight != 0``)
    has_topology_mask = False

    def structural_mask(self) -> Optional[torch.Tensor]:
        """Draw the fixed bool topology mask of :attr:`weight_shape` (``None``: all synapses exist)."""
        return None

    def extra_buffers(self) -> dict[str, torch.Tensor]:
        """Buffers the connection registers for this link (e.g. COO ``indices``); :meth:`op` gets them back as
        keyword arguments of the same names."""
        return {}

    # ---- compute -------------------------------------------------------------------------
    def op(self, x: torch.Tensor, weight: torch.Tensor, **buffers: torch.Tensor) -> torch.Tensor:
        """``[N, *in_shape]`` → ``[N, *output_shape]``, linear in ``weight`` (``buffers``: the connection's
        current copies of :meth:`extra_buffers`)."""
        raise NotImplementedError

    #: whether :meth:`spike_op` saves less than :meth:`op` (the connection then builds the bool copy)
    compacts_spikes = False

    def spike_op(self, x: torch.Tensor, bits: torch.Tensor, weight: torch.Tensor,
                 **buffers: torch.Tensor) -> torch.Tensor:
        """:meth:`op` on a spike input ``x`` whose bool copy is ``bits``: links whose op saves its input for
        backward keep only ``bits`` (:mod:`.spike_ops`, same results and gradients); others run :meth:`op`."""
        return self.op(x, weight, **buffers)

    def add_bias(self, y: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        """Add the bias (shape :attr:`bias_shape`) to ``y`` ``[N, *output_shape]``."""
        return (y.reshape(y.shape[0], -1) + bias).reshape(y.shape)

    def expand_delay(self, sel: torch.Tensor) -> torch.Tensor:
        """Map a delay-shaped tensor to one broadcastable against the weight."""
        return sel

    def extra_repr(self) -> str:
        return ""


class _DenseLink(Link):
    """A ``(post_num, in_num)`` weight matrix; ``out = x @ W.T``."""

    def __init__(self, ctx, in_shape, params):
        super().__init__(ctx, in_shape, params)
        if ctx.post_shape is None:
            raise ValueError(f"{self.owner}: the post group {ctx.post_label} has no shape; link type {self.name!r} "
                             "cannot infer it (give num= or shape=; only 'conv' infers the post shape)")
        self.post_shape = tuple(ctx.post_shape)
        self.post_num = math.prod(self.post_shape)
        self.weight_shape = (self.post_num, self.in_num)
        self.bias_shape = (self.post_num,)
        self.delay_shape = self.weight_shape
        self.fan_in, self.fan_out = self.in_num, self.post_num

    def output_shape(self, in_shape):
        return self.post_shape

    def op(self, x, weight):
        y = F.linear(x.reshape(x.shape[0], -1), weight)
        return y.reshape(x.shape[0], *self.post_shape)

    compacts_spikes = True

    def spike_op(self, x, bits, weight):
        n = x.shape[0]
        return spike_linear(x.reshape(n, -1), bits.reshape(n, -1), weight).reshape(n, *self.post_shape)


@LINKS.register("full", "full_connection")
class FullLink(_DenseLink):
    """All-to-all: weight ``(post_num, pre_num)`` (a pre of any shape is flattened), ``out = x @ W.T``.

    Defaults: ``w_mean=0.005``, ``w_std=0.05``.  With ``sparse_with_mask=True`` the synapses whose
    initial weight is exactly zero are absent (kept at zero during training).
    """


@LINKS.register("sparse_connect", "sparse", "sparse_connection")
class SparseLink(_DenseLink):
    """Sparse: dense ``(post_num, pre_num)`` weight times a fixed Bernoulli(``density``) mask.

    ``density`` (default 0.1) is the probability that a synapse exists.  An explicit weight
    tensor defines the topology itself (mask = ``weight != 0``).  The mask is a buffer.
    """

    params = {"density": 0.1}
    _prob_key = "density"

    def __init__(self, ctx, in_shape, params):
        super().__init__(ctx, in_shape, params)
        self.self_loop = ctx.self_loop
        self.prob = fraction(self.owner, self._prob_key, params.get(self._prob_key, self.params[self._prob_key]))

    def _draw(self) -> torch.Tensor:
        return torch.rand(self.weight_shape) < self.prob

    has_topology_mask = True

    def structural_mask(self):
        return self._draw()

    def extra_repr(self):
        return f"{self._prob_key}={self.prob}"


@LINKS.register("random", "random_connection")
class RandomLink(SparseLink):
    """Random: each synapse exists with ``probability`` (default 0.1); dense weight × fixed mask.

    When pre and post are the same group, self-connections (the diagonal) are excluded.
    """

    params = {"probability": 0.1}
    _prob_key = "probability"

    def _draw(self):
        mask = super()._draw()
        if self.self_loop and self.weight_shape[0] == self.weight_shape[1]:
            mask.fill_diagonal_(False)
        return mask


class _OneToOneBase(Link):
    w_mean = 0.05
    w_std = None  # SPAIC: w_mean on the diagonal; pass w_std to draw normal(w_mean, w_std) instead

    def __init__(self, ctx, in_shape, params):
        super().__init__(ctx, in_shape, params)
        if ctx.post_shape is None:
            raise ValueError(f"{self.owner}: the post group {ctx.post_label} has no shape; link type {self.name!r} "
                             "needs it (give num= or shape=)")
        self.post_shape = tuple(ctx.post_shape)
        self.post_num = math.prod(self.post_shape)
        if self.post_num != self.in_num:
            raise ValueError(f"{self.owner}: link type {self.name!r} needs pre and post of equal size, got "
                             f"pre size {self.in_num} (shape {self.in_shape}) and post size {self.post_num} "
                             f"(shape {self.post_shape})")
        n = self.post_num
        self.weight_shape = (n,)
        self.bias_shape = (n,)
        self.delay_shape = (n,)
        self.fan_in = self.fan_out = 1

    def output_shape(self, in_shape):
        return self.post_shape

    def coerce_weight(self, weight):
        n = self.post_num
        if weight.dim() == 2 and tuple(weight.shape) == (n, n):
            diag = torch.diagonal(weight)
            if torch.count_nonzero(weight - torch.diag_embed(diag)) > 0:
                raise ValueError(f"{self.owner}: a ({n}, {n}) weight for link type {self.name!r} must be diagonal "
                                 "(one synapse per neuron); give the diagonal as a vector of shape "
                                 f"({n},) instead")
            return diag.clone()
        if weight.dim() == 0:
            return weight.expand(n).clone()
        if tuple(weight.shape) != (n,):
            raise ValueError(f"{self.owner}: weight has shape {tuple(weight.shape)}, but link type {self.name!r} "
                             f"needs ({n},) (one weight per synapse) or a diagonal ({n}, {n}) matrix")
        return weight


@LINKS.register("one_to_one")
class OneToOneLink(_OneToOneBase):
    """Neuron ``i`` of pre drives neuron ``i`` of post (sizes must be equal; shapes may differ).

    The weight is stored as the diagonal only, a vector of shape ``(num,)`` (SPAIC stores the
    ``(post, pre)`` diagonal matrix); ``out = x.flatten() * W``.  Default: every weight equals
    ``w_mean`` (0.05); a given ``w_std`` draws ``normal(w_mean, w_std)`` instead.  A given weight may be
    a ``(num,)`` vector, a scalar, or a diagonal ``(num, num)`` matrix.  Delays: shape ``(num,)``.
    """

    def op(self, x, weight):
        n = x.shape[0]
        return (x.reshape(n, -1) * weight).reshape(n, *self.post_shape)


@LINKS.register("one_to_one_sparse")
class OneToOneSparseLink(_OneToOneBase):
    """One-to-one with sparse COO storage: values ``weight (nnz,)`` and a buffer ``indices (2, nnz)``
    holding ``(post index, pre index)`` of each synapse; the forward gathers the pre values and
    scatter-adds them into post.  Same results, weight and delay shapes as ``one_to_one``.
    """

    def extra_buffers(self):
        idx = torch.arange(self.post_num)
        return {"indices": torch.stack([idx, idx])}

    def op(self, x, weight, indices):
        n = x.shape[0]
        idx = indices
        vals = x.reshape(n, -1).index_select(1, idx[1]) * weight
        out = vals.new_zeros((n, self.post_num)).index_add_(1, idx[0], vals)
        return out.reshape(n, *self.post_shape)


@LINKS.register("conv", "conv2d", "conv_connection")
class ConvLink(Link):
    """2-D convolution: weight ``(out_channels, in_channels/groups, kh, kw)``, bias ``(out_channels,)``,
    delays ``(out_channels, in_channels/groups)`` (one per channel pair).

    Kwargs: ``in_channels``/``out_channels`` (inferred from the pre shape ``(C, H, W)`` and the post
    shape when omitted), ``kernel_size=[3, 3]``, ``stride=1``, ``padding=0`` (int, pair, ``'same'`` or
    ``'valid'``), ``dilation=1``, ``groups=1``, ``upscale=None`` (nearest-neighbour upsampling factor
    of the input before the conv), ``w_mean=0.05``, ``w_std=0.05``; the pooling kwargs
    (``pool_kernel_size``, ``pool_stride``, ``pool_padding``) are accepted for the pool synapses.
    Output ``(out, H', W')`` with ``H' = floor((H·up + 2p − d(k−1) − 1)/s) + 1``.
    """

    params = {"in_channels": None, "out_channels": None, "kernel_size": [3, 3], "stride": 1, "padding": 0,
              "dilation": 1, "groups": 1, "upscale": None, **POOL_PARAMS}
    w_mean = 0.05
    w_std = 0.05

    def __init__(self, ctx, in_shape, params):
        super().__init__(ctx, in_shape, params)
        o = self.owner
        if len(self.in_shape) != 3:
            raise ValueError(f"{o}: link type 'conv' needs an input of shape (channels, height, width), got "
                             f"{self.in_shape}; give the pre group shape=(C, H, W)")
        p = {k: params.get(k, d) for k, d in self.params.items()}
        self.kernel_size = int_pair(o, "kernel_size", p["kernel_size"])
        self.stride = int_pair(o, "stride", p["stride"])
        self.dilation = int_pair(o, "dilation", p["dilation"])
        pad = p["padding"]
        if isinstance(pad, str):
            if pad not in ("same", "valid"):
                raise ValueError(f"{o}: padding must be an int, a pair, 'same' or 'valid', got {pad!r}")
            if pad == "same" and self.stride != (1, 1):
                raise ValueError(f"{o}: padding='same' needs stride=1, got stride={p['stride']!r}")
            self.padding = pad
        else:
            self.padding = int_pair(o, "padding", pad, allow_zero=True)
        groups = p["groups"]
        if not is_int(groups) or groups < 1:
            raise ValueError(f"{o}: groups must be a positive int, got {groups!r}")
        self.groups = groups
        up = p["upscale"]
        if up is not None:
            ups = (up, up) if isinstance(up, (int, float)) and not isinstance(up, bool) else tuple(up)
            if len(ups) != 2 or not all(isinstance(u, (int, float)) and not isinstance(u, bool) and u > 0 for u in ups):
                raise ValueError(f"{o}: upscale must be a positive number or a pair of them, got {up!r}")
            up = ups
        self.upscale = up

        c_in = self.in_shape[0]
        in_channels = p["in_channels"]
        if in_channels is not None and in_channels != c_in:
            raise ValueError(f"{o}: in_channels={in_channels!r} disagrees with the input shape {self.in_shape} "
                             f"(channels {c_in})")
        self.in_channels = c_in
        out_channels = p["out_channels"]
        post_shape = ctx.post_shape
        if out_channels is None:
            if post_shape is not None and len(post_shape) == 3:
                out_channels = post_shape[0]
            else:
                raise ValueError(f"{o}: out_channels cannot be inferred from the post group {ctx.post_label} "
                                 f"(shape {post_shape}); give out_channels= or a post shape (C, H, W)")
        if not is_int(out_channels) or out_channels < 1:
            raise ValueError(f"{o}: out_channels must be a positive int, got {out_channels!r}")
        self.out_channels = out_channels
        if c_in % groups or out_channels % groups:
            raise ValueError(f"{o}: in_channels={c_in} and out_channels={out_channels} must both be divisible by "
                             f"groups={groups}")
        kh, kw = self.kernel_size
        self.weight_shape = (out_channels, c_in // groups, kh, kw)
        self.bias_shape = (out_channels,)
        self.delay_shape = (out_channels, c_in // groups)
        self.fan_in = (c_in // groups) * kh * kw
        self.fan_out = out_channels * kh * kw
        self.output_shape(self.in_shape)  # validates the spatial size

    def _upscaled(self, hw):
        if self.upscale is None:
            return hw
        return tuple(int(math.floor(s * u)) for s, u in zip(hw, self.upscale))

    def output_shape(self, in_shape):
        hw = self._upscaled(tuple(in_shape[1:]))
        out = []
        for i, size in enumerate(hw):
            k, s, d = self.kernel_size[i], self.stride[i], self.dilation[i]
            if self.padding == "same":
                out.append(size)
                continue
            p = 0 if self.padding == "valid" else self.padding[i]
            n = (size + 2 * p - d * (k - 1) - 1) // s + 1
            if n < 1:
                raise ValueError(f"{self.owner}: conv input {tuple(in_shape)} (after upscale {hw}) is too small for "
                                 f"kernel_size={self.kernel_size}, dilation={self.dilation}, padding={self.padding}, "
                                 f"stride={self.stride}")
            out.append(n)
        return (self.out_channels, *out)

    compacts_spikes = True

    def op(self, x, weight):
        return self.spike_op(x, None, weight)

    def spike_op(self, x, bits, weight):
        if self.upscale is not None:
            x = F.interpolate(x, scale_factor=self.upscale, mode="nearest")
            bits = None if bits is None else x != 0
        stride = self.stride
        if x.device.type == "cpu":
            if self.kernel_size == (1, 1) and stride != (1, 1) and self.padding in ((0, 0), "valid"):
                # a strided 1x1 convolution reads every stride-th pixel: take them first and convolve with
                # stride 1 (same sums).  oneDNN's own strided 1x1 backward corrupted memory or hung for small
                # channel counts on a CPU with AVX2 but no AVX-512 (an AMD EPYC; machines of that name differ, some
                # have AVX-512) -- tests/test_connection.py reproduces the shapes
                x = x[:, :, ::stride[0], ::stride[1]]
                bits = None if bits is None else bits[:, :, ::stride[0], ::stride[1]]
                stride = (1, 1)
            # oneDNN's CPU convolutions are fastest channels-last; the output stays channels-last through
            # batch norm, pooling and the neurons (which integrate any dense layout in memory order)
            x = x.contiguous(memory_format=torch.channels_last)
            bits = None if bits is None else bits.contiguous(memory_format=torch.channels_last)
        return spike_conv2d(x, bits, weight, stride, self.padding, self.dilation, self.groups)

    def add_bias(self, y, bias):
        return y + bias.view(-1, 1, 1)

    def expand_delay(self, sel):
        return sel[:, :, None, None]

    def extra_repr(self):
        return (f"in_channels={self.in_channels}, out_channels={self.out_channels}, kernel_size={self.kernel_size}, "
                f"stride={self.stride}, padding={self.padding}, dilation={self.dilation}, groups={self.groups}"
                + (f", upscale={self.upscale}" if self.upscale is not None else ""))
