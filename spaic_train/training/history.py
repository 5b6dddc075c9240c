"""Keras-like training history, collected by a Lightning callback."""

from __future__ import annotations

import json
import math
import os
from typing import Any, Optional

import lightning.pytorch as pl
import torch

__all__ = ["History"]


def _history_key(name: str) -> Optional[str]:
    """Map a logged metric name to its History key (``None``: not recorded).

    ``train_<m>`` → ``<m>`` (``train_loss`` → ``loss``), ``val_<m>`` stays, step-level forks (``*_step``) and
    test metrics are dropped, epoch-level forks (``*_epoch``) lose their suffix.
    """
    if name.endswith("_step") or name.startswith("test_"):
        return None
    if name.endswith("_epoch"):
        name = name[: -len("_epoch")]
    if name.startswith("train_"):
        name = name[len("train_"):]
    return name


def epoch_metrics(trainer: pl.Trainer) -> dict[str, float]:
    """``trainer.callback_metrics`` under their History keys (see :func:`_history_key`), one float each."""
    metrics: dict[str, float] = {}
    for name, value in trainer.callback_metrics.items():
        key = _history_key(name)
        if key is None:
            continue
        if isinstance(value, torch.Tensor):
            if value.numel() != 1:
                continue
            value = value.item()
        # an unsuffixed name wins over its ``_epoch`` fork
        if key in metrics and name.endswith("_epoch"):
            continue
        metrics[key] = float(value)
    return metrics


class History(pl.Callback):
    """Per-epoch metrics of a fit, like ``keras.callbacks.History``.

    At the end of every training epoch (after that epoch's validation) it reads ``trainer.callback_metrics``
    and appends one float per key: ``loss``, ``<metric>`` (from ``train_<metric>``), ``val_loss``,
    ``val_<metric>``, ``lr`` and anything else logged at epoch level.  Every list has exactly one entry per
    recorded epoch (``NaN`` where a key was not logged that epoch, e.g. validation every other epoch).
    The sanity-check validation is not recorded.

    Values synchronised across processes (all of :class:`~spaic_train.training.SNNModule`'s) are identical on
    every DDP process, so each process records the same history.  Under spawn-based strategies
    (``ddp_spawn``, ``ddp_notebook``) the callback runs in child processes; ``fit`` gives it an export path so
    that rank 0 writes its history to a JSON file at the end of the fit and the parent process reads it back.

    Attributes:
        history: ``dict[str, list[float]]``.
        epoch: epoch indices (0-based; a resumed fit continues the numbering).
        params: fit parameters (``epochs``, ``batch_size``, ``steps``...), filled by ``fit``.
        model: the trained :class:`~spaic_train.training.SNNModule`, set by ``fit``.
        trainer: the ``lightning.Trainer`` of the fit (optimizer state, checkpoint paths...), set by ``fit``.
    """

    def __init__(self) -> None:
        super().__init__()
        self.history: dict[str, list[float]] = {}
        self.epoch: list[int] = []
        self.params: dict[str, Any] = {}
        self.model: Any = None
        self.trainer: Any = None
        self._export_path: Optional[str] = None

    # --- recording -------------------------------------------------------------------------------------
    def record(self, epoch: int, metrics: dict[str, float]) -> None:
        """Append the values of one epoch (keys are History keys)."""
        n = len(self.epoch)
        for key in metrics:
            if key not in self.history:
                self.history[key] = [math.nan] * n
        for key, values in self.history.items():
            values.append(float(metrics.get(key, math.nan)))
        self.epoch.append(int(epoch))

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.sanity_checking:
            return
        self.record(trainer.current_epoch, epoch_metrics(trainer))

    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self._export_path is not None and trainer.is_global_zero:
            with open(self._export_path, "w") as fh:
                json.dump({"history": self.history, "epoch": self.epoch}, fh)

    # --- transfer from a spawned rank 0 -----------------------------------------------------------------
    def _import(self) -> None:
        path = self._export_path
        if path is None or not os.path.exists(path):
            return
        with open(path) as fh:
            data = json.load(fh)
        if len(data["epoch"]) > len(self.epoch):
            self.history = {k: [float(v) for v in vals] for k, vals in data["history"].items()}
            self.epoch = list(data["epoch"])

    # --- conveniences -----------------------------------------------------------------------------------
    def last(self, key: str) -> float:
        """The last recorded value of ``key``."""
        return self.history[key][-1]

    def state_dict(self) -> dict[str, Any]:
        return {"history": self.history, "epoch": self.epoch}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.history = {k: list(v) for k, v in state_dict.get("history", {}).items()}
        self.epoch = list(state_dict.get("epoch", []))

    def __repr__(self) -> str:
        return f"History(epochs={len(self.epoch)}, keys={sorted(self.history)})"
