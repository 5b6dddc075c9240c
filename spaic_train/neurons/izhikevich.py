"""Izhikevich (2003) neuron model, forward-Euler integrated with ``dt`` in ms."""

from __future__ import annotations

from typing import Any, Optional

import torch

from ..surrogate import spike
from .base import NEURONS, NeuronModel, State

__all__ = ["Izhikevich"]


@NEURONS.register("izhikevich", "izh")
class Izhikevich(NeuronModel):
    """Izhikevich neuron (SPAIC ``izh`` defaults: regular spiking)::

        dV/dt = 0.04 V**2 + 5 V + 140 - u + I        (V in mV, t in ms)
        du/dt = a (b V - u)

    Forward Euler per step (both updates use the old ``V``, ``u``)::

        V' = V + dt * (0.04 V**2 + 5 V + 140 - u + I[t])
        u' = u + dt * a * (b V - u)
        S  = Heaviside(V' - v_th)                      surrogate derivative in backward
        V  = c       where S == 1, else V'             (the reset)
        u  = u' + d * S

    Args:
        a: recovery time scale (1/ms), default 0.02.
        b: recovery sensitivity, default 0.2.
        c: reset potential (mV), default -65.
        d: recovery jump after a spike, default 8.
        v_th: spike cut-off (mV), default 30.
        surrogate, surrogate_alpha: surrogate gradient (see :class:`~spaic_train.neurons.lif.LIFFamily`);
            note ``x = V - v_th`` is in mV here.
        detach_reset: detach the spike in the reset of ``V`` and ``u``.
        dt: Euler step in ms (default 1.0).

    State: ``V`` (starts at ``c``) and ``u`` (starts at ``b * c``), ``[B, *shape]``.
    ``run_sequence`` loops over :meth:`step`.
    """

    model_name = "izhikevich"
    state_names: tuple[str, ...] = ("V", "u")

    def __init__(self, a: float = 0.02, b: float = 0.2, c: float = -65.0, d: float = 8.0, v_th: float = 30.0,
                 surrogate: Any = "atan", surrogate_alpha: Optional[float] = None, detach_reset: bool = False,
                 dt: float = 1.0, owner: str = ""):
        super().__init__(dt=dt, owner=owner)
        self.a = self._check_number("a", a)
        self.b = self._check_number("b", b)
        self.c = self._check_number("c", c)
        self.d = self._check_number("d", d)
        self.v_th = self._check_number("v_th", v_th)
        if self.c >= self.v_th:
            raise ValueError(f"{self._where()}reset potential c={self.c:g} must be below v_th={self.v_th:g}")
        self.surrogate = self._resolve_surrogate(surrogate, surrogate_alpha)
        if not isinstance(detach_reset, bool):
            raise ValueError(f"{self._where()}detach_reset must be a bool, got {detach_reset!r}")
        self.detach_reset = detach_reset

    def initial_state(self, like: torch.Tensor) -> State:
        """``V = c``, ``u = b * c`` (resting on the reset potential), shaped like ``like``."""
        return {"V": torch.full_like(like, self.c), "u": torch.full_like(like, self.b * self.c)}

    def step(self, I_t: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:
        V, u = state["V"], state["u"]
        dt = self.dt
        V_new = V + dt * (0.04 * V * V + 5.0 * V + 140.0 - u + I_t)
        u_new = u + dt * self.a * (self.b * V - u)
        S = spike(V_new - self.v_th, self.surrogate)
        Sr = S.detach() if self.detach_reset else S
        V_new = V_new * (1 - Sr) + self.c * Sr
        u_new = u_new + self.d * Sr
        return S, {"V": V_new, "u": u_new}

    def extra_repr(self) -> str:
        return (f"a={self.a:g}, b={self.b:g}, c={self.c:g}, d={self.d:g}, v_th={self.v_th:g}, "
                f"surrogate={self.surrogate!r}, detach_reset={self.detach_reset}, dt={self.dt:g}")
