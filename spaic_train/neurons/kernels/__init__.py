"""Sequence kernels of the neuron models (the SpikingJelly ``cuda_kernel/`` / Norse ``functional/`` pattern:
neuron classes in :mod:`spaic_train.neurons` hold parameters and call these; they contain no kernel code).

=================  ==================================================================================
module             what
=================  ==================================================================================
``dispatch``       the one dispatch point: :func:`lif_sequence` picks the backend of each call
                   (:func:`kernel_supported`, ``SPAIC_TRAIN_C_KERNELS`` / ``SPAIC_TRAIN_NUMBA`` /
                   ``SPAIC_TRAIN_TRITON``), :func:`bn_lif_sequence` fuses a preceding batch norm where it can
                   (``SPAIC_TRAIN_FUSE_BN``), :func:`max_pool2d_backward` the max pool's gradient without
                   indices, :func:`load_compiled_kernels` loads the compiled ones up front
``torch_lif``      :class:`LIFSequenceFunction` (fused autograd function, any device, every LIF-family
                   model) and the elementwise steps it shares with ``LIFFamily.step``
``c_lif``          C CPU kernels (``c_lif.c``, built once per machine, first choice on CPU): plain LIF / IF,
                   batch norm + LIF / IF, the max pool's backward
``numba_lif``      numba CPU kernels for plain LIF / IF (where no C compiler works; imported on first use)
``cpu_common``     what the two CPU backends share: chunk layout, gradient reading, the autograd function
``bn_lif``         batch norm + plain LIF / IF in one pass: what is saved, the autograd function (passes: C or
                   ``numba_bn_lif``)
``numba_bn_lif``   numba passes of ``bn_lif`` (where no C compiler works)
``spike_bits``     spikes that bring their 0/1 bytes from the kernel that wrote them (spike compaction)
``triton_lif``     Triton CUDA kernels for plain LIF / IF (imported on first CUDA use)
``buffers``        :data:`~.buffers.OUTPUT_BUFFERS`, reuse of large CPU outputs of the CPU kernels
=================  ==================================================================================

All backends share one contract: ``(I [T, B, ...], V0, beta, cfg) -> (O, V_T, a_T, V_seq)`` with the same
equations and the same hand-derived backward; the tests compare them case by case.
"""

from .dispatch import (
    USE_C,
    USE_NUMBA,
    USE_TRITON,
    bn_lif_sequence,
    kernel_supported,
    lif_sequence,
    load_compiled_kernels,
)
from .torch_lif import LIFConfig, LIFSequenceFunction

__all__ = [
    "LIFConfig",
    "LIFSequenceFunction",
    "USE_C",
    "USE_NUMBA",
    "USE_TRITON",
    "bn_lif_sequence",
    "kernel_supported",
    "lif_sequence",
    "load_compiled_kernels",
]
