"""Per-synapse transmission delays, time-batched.

A connection with ``max_delay > 0`` holds a ``delay`` buffer (ms) with one value per synapse:
``(post, pre)`` for dense links, ``(num,)`` for one-to-one links, ``(out_channels, in_channels/groups)``
for conv links (one delay per channel pair).  At forward time the delays become whole steps,
``steps = round(delay / dt)`` (half rounds up), so a network may change ``dt`` after construction.

Instead of a per-step gather from a ring buffer, the delayed synaptic input is computed for all
``T`` steps at once::

    out[t] = Σ_k (W ⊙ [steps == k]) · x[t − k]

one masked weight per *distinct* delay value, applied to the input shifted by ``k`` steps (the
``history`` of the ``H`` steps before ``x[0]`` is concatenated in front, zeros when absent).
This is exact for any linear weight op (matmul, elementwise, sparse, conv).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Optional

import torch

__all__ = ["delay_steps", "draw_delays", "check_delays", "with_history", "shifted", "delayed_weight_op"]


def delay_steps(delay_ms: torch.Tensor, dt: float) -> torch.Tensor:
    """Delays in ms → whole steps (``int64``), ``round(delay/dt)`` with halves rounded up.

    ``0.3 ms / 0.1 ms`` gives 3 steps (SPAIC's truncation gives 2).
    """
    if dt <= 0:
        raise ValueError(f"dt must be positive, got {dt!r}")
    # a small epsilon protects against 2.4999999 from float division of "whole" values
    return torch.floor(delay_ms.detach().double() / float(dt) + 0.5 + 1e-9).long()


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


def delayed_weight_op(op: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], full: torch.Tensor, depth: int,
                      T: int, weight: torch.Tensor, steps: Optional[torch.Tensor],
                      expand: Callable[[torch.Tensor], torch.Tensor],
                      values: Optional[list[int]] = None) -> torch.Tensor:
    """``Σ_k op(x[t−k], W ⊙ [steps == k])`` over the distinct values ``k`` of ``steps``.

    Args:
        op: the link's weight op, ``op(x [T, B, ...], W) -> [T, B, ...]``, linear in ``W``.
        full: input with history in front, ``[depth + T, B, ...]``.
        depth: steps of history in front of ``full``.
        T: number of output steps.
        weight: effective weight (mask applied).
        steps: per-synapse delay in steps (shape of the delay buffer), or ``None`` for a uniform
            shift by ``depth`` (no per-synapse delays: every synapse delayed by ``depth``).
        expand: maps a delay-shaped 0/1 tensor to something broadcastable against ``weight``.
        values: the distinct values of ``steps`` when already known (computed otherwise).
    """
    if steps is None:
        return op(shifted(full, depth, depth, T), weight)
    out = None
    for k in values if values is not None else torch.unique(steps).tolist():
        sel = expand((steps == k).to(weight.dtype))
        y = op(shifted(full, depth, int(k), T), weight * sel)
        out = y if out is None else out + y
    return out
