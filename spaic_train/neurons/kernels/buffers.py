"""Reuse of large CPU output buffers across calls of the compiled neuron kernels.

A fresh multi-megabyte tensor is mapped by the C library straight from the kernel, and the first
write to each of its pages is a page fault: for the ``[T, B, N]`` spikes of a big layer that costs
about as much as the whole LIF computation.  Training allocates the same sizes every iteration, so
:class:`BufferPool` keeps the memory of large outputs (spikes, input gradients) and hands it out
again once every tensor that used it is gone, like the CUDA caching allocator does on GPUs.

Safety: each tensor handed out wraps a fresh numpy view of a pooled block (``torch.from_numpy``);
the tensor's storage holds that view, so the view dies exactly when the last tensor, view or
autograd reference to the storage is released.  The pool watches the view through a weak
reference and reuses the block only after that, so memory that anything can still read is never
handed out twice.

Limits: blocks below ``min_bytes`` are not pooled (the C library reuses small blocks itself); at
most ``max_bytes`` are kept, and :meth:`BufferPool.empty_cache` releases the idle ones.  The
environment variable ``SPAIC_TRAIN_BUFFER_POOL_MB`` (read at import) sets ``max_bytes`` for
:data:`OUTPUT_BUFFERS`; ``0`` turns pooling off.
"""

from __future__ import annotations

import os
import threading
import weakref
from typing import Optional

import numpy as np
import torch

__all__ = ["BufferPool", "OUTPUT_BUFFERS"]

_MIB = 1 << 20
#: what the pool hands out (blocks are raw bytes, viewed as the dtype asked for)
_NUMPY_DTYPES = {torch.float32: np.float32, torch.bool: np.bool_}


class _Block:
    __slots__ = ("memory", "in_use")

    def __init__(self, memory: np.ndarray):
        self.memory = memory
        self.in_use: Optional[weakref.ref] = None  # weak reference to the view the live tensors hold

    def idle(self) -> bool:
        return self.in_use is None or self.in_use() is None


class BufferPool:
    """Pool of large float32 CPU buffers (see the module docstring).

    Args:
        max_bytes: most memory kept in the pool (idle and in use); ``0`` disables pooling.
        min_bytes: smaller requests are plain ``torch.empty``.
    """

    def __init__(self, max_bytes: int, min_bytes: int = 8 * _MIB):
        if max_bytes < 0 or min_bytes < 0:
            raise ValueError(f"BufferPool: max_bytes and min_bytes must be >= 0, got {max_bytes}, {min_bytes}")
        self.max_bytes, self.min_bytes = int(max_bytes), int(min_bytes)
        self._blocks: dict[int, list[_Block]] = {}
        self._lock = threading.Lock()

    @property
    def pooled_bytes(self) -> int:
        """Memory held by the pool now (idle and in use), in bytes."""
        return sum(b.memory.nbytes for blocks in self._blocks.values() for b in blocks)

    def empty(self, shape: tuple[int, ...] | torch.Size, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """An uninitialised contiguous CPU tensor of ``shape`` and ``dtype`` (float32 or bool; pooled memory
        when large)."""
        numel = 1
        for n in shape:
            numel *= int(n)
        np_dtype = _NUMPY_DTYPES[dtype]
        nbytes = numel * np.dtype(np_dtype).itemsize
        if nbytes < max(1, self.min_bytes) or nbytes > self.max_bytes:
            return torch.empty(tuple(shape), dtype=dtype)
        with self._lock:
            block = next((b for b in self._blocks.get(nbytes, ()) if b.idle()), None)
            if block is None:
                if not self._make_room(nbytes):
                    return torch.empty(tuple(shape), dtype=dtype)
                block = _Block(np.empty(nbytes, dtype=np.uint8))
                self._blocks.setdefault(nbytes, []).append(block)
            view = block.memory.view(np_dtype)
            block.in_use = weakref.ref(view)
        return torch.from_numpy(view).view(tuple(shape))

    def empty_like(self, x: torch.Tensor) -> torch.Tensor:
        """:meth:`empty` with the shape of ``x`` (``x`` must be a float32 CPU tensor)."""
        return self.empty(x.shape)

    def empty_cache(self) -> int:
        """Release the idle blocks; returns the number of bytes released."""
        with self._lock:
            return self._release_idle(None)

    def _make_room(self, nbytes: int) -> bool:
        """Release idle blocks (other sizes first) until ``nbytes`` more fit; False if they cannot."""
        if self.pooled_bytes + nbytes <= self.max_bytes:
            return True
        self._release_idle(self.pooled_bytes + nbytes - self.max_bytes, keep=nbytes)
        return self.pooled_bytes + nbytes <= self.max_bytes

    def _release_idle(self, needed: Optional[int], keep: int = -1) -> int:
        released = 0
        for size in sorted(self._blocks, key=lambda s: s == keep):
            kept = []
            for b in self._blocks[size]:
                if b.idle() and (needed is None or released < needed):
                    released += b.memory.nbytes
                else:
                    kept.append(b)
            if kept:
                self._blocks[size] = kept
            else:
                del self._blocks[size]
        return released


def _pool_limit() -> int:
    raw = os.environ.get("SPAIC_TRAIN_BUFFER_POOL_MB", "2048").strip()
    try:
        mb = float(raw)
    except ValueError:
        raise ValueError(f"SPAIC_TRAIN_BUFFER_POOL_MB must be a number of MiB (0 disables), got {raw!r}") from None
    if mb < 0:
        raise ValueError(f"SPAIC_TRAIN_BUFFER_POOL_MB must be >= 0 (0 disables), got {raw!r}")
    return int(mb * _MIB)


#: pool used by the numba LIF kernels for spikes, membrane sequences and input gradients
OUTPUT_BUFFERS = BufferPool(_pool_limit())
