"""Triton kernels for the plain LIF / IF sequence (forward and BPTT backward over ``[T, B, ...]``).

Same equations as :mod:`spaic_train.neurons.lif` (its module docstring), same hand-derived
backward as :class:`~.torch_lif.LIFSequenceFunction`; one Triton program owns a
block of neurons and loops over ``T`` inside the kernel, so a whole sequence is one launch
forward and one launch backward.

This module imports ``triton`` at import time; :mod:`.dispatch` imports it only
for CUDA inputs (never on the CPU path), and uses it for the calls that
:func:`~.dispatch.kernel_supported` accepts (the tests also run the kernels on CPU
tensors under ``TRITON_INTERPRET=1``).  Everything else falls back to
:class:`~.torch_lif.LIFSequenceFunction`.

Memory: when a gradient is needed the forward saves only the pre-reset membrane ``H``
(``[T, B, ...]`` float32); the spikes are recomputed in backward as ``H >= v_th``.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl
from torch.autograd.function import once_differentiable

from ...surrogate import KERNEL_SURROGATE_IDS, Surrogate

__all__ = ["lif_forward", "lif_backward", "TritonLIFFunction", "lif_sequence"]

_MAX_BLOCK = 1024


@triton.jit
def _sg_derivative(x, alpha, SG: tl.constexpr):
    """Surrogate derivative ``g'(x)`` (see :mod:`spaic_train.surrogate`), selected at compile time."""
    if SG == 0:  # atan
        y = 1.5707963267948966 * alpha * x
        d = (0.5 * alpha) / (1.0 + y * y)
    elif SG == 1:  # sigmoid
        s = 1.0 / (1.0 + tl.exp(-alpha * x))
        d = alpha * s * (1.0 - s)
    elif SG == 2:  # fast_sigmoid
        y = 1.0 + alpha * tl.abs(x)
        d = 1.0 / (y * y)
    elif SG == 3:  # rectangle
        d = tl.where(tl.abs(x) < alpha, 1.0, 0.0)
    elif SG == 4:  # gaussian
        d = tl.exp(x * x * (-0.5 / (alpha * alpha))) * (0.3989422804014327 / alpha)
    elif SG == 5:  # triangle
        d = tl.maximum(alpha - tl.abs(x), 0.0) / (alpha * alpha)
    elif SG == 6:  # erf
        d = tl.exp(-(alpha * x) * (alpha * x)) * (alpha * 0.5641895835477563)
    else:  # piecewise_quadratic
        d = tl.maximum(alpha - alpha * alpha * tl.abs(x), 0.0)
    return d


@triton.jit
def _lif_fwd_kernel(I_ptr, V0_ptr, O_ptr, VT_ptr, Vseq_ptr, H_ptr, T, N, beta, v_th, v_reset,
                    HARD: tl.constexpr, STORE_V: tl.constexpr, STORE_H: tl.constexpr, BLOCK: tl.constexpr):
    pid = tl.program_id(0)
    offs = pid * BLOCK + tl.arange(0, BLOCK)
    mask = offs < N
    v = tl.load(V0_ptr + offs, mask=mask, other=0.0)
    idx = offs.to(tl.int64)  # t * N + offs, advanced by N per step (int64: T * N may exceed 2**31)
    for _ in range(T):
        h = tl.load(I_ptr + idx, mask=mask, other=0.0) + beta * v
        s = h >= v_th
        tl.store(O_ptr + idx, tl.where(s, 1.0, 0.0), mask=mask)
        if STORE_H:
            tl.store(H_ptr + idx, h, mask=mask)
        if HARD:
            v = tl.where(s, v_reset, h)
        else:
            v = tl.where(s, h - v_th, h)
        if STORE_V:
            tl.store(Vseq_ptr + idx, v, mask=mask)
        idx += N
    tl.store(VT_ptr + offs, v, mask=mask)


@triton.jit
def _lif_bwd_kernel(H_ptr, gO_ptr, gVT_ptr, gVseq_ptr, dI_ptr, dV0_ptr, T, N, last, beta, v_th, v_reset, alpha,
                    HARD: tl.constexpr, DETACH: tl.constexpr, SG: tl.constexpr, HAS_GO: tl.constexpr,
                    HAS_GVT: tl.constexpr, HAS_GVSEQ: tl.constexpr, BLOCK: tl.constexpr):
    """BPTT: ``u = dL/dV[t]``; ``dI[t] = gO[t] * sg + u * (1 - X)``; ``u[t-1] = gVseq[t-1] + beta * dI[t]``.

    ``X = S + (H - v_reset) * sg`` (hard), ``S`` (hard, detached), ``v_th * sg`` (soft), ``0`` (soft, detached).
    """
    pid = tl.program_id(0)
    offs = pid * BLOCK + tl.arange(0, BLOCK)
    mask = offs < N
    if HAS_GVT:
        u = tl.load(gVT_ptr + offs, mask=mask, other=0.0)
    else:
        u = tl.zeros([BLOCK], dtype=tl.float32)
    idx = offs.to(tl.int64) + last  # (T - 1) * N + offs, moved back by N per step
    for _ in range(T):
        if HAS_GVSEQ:
            u += tl.load(gVseq_ptr + idx, mask=mask, other=0.0)
        h = tl.load(H_ptr + idx, mask=mask, other=0.0)
        sg = _sg_derivative(h - v_th, alpha, SG)
        if HARD:
            q = tl.where(h >= v_th, 0.0, 1.0)
            if not DETACH:
                q = q - (h - v_reset) * sg
        else:
            if DETACH:
                q = tl.full([BLOCK], 1.0, tl.float32)
            else:
                q = 1.0 - v_th * sg
        dh = u * q
        if HAS_GO:
            dh += tl.load(gO_ptr + idx, mask=mask, other=0.0) * sg
        tl.store(dI_ptr + idx, dh, mask=mask)
        u = beta * dh
        idx -= N
    tl.store(dV0_ptr + offs, u, mask=mask)


