"""Collating sequence samples ``(x [T, ...], y)`` into batches time first (the engine's ``[T, B, ...]``) or batch
first — the sequence datamodules' ``collate_fn`` (event frames, digit rows, delayed coincidences)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

__all__ = ["stack_frames", "time_first_collate", "batch_first_collate"]


def stack_frames(batch: Sequence[tuple[torch.Tensor, torch.Tensor]], time_first: bool = True
                 ) -> tuple[torch.Tensor, torch.Tensor]:
    """Collate ``[(x [T, ...], y), ...]`` into ``x`` ``[T, B, ...]`` (``time_first``) or ``[B, T, ...]`` and
    ``y`` ``[B]`` int64.  Stacked in numpy: ``torch.stack`` of the same arrays runs its copy on torch's intra-op
    threads, which on a loaded 2-core CPU took 265 ms per N-MNIST batch against 1.6 ms here (2026-12-06)."""
    xs = np.stack([x.numpy() for x, _ in batch], axis=1 if time_first else 0)
    return torch.from_numpy(xs), torch.from_numpy(np.asarray([int(y) for _, y in batch], dtype=np.int64))


def time_first_collate(batch):
    """:func:`stack_frames` with ``time_first=True`` (a module-level function: DataLoader workers pickle it)."""
    return stack_frames(batch, True)


def batch_first_collate(batch):
    """:func:`stack_frames` with ``time_first=False``."""
    return stack_frames(batch, False)
