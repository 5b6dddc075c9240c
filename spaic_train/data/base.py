"""Dataset registry and the shared base of every spaic_train LightningDataModule.

Every datamodule registered in :data:`DATASETS` follows the same contract:

* constructor arguments map 1:1 to the Hydra ``data.*`` config keys (``root``, ``batch_size``,
  ``num_workers``, ``val_fraction``, ``seed``, ...), so ``build_datamodule(**cfg.data)`` works;
* ``input_shape`` -- shape of one input sample *without* the batch dimension (and, for event
  sequences, without the time dimension: it is the per-time-step shape, see ``sequence_length``);
* ``num_classes`` -- number of target classes; labels are ``int64`` class indices;
* ``is_sequence`` / ``sequence_length`` -- ``True``/``T`` when the data already carries a time axis
  (N-MNIST); ``False``/``None`` for static images that a model's encoder turns into spikes;
* ``train_dataloader`` / ``val_dataloader`` / ``test_dataloader`` -- usable with a Lightning
  ``Trainer`` or directly (they call :meth:`setup` on first use).

Determinism: ``seed`` fixes the train/val split, the shuffling order of the training loader
(:class:`EpochShuffleSampler`: each epoch's order is a function of ``(seed, epoch)``, so a resumed fit
continues with the order an uninterrupted one draws) and the fixed order of the validation and test sets, so two
datamodules built with the same arguments yield the same batches (random augmentations draw from the
torch RNG of the loading process / worker, whose seed the DataLoader derives from that generator).

Order: files are often stored class by class (CIFAR-10's JPEG tree, any ``ImageFolder``), so the
validation and test sets are put in a seeded random order once built (:func:`in_seeded_order`): any
prefix of their batches (``trainer.limit_val_batches`` / ``limit_test_batches``) is a fair sample of
the classes, not one class.  The training loader reshuffles every epoch.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Callable, Sequence
from typing import Any

import lightning.pytorch as pl
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Subset

from spaic_train.registry import Registry

from .sampling import EpochSkipping
from .workers import AUTO, LoaderOptions, TrainerContext, check_num_workers, check_pin_memory, resolve_loader_options

log = logging.getLogger(__name__)


class DataNotFoundError(FileNotFoundError):
    """A dataset's files are not where the configuration points (or could not be downloaded).

    Raised by a datamodule's ``prepare_data`` / ``setup`` (before any model is trained); the message names
    ``data.root``, the files or layouts looked for and how to point the datamodule at local copies.
    """


class MissingExtraError(ImportError):
    """A dataset needs a package of an optional extra that is not installed (``tonic`` of ``[events]``, ...).

    Raised by a datamodule's ``setup`` (before any model is trained); the message names the dataset, the package
    and the ``pip install`` of the extra.  ``python train.py`` prints it alone and exits with status 2.
    """


#: Registry of datamodule classes by name (``"digits"``, ``"mnist"``, ``"cifar10"``, ``"folder"``, ``"nmnist"``).
DATASETS: Registry = Registry("dataset")


def build_datamodule(name: str, **kwargs: Any) -> SpikeDataModule:
    """Build the datamodule registered as ``name`` with constructor arguments ``kwargs``.

    ``kwargs`` are the remaining ``data.*`` config keys.  An unknown key raises a ``TypeError`` that
    names the key as ``data.<key>`` and lists the accepted ones.

    Example:
        >>> dm = build_datamodule("digits", batch_size=32)
        >>> dm.input_shape, dm.num_classes
        ((1, 8, 8), 10)
    """
    cls = DATASETS.get(name, owner="data.name")
    params = inspect.signature(cls.__init__).parameters
    if not any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        valid = [k for k in params if k != "self"]
        for key in kwargs:
            if key not in params:
                raise TypeError(
                    f"data.{key} is not an option of dataset {name!r} ({cls.__name__}); valid options are: "
                    f"{', '.join(valid)}"
                )
    return cls(**kwargs)


def split_indices(
    n: int,
    val_fraction: float,
    seed: int,
    labels: Sequence[int] | np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Seeded split of ``range(n)`` into ``(train_idx, val_idx)``.

    Args:
        n: number of samples.
        val_fraction: fraction in ``[0, 1)`` of samples that go to validation (rounded up, as sklearn does).
        seed: RNG seed; the same ``(n, val_fraction, seed, labels)`` always gives the same split.
        labels: optional class labels ``[n]``; when given (and every class has at least 2 samples) the
            split is stratified so class proportions are preserved.

    Returns:
        Two sorted ``int64`` index arrays.
    """
    if not 0.0 <= val_fraction < 1.0:
        raise ValueError(f"data.val_fraction must be in [0, 1), got {val_fraction}")
    idx = np.arange(n)
    if val_fraction == 0.0 or n < 2:
        return idx, np.zeros(0, dtype=np.int64)
    from sklearn.model_selection import train_test_split

    stratify = None
    if labels is not None:
        labels = np.asarray(labels)
        n_val = int(np.ceil(val_fraction * n))
        _, counts = np.unique(labels, return_counts=True)
        if counts.min() >= 2 and n_val >= len(counts) and n - n_val >= len(counts):
            stratify = labels
    tr, va = train_test_split(idx, test_size=val_fraction, random_state=seed, shuffle=True, stratify=stratify)
    return np.sort(tr).astype(np.int64), np.sort(va).astype(np.int64)


