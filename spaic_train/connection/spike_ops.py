"""Weight ops that keep their spike input for backward as 1 byte per spike instead of 4.

Autograd's ``F.linear`` / ``F.conv2d`` save their float32 input for the weight gradient.  When that input is a
spike tensor (every entry 0 or 1) the same values fit in a ``torch.bool`` tensor; :class:`SpikeLinear` and
:class:`SpikeConv2d` save that instead and expand it back to the weight's dtype in backward.  The expansion
is exact (0 and 1 are representable), and backward calls the same kernels autograd would
(``mm`` / ``aten.convolution_backward``) on the same values, so the gradients equal the plain ops' bit for bit
(tests/test_spike_storage.py).  :class:`SpikeMaxPool2d` goes further: autograd's max pooling keeps its float
input and int64 argmax indices (6 bytes per input spike for a 2x2 pool); it keeps the bits only and
recomputes the indices in backward with the same kernel (recomputing is cheaper than storing them).  It also runs
with compaction off, on the float input (4 bytes per value, no indices).

:func:`compact_spikes` decides, per connection call, whether the presynaptic input is binary: one pass
over it, only while autograd records (inference runs the plain ops).

Off by default: the check and the expansion in backward cost time (on a 2-core Xeon, 2026-12-06,
``python benchmarks/compare_revisions.py``: the ``fc`` workload 1.5x and ``conv`` 1.26x the time per training
iteration) for 0.66x the bytes kept for backward.  ``SPAIC_TRAIN_COMPACT_SPIKES=1`` (read at import) or
:data:`COMPACT_SPIKES` ``= True`` turns it on, a memory-for-time trade like ``checkpoint_steps``.
"""

from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F

from ..neurons.kernels import dispatch, spike_bits

__all__ = ["compact_spikes", "rows_of", "SpikeLinear", "SpikeConv2d", "SpikeMaxPool2d",
           "spike_linear", "spike_conv2d", "spike_max_pool2d"]

def compact_spikes(x: torch.Tensor) -> Optional[torch.Tensor]:
    """``x != 0`` as ``torch.bool`` when autograd records and every entry of the float ``x`` is 0 or 1; else
    ``None`` (the plain ops run).  Spikes from a compiled LIF kernel bring their bytes along
    (:mod:`~spaic_train.neurons.kernels.spike_bits`): no pass over ``x`` then."""
    if not (spike_bits.COMPACT_SPIKES and torch.is_grad_enabled() and x.is_floating_point()) or x.numel() == 0:
        return None
    if torch.is_autocast_enabled(x.device.type) or torch.compiler.is_compiling():
        # autocast casts inside the op (the plain op keeps its dtype bookkeeping); a traced graph cannot branch
        # on the values (and the compiler plans its own saved tensors)
        return None
    known = spike_bits.lookup(x)
    if known is not None:
        return known
    bits = x != 0
    if not bool(torch.eq(x, bits).all()):
        return None
    return bits


def rows_of(compact: torch.Tensor, full: torch.Tensor, part: torch.Tensor) -> Optional[torch.Tensor]:
    """The rows of ``compact`` (same shape as ``full``) that ``part`` views: ``part`` is ``full[a:b]`` (a delay
    tap's shifted input) or ``full`` itself; ``None`` when ``part`` is not such a view."""
    if part.shape[1:] != full.shape[1:] or part.untyped_storage().data_ptr() != full.untyped_storage().data_ptr():
        return None
    if part.dim() == 0 or full.stride(0) == 0:
        return compact if part.shape == full.shape else None
    start, rem = divmod(part.storage_offset() - full.storage_offset(), full.stride(0))
    if rem or start < 0 or start + part.shape[0] > full.shape[0] or part.stride() != full.stride():
        return None
    return compact.narrow(0, start, part.shape[0])


class SpikeLinear(torch.autograd.Function):
    """``F.linear(x, weight)`` (2-d ``x``, no bias) saving the spike input as ``bits`` (bool, same values)."""

    @staticmethod
    def forward(ctx, x, bits, weight):  # type: ignore[override]
        ctx.save_for_backward(bits, weight)
        return F.linear(x, weight)

    @staticmethod
    def backward(ctx, gy):  # type: ignore[override]
        bits, weight = ctx.saved_tensors
        gx = gy.mm(weight) if ctx.needs_input_grad[0] else None
        gw = gy.t().mm(bits.to(weight.dtype)) if ctx.needs_input_grad[2] else None
        return gx, None, gw


