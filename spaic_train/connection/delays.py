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
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from typing import Optional, Union

import torch

__all__ = ["delay_steps", "whole_steps", "draw_delays", "check_delays", "with_history", "shifted", "integer_taps",
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
