"""What the processes of a multi-process (DDP) run share: gathered objects and the padding of shards.

torch's ``DistributedSampler`` (which Lightning puts into every map-style loader under DDP) pads the index
list of an epoch with its own start to a multiple of the number of processes ``W`` and deals position ``p``
to process ``p % W``.  So process ``r``'s ``i``-th sample is a padding duplicate exactly when
``i·W + r >= N``: the duplicates (at most one per process) are the last samples of the shards of processes
``r >= N % W``.  :func:`unpadded_shard_length` counts the real ones, so that
:class:`~spaic_train.training.SNNModule` leaves the duplicates out of validation and test metrics, which it
averages with :class:`WeightedMean`.
"""

from __future__ import annotations

import atexit
from collections.abc import Mapping
from typing import Any, Optional

import lightning.pytorch as pl
import torch
from torch import Tensor
from torch.utils.data import DistributedSampler
from torchmetrics import Metric

__all__ = ["ProcessGroupTeardown", "WeightedMean", "flatten_loaders", "gather_objects", "loader_sampler",
           "unpadded_shard_length"]


class WeightedMean(Metric):
    """``Σ value·weight / Σ weight`` over every update of every process.

    Both sums are reduced by adding them over processes, so the mean is exact for any split of the samples
    (Lightning's ``sync_dist`` mean averages the per-process sample counts as integers, which truncates when
    the processes hold different counts; ``torchmetrics.MeanMetric(nan_strategy='disable')`` ignores the
    weights).  A NaN value makes the mean NaN.
    """

    full_state_update = False

    def __init__(self) -> None:
        super().__init__()
        self.add_state("total", torch.zeros(()), dist_reduce_fx="sum")
        self.add_state("weight", torch.zeros(()), dist_reduce_fx="sum")

    def update(self, value: Tensor, weight: float) -> None:
        """Add a batch mean ``value`` (scalar tensor) of ``weight`` samples."""
        # out of place: states made under one evaluation's inference_mode are inference tensors, which a later
        # evaluation under no_grad (Lightning's choice with gloo, i.e. DDP on CPU) may read but not update in place
        self.total = self.total + value.detach().float() * weight
        self.weight = self.weight + weight

    def compute(self) -> Tensor:
        return self.total / self.weight


def gather_objects(trainer: pl.Trainer, obj: Any) -> list[Any]:
    """``obj`` of every process of ``trainer``, indexed by global rank (``[obj]`` for one process).

    A collective: every process must call it at the same point.  Objects are pickled (tensors included), so
    keep them small.
    """
    if trainer.world_size == 1:
        return [obj]
    out: list[Any] = [None] * trainer.world_size
    torch.distributed.all_gather_object(out, obj)
    return out


def loader_sampler(loader: Any) -> Any:
    """The sampler that orders ``loader``'s samples (that of its batch sampler when it has one)."""
    batch_sampler = getattr(loader, "batch_sampler", None)
    sampler = getattr(batch_sampler, "sampler", None)
    return sampler if sampler is not None else getattr(loader, "sampler", None)


def unpadded_shard_length(sampler: Any) -> Optional[int]:
    """How many of the first samples a ``DistributedSampler`` yields to its process are real, not padding.

    ``None`` for any other sampler (nothing is padded).  With ``drop_last=True`` (no padding) and Lightning's
    unrepeated prediction sampler this is the whole shard.
    """
    if not isinstance(sampler, DistributedSampler):
        return None
    n, world, rank = len(sampler.dataset), sampler.num_replicas, sampler.rank
    return min(sampler.num_samples, max(0, -(-(n - rank) // world)))


def flatten_loaders(loaders: Any) -> list[Any]:
    """The loaders of a ``trainer.*_dataloaders`` value (one loader, a sequence or a mapping), in index order."""
    if loaders is None:
        return []
    if isinstance(loaders, Mapping):
        return list(loaders.values())
    if isinstance(loaders, (list, tuple)):
        return list(loaders)
    return [loaders]


def _destroy_process_group() -> None:
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()


class ProcessGroupTeardown(pl.Callback):
    """Destroys the process group when the process exits normally, before the interpreter shuts down.

    Lightning leaves the process group it starts alive after ``fit`` / ``test`` / ``predict`` (the next
    ``Trainer`` of the same script reuses it).  Left to interpreter finalisation, gloo's worker threads may still
    hold work objects whose tensors reference Python objects; freeing them then needs the GIL of an interpreter
    being torn down, and the process aborts (``terminate called without an active exception``, exit -6) after
    everything had succeeded.  An ``atexit`` handler runs while the interpreter is whole; it is registered once,
    by the first trainer that finds a process group.
    """

    _registered = False

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        # setup hooks run after the strategy has started the process group
        if ProcessGroupTeardown._registered:
            return
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            atexit.register(_destroy_process_group)
            ProcessGroupTeardown._registered = True
