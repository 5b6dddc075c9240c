"""``SNNModule``: the LightningModule that trains any spiking network (or any ``nn.Module``)."""

from __future__ import annotations

import contextlib
import os
import random
from collections.abc import Sequence
from typing import Any, Optional, Union

import lightning.pytorch as pl
import numpy as np
import torch
from torch import Tensor, nn

from .checks import check_labels
from .data import unpack_batch
from .delay_sigma import DelaySigmaSchedule, as_delay_sigma_schedule, learnable_delays, set_delay_sigma
from .distributed import WeightedMean, flatten_loaders, loader_sampler, unpadded_shard_length
from .losses import LossLike, get_loss, is_sequence
from .metrics import MetricLike, get_metric, metric_name
from .optimizers import (
    OptimizerLike,
    SchedulerContext,
    SchedulerLike,
    build_optimizer,
    build_scheduler,
    check_optimizer,
    check_scheduler,
)
from .protocols import Constrained
from .regularizers import RegularizerSpec, build_regularizers, regularization

__all__ = ["SNNModule", "DELAY_LR_FACTOR", "infer_num_steps", "seed_rank_rngs"]

#: default learning rate of learnable delays (ms) relative to ``lr``
DELAY_LR_FACTOR = 100.0


def infer_num_steps(network: nn.Module) -> Optional[int]:
    """The number of simulation steps ``T`` of ``network`` if it exposes one (``num_steps``, ``time_steps`` or
    ``T`` int attribute, or ``run_time / dt``), else ``None``."""
    for attr in ("num_steps", "time_steps", "T"):
        value = getattr(network, attr, None)
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            return value
    run_time, dt = getattr(network, "run_time", None), getattr(network, "dt", None)
    if isinstance(run_time, (int, float)) and isinstance(dt, (int, float)) and dt > 0 and run_time > 0:
        return int(round(run_time / dt))
    return None


def seed_rank_rngs(seed: Optional[int], rank: int) -> int:
    """Seed this process's ``random``, ``numpy`` and ``torch`` (CPU and CUDA) RNGs with ``seed + rank``.

    Unlike ``lightning.seed_everything`` it leaves ``PL_GLOBAL_SEED`` alone, so the ``DistributedSampler``
    shuffles identically on every process (and dataloader workers keep Lightning's per-rank/per-worker seeds).
    With ``seed=None`` a fresh OS-random seed is drawn per process.  Returns the seed used.
    """
    if seed is None:
        s = int.from_bytes(os.urandom(4), "little")
    else:
        s = (int(seed) + int(rank)) % (2**32)
    random.seed(s)
    np.random.seed(s)
    torch.manual_seed(s)  # also seeds every CUDA device
    return s


