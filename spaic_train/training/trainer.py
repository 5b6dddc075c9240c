"""``fit`` / ``evaluate`` / ``predict``: Keras-style drivers that build a ``lightning.Trainer``.

Seeding.  ``seed=N`` calls ``lightning.seed_everything(N, workers=True)`` in the calling process before
anything else (weight initialisation done *before* ``fit`` is not affected: seed before building the network
for end-to-end reproducibility).  Under multi-process strategies every process then reseeds its own RNGs with
``N + global_rank`` at fit start (``SNNModule(per_rank_seed=True)``), so Poisson encoders and dropout draw
different numbers on each process while the ``DistributedSampler`` (seeded by ``PL_GLOBAL_SEED = N``) still
shuffles identically everywhere; dataloader workers get Lightning's ``(N, worker, rank)``-derived seeds.
Model weights are identical on every process regardless (DDP broadcasts rank 0's).

Multi-process.  ``strategy='ddp'`` relaunches the calling script once per extra device (the script must be
safe to re-run, e.g. guarded by ``if __name__ == '__main__'``); ``'ddp_spawn'`` runs the fit in child
processes and copies the trained weights and the History back.  On CPU use ``accelerator='cpu',
devices=N`` (gloo backend).  ``evaluate`` and ``predict`` take the same options: every process scores or
predicts its shard, and all return the numbers / outputs (in dataset order) of the whole data, as one process
would.
"""

from __future__ import annotations

import logging
import os
import tempfile
import warnings
from collections.abc import Sequence
from typing import Any, Optional, Union

import lightning.pytorch as pl
import torch
from lightning.pytorch.callbacks import BasePredictionWriter, ModelCheckpoint
from lightning.pytorch.loggers import Logger, TensorBoardLogger
from lightning.pytorch.strategies.launchers.multiprocessing import _MultiProcessingLauncher
from torch import Tensor, nn
from torch.utils.data import IterableDataset

from .checkpoint import AtomicCheckpointIO, check_checkpoint
from .checks import array_labels, check_data
from .data import DataLike, prepare_eval_data, prepare_fit_data, unpack_batch
from .distributed import ProcessGroupTeardown, gather_objects
from .guards import NAN_POLICIES, DeadNetworkMonitor, NonFiniteGuard
from .history import History
from .module import SNNModule
from .progress import EpochProgress, quiet_lightning
from .resume import ResumableRandomSampler, ResumeState

__all__ = ["evaluate", "fit", "predict"]

log = logging.getLogger(__name__)

# under DDP Lightning warns that its DistributedSampler repeats evaluation samples; SNNModule does not count
# them (and predict puts every sample back in its place exactly once)
_EXACT_EVAL = r".*Using `DistributedSampler` with the dataloaders.*"


def _as_module(module: Union[SNNModule, pl.LightningModule, nn.Module]) -> pl.LightningModule:
    if isinstance(module, pl.LightningModule):
        return module
    if isinstance(module, nn.Module):
        return SNNModule(module)
    raise TypeError(f"expected an SNNModule, LightningModule or nn.Module, got {type(module).__name__}")


def _make_logger(logger: Union[bool, Logger, Sequence[Logger], None], log_dir: str) -> Any:
    if logger is True:
        return TensorBoardLogger(save_dir=str(log_dir), name="spaic_train", default_hp_metric=False)
    if logger is False or logger is None:
        return False
    return logger


def _resolve_resume(resume: Optional[str], checkpoint_dir: Optional[str]) -> Optional[str]:
    if resume is None or resume is False:
        return None
    if resume == "last":
        if checkpoint_dir is None:
            raise ValueError("resume='last' needs checkpoint_dir (where the last.ckpt of a previous fit is)")
        path = os.path.join(str(checkpoint_dir), "last.ckpt")
        if not os.path.exists(path):
            warnings.warn(f"resume='last': no checkpoint at {path}, training from scratch", stacklevel=3)
            return None
    else:
        if not isinstance(resume, (str, os.PathLike)):
            raise TypeError(f"resume must be 'last', a checkpoint path or None, got {type(resume).__name__}")
        path = os.fspath(resume)
        if not os.path.exists(path):
            raise FileNotFoundError(f"resume checkpoint {path!r} does not exist")
    check_checkpoint(path)  # truncated / corrupt / unsafe → CheckpointError before anything is written
    return path


