"""Keras-like training history, collected by a Lightning callback."""

from __future__ import annotations

import json
import math
import os
import time
from typing import Any, Optional

import lightning.pytorch as pl
import torch

__all__ = ["History", "epoch_metrics", "history_key"]


def history_key(name: str) -> Optional[str]:
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
    """``trainer.callback_metrics`` under their History keys (see :func:`history_key`), one float each."""
    metrics: dict[str, float] = {}
    for name, value in trainer.callback_metrics.items():
        key = history_key(name)
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
        epoch_time: wall seconds of each recorded epoch (its training and validation, measured by this process;
            kept apart from ``history`` because it is neither a metric nor the same on every process or rerun).
        params: fit parameters (``epochs``, ``batch_size``, ``steps``...), filled by ``fit``.
        model: the trained :class:`~spaic_train.training.SNNModule`, set by ``fit``.
        trainer: the ``lightning.Trainer`` of the fit (optimizer state, checkpoint paths...), set by ``fit``.
    """

    def __init__(self) -> None:
        super().__init__()
        self.history: dict[str, list[float]] = {}
        self.epoch: list[int] = []
        self.epoch_time: list[float] = []
        self.params: dict[str, Any] = {}
        self.model: Any = None
        self.trainer: Any = None
        self._export_path: Optional[str] = None
        self._epoch_start: Optional[float] = None

    # --- recording -------------------------------------------------------------------------------------
    def record(self, epoch: int, metrics: dict[str, float], seconds: float = math.nan) -> None:
        """Append the values of one epoch (keys are History keys) and its duration in seconds."""
        n = len(self.epoch)
        for key in metrics:
            if key not in self.history:
                self.history[key] = [math.nan] * n
        for key, values in self.history.items():
            values.append(float(metrics.get(key, math.nan)))
        self.epoch.append(int(epoch))
        self.epoch_time.append(float(seconds))

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._epoch_start = time.perf_counter()

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.sanity_checking:
            return
        start, self._epoch_start = self._epoch_start, None
        self.record(trainer.current_epoch, epoch_metrics(trainer),
                    math.nan if start is None else time.perf_counter() - start)

    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self._export_path is not None and trainer.is_global_zero:
            with open(self._export_path, "w") as fh:
                json.dump(self.state_dict(), fh)

    # --- transfer from a spawned rank 0 -----------------------------------------------------------------
    def _import(self) -> None:
        path = self._export_path
        if path is None or not os.path.exists(path):
            return
        with open(path) as fh:
            data = json.load(fh)
        if len(data["epoch"]) > len(self.epoch):
            self.load_state_dict(data)

    # --- conveniences -----------------------------------------------------------------------------------
    def last(self, key: str) -> float:
        """The last recorded value of ``key``."""
        return self.history[key][-1]

    def to_dataframe(self) -> Any:
        """The history as a ``pandas.DataFrame``: one row per epoch (index ``epoch``), one column per key of
        ``history`` (what Keras users write as ``pd.DataFrame(history.history)``) plus ``epoch_time``.

        Raises:
            ImportError: pandas is not installed (``pip install pandas``, or the ``plot`` extra).
        """
        try:
            import pandas as pd
        except ImportError:
            raise ImportError("History.to_dataframe needs pandas: pip install pandas "
                              "(or pip install 'spaic_train[plot]')") from None
        columns = {**self.history, "epoch_time": self.epoch_time}
        return pd.DataFrame(columns, index=pd.Index(self.epoch, name="epoch"))

    def plot(self, keys: Optional[list[str]] = None) -> Any:
        """Plot the history against the epoch: one panel per key (``loss``, ``accuracy``, ``lr``...), each with
        its ``val_`` counterpart when recorded.  Returns the ``matplotlib`` figure (``fig.savefig(...)``).

        Args:
            keys: the panels, by key without ``val_`` (default: every recorded key, in recording order).

        Raises:
            ImportError: matplotlib is not installed (``pip install matplotlib``, or the ``plot`` extra).
            ValueError: nothing recorded yet, or a key that was not recorded.
        """
        try:
            import matplotlib.pyplot as plt
        except ImportError:
            raise ImportError("History.plot needs matplotlib: pip install matplotlib "
                              "(or pip install 'spaic_train[plot]')") from None
        if not self.epoch:
            raise ValueError("History.plot: no epoch recorded yet")
        if keys is None:
            keys = list(dict.fromkeys(k[len("val_"):] if k.startswith("val_") else k for k in self.history))
        missing = [k for k in keys if k not in self.history and f"val_{k}" not in self.history]
        if missing:
            raise ValueError(f"History.plot: no recorded key {missing[0]!r}; recorded: {sorted(self.history)}")
        fig, axes = plt.subplots(len(keys), 1, sharex=True, squeeze=False, figsize=(6.4, 2.4 * len(keys) + 0.6))
        for ax, key in zip(axes[:, 0], keys):
            for name in (key, f"val_{key}"):
                if name in self.history:
                    ax.plot(self.epoch, self.history[name], marker="o", label=name)
            ax.set_ylabel(key)
            ax.legend()
        axes[-1, 0].set_xlabel("epoch")
        fig.tight_layout()
        return fig

    def state_dict(self) -> dict[str, Any]:
        return {"history": self.history, "epoch": self.epoch, "epoch_time": self.epoch_time}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.history = {k: [float(v) for v in vals] for k, vals in state_dict.get("history", {}).items()}
        self.epoch = list(state_dict.get("epoch", []))
        # checkpoints written before epoch times were recorded: unknown durations
        times = list(state_dict.get("epoch_time", []))
        self.epoch_time = [float(t) for t in times] + [math.nan] * (len(self.epoch) - len(times))

    def __repr__(self) -> str:
        return f"History(epochs={len(self.epoch)}, keys={sorted(self.history)})"
