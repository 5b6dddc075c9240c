"""Generic ``ImageFolder`` datamodule and ``.tar`` extraction with a cache.

Expected layout (torchvision ``ImageFolder``; classes are the sorted sub-directory names)::

    root/train/<class>/*.jpg|png|...    training images (validation is split off it unless root/val exists)
    root/val/<class>/...                optional
    root/test/<class>/...               optional; without it a seeded ``test_fraction`` of train is used

``root`` may also be a directory of class folders only (no split directories), a ``.tar``/``.tar.gz``
archive holding such a tree, or a directory holding archives whose names contain the split name
(``*train*.tar``, ``*test*.tar``).  Archives are extracted once into the cache directory

    ``<cache_dir>/extracted/<archive stem>-<size>-<mtime>[-lim<N>]/``

where ``cache_dir`` is the ``cache_dir`` argument, else ``$SPAIC_TRAIN_CACHE``, else ``~/.cache/spaic_train``.
A ``.complete`` marker makes reuse safe after an interrupted extraction.
"""

from __future__ import annotations

import logging
import os
import shutil
import tarfile
from collections import defaultdict
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset, Subset
from torchvision.transforms import AutoAugment

from ..io import default_cache_dir
from .base import DATASETS, DataNotFoundError, SpikeDataModule, first_per_class, split_indices

log = logging.getLogger(__name__)

IMG_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")
_TAR_SUFFIXES = (".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tar.xz")


def is_archive(path: str | os.PathLike) -> bool:
    """True for a regular file whose name ends in a tar suffix (``.tar``, ``.tar.gz``, ``.tgz``, ...)."""
    p = Path(path)
    return p.is_file() and p.name.lower().endswith(_TAR_SUFFIXES)


def _archive_stem(path: Path) -> str:
    name = path.name
    for suf in sorted(_TAR_SUFFIXES, key=len, reverse=True):
        if name.lower().endswith(suf):
            return name[: -len(suf)]
    return name


def extract_tar(
    archive: str | os.PathLike,
    cache_dir: str | os.PathLike | None = None,
    limit_per_class: int | None = None,
) -> Path:
    """Extract an image archive once into the cache and return the extraction directory.

    Args:
        archive: ``.tar`` (optionally compressed) file.
        cache_dir: cache root (see module docstring); the archive goes to ``<cache_dir>/extracted/<key>``.
        limit_per_class: extract only the first N image files (sorted by name) of every directory,
            i.e. N images per class for an ImageFolder tree; the cache key gets a ``-lim<N>`` suffix.

    Returns:
        The directory holding the archive's members at their stored paths (e.g. ``<dir>/test/cat/0000.jpg``).
    """
    archive = Path(archive).expanduser()
    if not archive.is_file():
        raise FileNotFoundError(f"archive {archive} does not exist")
    st = archive.stat()
    key = f"{_archive_stem(archive)}-{st.st_size}-{int(st.st_mtime)}"
    key += f"-lim{limit_per_class}" if limit_per_class else ""
    dest = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    dest = dest / "extracted" / key
    if (dest / ".complete").is_file():
        return dest
    log.info(f"extracting {archive} ({st.st_size / 2**20:.0f} MB) into {dest} (once; set SPAIC_TRAIN_CACHE or "
             f"data.cache_dir to extract elsewhere)")
    tmp = dest.parent / f".{key}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    with tarfile.open(archive) as tar:
        members = [m for m in tar.getmembers() if m.isfile() or m.isdir()]
        if limit_per_class:
            by_dir: dict[str, list[tarfile.TarInfo]] = defaultdict(list)
            for m in members:
                if m.isfile() and m.name.lower().endswith(IMG_EXTENSIONS):
                    by_dir[os.path.dirname(m.name)].append(m)
            members = [m for group in by_dir.values() for m in sorted(group, key=lambda m: m.name)[:limit_per_class]]
        try:
            tar.extractall(tmp, members=members, filter="data")
        except TypeError:  # Python without extraction filters
            tar.extractall(tmp, members=members)  # noqa: S202 - members are regular files/dirs only
    (tmp / ".complete").write_text(str(archive))
    try:
        os.replace(tmp, dest)
    except OSError:  # another process finished first
        shutil.rmtree(tmp, ignore_errors=True)
        if not (dest / ".complete").is_file():
            raise
    return dest


def _has_class_dirs(d: Path) -> bool:
    return d.is_dir() and any(
        sub.is_dir() and any(f.suffix.lower() in IMG_EXTENSIONS for f in sub.iterdir()) for sub in d.iterdir()
    )


