"""Numba CPU passes of batch norm fused with the plain LIF / IF sequence (:mod:`.bn_lif` has the equations and
what is saved); used where the C kernels (:mod:`.c_lif`) cannot be built.  :data:`KERNELS` is this module's
:class:`~.bn_lif.BNLIFKernels`.
"""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import torch
from numba import njit, prange

from ...surrogate import KERNEL_SURROGATE_IDS
from .numba_lif import (
    _F0,
    _F1,
    GO_FULL,
    GO_SCALAR,
    _as_1d,
    _as_2d,
    _bptt_row,
    _fma,
    _launch_shape,
    _reset_factors,
    _spike_grad,
    _step_row,
    _surrogate_row,
    part_chunks,
)

__all__ = ["KERNELS"]


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
    rows = np.empty((nparts, 2, width), np.float64)
    for p in prange(nparts):
        s, q = rows[p, 0], rows[p, 1]
        acc[p] = 0.0
        for c in range(*part_chunks(N, width, nparts, p)):
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
    rows = np.empty((nparts, 4, width), np.float32)
    chans = np.empty((nparts, width), np.int64)
    for p in prange(nparts):
        v, D, AB, chan = rows[p, 0], rows[p, 1], rows[p, 2:], chans[p]
        for c in range(*part_chunks(N, width, nparts, p)):
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
        go_row[:] = go_scalar if go_mode == GO_SCALAR else _F0
        acc[p] = 0.0
        for c in range(*part_chunks(N, width, nparts, p)):
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
                gOt = gO[t, j0:j0 + W] if go_mode == GO_FULL else go_row
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
    rows = np.empty((nparts, 5, width), np.float32)
    chans = np.empty((nparts, width), np.int64)
    for p in prange(nparts):
        r, chan = rows[p], chans[p]
        A, M, R, K2, K3 = r[0], r[1], r[2], r[3], r[4]
        for c in range(*part_chunks(N, width, nparts, p)):
            j0 = c * width
            W = min(N, j0 + width) - j0
            _channel_rows(j0, W, inner, C, chan, per_channel, r)
            for t in range(T):
                Xt, dXt = X[t, j0:j0 + W], dX[t, j0:j0 + W]
                for k in range(W):
                    dXt[k] = A[k] * (dXt[k] - K2[k] - (Xt[k] - M[k]) * R[k] * K3[k])


def _channel_sums(X: torch.Tensor, inner: int, C: int) -> torch.Tensor:
    T, N = X.shape
    width, nparts = _launch_shape(T, N, scratch=False)
    acc = np.zeros((nparts, 2, C), np.float64)
    _stats_kernel(X.numpy(), inner, C, width, nparts, acc)
    return torch.from_numpy(acc.sum(0))


def _forward(X, V0, affine, inner, C, O, bits, VT, Vseq, beta, v_th, v_reset, hard) -> None:
    if bits is not None:
        raise ValueError("numba_bn_lif writes no spike bytes; pass bits=None")
    T, N = X.shape
    width, nparts = _launch_shape(T, N, scratch=False)
    _forward_kernel(X.numpy(), V0.numpy(), affine.numpy(), inner, C, O.numpy(), VT.numpy(),
                    Vseq.numpy() if Vseq is not None else np.empty((1, 1), np.float32), Vseq is not None,
                    np.float32(beta), np.float32(v_th), np.float32(v_reset), bool(hard), width, nparts)


def _backward(X, V0, per_channel, inner, C, gO, gVT, gVseq, dX, dV0, batch_stats, beta, cfg) -> torch.Tensor:
    T, N = X.shape
    dummy = np.empty((1, 1), np.float32)
    go_mode, go_scalar, go = _spike_grad(gO, T, dummy)
    width, nparts = _launch_shape(T, N, scratch=True)
    acc = np.zeros((nparts, 2, C), np.float64)
    _backward_kernel(
        X.numpy(), V0.numpy(), per_channel.numpy(), inner, C, go, go_mode, np.float32(go_scalar),
        _as_1d(gVT.contiguous()) if gVT is not None else dummy[0], gVT is not None,
        _as_2d(gVseq.contiguous(), T) if gVseq is not None else dummy, gVseq is not None,
        dX.numpy(), dV0.numpy(), acc, bool(batch_stats), np.float32(beta), np.float32(cfg.v_th),
        np.float32(cfg.v_reset), np.float32(cfg.sg.alpha), KERNEL_SURROGATE_IDS[type(cfg.sg)], bool(cfg.hard),
        bool(cfg.detach), width, nparts)
    return torch.from_numpy(acc.sum(0))


def _input_grad(X, dX, rows, inner, C) -> None:
    T, N = X.shape
    width, nparts = _launch_shape(T, N, scratch=False)
    _input_grad_kernel(X.numpy(), dX.numpy(), rows.numpy(), inner, C, width, nparts)


#: this module's :class:`~.bn_lif.BNLIFKernels`
KERNELS = SimpleNamespace(writes_bits=False, channel_sums=_channel_sums, forward=_forward, backward=_backward,
                          input_grad=_input_grad)
