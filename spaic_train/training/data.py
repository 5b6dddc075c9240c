"""Input conversion for :func:`~spaic_train.training.fit` / ``evaluate`` / ``predict``.

Accepted inputs ``x`` (with labels ``y`` where noted):

* arrays: ``torch.Tensor`` / ``numpy.ndarray`` / nested lists ``x`` ``[N, ...]`` with labels ``y`` ``[N]``
  (class indices) or ``[N, C]`` (float targets).  ``x`` becomes ``float32`` (float64 and integer/bool inputs
  are converted); integer/bool ``y`` becomes ``int64``, float ``[N, C]`` ``y`` ``float32``.  Float ``[N]``
  labels holding whole numbers (``y.float()``) become ``int64``; other float ``[N]`` labels are an error
  (:func:`class_index_labels`), raised when the data is prepared, batch labels of Datasets / DataLoaders
  on their first batch.
* a :class:`torch.utils.data.Dataset` whose items are ``(x, y)`` pairs (``y`` must then be ``None``);
* a :class:`torch.utils.data.DataLoader` (used as is: ``batch_size``/``shuffle``/``num_workers`` are ignored);
* a :class:`lightning.LightningDataModule` (its own loaders and split are used).

Batches are ``(x, y)`` sequences (first two items), a bare tensor ``x`` (prediction), or dicts with keys
``x``/``input``/``inputs`` and ``y``/``target``/``label``/``labels`` (see :func:`unpack_batch`).

Validation: ``validation_data`` is ``(x_val, y_val)``, a Dataset or a DataLoader.  ``validation_split=f``
holds out the **last** ``N - int(N·(1-f))`` samples *before any shuffling*, exactly like Keras (deterministic:
no seed involved; shuffle the arrays first if they are sorted by class).  :func:`split_validation` also offers a
seeded random split (``mode='random'``).  When both are given ``validation_data`` wins (Keras behaviour) and a
warning is issued.

Shuffling (``shuffle=True``, training loader only) draws from a ``torch.Generator`` seeded with ``seed`` when
given, else from torch's global RNG (itself seeded by ``lightning.seed_everything``).  Under DDP, Lightning
replaces the sampler by a ``DistributedSampler`` (same shuffle flag, seed ``PL_GLOBAL_SEED``), so every
process reads a different shard of each epoch.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Optional, Union

import lightning.pytorch as pl
import numpy as np
import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, IterableDataset, Subset, TensorDataset

from ..data.batches import class_index_labels, unpack_batch
from .resume import ResumableRandomSampler

__all__ = [
    "FitData",
    "as_input_tensor",
    "as_target_tensor",
    "check_finite",
    "class_index_labels",
    "to_tensor",
    "make_loader",
    "prepare_eval_data",
    "prepare_fit_data",
    "split_validation",
    "to_dataset",
    "unpack_batch",
]

DataLike = Union[Tensor, np.ndarray, Sequence, Dataset, DataLoader, pl.LightningDataModule]


def to_tensor(a: Any, what: str) -> Tensor:
    """Array-like → tensor of its own dtype (a tensor is detached); ``TypeError`` naming ``what`` for non-numbers."""
    if isinstance(a, Tensor):
        return a.detach()
    try:
        arr = np.asarray(a)
    except Exception as exc:  # pragma: no cover - odd inputs
        raise TypeError(f"{what}: cannot convert {type(a).__name__} to a tensor") from exc
    if arr.dtype == object:
        raise TypeError(f"{what}: cannot convert a ragged/object array to a tensor")
    if arr.dtype.kind not in "biuf":  # strings, dates, complex numbers
        example = f" (e.g. {arr.flat[0].tolist()!r})" if arr.size else ""
        raise TypeError(f"{what}: expected numbers, got an array of dtype {arr.dtype}{example}; class names must "
                        "become integer class indices first, e.g. names, y = np.unique(y, return_inverse=True)")
    return torch.from_numpy(np.ascontiguousarray(arr))


def as_input_tensor(x: Any, what: str = "x") -> Tensor:
    """Array-like ``[N, ...]`` → ``float32`` tensor (other floating dtypes such as bf16/fp16 are kept)."""
    t = to_tensor(x, what)
    if t.dtype == torch.float64 or not torch.is_floating_point(t):
        t = t.to(torch.float32)
    return t


def as_target_tensor(y: Any, what: str = "y") -> Tensor:
    """Array-like labels → ``int64`` (integer/bool) or ``float32`` (floating) tensor."""
    t = to_tensor(y, what)
    return t.to(torch.float32) if torch.is_floating_point(t) else t.to(torch.int64)


def check_finite(t: Tensor, what: str = "x") -> None:
    """Raise a ``ValueError`` if floating tensor ``t`` ``[N, ...]`` holds NaN or Inf (one vectorised pass)."""
    if not torch.is_floating_point(t) or t.numel() == 0:
        return
    bad = ~torch.isfinite(t)
    if bool(bad.any()):
        n_bad = int(bad.sum())
        per_sample = bad.reshape(bad.shape[0], -1).any(1) if t.dim() > 0 else bad
        first = int(per_sample.nonzero()[0, 0]) if t.dim() > 0 else 0
        kinds = "/".join(k for k, m in (("NaN", torch.isnan(t)), ("Inf", torch.isinf(t))) if bool(m.any()))
        raise ValueError(f"{what} contains {n_bad} non-finite value(s) ({kinds}), first in sample {first}; "
                         "clean or impute the data before fit (NaN inputs give NaN losses)")


def _len(ds: Any) -> Optional[int]:
    try:
        return len(ds)
    except TypeError:
        return None


def to_dataset(x: Any, y: Any = None, what: str = "x") -> Dataset:
    """Turn ``(x, y)`` arrays into a :class:`TensorDataset` (``y=None`` gives 1-tuples ``(x,)``), or pass a
    Dataset through.

    Raises:
        ValueError: ``x`` and ``y`` lengths differ, or ``y`` given with a Dataset.
    """
    if isinstance(x, Dataset):
        if y is not None:
            raise ValueError(f"{what} is a Dataset, whose items already hold the targets: pass y=None")
        return x
    xt = as_input_tensor(x, what)
    if xt.dim() == 0:
        raise ValueError(f"{what} must have a leading sample dimension, got a scalar")
    check_finite(xt, what)
    if y is None:
        return TensorDataset(xt)
    yt = as_target_tensor(class_index_labels(to_tensor(y, what.replace("x", "y")), what.replace("x", "y")))
    check_finite(yt, what.replace("x", "y"))
    if yt.dim() == 0 or yt.shape[0] != xt.shape[0]:
        raise ValueError(f"{what} has {xt.shape[0]} samples but its labels have shape {list(yt.shape)}")
    return TensorDataset(xt, yt)


def split_validation(dataset: Dataset, fraction: float, mode: str = "end", seed: int = 0) -> tuple[Subset, Subset]:
    """Split ``dataset`` into ``(train, val)`` subsets.

    Args:
        dataset: a map-style dataset of ``N`` samples.
        fraction: fraction in ``(0, 1)`` held out; ``N_val = N - int(N·(1 - fraction))`` (Keras' rounding).
        mode: ``'end'`` — the last ``N_val`` samples (Keras); ``'random'`` — a seeded random subset.
        seed: seed of the ``'random'`` split.

    Raises:
        ValueError: fraction outside ``(0, 1)``, an iterable dataset, or an empty train/validation part.
    """
    if not 0.0 < fraction < 1.0:
        raise ValueError(f"validation_split must be in [0, 1), got {fraction}")
    n = _len(dataset)
    if n is None or isinstance(dataset, IterableDataset):
        raise ValueError("validation_split needs a map-style dataset with a length; pass validation_data instead")
    n_train = int(n * (1.0 - fraction))
    if n_train == 0 or n_train == n:
        raise ValueError(f"validation_split={fraction} of {n} samples leaves {n_train} for training and "
                         f"{n - n_train} for validation; both must be non-empty")
    if mode == "end":
        idx = list(range(n))
    elif mode == "random":
        idx = torch.randperm(n, generator=torch.Generator().manual_seed(seed)).tolist()
    else:
        raise ValueError(f"split mode must be 'end' or 'random', got {mode!r}")
    return Subset(dataset, idx[:n_train]), Subset(dataset, idx[n_train:])


def make_loader(dataset: Dataset, batch_size: int = 32, shuffle: bool = False, num_workers: int = 0,
                seed: Optional[int] = None, **kwargs: Any) -> DataLoader:
    """A DataLoader over ``dataset``.

    Shuffling uses a :class:`~spaic_train.training.resume.ResumableRandomSampler`: the order of epoch ``e``
    depends only on ``(seed, e)`` (``seed=None``: a seed drawn from torch's global RNG), so a fit resumed from a
    mid-epoch checkpoint sees the same batches.  The loader's own generator (worker seeds) is seeded too.
    """
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
    if isinstance(num_workers, bool) or not isinstance(num_workers, int) or num_workers < 0:
        raise ValueError(f"num_workers must be an int >= 0, got {num_workers!r}")
    generator = torch.Generator().manual_seed(int(seed)) if (shuffle and seed is not None) else None
    if num_workers > 0:
        kwargs.setdefault("persistent_workers", True)
    if shuffle and _len(dataset) is not None and not isinstance(dataset, IterableDataset):
        sampler = ResumableRandomSampler(dataset, seed=seed)
        return DataLoader(dataset, batch_size=batch_size, sampler=sampler, num_workers=num_workers,
                          generator=generator, **kwargs)
    return DataLoader(dataset, batch_size=batch_size, shuffle=shuffle, num_workers=num_workers,
                      generator=generator, **kwargs)


def _check_nonempty(obj: Any, what: str) -> None:
    ds = obj.dataset if isinstance(obj, DataLoader) else obj
    n = _len(ds)
    if n == 0:
        raise ValueError(f"{what} is empty (0 samples)")
    if isinstance(obj, DataLoader) and _len(obj) == 0:
        raise ValueError(f"{what} yields no batch (drop_last with fewer samples than batch_size?)")


@dataclass
class FitData:
    """What ``fit`` hands to ``Trainer.fit``: either loaders or a datamodule."""

    train: Optional[DataLoader] = None
    val: Optional[DataLoader] = None
    datamodule: Optional[pl.LightningDataModule] = None

    @property
    def has_validation(self) -> bool:
        if self.datamodule is not None:
            return _overrides(self.datamodule, "val_dataloader")
        return self.val is not None


def _overrides(dm: pl.LightningDataModule, method: str) -> bool:
    return getattr(type(dm), method, None) is not getattr(pl.LightningDataModule, method, None)


def _as_loader(obj: Any, batch_size: int, num_workers: int, what: str) -> DataLoader:
    if isinstance(obj, DataLoader):
        loader = obj
    else:
        loader = make_loader(to_dataset(obj, what=what), batch_size, shuffle=False, num_workers=num_workers)
    _check_nonempty(loader, what)
    return loader


def prepare_fit_data(x: DataLike, y: Any = None, batch_size: int = 32, shuffle: bool = True,
                     validation_data: Any = None, validation_split: float = 0.0, num_workers: int = 0,
                     seed: Optional[int] = None) -> FitData:
    """Build the train/validation loaders of ``fit`` (see the module docstring for the accepted inputs).

    Raises:
        ValueError: empty data, mismatched lengths, a split of a DataLoader/DataModule, bad ``validation_data``.
    """
    if validation_split and validation_data is not None:
        warnings.warn("both validation_data and validation_split given: validation_data is used (as in Keras)",
                      stacklevel=3)
        validation_split = 0.0
    if isinstance(x, pl.LightningDataModule):
        if y is not None or validation_data is not None or validation_split:
            raise ValueError("with a LightningDataModule, y / validation_data / validation_split must not be given: "
                             "the datamodule provides its own targets and validation split")
        return FitData(datamodule=x)

    val_loader = None
    if validation_data is not None:
        if isinstance(validation_data, (DataLoader, Dataset)):
            val_loader = _as_loader(validation_data, batch_size, num_workers, "validation_data")
        elif isinstance(validation_data, (tuple, list)) and len(validation_data) == 2:
            val_loader = _as_loader(to_dataset(*validation_data, what="x_val"), batch_size, num_workers,
                                    "validation_data")
        else:
            raise ValueError("validation_data must be (x_val, y_val), a Dataset or a DataLoader, got "
                             f"{type(validation_data).__name__}"
                             + (f" of length {len(validation_data)}" if isinstance(validation_data, tuple) else ""))

    if isinstance(x, DataLoader):
        if y is not None:
            raise ValueError("x is a DataLoader, whose batches already hold the targets: pass y=None")
        if validation_split:
            raise ValueError("validation_split cannot split a DataLoader; pass validation_data or a Dataset")
        _check_nonempty(x, "training data")
        return FitData(train=x, val=val_loader)

    if y is None and not isinstance(x, Dataset):
        raise ValueError("fit needs targets: pass y (labels) with array inputs, or a Dataset/DataLoader of (x, y)")
    train_ds = to_dataset(x, y)
    _check_nonempty(train_ds, "training data")
    if validation_split:
        train_ds, val_ds = split_validation(train_ds, validation_split, mode="end")
        val_loader = make_loader(val_ds, batch_size, shuffle=False, num_workers=num_workers)
    train = make_loader(train_ds, batch_size, shuffle=shuffle, num_workers=num_workers, seed=seed)
    _check_nonempty(train, "training data")
    return FitData(train=train, val=val_loader)


def prepare_eval_data(x: DataLike, y: Any = None, batch_size: int = 32, num_workers: int = 0,
                      need_targets: bool = True) -> Union[DataLoader, pl.LightningDataModule]:
    """The (unshuffled) loader of ``evaluate`` (``need_targets=True``) or ``predict``; a datamodule passes
    through (its ``test_dataloader`` / ``predict_dataloader`` is used)."""
    if isinstance(x, pl.LightningDataModule):
        return x
    if isinstance(x, DataLoader):
        if y is not None:
            raise ValueError("x is a DataLoader: pass y=None")
        _check_nonempty(x, "data")
        return x
    if need_targets and y is None and not isinstance(x, Dataset):
        raise ValueError("evaluate needs targets: pass y, or a Dataset/DataLoader of (x, y)")
    return _as_loader(to_dataset(x, y), batch_size, num_workers, "data")
