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
from .delays import (
    check_delays,
    delay_steps,
    delayed_weight_op,
    draw_delays,
    gaussian_taps,
    integer_taps,
    whole_steps,
    with_history,
)
from .links import LINKS, Link
from .synapses import SYNAPSES, Synapse

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


def _number(owner: str, name: str, value) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{owner}: {name} must be a real number, got {value!r} of type {type(value).__name__}")
    return float(value)


def _as_tensor(owner: str, name: str, value) -> torch.Tensor:
    try:
        t = torch.as_tensor(value)
    except Exception as e:  # noqa: BLE001 - re-raised with context
        raise TypeError(f"{owner}: {name} must be a tensor, an array, a number or an Initializer, got "
                        f"{type(value).__name__}") from e
    if not (torch.is_floating_point(t) or t.dtype in (torch.int8, torch.int16, torch.int32, torch.int64,
                                                       torch.uint8, torch.bool)):
        raise TypeError(f"{owner}: {name} must be real-valued, got dtype {t.dtype}")
    return t.detach().to(torch.get_default_dtype()).clone()


def _learn_delay_flag(owner: str, kwargs: dict) -> bool:
    """``learn_delay`` (canonical) or its alias ``delay_learnable``: a bool; both given must agree."""
    given = {k: kwargs[k] for k in ("learn_delay", "delay_learnable") if kwargs.get(k) is not None}
    for k, v in given.items():
        if not isinstance(v, bool):
            raise TypeError(f"{owner}: {k} must be True or False, got {v!r}")
    if len(set(given.values())) > 1:
        raise ValueError(f"{owner}: learn_delay={given['learn_delay']!r} and its alias "
                         f"delay_learnable={given['delay_learnable']!r} disagree; give one of them")
    return any(given.values())


