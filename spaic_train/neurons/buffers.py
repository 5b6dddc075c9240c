"""Public path of the output buffer pool (``spaic_train.neurons.buffers.OUTPUT_BUFFERS``, named in the README);
the pool itself lives with the kernels that use it, in :mod:`spaic_train.neurons.kernels.buffers`."""

from .kernels.buffers import OUTPUT_BUFFERS, BufferPool

__all__ = ["BufferPool", "OUTPUT_BUFFERS"]
