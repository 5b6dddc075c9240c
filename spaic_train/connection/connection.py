"""``Connection``: weights (link type) + synapse chain + optional per-synapse delays between two assemblies."""

from __future__ import annotations

import difflib
import math
import numbers
from collections.abc import Sequence
from typing import Optional

import torch
from torch import nn

from ..init import Initializer
from .checks import real_number, real_tensor
from .delays import DelayLine, with_history
from .links import LINKS, Link, LinkContext
from .spike_ops import compact_spikes, rows_of
from .synapses import SYNAPSES, BatchNorm, Synapse

__all__ = ["Connection", "PRE_VAR_NAMES", "POST_VAR_NAMES", "CONNECTION_PARAMS"]

#: variables a connection may read from its pre group
PRE_VAR_NAMES = ("O", "V")
#: variables a connection may write to in its post group
POST_VAR_NAMES = ("Isyn", "V")
#: kwargs handled by every connection (besides the link's and the synapses' own)
CONNECTION_PARAMS = ("weight", "bias", "w_mean", "w_std", "w_min", "w_max", "delay", "min_delay", "learn_delay",
                     "delay_learnable", "delay_sigma", "is_parameter")


def _group_name(g) -> str:
    name = getattr(g, "name", None)
    if name:
        return str(name)
    return getattr(g, "label", type(g).__name__)


