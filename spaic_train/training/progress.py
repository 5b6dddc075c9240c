"""Keras-like console of ``fit`` / ``evaluate`` / ``predict``: one line per epoch, no Lightning chatter.

:class:`EpochProgress` replaces Lightning's tqdm bar.  Each training epoch ends with one line logged to the
``spaic_train`` logger (so it also reaches ``train.log`` under ``python train.py``)::

    Epoch 3/10 - 17 batches - 0.4 s - loss: 0.5213 - accuracy: 0.8600 - val_loss: 0.4512 - val_accuracy: 0.8800

On a terminal a live bar of the current batches is redrawn in place (carriage return) and erased before that
line; when stdout is not a terminal (a file, a pipe, CI logs) nothing but the epoch lines is written.

:func:`quiet_lightning` drops what Lightning repeats on every ``Trainer`` — device availability, the litlogger
tip, "``Trainer.fit`` stopped", deprecation warnings of its own internals — while ``fit`` / ``evaluate`` /
``predict`` run.
"""

from __future__ import annotations

import logging
import re
import sys
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import lightning.pytorch as pl
from lightning.pytorch.callbacks import ProgressBar

from ..console import LOG
from .history import epoch_metrics

__all__ = ["EpochProgress", "quiet_lightning"]

#: warnings that are noise for small Keras-style fits (message regexes)
_NOISY_WARNINGS = (
    r".*does not have many workers.*",
    r".*The number of training batches .* is smaller than the logging interval.*",
    r".*You defined a `validation_step` but have no `val_dataloader`.*",
    r".*Total length of .* across ranks is zero.*",
    r".*The `srun` command is available.*",
    r".*GPU available but not used.*",
    r".*Checkpoint directory .* exists and is not empty.*",
    r".*`training_step` returned `None`.*",
    r".*isinstance\(treespec, LeafSpec\)` is deprecated.*",  # torch >= 2.10 on Lightning's own pytree helper
)

#: Lightning info lines printed by every Trainer (message regexes)
_NOISY_LOG_LINES = re.compile(
    r"(GPU|TPU|HPU|IPU) available:|💡 Tip:|`Trainer\.(fit|validate|test|predict)` stopped:|LOCAL_RANK: \d+ - "
)


class _DropNoise(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not _NOISY_LOG_LINES.search(record.getMessage())


_DROP_NOISE = _DropNoise()


@contextmanager
def quiet_lightning(*extra_warnings: str) -> Iterator[None]:
    """While active: Lightning's per-Trainer info lines and the warnings of :data:`_NOISY_WARNINGS` (and of the
    ``extra_warnings`` message regexes) are dropped."""
    import lightning_utilities.core.rank_zero as rank_zero

    logger = rank_zero.log  # the logger Lightning's rank_zero_info writes to
    logger.addFilter(_DROP_NOISE)
    try:
        with warnings.catch_warnings():
            for pattern in (*_NOISY_WARNINGS, *extra_warnings):
                warnings.filterwarnings("ignore", message=pattern)
            yield
    finally:
        logger.removeFilter(_DROP_NOISE)


def _fmt(key: str, value: float) -> str:
    return f"{key}: {value:.3g}" if key == "lr" else f"{key}: {value:.4f}"


def _keras_order(key: str) -> tuple[int, str]:
    """``loss``, training metrics, ``val_loss``, validation metrics, ``lr``."""
    group = {"loss": 0, "val_loss": 2, "lr": 4}.get(key, 3 if key.startswith("val_") else 1)
    return group, key


class EpochProgress(ProgressBar):
    """Lightning progress bar callback with a Keras-like console (see the module docstring).

    Args:
        live: draw the live bar when stdout is a terminal (``False``: the epoch lines only).
        refresh_s: minimum seconds between two redraws of the live bar.
        width: characters of the live bar's ``[====>...]`` part.
    """

    def __init__(self, live: bool = True, refresh_s: float = 0.1, width: int = 24) -> None:
        super().__init__()
        self.live = bool(live)
        self.refresh_s = float(refresh_s)
        self.width = int(width)
        self._enabled = True
        self._drawn = False
        self._last_draw = 0.0
        self._epoch_start = 0.0

    # -- ProgressBar API ------------------------------------------------------------------------------
    def disable(self) -> None:
        self._enabled = False

    def enable(self) -> None:
        self._enabled = True

    def print(self, *args: Any, **kwargs: Any) -> None:
        self._erase()
        print(*args, **kwargs)

    # -- live bar (terminals only) ----------------------------------------------------------------------
    def _live(self) -> bool:
        isatty = getattr(sys.stdout, "isatty", None)
        return self.live and self._enabled and callable(isatty) and isatty()

    def _due(self, done: int, total: Any) -> bool:
        """Whether the live bar is drawn now: on a terminal, at most every ``refresh_s`` (and at the end)."""
        return self._live() and (time.perf_counter() - self._last_draw >= self.refresh_s or done == total)

    def _draw(self, label: str, done: int, total: Any, suffix: str = "") -> None:
        if not self._due(done, total):
            return
        self._last_draw = time.perf_counter()
        if isinstance(total, int) and total > 0:
            filled = min(self.width, self.width * done // total)
            bar = "=" * filled + (">" if filled < self.width else "") + "." * (self.width - filled - 1)
            text = f"{label} {done}/{total} [{bar[:self.width]}]"
        else:
            text = f"{label} {done}"
        sys.stdout.write(f"\r{text}{suffix}\033[K")
        sys.stdout.flush()
        self._drawn = True

    def _erase(self) -> None:
        if self._drawn:
            sys.stdout.write("\r\033[K")
            sys.stdout.flush()
            self._drawn = False

    def _epoch_label(self, trainer: pl.Trainer) -> str:
        return f"Epoch {trainer.current_epoch + 1}/{trainer.max_epochs}"

    # -- hooks ----------------------------------------------------------------------------------------
    def on_sanity_check_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._draw("Sanity check", 0, None)

    def on_sanity_check_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._erase()

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._epoch_start = time.perf_counter()

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        if not self._due(batch_idx + 1, self.total_train_batches):
            return
        loss = trainer.progress_bar_metrics.get("train_loss_step")
        suffix = "" if loss is None else f" - loss: {float(loss):.4f}"
        self._draw(self._epoch_label(trainer), batch_idx + 1, self.total_train_batches, suffix)

    def on_validation_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any,
                                batch_idx: int, dataloader_idx: int = 0) -> None:
        if trainer.sanity_checking:
            self._draw("Sanity check", batch_idx + 1, trainer.num_sanity_val_batches[dataloader_idx])
        else:
            self._draw(f"{self._epoch_label(trainer)} - validation", batch_idx + 1,
                       trainer.num_val_batches[dataloader_idx])

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._erase()
        if not self._enabled:
            return
        parts = [self._epoch_label(trainer), f"{trainer.num_training_batches} batches",
                 f"{time.perf_counter() - self._epoch_start:.1f} s"]
        metrics = epoch_metrics(trainer)
        parts += [_fmt(k, metrics[k]) for k in sorted(metrics, key=_keras_order)]
        LOG.info(" - ".join(parts))

    def on_test_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any,
                          batch_idx: int, dataloader_idx: int = 0) -> None:
        self._draw("Test", batch_idx + 1, trainer.num_test_batches[dataloader_idx])

    def on_predict_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any,
                             batch_idx: int, dataloader_idx: int = 0) -> None:
        self._draw("Predict", batch_idx + 1, trainer.num_predict_batches[dataloader_idx])

    def teardown(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        self._erase()