def resolve_split_dir(
    root: str | os.PathLike,
    split: str,
    cache_dir: str | os.PathLike | None = None,
    limit_per_class: int | None = None,
) -> Path | None:
    """Find the ``<class>/*`` directory of ``split`` (e.g. ``"train"``) under ``root``, extracting archives.

    Tries ``root/<split>``; if ``root`` is an archive, ``<extracted>/<split>``; if ``root`` is a directory,
    archives in it whose name contains ``split`` (``<extracted>/<split>`` or the extraction dir itself).
    Returns None when nothing matches.
    """
    root = Path(root).expanduser()
    if is_archive(root):
        base = extract_tar(root, cache_dir, limit_per_class)
        return base / split if (base / split).is_dir() else None
    if (root / split).is_dir():
        return root / split
    if root.is_dir():
        for arc in sorted(root.iterdir()):
            if split in arc.name.lower() and is_archive(arc):
                base = extract_tar(arc, cache_dir, limit_per_class)
                if (base / split).is_dir():
                    return base / split
                if _has_class_dirs(base):
                    return base
    return None


class PILLoader:
    """Picklable ``ImageFolder`` loader: open ``path`` and convert to PIL ``mode`` (``L``/``RGB``/``RGBA``)."""

    def __init__(self, mode: str):
        self.mode = mode

    def __call__(self, path: str):
        from PIL import Image

        with open(path, "rb") as f:
            return Image.open(f).convert(self.mode)


def _image_folder(directory: Path, transform: Callable | None, channels: int, limit: int | None):
    from torchvision.datasets import ImageFolder

    mode = {1: "L", 3: "RGB", 4: "RGBA"}.get(channels)
    if mode is None:
        raise ValueError(f"data.channels must be 1, 3 or 4, got {channels}")
    ds = ImageFolder(str(directory), transform=transform, loader=PILLoader(mode))
    if limit is not None:
        keep = first_per_class(ds.targets, limit)
        ds.samples = [ds.samples[i] for i in keep]
        ds.imgs = ds.samples
        ds.targets = [ds.targets[i] for i in keep]
    return ds


def build_folder_splits(
    train_dir: Path,
    val_dir: Path | None,
    test_dir: Path | None,
    train_transform: Callable,
    eval_transform: Callable,
    val_fraction: float,
    test_fraction: float,
    seed: int,
    channels: int = 3,
    limit_per_class: int | None = None,
) -> tuple[Dataset, Dataset | None, Dataset | None, list[str]]:
    """Create ``(train, val, test, classes)`` from ImageFolder directories.

    Missing ``test_dir``: a seeded stratified ``test_fraction`` of ``train_dir`` is held out first.
    Missing ``val_dir``: a seeded stratified ``val_fraction`` of the (remaining) training images.
    Training samples get ``train_transform``; validation/test samples get ``eval_transform``.
    """
    train_aug = _image_folder(train_dir, train_transform, channels, limit_per_class)
    train_eval = _image_folder(train_dir, eval_transform, channels, limit_per_class)
    classes = list(train_aug.classes)
    targets = np.asarray(train_aug.targets)
    pool = np.arange(len(targets))
    test: Dataset | None = None
    if test_dir is not None:
        test = _image_folder(test_dir, eval_transform, channels, limit_per_class)
        if list(test.classes) != classes:
            raise ValueError(f"class folders differ between {train_dir} {classes} and {test_dir} {list(test.classes)}")
    elif test_fraction > 0:
        rest, te = split_indices(len(pool), test_fraction, seed, labels=targets)
        test, pool = Subset(train_eval, te.tolist()), rest
    if val_dir is not None:
        val: Dataset | None = _image_folder(val_dir, eval_transform, channels, limit_per_class)
        tr = pool
    else:
        tr_rel, va_rel = split_indices(len(pool), val_fraction, seed, labels=targets[pool])
        tr = pool[tr_rel]
        val = Subset(train_eval, pool[va_rel].tolist()) if len(va_rel) else None
    train = Subset(train_aug, tr.tolist())
    return train, val, test, classes


class Cutout:
    """Zero one ``length × length`` square of a ``[C, H, W]`` tensor image, centred on a uniformly drawn pixel
    and clipped at the borders (DeVries & Taylor 2017, ``n_holes=1``; drawn with torch's RNG)."""

    def __init__(self, length: int):
        self.length = int(length)

    def __call__(self, img):
        h, w = img.shape[-2:]
        y, x = int(torch.randint(h, ())), int(torch.randint(w, ()))
        half = self.length // 2
        img = img.clone()
        img[..., max(0, y - half):min(h, y + half), max(0, x - half):min(w, x + half)] = 0
        return img

    def __repr__(self) -> str:
        return f"Cutout(length={self.length})"