def in_seeded_order(ds: Dataset | None, seed: int, stream: int) -> Dataset | None:
    """``ds`` as a :class:`~torch.utils.data.Subset` in a random order fixed by ``(seed, stream)``.

    A ``Subset`` is re-indexed (not nested), so ``result.dataset`` is still the underlying dataset.
    ``None`` stays ``None``.
    """
    if ds is None:
        return None
    perm = np.random.default_rng([seed, stream]).permutation(len(ds))
    if isinstance(ds, Subset):
        return Subset(ds.dataset, [ds.indices[i] for i in perm])
    return Subset(ds, perm.tolist())


def first_per_class(labels: Sequence[int] | np.ndarray, limit: int | None) -> np.ndarray:
    """Indices of the first ``limit`` samples of each class (in dataset order); all indices if ``limit`` is None."""
    labels = np.asarray(labels)
    if limit is None:
        return np.arange(len(labels))
    if limit < 1:
        raise ValueError(f"data.limit_per_class must be a positive int or null, got {limit}")
    keep = []
    for c in np.unique(labels):
        keep.extend(np.flatnonzero(labels == c)[:limit].tolist())
    return np.sort(np.asarray(keep, dtype=np.int64))


class ImageTensorDataset(Dataset):
    """In-memory image classification dataset built from a ``uint8``/float array.

    Args:
        images: ``[N, C, H, W]`` array (``uint8`` pixel values are divided by ``scale``).
        labels: ``[N]`` integer class labels.
        scale: pixel values are divided by this (255 for ``uint8`` images, 16 for sklearn digits).
        mean, std: optional per-channel normalization applied after scaling: ``(x - mean) / std``.
        transform: optional callable applied to the ``[C, H, W]`` float tensor.

    Items are ``(x, y)`` with ``x`` a float32 tensor ``[C, H, W]`` and ``y`` an ``int64`` scalar tensor.
    """

    def __init__(
        self,
        images: np.ndarray | torch.Tensor,
        labels: np.ndarray | torch.Tensor,
        scale: float = 255.0,
        mean: Sequence[float] | None = None,
        std: Sequence[float] | None = None,
        transform: Callable | None = None,
    ):
        self.images = torch.as_tensor(np.ascontiguousarray(images))
        self.labels = torch.as_tensor(np.asarray(labels), dtype=torch.int64)
        if self.images.ndim != 4 or len(self.images) != len(self.labels):
            raise ValueError(f"expected images [N, C, H, W] and labels [N], got {tuple(self.images.shape)} and "
                             f"{tuple(self.labels.shape)}")
        self.scale = float(scale)
        c = self.images.shape[1]
        self.mean = None if mean is None else torch.as_tensor(mean, dtype=torch.float32).reshape(c, 1, 1)
        self.std = None if std is None else torch.as_tensor(std, dtype=torch.float32).reshape(c, 1, 1)
        self.transform = transform

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.images[i].to(torch.float32) / self.scale
        if self.mean is not None:
            x = x - self.mean
        if self.std is not None:
            x = x / self.std
        if self.transform is not None:
            x = self.transform(x)
        return x, self.labels[i]


class EpochShuffleSampler(EpochSkipping, torch.utils.data.Sampler):
    """The training loader's shuffle: a function of ``(seed, epoch)``, so that a resumed fit draws the same order.

    Epoch ``e`` yields exactly the order that ``DataLoader(shuffle=True, generator=torch.Generator().manual_seed(
    seed))`` yields in its ``e``-th epoch of one uninterrupted run (the draws that loader makes from its generator,
    epoch after epoch, are replayed from the seed), so runs keep the orders they always had; but a fit resumed at
    epoch ``e`` (Lightning calls :meth:`set_epoch`) starts from epoch ``e``'s order instead of epoch 0's, and
    :meth:`skip` drops the samples of the batches already trained on before a mid-epoch checkpoint
    (:class:`~spaic_train.training.resume.ResumeState` calls it).

    Args:
        num_samples: size of the training set.
        seed: the shuffle seed (``data.seed``).
    """

    def __init__(self, num_samples: int, seed: int):
        self.num_samples = int(num_samples)
        self.seed = int(seed)
        self.epoch = 0
        self._skip = 0

    def __len__(self) -> int:
        return self.num_samples

    def __iter__(self):
        n, g = self.num_samples, torch.Generator().manual_seed(self.seed)
        for _ in range(self.epoch):  # per epoch such a loader draws its base seed and two permutations
            torch.empty((), dtype=torch.int64).random_(generator=g)
            torch.randperm(n, generator=g)
            torch.randperm(n, generator=g)
        torch.empty((), dtype=torch.int64).random_(generator=g)
        yield from torch.randperm(n, generator=g).tolist()[self._take_skip():]


