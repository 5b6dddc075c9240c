"""CIFAR-10 from torchvision's pickled batches or from a JPEG/PNG ``ImageFolder`` tree (or its ``.tar``)."""

from __future__ import annotations

import numpy as np
from torch.utils.data import Subset

from .base import DATASETS, DataNotFoundError, SpikeDataModule, first_per_class, split_indices
from .decoded import DecodedAugment, FloatBatch, decoded_splits
from .folder import autoaugment_policy, build_folder_splits, image_transforms, resolve_split_dir

#: per-channel mean / std of the CIFAR-10 training set (RGB, pixels in [0, 1])
CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR10_STD = (0.2470, 0.2435, 0.2616)
CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")


@DATASETS.register("cifar10", "cifar-10", "cifar")
class CIFAR10DataModule(SpikeDataModule):
    """CIFAR-10: ``[3, 32, 32]`` float32 RGB images, 10 classes, int64 labels.

    Formats:
        * ``format='torchvision'``: ``torchvision.datasets.CIFAR10`` under ``root`` (``root/cifar-10-batches-py``);
          downloaded when ``download=True``.
        * ``format='folder'``: ``root/train/<class>/*.jpg`` and ``root/test/<class>/*.jpg`` (class folders
          sorted alphabetically = the CIFAR-10 label order).  ``root`` may also be a ``.tar`` of that tree,
          or a directory holding ``*train*.tar`` / ``*test*.tar`` (e.g. ``CIFAR-10-images_train.tar``);
          archives are extracted once to ``<cache_dir>/extracted/<archive>-<size>-<mtime>[-lim<N>]``
          (``cache_dir`` default: ``$SPAIC_TRAIN_CACHE`` or ``~/.cache/spaic_train``).

    Validation is a seeded, stratified ``val_fraction`` of the training set, without augmentation.

    Args:
        root: data directory (or archive for ``format='folder'``).
        batch_size, num_workers, seed, pin_memory, drop_last: see :class:`SpikeDataModule`.
        val_fraction: fraction of the training set used for validation (default 0.1).
        format: ``'torchvision'`` or ``'folder'``.
        download: let torchvision download the dataset (``format='torchvision'`` only).
        augment: training-only augmentation: random crop 32 with 4 px zero padding + horizontal flip.
        autoaugment: with ``augment``, also torchvision's ``AutoAugment`` policy of this name (``'cifar10'``: the
            CIFAR-10 policy of Cubuk et al. 2019 — the ``CIFAR10Policy`` of the TET / GLIF training code), or ``None``.
        cutout: with ``augment``, also zero a random ``cutout × cutout`` square of each training image (after
            ``ToTensor``, before normalization; the papers use 16), ``0`` = off.
        normalize: normalize with :data:`CIFAR10_MEAN` / :data:`CIFAR10_STD` (else pixels in ``[0, 1]``).
        limit_per_class: keep only the first N images of each class in train and test (fast tests);
            with archives only those files are extracted.
        decode_once: ``format='folder'``: decode the JPEG/PNG files once into a ``uint8`` array cached on disk
            (``<cache_dir>/decoded/``, announced with its size; :mod:`spaic_train.data.decoded`) so an epoch only
            augments — the same batches as decoding every epoch (``false``), at the same seed.
        cache_dir: archive extraction and decoded-image cache root (``format='folder'``).
        train_dir, test_dir: split directory names for ``format='folder'``.

    Batches: ``x`` ``[B, 3, 32, 32]`` float32, ``y`` ``[B]`` int64.  (With ``decode_once`` the datasets' items are
    ``uint8`` ``[3, 32, 32]`` tensors; the loaders' ``collate_fn`` makes the float batches.)
    """

    input_shape = (3, 32, 32)
    num_classes = 10

    def __init__(
        self,
        root: str = "data",
        batch_size: int = 64,
        num_workers: int | str = "auto",
        val_fraction: float = 0.1,
        seed: int = 0,
        format: str = "torchvision",
        download: bool = False,
        augment: bool = True,
        autoaugment: str | None = None,
        cutout: int = 0,
        normalize: bool = True,
        limit_per_class: int | None = None,
        decode_once: bool = True,
        cache_dir: str | None = None,
        train_dir: str = "train",
        test_dir: str = "test",
        pin_memory: bool | str = "auto",
        drop_last: bool = False,
    ):
        super().__init__(batch_size, num_workers, seed, pin_memory, drop_last)
        fmt = str(format).lower()
        if fmt not in ("torchvision", "folder"):
            raise ValueError(f"data.format must be 'torchvision' or 'folder', got {format!r}")
        self.root = str(root)
        self.val_fraction = float(val_fraction)
        self.format = fmt
        self.download = bool(download)
        self.augment = bool(augment)
        if autoaugment is not None:
            autoaugment_policy(autoaugment)
        self.autoaugment = autoaugment
        if isinstance(cutout, bool) or not isinstance(cutout, int) or cutout < 0:
            raise ValueError(f"data.cutout must be an int >= 0 (pixels; 0 = off), got {cutout!r}")
        self.cutout = cutout
        self.normalize = bool(normalize)
        self.limit_per_class = limit_per_class
        self.decode_once = bool(decode_once)
        self.cache_dir = cache_dir
        self.train_dir, self.test_dir = train_dir, test_dir
        self.classes = list(CIFAR10_CLASSES)
        self.save_hyperparameters()

    def transforms(self):
        """``(train_transform, eval_transform)`` for 32×32 PIL images."""
        mean, std = (CIFAR10_MEAN, CIFAR10_STD) if self.normalize else (None, None)
        return image_transforms(None, self.augment, mean, std, crop_padding=4, flip=True, crop_size=(32, 32),
                                autoaugment=self.autoaugment, cutout=self.cutout)

    def prepare_data(self) -> None:
        """Download (torchvision format, ``download=True``) or extract archives (folder format)."""
        if self.format == "torchvision":
            self._torchvision(train=True)
            self._torchvision(train=False)
        else:
            self._folder_dirs()

    # -- torchvision ---------------------------------------------------------------------------------
    def _torchvision(self, train: bool, transform=None):
        from torchvision.datasets import CIFAR10

        try:
            return CIFAR10(self.root, train=train, download=self.download, transform=transform)
        except Exception as e:  # RuntimeError when missing, URLError/OSError when offline
            how = "the download failed (offline?)" if self.download else "the dataset was not found"
            raise DataNotFoundError(
                f"CIFAR-10 (data.format=torchvision): {how} under data.root={self.root!r} "
                f"(expects {self.root}/cifar-10-batches-py; {type(e).__name__}: {e}). Fix: set data.download=true "
                f"with internet access, or point data.root at the python-pickle batches, or use image files with "
                f"data.format=folder and data.root=<dir with train/<class>/*.jpg and test/<class>/*.jpg, or the "
                f"CIFAR-10-images_{{train,test}}.tar archives>."
            ) from e

    # -- folder --------------------------------------------------------------------------------------
    def _folder_dirs(self):
        train = resolve_split_dir(self.root, self.train_dir, self.cache_dir, self.limit_per_class)
        test = resolve_split_dir(self.root, self.test_dir, self.cache_dir, self.limit_per_class)
        if train is None or test is None:
            missing = " and ".join(s for s, d in ((self.train_dir, train), (self.test_dir, test)) if d is None)
            raise DataNotFoundError(
                f"CIFAR-10 (data.format=folder): no {missing} split under data.root={self.root!r}. Looked for "
                f"'{self.root}/<split>/<class>/*.jpg', an archive at data.root containing '<split>/<class>/...', and "
                f"archives named '*<split>*.tar' inside data.root. Set data.root accordingly (or data.format="
                f"torchvision with data.download=true)."
            )
        return train, test

    def _build(self) -> None:
        train_tf, eval_tf = self.transforms()
        if self.format == "folder":
            train_dir, test_dir = self._folder_dirs()
            self.train_set, self.val_set, self.test_set, classes = build_folder_splits(
                train_dir, None, test_dir, train_tf, eval_tf, self.val_fraction, 0.0, self.seed, 3,
                self.limit_per_class,
            )
            if len(classes) != 10:
                raise ValueError(f"CIFAR-10 folder {train_dir} has {len(classes)} class folders, expected 10")
            self.classes = classes
            if self.decode_once:
                augment = DecodedAugment((32, 32), 4, True, self.autoaugment, self.cutout) if self.augment else None
                self.train_set, self.val_set, self.test_set = decoded_splits(
                    self.train_set, self.val_set, self.test_set, augment, self.cache_dir)
                self.collate_fn = FloatBatch(*((CIFAR10_MEAN, CIFAR10_STD) if self.normalize else (None, None)))
            return
        train_aug = self._torchvision(True, train_tf)
        train_eval = self._torchvision(True, eval_tf)
        test = self._torchvision(False, eval_tf)
        targets = np.asarray(train_aug.targets)
        pool = first_per_class(targets, self.limit_per_class)
        tr, va = split_indices(len(pool), self.val_fraction, self.seed, labels=targets[pool])
        self.train_set = Subset(train_aug, pool[tr].tolist())
        self.val_set = Subset(train_eval, pool[va].tolist()) if len(va) else None
        keep = first_per_class(test.targets, self.limit_per_class)
        self.test_set = test if self.limit_per_class is None else Subset(test, keep.tolist())
