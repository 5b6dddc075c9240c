"""Encoders: assemblies that turn a static input ``[B, *shape]`` into a sequence ``[T, B, *shape]``.

Every encoder passes an input that already is a sequence ``[T, B, *shape]`` (event data,
pre-encoded spikes) through unchanged.
"""

from __future__ import annotations

from typing import Optional

import torch

from ..assembly import Assembly, ShapeLike
from ..registry import Registry

#: coding name → function ``(x [B,...], time_steps, dt_ms, **params) -> [T, B, ...]``
ENCODINGS: Registry = Registry("encoder coding")


def _unit_interval(x: torch.Tensor) -> torch.Tensor:
    return x.clamp(0.0, 1.0)


@ENCODINGS.register("poisson")
def poisson(x: torch.Tensor, time_steps: int, dt: float, max_rate: float = 1000.0, generator=None) -> torch.Tensor:
    """Poisson spike trains: intensity ``x`` in [0, 1] fires at ``x · max_rate`` Hz.

    Each step of ``dt`` ms spikes with probability ``x · max_rate · dt / 1000`` (clamped to
    [0, 1]); with the defaults (1000 Hz, dt = 1 ms) that is ``x`` per step.
    """
    p = (_unit_interval(x) * (max_rate * dt / 1000.0)).clamp(0.0, 1.0)
    p = p.unsqueeze(0).expand(time_steps, *p.shape)
    return torch.bernoulli(p, generator=generator)


@ENCODINGS.register("bernoulli")
def bernoulli(x: torch.Tensor, time_steps: int, dt: float, generator=None) -> torch.Tensor:
    """Independent Bernoulli spikes with probability ``clamp(x, 0, 1)`` per step (independent of ``dt``)."""
    p = _unit_interval(x).unsqueeze(0).expand(time_steps, *x.shape)
    return torch.bernoulli(p, generator=generator)


@ENCODINGS.register("direct")
def direct(x: torch.Tensor, time_steps: int, dt: float) -> torch.Tensor:
    """The real value ``x`` as the input of every step (gradients flow to ``x``)."""
    return x.unsqueeze(0).expand(time_steps, *x.shape)


@ENCODINGS.register("latency")
def latency(x: torch.Tensor, time_steps: int, dt: float, threshold: float = 0.0) -> torch.Tensor:
    """One spike per input, earlier for stronger inputs.

    ``x`` in [0, 1] spikes at step ``round((1 − x) · (T − 1))``; inputs ``<= threshold`` never spike.
    """
    x = _unit_interval(x)
    when = torch.round((1.0 - x) * (time_steps - 1)).long()
    steps = torch.arange(time_steps, device=x.device).view(-1, *([1] * x.dim()))
    return ((steps == when.unsqueeze(0)) & (x > threshold).unsqueeze(0)).to(x.dtype if x.is_floating_point() else
                                                                              torch.float32)


@ENCODINGS.register("passthrough", "events")
def passthrough(x: torch.Tensor, time_steps: int, dt: float) -> torch.Tensor:
    """Only for sequence input (event data): nothing to encode."""
    raise ValueError("passthrough encoder needs a sequence input [T, B, *shape], got a static tensor "
                     f"of shape {tuple(x.shape)}")


@ENCODINGS.register("sequence", "batch_first")
def sequence(x: torch.Tensor, time_steps: int, dt: float) -> torch.Tensor:
    """Batch-first sequences ``[B, T, *shape]`` (arrays ``[N, T, *shape]`` given to ``fit``); handled by
    :meth:`Encoder.encode`, which transposes every batch to ``[T, B, *shape]``."""
    raise AssertionError("unreachable: Encoder.encode handles coding='sequence'")