def _with_progress(callbacks: Sequence[pl.Callback], enable_progress_bar: bool) -> list[pl.Callback]:
    """``callbacks`` plus the Keras-like :class:`EpochProgress` console, unless the progress bar is off or the
    caller brought their own."""
    callbacks = list(callbacks)
    if enable_progress_bar and not any(isinstance(c, pl.callbacks.ProgressBar) for c in callbacks):
        callbacks.append(EpochProgress())
    return callbacks


def _eval_trainer(accelerator: str, devices: Any, precision: Any, enable_progress_bar: bool,
                  trainer_kwargs: dict) -> pl.Trainer:
    kwargs = dict(accelerator=accelerator, devices=devices, precision=precision, logger=False,
                  enable_checkpointing=False, enable_progress_bar=enable_progress_bar, enable_model_summary=False)
    kwargs.update(trainer_kwargs)
    kwargs["callbacks"] = _with_progress([*(kwargs.get("callbacks") or []), ProcessGroupTeardown()],
                                         enable_progress_bar)
    return pl.Trainer(**kwargs)


def fit(
    module: Union[SNNModule, pl.LightningModule, nn.Module],
    x: DataLike,
    y: Any = None,
    epochs: int = 1,
    batch_size: int = 32,
    validation_data: Any = None,
    validation_split: float = 0.0,
    callbacks: Optional[Sequence[pl.Callback]] = None,
    devices: Any = "auto",
    accelerator: str = "auto",
    strategy: Any = "auto",
    precision: Any = "32-true",
    logger: Union[bool, Logger, Sequence[Logger]] = True,
    log_dir: str = "runs",
    checkpoint_dir: Optional[str] = None,
    resume: Optional[str] = None,
    seed: Optional[int] = None,
    num_workers: int = 0,
    enable_progress_bar: bool = True,
    shuffle: bool = True,
    on_nan: str = "raise",
    checkpoint_every_n_steps: Optional[int] = None,
    **trainer_kwargs: Any,
) -> History:
    """Train ``module`` and return its :class:`History`.

    Args:
        module: an :class:`SNNModule` (or any LightningModule; a bare ``nn.Module`` is wrapped in
            ``SNNModule(module)`` with the defaults; the wrapper is ``history.model``).
        x, y: training data — arrays ``x`` ``[N, ...]`` with labels ``y`` ``[N]`` / ``[N, C]``, a Dataset, a
            DataLoader or a LightningDataModule (see :mod:`spaic_train.training.data`).
        epochs: total number of epochs (a resumed fit continues up to it).
        batch_size: samples per batch per process (array/Dataset inputs).
        validation_data: ``(x_val, y_val)``, a Dataset or a DataLoader.
        validation_split: fraction of the (array/Dataset) training data held out from its end, like Keras.
        callbacks: extra Lightning callbacks.
        devices, accelerator, strategy, precision: passed to ``lightning.Trainer`` (e.g. ``devices=2,
            accelerator='cpu', strategy='ddp'``; ``precision='bf16-mixed'``).
        logger: ``True`` → ``TensorBoardLogger(log_dir, name='spaic_train')``; ``False`` → none; a Logger (or
            list) is used as is.
        log_dir: TensorBoard directory (also the Trainer's ``default_root_dir``).
        checkpoint_dir: if given, a ``ModelCheckpoint`` saves there every epoch (``last.ckpt`` plus the best by
            ``val_loss``, or ``train_loss`` without validation); otherwise no checkpoint is written.
        checkpoint_every_n_steps: also save ``step{step}.ckpt`` and ``last.ckpt`` every that many optimizer steps
            (mid-epoch checkpoints; needs ``checkpoint_dir``).  All checkpoints are written atomically
            (:class:`~spaic_train.training.checkpoint.AtomicCheckpointIO`): a crash during a save never leaves a
            broken file.
        resume: ``'last'`` (``checkpoint_dir/last.ckpt``, fresh start with a warning if missing) or a path.  The
            file is loaded with ``weights_only=True`` and checked before training starts (``CheckpointError`` for
            a truncated, corrupt or unsafe file).  Resuming restores the data order, the RNG states (Poisson
            draws, dropout) and the partial epoch metrics, so a fit resumed mid-epoch ends exactly like an
            uninterrupted one (single process, array/Dataset inputs).
        on_nan: ``'raise'`` — a NaN/Inf loss or gradient raises :class:`~spaic_train.training.NonFiniteError`
            naming the step, the loss value and the layer/parameter that went non-finite; ``'skip'`` — that
            optimizer step is skipped (weights unchanged), with a warning, and ``history.history['nan_skipped']``
            counts the skips per epoch; ``'ignore'`` — no check.
        seed: seeds everything (see the module docstring for the per-process scheme).
        num_workers: dataloader worker processes (array/Dataset inputs).
        enable_progress_bar: print one line per epoch (loss and metrics; on a terminal also a live bar of the
            batches: :class:`~spaic_train.training.progress.EpochProgress`); ``False``: print nothing.
        shuffle: shuffle the training data every epoch (array/Dataset inputs; validation is never shuffled).
        **trainer_kwargs: any other ``lightning.Trainer`` option (``gradient_clip_val``,
            ``accumulate_grad_batches``, ``limit_train_batches``...).

    Returns:
        The :class:`History` (``history.history['loss' | 'accuracy' | 'val_loss' | 'val_accuracy' | 'lr']``,
        one float per epoch).

    Raises:
        ValueError: empty data, NaN/Inf in array inputs or float targets, bad ``validation_data`` /
            ``validation_split``, labels out of range for the output (at fit start when the network's output
            size is known, else on the first batch), a loss needing a sequence output given a ``[B, C]`` one
            (first batch), a bad ``on_nan`` / ``checkpoint_every_n_steps``.
        CheckpointError: ``resume`` names a truncated, corrupt or unsafe checkpoint (nothing is written).
        NonFiniteError: a NaN/Inf loss or gradient with ``on_nan='raise'``.
    """
    if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 1:
        raise ValueError(f"epochs must be a positive int, got {epochs!r}")
    if on_nan not in NAN_POLICIES:
        raise ValueError(f"on_nan must be one of {', '.join(NAN_POLICIES)}, got {on_nan!r}")
    if checkpoint_every_n_steps is not None:
        if isinstance(checkpoint_every_n_steps, bool) or not isinstance(checkpoint_every_n_steps, int) \
                or checkpoint_every_n_steps < 1:
            raise ValueError(f"checkpoint_every_n_steps must be a positive int, got {checkpoint_every_n_steps!r}")
        if checkpoint_dir is None:
            raise ValueError("checkpoint_every_n_steps needs checkpoint_dir (where to write the checkpoints)")
    ckpt_path = _resolve_resume(resume, checkpoint_dir)
    if seed is not None:
        pl.seed_everything(int(seed), workers=True, verbose=False)
    module = _as_module(module)
    y = array_labels(module, y, "y")
    if isinstance(validation_data, (tuple, list)) and len(validation_data) == 2:
        validation_data = (validation_data[0], array_labels(module, validation_data[1], "y_val"))
    data = prepare_fit_data(x, y, batch_size=batch_size, shuffle=shuffle, validation_data=validation_data,
                            validation_split=validation_split, num_workers=num_workers, seed=seed)
    given_val = validation_data is not None
    check_data(module, [(data.train, "x", "y"), (data.val, "validation_data[0]" if given_val else "x",
                                                 "validation_data[1]" if given_val else "y")])
    if isinstance(module, SNNModule):
        module.nan_policy = on_nan

    history = History()
    sampler = getattr(data.train, "sampler", None) if data.train is not None else None
    if not isinstance(sampler, ResumableRandomSampler):
        sampler = None
    cbs: list[pl.Callback] = [
        ResumeState(sampler, batch_size=getattr(data.train, "batch_size", None) or batch_size),
        NonFiniteGuard(on_nan), DeadNetworkMonitor(), history, ProcessGroupTeardown(),
        *(callbacks or []), *(trainer_kwargs.pop("callbacks", None) or []),
    ]
    if checkpoint_dir is not None:
        monitor = "val_loss" if data.has_validation else "train_loss"
        cbs.append(ModelCheckpoint(dirpath=str(checkpoint_dir), filename="epoch{epoch:03d}", monitor=monitor,
                                   mode="min", save_last=True, save_top_k=1, auto_insert_metric_name=False))
        if checkpoint_every_n_steps is not None:
            cbs.append(ModelCheckpoint(dirpath=str(checkpoint_dir), filename="step{step:06d}",
                                       every_n_train_steps=checkpoint_every_n_steps, save_last=True, save_top_k=1,
                                       auto_insert_metric_name=False))
    plugins = trainer_kwargs.pop("plugins", None)
    plugins = list(plugins) if isinstance(plugins, (list, tuple)) else ([] if plugins is None else [plugins])
    if not any(isinstance(p, pl.plugins.CheckpointIO) for p in plugins):
        plugins.append(AtomicCheckpointIO())
    kwargs: dict[str, Any] = dict(
        max_epochs=epochs, accelerator=accelerator, devices=devices, strategy=strategy, precision=precision,
        logger=_make_logger(logger, log_dir), default_root_dir=str(log_dir),
        callbacks=_with_progress(cbs, enable_progress_bar),
        enable_checkpointing=checkpoint_dir is not None or any(isinstance(c, ModelCheckpoint) for c in cbs),
        enable_progress_bar=enable_progress_bar,
        enable_model_summary=False, plugins=plugins,
    )
    if data.train is not None:
        try:
            kwargs["log_every_n_steps"] = max(1, min(50, len(data.train)))
        except TypeError:
            pass
    kwargs.update(trainer_kwargs)

    with quiet_lightning():
        trainer = pl.Trainer(**kwargs)
        for tb in trainer.loggers:
            if isinstance(tb, TensorBoardLogger) and trainer.is_global_zero:
                log.info(f"TensorBoard logs: {tb.log_dir} (view: tensorboard --logdir {tb.log_dir})")
        tmp = None
        if isinstance(trainer.strategy.launcher, _MultiProcessingLauncher):
            fd, tmp = tempfile.mkstemp(prefix="spaic_history_", suffix=".json")
            os.close(fd)
            os.remove(tmp)
            history._export_path = tmp
        try:
            if data.datamodule is not None:
                trainer.fit(module, datamodule=data.datamodule, ckpt_path=ckpt_path)
            else:
                trainer.fit(module, train_dataloaders=data.train, val_dataloaders=data.val, ckpt_path=ckpt_path)
            history._import()
        finally:
            history._export_path = None
            if tmp is not None and os.path.exists(tmp):
                os.remove(tmp)
    history.model = module
    history.params = {"epochs": epochs, "batch_size": batch_size, "world_size": trainer.world_size,
                      "steps": trainer.global_step}
    history.trainer = trainer
    return history


