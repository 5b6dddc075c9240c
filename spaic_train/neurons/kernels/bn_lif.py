"""Batch norm fused with the plain LIF / IF sequence (``conv → batchnorm → lif``): what every CPU backend shares.

The drive of the membrane is ``I = s * (w * (x - mean) * invstd + b)`` per channel (``s`` is ``1 - beta`` for
``decay_input`` models, else 1), written per channel as ``I = x * A + B``.  Unfused, autograd keeps the
batch norm's input ``x`` *and* its output ``I`` (the LIF kernel's saved input): two ``[T, B, ...]`` float
tensors.  Here only ``x`` is kept (with ``V0`` and the per-channel ``mean`` / ``invstd``) and ``I`` is never
materialised:

* forward, training: one pass sums ``x`` and ``x²`` per channel (float64) → batch statistics and the running
  statistics' update (unbiased variance, as ``torch.nn.BatchNorm*``); a second pass integrates the membrane
  from ``x * A + B`` and writes the spikes (and, while compaction is wanted, their bytes: :mod:`.spike_bits`).
  Eval (or ``track_running_stats`` statistics): the second pass only.
* backward: each thread recomputes its chunk's membrane from ``x`` (as the plain kernels do from ``I``),
  runs BPTT to ``dL/dI`` and writes it into the returned ``dx`` while summing ``dL/dI`` and
  ``dL/dI * x̂`` per channel (the batch norm's ``dbias`` / ``dweight`` up to ``s``); in training a second pass
  turns ``dx`` in place into the batch norm's input gradient
  ``A * (dI - mean(dI) - x̂ * mean(dI * x̂))``.  No ``[T, B, ...]`` temporary besides ``dx``.

The neuron index ``j`` of the flattened ``[T, N]`` input belongs to channel ``(j // inner) % C``: ``inner`` is the
product of the sizes after the channel dim in memory order (``H * W`` contiguous, 1 channels-last).

The passes themselves are a backend's :class:`BNLIFKernels`: C (``c_lif.c`` through :mod:`.c_lif`) or numba
(:mod:`.numba_bn_lif`).  Used through :func:`~.dispatch.bn_lif_sequence` only (which checks that a call
qualifies).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Protocol

import torch
from torch.autograd.function import once_differentiable

from . import spike_bits
from .buffers import OUTPUT_BUFFERS

__all__ = ["BNLIFKernels", "NormSpec", "BNLIFFunction", "bn_lif_sequence"]


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


class BNLIFKernels(Protocol):
    """A backend's passes over ``X [T, N]`` (contiguous float32; per-channel rows ``[R, C]`` float32)."""

    #: whether :meth:`forward` can write the spikes' bytes
    writes_bits: bool

    def channel_sums(self, X: torch.Tensor, inner: int, C: int) -> torch.Tensor:
        """``[2, C]`` float64: per channel, the sum of ``x`` and of ``x²``."""

    def forward(self, X, V0, affine, inner: int, C: int, O, bits, VT, Vseq, beta: float, v_th: float,
                v_reset: float, hard: bool) -> None:
        """Spikes into ``O`` (and ``bits``, ``Vseq`` when given), ``V_T`` into ``VT``; ``affine`` rows ``A, B``."""

    def backward(self, X, V0, per_channel, inner: int, C: int, gO, gVT, gVseq, dX, dV0, batch_stats: bool,
                 beta: float, cfg) -> torch.Tensor:
        """BPTT on the recomputed drive (``per_channel`` rows ``A, B, mean, invstd``) into ``dX`` (``dL/dI``, or
        ``A * dL/dI`` with fixed statistics) and ``dV0``; returns ``[2, C]`` float64 sums of ``dL/dI`` and
        ``dL/dI * x̂``."""

    def input_grad(self, X, dX, rows, inner: int, C: int) -> None:
        """In place ``dX = A * (dX - k2 - x̂ * k3)``; ``rows``: ``A, mean, invstd, k2, k3``."""


def _statistics(kernels: BNLIFKernels, X: torch.Tensor, spec: NormSpec, count: int):
    """Per-channel ``(mean, biased variance)`` of the call (float64), updating the running statistics."""
    total = kernels.channel_sums(X, spec.inner, spec.C)
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
    return torch.stack([A * scale, (b - mean * A) * scale]).float().contiguous()


def _rows(x: torch.Tensor) -> torch.Tensor:
    return x.detach().reshape(x.shape[0], -1)