class CachedAutoAugment(AutoAugment):
    """torchvision's ``AutoAugment`` with its table of magnitudes built once per image size instead of on every call
    (the same table each time; building it took about a third of the transform's time).  Same random draws, same
    pixels."""

    def _augmentation_space(self, num_bins: int, image_size: tuple[int, int]):
        cache = self.__dict__.setdefault("_space_cache", {})
        key = (num_bins, tuple(image_size))
        if key not in cache:
            cache[key] = super()._augmentation_space(num_bins, image_size)
        return cache[key]


def autoaugment_policy(name: str):
    """torchvision's ``AutoAugmentPolicy`` called ``name`` (``'cifar10'``, ``'imagenet'``, ``'svhn'``)."""
    from torchvision.transforms import AutoAugmentPolicy

    policies = {p.name.lower(): p for p in AutoAugmentPolicy}
    if not isinstance(name, str) or name.lower() not in policies:
        raise ValueError(f"data.autoaugment must be null or one of {', '.join(policies)}, got {name!r}")
    return policies[name.lower()]


def image_transforms(
    image_size: tuple[int, int] | None,
    augment: bool,
    mean: Sequence[float] | None,
    std: Sequence[float] | None,
    crop_padding: int = 4,
    flip: bool = True,
    crop_size: tuple[int, int] | None = None,
    autoaugment: str | None = None,
    cutout: int = 0,
) -> tuple[Callable, Callable]:
    """``(train_transform, eval_transform)`` for PIL images.

    Pipeline: [resize to ``image_size``] → [train only, if ``augment``: random crop of ``image_size`` (or
    ``crop_size``) with ``crop_padding`` zero padding, random horizontal flip if ``flip``, torchvision's
    ``AutoAugment`` with the policy named ``autoaugment`` (``'cifar10'``, ``'imagenet'``, ``'svhn'``) if given]
    → float tensor ``[C, H, W]`` in ``[0, 1]`` → [train only: :class:`Cutout` of ``cutout`` pixels if ``> 0``]
    → [normalize ``(x - mean) / std`` when both are given].
    """
    from torchvision import transforms as T

    pre = [T.Resize(image_size)] if image_size is not None else []
    to_tensor: list = [T.ToTensor()]
    norm: list = [T.Normalize(mean, std)] if mean is not None and std is not None else []
    aug: list = []
    erase: list = []
    if augment:
        size = image_size or crop_size
        if size is None:
            raise ValueError("augmentation needs a known image size (set data.image_size)")
        aug.append(T.RandomCrop(size, padding=crop_padding))
        if flip:
            aug.append(T.RandomHorizontalFlip())
        if autoaugment:
            aug.append(CachedAutoAugment(autoaugment_policy(autoaugment)))
        if cutout:
            erase.append(Cutout(cutout))
    return T.Compose(pre + aug + to_tensor + erase + norm), T.Compose(pre + to_tensor + norm)


def _as_size(image_size: int | Sequence[int] | None) -> tuple[int, int] | None:
    if image_size is None:
        return None
    if isinstance(image_size, int):
        return (image_size, image_size)
    h, w = image_size
    return (int(h), int(w))