class SpikeDataModule(pl.LightningDataModule):
    """Common base: loaders, seeding, lazy setup.  Subclasses implement :meth:`_build`.

    Args:
        batch_size: samples per batch (all three loaders).
        num_workers: DataLoader worker processes: ``'auto'`` (default: from the cores available and the training
            processes per machine, 0 for in-memory sets; :mod:`spaic_train.data.workers`) or a number
            (0 = load in the training process).
        seed: seed of the train/val split and of the training-loader shuffle.
        pin_memory: pin host memory of batches: ``'auto'`` (default: when training on CUDA) or true/false.
        drop_last: drop the last incomplete *training* batch.
    """

    #: shape of one sample without batch (and without time for sequences)
    input_shape: tuple = ()
    #: number of classes
    num_classes: int = 0
    #: whether samples carry a time axis (``[T, *input_shape]``)
    is_sequence: bool = False
    #: ``T`` for sequence data, ``None`` for static data
    sequence_length: int | None = None
    #: whether DataLoader workers can speed this dataset up (False: small in-memory tensors; ``auto`` gives 0)
    loader_workers_help: bool = True

    def __init__(
        self,
        batch_size: int = 64,
        num_workers: int | str = AUTO,
        seed: int = 0,
        pin_memory: bool | str = AUTO,
        drop_last: bool = False,
    ):
        super().__init__()
        if batch_size < 1:
            raise ValueError(f"data.batch_size must be >= 1, got {batch_size}")
        self.batch_size = int(batch_size)
        self.num_workers = check_num_workers(num_workers)
        self.seed = int(seed)
        self.pin_memory = check_pin_memory(pin_memory)
        self._logged_loader_options: str | None = None
        #: what ``auto`` resolves against when the loaders are used without a Lightning Trainer (benchmarks,
        #: custom loops); ``None``: the attached trainer's (one CPU process when there is none)
        self.loader_context: TrainerContext | None = None
        self.drop_last = bool(drop_last)
        self.collate_fn: Callable | None = None
        self.train_set: Dataset | None = None
        self.val_set: Dataset | None = None
        self.test_set: Dataset | None = None
        self._built = False

    # -- subclass hook -------------------------------------------------------------------------------
    def _build(self) -> None:  # pragma: no cover - abstract
        """Create ``self.train_set``, ``self.val_set`` and ``self.test_set``."""
        raise NotImplementedError

    # -- Lightning API -------------------------------------------------------------------------------
    def setup(self, stage: str | None = None) -> None:
        """Build all splits once (idempotent; ``stage`` is ignored because building is cheap); the validation
        and test sets get their seeded order (see the module docstring)."""
        if not self._built:
            self._build()
            self.val_set = in_seeded_order(self.val_set, self.seed, 1)
            self.test_set = in_seeded_order(self.test_set, self.seed, 2)
            self._built = True

    def loader_options(self) -> LoaderOptions:
        """The resolved ``num_workers`` / ``pin_memory`` / ``persistent_workers`` for the attached trainer (see
        :mod:`spaic_train.data.workers`); logged by the first loader made with them."""
        ctx = self.loader_context if self.loader_context is not None else TrainerContext.of(self.trainer)
        return resolve_loader_options(self.num_workers, self.pin_memory, self.loader_workers_help, ctx)

    def _loader(self, split: str) -> DataLoader:
        self.setup()
        opts = self.loader_options()
        if opts.reason != self._logged_loader_options:  # printed once (rank 0); a later change only to debug
            from lightning.pytorch.utilities import rank_zero_only

            if rank_zero_only.rank == 0:
                log.log(logging.INFO if self._logged_loader_options is None else logging.DEBUG, opts.reason)
            self._logged_loader_options = opts.reason
        ds = getattr(self, f"{split}_set")
        train = split == "train"
        if ds is None:
            raise RuntimeError(f"{type(self).__name__}: the {split} split is empty (check data.val_fraction)")
        gen = torch.Generator()
        gen.manual_seed(self.seed)
        return DataLoader(
            ds,
            batch_size=self.batch_size,
            sampler=EpochShuffleSampler(len(ds), self.seed) if train else None,
            num_workers=opts.num_workers,
            pin_memory=opts.pin_memory,
            drop_last=self.drop_last and train,
            collate_fn=self.collate_fn,
            generator=gen,
            persistent_workers=opts.persistent_workers,
        )

    def train_dataloader(self) -> DataLoader:
        """Shuffled (seeded) training batches."""
        return self._loader("train")

    def val_dataloader(self) -> DataLoader:
        """Validation batches in a fixed, seeded random order."""
        return self._loader("val")

    def test_dataloader(self) -> DataLoader:
        """Test batches in a fixed, seeded random order."""
        return self._loader("test")

    def __repr__(self) -> str:
        sizes = ""
        if self._built:
            sizes = ", ".join(
                f"{k}={len(s) if s is not None else 0}"
                for k, s in (("train", self.train_set), ("val", self.val_set), ("test", self.test_set))
            )
            sizes = ", " + sizes
        return (f"{type(self).__name__}(input_shape={self.input_shape}, num_classes={self.num_classes}, "
                f"batch_size={self.batch_size}{sizes})")

    __str__ = __repr__  # Lightning's __str__ would build the dataloaders (and extract / download data)
