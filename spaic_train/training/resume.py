"""Exact resume of an interrupted fit: :class:`ResumableRandomSampler` + :class:`ResumeState`.

The shuffle order of epoch ``e`` is a pure function of ``(seed, e)``; the checkpoint stores the number of batches
already consumed in the current epoch, the Python / NumPy / torch (CPU and CUDA) RNG states at save time and the
partial epoch-level metric sums, so a resumed fit draws the same batches, the same Poisson spikes and dropout
masks, and logs the same epoch metrics as an uninterrupted one, in one process or under DDP (the sampler shards
the epoch itself, and the checkpoint keeps every process's RNG states and partial sums).  Writing and checking
the checkpoint file itself: :mod:`spaic_train.training.checkpoint`.
"""

from __future__ import annotations

import random
import warnings
from collections.abc import Iterator, Sized
from typing import Any, Optional, Protocol, runtime_checkable

import lightning.pytorch as pl
import numpy as np
import torch
from torch.utils.data import DistributedSampler

from ..data.sampling import EpochSkipping
from .distributed import gather_objects

__all__ = ["ResumableRandomSampler", "ResumeState", "SkippableSampler"]


@runtime_checkable
class SkippableSampler(Protocol):
    """A training sampler that a mid-epoch resume can fast-forward: its order is a function of the epoch
    (Lightning calls ``set_epoch``) and ``skip(n)`` drops the first ``n`` samples of its next iteration
    (:class:`ResumableRandomSampler`, a datamodule's ``EpochShuffleSampler``)."""

    def __len__(self) -> int: ...

    def set_epoch(self, epoch: int) -> None: ...

    def skip(self, n: int) -> None: ...


