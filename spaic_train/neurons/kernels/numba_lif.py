"""Numba CPU kernels for the plain LIF / IF sequence (forward and BPTT backward over ``[T, B, ...]``).

Same equations as :mod:`spaic_train.neurons.lif` (its module docstring) and the same hand-derived
backward as :mod:`.triton_lif`, compiled once per machine (``cache=True``: the
machine code is stored next to this file, or in numba's user cache when that is read-only).

Why a compiled loop: the torch fused kernel runs a few whole-tensor ops per time step, so every
step streams the ``[B, ...]`` state through memory several times.  Here each thread owns a chunk of
neurons and keeps its state in cache while it walks through ``T``: the forward reads the input once
and writes the spikes once; the backward recomputes the chunk's membrane ``H`` into a per-thread
scratch of ``T x width`` floats (no ``[T, B, ...]`` tensor is saved besides the input), then walks
back through ``T`` reading the incoming gradient once and writing the input gradient once.

Used by :func:`~.dispatch.lif_sequence` for CPU calls that
:func:`~.dispatch.kernel_supported` accepts (``lif`` / ``if``, float ``beta``,
float32, built-in surrogate, not being traced by ``torch.compile``); everything else uses
:class:`~.torch_lif.LIFSequenceFunction`.  ``numba`` is imported only on the first such
call, and only where the C kernels of :mod:`.c_lif` (same code shape, no ~120 MB runtime) cannot be built;
without numba (or with ``SPAIC_TRAIN_NUMBA=0``) the torch fused kernel runs instead.

Threads: as many as ``torch.get_num_threads()`` (capped by numba's ``NUMBA_NUM_THREADS``).
Large outputs (spikes, ``V_seq``, input gradient) come from :data:`~.buffers.OUTPUT_BUFFERS`,
which reuses their memory across iterations instead of page-faulting fresh memory every call.
"""

from __future__ import annotations

import math
from types import SimpleNamespace
from typing import Optional

import numba
import numpy as np
import torch
from numba import njit, prange
from numba.extending import intrinsic

from ...surrogate import KERNEL_SURROGATE_IDS
from .buffers import OUTPUT_BUFFERS
from .cpu_common import GO_FULL, GO_SCALAR, CPUKernelFunction, chunk_layout, incoming_spike_grad, prepare_forward

__all__ = ["lif_forward", "lif_backward", "lif_sequence", "kernels_cached", "cache_dir", "KERNEL_PAIR"]

_F0 = np.float32(0.0)
_F1 = np.float32(1.0)
_HALF_PI = np.float32(math.pi / 2)
_INV_SQRT_2PI = np.float32(1.0 / math.sqrt(2.0 * math.pi))
_INV_SQRT_PI = np.float32(1.0 / math.sqrt(math.pi))


@intrinsic
def _fma(typingctx, a, b, c):
    """``a * b + c`` rounded once (LLVM ``fma``), as torch's CPU ``add(c, b, alpha=a)`` computes it: the
    membrane then equals the torch kernels' bit for bit."""
    sig = a(a, b, c)

    def codegen(context, builder, signature, args):
        return builder.fma(*args)

    return sig, codegen


@njit(cache=True, boundscheck=False)
def _surrogate_row(h, v_th, alpha, sg, out, W):
    """``out[:W] = g'(h[:W] - v_th)`` for surrogate id ``sg`` (:data:`KERNEL_SURROGATE_IDS`)."""
    if sg == 0:  # atan
        a, c = alpha * _HALF_PI, alpha * np.float32(0.5)
        for k in range(W):
            y = a * (h[k] - v_th)
            out[k] = c / (_F1 + y * y)
    elif sg == 1:  # sigmoid
        for k in range(W):
            s = _F1 / (_F1 + math.exp(-alpha * (h[k] - v_th)))
            out[k] = alpha * s * (_F1 - s)
    elif sg == 2:  # fast_sigmoid
        for k in range(W):
            y = _F1 + alpha * abs(h[k] - v_th)
            out[k] = _F1 / (y * y)
    elif sg == 3:  # rectangle
        for k in range(W):
            out[k] = _F1 if abs(h[k] - v_th) < alpha else _F0
    elif sg == 4:  # gaussian
        c, e = _INV_SQRT_2PI / alpha, np.float32(-0.5) / (alpha * alpha)
        for k in range(W):
            x = h[k] - v_th
            out[k] = math.exp(x * x * e) * c
    elif sg == 5:  # triangle
        c = _F1 / (alpha * alpha)
        for k in range(W):
            out[k] = max(alpha - abs(h[k] - v_th), _F0) * c
    elif sg == 6:  # erf
        c = alpha * _INV_SQRT_PI
        for k in range(W):
            y = alpha * (h[k] - v_th)
            out[k] = math.exp(-y * y) * c
    else:  # piecewise_quadratic
        a2 = alpha * alpha
        for k in range(W):
            out[k] = max(alpha - a2 * abs(h[k] - v_th), _F0)


