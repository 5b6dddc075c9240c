"""LIF-family neuron models: ``lif``, ``if``, ``plif`` and ``alif``.

Discrete-time equations, for each step ``t`` (``dt`` and every ``tau`` in ms)::

    H[t]     = beta * V[t-1] + I[t]                      beta = exp(-dt / tau)   (IF: beta = 1)
    theta[t] = v_th                                      (ALIF: v_th + beta_adapt * a[t-1])
    S[t]     = Heaviside(H[t] - theta[t])                surrogate derivative in backward
    V[t]     = v_reset      where S[t] == 1, else H[t]   reset='hard'
    V[t]     = H[t] - theta[t] * S[t]                    reset='soft'
    a[t]     = rho * a[t-1] + (1 - rho) * S[t]           ALIF only, rho = exp(-dt / tau_adapt)

``H`` is the membrane before reset, ``V`` after reset (what the next step and ``V_seq`` see).
The membrane leaks towards 0 (the resting potential) and ``I`` is added undecayed, i.e.
SpikingJelly's ``LIFNode(decay_input=False)`` with ``tau_sj = 1 / (1 - beta)`` and snnTorch's
``Leaky(beta)``.  With ``decay_input=True`` (``lif``, ``plif``, ``alif``) the input decays with the membrane::

    H[t]     = beta * V[t-1] + (1 - beta) * I[t]  =  V[t-1] + (I[t] - V[t-1]) * (1 - beta)

which is SpikingJelly's ``LIFNode(decay_input=True)`` (its default; ``H = V + (X - (V - V_reset)) / tau_sj``)
for ``v_reset=0`` or its soft reset (``v_reset=None``), with ``beta = 1 - 1 / tau_sj``, i.e.
``tau = -dt / ln(1 - 1/tau_sj)`` (``tau_sj = 2`` → ``tau = 1/ln 2`` ms).  It is the same integration on the input
scaled by ``1 - beta`` (exactly what the kernels receive, so every kernel serves both).

With ``detach_reset=True`` the spike is detached in the reset term only (the
output spike and the ALIF adaptation keep their gradient).

The classes here hold the parameters and the per-step update (:meth:`LIFFamily.step`); no kernel code:
:meth:`LIFFamily.run_sequence` integrates ``[T, B, ...]`` with one call of
:func:`~spaic_train.neurons.kernels.lif_sequence`, the dispatch point that picks the torch, numba or Triton
kernel (see :mod:`spaic_train.neurons.kernels`).
"""

from __future__ import annotations

import math
from typing import Any, Optional

import torch
from torch import nn

from ..surrogate import spike
from .base import NEURONS, NeuronModel, State
from .kernels.dispatch import bn_lif_sequence, lif_sequence
from .kernels.torch_lif import RESET_ALIASES, Beta, integrate

__all__ = ["LIFFamily", "LIF", "IF", "PLIF", "ALIF"]


