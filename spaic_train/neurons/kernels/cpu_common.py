"""What the compiled CPU LIF kernels (:mod:`.c_lif`, :mod:`.numba_lif`) share: the chunk layout, the reading
of the incoming gradients, and the autograd function around a kernel pair.

Both kernels integrate ``[T, N]`` float32 with each thread owning chunks of ``width`` neurons: the forward
keeps the chunk's membrane in cache while it walks through ``T``; the backward recomputes the chunk's
membrane ``H`` into a per-thread scratch of ``T x width`` floats (nothing besides the input is saved), then
walks back through ``T``.  :class:`CPUKernelFunction` saves only the input and the initial membrane.
"""

from __future__ import annotations

from typing import Optional, Protocol

import torch
from torch.autograd.function import once_differentiable

from .buffers import OUTPUT_BUFFERS

__all__ = ["CPUKernelFunction", "LIFKernelPair", "chunk_layout", "incoming_spike_grad", "GO_NONE", "GO_FULL",
           "GO_SCALAR", "prepare_forward"]

#: elements of each per-thread backward scratch (``H`` and ``g'``: ``T x width`` float32, about L2-sized)
SCRATCH_ELEMS = 1 << 18
MAX_WIDTH = 1024

# incoming spike-gradient layouts
GO_NONE, GO_FULL, GO_SCALAR = 0, 1, 2


def chunk_layout(T: int, N: int, threads: int, scratch: bool) -> tuple[int, int]:
    """``(width, nparts)``: neurons per chunk and parallel parts (at most one per thread).

    Wide chunks amortise the per-row loop overhead; with a backward scratch (``T x width`` floats, twice)
    the width shrinks for long sequences so the scratch stays cache-sized.
    """
    width = MAX_WIDTH
    if scratch:
        width = max(16, min(MAX_WIDTH, SCRATCH_ELEMS // max(1, T)) // 16 * 16)
    width = min(width, -(-N // 16) * 16)
    nchunks = -(-N // width)
    return width, max(1, min(nchunks, threads))


def incoming_spike_grad(gO: Optional[torch.Tensor]) -> tuple[int, float, Optional[torch.Tensor]]:
    """``(mode, scalar, tensor)`` for the gradient of the spikes: none, one broadcast value (as from
    ``spikes.sum()``, read as a scalar instead of being materialised), or a full contiguous tensor."""
    if gO is None:
        return GO_NONE, 0.0, None
    if all(s == 0 for s in gO.stride()):
        return GO_SCALAR, float(gO.reshape(-1)[0]), None
    return GO_FULL, 0.0, gO.contiguous()


class LIFKernelPair(Protocol):
    """A compiled backend's forward and backward on contiguous float32 tensors."""

    def lif_forward(self, I: torch.Tensor, V0: torch.Tensor, beta: float, v_th: float, v_reset: float,
                    hard: bool, return_v: bool = False, bits: Optional[torch.Tensor] = None) -> tuple: ...

    def lif_backward(self, I: torch.Tensor, V0: torch.Tensor, gO, gVT, gVseq, beta: float, v_th: float,
                     v_reset: float, hard: bool, detach: bool, surrogate) -> tuple: ...


def prepare_forward(I: torch.Tensor, V0: torch.Tensor, return_v: bool):
    """``(I, V0, O, V_T, V_seq or None, work)`` for a forward kernel: contiguous inputs, outputs to fill (large ones
    from the buffer pool), and whether there is anything to integrate (without, ``V_T`` is already ``V0``)."""
    I, V0 = I.contiguous(), V0.contiguous()
    O, VT = OUTPUT_BUFFERS.empty(I.shape), torch.empty_like(V0)
    Vseq = OUTPUT_BUFFERS.empty(I.shape) if return_v else None
    work = I.shape[0] > 0 and V0.numel() > 0
    if not work:
        VT.copy_(V0)
    return I, V0, O, VT, Vseq, work


class CPUKernelFunction(torch.autograd.Function):
    """``apply(I, V0, beta, cfg, kernels, bits=None) -> (O, V_T, None, V_seq or None)`` with a compiled kernel
    pair (same contract as :class:`~.torch_lif.LIFSequenceFunction` without adaptation); a kernel that can also
    writes the spikes as bytes into ``bits`` (``torch.bool`` shaped like ``I``).

    Saves only the input and the initial membrane; the backward recomputes the membrane.
    """

    @staticmethod
    def forward(ctx, I, V0, beta, cfg, kernels: LIFKernelPair, bits=None):  # type: ignore[override]
        ctx.set_materialize_grads(False)
        O, VT, Vseq = kernels.lif_forward(I, V0, beta, cfg.v_th, cfg.v_reset, cfg.hard, cfg.return_v, bits)
        ctx.cfg, ctx.beta, ctx.kernels = cfg, beta, kernels
        if ctx.needs_input_grad[0] or ctx.needs_input_grad[1]:
            ctx.save_for_backward(I, V0)
        return O, VT, None, Vseq

    @staticmethod
    @once_differentiable
    def backward(ctx, gO, gVT, gaT, gVseq):  # type: ignore[override]
        I, V0 = ctx.saved_tensors
        cfg = ctx.cfg
        dI, dV0 = ctx.kernels.lif_backward(I, V0, gO, gVT, gVseq, ctx.beta, cfg.v_th, cfg.v_reset, cfg.hard,
                                           cfg.detach, cfg.sg)
        return (dI if ctx.needs_input_grad[0] else None, dV0 if ctx.needs_input_grad[1] else None, None, None,
                None, None)
