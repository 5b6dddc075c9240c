"""The torch LIF-family sequence kernel: :class:`LIFSequenceFunction` and the elementwise steps it shares
with :meth:`~spaic_train.neurons.lif.LIFFamily.step`.

Same equations as :mod:`spaic_train.neurons.lif` (its module docstring: ``H`` is the membrane before the
reset, ``V`` after it, ``S`` the spikes, ``a`` the ALIF adaptation).

:class:`LIFSequenceFunction` integrates ``[T, B, ...]`` inside one autograd function: the forward loop
writes into preallocated buffers with in-place ops and records no graph; besides its outputs it keeps
only a checkpoint of the state every block of steps.  The backward pass is the hand-derived BPTT: it
recomputes the membrane of one block from its checkpoint (same ops, bit-identical) and propagates the
adjoint through it.  Without adaptation the adjoint is a linear recurrence
``dI[t] = P[t] + Q'[t] * dI[t+1]`` whose coefficients are computed for a whole block at once, so the
sequential part is a single ``addcmul_`` per step (plain torch ops, any device).

It runs every call that :mod:`.dispatch` does not hand to the compiled kernels (:mod:`.numba_lif`,
:mod:`.triton_lif`: plain LIF / IF only), and those follow its contract.
"""

from __future__ import annotations

from typing import Optional, Union

import torch
from torch.autograd.function import once_differentiable

__all__ = ["Beta", "LIFConfig", "LIFSequenceFunction", "RESET_ALIASES", "integrate"]

Beta = Union[float, torch.Tensor]

#: reset mode names (and their SPAIC / snnTorch aliases) → ``'hard'`` / ``'soft'``
RESET_ALIASES = {"hard": "hard", "zero": "hard", "soft": "soft", "subtract": "soft"}

#: target number of elements per block when the backward pass precomputes coefficients
_BLOCK_ELEMS = 1 << 20


class LIFConfig:
    """Non-tensor settings of one fused call (plain object, ignored by autograd)."""

    __slots__ = ("v_th", "v_reset", "hard", "detach", "sg", "rho", "beta_adapt", "return_v")

    def __init__(self, v_th, v_reset, hard, detach, sg, rho, beta_adapt, return_v):
        self.v_th, self.v_reset, self.hard, self.detach = v_th, v_reset, hard, detach
        self.sg, self.rho, self.beta_adapt, self.return_v = sg, rho, beta_adapt, return_v


def integrate(I_t: torch.Tensor, V: torch.Tensor, beta: Beta, out: Optional[torch.Tensor] = None) -> torch.Tensor:
    """``beta * V + I_t`` with the same kernel in ``LIFFamily.step`` and in the fused forward (bitwise
    equal)."""
    if isinstance(beta, torch.Tensor):
        return torch.addcmul(I_t, V, beta, out=out) if out is not None else torch.addcmul(I_t, V, beta)
    return torch.add(I_t, V, alpha=beta, out=out) if out is not None else torch.add(I_t, V, alpha=beta)


def _reset(H: torch.Tensor, S: torch.Tensor, theta, cfg: LIFConfig, out: torch.Tensor) -> torch.Tensor:
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


def _theta(a: torch.Tensor, cfg: LIFConfig, out: torch.Tensor) -> torch.Tensor:
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
        cfg: :class:`LIFConfig` with ``v_th``, ``v_reset``, reset mode, ``detach_reset``, surrogate,
            ``rho``/``beta_adapt`` (ALIF) and ``return_v``.

    Returns:
        ``(O [T,B,...], V_T [B,...], a_T [B,...] or None, V_seq [T,B,...] or None)``.

    Memory: the forward keeps its input, the spikes as ``uint8`` (1 byte each) and the state at the start of
    each block of steps (``ceil(T / block)`` copies of ``[B, *shape]``); the backward recomputes the membrane
    of one block at a time from that checkpoint and the saved input (same ops, so bit-identical).
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
            integrate(I[t], V, beta_f, out=Vn)  # H[t] (out may alias V: elementwise)
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
        # the spikes are kept for backward as 1 byte each (0/1: exact), expanded one block at a time there
        ctx.save_for_backward(I, O.to(torch.uint8), Vck, ack, beta if isinstance(beta, torch.Tensor) else None)
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
        H, Th, S = Hb[:k], (Thb[:k] if adaptive else None), O[t0:t1].to(I.dtype)
        # recompute the block's pre-reset membrane (and thresholds)
        V.copy_(Vck[j])
        if adaptive:
            a.copy_(ack[j])
        for i in range(k):
            th = _theta(a, cfg, Th[i]) if adaptive else cfg.v_th
            integrate(I[t0 + i], V, beta, out=H[i])
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
                integrate(dI[t], dI[t + 1], beta, out=dI[t])
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
                integrate(gVseq[t], dI[t + 1], beta, out=u)
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
