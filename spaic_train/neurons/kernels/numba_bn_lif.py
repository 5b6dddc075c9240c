"""Numba CPU kernels for batch norm fused with the plain LIF / IF sequence (``conv → batchnorm → lif``).

The drive of the membrane is ``I = s * (w * (x - mean) * invstd + b)`` per channel (``s`` is ``1 - beta`` for
``decay_input`` models, else 1), written per channel as ``I = x * A + B``.  Unfused, autograd keeps the
batch norm's input ``x`` *and* its output ``I`` (the LIF kernel's saved input): two ``[T, B, ...]`` float
tensors.  Here only ``x`` is kept (with ``V0`` and the per-channel ``mean`` / ``invstd``) and ``I`` is never
materialised:

* forward, training: one pass sums ``x`` and ``x²`` per channel (float64) → batch statistics and the running
  statistics' update (unbiased variance, as ``torch.nn.BatchNorm*``); a second pass integrates the membrane
  from ``x * A + B`` and writes the spikes.  Eval (or ``track_running_stats`` statistics): the second pass only.
* backward: each thread recomputes its chunk's membrane from ``x`` (as :mod:`.numba_lif` does from ``I``),
  runs BPTT to ``dL/dI`` and writes it into the returned ``dx`` while summing ``dL/dI`` and
  ``dL/dI * x̂`` per channel (the batch norm's ``dbias`` / ``dweight`` up to ``s``); in training a second pass
  turns ``dx`` in place into the batch norm's input gradient
  ``A * (dI - mean(dI) - x̂ * mean(dI * x̂))``.  No ``[T, B, ...]`` temporary besides ``dx``.

The neuron index ``j`` of the flattened ``[T, N]`` input belongs to channel ``(j // inner) % C``: ``inner`` is the
product of the sizes after the channel dim in memory order (``H * W`` contiguous, 1 channels-last).

Used through :func:`~.dispatch.bn_lif_sequence` only (which checks that a call qualifies).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np
import torch
from numba import njit, prange
from torch.autograd.function import once_differentiable

from ...surrogate import KERNEL_SURROGATE_IDS
from .buffers import OUTPUT_BUFFERS
from .numba_lif import (
    _F0,
    _F1,
    _GO_FULL,
    _GO_SCALAR,
    _as_1d,
    _as_2d,
    _bptt_row,
    _fma,
    _launch_shape,
    _reset_factors,
    _spike_grad,
    _step_row,
    _surrogate_row,
)

__all__ = ["NormSpec", "NumbaBNLIFFunction", "bn_lif_sequence"]


@dataclass(frozen=True)
class NormSpec:
    """What the fused kernel needs of a batch norm besides ``weight`` / ``bias``.

    Attributes:
        C, inner: channels and the memory stride of the channel dim in neurons (module docstring).
        eps: added to the variance.
        batch_stats: normalise with the statistics of this call (training, or no running statistics).
        running_mean, running_var: updated in place when given and ``batch_stats`` (``factor``: momentum);
            used for normalising when not ``batch_stats``.
        factor: weight of this call's statistics in the running ones.
        scale: ``s``, the factor of the drive (``1 - beta`` with ``decay_input``).
    """

    C: int
    inner: int
    eps: float
    batch_stats: bool
    running_mean: Optional[torch.Tensor]
    running_var: Optional[torch.Tensor]
    factor: float
    scale: float


@njit(cache=True, boundscheck=False)
def _channel_rows(j0, W, inner, C, chan, per_channel, rows):
    """``chan[k]``: channel of neuron ``j0 + k``; ``rows[r, k] = per_channel[r, chan[k]]``."""
    for k in range(W):
        chan[k] = ((j0 + k) // inner) % C
    for r in range(per_channel.shape[0]):
        row, src = rows[r], per_channel[r]
        for k in range(W):
            row[k] = src[chan[k]]


@njit(cache=True, boundscheck=False)
def _integrate_chunk(X, j0, W, v, A, B, D, beta, v_th, v_reset, hard, out, out_j0, write_h, Vseq, store_v):
    """:func:`.numba_lif._integrate_chunk` on the drive ``X * A + B``, computed row by row into ``D``."""
    for t in range(X.shape[0]):
        Xt = X[t, j0:j0 + W]
        for k in range(W):
            D[k] = _fma(Xt[k], A[k], B[k])
        _step_row(D, W, v, beta, v_th, v_reset, hard, out[t, out_j0:out_j0 + W], write_h)
        if store_v:
            Vseq[t, j0:j0 + W] = v[:W]


@njit(parallel=True, cache=True, boundscheck=False)
def _stats_kernel(X, inner, C, width, nparts, acc):
    """``acc[p, 0, c]`` / ``acc[p, 1, c]``: part ``p``'s sums of ``x`` and ``x²`` over channel ``c`` (float64)."""
    T, N = X.shape
    nchunks = (N + width - 1) // width
    per_part = (nchunks + nparts - 1) // nparts
    rows = np.empty((nparts, 2, width), np.float64)
    for p in prange(nparts):
        s, q = rows[p, 0], rows[p, 1]
        acc[p] = 0.0
        for c in range(p * per_part, min(nchunks, (p + 1) * per_part)):
            j0 = c * width
            W = min(N, j0 + width) - j0
            s[:W] = 0.0
            q[:W] = 0.0
            for t in range(T):
                Xt = X[t, j0:j0 + W]
                for k in range(W):
                    x = np.float64(Xt[k])
                    s[k] += x
                    q[k] += x * x
            for k in range(W):
                ch = ((j0 + k) // inner) % C
                acc[p, 0, ch] += s[k]
                acc[p, 1, ch] += q[k]


@njit(parallel=True, cache=True, boundscheck=False)
def _forward_kernel(X, V0, affine, inner, C, O, VT, Vseq, store_v, beta, v_th, v_reset, hard, width, nparts):
    """Spikes ``O`` and ``V_T`` (and ``Vseq``) from ``X``; ``affine[0] / affine[1]``: per-channel ``A`` / ``B``."""
    T, N = X.shape
    nchunks = (N + width - 1) // width
    per_part = (nchunks + nparts - 1) // nparts
    rows = np.empty((nparts, 4, width), np.float32)
    chans = np.empty((nparts, width), np.int64)
    for p in prange(nparts):
        v, D, AB, chan = rows[p, 0], rows[p, 1], rows[p, 2:], chans[p]
        for c in range(p * per_part, min(nchunks, (p + 1) * per_part)):
            j0 = c * width
            W = min(N, j0 + width) - j0
            _channel_rows(j0, W, inner, C, chan, affine, AB)
            v[:W] = V0[j0:j0 + W]
            _integrate_chunk(X, j0, W, v, AB[0], AB[1], D, beta, v_th, v_reset, hard, O, j0, False, Vseq, store_v)
            VT[j0:j0 + W] = v[:W]


@njit(parallel=True, cache=True, boundscheck=False)
def _backward_kernel(X, V0, per_channel, inner, C, gO, go_mode, go_scalar, gVT, has_gvt, gVseq, has_gvseq, dX, dV0,
                     acc, batch_stats, beta, v_th, v_reset, alpha, sg, hard, detach, width, nparts):
    """BPTT of :mod:`.numba_lif` on the recomputed drive.  ``per_channel`` rows: ``A, B, mean, invstd``.

    Writes ``dX = dL/dI`` (``batch_stats``; the caller's second pass finishes it) or ``A * dL/dI`` (fixed
    statistics: already the input gradient), and ``acc[p, 0 / 1, c]``: sums of ``dL/dI`` and ``dL/dI * x̂``.
    """
    T, N = X.shape
    kS, kH, kT = _reset_factors(v_th, hard, detach)
    nchunks = (N + width - 1) // width
    per_part = (nchunks + nparts - 1) // nparts
    # allocated in the calling thread (see numba_lif._backward_kernel)
    scratch = np.empty((nparts, 2, T, width), np.float32)
    rows = np.empty((nparts, 9, width), np.float32)
    sums = np.empty((nparts, 2, width), np.float64)
    chans = np.empty((nparts, width), np.int64)
    for p in prange(nparts):
        H, G = scratch[p, 0], scratch[p, 1]
        v, u, go_row, E, D = rows[p, 0], rows[p, 1], rows[p, 2], rows[p, 3], rows[p, 4]
        ch_rows = rows[p, 5:]
        A, B, M, R = ch_rows[0], ch_rows[1], ch_rows[2], ch_rows[3]
        sd, sdx, chan = sums[p, 0], sums[p, 1], chans[p]
        go_row[:] = go_scalar if go_mode == _GO_SCALAR else _F0
        acc[p] = 0.0
        for c in range(p * per_part, min(nchunks, (p + 1) * per_part)):
            j0 = c * width
            W = min(N, j0 + width) - j0
            _channel_rows(j0, W, inner, C, chan, per_channel, ch_rows)
            if batch_stats:
                E[:W] = _F1
            else:
                E[:W] = A[:W]
            v[:W] = V0[j0:j0 + W]
            _integrate_chunk(X, j0, W, v, A, B, D, beta, v_th, v_reset, hard, H, 0, True, H, False)
            _surrogate_row(H.ravel(), v_th, alpha, sg, G.ravel(), T * width)
            if has_gvt:
                u[:W] = gVT[j0:j0 + W]
            else:
                u[:W] = _F0
            sd[:W] = 0.0
            sdx[:W] = 0.0
            for t in range(T - 1, -1, -1):
                if has_gvseq:
                    u[:W] += gVseq[t, j0:j0 + W]
                gOt = gO[t, j0:j0 + W] if go_mode == _GO_FULL else go_row
                _bptt_row(H[t], G[t], gOt, u, D, W, beta, v_th, v_reset, kS, kH, kT)
                Xt, dXt = X[t, j0:j0 + W], dX[t, j0:j0 + W]
                for k in range(W):
                    dh = D[k]
                    dXt[k] = E[k] * dh
                    sd[k] += dh
                    sdx[k] += dh * ((Xt[k] - M[k]) * R[k])
            dV0[j0:j0 + W] = u[:W]
            for k in range(W):
                acc[p, 0, chan[k]] += sd[k]
                acc[p, 1, chan[k]] += sdx[k]


@njit(parallel=True, cache=True, boundscheck=False)
def _input_grad_kernel(X, dX, per_channel, inner, C, width, nparts):
    """In place: ``dX = A * (dX - k2 - x̂ * k3)``, ``x̂ = (X - mean) * invstd``; ``per_channel`` rows:
    ``A, mean, invstd, k2, k3``."""
    T, N = X.shape
    nchunks = (N + width - 1) // width
    per_part = (nchunks + nparts - 1) // nparts
    rows = np.empty((nparts, 5, width), np.float32)
    chans = np.empty((nparts, width), np.int64)
    for p in prange(nparts):
        r, chan = rows[p], chans[p]
        A, M, R, K2, K3 = r[0], r[1], r[2], r[3], r[4]
        for c in range(p * per_part, min(nchunks, (p + 1) * per_part)):
            j0 = c * width
            W = min(N, j0 + width) - j0
            _channel_rows(j0, W, inner, C, chan, per_channel, r)
            for t in range(T):
                Xt, dXt = X[t, j0:j0 + W], dX[t, j0:j0 + W]
                for k in range(W):
                    dXt[k] = A[k] * (dXt[k] - K2[k] - (Xt[k] - M[k]) * R[k] * K3[k])


def _statistics(X: np.ndarray, spec: NormSpec, count: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel ``(mean, biased variance)`` of the call (float64), updating the running statistics."""
    T, N = X.shape
    width, nparts = _launch_shape(T, N, scratch=False)
    acc = np.zeros((nparts, 2, spec.C), np.float64)
    _stats_kernel(X, spec.inner, spec.C, width, nparts, acc)
    total = torch.from_numpy(acc.sum(0))
    mean = total[0] / count
    var = (total[1] / count - mean * mean).clamp_(min=0.0)
    with torch.no_grad():
        m = spec.factor
        if spec.running_mean is not None:
            spec.running_mean.copy_(spec.running_mean.double() * (1 - m) + mean * m)
        if spec.running_var is not None:
            spec.running_var.copy_(spec.running_var.double() * (1 - m) + var * (m * count / (count - 1)))
    return mean, var


def _affine(weight, bias, mean, invstd, scale: float) -> torch.Tensor:
    """``[A, B]`` per channel (float32): the drive is ``x * A + B``."""
    w = weight.detach().double() if weight is not None else torch.ones_like(mean)
    b = bias.detach().double() if bias is not None else torch.zeros_like(mean)
    A = w * invstd
    return torch.stack([A * scale, (b - mean * A) * scale]).float()


def bn_lif_forward(x, V0, weight, bias, spec: NormSpec, beta: float, v_th: float, v_reset: float, hard: bool,
                   return_v: bool):
    """Forward on contiguous float32 ``x [T, B, ...]`` / ``V0 [B, ...]``: ``(O, V_T, V_seq or None, mean, invstd)``
    (``mean`` / ``invstd`` float32 per channel, as normalised with)."""
    T, N = x.shape[0], V0.numel()
    X = _as_2d(x, T)
    count = T * (N // spec.C)
    if spec.batch_stats:
        mean, var = _statistics(X, spec, count)
    else:
        mean, var = spec.running_mean.detach().double(), spec.running_var.detach().double()
    invstd = (var + spec.eps).rsqrt()
    affine = _affine(weight, bias, mean, invstd, spec.scale)
    O = OUTPUT_BUFFERS.empty(x.shape)
    VT = torch.empty_like(V0)
    Vseq = OUTPUT_BUFFERS.empty(x.shape) if return_v else None
    width, nparts = _launch_shape(T, N, scratch=False)
    _forward_kernel(X, _as_1d(V0), affine.numpy(), spec.inner, spec.C, _as_2d(O, T), _as_1d(VT),
                    _as_2d(Vseq, T) if return_v else np.empty((1, 1), np.float32), bool(return_v),
                    np.float32(beta), np.float32(v_th), np.float32(v_reset), bool(hard), width, nparts)
    return O, VT, Vseq, mean.float(), invstd.float()


def bn_lif_backward(x, V0, weight, bias, mean, invstd, gO, gVT, gVseq, spec: NormSpec, beta: float, cfg):
    """``(dx, dV0, dweight, dbias)`` (``dweight`` / ``dbias`` ``None`` without affine parameters)."""
    T, N = x.shape[0], V0.numel()
    X = _as_2d(x, T)
    affine = _affine(weight, bias, mean.double(), invstd.double(), spec.scale)
    per_channel = torch.cat([affine, mean[None], invstd[None]]).contiguous()
    dx = OUTPUT_BUFFERS.empty(x.shape)
    dV0 = torch.empty_like(V0)
    dummy = np.empty((1, 1), np.float32)
    go_mode, go_scalar, go = _spike_grad(gO, T, dummy)
    width, nparts = _launch_shape(T, N, scratch=True)
    acc = np.zeros((nparts, 2, spec.C), np.float64)
    _backward_kernel(
        X, _as_1d(V0), per_channel.numpy(), spec.inner, spec.C, go, go_mode, np.float32(go_scalar),
        _as_1d(gVT.contiguous()) if gVT is not None else dummy[0], gVT is not None,
        _as_2d(gVseq.contiguous(), T) if gVseq is not None else dummy, gVseq is not None,
        _as_2d(dx, T), _as_1d(dV0), acc, bool(spec.batch_stats), np.float32(beta), np.float32(cfg.v_th),
        np.float32(cfg.v_reset), np.float32(cfg.sg.alpha), KERNEL_SURROGATE_IDS[type(cfg.sg)], bool(cfg.hard),
        bool(cfg.detach), width, nparts)
    sums = torch.from_numpy(acc.sum(0))  # [sum dI, sum dI * x̂] per channel
    if spec.batch_stats:
        count = T * (N // spec.C)
        k = (sums / count).float()
        rows = torch.cat([affine[:1], mean[None], invstd[None], k]).contiguous()
        width, nparts = _launch_shape(T, N, scratch=False)
        _input_grad_kernel(X, _as_2d(dx, T), rows.numpy(), spec.inner, spec.C, width, nparts)
    dweight = (sums[1] * spec.scale).to(weight.dtype) if weight is not None else None
    dbias = (sums[0] * spec.scale).to(bias.dtype) if bias is not None else None
    return dx, dV0, dweight, dbias


class NumbaBNLIFFunction(torch.autograd.Function):
    """``apply(x, V0, weight, bias, spec, beta, cfg) -> (O, V_T, V_seq or None)``: batch norm then LIF / IF.

    Saves ``x``, ``V0`` and the per-channel ``mean`` / ``invstd``; never the normalised current.
    """

    @staticmethod
    def forward(ctx, x, V0, weight, bias, spec, beta, cfg):  # type: ignore[override]
        ctx.set_materialize_grads(False)
        O, VT, Vseq, mean, invstd = bn_lif_forward(x, V0, weight, bias, spec, beta, cfg.v_th, cfg.v_reset, cfg.hard,
                                                   cfg.return_v)
        ctx.spec, ctx.beta, ctx.cfg = spec, beta, cfg
        if any(ctx.needs_input_grad[:4]):
            ctx.save_for_backward(x, V0, weight, bias, mean, invstd)
        return O, VT, Vseq

    @staticmethod
    @once_differentiable
    def backward(ctx, gO, gVT, gVseq):  # type: ignore[override]
        x, V0, weight, bias, mean, invstd = ctx.saved_tensors
        dx, dV0, dw, db = bn_lif_backward(x, V0, weight, bias, mean, invstd, gO, gVT, gVseq, ctx.spec, ctx.beta,
                                          ctx.cfg)
        need = ctx.needs_input_grad
        return (dx if need[0] else None, dV0 if need[1] else None, dw if need[2] else None,
                db if need[3] else None, None, None, None)


def bn_lif_sequence(x: torch.Tensor, V0: torch.Tensor, weight, bias, spec: NormSpec, beta: float, cfg):
    """Batch norm + LIF / IF with the numba kernels on ``x`` / ``V0`` contiguous in the same memory order
    (the caller, :func:`~.dispatch.bn_lif_sequence`, checked that the call qualifies)."""
    return NumbaBNLIFFunction.apply(x.contiguous(), V0.contiguous(), weight, bias, spec, float(beta), cfg)