class SpikeConv2d(torch.autograd.Function):
    """``F.conv2d`` (no bias, integer padding) saving the spike input as ``bits`` (bool, same values and layout)."""

    @staticmethod
    def forward(ctx, x, bits, weight, stride, padding, dilation, groups):  # type: ignore[override]
        ctx.save_for_backward(bits, weight)
        ctx.conv = (list(stride), list(padding), list(dilation), groups)
        return F.conv2d(x, weight, None, stride, padding, dilation, groups)

    @staticmethod
    def backward(ctx, gy):  # type: ignore[override]
        bits, weight = ctx.saved_tensors
        stride, padding, dilation, groups = ctx.conv
        need_x, need_w = ctx.needs_input_grad[0], ctx.needs_input_grad[2]
        x = bits.to(weight.dtype)  # keeps the memory format (channels-last stays channels-last)
        gx, gw, _ = torch.ops.aten.convolution_backward(gy, x, weight, None, stride, padding, dilation, False,
                                                        [0, 0], groups, [need_x, need_w, False])
        return gx, None, gw, None, None, None, None


def spike_linear(x: torch.Tensor, bits: Optional[torch.Tensor], weight: torch.Tensor) -> torch.Tensor:
    """``F.linear(x, weight)`` for a 2-d ``x``; with ``bits`` (``x`` as bool) only the bits are saved."""
    if bits is None or x.dtype != weight.dtype:
        return F.linear(x, weight)
    return SpikeLinear.apply(x, bits, weight)


def spike_conv2d(x: torch.Tensor, bits: Optional[torch.Tensor], weight: torch.Tensor, stride, padding, dilation,
                 groups: int) -> torch.Tensor:
    """``F.conv2d(x, weight, None, ...)``; with ``bits`` (``x`` as bool, same layout) only the bits are saved."""
    if bits is None or isinstance(padding, str) or x.dtype != weight.dtype:
        return F.conv2d(x, weight, None, stride, padding, dilation, groups)
    return SpikeConv2d.apply(x, bits, weight, stride, padding, dilation, groups)


class SpikeMaxPool2d(torch.autograd.Function):
    """``F.max_pool2d`` saving only its input (``bits``: the spike input as bool, or the float input itself) and no
    int64 argmax indices; backward gets the gradient from it
    (:func:`~spaic_train.neurons.kernels.dispatch.max_pool2d_backward`)."""

    @staticmethod
    def forward(ctx, x, saved, kernel_size, stride, padding):  # type: ignore[override]
        ctx.save_for_backward(saved)
        ctx.pool = (list(kernel_size), list(stride), list(padding))
        return F.max_pool2d(x, kernel_size, stride, padding)

    @staticmethod
    def backward(ctx, gy):  # type: ignore[override]
        (saved,) = ctx.saved_tensors
        kernel_size, stride, padding = ctx.pool
        return dispatch.max_pool2d_backward(saved, gy, kernel_size, stride, padding), None, None, None, None


def spike_max_pool2d(x: torch.Tensor, kernel_size, stride, padding) -> torch.Tensor:
    """``F.max_pool2d(x, ...)`` (4-d ``x``) that keeps no argmax indices for backward (autograd's keeps them as int64:
    2 bytes per input value for a 2x2 pool, on top of the float input).  With compaction on, spikes are kept as bytes
    only (those their kernel wrote, :mod:`~spaic_train.neurons.kernels.spike_bits`, or checked here), and the
    gradient comes from the bytes without a float copy; otherwise the float input is kept.  Not under
    ``torch.compile``, which plans its own saved tensors."""
    if not (x.requires_grad and torch.is_grad_enabled()) or torch.compiler.is_compiling():
        return F.max_pool2d(x, kernel_size, stride, padding)
    known = spike_bits.lookup(x) if x.dtype == torch.float32 else None
    bits = known if known is not None else compact_spikes(x)
    y = SpikeMaxPool2d.apply(x, x if bits is None else bits, kernel_size, stride, padding)
    if (bits is not None and spike_bits.COMPACT_SPIKES and y.storage_offset() == 0
            and y.untyped_storage().nbytes() == y.numel() * y.element_size()):
        # the max of spikes is a spike: its bytes, for the weight op that comes next (one pass over the output)
        spike_bits.remember(y, y != 0)
    return y