class Connection(nn.Module):
    """Synaptic connection from ``pre`` to ``post`` (SPAIC's ``Connection``).

    Args:
        pre, post: assemblies (anything with ``shape``/``shape_known``); kept as plain references,
            not submodules (the network owns the groups).  A conv connection sets ``post.shape``
            when it is unknown.
        name: display name (used in error messages).
        link_type: topology, a name from :data:`LINKS`: ``'full'``, ``'one_to_one'``,
            ``'one_to_one_sparse'``, ``'conv'``, ``'sparse_connect'`` (``'sparse'``), ``'random'``.
        syn_type: list of synapse ops from :data:`SYNAPSES`, applied in order; exactly one of them is
            the weight op ``'basic'`` (or ``'conv'`` for a conv link).
        max_delay: largest synaptic delay in ms; ``> 0`` enables per-synapse delays.
        sparse_with_mask: also treat synapses whose initial weight is exactly 0 as absent
            (masked, they stay 0 during training).
        pre_var_name: pre variable read, ``'O'`` (spikes) or ``'V'`` (membrane).
        post_var_name: post variable written, ``'Isyn'`` (synaptic current) or ``'V'`` (membrane kick).
        syn_kwargs: parameters of the synapse ops (``p`` for dropout, ``pool_*`` for pooling,
            ``eps``/``momentum`` for batchnorm); they override same-named ``kwargs``.
        **kwargs: ``weight`` (tensor/array of the link's weight shape, or an :class:`~spaic_train.init.Initializer`),
            ``w_mean``/``w_std`` (default init ``normal(w_mean, w_std)``, defaults per link type),
            ``w_min``/``w_max`` (clamp at build and in :meth:`apply_constraints`),
            ``bias`` (number, tensor of shape ``(post_num,)``/``(out_channels,)``, ``True`` for PyTorch's
            default ``U(±1/sqrt(fan_in))``, or an Initializer; default no bias),
            ``delay`` (ms; tensor of the link's delay shape, number, or Initializer) and
            ``min_delay`` (ms, default one step ``dt``) for drawn delays,
            ``learn_delay`` (alias ``delay_learnable``; default ``False``): make the delays an
            ``nn.Parameter`` trained by backprop (see *Learnable delays* below), ``delay_sigma`` (ms, ``>= 0``,
            default ``max_delay / 2``): the initial width of their relaxation,
            ``is_parameter`` (SPAIC's name, default ``True``; ``False`` freezes weight and bias: they stay
            parameters of the module, saved and loaded, but ``requires_grad=False``, so no optimizer changes
            them — e.g. the fixed weight-1 one-to-one synapses of an identity shortcut),
            plus the link's own kwargs (``density``, ``probability``, ``in_channels``, ``kernel_size``, ...).

    Learnable delays (``learn_delay=True``, needs ``max_delay > 0``): ``delay`` is an ``nn.Parameter`` (ms).  In
    training mode with ``delay_sigma > 0`` each synapse spreads its weight over the integer delays
    ``k = lo … hi`` (steps) with Gaussian weights centred on ``delay/dt`` of width ``delay_sigma/dt``, normalised
    to sum 1 (:func:`~spaic_train.connection.delays.gaussian_taps`), so the loss has a gradient w.r.t. every
    delay; ``lo`` is ``round(min_delay/dt)`` (at least ``min_delay_steps``), ``hi`` is ``round(max_delay/dt)``.
    In ``eval()`` mode, and in training once ``delay_sigma`` is 0, the connection runs the fixed integer-delay
    path with ``round(delay/dt)`` steps (the same code as a connection with fixed delays, so the same
    results bit for bit).  ``delay_sigma`` is a buffer (saved with the weights); anneal it to 0 during
    training with ``SNNModule(delay_sigma=...)`` / ``model.compile(delay_sigma=...)`` or
    :meth:`set_delay_sigma`.  :meth:`apply_constraints` clamps the delays to ``[min_delay, max_delay]``
    (``min_delay`` default 0; at least one step on feedback connections) and, once ``delay_sigma`` is 0,
    snaps them to whole steps.

    Attributes:
        weight: ``nn.Parameter`` of the link's weight shape (see :mod:`spaic_train.connection.links`).
        bias: ``nn.Parameter`` or ``None``.
        mask: bool buffer of the weight's shape (absent synapses) or ``None``.
        delay: per-synapse delays in ms — a float buffer, an ``nn.Parameter`` with ``learn_delay``, or ``None``
            (``max_delay == 0``).
        learn_delay: whether the delays are learnable.
        delay_sigma: 0-dim float buffer, the relaxation width in ms (``None`` without ``learn_delay``); change it
            with :meth:`set_delay_sigma`.
        delay_line: the :class:`~spaic_train.connection.delays.DelayLine` that owns the delay bounds, the
            relaxation, the taps and the history they need (``delay``/``delay_sigma`` are registered here, on the
            connection, so that saved state dicts keep their keys).
        min_delay: lower bound (ms) learnable delays are clamped to.
        link: the :class:`~spaic_train.connection.links.Link` object (shapes and op).
        synapses: ``nn.ModuleList`` of the synapse ops, in ``syn_type`` order.
        weight_index: position of the weight op (``'basic'``/``'conv'``) in :attr:`synapses`.
        dt: step in ms (default 1.0; the network sets it).
        min_delay_steps: lower bound of every effective delay in steps (the network sets 1 on
            feedback connections); without per-synapse delays it is a plain time shift.

    Shapes: :meth:`forward` maps ``[T, B, *pre.shape]`` to ``[T, B, *post.shape]``.
    """

    def __init__(self, pre, post, name: Optional[str] = None, link_type: str = "full",
                 syn_type: Sequence[str] = ("basic",), max_delay: float = 0, sparse_with_mask: bool = False,
                 pre_var_name: str = "O", post_var_name: str = "Isyn", syn_kwargs: Optional[dict] = None,
                 **kwargs):
        super().__init__()
        for role, g in (("pre", pre), ("post", post)):
            if not hasattr(g, "shape_known"):
                raise TypeError(f"Connection({name!r}): {role} must be an Assembly (e.g. a NeuronGroup), got "
                                f"{type(g).__name__}")
        self._groups = (pre, post)  # plain tuple: not registered as submodules
        self.name = name
        self._set_variables(pre_var_name, post_var_name)
        link_cls, syn_classes = self._resolve_types(link_type, syn_type)
        params = self._merged_params(link_cls, syn_classes, kwargs, syn_kwargs)
        self._build_chain(link_cls, syn_classes, params)
        trainable = kwargs.get("is_parameter", True)
        if not isinstance(trainable, bool):
            raise TypeError(f"{self.label}: is_parameter must be True or False, got {trainable!r}")
        self._init_weight(kwargs, sparse_with_mask, trainable)
        self._init_bias(kwargs.get("bias"), trainable)
        self._init_delays(max_delay, kwargs)

    # ---- construction steps ------------------------------------------------------------------
    def _set_variables(self, pre_var_name: str, post_var_name: str) -> None:
        """Check and set the variables read from pre and written to post."""
        owner = self.label
        if pre_var_name not in PRE_VAR_NAMES:
            raise ValueError(f"{owner}: pre_var_name={pre_var_name!r} is not allowed; use one of {PRE_VAR_NAMES}")
        if post_var_name not in POST_VAR_NAMES:
            raise ValueError(f"{owner}: post_var_name={post_var_name!r} is not allowed; use one of {POST_VAR_NAMES}")
        self.pre_var_name = pre_var_name
        self.post_var_name = post_var_name
        pre = self.pre
        if not pre.shape_known:
            raise ValueError(f"{owner}: the pre group {pre.label if hasattr(pre, 'label') else pre} has no shape")

    def _resolve_types(self, link_type: str, syn_type) -> tuple[type[Link], list[type[Synapse]]]:
        """Look up the link class and the synapse op classes; exactly one op must be the weight op."""
        owner = self.label
        link_cls = LINKS.get(link_type, owner=owner)
        self.link_type = LINKS.canonical(link_type)
        if isinstance(syn_type, str):
            syn_type = [syn_type]
        try:
            syn_type = list(syn_type)
        except TypeError:
            raise TypeError(f"{owner}: syn_type must be a name or a list of names, got {syn_type!r}") from None
        syn_classes = [SYNAPSES.get(s, owner=owner) for s in syn_type]
        self.syn_type = [SYNAPSES.canonical(s) for s in syn_type]
        n_weight_ops = sum(c.is_weight_op for c in syn_classes)
        if n_weight_ops != 1:
            raise ValueError(f"{owner}: syn_type={syn_type!r} must contain exactly one weight op ('basic', or "
                             f"'conv' for a conv link), found {n_weight_ops}")
        return link_cls, syn_classes

    def _merged_params(self, link_cls: type[Link], syn_classes: list[type[Synapse]], kwargs: dict,
                       syn_kwargs: Optional[dict]) -> dict:
        """``kwargs`` merged with ``syn_kwargs`` (which wins), after checking that every key is read by someone."""
        owner = self.label
        if syn_kwargs is None:
            syn_kwargs = {}
        if not isinstance(syn_kwargs, dict):
            raise TypeError(f"{owner}: syn_kwargs must be a dict, got {type(syn_kwargs).__name__}")
        op_keys = set(link_cls.params)
        for c in syn_classes:
            op_keys |= set(c.params)
        for source, keys, allowed in (("kwargs", kwargs, op_keys | set(CONNECTION_PARAMS)),
                                      ("syn_kwargs", syn_kwargs, op_keys)):
            for k in keys:
                if k not in allowed:
                    close = difflib.get_close_matches(k, sorted(allowed), n=1, cutoff=0.6)
                    hint = f" Did you mean {close[0]!r}?" if close else ""
                    raise TypeError(f"{owner}: unknown {source} key {k!r} for link_type={self.link_type!r} with "
                                    f"syn_type={self.syn_type}; accepted: {', '.join(sorted(allowed))}.{hint}")
        return {**kwargs, **syn_kwargs}

    def _build_chain(self, link_cls: type[Link], syn_classes: list[type[Synapse]], params: dict) -> None:
        """Build the link and the synapse ops along the shape chain; check (or set) the post shape."""
        owner = self.label
        pre, post = self.pre, self.post
        shape = tuple(pre.shape)
        ops = []
        for cls in syn_classes:
            if cls.is_weight_op:
                self.in_shape: tuple[int, ...] = shape
                ctx = LinkContext(owner=owner, name=self.link_type, post_label=post.label,
                                  post_shape=tuple(post.shape) if post.shape_known else None,
                                  self_loop=pre is post)
                self.link: Link = link_cls(ctx, shape, params)
                op = cls(owner, shape, params, link=self.link)
            else:
                op = cls(owner, shape, params)
            ops.append(op)
            shape = tuple(op.output_shape(shape))
        self.synapses = nn.ModuleList(ops)
        self.weight_index = next(i for i, c in enumerate(syn_classes) if c.is_weight_op)
        self.output_shape: tuple[int, ...] = shape
        if post.shape_known:
            ok = shape == tuple(post.shape) or (len(post.shape) == 1 and math.prod(shape) == post.num)
            if not ok:
                raise ValueError(f"{owner}: the synapse chain {self.syn_type} produces shape {shape}, but the post "
                                 f"group {post.label} has shape {tuple(post.shape)}")
        else:
            post.shape = shape

    def _init_weight(self, kwargs: dict, sparse_with_mask: bool, trainable: bool) -> None:
        """The weight (given, drawn by an Initializer or by the link's default), clamped and masked; the mask and
        the link's buffers."""
        owner, link = self.label, self.link
        w_min = kwargs.get("w_min")
        w_max = kwargs.get("w_max")
        self.w_min = None if w_min is None else real_number(owner, "w_min", w_min)
        self.w_max = None if w_max is None else real_number(owner, "w_max", w_max)
        if self.w_min is not None and self.w_max is not None and self.w_min > self.w_max:
            raise ValueError(f"{owner}: w_min={w_min!r} is larger than w_max={w_max!r}")
        w_mean = real_number(owner, "w_mean", kwargs.get("w_mean", link.w_mean))
        w_std = kwargs.get("w_std", link.w_std)
        if w_std is not None:
            w_std = real_number(owner, "w_std", w_std)
            if w_std < 0:
                raise ValueError(f"{owner}: w_std must be >= 0, got {w_std!r}")
        weight = kwargs.get("weight")
        given = weight is not None and not isinstance(weight, Initializer)
        if weight is None:
            w = link.default_weight(w_mean, w_std)
        elif isinstance(weight, Initializer):
            w = weight(link.weight_shape, fan_in=link.fan_in, fan_out=link.fan_out)
        else:
            w = link.coerce_weight(real_tensor(owner, "weight", weight))
        w = w.to(torch.get_default_dtype())
        if self.w_min is not None or self.w_max is not None:
            w = w.clamp(self.w_min, self.w_max)
        if link.has_topology_mask and given:
            mask = w != 0  # an explicit weight defines the topology of a sparse link
        else:
            mask = link.structural_mask()
        if sparse_with_mask:
            nz = w != 0
            mask = nz if mask is None else mask & nz
        if mask is not None:
            w = w * mask
        self.sparse_with_mask = bool(sparse_with_mask)
        self.weight = nn.Parameter(w, requires_grad=trainable)
        self.register_buffer("mask", mask)
        buffers = link.extra_buffers()
        for bname, buf in buffers.items():
            self.register_buffer(bname, buf)
        self._link_buffer_names = tuple(buffers)

    def _init_bias(self, bias, trainable: bool) -> None:
        """No bias (``None``/``False``), PyTorch's default (``True``), a number, a tensor or an Initializer."""
        link = self.link
        if bias is None or bias is False:
            b = None
        elif bias is True:
            bound = 1.0 / math.sqrt(link.fan_in)
            b = torch.empty(link.bias_shape).uniform_(-bound, bound)
        elif isinstance(bias, Initializer):
            b = bias(link.bias_shape, fan_in=link.fan_in, fan_out=link.fan_out)
        elif isinstance(bias, numbers.Real):
            b = torch.full(link.bias_shape, float(bias))
        else:
            b = real_tensor(self.label, "bias", bias)
            if tuple(b.shape) != tuple(link.bias_shape):
                raise ValueError(f"{self.label}: bias has shape {tuple(b.shape)}, but link type {self.link_type!r} "
                                 f"needs {tuple(link.bias_shape)}")
        self.bias = None if b is None else nn.Parameter(b.to(torch.get_default_dtype()), requires_grad=trainable)

    def _init_delays(self, max_delay: float, kwargs: dict) -> None:
        """The delay line, and its ``delay``/``delay_sigma`` tensors registered on this module."""
        owner, link = self.label, self.link
        self.delay_line = DelayLine(owner, link.delay_shape, max_delay, delay=kwargs.get("delay"),
                                    min_delay=kwargs.get("min_delay"), learn=kwargs.get("learn_delay"),
                                    delay_learnable=kwargs.get("delay_learnable"), sigma=kwargs.get("delay_sigma"),
                                    fan_in=link.fan_in, fan_out=link.fan_out,
                                    shape_from=f"link type {self.link_type!r}")
        self.delay_line.register_tensors(self)

    # ---- identity ----------------------------------------------------------------------------
    @property
    def pre(self):
        """The presynaptic assembly."""
        return self._groups[0]

    @property
    def post(self):
        """The postsynaptic assembly."""
        return self._groups[1]

    @property
    def label(self) -> str:
        """``Connection('name')`` or ``Connection(pre→post)``, used in error messages."""
        if self.name:
            return f"Connection({self.name!r})"
        return f"Connection({_group_name(self.pre)}→{_group_name(self.post)})"

    def extra_repr(self) -> str:
        s = (f"{_group_name(self.pre)}→{_group_name(self.post)}, link_type={self.link_type!r}, "
             f"weight={tuple(self.weight.shape)}, bias={self.bias is not None}")
        link = self.link.extra_repr()
        if link:
            s += ", " + link
        if self.delay is not None:
            s += f", max_delay={self.max_delay}"
        if self.learn_delay:
            s += f", learn_delay=True, delay_sigma={self.sigma_ms():g}"
        return s

    # ---- weights -------------------------------------------------------------------------------
    def effective_weight(self) -> torch.Tensor:
        """The weight with absent synapses (mask) zeroed — what the forward uses."""
        return self.weight if self.mask is None else self.weight * self.mask

    @torch.no_grad()
    def apply_constraints(self) -> None:
        """Clamp the weight to ``[w_min, w_max]`` and re-zero absent synapses; clamp learnable delays to
        :meth:`delay_bounds` and, once ``delay_sigma`` is 0, snap them to whole steps (call after each
        optimizer step)."""
        if self.w_min is not None or self.w_max is not None:
            self.weight.clamp_(self.w_min, self.w_max)
        if self.mask is not None:
            self.weight.mul_(self.mask)
        self.delay_line.constrain_(self.delay)

    def reset_state(self) -> None:
        """Forget per-run state (dropout masks)."""
        for op in self.synapses:
            op.reset_state()

    # ---- delays (the delay line's settings and views of this connection's delay tensors) ------------------
    @property
    def dt(self) -> float:
        """Step in ms (default 1.0; the network sets it before each run)."""
        return self.delay_line.dt

    @dt.setter
    def dt(self, value: float) -> None:
        self.delay_line.dt = value

    @property
    def min_delay_steps(self) -> int:
        """Lower bound of every effective delay in steps (the network sets 1 on feedback connections)."""
        return self.delay_line.min_steps

    @min_delay_steps.setter
    def min_delay_steps(self, value: int) -> None:
        self.delay_line.min_steps = value

    @property
    def max_delay(self) -> float:
        """Largest delay in ms (0: no per-synapse delays)."""
        return self.delay_line.max_delay

    @property
    def min_delay(self) -> float:
        """Lower bound (ms) learnable delays are clamped to."""
        return self.delay_line.min_delay

    @property
    def learn_delay(self) -> bool:
        """Whether the delays are learnable."""
        return self.delay_line.learn

    def sigma_ms(self) -> float:
        """The current relaxation width of learnable delays in ms (``delay_sigma`` as a float; 0 without)."""
        return 0.0 if self.delay_sigma is None else float(self.delay_sigma)

    def set_delay_sigma(self, sigma_ms: float) -> None:
        """Set the relaxation width (ms, ``>= 0``) of the learnable delays; 0 gives exact integer delays.

        (Change ``delay_sigma`` only through this method or ``load_state_dict``: the forward keeps a Python
        flag ``σ > 0`` next to the buffer, so that it never reads the tensor back.)
        """
        self.delay_line.set_sigma(self.delay_sigma, sigma_ms)

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)
        self.delay_line.sigma_loaded(self.delay_sigma)

    def delay_bounds(self) -> tuple[float, float]:
        """``(lo, hi)`` in ms that learnable delays are clamped to: ``[min_delay, max_delay]``, raised to one
        step on feedback connections (``min_delay_steps``)."""
        return self.delay_line.bounds()

    def delay_steps(self) -> Optional[torch.Tensor]:
        """Effective per-synapse delays in steps (``max(round(delay/dt), min_delay_steps)``), or ``None``."""
        return self.delay_line.steps(self.delay)

    def integer_delay_taps(self, dtype: Optional[torch.dtype] = None) -> list[tuple[int, Optional[torch.Tensor]]]:
        """The taps of the integer-delay path (what ``eval()`` runs): ``(k, [delay_steps() == k])`` per distinct
        delay ``k`` in steps, 0/1 in ``dtype`` (default the weight's); without per-synapse delays one tap
        ``(min_delay_steps, None)``."""
        return self.delay_line.integer_taps(self.delay, self.weight.dtype if dtype is None else dtype)

    @property
    def history_steps(self) -> int:
        """Number of past presynaptic steps :meth:`forward` needs (the largest effective delay)."""
        return self.delay_line.history_steps(self.delay, self.training)

    # ---- forward -------------------------------------------------------------------------------
    @property
    def trailing_norm(self) -> Optional[nn.Module]:
        """The batch norm module (``torch.nn.BatchNorm*``) of a chain that ends with ``'batchnorm'`` after the weight
        op, else ``None``: the network may hand it to the post group's neuron, which fuses it into its kernel."""
        last = self.synapses[-1]
        if not isinstance(last, BatchNorm) or len(self.synapses) - 1 <= self.weight_index:
            return None
        if last._forward_hooks or last._forward_pre_hooks:  # a fused call would skip the hooks on the synapse
            return None
        return last.bn

    def forward(self, x: torch.Tensor, history: Optional[torch.Tensor] = None,
                skip_trailing_norm: bool = False) -> torch.Tensor:
        """Synaptic input to ``post``.

        Args:
            x: presynaptic values ``[T, B, *pre.shape]``, or one step ``[B, *pre.shape]``.
            history: ``[H, B, *pre.shape]``, the presynaptic values of the ``H`` steps before ``x[0]``
                (zeros when ``None``; only the last :attr:`history_steps` are used).
            skip_trailing_norm: leave out the final batch norm (:attr:`trailing_norm`; the caller applies it).

        Returns:
            ``[T, B, *post.shape]`` (``[B, *post.shape]`` for a one-step input); step ``t`` is computed
            from ``x[t − d]`` for each synapse's effective delay ``d``.
        """
        pre_shape = tuple(self.pre.shape)
        nd = len(pre_shape)
        if x.dim() == nd + 1:
            single = True
            x = x.unsqueeze(0)
        elif x.dim() == nd + 2:
            single = False
        else:
            raise ValueError(f"{self.label}: input of shape {tuple(x.shape)} does not match [T, B, *{pre_shape}] "
                             f"or [B, *{pre_shape}]")
        if tuple(x.shape[2:]) != pre_shape:
            raise ValueError(f"{self.label}: input of shape {tuple(x.shape)} does not match the pre shape {pre_shape}")
        dtype = self.weight.dtype
        if x.dtype != dtype:
            x = x.to(dtype)
        if history is not None:
            if history.dim() == nd + 1:
                history = history.unsqueeze(0)
            if tuple(history.shape[1:]) != tuple(x.shape[1:]):
                raise ValueError(f"{self.label}: history of shape {tuple(history.shape)} does not match "
                                 f"[H, {x.shape[1]}, *{pre_shape}]")
        T, B = x.shape[0], x.shape[1]
        z = with_history(x, history, self.history_steps)
        wi = self.weight_index
        for op in self.synapses[:wi]:
            z = op(z)
        link = self.link
        weight_op = self.synapses[wi]
        buffers = {name: getattr(self, name) for name in self._link_buffer_names}

        # spikes reaching the weight op are saved for backward as bool, once for all delay taps
        bits = compact_spikes(z) if link.compacts_spikes else None

        def seq_op(inp: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
            # .forward, not the module call: the op runs once per delay tap, inside this connection's own call
            # (which hooks see), and must not fire forward hooks per tap
            return weight_op.forward(inp, w, None if bits is None else rows_of(bits, z, inp), **buffers)

        y = self.delay_line.apply(seq_op, z, T, self.effective_weight(), self.delay, self.delay_sigma, self.training,
                                  link.expand_delay)
        if self.bias is not None:
            # under autocast the weight op returns bf16 / fp16; a float32 bias would promote the current (and the
            # batch norm after it) back to float32, so it is cast as autocast's own F.conv2d / F.linear cast theirs
            bias = self.bias.to(y.dtype) if y.dtype in (torch.bfloat16, torch.float16) else self.bias
            y = link.add_bias(y.reshape(T * B, *y.shape[2:]), bias).reshape(y.shape)
        tail = self.synapses[wi + 1:]
        if skip_trailing_norm and self.trailing_norm is not None:
            tail = tail[:-1]
        for op in tail:
            y = op(y)
        y = y.reshape(T, B, *self.post.shape)
        return y[0] if single else y

    def synapse_ops(self) -> tuple[Synapse, ...]:
        """The synapse ops in chain order."""
        return tuple(self.synapses)
