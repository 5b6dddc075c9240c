"""A tiny spiking classifier shared by the DDP tests and the scripts they launch (``tests/`` on the path)."""

from __future__ import annotations

import torch
from torch import nn

from spaic_train.surrogate import get_surrogate, spike

SURROGATE = get_surrogate("fast_sigmoid", alpha=3.0)


class TinySNN(nn.Module):
    """64 inputs → 10 LIF-like neurons (leak 0.5, threshold 1, reset by subtraction), 4 steps; returns the
    spike counts ``[B, 10]``."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(64, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        cur = self.fc(x.flatten(1))
        v = torch.zeros_like(cur)
        n = torch.zeros_like(cur)
        for _ in range(4):
            v = 0.5 * v + cur
            s = spike(v - 1.0, SURROGATE)
            v = v - s
            n = n + s
        return n
