"""LIF-family neuron models (``lif``, ``if``, ``plif``, ``alif``) and their fused sequence kernel.

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
``Leaky(beta)``.  With ``detach_reset=True`` the spike is detached in the reset term only (the
output spike and the ALIF adaptation keep their gradient).

:meth:`LIFFamily.run_sequence` integrates ``[T, B, ...]`` inside one autograd function
(:class:`LIFSequenceFunction`): the forward loop writes into preallocated buffers without
recording a graph and saves only the pre-reset membrane ``H`` (plus the spikes it returns and,
for ALIF, the thresholds); the backward pass is the hand-derived BPTT.  Without adaptation the
adjoint is a linear recurrence ``dI[t] = P[t] + Q'[t] * dI[t+1]`` whose coefficients are computed
for blocks of steps at once, so the sequential part is a single ``addcmul_`` per step.
"""

from __future__ import annotations

import math
from typing import Any, Optional, Tuple, Union

import torch
from torch import nn
from torch.autograd.function import once_differentiable

from ..surrogate import Surrogate, spike
from .base import NEURONS, NeuronModel, State

__all__ = ["LIFFamily", "LIF", "IF", "PLIF", "ALIF", "LIFSequenceFunction", "lif_sequence"]

Beta = Union[float, torch.Tensor]

_RESET_ALIASES = {"hard": "hard", "zero": "hard", "soft": "soft", "subtract": "soft"}

#: target number of elements per block when the backward pass precomputes coefficients
_BLOCK_ELEMS = 1 << 20


class _Cfg:
    """Non-tensor settings of one fused call (plain object, ignored by autograd)."""

    __slots__ = ("v_th", "v_reset", "hard", "detach", "sg", "rho", "beta_adapt", "return_v")

    def __init__(self, v_th, v_reset, hard, detach, sg, rho, beta_adapt, return_v):
        self.v_th, self.v_reset, self.hard, self.detach = v_th, v_reset, hard, detach
        self.sg, self.rho, self.beta_adapt, self.return_v = sg, rho, beta_adapt, return_v


def _integrate(I_t: torch.Tensor, V: torch.Tensor, beta: Beta, out: Optional[torch.Tensor] = None) -> torch.Tensor:
    """``beta * V + I_t`` with the same kernel in :meth:`step` and in the fused forward (bitwise equal)."""
    if isinstance(beta, torch.Tensor):
        return torch.addcmul(I_t, V, beta, out=out) if out is not None else torch.addcmul(I_t, V, beta)
    return torch.add(I_t, V, alpha=beta, out=out) if out is not None else torch.add(I_t, V, alpha=beta)


def _sum_to(x: torch.Tensor, shape: torch.Size) -> torch.Tensor:
    return x.sum() if len(shape) == 0 else x.sum_to_size(shape)