def _block(N: int) -> int:
    return max(16, min(_MAX_BLOCK, triton.next_power_of_2(max(1, N))))


def lif_forward(I: torch.Tensor, V0: torch.Tensor, beta: float, v_th: float, v_reset: float, hard: bool,
                return_v: bool = False, store_h: bool = False):
    """Forward kernel on contiguous ``I [T, B, ...]`` and ``V0 [B, ...]`` (float32).

    Returns ``(O, V_T, V_seq or None, H or None)``; ``H`` (pre-reset membrane) only with ``store_h``.
    """
    I, V0 = I.contiguous(), V0.contiguous()
    T, N = I.shape[0], V0.numel()
    O = torch.empty_like(I)
    VT = torch.empty_like(V0)
    Vseq = torch.empty_like(I) if return_v else None
    H = torch.empty_like(I) if store_h else None
    if N == 0 or T == 0:
        VT.copy_(V0)
        return O, VT, Vseq, H
    BLOCK = _block(N)
    _lif_fwd_kernel[(triton.cdiv(N, BLOCK),)](
        I, V0, O, VT, Vseq if return_v else O, H if store_h else O, T, N, float(beta), float(v_th),
        float(v_reset), HARD=bool(hard), STORE_V=bool(return_v), STORE_H=bool(store_h), BLOCK=BLOCK,
        num_warps=4 if BLOCK >= 512 else 1)
    return O, VT, Vseq, H


def lif_backward(H: torch.Tensor, gO, gVT, gVseq, beta: float, v_th: float, v_reset: float, hard: bool,
                 detach: bool, surrogate: Surrogate):
    """Backward kernel: ``(dI, dV0)`` from the saved pre-reset membrane ``H`` and the output gradients
    (``gO`` / ``gVT`` / ``gVseq`` may be ``None``)."""
    T = H.shape[0]
    N = H[0].numel() if T else 0
    dI = torch.empty_like(H)
    dV0 = H.new_empty(H.shape[1:])
    if T == 0 or N == 0:  # nothing was integrated: V_T is V0
        return dI, (gVT.clone() if gVT is not None else dV0.zero_())
    gO = gO.contiguous() if gO is not None else None
    gVT = gVT.contiguous() if gVT is not None else None
    gVseq = gVseq.contiguous() if gVseq is not None else None
    BLOCK = _block(N)
    _lif_bwd_kernel[(triton.cdiv(N, BLOCK),)](
        H, H if gO is None else gO, H if gVT is None else gVT, H if gVseq is None else gVseq, dI, dV0, T, N,
        (T - 1) * N, float(beta), float(v_th), float(v_reset), float(surrogate.alpha), HARD=bool(hard),
        DETACH=bool(detach), SG=KERNEL_SURROGATE_IDS[type(surrogate)], HAS_GO=gO is not None, HAS_GVT=gVT is not None,
        HAS_GVSEQ=gVseq is not None, BLOCK=BLOCK, num_warps=4 if BLOCK >= 512 else 1)
    return dI, dV0


class TritonLIFFunction(torch.autograd.Function):
    """``apply(I, V0, beta, cfg) -> (O, V_T, None, V_seq or None)`` with the Triton kernels
    (same contract as :class:`~.torch_lif.LIFSequenceFunction` without adaptation)."""

    @staticmethod
    def forward(ctx, I, V0, beta, cfg):  # type: ignore[override]
        ctx.set_materialize_grads(False)
        need_grad = bool(ctx.needs_input_grad[0] or ctx.needs_input_grad[1])
        O, VT, Vseq, H = lif_forward(I, V0, beta, cfg.v_th, cfg.v_reset, cfg.hard, cfg.return_v, need_grad)
        ctx.cfg, ctx.beta = cfg, beta
        if need_grad:
            ctx.save_for_backward(H)
        return O, VT, None, Vseq

    @staticmethod
    @once_differentiable
    def backward(ctx, gO, gVT, gaT, gVseq):  # type: ignore[override]
        (H,) = ctx.saved_tensors
        cfg = ctx.cfg
        dI, dV0 = lif_backward(H, gO, gVT, gVseq, ctx.beta, cfg.v_th, cfg.v_reset, cfg.hard, cfg.detach, cfg.sg)
        return (dI if ctx.needs_input_grad[0] else None, dV0 if ctx.needs_input_grad[1] else None, None, None)


def lif_sequence(I: torch.Tensor, V0: torch.Tensor, beta: float, cfg):
    """Fused LIF/IF integration with the Triton kernels (caller checked ``kernel_supported``)."""
    return TritonLIFFunction.apply(I.contiguous(), V0.contiguous(), float(beta), cfg)