@njit(cache=True, boundscheck=False)
def _step_row(It, W, v, beta, v_th, v_reset, hard, Ot, write_h):
    """One step of neurons ``k < W`` from the input row ``It``: ``v`` is updated and reset; ``Ot[k]`` receives the
    pre-reset membrane ``H`` (``write_h``) or the spike."""
    for k in range(W):
        h = _fma(beta, v[k], It[k])
        s = h >= v_th
        if write_h:
            Ot[k] = h
        else:
            Ot[k] = _F1 if s else _F0
        if hard:
            v[k] = v_reset if s else h
        else:
            v[k] = h - v_th if s else h


@njit(cache=True, boundscheck=False)
def _integrate_chunk(I, j0, W, v, beta, v_th, v_reset, hard, out, out_j0, write_h, Vseq, store_v):
    """All ``T`` steps of neurons ``j0 .. j0+W-1`` from the membrane ``v[:W]`` (left at ``V_T``).

    ``out[t, out_j0 + k]`` receives the pre-reset membrane ``H`` (``write_h``) or the spike;
    ``Vseq[t, j0 + k]`` the post-reset membrane when ``store_v``.
    """
    # row slices, not I[t, j0 + k]: a computed index costs a negative-index check per element
    for t in range(I.shape[0]):
        _step_row(I[t, j0:j0 + W], W, v, beta, v_th, v_reset, hard, out[t, out_j0:out_j0 + W], write_h)
        if store_v:
            Vseq[t, j0:j0 + W] = v[:W]


@njit(cache=True, boundscheck=False)
def _bptt_row(Ht, Gt, gOt, u, dIt, W, beta, v_th, v_reset, kS, kH, kT):
    """One step back (see :func:`_backward_kernel`): ``dIt[k] = dL/dI[t]``; ``u`` becomes ``beta * dIt``."""
    for k in range(W):
        h, d = Ht[k], Gt[k]
        spiked = _F1 if h >= v_th else _F0
        dh = u[k] * (_F1 - kS * spiked - d * (kH * (h - v_reset) + kT)) + gOt[k] * d
        dIt[k] = dh
        u[k] = beta * dh


@njit(cache=True, boundscheck=False)
def _reset_factors(v_th, hard, detach):
    """``(kS, kH, kT)`` of :func:`_backward_kernel`'s ``X``."""
    kS = _F1 if hard else _F0
    kH = _F1 if hard and not detach else _F0
    kT = v_th if not hard and not detach else _F0
    return kS, kH, kT


@njit(cache=True)
def part_chunks(N, width, nparts, p):
    """``(first, end)``: the chunks of ``width`` neurons (the last one partial) that part ``p`` of ``nparts``
    integrates (as ``part_chunks`` in ``c_lif.c``)."""
    nchunks = (N + width - 1) // width
    per_part = (nchunks + nparts - 1) // nparts
    return p * per_part, min(nchunks, (p + 1) * per_part)


@njit(parallel=True, cache=True, boundscheck=False)
def _forward_kernel(I, V0, O, VT, Vseq, store_v, beta, v_th, v_reset, hard, width, nparts):
    T, N = I.shape
    state = np.empty((nparts, width), np.float32)
    for p in prange(nparts):
        v = state[p]
        for c in range(*part_chunks(N, width, nparts, p)):
            j0 = c * width
            W = min(N, j0 + width) - j0
            v[:W] = V0[j0:j0 + W]
            _integrate_chunk(I, j0, W, v, beta, v_th, v_reset, hard, O, j0, False, Vseq, store_v)
            VT[j0:j0 + W] = v[:W]


