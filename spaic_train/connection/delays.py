"""Per-synapse transmission delays, time-batched; fixed (whole steps) or learnable (relaxed).

A connection with ``max_delay > 0`` holds a ``delay`` tensor (ms) with one value per synapse:
``(post, pre)`` for dense links, ``(num,)`` for one-to-one links, ``(out_channels, in_channels/groups)``
for conv links (one delay per channel pair).  At forward time the delays become whole steps,
``steps = round(delay / dt)`` (half rounds up), so a network may change ``dt`` after construction.

Instead of a per-step gather from a ring buffer, the delayed synaptic input is computed for all
``T`` steps at once as a sum over *taps* ``k`` (delays in steps)::

    out[t] = Σ_k op(x[t − k], W ⊙ g_k)

applied to the input shifted by ``k`` steps (the ``history`` of the ``H`` steps before ``x[0]`` is
concatenated in front, zeros when absent).  This is exact for any linear weight op (matmul,
elementwise, sparse, conv) and never builds a ``[T, B, post, pre]`` tensor.

* Fixed delays: ``g_k = [steps == k]``, one 0/1 mask per *distinct* delay value.
* Learnable delays (training, ``σ > 0``): ``g_k`` is a Gaussian over the integer taps ``k`` centred on
  the real-valued delay ``d/dt`` and normalised to sum 1 over the allowed taps (DCLS, Hammouamri et
  al., ICLR 2024), so ``∂out/∂d`` exists; as ``σ → 0`` it becomes one-hot at ``round(d/dt)``, the
  fixed-delay path, which evaluation (and training at ``σ = 0``) then runs exactly.

:class:`DelayLine` is the one object that knows all of this for a connection: it validates and creates the
delay values, keeps their bounds (``min_delay``/``max_delay``, at least one step on feedback connections),
the relaxation width ``σ``, and gives the taps for training and evaluation, the history length they need
and the clamping after an optimizer step.  The module functions below are its pure building blocks; the
runner uses :func:`trailing_history` and :func:`step_history` to carry the presynaptic history a delay
line reads.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable, Iterable, Sequence
from typing import Optional, Union

import torch
from torch import nn

from ..init import Initializer
from .checks import real_number, real_tensor

__all__ = ["DelayLine", "learn_delay_flag", "check_delay_sigma", "delay_steps", "whole_steps", "draw_delays",
           "check_delays", "with_history", "trailing_history", "step_history", "shifted", "integer_taps",
           "gaussian_taps", "delayed_weight_op"]


def delay_steps(delay_ms: torch.Tensor, dt: float) -> torch.Tensor:
    """Delays in ms → whole steps (``int64``), ``round(delay/dt)`` with halves rounded up.

    ``0.3 ms / 0.1 ms`` gives 3 steps (SPAIC's truncation gives 2).
    """
    if dt <= 0:
        raise ValueError(f"dt must be positive, got {dt!r}")
    # a small epsilon protects against 2.4999999 from float division of "whole" values
    return torch.floor(delay_ms.detach().double() / float(dt) + 0.5 + 1e-9).long()


def whole_steps(ms: float, dt: float) -> int:
    """One delay in ms → whole steps, rounded like :func:`delay_steps`."""
    return int(math.floor(ms / dt + 0.5 + 1e-9))


def draw_delays(shape, min_delay: float, max_delay: float, dt: float, device=None) -> torch.Tensor:
    """Uniformly drawn whole-step delays in ``[min_delay, max_delay]`` ms (both ends included), in ms.

    Uses the global torch RNG.
    """
    lo = int(math.ceil(min_delay / dt - 1e-9))
    hi = int(math.floor(max_delay / dt + 1e-9))
    if hi < lo:
        raise ValueError(f"no whole step of dt={dt} ms lies in [min_delay={min_delay}, max_delay={max_delay}] ms")
    steps = torch.randint(lo, hi + 1, tuple(shape), device=device)
    return steps.to(torch.get_default_dtype()) * dt


def check_delays(owner: str, delay: torch.Tensor, max_delay: float) -> None:
    """Raise ``ValueError`` when a delay is NaN or outside ``[0, max_delay]`` ms."""
    if not torch.is_floating_point(delay):
        raise TypeError(f"{owner}: delays must be a floating-point tensor (ms), got dtype {delay.dtype}")
    if delay.numel() == 0:
        return
    if torch.isnan(delay).any():
        raise ValueError(f"{owner}: delays contain NaN")
    lo, hi = float(delay.min()), float(delay.max())
    if lo < 0 or hi > max_delay * (1 + 1e-6) + 1e-9:  # float32 tolerance
        bad = lo if lo < 0 else hi
        raise ValueError(f"{owner}: delay {bad!r} ms is outside the allowed range [0, max_delay={max_delay}] ms")


def with_history(x: torch.Tensor, history: Optional[torch.Tensor], depth: int) -> torch.Tensor:
    """``[depth + T, B, ...]``: the last ``depth`` steps of ``history`` (zero-padded in front) then ``x``.

    Args:
        x: ``[T, B, ...]``.
        history: ``[H, B, ...]`` or ``None``; only its last ``depth`` steps are used.
        depth: number of past steps needed (``>= 0``).
    """
    if depth <= 0:
        return x
    if history is None or history.shape[0] == 0:
        pad = x.new_zeros((depth, *x.shape[1:]))
        return torch.cat([pad, x], 0)
    history = history.to(dtype=x.dtype)
    if history.shape[0] >= depth:
        return torch.cat([history[history.shape[0] - depth:], x], 0)
    pad = x.new_zeros((depth - history.shape[0], *x.shape[1:]))
    return torch.cat([pad, history, x], 0)


def shifted(full: torch.Tensor, depth: int, k: int, T: int) -> torch.Tensor:
    """From ``full = with_history(x, h, depth)`` take ``x`` delayed by ``k`` steps: ``[T, B, ...]``."""
    return full[depth - k: depth - k + T]


Taps = Iterable[tuple[int, torch.Tensor]]


def integer_taps(steps: torch.Tensor, values: list[int], dtype: torch.dtype) -> Taps:
    """``(k, [steps == k])`` for the distinct delay values ``k``: the fixed-delay taps (0/1, ``dtype``)."""
    return ((k, (steps == k).to(dtype)) for k in values)


def gaussian_taps(delay_ms: torch.Tensor, sigma_ms: Union[float, torch.Tensor], dt: float, lo: int,
                  hi: int) -> torch.Tensor:
    """Relaxed taps of learnable delays: ``[hi − lo + 1, *delay.shape]``, each synapse's column sums to 1.

    ``g_k ∝ exp(−(k − d/dt)² / (2 (σ/dt)²))`` for the integer taps ``k = lo … hi`` (a softmax over ``k``),
    differentiable in ``d``.

    Args:
        delay_ms: per-synapse delays ``d`` (ms).
        sigma_ms: Gaussian width ``σ`` (ms, ``> 0``; a number or a 0-dim tensor).
        dt: step (ms).
        lo, hi: smallest and largest tap (steps).
    """
    k = torch.arange(lo, hi + 1, dtype=delay_ms.dtype, device=delay_ms.device)
    z = (k.view(-1, *([1] * delay_ms.dim())) - delay_ms / dt) * (dt / sigma_ms)
    return torch.softmax(-0.5 * z * z, dim=0)


def delayed_weight_op(op: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], full: torch.Tensor, depth: int,
                      T: int, weight: torch.Tensor, taps: Optional[Taps],
                      expand: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor:
    """``Σ_k op(x[t−k], W ⊙ g_k)`` over the ``taps`` ``(k, g_k)``.

    Args:
        op: the link's weight op, ``op(x [T, B, ...], W) -> [T, B, ...]``, linear in ``W``.
        full: input with history in front, ``[depth + T, B, ...]``.
        depth: steps of history in front of ``full`` (``>=`` every ``k``).
        T: number of output steps.
        weight: effective weight (mask applied).
        taps: ``(k, g_k)`` pairs — delay ``k`` in steps and a delay-shaped tensor of per-synapse tap
            weights (:func:`integer_taps`, :func:`gaussian_taps`) — or ``None`` for a uniform shift by
            ``depth`` (no per-synapse delays: every synapse delayed by ``depth``).
        expand: maps a delay-shaped tensor to something broadcastable against ``weight``.
    """
    if taps is None:
        return op(shifted(full, depth, depth, T), weight)
    out = None
    for k, g in taps:
        y = op(shifted(full, depth, k, T), weight * expand(g))
        out = y if out is None else out + y
    return out


# ------------------------------------------------------------------------------ presynaptic history
def trailing_history(previous: Optional[torch.Tensor], seq: torch.Tensor, depth: int) -> torch.Tensor:
    """The last ``depth`` (``>= 1``) steps of ``previous`` ``[H, B, ...]`` followed by ``seq`` ``[T, B, ...]``: the
    history a continuation of the run (``reset=False``, the next checkpoint chunk) reads (fewer steps when the
    run so far is shorter; :func:`with_history` pads them)."""
    full = seq if previous is None else torch.cat([previous, seq])
    return full[-depth:]


def step_history(done: Sequence[torch.Tensor], t: int, depth: int, carried: Optional[torch.Tensor],
                 zeros: torch.Tensor) -> Optional[torch.Tensor]:
    """``[depth, B, ...]``: the presynaptic values of the ``depth`` steps before step ``t`` of a step-by-step run.

    Args:
        done: the values of steps ``0, 1, ...`` computed so far in this run (``[B, ...]`` each).
        t: the current step.
        depth: steps of history needed (``0``: none, returns ``None``).
        carried: history ``[H, B, ...]`` carried in from before step 0 (or ``None``).
        zeros: one step of zeros ``[B, ...]``, padding in front where neither reaches back far enough.
    """
    if not depth:
        return None
    past = list(done[max(0, t - depth):t])
    if len(past) < depth and carried is not None:
        past = list(carried.unbind(0))[-(depth - len(past)):] + past
    if not past:
        return None
    history = torch.stack(past)
    if history.shape[0] < depth:
        pad = zeros.unsqueeze(0).expand(depth - history.shape[0], *zeros.shape)
        history = torch.cat([pad, history])
    return history


# ------------------------------------------------------------------------------ the delay line of a connection
def learn_delay_flag(owner: str, learn_delay: Optional[bool] = None, delay_learnable: Optional[bool] = None) -> bool:
    """``learn_delay`` (canonical) or its alias ``delay_learnable``: a bool; both given must agree."""
    given = {k: v for k, v in (("learn_delay", learn_delay), ("delay_learnable", delay_learnable)) if v is not None}
    for k, v in given.items():
        if not isinstance(v, bool):
            raise TypeError(f"{owner}: {k} must be True or False, got {v!r}")
    if len(set(given.values())) > 1:
        raise ValueError(f"{owner}: learn_delay={given['learn_delay']!r} and its alias "
                         f"delay_learnable={given['delay_learnable']!r} disagree; give one of them")
    return any(given.values())


def check_delay_sigma(owner: str, sigma: float) -> float:
    """``delay_sigma`` (ms): a finite number ``>= 0`` (0: exact integer delays)."""
    if not sigma >= 0 or math.isinf(sigma):
        raise ValueError(f"{owner}: delay_sigma must be a finite number of ms >= 0 (0: exact integer delays), "
                         f"got {sigma!r}")
    return sigma


class DelayLine:
    """The per-synapse delays of one connection: values, bounds, relaxation, taps and the history they need.

    Args:
        owner: label of the owning connection (for error messages).
        shape: the link's delay shape (one delay per synapse; per channel pair for conv).
        max_delay: largest delay in ms; ``0`` means no per-synapse delays.
        delay: initial delays in ms (tensor of ``shape``, number or :class:`~spaic_train.init.Initializer`);
            ``None`` draws whole steps uniformly in ``[min_delay, max_delay]`` (``min_delay`` default one step).
        min_delay: lower bound in ms (default 0; learnable delays are clamped to it).
        learn: make the delays an ``nn.Parameter`` trained through the Gaussian relaxation (``None``: not given,
            like ``False``).
        delay_learnable: SPAIC's name of ``learn``; given together, they must agree.
        sigma: initial relaxation width in ms (learnable delays only; default ``max_delay / 2``).
        fan_in, fan_out: passed to an Initializer.
        shape_from: what fixes ``shape``, for error messages (e.g. ``"link type 'full'"``).

    The tensors are created here but registered on the owning module by :meth:`register_tensors` as
    ``delay`` (buffer, or ``nn.Parameter`` when learnable; ``None`` without delays) and ``delay_sigma`` (0-dim
    buffer; ``None`` unless learnable), so saved state dicts keep the keys ``<connection>.delay`` and
    ``<connection>.delay_sigma``.  Every method that computes with them takes them as arguments: the module's
    current tensors are what counts (after ``.to()``, ``load_state_dict``, or ``torch.func.functional_call``,
    which swap them).

    Attributes:
        dt: step in ms (the network sets it before each run).
        min_steps: lower bound of every effective delay in steps (1 on feedback connections, see
            :meth:`set_feedback`); without per-synapse delays a plain time shift.
    """

    def __init__(self, owner: str, shape: Sequence[int], max_delay: float = 0, delay=None,
                 min_delay: Optional[float] = None, learn: Optional[bool] = None, sigma: Optional[float] = None,
                 fan_in: int = 1, fan_out: int = 1, shape_from: str = "the link",
                 delay_learnable: Optional[bool] = None):
        self.owner = owner
        self.shape_from = shape_from
        self.shape = tuple(shape)
        self.dt = 1.0
        self.min_steps = 0
        self._plan_cache = None
        max_delay = real_number(owner, "max_delay", max_delay)
        if max_delay < 0:
            raise ValueError(f"{owner}: max_delay must be >= 0 ms, got {max_delay!r}")
        self.max_delay = max_delay
        self.learn = learn = learn_delay_flag(owner, learn, delay_learnable)
        self._initial: Optional[dict[str, Optional[torch.Tensor]]] = {"delay": None, "delay_sigma": None}
        if max_delay == 0:
            if delay is not None or min_delay is not None:
                raise ValueError(f"{owner}: delay/min_delay given but max_delay=0; set max_delay (ms) > 0 to enable "
                                 "per-synapse delays")
            if learn or sigma is not None:
                raise ValueError(f"{owner}: learn_delay=True / delay_sigma given but max_delay=0; learnable delays "
                                 "need max_delay (ms) > 0, the largest delay they may reach")
            self.min_delay = 0.0
            self._sigma_positive = False
            return
        if min_delay is not None:
            min_delay = real_number(owner, "min_delay", min_delay)
            if not 0 <= min_delay <= max_delay:
                raise ValueError(f"{owner}: min_delay={min_delay!r} ms must lie in [0, max_delay={max_delay!r}] ms")
        d = self._initial_values(delay, min_delay, fan_in, fan_out)
        check_delays(owner, d, max_delay)
        self.min_delay = 0.0 if min_delay is None else min_delay
        if learn:
            if d.numel() and float(d.min()) < self.min_delay:
                raise ValueError(f"{owner}: learnable delay {float(d.min())!r} ms is below min_delay="
                                 f"{self.min_delay!r} ms; learnable delays stay in [min_delay, max_delay]")
            sigma = max_delay / 2 if sigma is None else real_number(owner, "delay_sigma", sigma)
            self._initial = {"delay": nn.Parameter(d), "delay_sigma": torch.tensor(check_delay_sigma(owner, sigma))}
            self._sigma_positive = sigma > 0
        else:
            if sigma is not None:
                raise ValueError(f"{owner}: delay_sigma is the width of learnable delays; it needs learn_delay=True")
            self._initial = {"delay": d, "delay_sigma": None}
            self._sigma_positive = False

    def _initial_values(self, delay, min_delay: Optional[float], fan_in: int, fan_out: int) -> torch.Tensor:
        owner, shape = self.owner, self.shape
        if delay is None:
            lo = self.dt if min_delay is None else min_delay
            try:
                d = draw_delays(shape, lo, self.max_delay, self.dt)
            except ValueError as e:
                raise ValueError(f"{owner}: cannot draw delays: {e}; give min_delay= or delay=") from None
        elif isinstance(delay, Initializer):
            d = delay(shape, fan_in=fan_in, fan_out=fan_out)
        elif isinstance(delay, numbers.Real) and not isinstance(delay, bool):
            d = torch.full(shape, float(delay))
        else:
            d = real_tensor(owner, "delay", delay)
            if tuple(d.shape) != shape:
                raise ValueError(f"{owner}: delay has shape {tuple(d.shape)}, but {self.shape_from} needs {shape} "
                                 "(one delay per synapse, in ms)")
        return d.to(torch.get_default_dtype())

    def register_tensors(self, module: nn.Module) -> None:
        """Register ``delay`` and ``delay_sigma`` on ``module`` (once, right after construction; the line keeps no
        reference to them)."""
        initial, self._initial = self._initial, None
        if initial is None:
            raise RuntimeError(f"{self.owner}: the delay tensors are already registered on a module")
        delay = initial["delay"]
        if isinstance(delay, nn.Parameter):
            module.register_parameter("delay", delay)
        else:
            module.register_buffer("delay", delay)
        module.register_buffer("delay_sigma", initial["delay_sigma"])

    # ---- settings -----------------------------------------------------------------------------
    @property
    def per_synapse(self) -> bool:
        """Whether there are per-synapse delays (``max_delay > 0``)."""
        return self.max_delay > 0

    def set_feedback(self, feedback: bool) -> None:
        """Mark the connection as feedback (its pre runs after its post): it then reads the previous step at
        the earliest (every effective delay ``>= 1`` step)."""
        self.min_steps = 1 if feedback else 0

    def bounds(self) -> tuple[float, float]:
        """``(lo, hi)`` in ms that learnable delays are clamped to: ``[min_delay, max_delay]``, raised to one step on
        feedback connections (:attr:`min_steps`)."""
        lo = max(self.min_delay, int(self.min_steps) * self.dt)
        return min(lo, self.max_delay), self.max_delay

    def tap_range(self) -> tuple[int, int]:
        """Smallest and largest tap (steps) of the relaxed delays."""
        lo = max(whole_steps(self.min_delay, self.dt), int(self.min_steps))
        return lo, max(lo, whole_steps(self.max_delay, self.dt))

    # ---- relaxation width σ ---------------------------------------------------------------------------
    @torch.no_grad()
    def set_sigma(self, sigma_buffer: torch.Tensor, sigma_ms: float) -> None:
        """Write ``σ`` (ms, ``>= 0``) into ``sigma_buffer``; 0 gives exact integer delays.

        (``σ`` changes only here or by loading a state dict, followed by :meth:`sigma_loaded`: the forward keeps
        a Python flag ``σ > 0`` next to the buffer, so that it never reads the tensor back.)
        """
        if not self.learn:
            raise ValueError(f"{self.owner}: set_delay_sigma needs learnable delays (learn_delay=True)")
        sigma = check_delay_sigma(self.owner, real_number(self.owner, "delay_sigma", sigma_ms))
        sigma_buffer.fill_(sigma)
        self._sigma_positive = sigma > 0

    def sigma_loaded(self, sigma_buffer: Optional[torch.Tensor]) -> None:
        """Re-read the ``σ > 0`` flag after ``sigma_buffer`` was loaded from a state dict."""
        if self.learn:
            self._sigma_positive = float(sigma_buffer) > 0

    def relaxed(self, training: bool) -> bool:
        """Whether the forward uses the Gaussian relaxation (learnable delays, training mode, ``σ > 0``)."""
        return self.learn and training and self._sigma_positive

    # ---- the integer path -----------------------------------------------------------------------
    def steps(self, delay: Optional[torch.Tensor]) -> Optional[torch.Tensor]:
        """Effective per-synapse delays in steps (``max(round(delay/dt), min_steps)``), or ``None``."""
        plan = self._plan(delay)
        return None if plan is None else plan[0]

    def _plan(self, delay: Optional[torch.Tensor]) -> Optional[tuple[torch.Tensor, list[int]]]:
        """``(steps, distinct step values)`` of the effective delays, or ``None`` without per-synapse delays.

        Cached until the delay tensor (its storage or an in-place write), ``dt`` or ``min_steps`` changes, so the
        step-by-step schedule does not recompute it every step.
        """
        if delay is None:
            return None
        key = (delay.data_ptr(), delay._version, float(self.dt), int(self.min_steps))
        cached = self._plan_cache
        if cached is None or cached[0] != key:
            steps = delay_steps(delay, self.dt).clamp_(min=int(self.min_steps))
            cached = (key, steps, torch.unique(steps).tolist())
            self._plan_cache = cached
        return cached[1], cached[2]

    def integer_taps(self, delay: Optional[torch.Tensor],
                     dtype: torch.dtype) -> list[tuple[int, Optional[torch.Tensor]]]:
        """The taps of the integer-delay path (evaluation) as a list: ``(k, [steps == k])`` per distinct delay ``k``;
        without per-synapse delays one tap ``(min_steps, None)`` (every synapse delayed by ``min_steps``)."""
        plan = self._plan(delay)
        if plan is None:
            return [(int(self.min_steps), None)]
        return list(integer_taps(plan[0], plan[1], dtype))

    # ---- forward ---------------------------------------------------------------------------------------
    def history_steps(self, delay: Optional[torch.Tensor], training: bool) -> int:
        """Number of past presynaptic steps the forward needs (the largest effective delay)."""
        m = int(self.min_steps)
        if self.relaxed(training):
            return max(m, self.tap_range()[1])
        plan = self._plan(delay)
        if plan is None or not plan[1]:
            return m
        return max(m, plan[1][-1])

    def taps(self, delay: Optional[torch.Tensor], sigma: Optional[torch.Tensor], training: bool,
             dtype: torch.dtype) -> Optional[Taps]:
        """The ``(k, g_k)`` taps of :func:`delayed_weight_op`: Gaussian while relaxed, else the integer taps
        (``None``: no per-synapse delays)."""
        if delay is None:
            return None
        if self.relaxed(training):
            lo, hi = self.tap_range()
            return zip(range(lo, hi + 1), gaussian_taps(delay, sigma, self.dt, lo, hi).unbind(0))
        steps, values = self._plan(delay)
        return integer_taps(steps, values, dtype)

    def apply(self, op: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], full: torch.Tensor, T: int,
              weight: torch.Tensor, delay: Optional[torch.Tensor], sigma: Optional[torch.Tensor], training: bool,
              expand: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor:
        """The delayed weight op ``[T, B, ...]`` from ``full = with_history(x, h, depth)`` (``depth`` =
        :meth:`history_steps`): ``Σ_k op(x[t−k], W ⊙ g_k)`` over :meth:`taps`."""
        depth = full.shape[0] - T
        if self.learn and training and torch.is_grad_enabled() and not self.relaxed(training):
            # σ = 0: the integer path does not use the delays; a zero-valued term keeps them in the graph
            # (zero gradient) so DistributedDataParallel finds a gradient for every parameter
            weight = weight + expand(delay) * 0.0
        if depth == 0:
            return op(full, weight)
        return delayed_weight_op(op, full, depth, T, weight, self.taps(delay, sigma, training, weight.dtype), expand)

    # ---- clamping ----------------------------------------------------------------------------------
    @torch.no_grad()
    def constrain_(self, delay: Optional[torch.Tensor]) -> None:
        """Clamp learnable delays in place to :meth:`bounds` and, once ``σ`` is 0, snap them to whole steps first
        (call after each optimizer step)."""
        if not self.learn:
            return
        lo, hi = self.bounds()
        if not self._sigma_positive:
            delay.copy_(delay_steps(delay, self.dt).to(delay.dtype) * self.dt)
        delay.clamp_(lo, hi)