def evaluate(
    module: Union[SNNModule, pl.LightningModule],
    x: DataLike,
    y: Any = None,
    batch_size: int = 32,
    accelerator: str = "auto",
    devices: Any = 1,
    precision: Any = "32-true",
    num_workers: int = 0,
    enable_progress_bar: bool = False,
    **trainer_kwargs: Any,
) -> dict[str, float]:
    """Loss and metrics of ``module`` on ``(x, y)`` (a DataModule's ``test_dataloader``).

    Args:
        devices, accelerator, precision, **trainer_kwargs: as ``lightning.Trainer``; ``devices=2,
            strategy='ddp'`` (``accelerator='cpu'``: gloo) splits the data between processes.

    Returns:
        ``{'loss': ..., '<metric>': ...}`` (e.g. ``{'loss': 0.31, 'accuracy': 0.93}``): sample-weighted means
        over the whole data, on every process.  With an :class:`SNNModule` they are the same under DDP as in
        one process (each sample counted once; only the float summation order differs).
    """
    module = _as_module(module)
    data = prepare_eval_data(x, array_labels(module, y, "y"), batch_size=batch_size, num_workers=num_workers,
                             need_targets=True)
    check_data(module, [(data, "x", "y")])
    with quiet_lightning(*((_EXACT_EVAL,) if isinstance(module, SNNModule) else ())):
        trainer = _eval_trainer(accelerator, devices, precision, enable_progress_bar, trainer_kwargs)
        if isinstance(data, pl.LightningDataModule):
            results = trainer.test(module, datamodule=data, verbose=False)
        else:
            results = trainer.test(module, dataloaders=data, verbose=False)
    merged: dict[str, float] = {}
    for res in results:
        merged.update(res)
    return {(k[len("test_"):] if k.startswith("test_") else k): float(v) for k, v in merged.items()}