@njit(parallel=True, cache=True, boundscheck=False)
def _backward_kernel(I, V0, gO, go_mode, go_scalar, gVT, has_gvt, gVseq, has_gvseq, dI, dV0,
                     beta, v_th, v_reset, alpha, sg, hard, detach, width, nparts):
    """``u = dL/dV[t]``: ``dI[t] = gO[t] sg + u (1 - X)``, ``u[t-1] = gVseq[t-1] + beta dI[t]`` with
    ``X = S + (H - v_reset) sg`` (hard), ``S`` (hard, detached), ``v_th sg`` (soft), 0 (soft, detached),
    written ``X = kS S + sg (kH (H - v_reset) + kT)`` so the inner loop has no branch."""
    T, N = I.shape
    kS, kH, kT = _reset_factors(v_th, hard, detach)
    # scratch allocated here, in the calling thread: allocations inside the parallel loop would come
    # from per-thread malloc arenas, which keep their pages and inflate the process's memory
    scratch = np.empty((nparts, 2, T, width), np.float32)
    rows = np.empty((nparts, 3, width), np.float32)
    for p in prange(nparts):
        H, G = scratch[p, 0], scratch[p, 1]
        v, u, go_row = rows[p, 0], rows[p, 1], rows[p, 2]
        go_row[:] = go_scalar if go_mode == GO_SCALAR else _F0
        for c in range(*part_chunks(N, width, nparts, p)):
            j0 = c * width
            W = min(N, j0 + width) - j0
            v[:W] = V0[j0:j0 + W]
            _integrate_chunk(I, j0, W, v, beta, v_th, v_reset, hard, H, 0, True, H, False)
            _surrogate_row(H.ravel(), v_th, alpha, sg, G.ravel(), T * width)
            if has_gvt:
                u[:W] = gVT[j0:j0 + W]
            else:
                u[:W] = _F0
            for t in range(T - 1, -1, -1):
                if has_gvseq:
                    u[:W] += gVseq[t, j0:j0 + W]
                gOt = gO[t, j0:j0 + W] if go_mode == GO_FULL else go_row
                _bptt_row(H[t], G[t], gOt, u, dI[t, j0:j0 + W], W, beta, v_th, v_reset, kS, kH, kT)
            dV0[j0:j0 + W] = u[:W]


def kernels_cached() -> bool:
    """Whether numba's cache holds machine code of the kernels for this CPU (otherwise the first call
    compiles them: about 20 s).  Reads numba's cache index; if its layout ever changes, answers ``True``
    (no false "compiling" notice)."""
    try:
        magic = _forward_kernel.targetctx.codegen().magic_tuple()
        return all(any(key[1] == magic for key in kernel._cache._cache_file._load_index())
                   for kernel in (_forward_kernel, _backward_kernel))
    except Exception:
        return True


def cache_dir() -> str:
    """Where numba stores the compiled kernels (next to this file, or numba's user cache when read-only)."""
    try:
        return str(_forward_kernel._cache._cache_path)
    except Exception:
        return "numba's cache"


def _launch_shape(T: int, N: int, scratch: bool) -> tuple[int, int]:
    """``(width, nparts)`` (:func:`~.cpu_common.chunk_layout`, one part per thread); sets numba's thread count
    from torch's."""
    torch_threads = torch.get_num_threads()
    threads = max(1, min(torch_threads, numba.config.NUMBA_NUM_THREADS))
    numba.set_num_threads(threads)
    if torch.get_num_threads() != torch_threads:
        # numba's OpenMP layer sets the process's OpenMP thread count to NUMBA_NUM_THREADS when it starts its
        # pool (once per process): put the user's count back, or torch silently runs with another one
        torch.set_num_threads(torch_threads)
    return chunk_layout(T, N, threads, scratch)