class LIFSequenceFunction(torch.autograd.Function):
    """Fused multi-step LIF / IF / PLIF / ALIF integration (see the module docstring for the equations).

    ``apply(I, V0, a0, beta, cfg)``:

    Args:
        I: input ``[T, B, *shape]``.
        V0: membrane at the start ``[B, *shape]`` (gradients flow into it).
        a0: ALIF adaptation at the start ``[B, *shape]``, or ``None`` (no adaptation).
        beta: membrane decay, a float or a tensor broadcastable to ``[B, *shape]`` (gradient returned
            when it requires grad, e.g. PLIF's learnable ``tau``).
        cfg: :class:`_Cfg` with ``v_th``, ``v_reset``, reset mode, ``detach_reset``, surrogate,
            ``rho``/``beta_adapt`` (ALIF) and ``return_v``.

    Returns:
        ``(O [T,B,...], V_T [B,...], a_T [B,...] or None, V_seq [T,B,...] or None)``.
    """

    @staticmethod
    def forward(ctx, I, V0, a0, beta, cfg):  # type: ignore[override]
        ctx.set_materialize_grads(False)
        T = I.shape[0]
        H = torch.empty_like(I)
        O = torch.empty_like(I)
        Vseq = torch.empty_like(I) if cfg.return_v else None
        V = V0
        buf = torch.empty_like(V0) if not cfg.return_v else None
        adaptive = a0 is not None
        Theta = torch.empty_like(I) if adaptive else None
        a = a0.clone() if adaptive else None
        beta_f = beta.detach() if isinstance(beta, torch.Tensor) else beta
        v_reset = cfg.v_reset
        # float 0/1 arithmetic only (bool masks are several times slower on CPU); every product
        # with a spike is exact, so the results equal LIFFamily.step bit for bit
        for t in range(T):
            Ht, St = H[t], O[t]
            _integrate(I[t], V, beta_f, out=Ht)
            if adaptive:
                th = Theta[t]
                torch.mul(a, cfg.beta_adapt, out=th)
                th.add_(cfg.v_th)
            else:
                th = cfg.v_th
            torch.ge(Ht, th, out=St)
            Vn = Vseq[t] if Vseq is not None else buf
            if cfg.hard:
                torch.addcmul(Ht, Ht, St, value=-1, out=Vn)  # H * (1 - S)
                if v_reset != 0.0:
                    Vn.add_(St, alpha=v_reset)
            elif adaptive:
                torch.addcmul(Ht, th, St, value=-1, out=Vn)
            else:
                torch.sub(Ht, St, alpha=th, out=Vn)
            V = Vn
            if adaptive:
                a.mul_(cfg.rho).add_(St, alpha=1 - cfg.rho)
        VT = V.clone() if T else V0.clone()
        ctx.cfg = cfg
        ctx.beta_is_tensor = isinstance(beta, torch.Tensor)
        ctx.beta_f = beta_f
        ctx.save_for_backward(H, O, V0, Theta, beta if ctx.beta_is_tensor else None)
        return O, VT, a, Vseq

    @staticmethod
    @once_differentiable
    def backward(ctx, gO, gVT, gaT, gVseq):  # type: ignore[override]
        H, O, V0, Theta, beta_t = ctx.saved_tensors
        cfg = ctx.cfg
        beta = ctx.beta_f
        T = H.shape[0]
        need_I, need_V0, need_a0, need_beta = ctx.needs_input_grad[:4]
        if T == 0:
            return (torch.zeros_like(H) if need_I else None, gVT if need_V0 else None,
                    gaT if need_a0 else None, torch.zeros_like(beta_t) if need_beta else None, None)
        if Theta is not None:
            dI, dV0, da0 = _backward_adaptive(H, O, V0, Theta, beta, cfg, gO, gVT, gaT, gVseq)
        else:
            dI, dV0 = _backward_plain(H, O, beta, cfg, gO, gVT, gVseq)
            da0 = None
        dbeta = None
        if need_beta:
            dbeta = _beta_grad(H, O, V0, Theta, cfg, dI, beta_t.shape)
        return dI if need_I else None, dV0 if need_V0 else None, da0 if need_a0 else None, dbeta, None