def _check_sigma(owner: str, sigma: float) -> float:
    if not sigma >= 0 or math.isinf(sigma):
        raise ValueError(f"{owner}: delay_sigma must be a finite number of ms >= 0 (0: exact integer delays), "
                         f"got {sigma!r}")
    return sigma


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
        min_delay: lower bound (ms) learnable delays are clamped to.
        link: the :class:`~spaic_train.connection.links.Link` object (shapes and op).
        synapses: ``nn.ModuleList`` of the synapse ops, in ``syn_type`` order.
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
        self.dt = 1.0
        self.min_delay_steps = 0
        owner = self.label

        # ---- variables -------------------------------------------------------------------
        if pre_var_name not in PRE_VAR_NAMES:
            raise ValueError(f"{owner}: pre_var_name={pre_var_name!r} is not allowed; use one of {PRE_VAR_NAMES}")
        if post_var_name not in POST_VAR_NAMES:
            raise ValueError(f"{owner}: post_var_name={post_var_name!r} is not allowed; use one of {POST_VAR_NAMES}")
        self.pre_var_name = pre_var_name
        self.post_var_name = post_var_name
        if not pre.shape_known:
            raise ValueError(f"{owner}: the pre group {pre.label if hasattr(pre, 'label') else pre} has no shape")

        # ---- types and parameters ----------------------------------------------------------
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
        params = {**kwargs, **syn_kwargs}

        # ---- shape chain ---------------------------------------------------------------------
        shape = tuple(pre.shape)
        ops = []
        self.link: Link = None  # type: ignore[assignment]
        for cls in syn_classes:
            if cls.is_weight_op:
                self.in_shape: tuple[int, ...] = shape
                self.link = link_cls(self, shape, params)
                op = cls(owner, shape, params, link=self.link)
            else:
                op = cls(owner, shape, params)
            ops.append(op)
            shape = tuple(op.output_shape(shape))
        self.synapses = nn.ModuleList(ops)
        self._weight_index = next(i for i, c in enumerate(syn_classes) if c.is_weight_op)
        self.output_shape: tuple[int, ...] = shape
        if post.shape_known:
            ok = shape == tuple(post.shape) or (len(post.shape) == 1 and math.prod(shape) == post.num)
            if not ok:
                raise ValueError(f"{owner}: the synapse chain {self.syn_type} produces shape {shape}, but the post "
                                 f"group {post.label} has shape {tuple(post.shape)}")
        else:
            post.shape = shape
        link = self.link

        # ---- weight --------------------------------------------------------------------------
        w_min = kwargs.get("w_min")
        w_max = kwargs.get("w_max")
        self.w_min = None if w_min is None else _number(owner, "w_min", w_min)
        self.w_max = None if w_max is None else _number(owner, "w_max", w_max)
        if self.w_min is not None and self.w_max is not None and self.w_min > self.w_max:
            raise ValueError(f"{owner}: w_min={w_min!r} is larger than w_max={w_max!r}")
        w_mean = _number(owner, "w_mean", kwargs.get("w_mean", link.w_mean))
        w_std = kwargs.get("w_std", link.w_std)
        if w_std is not None:
            w_std = _number(owner, "w_std", w_std)
            if w_std < 0:
                raise ValueError(f"{owner}: w_std must be >= 0, got {w_std!r}")
        weight = kwargs.get("weight")
        given = weight is not None and not isinstance(weight, Initializer)
        if weight is None:
            w = link.default_weight(w_mean, w_std)
        elif isinstance(weight, Initializer):
            w = weight(link.weight_shape, fan_in=link.fan_in, fan_out=link.fan_out)
        else:
            w = link.coerce_weight(_as_tensor(owner, "weight", weight))
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
        trainable = kwargs.get("is_parameter", True)
        if not isinstance(trainable, bool):
            raise TypeError(f"{owner}: is_parameter must be True or False, got {trainable!r}")
        self.weight = nn.Parameter(w, requires_grad=trainable)
        self.register_buffer("mask", mask)
        for bname, buf in link.extra_buffers().items():
            self.register_buffer(bname, buf)

        # ---- bias ----------------------------------------------------------------------------
        bias = kwargs.get("bias")
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
            b = _as_tensor(owner, "bias", bias)
            if tuple(b.shape) != tuple(link.bias_shape):
                raise ValueError(f"{owner}: bias has shape {tuple(b.shape)}, but link type {self.link_type!r} needs "
                                 f"{tuple(link.bias_shape)}")
        self.bias = None if b is None else nn.Parameter(b.to(torch.get_default_dtype()), requires_grad=trainable)

        # ---- delays --------------------------------------------------------------------------
        max_delay = _number(owner, "max_delay", max_delay)
        if max_delay < 0:
            raise ValueError(f"{owner}: max_delay must be >= 0 ms, got {max_delay!r}")
        self.max_delay = max_delay
        delay = kwargs.get("delay")
        min_delay = kwargs.get("min_delay")
        self.learn_delay = _learn_delay_flag(owner, kwargs)
        sigma = kwargs.get("delay_sigma")
        if max_delay == 0:
            if delay is not None or min_delay is not None:
                raise ValueError(f"{owner}: delay/min_delay given but max_delay=0; set max_delay (ms) > 0 to enable "
                                 "per-synapse delays")
            if self.learn_delay or sigma is not None:
                raise ValueError(f"{owner}: learn_delay=True / delay_sigma given but max_delay=0; learnable delays "
                                 "need max_delay (ms) > 0, the largest delay they may reach")
            self.register_buffer("delay", None)
            self.min_delay = 0.0
        else:
            if min_delay is not None:
                min_delay = _number(owner, "min_delay", min_delay)
                if not 0 <= min_delay <= max_delay:
                    raise ValueError(f"{owner}: min_delay={min_delay!r} ms must lie in "
                                     f"[0, max_delay={max_delay!r}] ms")
            if delay is None:
                lo = self.dt if min_delay is None else min_delay
                try:
                    d = draw_delays(link.delay_shape, lo, max_delay, self.dt)
                except ValueError as e:
                    raise ValueError(f"{owner}: cannot draw delays: {e}; give min_delay= or delay=") from None
            elif isinstance(delay, Initializer):
                d = delay(link.delay_shape, fan_in=link.fan_in, fan_out=link.fan_out)
            elif isinstance(delay, numbers.Real) and not isinstance(delay, bool):
                d = torch.full(link.delay_shape, float(delay))
            else:
                d = _as_tensor(owner, "delay", delay)
                if tuple(d.shape) != tuple(link.delay_shape):
                    raise ValueError(f"{owner}: delay has shape {tuple(d.shape)}, but link type {self.link_type!r} "
                                     f"needs {tuple(link.delay_shape)} (one delay per synapse, in ms)")
            d = d.to(torch.get_default_dtype())
            check_delays(owner, d, max_delay)
            self.min_delay = 0.0 if min_delay is None else min_delay
            if self.learn_delay:
                if d.numel() and float(d.min()) < self.min_delay:
                    raise ValueError(f"{owner}: learnable delay {float(d.min())!r} ms is below min_delay="
                                     f"{self.min_delay!r} ms; learnable delays stay in [min_delay, max_delay]")
                sigma = max_delay / 2 if sigma is None else _number(owner, "delay_sigma", sigma)
                self.delay = nn.Parameter(d)
                self.register_buffer("delay_sigma", torch.tensor(_check_sigma(owner, sigma)))
                self._sigma_positive = sigma > 0
            else:
                if sigma is not None:
                    raise ValueError(f"{owner}: delay_sigma is the width of learnable delays; it needs "
                                     "learn_delay=True")
                self.register_buffer("delay", d)
        if not self.learn_delay:
            self.register_buffer("delay_sigma", None)

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
        if self.learn_delay:
            lo, hi = self.delay_bounds()
            if not self._sigma_positive:
                self.delay.copy_(delay_steps(self.delay, self.dt).to(self.delay.dtype) * self.dt)
            self.delay.clamp_(lo, hi)

    def reset_state(self) -> None:
        """Forget per-run state (dropout masks)."""
        for op in self.synapses:
            op.reset_state()

    # ---- delays --------------------------------------------------------------------------------
    def sigma_ms(self) -> float:
        """The current relaxation width of learnable delays in ms (``delay_sigma`` as a float; 0 without)."""
        return 0.0 if self.delay_sigma is None else float(self.delay_sigma)

    @torch.no_grad()
    def set_delay_sigma(self, sigma_ms: float) -> None:
        """Set the relaxation width (ms, ``>= 0``) of the learnable delays; 0 gives exact integer delays.

        (Change ``delay_sigma`` only through this method or ``load_state_dict``: the forward keeps a Python
        flag ``σ > 0`` next to the buffer, so that it never reads the tensor back.)
        """
        if not self.learn_delay:
            raise ValueError(f"{self.label}: set_delay_sigma needs learnable delays (learn_delay=True)")
        sigma = _check_sigma(self.label, _number(self.label, "delay_sigma", sigma_ms))
        self.delay_sigma.fill_(sigma)
        self._sigma_positive = sigma > 0

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)
        if self.learn_delay:
            self._sigma_positive = self.sigma_ms() > 0

    def delay_bounds(self) -> tuple[float, float]:
        """``(lo, hi)`` in ms that learnable delays are clamped to: ``[min_delay, max_delay]``, raised to one
        step on feedback connections (``min_delay_steps``)."""
        lo = max(self.min_delay, int(self.min_delay_steps) * self.dt)
        return min(lo, self.max_delay), self.max_delay

    def _relaxed(self) -> bool:
        """Whether the forward uses the Gaussian relaxation (learnable delays, training mode, ``σ > 0``)."""
        return self.learn_delay and self.training and self._sigma_positive

    def _tap_range(self) -> tuple[int, int]:
        """Smallest and largest tap (steps) of the relaxed delays."""
        lo = max(whole_steps(self.min_delay, self.dt), int(self.min_delay_steps))
        return lo, max(lo, whole_steps(self.max_delay, self.dt))

    def _taps(self, dtype: torch.dtype):
        """The ``(k, g_k)`` taps of :func:`~spaic_train.connection.delays.delayed_weight_op` (``None``: no
        per-synapse delays)."""
        if self.delay is None:
            return None
        if self._relaxed():
            lo, hi = self._tap_range()
            return zip(range(lo, hi + 1), gaussian_taps(self.delay, self.delay_sigma, self.dt, lo, hi).unbind(0))
        steps, values = self._delay_plan()
        return integer_taps(steps, values, dtype)

    def delay_steps(self) -> Optional[torch.Tensor]:
        """Effective per-synapse delays in steps (``max(round(delay/dt), min_delay_steps)``), or ``None``."""
        plan = self._delay_plan()
        return None if plan is None else plan[0]

    def _delay_plan(self) -> Optional[tuple[torch.Tensor, list[int]]]:
        """``(steps, distinct step values)`` of the effective delays, or ``None`` without per-synapse delays.

        Cached until the delay buffer (its storage or an in-place write), ``dt`` or ``min_delay_steps``
        changes, so the step-by-step schedule does not recompute it every step.
        """
        if self.delay is None:
            return None
        key = (self.delay.data_ptr(), self.delay._version, float(self.dt), int(self.min_delay_steps))
        cached = self.__dict__.get("_delay_cache")
        if cached is None or cached[0] != key:
            steps = delay_steps(self.delay, self.dt).clamp_(min=int(self.min_delay_steps))
            cached = (key, steps, torch.unique(steps).tolist())
            self.__dict__["_delay_cache"] = cached
        return cached[1], cached[2]

    @property
    def history_steps(self) -> int:
        """Number of past presynaptic steps :meth:`forward` needs (the largest effective delay)."""
        m = int(self.min_delay_steps)
        if self._relaxed():
            return max(m, self._tap_range()[1])
        plan = self._delay_plan()
        if plan is None or not plan[1]:
            return m
        return max(m, plan[1][-1])

    # ---- forward -------------------------------------------------------------------------------
    def forward(self, x: torch.Tensor, history: Optional[torch.Tensor] = None) -> torch.Tensor:
        """Synaptic input to ``post``.

        Args:
            x: presynaptic values ``[T, B, *pre.shape]``, or one step ``[B, *pre.shape]``.
            history: ``[H, B, *pre.shape]``, the presynaptic values of the ``H`` steps before ``x[0]``
                (zeros when ``None``; only the last :attr:`history_steps` are used).

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
        depth = self.history_steps
        z = with_history(x, history, depth)
        wi = self._weight_index
        for op in self.synapses[:wi]:
            z = op(z)
        link = self.link

        def seq_op(inp: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
            y = link.op(inp.reshape(T * B, *inp.shape[2:]), w)
            return y.reshape(T, B, *y.shape[1:])

        weight = self.effective_weight()
        if self.learn_delay and self.training and torch.is_grad_enabled() and not self._relaxed():
            # σ = 0: the integer path does not use the delays; a zero-valued term keeps them in the graph
            # (zero gradient) so DistributedDataParallel finds a gradient for every parameter
            weight = weight + link.expand_delay(self.delay) * 0.0
        if depth == 0:
            y = seq_op(z, weight)
        else:
            y = delayed_weight_op(seq_op, z, depth, T, weight, self._taps(weight.dtype), link.expand_delay)
        if self.bias is not None:
            y = link.add_bias(y.reshape(T * B, *y.shape[2:]), self.bias).reshape(y.shape)
        for op in self.synapses[wi + 1:]:
            y = op(y)
        y = y.reshape(T, B, *self.post.shape)
        return y[0] if single else y

    def synapse_ops(self) -> tuple[Synapse, ...]:
        """The synapse ops in chain order."""
        return tuple(self.synapses)