@DATASETS.register("folder", "image_folder", "imagefolder")
class ImageFolderDataModule(SpikeDataModule):
    """Any ``ImageFolder`` tree (see module docstring for the layouts and archive handling).

    Args:
        root: directory (or archive) of the image tree.
        batch_size, num_workers, seed, pin_memory, drop_last: see :class:`SpikeDataModule`.
        val_fraction: fraction of training images held out for validation when there is no ``val_dir``.
        test_fraction: fraction of training images held out for test when there is no ``test_dir``.
        image_size: ``int`` or ``[H, W]`` to resize to; ``None`` keeps the stored size (all images must match).
        channels: 1 (grayscale), 3 (RGB) or 4 (RGBA).
        augment: random crop (padding ``crop_padding``) + horizontal flip on the training split only.
        crop_padding: zero padding (pixels) of the random crop.
        mean, std: per-channel normalization after scaling to ``[0, 1]``; ``None`` = no normalization.
        limit_per_class: keep only the first N images (sorted by file name) per class in every split.
        train_dir, val_dir, test_dir: split directory names under ``root``.
        cache_dir: where archives are extracted (default ``$SPAIC_TRAIN_CACHE`` or ``~/.cache/spaic_train``).
        download: unused; accepted for config symmetry.

    Batches: ``x`` ``[B, channels, H, W]`` float32, ``y`` ``[B]`` int64.
    """

    def __init__(
        self,
        root: str = "data",
        batch_size: int = 64,
        num_workers: int | str = "auto",
        val_fraction: float = 0.1,
        seed: int = 0,
        test_fraction: float = 0.1,
        image_size: int | Sequence[int] | None = None,
        channels: int = 3,
        augment: bool = False,
        crop_padding: int = 4,
        mean: Sequence[float] | None = None,
        std: Sequence[float] | None = None,
        limit_per_class: int | None = None,
        train_dir: str = "train",
        val_dir: str = "val",
        test_dir: str = "test",
        cache_dir: str | None = None,
        download: bool = False,
        pin_memory: bool | str = "auto",
        drop_last: bool = False,
    ):
        super().__init__(batch_size, num_workers, seed, pin_memory, drop_last)
        self.root = str(root)
        self.val_fraction = float(val_fraction)
        self.test_fraction = float(test_fraction)
        self.image_size = _as_size(image_size)
        self.channels = int(channels)
        self.augment = bool(augment)
        self.crop_padding = int(crop_padding)
        self.mean = None if mean is None else [float(m) for m in mean]
        self.std = None if std is None else [float(s) for s in std]
        self.limit_per_class = limit_per_class
        self.train_dir, self.val_dir, self.test_dir = train_dir, val_dir, test_dir
        self.cache_dir = cache_dir
        self.classes: list[str] | None = None
        self._dirs: tuple | None = None
        self.save_hyperparameters()

    def _not_found(self) -> DataNotFoundError:
        return DataNotFoundError(
            f"no image folder found under data.root={self.root!r}: looked for "
            f"'{self.root}/{self.train_dir}/<class>/*', "
            f"'{self.root}/<class>/*', an archive at data.root, or archives named '*{self.train_dir}*.tar' in it. "
            f"Set data.root to such a directory or archive."
        )

    def resolve_dirs(self) -> tuple[Path, Path | None, Path | None]:
        """``(train_dir, val_dir, test_dir)`` as existing directories (``None`` when absent); extracts archives."""
        if self._dirs is None:
            find = lambda split: resolve_split_dir(self.root, split, self.cache_dir, self.limit_per_class)  # noqa: E731
            train = find(self.train_dir) if self.train_dir else None
            if train is None:
                root = Path(self.root).expanduser()
                if is_archive(root):
                    root = extract_tar(root, self.cache_dir, self.limit_per_class)
                if not _has_class_dirs(root):
                    raise self._not_found()
                train = root  # root itself holds the class folders
                val = test = None
            else:
                val = find(self.val_dir) if self.val_dir else None
                test = find(self.test_dir) if self.test_dir else None
            self._dirs = (train, val, test)
        return self._dirs

    @property
    def input_shape(self) -> tuple[int, int, int]:  # type: ignore[override]
        """``(channels, H, W)``; with ``image_size=None`` the size of the first training image."""
        if self.image_size is not None:
            return (self.channels, *self.image_size)
        from PIL import Image

        train = self.resolve_dirs()[0]
        first = next(p for c in sorted(train.iterdir()) if c.is_dir() for p in sorted(c.iterdir())
                     if p.suffix.lower() in IMG_EXTENSIONS)
        with Image.open(first) as im:
            w, h = im.size
        return (self.channels, h, w)

    @property
    def num_classes(self) -> int:  # type: ignore[override]
        """Number of class folders in the training directory."""
        if self.classes is None:
            train = self.resolve_dirs()[0]
            self.classes = sorted(d.name for d in train.iterdir() if d.is_dir())
        return len(self.classes)

    def _build(self) -> None:
        train_dir, val_dir, test_dir = self.resolve_dirs()
        crop = tuple(self.input_shape[1:]) if self.augment else None
        train_tf, eval_tf = image_transforms(
            self.image_size, self.augment, self.mean, self.std, self.crop_padding, crop_size=crop
        )
        self.train_set, self.val_set, self.test_set, self.classes = build_folder_splits(
            train_dir, val_dir, test_dir, train_tf, eval_tf, self.val_fraction, self.test_fraction, self.seed,
            self.channels, self.limit_per_class,
        )