def _as_2d(x: torch.Tensor, T: int) -> np.ndarray:
    return x.detach().reshape(T, -1).numpy()


def _as_1d(x: torch.Tensor) -> np.ndarray:
    return x.detach().reshape(-1).numpy()


def _spike_grad(gO: Optional[torch.Tensor], T: int, dummy: np.ndarray) -> tuple[int, float, np.ndarray]:
    """``(go_mode, go_scalar, go)`` for the backward kernels (:func:`~.cpu_common.incoming_spike_grad`, the full
    gradient as a ``[T, N]`` array, ``dummy`` otherwise)."""
    go_mode, go_scalar, full = incoming_spike_grad(gO)
    return go_mode, go_scalar, dummy if full is None else _as_2d(full, T)


def lif_forward(I: torch.Tensor, V0: torch.Tensor, beta: float, v_th: float, v_reset: float, hard: bool,
                return_v: bool = False, bits: Optional[torch.Tensor] = None):
    """Forward kernel on contiguous float32 ``I [T, B, ...]`` and ``V0 [B, ...]``.

    Returns ``(O, V_T, V_seq or None)``.  Writes no spike bytes (``bits`` must be ``None``: the weight ops
    downstream check their input themselves).
    """
    if bits is not None:
        raise ValueError("numba_lif.lif_forward writes no spike bytes; pass bits=None")
    I, V0, O, VT, Vseq, work = prepare_forward(I, V0, return_v)
    if not work:
        return O, VT, Vseq
    T, N = I.shape[0], V0.numel()
    width, nparts = _launch_shape(T, N, scratch=False)
    _forward_kernel(_as_2d(I, T), _as_1d(V0), _as_2d(O, T), _as_1d(VT),
                    _as_2d(Vseq, T) if return_v else np.empty((1, 1), np.float32), bool(return_v),
                    np.float32(beta), np.float32(v_th), np.float32(v_reset), bool(hard), width, nparts)
    return O, VT, Vseq


def lif_backward(I: torch.Tensor, V0: torch.Tensor, gO, gVT, gVseq, beta: float, v_th: float, v_reset: float,
                 hard: bool, detach: bool, surrogate) -> tuple[torch.Tensor, torch.Tensor]:
    """Backward kernel: ``(dI, dV0)`` from the forward's inputs and the output gradients
    (``gO`` / ``gVT`` / ``gVseq`` may be ``None``; a ``gO`` that is one broadcast value, as from
    ``spikes.sum()``, is read as a scalar instead of being materialised)."""
    T = I.shape[0]
    N = V0.numel()
    dI = OUTPUT_BUFFERS.empty(I.shape)
    dV0 = torch.empty_like(V0)
    if T == 0 or N == 0:  # nothing was integrated: V_T is V0
        return dI, (gVT.clone() if gVT is not None else dV0.zero_())
    dummy = np.empty((1, 1), np.float32)
    go_mode, go_scalar, go = _spike_grad(gO, T, dummy)
    width, nparts = _launch_shape(T, N, scratch=True)
    _backward_kernel(
        _as_2d(I, T), _as_1d(V0), go, go_mode, np.float32(go_scalar),
        _as_1d(gVT.contiguous()) if gVT is not None else dummy[0], gVT is not None,
        _as_2d(gVseq.contiguous(), T) if gVseq is not None else dummy, gVseq is not None,
        _as_2d(dI, T), _as_1d(dV0), np.float32(beta), np.float32(v_th), np.float32(v_reset),
        np.float32(surrogate.alpha), KERNEL_SURROGATE_IDS[type(surrogate)], bool(hard), bool(detach), width, nparts)
    return dI, dV0


#: this module's :class:`~.cpu_common.LIFKernelPair`
KERNEL_PAIR = SimpleNamespace(lif_forward=lif_forward, lif_backward=lif_backward)


def lif_sequence(I: torch.Tensor, V0: torch.Tensor, beta: float, cfg):
    """Fused LIF/IF integration with the numba kernels (caller checked ``kernel_supported``)."""
    return CPUKernelFunction.apply(I.contiguous(), V0.contiguous(), float(beta), cfg, KERNEL_PAIR)