def predict(
    module: Union[SNNModule, pl.LightningModule],
    x: DataLike,
    batch_size: int = 32,
    accelerator: str = "auto",
    devices: Any = 1,
    precision: Any = "32-true",
    num_workers: int = 0,
    time_first: Optional[bool] = None,
    enable_progress_bar: bool = False,
    **trainer_kwargs: Any,
) -> Tensor:
    """Network outputs for ``x``, concatenated in input order on one device.

    Args:
        x: inputs ``[N, ...]`` (array, Dataset of ``(x, ...)`` items, DataLoader or a DataModule's
            ``predict_dataloader``).
        devices, accelerator, precision, **trainer_kwargs: as ``lightning.Trainer``.  Under several processes
            (``devices=2, strategy='ddp'``) each predicts a share of the samples and every process returns all
            outputs, put back in dataset order (map-style data sets only).
        time_first: whether outputs are ``[T, B, C]`` sequences (concatenated along dim 1).  ``None``: the axis
            (0 or 1) whose length is every batch's size; if both are (``T`` equals the batch size), time first
            only when the module's loss needs sequences (``tet``).

    Returns:
        ``[N, C]`` (or ``[N, *shape]``) for per-sample outputs, ``[T, N, C]`` for sequences; on the CPU.

    Raises:
        ValueError: no batch was produced, or several processes predict a data set without sample indices (an
            iterable data set), whose outputs cannot be put back in order.
    """
    module = _as_module(module)
    data = prepare_eval_data(x, None, batch_size=batch_size, num_workers=num_workers, need_targets=False)
    check_data(module, [(data, "x", "y")])
    collected = _CollectPredictions()
    trainer_kwargs = dict(trainer_kwargs)
    trainer_kwargs["callbacks"] = [collected, *(trainer_kwargs.get("callbacks") or [])]
    with quiet_lightning(r".*Couldn't infer the batch indices.*"):
        trainer = _eval_trainer(accelerator, devices, precision, enable_progress_bar, trainer_kwargs)
        if trainer.world_size > 1 and isinstance(getattr(data, "dataset", None), IterableDataset):
            raise ValueError(_UNORDERED.format(n=trainer.world_size))
        if isinstance(data, pl.LightningDataModule):
            trainer.predict(module, datamodule=data, return_predictions=False)
        else:
            trainer.predict(module, dataloaders=data, return_predictions=False)
    outs, sizes, keys = collected.outputs, collected.sizes, collected.keys
    if not outs:
        raise ValueError("predict: no batch was produced")
    if time_first is None:
        fits = [d for d in (0, 1) if all(o.dim() > d and o.shape[d] == b for o, b in zip(outs, sizes))]
        if fits == [1]:
            time_first = True
        elif fits == [0, 1]:  # T == batch size: ambiguous, ask the loss
            time_first = bool(getattr(getattr(module, "loss_fn", None), "requires_sequence", False))
        else:
            time_first = False
    dim = 1 if time_first else 0
    out = torch.cat([o.float() if o.dtype == torch.bfloat16 else o for o in outs], dim=dim)
    if trainer.world_size > 1:  # the shards, rank after rank: back to dataset order
        if any(k is None for k in keys):
            raise ValueError(_UNORDERED.format(n=trainer.world_size))
        flat = [k for batch in keys for k in batch]
        order = sorted(range(len(flat)), key=flat.__getitem__)
        out = out.index_select(dim, torch.tensor(order, dtype=torch.long))
    return out


