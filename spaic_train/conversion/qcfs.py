"""The quantization-clip-floor-shift activation (QCFS; Bu et al., ICLR 2022), for ANNs that are meant to be converted.

``QCFS(levels=L)`` replaces ``nn.ReLU`` in an ANN::

    y = λ · clamp(floor(x · L / λ + φ) / L, 0, 1)

with a learnable clip ``λ`` (``threshold``) and the shift ``φ`` (``shift``, 0.5).  ``floor`` passes gradients
straight through (the authors' ``GradFloor``), so ``λ`` and the weights train with any optimizer.  An IF neuron
with threshold ``λ``, reset by subtraction and its membrane starting at ``φ·λ`` reproduces the activation from its
spike count: after ``T`` steps with a constant input current ``x`` it has fired ``clamp(floor(x·T/λ + φ), 0, T)``
times, the activation's ``L`` levels at ``T = L`` and the same staircase, finer, at any other ``T`` (Bu et al.: the
expected conversion error is then zero at every ``T``).  :func:`spaic_train.convert` builds such layers
(``v_init = φ·λ``, the IF neurons' initial membrane); with ``convert(..., v_init=0)`` the shift goes into the
layer's bias instead (``φ·λ/L`` per step, exact for the first layer at ``T = L`` only).
"""

from __future__ import annotations

import math

import torch
from torch import nn

__all__ = ["QCFS", "qcfs"]


class _FloorSTE(torch.autograd.Function):
    """``floor`` in the forward pass, the identity in the backward pass (straight-through estimator)."""

    @staticmethod
    def forward(ctx, x):  # type: ignore[override]
        return torch.floor(x)

    @staticmethod
    def backward(ctx, g):  # type: ignore[override]
        return g


def qcfs(x: torch.Tensor, threshold: torch.Tensor, levels: int, shift: float = 0.5) -> torch.Tensor:
    """The QCFS activation as a pure function (see the module docstring); differentiable in ``x`` and ``threshold``."""
    y = _FloorSTE.apply(x / threshold * levels + shift) / levels
    return torch.clamp(y, 0.0, 1.0) * threshold


class QCFS(nn.Module):
    """Quantized clip-floor-shift activation (a drop-in for ``nn.ReLU`` in an ANN that will be converted).

    Args:
        levels: number of quantization steps ``L`` (a positive int; the SNN is exact for the first layer at
            ``T = L`` steps; Bu et al. use 4 to 16).
        threshold: initial clip value ``λ`` (> 0), learned (``nn.Parameter``); it becomes the IF threshold.
        shift: ``φ`` in ``[0, 1)``; 0.5 centres the staircase on the identity (the paper's choice).
    """

    def __init__(self, levels: int = 8, threshold: float = 4.0, shift: float = 0.5):
        super().__init__()
        if isinstance(levels, bool) or not isinstance(levels, int) or levels < 1:
            raise ValueError(f"QCFS: levels must be a positive int, got {levels!r}")
        if isinstance(threshold, bool) or not isinstance(threshold, (int, float)) or not math.isfinite(threshold) \
                or threshold <= 0:
            raise ValueError(f"QCFS: threshold must be a finite number > 0, got {threshold!r}")
        if isinstance(shift, bool) or not isinstance(shift, (int, float)) or not 0.0 <= shift < 1.0:
            raise ValueError(f"QCFS: shift must be a number in [0, 1), got {shift!r}")
        self.levels = levels
        self.shift = float(shift)
        self.threshold = nn.Parameter(torch.tensor(float(threshold)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return qcfs(x, self.threshold, self.levels, self.shift)

    def extra_repr(self) -> str:
        return f"levels={self.levels}, threshold={float(self.threshold.detach()):.4g}, shift={self.shift:g}"
