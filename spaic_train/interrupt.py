"""Ctrl-C during ``python train.py``: stop at the end of the current batch, save where training stands, and say
which command continues it exactly.

:class:`GracefulInterrupt` (a Lightning callback that :func:`spaic_train.recipe.run` adds) catches the first
SIGINT of a single-process fit: the batch in progress completes, the checkpoint ``<run dir>/checkpoints/last.ckpt``
is written as of that batch (the same state a mid-epoch checkpoint holds: weights, optimizer, data position, RNG
states, partial epoch metrics), and :class:`TrainingInterrupted` ends the fit.  ``trainer.resume=last`` in that run
directory then continues bit-exactly as the uninterrupted run would have.  A second Ctrl-C stops at once
(Lightning's handling; resuming then starts from the last checkpoint written before).  Under several processes
SIGINT keeps Lightning's handling (the processes would not stop at the same batch).
"""

from __future__ import annotations

import signal
import threading
from pathlib import Path
from typing import Any, Optional

import lightning.pytorch as pl

__all__ = ["GracefulInterrupt", "TrainingInterrupted"]


class TrainingInterrupted(Exception):
    """The fit stopped on Ctrl-C.

    Attributes:
        checkpoint: the checkpoint to resume from (``None``: none was written).
        exact: the checkpoint holds the state at the interruption (else: the last one written before).
        where: ``"epoch 3, batch 7"``.
    """

    def __init__(self, checkpoint: Optional[Path], exact: bool, where: str):
        super().__init__(f"interrupted at {where}")
        self.checkpoint, self.exact, self.where = checkpoint, exact, where


class GracefulInterrupt(pl.Callback):
    """First Ctrl-C → finish the batch, write ``checkpoint``, raise :class:`TrainingInterrupted`.

    Args:
        checkpoint: where the state at the interruption is written (``<run dir>/checkpoints/last.ckpt``, the file
            ``trainer.resume=last`` reads).
    """

    def __init__(self, checkpoint: str | Path):
        self.checkpoint = Path(checkpoint)
        self.requested = False  # a first Ctrl-C arrived
        self.hard: Optional[str] = None  # where a KeyboardInterrupt reached Lightning (second Ctrl-C)
        self._previous: Any = None

    def _on_sigint(self, signum: int, frame: Any) -> None:
        self.requested = True
        signal.signal(signal.SIGINT, signal.default_int_handler)  # the next Ctrl-C interrupts at once

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.world_size == 1 and threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGINT, self._on_sigint)

    def _restore(self) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)
            self._previous = None

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        if not self.requested:
            return
        self._restore()
        trainer.save_checkpoint(self.checkpoint)
        raise TrainingInterrupted(self.checkpoint, True, f"epoch {trainer.current_epoch + 1}, batch {batch_idx + 1}")

    def on_exception(self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException) -> None:
        self._restore()
        if isinstance(exception, KeyboardInterrupt):
            self.hard = f"epoch {trainer.current_epoch + 1}"

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._restore()

    def hard_stop(self) -> TrainingInterrupted:
        """What a KeyboardInterrupt that Lightning handled left to resume from: the last checkpoint written."""
        return TrainingInterrupted(self.checkpoint if self.checkpoint.exists() else None, False, self.hard or "?")