class Encoder(Assembly):
    """Input assembly: encodes data into spike trains (or currents) over ``T`` steps.

    Args:
        num / shape: size of one sample (excluding batch), e.g. ``shape=(1, 28, 28)``.
        coding: one of :data:`ENCODINGS` — ``'poisson'``, ``'bernoulli'``, ``'direct'``,
            ``'latency'``, ``'passthrough'`` (batches already ``[T, B, *shape]``) or ``'sequence'`` (batches
            ``[B, T, *shape]``, transposed to ``[T, B, *shape]``).  SPAIC's keyword ``coding_method=`` is accepted.
        name: display name.
        **params: coding parameters (``max_rate`` in Hz for poisson, ``threshold`` for latency).

    Input ``[B, *shape]`` → output ``O`` of shape ``[T, B, *shape]``; an input ``[T, B, *shape]``
    is passed through unchanged.
    """

    var_names = ("O",)

    def __init__(self, num: Optional[int] = None, shape: ShapeLike = None, coding: Optional[str] = None,
                 name: Optional[str] = None, coding_method: Optional[str] = None, **params):
        super().__init__(num=num, shape=shape, name=name)
        if coding is not None and coding_method is not None and coding != coding_method:
            raise ValueError(f"{self.label}: coding={coding!r} and coding_method={coding_method!r} disagree")
        coding = coding or coding_method or "poisson"
        self._encode = ENCODINGS.get(coding, owner=self.label)
        self.coding = ENCODINGS.canonical(coding)
        self.params = params
        if self._shape is None:
            raise ValueError(f"{self.label}: give num= or shape= (the size of one input sample)")

    def encode(self, x: torch.Tensor, time_steps: Optional[int], dt: float) -> torch.Tensor:
        """Return the ``[T, B, *shape]`` output for a static ``[B, *shape]`` or sequence ``[T, B, *shape]`` input."""
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"{self.label}: input must be a torch.Tensor, got {type(x).__name__}")
        n = len(self.shape)
        if self.coding == "sequence":
            return self._batch_first(x, time_steps)
        if x.dim() == n + 2 and tuple(x.shape[2:]) == self.shape:
            if time_steps is not None and x.shape[0] != time_steps:
                raise ValueError(f"{self.label}: sequence input has {x.shape[0]} steps but time_steps={time_steps}")
            return x
        if x.dim() == n + 1 and tuple(x.shape[1:]) == self.shape:
            if time_steps is None:
                raise ValueError(f"{self.label}: a static input [B, *shape] needs time_steps (an int >= 1)")
            if not x.is_floating_point():
                x = x.float()
            return self._encode(x, time_steps, dt, **self.params)
        raise ValueError(f"{self.label}: expected input [B, {', '.join(map(str, self.shape))}] or a sequence "
                         f"[T, B, {', '.join(map(str, self.shape))}], got shape {tuple(x.shape)}")

    def _batch_first(self, x: torch.Tensor, time_steps: Optional[int]) -> torch.Tensor:
        """``coding='sequence'``: a batch ``[B, T, *shape]`` (spike trains or frames stored sample by sample, as
        ``fit(x)`` batches an array ``[N, T, *shape]``) → ``[T, B, *shape]``, the engine's layout."""
        dims = ", ".join(map(str, self.shape))
        if x.dim() != len(self.shape) + 2 or tuple(x.shape[2:]) != self.shape:
            raise ValueError(f"{self.label}: encoder 'sequence' reads batches [B, T, {dims}] (give fit/evaluate/"
                             f"predict an array [N, T, {dims}]: samples first, then time steps), got a batch of "
                             f"shape {tuple(x.shape)}; a time-first batch [T, B, {dims}] needs encoder='passthrough'")
        if time_steps is not None and x.shape[1] != time_steps:
            raise ValueError(f"{self.label}: encoder 'sequence' got {x.shape[1]} time steps (dim 1 of the batch "
                             f"[B, T, {dims}], shape {tuple(x.shape)}) but time_steps={time_steps}")
        return x.transpose(0, 1).contiguous()

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, coding={self.coding!r}"