def bn_lif_forward(kernels: BNLIFKernels, x, V0, weight, bias, spec: NormSpec, beta: float, cfg, bits=None):
    """Forward on contiguous float32 ``x [T, B, ...]`` / ``V0 [B, ...]``: ``(O, V_T, V_seq or None, mean, invstd)``
    (``mean`` / ``invstd`` float32 per channel, as normalised with)."""
    T, N = x.shape[0], V0.numel()
    X = _rows(x)
    count = T * (N // spec.C)
    if spec.batch_stats:
        mean, var = _statistics(kernels, X, spec, count)
    else:
        mean, var = spec.running_mean.detach().double(), spec.running_var.detach().double()
    invstd = (var + spec.eps).rsqrt()
    affine = _affine(weight, bias, mean, invstd, spec.scale)
    O = OUTPUT_BUFFERS.empty(x.shape)
    VT = torch.empty_like(V0)
    Vseq = OUTPUT_BUFFERS.empty(x.shape) if cfg.return_v else None
    kernels.forward(X, V0.detach().reshape(-1), affine, spec.inner, spec.C, _rows(O),
                    None if bits is None else bits.reshape(T, -1), VT.reshape(-1),
                    None if Vseq is None else _rows(Vseq), beta, cfg.v_th, cfg.v_reset, cfg.hard)
    return O, VT, Vseq, mean.float(), invstd.float()


def bn_lif_backward(kernels: BNLIFKernels, x, V0, weight, bias, mean, invstd, gO, gVT, gVseq, spec: NormSpec,
                    beta: float, cfg):
    """``(dx, dV0, dweight, dbias)`` (``dweight`` / ``dbias`` ``None`` without affine parameters)."""
    T, N = x.shape[0], V0.numel()
    X = _rows(x)
    affine = _affine(weight, bias, mean.double(), invstd.double(), spec.scale)
    per_channel = torch.cat([affine, mean[None], invstd[None]]).contiguous()
    dx = OUTPUT_BUFFERS.empty(x.shape)
    dV0 = torch.empty_like(V0)
    sums = kernels.backward(X, V0.detach().reshape(-1), per_channel, spec.inner, spec.C, gO, gVT, gVseq, _rows(dx),
                            dV0.reshape(-1), bool(spec.batch_stats), beta, cfg)
    if spec.batch_stats:
        count = T * (N // spec.C)
        k = (sums / count).float()
        rows = torch.cat([affine[:1], mean[None], invstd[None], k]).contiguous()
        kernels.input_grad(X, _rows(dx), rows, spec.inner, spec.C)
    dweight = (sums[1] * spec.scale).to(weight.dtype) if weight is not None else None
    dbias = (sums[0] * spec.scale).to(bias.dtype) if bias is not None else None
    return dx, dV0, dweight, dbias


class BNLIFFunction(torch.autograd.Function):
    """``apply(x, V0, weight, bias, spec, beta, cfg, kernels, bits) -> (O, V_T, V_seq or None)``: batch norm then
    LIF / IF.  Saves ``x``, ``V0`` and the per-channel ``mean`` / ``invstd``; never the normalised current."""

    @staticmethod
    def forward(ctx, x, V0, weight, bias, spec, beta, cfg, kernels, bits):  # type: ignore[override]
        ctx.set_materialize_grads(False)
        O, VT, Vseq, mean, invstd = bn_lif_forward(kernels, x, V0, weight, bias, spec, beta, cfg, bits)
        ctx.spec, ctx.beta, ctx.cfg, ctx.kernels = spec, beta, cfg, kernels
        if any(ctx.needs_input_grad[:4]):
            ctx.save_for_backward(x, V0, weight, bias, mean, invstd)
        return O, VT, Vseq

    @staticmethod
    @once_differentiable
    def backward(ctx, gO, gVT, gVseq):  # type: ignore[override]
        x, V0, weight, bias, mean, invstd = ctx.saved_tensors
        dx, dV0, dw, db = bn_lif_backward(ctx.kernels, x, V0, weight, bias, mean, invstd, gO, gVT, gVseq, ctx.spec,
                                          ctx.beta, ctx.cfg)
        need = ctx.needs_input_grad
        return (dx if need[0] else None, dV0 if need[1] else None, dw if need[2] else None,
                db if need[3] else None, None, None, None, None, None)


def bn_lif_sequence(x: torch.Tensor, V0: torch.Tensor, weight, bias, spec: NormSpec, beta: float, cfg,
                    kernels: BNLIFKernels):
    """Batch norm + LIF / IF with ``kernels`` on ``x`` / ``V0`` contiguous in the same memory order (the caller,
    :func:`~.dispatch.bn_lif_sequence`, checked that the call qualifies)."""
    x = x.contiguous()
    bits = (OUTPUT_BUFFERS.empty(x.shape, torch.bool)
            if kernels.writes_bits and spike_bits.wanted() and x.numel() else None)
    O, VT, Vseq = BNLIFFunction.apply(x, V0.contiguous(), weight, bias, spec, float(beta), cfg, kernels, bits)
    if bits is not None:
        spike_bits.remember(O, bits)
    return O, VT, Vseq
