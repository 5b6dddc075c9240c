"""Keras-named training callbacks, Lightning underneath: ``model.fit(..., callbacks=[EarlyStopping(...)])``.

``spaic_train.callbacks`` is this module.  The callbacks take Keras' arguments and the metric names of
:class:`~spaic_train.training.History` (``loss``, ``accuracy``, ``val_loss``, ``val_accuracy``, ``lr``) and
are Lightning callbacks, so they also work with ``fit``, ``SNNModule`` and a user-built ``lightning.Trainer``:

* :class:`EarlyStopping` — Lightning's, plus Keras' ``restore_best_weights`` and ``baseline``;
* :class:`ModelCheckpoint` — Lightning's, with Keras' ``filepath`` (``{epoch}`` counted from 1, metric
  placeholders by History name) and ``save_best_only``; it writes Lightning checkpoints (``fit(resume=path)``);
* :class:`LearningRateMonitor` — Lightning's, logging the learning rate of every optimizer once per epoch.

``mode='auto'`` reads the monitored name: losses and errors are minimised, accuracies maximised; any other name
needs ``mode='min'`` or ``'max'`` (as in Keras 3, which also refuses to guess).
"""

from __future__ import annotations

import os
from typing import Any, Optional

import lightning.pytorch as pl
import torch
from lightning.pytorch import callbacks as pl_callbacks

from .history import history_key

__all__ = ["EarlyStopping", "LearningRateMonitor", "ModelCheckpoint"]

_MODES = ("auto", "min", "max")


def logged_name(monitor: str) -> str:
    """The name ``SNNModule`` logs a History key under: ``loss`` → ``train_loss``, ``accuracy`` →
    ``train_accuracy``; ``val_*``, ``train_*`` and ``lr`` stay as they are."""
    if monitor.startswith(("val_", "train_", "test_")) or monitor == "lr":
        return monitor
    return f"train_{monitor}"


def resolve_mode(owner: str, monitor: str, mode: str) -> str:
    """``'min'`` or ``'max'`` for ``monitor``; ``mode='auto'`` decides from the name (Keras' rule)."""
    if mode not in _MODES:
        raise ValueError(f"{owner}: mode must be one of {', '.join(map(repr, _MODES))}, got {mode!r}")
    if mode != "auto":
        return mode
    name = monitor.lower()
    if "loss" in name or "error" in name:
        return "min"
    if "acc" in name:
        return "max"
    raise ValueError(f"{owner}: mode='auto' cannot tell whether monitor={monitor!r} should be minimised or "
                     f"maximised; pass mode='min' or mode='max'")


def _check_monitor(owner: str, monitor: Any) -> str:
    if not isinstance(monitor, str) or not monitor:
        raise ValueError(f"{owner}: monitor must be a metric name such as 'val_loss', got {monitor!r}")
    return monitor


