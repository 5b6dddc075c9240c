"""scikit-learn's bundled 8×8 handwritten digits (1797 images, 10 classes) — no download needed."""

from __future__ import annotations

import numpy as np

from .base import DATASETS, ImageTensorDataset, SpikeDataModule, split_indices


@DATASETS.register("digits", "sklearn_digits")
class DigitsDataModule(SpikeDataModule):
    """The sklearn ``load_digits`` set as ``[1, 8, 8]`` float images in ``[0, 1]`` (pixel / 16).

    Split (seeded by ``seed``, stratified by class): first ``test_fraction`` of all samples goes to test,
    then ``val_fraction`` *of all samples* goes to validation from the rest.  The defaults 0.2 / 0.2 give
    a 60/20/20 split: 1077 train, 360 val, 360 test images.

    Args:
        root: unused (the data ships with scikit-learn); accepted so every dataset shares the key.
        batch_size, num_workers, seed, pin_memory, drop_last: see :class:`SpikeDataModule`.
        val_fraction: fraction of all samples used for validation (default 0.2).
        test_fraction: fraction of all samples used for test (default 0.2).
        normalize: if True, standardize with the train-set mean/std instead of returning ``[0, 1]`` pixels.
        download: unused (always available offline).

    Batches: ``x`` ``[B, 1, 8, 8]`` float32, ``y`` ``[B]`` int64.
    """

    loader_workers_help = False  # small in-memory tensors: data.num_workers=auto gives 0

    input_shape = (1, 8, 8)
    num_classes = 10

    def __init__(
        self,
        root: str | None = None,
        batch_size: int = 64,
        num_workers: int | str = "auto",
        val_fraction: float = 0.2,
        test_fraction: float = 0.2,
        seed: int = 0,
        normalize: bool = False,
        download: bool = False,
        pin_memory: bool | str = "auto",
        drop_last: bool = False,
    ):
        super().__init__(batch_size, num_workers, seed, pin_memory, drop_last)
        if not (0 < test_fraction < 1 and 0 <= val_fraction < 1 and val_fraction + test_fraction < 1):
            raise ValueError(
                f"data.val_fraction + data.test_fraction must be < 1, got {val_fraction} + {test_fraction}"
            )
        self.root = root
        self.val_fraction = float(val_fraction)
        self.test_fraction = float(test_fraction)
        self.normalize = bool(normalize)
        self.save_hyperparameters()

    def split_indices(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Return the seeded ``(train_idx, val_idx, test_idx)`` into the 1797 sklearn samples."""
        from sklearn.datasets import load_digits

        y = load_digits().target
        n = len(y)
        rest, test = split_indices(n, self.test_fraction, self.seed, labels=y)
        rel_val = self.val_fraction / (1.0 - self.test_fraction)
        tr, va = split_indices(len(rest), rel_val, self.seed, labels=y[rest])
        return rest[tr], rest[va], test

    def _build(self) -> None:
        from sklearn.datasets import load_digits

        d = load_digits()
        images = d.images.astype(np.float32)[:, None]  # [N, 1, 8, 8], values 0..16
        labels = d.target.astype(np.int64)
        tr, va, te = self.split_indices()
        mean = std = None
        if self.normalize:
            m = float(images[tr].mean() / 16.0)
            s = float(images[tr].std() / 16.0)
            mean, std = [m], [s]

        def make(idx: np.ndarray) -> ImageTensorDataset | None:
            if len(idx) == 0:
                return None
            return ImageTensorDataset(images[idx], labels[idx], scale=16.0, mean=mean, std=std)

        self.train_set, self.val_set, self.test_set = make(tr), make(va), make(te)