def _blocks(T: int, per_step: int):
    """Time blocks ``(t0, t1)`` from the end to the start, about ``_BLOCK_ELEMS`` elements each."""
    n = max(1, min(T, _BLOCK_ELEMS // max(1, per_step)))
    t1 = T
    while t1 > 0:
        t0 = max(0, t1 - n)
        yield t0, t1
        t1 = t0


def _backward_plain(H, O, beta, cfg, gO, gVT, gVseq):
    """Adjoint of the non-adaptive LIF recurrence.

    With ``u[t] = dL/dV[t]`` (post-reset membrane) the local derivatives give
    ``dL/dI[t] = dL/dH[t] = P[t] + u[t] * Q[t]`` with ``P = gO * sg`` and

    * hard reset: ``Q = (1 - S) - (H - v_reset) * sg``  (``1 - S`` with ``detach_reset``)
    * soft reset: ``Q = 1 - v_th * sg``                 (``1`` with ``detach_reset``)

    and ``u[t-1] = gVseq[t-1] + beta * dI[t]``, ``u[T-1] = gVT + gVseq[T-1]``.  Folding ``gVseq`` into
    ``P`` and ``beta`` into ``Q`` leaves ``dI[t] = P'[t] + Q'[t] * dI[t+1]``: the coefficients are
    computed a block of steps at a time, the sequential part is one ``addcmul_`` per step.
    """
    T = H.shape[0]
    dI = torch.empty_like(H)
    n = next(iter(_blocks(T, H[0].numel())))
    n = n[1] - n[0]
    need_sg = gO is not None or not cfg.detach
    sg_buf = torch.empty_like(H[:n]) if need_sg else None
    q_buf = torch.empty_like(H[:n]) if not (cfg.detach and not cfg.hard) else None
    beta_is_one = not isinstance(beta, torch.Tensor) and beta == 1.0
    for t0, t1 in _blocks(T, H[0].numel()):
        k = t1 - t0
        Hb, Sb, dIb = H[t0:t1], O[t0:t1], dI[t0:t1]
        if need_sg:
            sg = cfg.sg.derivative_(torch.sub(Hb, cfg.v_th, out=sg_buf[:k]))
        # Q (None means Q == 1)
        Q = None
        if cfg.hard:
            Q = q_buf[:k]
            if cfg.detach:
                torch.neg(Sb, out=Q).add_(1.0)
            else:
                torch.sub(Hb, cfg.v_reset, out=Q)
                Q.mul_(sg).add_(Sb).neg_().add_(1.0)
        elif not cfg.detach:
            Q = q_buf[:k]
            torch.mul(sg, -cfg.v_th, out=Q).add_(1.0)
        # P' (stored in dI)
        if gO is not None:
            torch.mul(gO[t0:t1], sg, out=dIb)
        else:
            dIb.zero_()
        if gVseq is not None:
            dIb.add_(gVseq[t0:t1]) if Q is None else dIb.addcmul_(gVseq[t0:t1], Q)
        if t1 == T and gVT is not None:
            dIb[-1].add_(gVT) if Q is None else dIb[-1].addcmul_(gVT, Q[-1])
        # Q' = beta * Q, then the sequential part: dI[t] += Q'[t] * dI[t+1]
        if Q is None:
            for t in range(t1 - 1, t0 - 1, -1):
                if t + 1 < T:
                    _integrate(dI[t], dI[t + 1], beta, out=dI[t])
        else:
            if not beta_is_one:
                Q.mul_(beta)
            for t in range(t1 - 1, t0 - 1, -1):
                if t + 1 < T:
                    dI[t].addcmul_(dI[t + 1], Q[t - t0])
    dV0 = dI[0] * beta
    return dI, dV0


def _backward_adaptive(H, O, V0, Theta, beta, cfg, gO, gVT, gaT, gVseq):
    """Adjoint of the ALIF recurrence (two coupled states ``V`` and ``a``), step by step.

    Per step, with ``u = dL/dV[t]`` and ``g = dL/da[t]``::

        dS     = gO + (1 - rho) g + u * dV/dS      (dV/dS: v_reset - H hard, -theta soft; 0 if detach_reset)
        dH     = u * dV/dH + dS * sg               (dV/dH: 1 - S hard, 1 soft)
        dtheta = -dS * sg - u * S                  (the last term for the soft reset only)
        g[t-1] = rho * g + beta_adapt * dtheta,    u[t-1] = gVseq[t-1] + beta * dH
    """
    T = H.shape[0]
    per_step = H[0].numel()
    rho, ba = cfg.rho, cfg.beta_adapt
    dI = torch.empty_like(H)
    u = gVT.clone() if gVT is not None else torch.zeros_like(V0)
    g = gaT.clone() if gaT is not None else torch.zeros_like(V0)
    dS = torch.empty_like(V0)
    tmp = torch.empty_like(V0)
    for t0, t1 in _blocks(T, per_step):
        sg = cfg.sg.derivative(H[t0:t1] - Theta[t0:t1])
        for t in range(t1 - 1, t0 - 1, -1):
            if t < T - 1:
                _integrate(gVseq[t], dI[t + 1], beta, out=u) if gVseq is not None else \
                    torch.mul(dI[t + 1], beta, out=u)
            elif gVseq is not None:
                u.add_(gVseq[t])
            S, Ht, th, sgt = O[t], H[t], Theta[t], sg[t - t0]
            # dS
            if gO is not None:
                torch.add(gO[t], g, alpha=1 - rho, out=dS)
            else:
                torch.mul(g, 1 - rho, out=dS)
            if not cfg.detach:
                if cfg.hard:
                    torch.sub(Ht, cfg.v_reset, out=tmp)
                    dS.addcmul_(u, tmp, value=-1)
                else:
                    dS.addcmul_(u, th, value=-1)
            dS.mul_(sgt)  # dS * sg
            # dH
            dIt = dI[t]
            if cfg.hard:
                torch.addcmul(dS, u, S, value=-1, out=dIt)
                dIt.add_(u)
            else:
                torch.add(dS, u, out=dIt)
            # adaptation adjoint
            g.mul_(rho).sub_(dS, alpha=ba)
            if not cfg.hard:
                g.addcmul_(u, S, value=-ba)
    dV0 = dI[0] * beta
    return dI, dV0, g


def _beta_grad(H, O, V0, Theta, cfg, dI, shape):
    """``dL/dbeta = sum_t dI[t] * V[t-1]`` (``V[-1] = V0``), reduced to ``beta``'s shape."""
    total = _sum_to(dI[0] * V0, shape)
    T = H.shape[0]
    per_step = H[0].numel()
    for t0, t1 in _blocks(T - 1, per_step):
        Hb, Sb = H[t0:t1], O[t0:t1]  # steps t0..t1-1 give V[t] for dI[t+1]
        if cfg.hard:
            Vp = torch.where(Sb.bool(), torch.tensor(cfg.v_reset, dtype=H.dtype, device=H.device), Hb)
        elif Theta is not None:
            Vp = Hb - Theta[t0:t1] * Sb
        else:
            Vp = Hb - cfg.v_th * Sb
        total = total + _sum_to(dI[t0 + 1:t1 + 1] * Vp, shape)
    return total


def lif_sequence(
    I: torch.Tensor,
    V0: Optional[torch.Tensor] = None,
    beta: Beta = 1.0,
    v_th: float = 1.0,
    v_reset: float = 0.0,
    reset: str = "hard",
    surrogate: Optional[Surrogate] = None,
    detach_reset: bool = False,
    return_v: bool = False,
    a0: Optional[torch.Tensor] = None,
    rho: float = 0.0,
    beta_adapt: float = 0.0,
):
    """Functional fused LIF integration (see the module docstring).

    Args:
        I: input ``[T, B, *shape]``.
        V0: initial membrane ``[B, *shape]`` (``None`` → zeros).
        beta: decay ``exp(-dt/tau)`` (float or tensor; a tensor that requires grad gets a gradient).
        v_th, v_reset: threshold and reset potential.
        reset: ``'hard'`` or ``'soft'``.
        surrogate: :class:`~spaic_train.surrogate.Surrogate` (``None`` → ATan(2)).
        detach_reset: detach the spike in the reset term.
        return_v: also return ``V_seq``.
        a0: ALIF adaptation state ``[B, *shape]``; ``None`` disables adaptation.
        rho, beta_adapt: ALIF decay ``exp(-dt/tau_adapt)`` and strength.

    Returns:
        ``(O, V_T, a_T, V_seq)`` — ``a_T`` is ``None`` without adaptation, ``V_seq`` without ``return_v``.
    """
    from ..surrogate import get_surrogate

    if surrogate is None or not isinstance(surrogate, Surrogate):
        surrogate = get_surrogate(surrogate)
    reset = _RESET_ALIASES[reset]
    I = I.contiguous()
    if V0 is None:
        V0 = I.new_zeros(I.shape[1:])
    V0 = V0.expand(I.shape[1:]) if V0.shape != I.shape[1:] else V0
    if a0 is not None and a0.shape != I.shape[1:]:
        a0 = a0.expand(I.shape[1:])
    cfg = _Cfg(float(v_th), float(v_reset), reset == "hard", bool(detach_reset), surrogate, float(rho),
               float(beta_adapt), bool(return_v))
    return LIFSequenceFunction.apply(I, V0.contiguous(), None if a0 is None else a0.contiguous(), beta, cfg)


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
    """

    state_names: Tuple[str, ...] = ("V",)

    def __init__(self, v_th: float = 1.0, v_reset: float = 0.0, reset: str = "hard", surrogate: Any = "atan",
                 surrogate_alpha: Optional[float] = None, detach_reset: bool = False, dt: float = 1.0,
                 owner: str = ""):
        super().__init__(dt=dt, owner=owner)
        self.v_th = self._check_number("v_th", v_th)
        self.v_reset = self._check_number("v_reset", v_reset)
        self.reset = _RESET_ALIASES[self._check_choice("reset", reset, tuple(_RESET_ALIASES))]
        self.surrogate = self._resolve_surrogate(surrogate, surrogate_alpha)
        if not isinstance(detach_reset, bool):
            raise ValueError(f"{self._where()}detach_reset must be a bool, got {detach_reset!r}")
        self.detach_reset = detach_reset

    # decay ------------------------------------------------------------------
    def beta(self) -> Beta:
        """Membrane decay per step, computed from the current ``dt``."""
        raise NotImplementedError

    def _adaptation(self) -> Tuple[float, float]:
        """``(rho, beta_adapt)``; ``beta_adapt == 0`` means no adaptation."""
        return 0.0, 0.0

    # interface --------------------------------------------------------------
    def step(self, I_t: torch.Tensor, state: State) -> Tuple[torch.Tensor, State]:
        """One step (autograd through :func:`~spaic_train.surrogate.spike`); see the module docstring."""
        beta = self.beta()
        V = state["V"]
        rho, ba = self._adaptation()
        adaptive = "a" in self.state_names
        H = _integrate(I_t, V, beta)
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
        O, VT, aT, Vseq = lif_sequence(
            I, state["V"], self.beta(), self.v_th, self.v_reset, self.reset, self.surrogate, self.detach_reset,
            return_v, a0=state["a"] if adaptive else None, rho=rho, beta_adapt=ba)
        new_state = {"V": VT}
        if adaptive:
            new_state["a"] = aT
        return O, new_state, Vseq

    def run_sequence_unfused(self, I: torch.Tensor, state: Optional[State] = None, return_v: bool = False):
        """Reference implementation: autograd through a loop over :meth:`step` (slow; for tests)."""
        return NeuronModel.run_sequence(self, I, state, return_v)

    def extra_repr(self) -> str:
        return (f"v_th={self.v_th:g}, v_reset={self.v_reset:g}, reset={self.reset!r}, "
                f"surrogate={self.surrogate!r}, detach_reset={self.detach_reset}, dt={self.dt:g}")


@NEURONS.register("lif")
class LIF(LIFFamily):
    """Leaky integrate-and-fire: ``V[t] = exp(-dt/tau) * V[t-1] + I[t]``, spike at ``v_th``, reset.

    Args:
        tau: membrane time constant in ms (SPAIC default 8.0; SPAIC alias ``tau_m``).
        v_th, v_reset, reset, surrogate, surrogate_alpha, detach_reset, dt: see :class:`LIFFamily`.

    State: ``V`` ``[B, *shape]`` (starts at 0).
    """

    model_name = "lif"
    param_aliases = {"tau_m": "tau"}

    def __init__(self, tau: float = 8.0, v_th: float = 1.0, v_reset: float = 0.0, reset: str = "hard",
                 surrogate: Any = "atan", surrogate_alpha: Optional[float] = None, detach_reset: bool = False,
                 dt: float = 1.0, owner: str = ""):
        super().__init__(v_th, v_reset, reset, surrogate, surrogate_alpha, detach_reset, dt, owner)
        self.tau = self._check_positive("tau", tau)

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
                 owner: str = ""):
        super().__init__(v_th, v_reset, reset, surrogate, surrogate_alpha, detach_reset, dt, owner)

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
        v_th, v_reset, reset, surrogate, surrogate_alpha, detach_reset, dt: see :class:`LIFFamily`.
    """

    model_name = "plif"
    param_aliases = {"tau_m": "tau"}

    def __init__(self, tau: float = 2.0, v_th: float = 1.0, v_reset: float = 0.0, reset: str = "hard",
                 surrogate: Any = "atan", surrogate_alpha: Optional[float] = None, detach_reset: bool = False,
                 dt: float = 1.0, owner: str = ""):
        super().__init__(v_th, v_reset, reset, surrogate, surrogate_alpha, detach_reset, dt, owner)
        tau = self._check_positive("tau", tau)
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
        return f"tau={float(self.tau):g} (learnable), " + super().extra_repr()


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
        v_th, v_reset, reset, surrogate, surrogate_alpha, detach_reset, dt: see :class:`LIFFamily`.

    State: ``V`` and ``a`` ``[B, *shape]`` (both start at 0).
    """

    model_name = "alif"
    param_aliases = {"tau_m": "tau"}
    state_names = ("V", "a")

    def __init__(self, tau: float = 8.0, tau_adapt: float = 200.0, beta_adapt: float = 1.8, v_th: float = 1.0,
                 v_reset: float = 0.0, reset: str = "hard", surrogate: Any = "atan",
                 surrogate_alpha: Optional[float] = None, detach_reset: bool = False, dt: float = 1.0,
                 owner: str = ""):
        super().__init__(v_th, v_reset, reset, surrogate, surrogate_alpha, detach_reset, dt, owner)
        self.tau = self._check_positive("tau", tau)
        self.tau_adapt = self._check_positive("tau_adapt", tau_adapt)
        self.beta_adapt = self._check_number("beta_adapt", beta_adapt)

    def beta(self) -> float:
        return math.exp(-self.dt / self.tau)

    def _adaptation(self) -> Tuple[float, float]:
        return math.exp(-self.dt / self.tau_adapt), self.beta_adapt

    def extra_repr(self) -> str:
        return (f"tau={self.tau:g}, tau_adapt={self.tau_adapt:g}, beta_adapt={self.beta_adapt:g}, "
                + super().extra_repr())