class EarlyStopping(pl_callbacks.EarlyStopping):
    """Stop training when ``monitor`` has not improved for ``patience`` epochs (``keras.callbacks.EarlyStopping``).

    An epoch improves on the best value so far when it is lower by more than ``min_delta`` (``mode='min'``;
    higher by more than ``min_delta`` for ``'max'``); training stops at the end of the ``patience``-th epoch in
    a row without improvement.

    Args:
        monitor: History name of the quantity (``'val_loss'``, ``'val_accuracy'``, ``'loss'``...).
        min_delta: smallest change that counts as an improvement (>= 0).
        patience: epochs without improvement before stopping (>= 0; 0 stops at the first such epoch).
        verbose: log when stopping.
        mode: ``'auto'``, ``'min'`` or ``'max'``.
        baseline: a value the monitored quantity must improve on (the best value before the first epoch).
        restore_best_weights: at the end of the fit, put back the weights of the best epoch (the last epoch
            whose value improved); without any improving epoch the weights stay as they are.
        **lightning_kwargs: further ``lightning.pytorch.callbacks.EarlyStopping`` options (``check_finite``,
            ``stopping_threshold``, ``divergence_threshold``...).
    """

    def __init__(self, monitor: str = "val_loss", min_delta: float = 0.0, patience: int = 0, verbose: bool = False,
                 mode: str = "auto", baseline: Optional[float] = None, restore_best_weights: bool = False,
                 **lightning_kwargs: Any) -> None:
        monitor = _check_monitor("EarlyStopping", monitor)
        if isinstance(patience, bool) or not isinstance(patience, int) or patience < 0:
            raise ValueError(f"EarlyStopping: patience must be an int >= 0, got {patience!r}")
        if isinstance(min_delta, bool) or not isinstance(min_delta, (int, float)) or not min_delta >= 0:
            raise ValueError(f"EarlyStopping: min_delta must be a number >= 0, got {min_delta!r}")
        if baseline is not None and (isinstance(baseline, bool) or not isinstance(baseline, (int, float))):
            raise ValueError(f"EarlyStopping: baseline must be None or a number, got {baseline!r}")
        super().__init__(monitor=logged_name(monitor), min_delta=float(min_delta), patience=patience,
                         verbose=verbose, mode=resolve_mode("EarlyStopping", monitor, mode), **lightning_kwargs)
        self.baseline = baseline
        if baseline is not None:
            self.best_score = torch.tensor(float(baseline))
        self.restore_best_weights = bool(restore_best_weights)
        self.best_weights: Optional[dict[str, torch.Tensor]] = None
        self.best_epoch: Optional[int] = None
        self._snapshot_score: Optional[float] = None

    def _snapshot_if_improved(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        best = float(self.best_score)
        baseline = None if self.baseline is None else float(self.baseline)
        if best == self._snapshot_score or best == baseline or not torch.isfinite(self.best_score):
            return  # no new best: Lightning replaces best_score only on an improvement
        self._snapshot_score = best
        self.best_epoch = trainer.current_epoch
        if self.restore_best_weights:
            self.best_weights = {k: v.detach().clone() for k, v in pl_module.state_dict().items()}

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        super().on_train_epoch_end(trainer, pl_module)
        self._snapshot_if_improved(trainer, pl_module)

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        super().on_validation_end(trainer, pl_module)
        if not trainer.sanity_checking:
            self._snapshot_if_improved(trainer, pl_module)

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self.restore_best_weights and self.best_weights is not None:
            pl_module.load_state_dict(self.best_weights)
            if self.verbose:
                pl.utilities.rank_zero_info(f"EarlyStopping: restored the weights of epoch {self.best_epoch} "
                                            f"({self.monitor}={self._snapshot_score:.6g})")


class ModelCheckpoint(pl_callbacks.ModelCheckpoint):
    """Save a Lightning checkpoint at the end of every epoch, or only of improving ones
    (``keras.callbacks.ModelCheckpoint``).

    Args:
        filepath: where to write, ending in ``.ckpt``; may hold Keras placeholders: ``{epoch}`` (from 1, like
            Keras), ``{loss}``, ``{val_loss}``, ``{val_accuracy:.3f}``...  A path without placeholders is
            overwritten by each save.  Resume from it with ``fit(..., resume=filepath)``.
        monitor: History name of the quantity that decides the best epoch (used with ``save_best_only``).
        verbose: log each save.
        save_best_only: save only when ``monitor`` improves on every earlier epoch (else: every epoch).
        save_weights_only: write the weights only (no optimizer and loop state: not resumable).
        mode: ``'auto'``, ``'min'`` or ``'max'``.
        save_freq: ``'epoch'`` (Keras' default) or a number of optimizer steps between saves.
    """

    FILE_EXTENSION = ".ckpt"

    def __init__(self, filepath: str | os.PathLike, monitor: str = "val_loss", verbose: bool = False,
                 save_best_only: bool = False, save_weights_only: bool = False, mode: str = "auto",
                 save_freq: Any = "epoch") -> None:
        path = os.fspath(filepath)
        if not path.endswith(self.FILE_EXTENSION):
            raise ValueError(f"ModelCheckpoint: filepath must end in '.ckpt' (a Lightning checkpoint, resumable "
                             f"with fit(resume=...)), got {path!r}")
        monitor = _check_monitor("ModelCheckpoint", monitor)
        every_n_train_steps = None
        if save_freq != "epoch":
            if isinstance(save_freq, bool) or not isinstance(save_freq, int) or save_freq < 1:
                raise ValueError(f"ModelCheckpoint: save_freq must be 'epoch' or a positive number of steps, "
                                 f"got {save_freq!r}")
            every_n_train_steps = save_freq
        direction = resolve_mode("ModelCheckpoint", monitor, mode) if save_best_only else "min"
        dirpath, filename = os.path.split(path)
        super().__init__(dirpath=dirpath or ".", filename=filename[: -len(self.FILE_EXTENSION)],
                         monitor=logged_name(monitor) if save_best_only else None, verbose=verbose,
                         save_top_k=1 if save_best_only else -1, save_weights_only=save_weights_only,
                         mode=direction, auto_insert_metric_name=False, every_n_train_steps=every_n_train_steps,
                         enable_version_counter=False)
        self.filepath, self.save_best_only = path, bool(save_best_only)

    def format_checkpoint_name(self, metrics: dict[str, torch.Tensor], filename: Optional[str] = None,
                               ver: Optional[int] = None, prefix: Optional[str] = None) -> str:
        """Lightning's name, with the placeholders of Keras: History names and the epoch counted from 1."""
        named = dict(metrics)
        for name, value in metrics.items():
            key = history_key(name)
            if key is not None and key not in named:
                named[key] = value
        if "epoch" in named:
            named["epoch"] = named["epoch"] + 1
        return super().format_checkpoint_name(named, filename=filename, ver=ver, prefix=prefix)


class LearningRateMonitor(pl_callbacks.LearningRateMonitor):
    """Log the learning rate of every optimizer parameter group to the fit's logger (TensorBoard:
    ``lr-<Optimizer>``), once per epoch by default (``logging_interval='step'``: every step).
    ``history.history['lr']`` already holds the first group's rate of each epoch."""

    def __init__(self, logging_interval: Optional[str] = "epoch", log_momentum: bool = False,
                 log_weight_decay: bool = False) -> None:
        super().__init__(logging_interval=logging_interval, log_momentum=log_momentum,
                         log_weight_decay=log_weight_decay)
