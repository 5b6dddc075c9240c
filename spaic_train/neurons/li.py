"""Non-spiking leaky integrator (``leaky_integrator``): a readout layer whose output is its membrane potential."""

from __future__ import annotations

import math
from typing import Optional

import torch

from .base import NEURONS, NeuronModel, State


# no short alias such as "li": it would be the "did you mean" of every typo of "lif"
@NEURONS.register("leaky_integrator", "non_spiking")
class LI(NeuronModel):
    """Leaky integrator without spikes: ``V[t] = beta * V[t-1] + I[t]``, output ``O[t] = V[t]``.

    The readout of networks trained on logits (SpikingJelly's ``NonSpikingLIFNode`` with
    ``decay_input=False``, Norse's ``LICell`` without synaptic current).  With ``tau = 0`` it keeps no
    memory, ``V[t] = I[t]``: the output is the current of each step, i.e. the logits of a plain
    ``Linear`` read out per step, as in the TET and tdBN papers (``'mean_voltage'`` decoder: mean over
    ``T``; ``'sequence'``: the ``[T, B, C]`` logits for the ``'tet'`` loss).

    Args:
        tau: membrane time constant in ms, ``>= 0``; ``beta = exp(-dt / tau)``, and ``0`` for ``tau = 0``.
        dt: step in ms.

    State: ``V`` ``[B, *shape]`` (starts at 0).  ``O`` is ``V`` (not 0/1 spikes), so firing-rate
    statistics of such a layer are its mean potential.
    """

    model_name = "leaky_integrator"
    emits_spikes = False
    param_aliases = {"tau_m": "tau"}

    def __init__(self, tau: float = 0.0, dt: float = 1.0, owner: str = ""):
        super().__init__(dt=dt, owner=owner)
        if isinstance(tau, bool) or not isinstance(tau, (int, float)) or not math.isfinite(tau) or tau < 0:
            raise ValueError(f"{self._where()}tau must be a finite number of ms >= 0 (0: no memory), got {tau!r}")
        self.tau = float(tau)

    def beta(self) -> float:
        """Membrane decay per step (``0`` when ``tau = 0``)."""
        return math.exp(-self.dt / self.tau) if self.tau > 0 else 0.0

    def step(self, I_t: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:
        beta = self.beta()
        V = I_t if beta == 0.0 else torch.add(I_t, state["V"], alpha=beta)
        return V, {"V": V}

    def run_sequence(self, I: torch.Tensor, state: Optional[State] = None, return_v: bool = False):
        """``[T, B, *shape]`` → ``(V, {'V': V[-1]}, V or None)``; no copy at all for ``tau = 0``."""
        beta = self.beta()
        if beta == 0.0 and I.shape[0]:
            return I, {"V": I[-1]}, (I if return_v else None)
        return super().run_sequence(I, state, return_v)

    def extra_repr(self) -> str:
        return f"tau={self.tau:g}, dt={self.dt:g}"
