"""Monitors: record a variable of an assembly over the time steps of a run."""

from __future__ import annotations

from typing import Optional

import torch

from ..assembly import Assembly


class StateMonitor:
    """Records a variable of an assembly during each run.

    Args:
        target: the assembly to watch.
        var_name: ``'O'`` (spikes), ``'V'`` (membrane after update and reset) or ``'Isyn'``
            (summed synaptic input).

    After a run ``.values`` is the detached ``[T, B, *target.shape]`` tensor of the last call and
    ``.times`` the step times in ms.
    """

    def __init__(self, target: Assembly, var_name: str = "O", name: Optional[str] = None):
        if not isinstance(target, Assembly):
            raise TypeError(f"StateMonitor({name!r}): target must be an assembly, got {type(target).__name__}")
        if var_name not in target.var_names:
            raise ValueError(f"StateMonitor({name!r}): {target.label} has no variable {var_name!r}; "
                             f"valid: {', '.join(target.var_names)}")
        self.target = target
        self.var_name = var_name
        self.name = name
        self.values: Optional[torch.Tensor] = None
        self.times: Optional[torch.Tensor] = None

    def record(self, seq: torch.Tensor, dt: float) -> None:
        self.values = seq.detach()
        self.times = torch.arange(seq.shape[0], dtype=torch.float32) * dt

    def __repr__(self) -> str:
        return f"StateMonitor(target={self.target.label}, var_name={self.var_name!r})"
