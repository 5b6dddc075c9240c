"""Training support for learnable delays: the annealing schedule of their relaxation width ``σ``.

A connection with ``learn_delay=True`` trains its delays through a Gaussian relaxation of width ``σ``
(``Connection.delay_sigma``, ms; the connection's :class:`~spaic_train.connection.delays.DelayLine` owns it);
evaluation runs the exact integer delays.  Training only chooses ``σ`` per epoch and the delays' learning rate.
Annealing ``σ`` to 0 during training makes the two agree at the end::

    SNNModule(net, delay_sigma={"start": 2.0, "end": 0.0, "epochs": 20})       # or DelaySigmaSchedule(2.0, 0.0, 20)
    model.compile(..., delay_sigma={"start": 2.0, "epochs": 20})                 # Keras
    python train.py ... optimizer.delay_sigma='{start: 2.0, end: 0.0, epochs: 20}'   # config
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass
from typing import Any, Optional, Union

from torch import nn

from ..connection import Connection

__all__ = ["DelaySigmaSchedule", "as_delay_sigma_schedule", "learnable_delay_connections", "learnable_delays",
           "set_delay_sigma"]


@dataclass(frozen=True)
class DelaySigmaSchedule:
    """Linear annealing of the relaxation width of learnable delays, per epoch.

    ``σ(e) = start + (end − start) · min(1, e / epochs)`` for epoch ``e = 0, 1, ...``: ``start`` in the first
    epoch, ``end`` from epoch ``epochs`` on (so with ``end = 0`` the epochs after ``epochs`` train the weights
    with the exact integer delays, which ``eval()`` uses throughout).

    Args:
        start: width in the first epoch (ms, ``> 0``).
        end: final width (ms, ``0 <= end <= start``).
        epochs: number of epochs the annealing takes (int ``>= 1``).
    """

    start: float
    end: float = 0.0
    epochs: int = 1

    def __post_init__(self) -> None:
        for name in ("start", "end"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, numbers.Real) or not math.isfinite(v):
                raise ValueError(f"delay_sigma: {name} must be a finite number of ms, got {v!r}")
        if not self.start > 0:
            raise ValueError(f"delay_sigma: start must be > 0 ms (the Gaussian width delays are learned with), got "
                             f"{self.start!r}")
        if not 0 <= self.end <= self.start:
            raise ValueError(f"delay_sigma: end must lie in [0, start={self.start!r}] ms, got {self.end!r}")
        if isinstance(self.epochs, bool) or not isinstance(self.epochs, int) or self.epochs < 1:
            raise ValueError(f"delay_sigma: epochs must be an int >= 1, got {self.epochs!r}")

    def __call__(self, epoch: int) -> float:
        """``σ`` (ms) in epoch ``epoch`` (0-based)."""
        return self.start + (self.end - self.start) * min(1.0, epoch / self.epochs)

    def to_dict(self) -> dict[str, Any]:
        return {"start": float(self.start), "end": float(self.end), "epochs": int(self.epochs)}


def as_delay_sigma_schedule(value: Union[None, dict, DelaySigmaSchedule]) -> Optional[DelaySigmaSchedule]:
    """``None``, a :class:`DelaySigmaSchedule` or a dict of its arguments → a schedule (or ``None``)."""
    if value is None or isinstance(value, DelaySigmaSchedule):
        return value
    if isinstance(value, dict):
        unknown = set(value) - {"start", "end", "epochs"}
        if unknown:
            raise ValueError(f"delay_sigma: unknown key(s) {sorted(unknown)}; expected start, end, epochs")
        return DelaySigmaSchedule(**value)
    raise TypeError(f"delay_sigma must be None, a dict {{start, end, epochs}} or a DelaySigmaSchedule, got "
                    f"{type(value).__name__}")


def learnable_delay_connections(module: nn.Module) -> list[Connection]:
    """The :class:`~spaic_train.Connection` modules with ``learn_delay=True`` inside ``module``."""
    return [m for m in module.modules() if isinstance(m, Connection) and m.learn_delay]


def learnable_delays(module: nn.Module) -> list[nn.Parameter]:
    """The learnable delay parameters (ms) inside ``module``, one per learnable-delay connection."""
    return [c.delay for c in learnable_delay_connections(module)]


def set_delay_sigma(module: nn.Module, sigma_ms: float) -> None:
    """Set the relaxation width ``σ`` (ms) of every learnable-delay connection inside ``module``."""
    for conn in learnable_delay_connections(module):
        conn.set_delay_sigma(sigma_ms)