class ResumableRandomSampler(EpochSkipping, DistributedSampler):
    """Shuffles with a permutation that depends only on ``(seed, epoch)``; can skip the start of an epoch;
    shards the epoch between processes.

    Lightning calls :meth:`set_epoch` at every epoch start.  ``skip(n)`` makes the next iteration drop the first
    ``n`` indices of this process's shard (the samples of the batches already trained on before a mid-epoch
    checkpoint).  Sharding is that of torch's ``DistributedSampler`` (the permutation padded with its own start
    to a multiple of ``num_replicas``; process ``rank`` takes every ``num_replicas``-th index from position
    ``rank``), so Lightning keeps this sampler under DDP instead of injecting its own.  The shard is the one
    :meth:`set_shard` gave (``fit`` does, from the trainer, and makes every process use rank 0's seed);
    otherwise that of the initialised ``torch.distributed`` process group, else the whole data set.  Outside
    ``fit`` under DDP, pass the same ``seed`` on every process.

    Args:
        data_source: the map-style data set (``N`` samples).
        seed: the shuffle seed; ``None`` draws one from torch's global RNG.
    """

    def __init__(self, data_source: Sized, seed: Optional[int] = None):  # no super().__init__: shard set later
        if seed is None:
            seed = int(torch.empty((), dtype=torch.int64).random_().item())
        self.dataset = data_source
        self.seed = int(seed) % (2**63)
        self.shuffle, self.drop_last = True, False
        self.epoch = 0
        self._shard: Optional[tuple[int, int]] = None
        self._skip = 0

    @property
    def data_source(self) -> Sized:
        return self.dataset

    def set_shard(self, num_replicas: int, rank: int) -> None:
        """Draw only shard ``rank`` of ``num_replicas`` from now on."""
        if not 0 <= rank < num_replicas:
            raise ValueError(f"ResumableRandomSampler.set_shard: rank must be in [0, {num_replicas}), got {rank}")
        self._shard = (int(num_replicas), int(rank))

    def _current_shard(self) -> tuple[int, int]:
        if self._shard is not None:
            return self._shard
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            return torch.distributed.get_world_size(), torch.distributed.get_rank()
        return 1, 0

    @property
    def num_replicas(self) -> int:
        return self._current_shard()[0]

    @property
    def rank(self) -> int:
        return self._current_shard()[1]

    @property
    def num_samples(self) -> int:
        return -(-len(self.dataset) // self.num_replicas)

    @property
    def total_size(self) -> int:
        return self.num_samples * self.num_replicas

    def __len__(self) -> int:
        return self.num_samples

    def __iter__(self) -> Iterator[int]:
        n = len(self.dataset)
        world, rank = self._current_shard()
        g = torch.Generator().manual_seed((self.seed * 1_000_003 + self.epoch) % (2**63))
        perm = torch.randperm(n, generator=g).tolist()
        padded = -(-n // world) * world
        perm += (perm * (-(-padded // n)))[: padded - n]
        yield from perm[rank:padded:world][self._take_skip():]


def _rng_state() -> dict[str, Any]:
    np_state = np.random.get_state()
    state = {
        "python": list(_to_plain(random.getstate())),
        "numpy": {"name": np_state[0], "keys": torch.from_numpy(np_state[1].astype(np.int64)),
                  "pos": int(np_state[2]), "has_gauss": int(np_state[3]), "cached_gaussian": float(np_state[4])},
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _to_plain(obj: Any) -> Any:
    if isinstance(obj, tuple):
        return [_to_plain(o) for o in obj]
    return obj


def _set_rng_state(state: dict[str, Any]) -> None:
    py = state["python"]
    random.setstate((int(py[0]), tuple(int(v) for v in py[1]), py[2]))
    n = state["numpy"]
    np.random.set_state((n["name"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"],
                         n["cached_gaussian"]))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        cuda = state["cuda"]
        if len(cuda) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(cuda)


class ResumeState(pl.Callback):
    """Saves what Lightning's checkpoint lacks for an exact resume, and puts it back.

    Stored under ``checkpoint['spaic_resume']`` (plain types and tensors only, loadable with
    ``weights_only=True``): the number of batches consumed in the current epoch and, for every process
    (``'ranks'``, indexed by global rank), its RNG states at save time and its partial sums of the epoch-level
    training metrics.  On resume the sampler skips the consumed batches of this process's shard, the RNG states
    are restored just before the first resumed batch runs, and the partial metric sums are added back after it
    has been logged (so the epoch means equal those of an uninterrupted fit).  Under DDP, :meth:`setup` gives
    the sampler this process's shard and rank 0's seed.  A checkpoint written by a different number of
    processes resumes with fresh RNG streams and sums (with a warning).

    Args:
        sampler: the :class:`ResumableRandomSampler` of the training loader; ``None``: the one of the trainer's
            training loader when it is a :class:`SkippableSampler` (a spaic_train datamodule's), else none (a
            user-supplied loader: Lightning then warns that a mid-epoch resume is not exact).
        batch_size: samples per batch of that loader.
    """

    def __init__(self, sampler: Optional[ResumableRandomSampler] = None, batch_size: int = 1):
        super().__init__()
        self.sampler = sampler
        self.batch_size = int(batch_size)
        self._pending_rng: Optional[dict] = None
        self._pending_metrics: Optional[dict] = None
        self._resume_at: Optional[tuple[int, Optional[dict]]] = None  # (batches done, partial sums) to restore

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if self.sampler is None:
            return
        self.sampler.set_shard(trainer.world_size, trainer.global_rank)
        if trainer.world_size > 1:  # an unseeded fit drew a seed per process: all must shuffle alike
            self.sampler.seed = trainer.strategy.broadcast(self.sampler.seed, src=0)

    def on_save_checkpoint(self, trainer: pl.Trainer, pl_module: pl.LightningModule, checkpoint: dict) -> None:
        # Lightning builds the checkpoint on every process (rank 0 writes it): gather each one's own state
        loop = trainer.fit_loop.epoch_loop
        metrics = {}
        for key, m in loop._results.items():
            if not getattr(m, "is_tensor", False) or not m.meta.on_epoch:
                continue
            entry = {"value": m.value.detach().cpu().clone()}
            if m.meta.is_mean_reduction:
                entry["cumulated_batch_size"] = m.cumulated_batch_size.detach().cpu().clone()
            metrics[key] = entry
        checkpoint["spaic_resume"] = {
            "ranks": gather_objects(trainer, {"rng": _rng_state(), "metrics": metrics}),
            "batches_done": int(loop.batch_progress.current.processed),
            "epoch": int(trainer.current_epoch),
        }

    def on_load_checkpoint(self, trainer: pl.Trainer, pl_module: pl.LightningModule, checkpoint: dict) -> None:
        state = checkpoint.get("spaic_resume")
        if state is None:
            return
        # checkpoints written before per-process states were kept hold one process's 'rng' and 'metrics'
        ranks = state.get("ranks") or [{"rng": state["rng"], "metrics": state.get("metrics") or {}}]
        if len(ranks) != trainer.world_size:
            warnings.warn(f"the checkpoint was written by {len(ranks)} process(es) and training resumes with "
                          f"{trainer.world_size}: RNG streams and partial epoch metrics start afresh, so the resumed "
                          "fit is not identical to an uninterrupted one", stacklevel=2)
            return
        mine = ranks[trainer.global_rank]
        self._pending_rng = mine["rng"]
        self._resume_at = (int(state["batches_done"]), mine["metrics"] or None)
        if self.sampler is not None:
            self._skip_done_batches()

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self.sampler is None:  # a datamodule's loader exists from here on (and is not iterated yet)
            loader = trainer.train_dataloader
            sampler = getattr(loader, "sampler", None)
            if isinstance(sampler, SkippableSampler):
                self.sampler, self.batch_size = sampler, int(getattr(loader, "batch_size", None) or 1)
        if self.sampler is not None and self._resume_at is not None:
            self._skip_done_batches()

    def _skip_done_batches(self) -> None:
        """A checkpoint written mid-epoch: skip the batches it had trained on, and add its partial sums back."""
        (done, metrics), self._resume_at = self._resume_at, None
        if 0 < done < -(-len(self.sampler) // self.batch_size):
            self.sampler.skip(done * self.batch_size)
            self._pending_metrics = metrics

    def on_train_batch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any,
                             batch_idx: int) -> None:
        if self._pending_rng is not None:
            _set_rng_state(self._pending_rng)
            self._pending_rng = None

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        saved, self._pending_metrics = self._pending_metrics, None
        if not saved:
            return
        results = trainer.fit_loop.epoch_loop._results
        for key, entry in saved.items():
            m = results.get(key)
            if m is None or not getattr(m, "is_tensor", False):
                continue
            value = entry["value"].to(m.value.device, m.value.dtype)
            if m.meta.is_mean_reduction or m.meta.is_sum_reduction:
                m.value = value + m.value
                if m.meta.is_mean_reduction and "cumulated_batch_size" in entry:
                    m.cumulated_batch_size = entry["cumulated_batch_size"].to(m.cumulated_batch_size.device) \
                        + m.cumulated_batch_size
            elif m.meta.is_max_reduction:
                m.value = torch.maximum(value, m.value)
            elif m.meta.is_min_reduction:
                m.value = torch.minimum(value, m.value)