class LIFFamily(NeuronModel):
    """Common base of ``lif``, ``if``, ``plif`` and ``alif`` (the reset / spike / surrogate logic).

    Args:
        v_th: firing threshold (same unit as ``V``).
        v_reset: potential after a spike with ``reset='hard'``.
        reset: ``'hard'`` (``V <- v_reset``; alias ``'zero'``) or ``'soft'`` (``V <- V - v_th``; alias
            ``'subtract'``).
        surrogate: surrogate gradient: a name from :data:`spaic_train.surrogate.SURROGATES`, a
            :class:`~spaic_train.surrogate.Surrogate`, or a dict ``{'name': ..., 'alpha': ...}``.
        surrogate_alpha: overrides the surrogate's ``alpha`` (``None`` → its default).
        detach_reset: detach the spike in the reset term of the backward pass.
        dt: step in ms.
        v_init: membrane potential at the start of every sample (same unit as ``V``; default 0).  A converted
            QCFS layer starts at ``v_th / 2`` (Bu et al. 2022), which makes the IF neuron's spike count the
            quantized activation at every ``T``.  Every path honours it (fused kernels via their ``V0``, the stepped
            loop, time checkpoints): it is :meth:`initial_state`.
    """

    state_names: tuple[str, ...] = ("V",)
    #: scale the input by ``1 - beta`` (SpikingJelly's ``decay_input=True``); set by the leaky models
    decay_input: bool = False

    def __init__(self, v_th: float = 1.0, v_reset: float = 0.0, reset: str = "hard", surrogate: Any = "atan",
                 surrogate_alpha: Optional[float] = None, detach_reset: bool = False, dt: float = 1.0,
                 owner: str = "", v_init: float = 0.0):
        super().__init__(dt=dt, owner=owner)
        self.v_th = self._check_number("v_th", v_th)
        self.v_init = self._check_number("v_init (the initial membrane potential, in the units of V)", v_init)
        self.v_reset = self._check_number("v_reset", v_reset)
        self.reset = RESET_ALIASES[self._check_choice("reset", reset, tuple(RESET_ALIASES))]
        self.surrogate = self._resolve_surrogate(surrogate, surrogate_alpha)
        if not isinstance(detach_reset, bool):
            raise ValueError(f"{self._where()}detach_reset must be a bool, got {detach_reset!r}")
        self.detach_reset = detach_reset

    # decay ------------------------------------------------------------------
    def beta(self) -> Beta:
        """Membrane decay per step, computed from the current ``dt``."""
        raise NotImplementedError

    def _check_decay_input(self, decay_input: Any) -> bool:
        if not isinstance(decay_input, bool):
            raise ValueError(f"{self._where()}decay_input must be a bool (True: the input decays with the membrane, "
                             f"SpikingJelly's decay_input=True), got {decay_input!r}")
        return decay_input

    def _drive(self, I: torch.Tensor, beta: Beta) -> torch.Tensor:
        """The input as the membrane receives it: ``I``, or ``(1 - beta) * I`` with ``decay_input`` (half-precision
        currents are scaled in float32, as the kernels integrate them)."""
        if not self.decay_input:
            return I
        if I.dtype in (torch.bfloat16, torch.float16):
            I = I.float()
        return I * (1.0 - beta)

    def _adaptation(self) -> tuple[float, float]:
        """``(rho, beta_adapt)``; ``beta_adapt == 0`` means no adaptation."""
        return 0.0, 0.0

    # interface --------------------------------------------------------------
    def initial_state(self, like: torch.Tensor) -> State:
        """Fresh state: ``V = v_init`` (zeros, as every model, when ``v_init == 0``), ALIF's ``a = 0``."""
        state = super().initial_state(like)
        if self.v_init != 0.0:
            state["V"] = torch.full_like(like, self.v_init)
        return state

    def step(self, I_t: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:
        """One step (autograd through :func:`~spaic_train.surrogate.spike`); see the module docstring."""
        beta = self.beta()
        V = state["V"]
        rho, ba = self._adaptation()
        adaptive = "a" in self.state_names
        H = integrate(self._drive(I_t, beta), V, beta)
        theta = self.v_th + ba * state["a"] if adaptive else self.v_th
        S = spike(H - theta, self.surrogate)
        Sr = S.detach() if self.detach_reset else S
        if self.reset == "hard":
            V_new = H * (1 - Sr) + self.v_reset * Sr
        else:
            V_new = H - theta * Sr
        new_state = {"V": V_new}
        if adaptive:
            new_state["a"] = rho * state["a"] + (1 - rho) * S
        return S, new_state

    def run_sequence(self, I: torch.Tensor, state: Optional[State] = None, return_v: bool = False):
        """Fused integration of ``I`` ``[T, B, *shape]`` (one autograd node); see :class:`NeuronModel`."""
        if state is None:
            like = I[0] if I.shape[0] else I.new_zeros(I.shape[1:])
            state = self.initial_state(like)
        rho, ba = self._adaptation()
        adaptive = "a" in self.state_names
        beta = self.beta()
        O, VT, aT, Vseq = lif_sequence(
            self._drive(I, beta), state["V"], beta, self.v_th, self.v_reset, self.reset, self.surrogate,
            self.detach_reset, return_v, a0=state["a"] if adaptive else None, rho=rho, beta_adapt=ba)
        new_state = {"V": VT}
        if adaptive:
            new_state["a"] = aT
        return O, new_state, Vseq

    def run_sequence_normed(self, x: torch.Tensor, norm: nn.Module, state: Optional[State] = None,
                            return_v: bool = False):
        """Batch norm ``norm`` then this neuron in one kernel pass where
        :func:`~spaic_train.neurons.kernels.dispatch.bn_lif_sequence` takes the call (plain ``lif`` / ``if``);
        otherwise :meth:`NeuronModel.run_sequence_normed` (normalise, then integrate)."""
        if "a" not in self.state_names:
            if state is None:
                state = self.initial_state(x[0] if x.shape[0] else x.new_zeros(x.shape[1:]))
            beta = self.beta()
            fused = bn_lif_sequence(x, norm, state["V"], beta, self.v_th, self.v_reset, self.reset, self.surrogate,
                                    self.detach_reset, return_v,
                                    drive_scale=1.0 - beta if self.decay_input else 1.0)
            if fused is not None:
                O, VT, Vseq = fused
                return O, {"V": VT}, Vseq
        return super().run_sequence_normed(x, norm, state, return_v)

    def run_sequence_unfused(self, I: torch.Tensor, state: Optional[State] = None, return_v: bool = False):
        """Reference implementation: autograd through a loop over :meth:`step` (slow; for tests)."""
        return NeuronModel.run_sequence(self, I, state, return_v)

    def extra_repr(self) -> str:
        return (f"v_th={self.v_th:g}, v_reset={self.v_reset:g}, reset={self.reset!r}, "
                f"surrogate={self.surrogate!r}, detach_reset={self.detach_reset}, dt={self.dt:g}"
                + (", decay_input=True" if self.decay_input else "")
                + (f", v_init={self.v_init:g}" if self.v_init != 0.0 else ""))


@NEURONS.register("lif")
class LIF(LIFFamily):
    """Leaky integrate-and-fire: ``V[t] = exp(-dt/tau) * V[t-1] + I[t]``, spike at ``v_th``, reset.

    Args:
        tau: membrane time constant in ms (SPAIC default 8.0; SPAIC alias ``tau_m``).
        decay_input: ``H = beta * V + (1 - beta) * I`` (SpikingJelly's ``decay_input=True``; module docstring).
        v_th, v_reset, reset, surrogate, surrogate_alpha, detach_reset, dt, v_init: see :class:`LIFFamily`.

    State: ``V`` ``[B, *shape]`` (starts at ``v_init``, 0 by default).
    """

    model_name = "lif"
    param_aliases = {"tau_m": "tau"}

    def __init__(self, tau: float = 8.0, v_th: float = 1.0, v_reset: float = 0.0, reset: str = "hard",
                 surrogate: Any = "atan", surrogate_alpha: Optional[float] = None, detach_reset: bool = False,
                 dt: float = 1.0, owner: str = "", decay_input: bool = False, v_init: float = 0.0):
        super().__init__(v_th, v_reset, reset, surrogate, surrogate_alpha, detach_reset, dt, owner, v_init)
        self.tau = self._check_positive("tau", tau)
        self.decay_input = self._check_decay_input(decay_input)

    def beta(self) -> float:
        return math.exp(-self.dt / self.tau)

    def extra_repr(self) -> str:
        return f"tau={self.tau:g}, " + super().extra_repr()


@NEURONS.register("if")
class IF(LIFFamily):
    """Integrate-and-fire (no leak, ``beta = 1``): ``V[t] = V[t-1] + I[t]``, spike at ``v_th``, reset.

    Args: see :class:`LIFFamily`.
    """

    model_name = "if"

    def __init__(self, v_th: float = 1.0, v_reset: float = 0.0, reset: str = "hard", surrogate: Any = "atan",
                 surrogate_alpha: Optional[float] = None, detach_reset: bool = False, dt: float = 1.0,
                 owner: str = "", v_init: float = 0.0):
        super().__init__(v_th, v_reset, reset, surrogate, surrogate_alpha, detach_reset, dt, owner, v_init)

    def beta(self) -> float:
        return 1.0


@NEURONS.register("plif")
class PLIF(LIFFamily):
    """Parametric LIF (Fang et al. 2021) with a learnable membrane time constant.

    ``tau = exp(log_tau)`` with ``log_tau`` an ``nn.Parameter`` (so ``tau > 0`` always), shared by
    the group; ``beta = exp(-dt / tau)``.  The fused kernel returns ``dL/dbeta`` and autograd carries
    it to ``log_tau``.

    Args:
        tau: initial time constant in ms (SPAIC default 2.0; alias ``tau_m``).
        decay_input: see :class:`LIF` (SpikingJelly's ``ParametricLIFNode(decay_input=True)``).
        v_th, v_reset, reset, surrogate, surrogate_alpha, detach_reset, dt, v_init: see :class:`LIFFamily`.
    """

    model_name = "plif"
    param_aliases = {"tau_m": "tau"}

    def __init__(self, tau: float = 2.0, v_th: float = 1.0, v_reset: float = 0.0, reset: str = "hard",
                 surrogate: Any = "atan", surrogate_alpha: Optional[float] = None, detach_reset: bool = False,
                 dt: float = 1.0, owner: str = "", decay_input: bool = False, v_init: float = 0.0):
        super().__init__(v_th, v_reset, reset, surrogate, surrogate_alpha, detach_reset, dt, owner, v_init)
        tau = self._check_positive("tau", tau)
        self.decay_input = self._check_decay_input(decay_input)
        self.log_tau = nn.Parameter(torch.tensor(math.log(tau)))

    @property
    def tau(self) -> torch.Tensor:
        """Current time constant in ms (0-dim tensor, differentiable)."""
        return self.log_tau.exp()

    @tau.setter
    def tau(self, value: float) -> None:
        value = self._check_positive("tau", float(value))
        with torch.no_grad():
            self.log_tau.fill_(math.log(value))

    def beta(self) -> torch.Tensor:
        return torch.exp(-self.dt * torch.exp(-self.log_tau))

    def extra_repr(self) -> str:
        return f"tau={float(self.tau.detach()):g} (learnable), " + super().extra_repr()


@NEURONS.register("alif")
class ALIF(LIFFamily):
    """Adaptive-threshold LIF (Bellec et al. 2018, LSNN)::

        theta[t] = v_th + beta_adapt * a[t-1]
        a[t]     = rho * a[t-1] + (1 - rho) * S[t],     rho = exp(-dt / tau_adapt)

    the membrane as in :class:`LIF`; the soft reset subtracts ``theta[t]``.  Gradients flow through
    the adaptation state (``a`` is never detached, even with ``detach_reset``).

    Args:
        tau: membrane time constant in ms (default 8.0; alias ``tau_m``).
        tau_adapt: adaptation time constant in ms (default 200.0).
        beta_adapt: adaptation strength (default 1.8, as in Bellec et al.).
        decay_input: see :class:`LIF`.
        v_th, v_reset, reset, surrogate, surrogate_alpha, detach_reset, dt, v_init: see :class:`LIFFamily`.

    State: ``V`` and ``a`` ``[B, *shape]`` (``V`` starts at ``v_init``, 0 by default; ``a`` at 0).
    """

    model_name = "alif"
    param_aliases = {"tau_m": "tau"}
    state_names = ("V", "a")

    def __init__(self, tau: float = 8.0, tau_adapt: float = 200.0, beta_adapt: float = 1.8, v_th: float = 1.0,
                 v_reset: float = 0.0, reset: str = "hard", surrogate: Any = "atan",
                 surrogate_alpha: Optional[float] = None, detach_reset: bool = False, dt: float = 1.0,
                 owner: str = "", decay_input: bool = False, v_init: float = 0.0):
        super().__init__(v_th, v_reset, reset, surrogate, surrogate_alpha, detach_reset, dt, owner, v_init)
        self.tau = self._check_positive("tau", tau)
        self.decay_input = self._check_decay_input(decay_input)
        self.tau_adapt = self._check_positive("tau_adapt", tau_adapt)
        self.beta_adapt = self._check_number("beta_adapt", beta_adapt)

    def beta(self) -> float:
        return math.exp(-self.dt / self.tau)

    def _adaptation(self) -> tuple[float, float]:
        return math.exp(-self.dt / self.tau_adapt), self.beta_adapt

    def extra_repr(self) -> str:
        return (f"tau={self.tau:g}, tau_adapt={self.tau_adapt:g}, beta_adapt={self.beta_adapt:g}, "
                + super().extra_repr())
