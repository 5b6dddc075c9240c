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
(:class:`LIFSequenceFunction`): the forward loop writes into preallocated buffers with in-place
ops and records no graph; besides its outputs it keeps only a checkpoint of the state every
block of steps.  The backward pass is the hand-derived BPTT: it recomputes the membrane of one
block from its checkpoint (same ops, bit-identical) and propagates the adjoint through it.
Without adaptation the adjoint is a linear recurrence ``dI[t] = P[t] + Q'[t] * dI[t+1]`` whose
coefficients are computed for a whole block at once, so the sequential part is a single
``addcmul_`` per step (plain torch ops, any device).

Compiled kernels: :func:`lif_sequence` (hence :meth:`LIFFamily.run_sequence`) hands the calls that
:func:`kernel_supported` accepts (plain LIF / IF: no adaptation, float ``beta``, built-in surrogate,
float32, not traced by ``torch.compile``) to a per-neuron time loop compiled for the device: the
numba kernels of :mod:`spaic_train.neurons.numba_lif` on CPU, the Triton kernels of
:mod:`spaic_train.neurons.triton_lif` on CUDA (same equations, same backward).  Everything else
(``plif``, ``alif``, float64, custom surrogates) uses :class:`LIFSequenceFunction`.  ``numba`` and
``triton`` are imported on first use only.  Opt out with the environment variables
``SPAIC_TRAIN_NUMBA=0`` / ``SPAIC_TRAIN_TRITON=0`` (read at import) or by setting :data:`USE_NUMBA` /
:data:`USE_TRITON` to ``False``.
"""

from __future__ import annotations

import logging
import math
import os
import warnings
from typing import Any, Optional, Union

import torch
from torch import nn
from torch.autograd.function import once_differentiable

from ..surrogate import KERNEL_SURROGATE_IDS, Surrogate, get_surrogate, spike
from .base import NEURONS, NeuronModel, State

__all__ = ["LIFFamily", "LIF", "IF", "PLIF", "ALIF", "LIFSequenceFunction", "lif_sequence", "kernel_supported",
           "load_compiled_kernels"]

Beta = Union[float, torch.Tensor]

_RESET_ALIASES = {"hard": "hard", "zero": "hard", "soft": "soft", "subtract": "soft"}

#: target number of elements per block when the backward pass precomputes coefficients
_BLOCK_ELEMS = 1 << 20


def _env_flag(name: str) -> bool:
    return os.environ.get(name, "1").strip().lower() not in ("0", "false", "no", "off")


#: use the numba kernels for supported CPU calls (see the module docstring)
USE_NUMBA = _env_flag("SPAIC_TRAIN_NUMBA")
#: use the Triton kernels for supported CUDA calls (see the module docstring)
USE_TRITON = _env_flag("SPAIC_TRAIN_TRITON")

# kernel modules by device type once loaded; False when missing or failing on this machine
_kernel_mods: dict[str, Any] = {}

log = logging.getLogger(__name__)


def _kernels(device_type: str):
    """The compiled-kernel module for ``'cpu'`` (numba) or ``'cuda'`` (triton), or ``None``.

    On first use the module is imported and run once on a tiny sequence (forward and backward), so a
    compiler that is missing (``ImportError``, silently) or broken on this machine (a ``RuntimeWarning``
    naming the error) leaves the torch fused kernel in charge instead of failing a training step.  The
    first time on a machine numba compiles the CPU kernels (~20 s): one log line says so.
    """
    mod = _kernel_mods.get(device_type)
    if mod is None:
        try:
            if device_type == "cuda":
                from . import triton_lif as mod
            else:
                from . import numba_lif as mod
            if device_type == "cpu" and not mod.kernels_cached():
                log.info(f"spaic_train: compiling the numba LIF kernels for this CPU (once per machine, ~20 s; "
                         f"cached in {mod.cache_dir()}) ...")
            # the first call may come from inside torch.inference_mode() (Lightning's predict), where no
            # tensor can require grad: the smoke run leaves it
            with torch.inference_mode(False), torch.enable_grad():
                I = torch.zeros(2, 1, 4, device=device_type, requires_grad=True)
                cfg = _Cfg(1.0, 0.0, True, False, get_surrogate("atan"), 0.0, 0.0, True)
                O, VT, _, Vseq = mod.lif_sequence(I, torch.zeros(1, 4, device=device_type), 0.5, cfg)
                (O.sum() + VT.sum() + Vseq.sum()).backward()

        except ImportError:
            mod = False
        except Exception as err:  # a compiler that fails on this machine
            warnings.warn(f"spaic_train: the compiled LIF kernels for {device_type!r} failed to run "
                          f"({type(err).__name__}: {err}); using the torch fused kernel instead", RuntimeWarning,
                          stacklevel=3)
            mod = False
        _kernel_mods[device_type] = mod
    return mod or None


def load_compiled_kernels(device: Union[str, torch.device] = "cpu") -> bool:
    """Load the compiled LIF kernels for ``device`` now rather than in the first training step.

    On CPU this imports numba and loads (or, the first time on a machine, compiles and caches) the
    kernels: about a second and ~120 MB of resident memory, once per process.  Returns ``False`` when
    no compiled kernels are available there (the torch fused kernel is used instead).
    """
    return _kernels(torch.device(device).type) is not None


def kernel_supported(I: torch.Tensor, V0: torch.Tensor, beta: Beta, cfg: _Cfg, a0=None) -> bool:
    """Whether the compiled kernels handle this call (device not checked): no adaptation, a Python
    number ``beta``, float32 ``I`` and ``V0`` on one device, a built-in surrogate (exact class), and
    not inside ``torch.compile`` tracing.  Hard or soft reset, any ``v_th`` / ``v_reset``,
    ``detach_reset`` and ``return_v`` are all supported."""
    return (a0 is None and isinstance(beta, (int, float)) and not isinstance(beta, bool)
            and I.dtype == torch.float32 and V0.dtype == torch.float32 and V0.device == I.device
            and type(cfg.sg) in KERNEL_SURROGATE_IDS and not torch.compiler.is_compiling())


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


def _reset(H: torch.Tensor, S: torch.Tensor, theta, cfg: _Cfg, out: torch.Tensor) -> torch.Tensor:
    """Post-reset membrane into ``out`` (may be ``H`` itself): hard ``H - H*S + v_reset*S``, soft ``H - theta*S``.

    Every product with the 0/1 spike is exact, so this equals ``LIFFamily.step``'s
    ``H*(1-S) + v_reset*S`` / ``H - theta*S`` bit for bit.
    """
    if cfg.hard:
        torch.addcmul(H, H, S, value=-1, out=out)
        if cfg.v_reset != 0.0:
            out.add_(S, alpha=cfg.v_reset)
    elif isinstance(theta, torch.Tensor):
        torch.addcmul(H, theta, S, value=-1, out=out)
    else:
        torch.sub(H, S, alpha=theta, out=out)
    return out


def _theta(a: torch.Tensor, cfg: _Cfg, out: torch.Tensor) -> torch.Tensor:
    """ALIF threshold ``v_th + beta_adapt * a`` (same op order as ``LIFFamily.step``)."""
    torch.mul(a, cfg.beta_adapt, out=out)
    return out.add_(cfg.v_th)


def _block_size(T: int, per_step: int) -> int:
    """Steps per block: about ``_BLOCK_ELEMS`` elements (blocks stay cache-sized)."""
    return max(1, min(T, _BLOCK_ELEMS // max(1, per_step)))


def _sum_to(x: torch.Tensor, shape: torch.Size) -> torch.Tensor:
    return x.sum() if len(shape) == 0 else x.sum_to_size(shape)


class LIFSequenceFunction(torch.autograd.Function):
    """Fused multi-step LIF / IF / PLIF / ALIF integration (see the module docstring for the equations).

    ``apply(I, V0, a0, beta, cfg)``:

    Args:
        I: input ``[T, B, *shape]`` (contiguous).
        V0: membrane at the start ``[B, *shape]`` (gradients flow into it).
        a0: ALIF adaptation at the start ``[B, *shape]``, or ``None`` (no adaptation).
        beta: membrane decay, a float or a tensor broadcastable to ``[B, *shape]`` (gradient returned
            when it requires grad, e.g. PLIF's learnable ``tau``).
        cfg: :class:`_Cfg` with ``v_th``, ``v_reset``, reset mode, ``detach_reset``, surrogate,
            ``rho``/``beta_adapt`` (ALIF) and ``return_v``.

    Returns:
        ``(O [T,B,...], V_T [B,...], a_T [B,...] or None, V_seq [T,B,...] or None)``.

    Memory: besides its outputs the forward keeps only the state at the start of each block of
    steps (``ceil(T / block)`` copies of ``[B, *shape]``); the backward recomputes the membrane of one
    block at a time from that checkpoint and the saved input (same ops, so bit-identical).
    """

    @staticmethod
    def forward(ctx, I, V0, a0, beta, cfg):  # type: ignore[override]
        ctx.set_materialize_grads(False)
        T = I.shape[0]
        n = _block_size(T, V0.numel())
        nblocks = -(-T // n)
        O = torch.empty_like(I)
        Vseq = torch.empty_like(I) if cfg.return_v else None
        adaptive = a0 is not None
        Vck = V0.new_empty((nblocks, *V0.shape))
        ack = V0.new_empty((nblocks, *V0.shape)) if adaptive else None
        a = a0.clone() if adaptive else None
        th_buf = torch.empty_like(V0) if adaptive else None
        beta_f = beta.detach() if isinstance(beta, torch.Tensor) else beta
        work = torch.empty_like(V0) if not cfg.return_v else None
        V = V0
        # float 0/1 arithmetic only: bool masks are several times slower on CPU
        for t in range(T):
            if t % n == 0:
                Vck[t // n].copy_(V)
                if adaptive:
                    ack[t // n].copy_(a)
            Vn = Vseq[t] if Vseq is not None else work
            _integrate(I[t], V, beta_f, out=Vn)  # H[t] (out may alias V: elementwise)
            th = _theta(a, cfg, th_buf) if adaptive else cfg.v_th
            St = O[t]
            torch.ge(Vn, th, out=St)
            _reset(Vn, St, th, cfg, out=Vn)
            if adaptive:
                a.mul_(cfg.rho).add_(St, alpha=1 - cfg.rho)
            V = Vn
        if T == 0:
            VT = V0.clone()
        else:
            VT = V.clone() if cfg.return_v else V
        ctx.cfg = cfg
        ctx.block = n
        ctx.beta_f = beta_f
        ctx.save_for_backward(I, O, Vck, ack, beta if isinstance(beta, torch.Tensor) else None)
        return O, VT, a, Vseq

    @staticmethod
    @once_differentiable
    def backward(ctx, gO, gVT, gaT, gVseq):  # type: ignore[override]
        I, O, Vck, ack, beta_t = ctx.saved_tensors
        cfg, n, beta = ctx.cfg, ctx.block, ctx.beta_f
        need_I, need_V0, need_a0, need_beta = ctx.needs_input_grad[:4]
        T = I.shape[0]
        if T == 0:
            return (torch.zeros_like(I) if need_I else None, gVT if need_V0 else None,
                    gaT if need_a0 else None, torch.zeros_like(beta_t) if need_beta else None, None)
        dI, dV0, da0, dbeta = _backward(I, O, Vck, ack, beta, cfg, n, gO, gVT, gaT, gVseq,
                                        beta_t.shape if need_beta else None)
        return dI if need_I else None, dV0 if need_V0 else None, da0 if need_a0 else None, dbeta, None


def _backward(I, O, Vck, ack, beta, cfg, n, gO, gVT, gaT, gVseq, beta_shape):
    """BPTT over blocks of ``n`` steps, last block first.

    For each block the pre-reset membrane ``H`` (and the ALIF threshold) is recomputed from the
    block's checkpoint, then the adjoint is propagated through the block:

    * no adaptation (:func:`_block_plain`): with ``u[t] = dL/dV[t]`` (post-reset membrane),
      ``dL/dI[t] = dL/dH[t] = P[t] + u[t] * Q[t]`` where ``P = gO * sg`` and

      - hard reset: ``Q = (1 - S) - (H - v_reset) * sg``  (``1 - S`` with ``detach_reset``)
      - soft reset: ``Q = 1 - v_th * sg``                 (``1`` with ``detach_reset``)

      and ``u[t-1] = gVseq[t-1] + beta * dI[t]``.  Folding ``gVseq`` into ``P`` and ``beta`` into ``Q``
      leaves ``dI[t] = P'[t] + Q'[t] * dI[t+1]``: the coefficients are computed for the whole block
      at once and the sequential part is a single ``addcmul_`` per step.
    * ALIF (:func:`_block_adaptive`): two coupled adjoints, stepped one at a time.

    ``dL/dbeta = sum_t dI[t] * V[t-1]`` (``V[-1] = V0``) is accumulated per block.
    """
    T = I.shape[0]
    adaptive = ack is not None
    dI = torch.empty_like(I)
    Hb = I.new_empty((n, *I.shape[1:]))
    Thb = I.new_empty((n, *I.shape[1:])) if adaptive else None
    sg_buf = torch.empty_like(Hb)
    q_buf = torch.empty_like(Hb) if not adaptive else None
    V = torch.empty_like(I[0])
    a = torch.empty_like(I[0]) if adaptive else None
    carry = None
    if adaptive:
        # adjoint state entering a block from its end: u (dL/dV) and g (dL/da)
        carry = [gVT.clone() if gVT is not None else torch.zeros_like(V),
                 gaT.clone() if gaT is not None else torch.zeros_like(V)]
    dbeta = None
    for j in range(Vck.shape[0] - 1, -1, -1):
        t0, t1 = j * n, min(T, (j + 1) * n)
        k = t1 - t0
        H, Th, S = Hb[:k], (Thb[:k] if adaptive else None), O[t0:t1]
        # recompute the block's pre-reset membrane (and thresholds)
        V.copy_(Vck[j])
        if adaptive:
            a.copy_(ack[j])
        for i in range(k):
            th = _theta(a, cfg, Th[i]) if adaptive else cfg.v_th
            _integrate(I[t0 + i], V, beta, out=H[i])
            if i + 1 < k:
                _reset(H[i], S[i], th, cfg, out=V)
                if adaptive:
                    a.mul_(cfg.rho).add_(S[i], alpha=1 - cfg.rho)
        # surrogate derivative of the block
        need_sg = adaptive or gO is not None or not cfg.detach
        sg = None
        if need_sg:
            x = sg_buf[:k]
            torch.sub(H, Th, out=x) if adaptive else torch.sub(H, cfg.v_th, out=x)
            sg = cfg.sg.derivative_(x)
        if adaptive:
            _block_adaptive(dI, H, Th, S, sg, beta, cfg, t0, t1, T, gO, gVseq, carry)
        else:
            _block_plain(dI, H, S, sg, q_buf[:k], beta, cfg, t0, t1, T, gO, gVT, gVseq)
        if beta_shape is not None:
            part = _sum_to(dI[t0] * Vck[j], beta_shape)
            if k > 1:
                Vp = _reset(H[:-1], S[:-1], Th[:-1] if adaptive else cfg.v_th, cfg, out=torch.empty_like(H[:-1]))
                part = part + _sum_to(dI[t0 + 1:t1] * Vp, beta_shape)
            dbeta = part if dbeta is None else dbeta + part
    dV0 = dI[0] * beta
    return dI, dV0, (carry[1] if adaptive else None), dbeta


def _block_plain(dI, H, S, sg, Q, beta, cfg, t0, t1, T, gO, gVT, gVseq):
    """Adjoint of the non-adaptive recurrence over steps ``t0..t1-1`` (``dI[t1:]`` already final).

    ``Q = 1 - X`` with ``X = S + (H - v_reset) * sg`` (hard), ``S`` (hard, detached), ``v_th * sg`` (soft)
    or ``0`` (soft, detached); ``Q`` (the buffer) receives ``Q' = beta * Q = beta - beta * X``.
    """
    dIb = dI[t0:t1]
    # X, written into the Q buffer (None: X == 0, Q == 1)
    if cfg.hard:
        if cfg.detach:
            X = S
        elif cfg.v_reset == 0.0:
            X = torch.addcmul(S, H, sg, out=Q)
        else:
            X = torch.addcmul(S, torch.sub(H, cfg.v_reset, out=Q), sg, out=Q)
    elif not cfg.detach:
        X = torch.mul(sg, cfg.v_th, out=Q)
    else:
        X = None
    # P' = gO * sg + gVseq * (1 - X), stored in dI; gVT enters the last step the same way
    if gO is not None:
        torch.mul(gO[t0:t1], sg, out=dIb)
    else:
        dIb.zero_()
    if gVseq is not None:
        dIb.add_(gVseq[t0:t1])
        if X is not None:
            dIb.addcmul_(gVseq[t0:t1], X, value=-1)
    if t1 == T and gVT is not None:
        dIb[-1].add_(gVT)
        if X is not None:
            dIb[-1].addcmul_(gVT, X[-1], value=-1)
    # sequential part: dI[t] += Q'[t] * dI[t+1]
    if X is None:
        for t in range(t1 - 1, t0 - 1, -1):
            if t + 1 < T:
                _integrate(dI[t], dI[t + 1], beta, out=dI[t])
        return
    if isinstance(beta, torch.Tensor):
        torch.mul(X, beta, out=Q).neg_().add_(beta)
    else:
        torch.mul(X, -beta, out=Q).add_(beta)
    for t in range(t1 - 1, t0 - 1, -1):
        if t + 1 < T:
            dI[t].addcmul_(dI[t + 1], Q[t - t0])


def _block_adaptive(dI, H, Th, S, sg, beta, cfg, t0, t1, T, gO, gVseq, carry):
    """Adjoint of the ALIF recurrence over steps ``t0..t1-1``, one step at a time.

    Per step, with ``u = dL/dV[t]`` and ``g = dL/da[t]`` (``carry`` holds them at ``t1 - 1``)::

        dS     = gO + (1 - rho) g + u * dV/dS      (dV/dS: v_reset - H hard, -theta soft; 0 if detach_reset)
        dH     = u * dV/dH + dS * sg               (dV/dH: 1 - S hard, 1 soft)
        dtheta = -dS * sg - u * S                  (the last term for the soft reset only)
        g[t-1] = rho * g + beta_adapt * dtheta,    u[t-1] = gVseq[t-1] + beta * dH
    """
    rho, ba = cfg.rho, cfg.beta_adapt
    u, g = carry
    dS = torch.empty_like(u)
    tmp = torch.empty_like(u)
    for t in range(t1 - 1, t0 - 1, -1):
        i = t - t0
        if t < T - 1:
            if gVseq is not None:
                _integrate(gVseq[t], dI[t + 1], beta, out=u)
            else:
                torch.mul(dI[t + 1], beta, out=u)
        elif gVseq is not None:
            u.add_(gVseq[t])
        St, Ht, th = S[i], H[i], Th[i]
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
        dS.mul_(sg[i])  # dS * sg
        dIt = dI[t]
        if cfg.hard:
            torch.addcmul(dS, u, St, value=-1, out=dIt)
            dIt.add_(u)
        else:
            torch.add(dS, u, out=dIt)
        g.mul_(rho).sub_(dS, alpha=ba)
        if not cfg.hard:
            g.addcmul_(u, St, value=-ba)


def _memory_order(x: torch.Tensor) -> Optional[tuple[int, ...]]:
    """For a dense, non-contiguous ``x`` whose first (time) dim is outermost in memory: the dim order
    that makes it contiguous (``x.permute(order).is_contiguous()``); ``None`` otherwise."""
    if x.dim() < 3 or x.is_contiguous():
        return None
    order = (0, *sorted(range(1, x.dim()), key=lambda d: (-x.stride(d), d)))
    return order if x.permute(order).is_contiguous() else None


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

    Calls that :func:`kernel_supported` accepts run the compiled kernels (module docstring); the results
    match the torch path.  bf16 / fp16 inputs (mixed precision) are integrated in float32 and give float32
    outputs (the gradient reaches ``I`` in its own dtype).
    """
    if surrogate is None or not isinstance(surrogate, Surrogate):
        surrogate = get_surrogate(surrogate)
    reset = _RESET_ALIASES[reset]
    if I.dtype in (torch.bfloat16, torch.float16):
        # half-precision currents (bf16 / fp16 autocast): integrate in float32 — a bf16 membrane keeps 8 mantissa
        # bits, too few to accumulate T steps — which also keeps the compiled float32 kernels; outputs are float32
        I = I.float()
        V0 = None if V0 is None else V0.float()
        a0 = None if a0 is None else a0.float()
    if V0 is None:
        V0 = I.new_zeros(I.shape[1:])
    V0 = V0.expand(I.shape[1:]) if V0.shape != I.shape[1:] else V0
    if a0 is not None and a0.shape != I.shape[1:]:
        a0 = a0.expand(I.shape[1:])
    perm = _memory_order(I) if not (isinstance(beta, torch.Tensor) and beta.dim() > 0) else None
    if perm is not None:
        # dense but permuted (e.g. a channels_last conv output): integrate in memory order, no copy
        inv = tuple(sorted(range(len(perm)), key=perm.__getitem__))
        state_perm = [p - 1 for p in perm[1:]]
        state_inv = [p - 1 for p in inv[1:]]
        O, VT, aT, Vseq = lif_sequence(I.permute(perm), V0.permute(state_perm), beta, v_th, v_reset, reset, surrogate,
                                       detach_reset, return_v, None if a0 is None else a0.permute(state_perm), rho,
                                       beta_adapt)
        return (O.permute(inv), VT.permute(state_inv), None if aT is None else aT.permute(state_inv),
                None if Vseq is None else Vseq.permute(inv))
    I = I.contiguous()
    cfg = _Cfg(float(v_th), float(v_reset), reset == "hard", bool(detach_reset), surrogate, float(rho),
               float(beta_adapt), bool(return_v))
    use = {"cpu": USE_NUMBA, "cuda": USE_TRITON}.get(I.device.type, False)
    if use and kernel_supported(I, V0, beta, cfg, a0):
        kernels = _kernels(I.device.type)
        if kernels is not None:
            return kernels.lif_sequence(I, V0, beta, cfg)
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

    state_names: tuple[str, ...] = ("V",)

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

    def _adaptation(self) -> tuple[float, float]:
        """``(rho, beta_adapt)``; ``beta_adapt == 0`` means no adaptation."""
        return 0.0, 0.0

    # interface --------------------------------------------------------------
    def step(self, I_t: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:
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

    def _adaptation(self) -> tuple[float, float]:
        return math.exp(-self.dt / self.tau_adapt), self.beta_adapt

    def extra_repr(self) -> str:
        return (f"tau={self.tau:g}, tau_adapt={self.tau_adapt:g}, beta_adapt={self.beta_adapt:g}, "
                + super().extra_repr())