_UNORDERED = ("predict on {n} processes needs a map-style data set: an iterable data set has no sample indices, so "
              "its outputs cannot be put back in order (and every process would read all of it); predict it in one "
              "process (devices=1)")


class _CollectPredictions(BasePredictionWriter):
    """Keeps every predicted batch (on the CPU) with its size and its samples' ``(dataloader, index)`` keys; at
    the end of a multi-process predict, every process gets the batches of all (rank after rank)."""

    def __init__(self) -> None:
        super().__init__(write_interval="batch")
        self.outputs: list[Tensor] = []
        self.sizes: list[int] = []
        self.keys: list[Optional[list[tuple[int, int]]]] = []

    def write_on_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, prediction: Any,
                           batch_indices: Optional[Sequence[int]], batch: Any, batch_idx: int,
                           dataloader_idx: int) -> None:
        x, _ = unpack_batch(batch)
        self.outputs.append(prediction.detach().cpu())
        self.sizes.append(int(x.shape[0]) if isinstance(x, Tensor) and x.dim() > 0 else -1)
        usable = batch_indices and all(isinstance(i, int) for i in batch_indices)
        self.keys.append([(dataloader_idx, i) for i in batch_indices] if usable else None)

    def on_predict_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.world_size > 1:
            shards = gather_objects(trainer, (self.outputs, self.sizes, self.keys))
            self.outputs, self.sizes, self.keys = ([b for shard in shards for b in shard[i]] for i in range(3))
