"""Spike tensors that come with a 1-byte copy of themselves, made by the kernel that produced them.

The weight ops downstream of a neuron group (:mod:`spaic_train.connection.spike_ops`) keep their spike input for
backward as ``torch.bool`` instead of float32 when :data:`COMPACT_SPIKES` is on.  Finding out whether an input is
binary costs two passes over it (``x != 0`` and a comparison); the compiled LIF kernels know it already and write
the bytes in the same pass that writes the spikes, then :func:`remember` them here.  :func:`lookup` hands them to
the weight op for the spike tensor or any view of it.

Safety: an entry lives exactly as long as the spike tensor object it was made for (a weak reference removes it),
so its memory cannot have been handed to another tensor meanwhile; and it is used only while the tensor's
version counter (shared with its views) is unchanged, so an in-place change to the spikes is never missed.
"""

from __future__ import annotations

import os
import weakref
from typing import Optional

import torch

__all__ = ["COMPACT_SPIKES", "wanted", "remember", "lookup"]

#: keep binary weight-op inputs as ``torch.bool`` for backward (:mod:`spaic_train.connection.spike_ops`); off unless
#: ``SPAIC_TRAIN_COMPACT_SPIKES=1`` (read at import) or this is set to ``True``
COMPACT_SPIKES = os.environ.get("SPAIC_TRAIN_COMPACT_SPIKES", "0").strip().lower() not in ("", "0", "false", "no")


class _Entry:
    __slots__ = ("ref", "version", "nbytes", "dtype", "bits")

    def __init__(self, ref, version: int, nbytes: int, dtype: torch.dtype, bits: torch.Tensor):
        self.ref, self.version, self.nbytes, self.dtype, self.bits = ref, version, nbytes, dtype, bits


# by storage address of the spike tensor
_ENTRIES: dict[int, _Entry] = {}


def wanted() -> bool:
    """Whether a kernel about to write spikes should write their bytes too (compaction on, autograd recording).

    Not on by default: measured on the ``conv-t16`` benchmark net (2026-12-06, one core), writing the bytes always
    and keeping only them in the max pools lowered nothing (peak 950–957 vs 928–931 MB: the float spikes the pool
    no longer keeps are not what the peak is made of, the backward's gradient buffers are), and compaction as a
    whole raises the peak (README, "Long T")."""
    return COMPACT_SPIKES and torch.is_grad_enabled()


def remember(spikes: torch.Tensor, bits: torch.Tensor) -> None:
    """Record ``bits`` (``torch.bool``, same shape and strides) as the bytes of ``spikes``, a float tensor that
    fills its whole storage from offset 0 (as a kernel's fresh output does, in any memory format)."""
    storage = spikes.untyped_storage()
    if (spikes.storage_offset() != 0 or bits.dtype != torch.bool or bits.shape != spikes.shape
            or bits.stride() != spikes.stride() or bits.storage_offset() != 0
            or storage.nbytes() != spikes.numel() * spikes.element_size()):
        raise ValueError("spike_bits.remember: spikes must fill their storage from offset 0; bits must be bool "
                         "with the same shape and strides")
    key = storage.data_ptr()

    def forget(_ref, key=key):
        entry = _ENTRIES.get(key)
        if entry is not None and entry.ref is _ref:
            del _ENTRIES[key]

    # the storage order of both: element k of one is element k of the other
    flat = bits.as_strided((bits.numel(),), (1,), 0)
    _ENTRIES[key] = _Entry(weakref.ref(spikes, forget), spikes._version, storage.nbytes(), spikes.dtype, flat)


def lookup(x: torch.Tensor) -> Optional[torch.Tensor]:
    """The bytes of ``x`` (``torch.bool``, same shape and strides) when ``x`` is a remembered spike tensor or a
    view of one, unchanged since; else ``None``."""
    if not x.is_floating_point() or not _ENTRIES:
        return None
    storage = x.untyped_storage()
    entry = _ENTRIES.get(storage.data_ptr())
    if (entry is None or entry.ref() is None or x._version != entry.version or x.dtype != entry.dtype
            or storage.nbytes() != entry.nbytes):
        return None
    return entry.bits.as_strided(x.shape, x.stride(), x.storage_offset())