class SNNModule(pl.LightningModule):
    """Train a spiking network with a loss, an optimizer, an optional LR scheduler and metrics.

    Args:
        network: the model; ``network(x)`` maps a batch ``x`` ``[B, ...]`` to ``[B, C]`` or, for the
            ``'sequence'`` decoder, ``[T, B, C]``.  If it has ``apply_constraints()``, that method is called
            after every optimizer step (weight clamping, sparse masks).
        loss: a name in :data:`~spaic_train.training.LOSSES` (``'ce_rate'``, ``'ce_count'``, ``'mse_count'``,
            ``'tet'``, ``'mse'``, ``'ce'``) or a callable ``(output, target) -> scalar``.
        optimizer: a name in :data:`~spaic_train.training.OPTIMIZERS`, an Optimizer class or a factory.
        lr: learning rate.
        optimizer_kwargs: extra optimizer options (``weight_decay``, ``momentum``...).
        scheduler: ``None`` or a name in :data:`~spaic_train.training.SCHEDULERS`, an LRScheduler class or a
            factory ``optimizer -> scheduler``.
        scheduler_kwargs: options overriding the scheduler defaults.
        metrics: names in :data:`~spaic_train.training.METRICS` or callables ``(output, target) -> scalar``.
        per_rank_seed: under multi-process training, reseed each process's RNGs with
            ``PL_GLOBAL_SEED + global_rank`` at fit start, so stochastic encoders (Poisson) and dropout draw
            different numbers on each process (see :func:`seed_rank_rngs`).
        delay_lr: learning rate of the learnable delays (``Connection(learn_delay=True)``, in ms), which form
            their own parameter group without weight decay; default ``DELAY_LR_FACTOR · lr`` (delays are ms,
            weights are ~0.1: Adam moves every parameter by about ``lr`` per step).
        delay_sigma: annealing of the delays' relaxation width, a
            :class:`~spaic_train.training.DelaySigmaSchedule` or a dict ``{start, end, epochs}`` (ms, epochs);
            set on every learnable-delay connection at the start of each training epoch.  The delays' learning
            rate then shrinks in proportion, ``delay_lr · σ / start`` (the relaxation only carries gradient
            information on the scale of ``σ``, so a larger step overshoots; at ``σ = 0`` the delays stay where
            they are).  ``None`` keeps the connections' own ``delay_sigma`` and a constant ``delay_lr``.  Both options
            are ignored when the network has no learnable delays.
        regularizers: activity regularisers added to the training loss (firing-rate target, L1 on spike counts,
            energy): see :mod:`spaic_train.training.regularizers` (``{"rate": {"target": 0.05}, "energy": 1.0}``).

    Logged values (epoch values are sample-weighted means, synchronised across processes):
    ``train_loss`` (per step and per epoch), ``train_<metric>``, ``val_loss``, ``val_<metric>``, ``test_loss``,
    ``test_<metric>`` and ``lr`` (mean learning rate of the epoch's steps, first parameter group).  Under DDP
    the validation and test values are those of the whole data set, each sample counted once: the samples a
    ``DistributedSampler`` repeats to even out the shards are left out (see
    :mod:`spaic_train.training.distributed`).  Training values count them, as the gradients do.

    Unknown loss/optimizer/scheduler/metric names raise a ``ValueError`` here, at construction.  Works with any
    ``lightning.Trainer``; ``load_from_checkpoint(path, network=net)`` needs the network (and any non-name
    loss/optimizer/scheduler/metric) passed again.
    """

    def __init__(
        self,
        network: nn.Module,
        loss: LossLike = "ce_rate",
        optimizer: OptimizerLike = "adam",
        lr: float = 1e-3,
        optimizer_kwargs: Optional[dict] = None,
        scheduler: SchedulerLike = None,
        scheduler_kwargs: Optional[dict] = None,
        metrics: Union[Sequence[MetricLike], MetricLike, None] = ("accuracy",),
        per_rank_seed: bool = True,
        delay_lr: Optional[float] = None,
        delay_sigma: Union[None, dict, DelaySigmaSchedule] = None,
        regularizers: RegularizerSpec = None,
    ):
        super().__init__()
        if not isinstance(network, nn.Module):
            raise TypeError(f"network must be an nn.Module, got {type(network).__name__}")
        self.network = network
        self.loss_fn = get_loss(loss)
        if getattr(self.loss_fn, "num_steps", "absent") is None:
            self.loss_fn.num_steps = infer_num_steps(network)
        check_optimizer(optimizer)
        check_scheduler(scheduler)
        self.optimizer_spec = optimizer
        if isinstance(lr, bool) or not isinstance(lr, (int, float)) or not 0 <= lr < float("inf"):
            raise ValueError(f"lr must be a finite number >= 0, got {lr!r}")
        self.lr = float(lr)
        self.optimizer_kwargs = dict(optimizer_kwargs or {})
        self.scheduler_spec = scheduler
        self.scheduler_kwargs = dict(scheduler_kwargs or {})
        if metrics is None:
            metrics = ()
        elif isinstance(metrics, str) or callable(metrics):
            metrics = (metrics,)
        self.metric_fns = {metric_name(m): get_metric(m) for m in metrics}
        self.per_rank_seed = per_rank_seed
        if delay_lr is not None and (isinstance(delay_lr, bool) or not isinstance(delay_lr, (int, float))
                                     or not delay_lr >= 0):
            raise ValueError(f"delay_lr must be None or a number >= 0, got {delay_lr!r}")
        self.delay_lr = None if delay_lr is None else float(delay_lr)
        self.delay_sigma = as_delay_sigma_schedule(delay_sigma)
        self.regularizers = build_regularizers(regularizers)
        if self.regularizers and not hasattr(network, "record"):
            raise TypeError(f"regularizers need a spaic_train Network (with .record), got {type(network).__name__}")
        for r in self.regularizers:
            r.groups(network)  # the layers it names exist
        #: what ``fit`` does on a non-finite loss ('raise', 'skip', 'ignore'); set by ``fit(on_nan=...)``
        self.nan_policy = "raise"
        self._labels_checked: set[str] = set()
        #: real (not padding) samples left in this process's shard of each (stage, dataloader) this epoch
        self._shard_left: dict[tuple[str, int], Optional[int]] = {}
        #: validation/test means by "<stage>_<name>_<dataloader>", created on first use
        self._eval_means = nn.ModuleDict()
        simple = (str, int, float, bool, type(None))
        self.save_hyperparameters(
            {
                k: v
                for k, v in dict(
                    loss=loss, optimizer=optimizer, lr=lr, optimizer_kwargs=optimizer_kwargs, scheduler=scheduler,
                    scheduler_kwargs=scheduler_kwargs, metrics=list(metrics) if metrics else [], delay_lr=delay_lr,
                    delay_sigma=None if self.delay_sigma is None else self.delay_sigma.to_dict(),
                ).items()
                if isinstance(v, simple)
                or (isinstance(v, dict) and all(isinstance(x, simple) for x in v.values()))
                or (isinstance(v, list) and all(isinstance(x, str) for x in v))
            }
        )

    # ----------------------------------------------------------------------------------------------------
    def forward(self, x: Tensor) -> Tensor:
        """``network(x)``: ``[B, ...]`` → ``[B, C]`` or ``[T, B, C]``."""
        return self.network(x)

    def _check_first_batch(self, stage: str, out: Tensor, y: Tensor) -> None:
        """Cheap one-off checks on the first batch of each stage: label range and sequence requirement."""
        if stage in self._labels_checked:
            return
        self._labels_checked.add(stage)
        if getattr(self.loss_fn, "requires_sequence", False) and not is_sequence(out, y):
            raise ValueError(
                f"loss {type(self.loss_fn).__name__} needs the output sequence [T, B, C] (decoder 'sequence'); "
                f"the network returned shape {list(out.shape)} for targets of shape {list(y.shape)}"
            )
        if not (torch.is_floating_point(y) or torch.is_complex(y)) and out.dim() >= 2:
            check_labels(y, out.shape[-1])  # streamed data (not checked whole at fit start): its first batch

    def _real_samples(self, stage: str, dataloader_idx: int, batch_size: int) -> int:
        """How many leading samples of this validation/test batch are not the ``DistributedSampler``'s padding
        (the padding is the end of a shard, so it is the tail of the shard's last batch)."""
        key = (stage, dataloader_idx)
        if key not in self._shard_left:
            trainer = self._trainer
            loaders = flatten_loaders(None if trainer is None else
                                      trainer.val_dataloaders if stage == "val" else trainer.test_dataloaders)
            sampler = loader_sampler(loaders[dataloader_idx]) if dataloader_idx < len(loaders) else None
            self._shard_left[key] = unpadded_shard_length(sampler)
        left = self._shard_left[key]
        if left is None:
            return batch_size
        keep = min(batch_size, left)
        self._shard_left[key] = left - keep
        return keep

    def _shared_step(self, batch: Any, stage: str, dataloader_idx: int = 0) -> Tensor:
        x, y = unpack_batch(batch)
        if y is None:
            raise ValueError(f"{stage} batches must be (x, y) pairs; got inputs without targets")
        regularize = stage == "train" and bool(self.regularizers)
        with (self.network.record(("O",), detach=False) if regularize else contextlib.nullcontext()) as rec:
            out = self(x)
        self._check_first_batch(stage, out, y)
        loss = self.loss_fn(out, y)
        if regularize:  # activity regularisers (spaic_train.training.regularizers), each logged on its own
            terms = regularization(self.regularizers, self.network, {k: v["O"] for k, v in rec.items()})
            for name, value in terms.items():
                self.log(f"train_reg_{name}", value.detach(), on_step=False, on_epoch=True, batch_size=len(y),
                         sync_dist=True)
                loss = loss + value
        # the batch size is the label count: a time-first input [T, B, ...] has T in front
        bs = len(y) if isinstance(y, Tensor) and y.dim() > 0 else int(x.shape[0])
        if stage == "train" and self.nan_policy == "skip" and not bool(torch.isfinite(loss.detach()).all()):
            return loss  # the step is skipped by fit's NonFiniteGuard: keep NaN out of the epoch metrics
        if stage == "train":
            self.log("train_loss", loss.detach(), on_step=True, on_epoch=True, prog_bar=True, batch_size=bs,
                     sync_dist=True)
            for name, fn in self.metric_fns.items():
                self.log(f"train_{name}", fn(out.detach(), y), on_step=False, on_epoch=True, prog_bar=True,
                         batch_size=bs, sync_dist=True)
            return loss
        keep = self._real_samples(stage, dataloader_idx, bs)
        if keep < bs:  # score only the real samples; an all-padding batch adds zero with weight zero
            out = out[:, :keep] if is_sequence(out, y) else out[:keep]
            y = y[:keep]
            loss = self.loss_fn(out, y) if keep else loss.new_zeros(())
        self._log_mean(stage, "loss", loss.detach(), keep, dataloader_idx)
        for name, fn in self.metric_fns.items():
            self._log_mean(stage, name, fn(out.detach(), y) if keep else loss.new_zeros(()), keep, dataloader_idx)
        return loss

    def _log_mean(self, stage: str, name: str, value: Tensor, weight: int, dataloader_idx: int) -> None:
        """Log ``<stage>_<name>`` as the ``weight``-weighted mean over the epoch and all processes (exact:
        see :class:`~spaic_train.training.distributed.WeightedMean`)."""
        key = f"{stage}_{name}_{dataloader_idx}"
        if key not in self._eval_means:
            self._eval_means[key] = WeightedMean().to(self.device)
        mean = self._eval_means[key]
        mean.update(value, weight)
        self.log(f"{stage}_{name}", mean, on_step=False, on_epoch=True, prog_bar=True,
                 metric_attribute=f"_eval_means.{key}")

    def training_step(self, batch: Any, batch_idx: int) -> Tensor:
        loss = self._shared_step(batch, "train")
        opt = self.optimizers(use_pl_optimizer=False) if self._trainer is not None else None
        if isinstance(opt, list):
            opt = opt[0] if opt else None
        if opt is not None:
            self.log("lr", float(opt.param_groups[0]["lr"]), on_step=False, on_epoch=True, batch_size=1,
                     sync_dist=True)  # the same on every process: the sync only keeps Lightning from warning
        return loss

    def validation_step(self, batch: Any, batch_idx: int, dataloader_idx: int = 0) -> Tensor:
        return self._shared_step(batch, "val", dataloader_idx)

    def test_step(self, batch: Any, batch_idx: int, dataloader_idx: int = 0) -> Tensor:
        return self._shared_step(batch, "test", dataloader_idx)

    def on_validation_epoch_start(self) -> None:
        self._shard_left.clear()

    def on_test_epoch_start(self) -> None:
        self._shard_left.clear()

    def predict_step(self, batch: Any, batch_idx: int, dataloader_idx: int = 0) -> Tensor:
        """The network output for the batch's inputs (targets, if any, are ignored)."""
        x, _ = unpack_batch(batch)
        return self(x)

    # ----------------------------------------------------------------------------------------------------
    def apply_constraints(self) -> None:
        """Call ``network.apply_constraints()`` (without autograd) when the network has it."""
        if isinstance(self.network, Constrained):
            with torch.no_grad():
                self.network.apply_constraints()

    def optimizer_step(self, epoch: int, batch_idx: int, optimizer: Any, optimizer_closure: Any = None) -> None:
        """The optimizer step (learnable delays at ``delay_lr · σ / start``, see ``delay_sigma``), then
        :meth:`apply_constraints` (so weights and delays never leave their bounds)."""
        with self._delay_lr_scaled(optimizer):
            super().optimizer_step(epoch, batch_idx, optimizer, optimizer_closure)
        self.apply_constraints()

    def on_fit_start(self) -> None:
        """Per-process RNG seeds under multi-process training (see ``per_rank_seed``)."""
        if self.per_rank_seed and self.trainer.world_size > 1:
            base = os.environ.get("PL_GLOBAL_SEED")
            seed_rank_rngs(int(base) if base is not None else None, self.trainer.global_rank)

    def on_train_epoch_start(self) -> None:
        """Set the ``delay_sigma`` of this epoch on every learnable-delay connection (when a schedule is given)."""
        if self.delay_sigma is not None:
            set_delay_sigma(self.network, self.delay_sigma(self.current_epoch))

    def _param_groups(self) -> Any:
        """All parameters; learnable delays in a group of their own (``delay_lr``, no weight decay)."""
        delays = learnable_delays(self.network)
        if not delays:
            return self.parameters()
        ids = {id(d) for d in delays}
        lr = self.lr * DELAY_LR_FACTOR if self.delay_lr is None else self.delay_lr
        return [{"params": [p for p in self.parameters() if id(p) not in ids]},
                {"params": delays, "lr": lr, "weight_decay": 0.0, "delays": True}]

    @contextlib.contextmanager
    def _delay_lr_scaled(self, optimizer: Any):
        """Scale the learning rate of the delay group by ``σ / start`` for one step (schedulers never see it)."""
        groups = [g for g in getattr(optimizer, "optimizer", optimizer).param_groups if g.get("delays")]
        if self.delay_sigma is None or not groups:
            yield
            return
        factor = self.delay_sigma(self.current_epoch) / self.delay_sigma.start
        saved = [g["lr"] for g in groups]
        for g in groups:
            g["lr"] = g["lr"] * factor
        try:
            yield
        finally:
            for g, lr in zip(groups, saved):
                g["lr"] = lr

    def configure_optimizers(self) -> Any:
        opt = build_optimizer(self.optimizer_spec, self._param_groups(), self.lr, **self.optimizer_kwargs)
        if self.scheduler_spec is None:
            return opt
        trainer = self._trainer
        max_epochs = getattr(trainer, "max_epochs", None) if trainer is not None else None
        if max_epochs is not None and max_epochs < 0:
            max_epochs = None

        def total_steps() -> Optional[int]:
            if trainer is None:
                return None
            try:
                est = trainer.estimated_stepping_batches
            except Exception:
                return None
            return int(est) if est != float("inf") else None

        ctx = SchedulerContext(lr=self.lr, max_epochs=max_epochs, total_steps=total_steps,
                               has_validation=_has_validation(trainer))
        sched = build_scheduler(self.scheduler_spec, opt, ctx, **self.scheduler_kwargs)
        if sched is None:
            return opt
        return {"optimizer": opt, "lr_scheduler": sched}


def _has_validation(trainer: Optional[pl.Trainer]) -> bool:
    """Whether the trainer will run validation (best effort; ``True`` when unknown)."""
    if trainer is None:
        return True
    try:
        if trainer.limit_val_batches == 0:
            return False
        source = trainer.fit_loop.epoch_loop.val_loop._data_source
        return bool(source.is_defined())
    except Exception:
        return True
