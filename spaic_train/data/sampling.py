"""What a resumable sampler offers: ``set_epoch`` (the order is a function of the epoch) and ``skip`` (drop the
start of the next iteration, the samples already trained on before a mid-epoch checkpoint).

Shared by the datamodules' training shuffle (:class:`~spaic_train.data.base.EpochShuffleSampler`) and the
sampler of array / Dataset fits (:class:`~spaic_train.training.resume.ResumableRandomSampler`).
"""

from __future__ import annotations

__all__ = ["EpochSkipping"]


class EpochSkipping:
    """``set_epoch`` and ``skip`` of a :class:`SkippableSampler`: ``__iter__`` takes the pending skip with
    :meth:`_take_skip` (so it applies to one iteration only)."""

    epoch: int = 0
    _skip: int = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def skip(self, n: int) -> None:
        """Drop the first ``n`` samples of the next iteration only."""
        self._skip = max(0, int(n))

    def _take_skip(self) -> int:
        skip, self._skip = self._skip, 0
        return skip
