"""Weights and inputs on a coarse binary grid, for tests that compare two execution paths bit for bit.

Two paths that multiply different matrix shapes — time-batched ``[T*B, n]`` vs step-by-step ``[B, n]``,
a checkpointed chunk ``[K*B, n]`` vs the whole run — are not equal by construction with arbitrary float
weights: BLAS picks its kernel (and the blocking of each dot product's sum) by shape and by CPU, so a row may
round differently (seen on AMD EPYC: membranes 4.8e-7 apart, which can flip a spike sitting at threshold).
With weights and biases on multiples of 2^-6 and inputs that are 0/1 spikes or multiples of 2^-4, every
product and partial sum of these small networks is exactly representable in float32: any summation order
gives the same bits, so a bitwise check then tests the paths' logic on every CPU.
"""

from __future__ import annotations

import torch

WEIGHT_GRID = 2.0 ** -6
INPUT_GRID = 2.0 ** -4


def on_grid(module: torch.nn.Module) -> torch.nn.Module:
    """Round ``module``'s weights and biases (parameters named ``*weight`` / ``*bias``) to the weight grid."""
    with torch.no_grad():
        for name, p in module.named_parameters():
            if name.endswith(("weight", "bias")):
                p.copy_(torch.round(p / WEIGHT_GRID) * WEIGHT_GRID)
    return module


def grid_input(x: torch.Tensor) -> torch.Tensor:
    """``x`` rounded to the input grid."""
    return torch.round(x / INPUT_GRID) * INPUT_GRID
