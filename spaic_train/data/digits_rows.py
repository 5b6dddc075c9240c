"""scikit-learn's 8×8 digits presented row by row: a small sequence task where memory matters.

Sample ``i`` is the sequence of its 8 pixel rows, top to bottom, each row (8 values in ``[0, 1]``) held for
``steps_per_row`` steps: ``x`` ``[T, 8]`` with ``T = 8 · steps_per_row`` and
``x[t] = images[i][t // steps_per_row] / 16``.  A network sees one row per step, so it has to remember the
earlier rows to tell the digits apart: per-synapse delays and recurrent / top-down feedback give it that
memory, a plain feed-forward SNN only has its membrane leak.  Same seeded, stratified 60/20/20 split as
``digits`` (:meth:`DigitsDataModule.split_indices`).
"""

from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import Dataset

from .base import DATASETS
from .collate import time_first_collate
from .digits import DigitsDataModule


class RowSequenceDataset(Dataset):
    """Images ``[N, H, W]`` as row sequences: item ``i`` is ``(x [H · steps_per_row, W], y)``.

    Args:
        images: ``[N, H, W]`` pixel values (divided by ``scale``).
        labels: ``[N]`` class indices.
        steps_per_row: consecutive steps each row is held for.
        scale: pixel values are divided by this (16 for sklearn digits).
        mean, std: optional normalization after scaling: ``(x - mean) / std``.
    """

    def __init__(self, images: np.ndarray, labels: np.ndarray, steps_per_row: int = 1, scale: float = 16.0,
                 mean: float | None = None, std: float | None = None):
        x = torch.as_tensor(np.ascontiguousarray(images), dtype=torch.float32) / float(scale)
        if x.ndim != 3 or len(x) != len(labels):
            raise ValueError(f"expected images [N, H, W] and labels [N], got {tuple(x.shape)} and {len(labels)}")
        if mean is not None:
            x = x - float(mean)
        if std is not None:
            x = x / float(std)
        self.x = x.repeat_interleave(int(steps_per_row), dim=1)  # [N, H · steps_per_row, W]
        self.labels = torch.as_tensor(np.asarray(labels), dtype=torch.int64)

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.x[i], self.labels[i]


@DATASETS.register("digits_rows", "digits_sequence")
class DigitsRowsDataModule(DigitsDataModule):
    """The sklearn digits as row sequences (see the module docstring).

    ``input_shape`` is the per-step shape ``(8,)``; ``is_sequence`` is True and ``sequence_length`` is
    ``8 * steps_per_row``.  Batches: ``x`` ``[T, B, 8]`` float32 (time first, via
    :func:`~spaic_train.data.time_first_collate`) or ``[B, T, 8]`` with ``time_first=False``; ``y`` ``[B]``
    int64.  Split: exactly the ``digits`` split for the same ``seed`` / fractions (1077 / 360 / 360).

    Args:
        root, batch_size, num_workers, val_fraction, test_fraction, seed, normalize, download, pin_memory,
            drop_last: as :class:`DigitsDataModule`.
        steps_per_row: steps each row is presented for (default 1: ``T = 8``).
        time_first: collate batches as ``[T, B, 8]`` (default) instead of ``[B, T, 8]``.
    """

    input_shape = (8,)
    num_classes = 10
    is_sequence = True

    def __init__(
        self,
        root: str | None = None,
        batch_size: int = 64,
        num_workers: int | str = "auto",
        val_fraction: float = 0.2,
        test_fraction: float = 0.2,
        seed: int = 0,
        normalize: bool = False,
        steps_per_row: int = 1,
        time_first: bool = True,
        download: bool = False,
        pin_memory: bool | str = "auto",
        drop_last: bool = False,
    ):
        if isinstance(steps_per_row, bool) or int(steps_per_row) != steps_per_row or steps_per_row < 1:
            raise ValueError(f"data.steps_per_row must be an int >= 1, got {steps_per_row!r}")
        self.steps_per_row = int(steps_per_row)
        self.time_first = bool(time_first)
        super().__init__(root, batch_size, num_workers, val_fraction, test_fraction, seed, normalize, download,
                         pin_memory, drop_last)
        self.sequence_length = 8 * self.steps_per_row
        self.collate_fn = time_first_collate if self.time_first else None

    def _build(self) -> None:
        from sklearn.datasets import load_digits

        d = load_digits()
        images = d.images.astype(np.float32)  # [N, 8, 8], values 0..16
        labels = d.target.astype(np.int64)
        tr, va, te = self.split_indices()
        mean = std = None
        if self.normalize:
            mean, std = float(images[tr].mean() / 16.0), float(images[tr].std() / 16.0)

        def make(idx: np.ndarray) -> RowSequenceDataset | None:
            if len(idx) == 0:
                return None
            return RowSequenceDataset(images[idx], labels[idx], self.steps_per_row, 16.0, mean, std)

        self.train_set, self.val_set, self.test_set = make(tr), make(va), make(te)
