"""Decode once: an image folder's files decoded into one ``uint8`` array on disk, so an epoch only augments.

:func:`decoded_images` decodes every file of a list of ``(path, label)`` samples (an ``ImageFolder``'s) once into
``<cache_dir>/decoded/<folder>-<N>x<H>x<W>x<C>-<key>.npy`` and memory-maps it afterwards.  ``<key>`` hashes what
the pixels depend on: every file's path relative to the folder, size and modification time (ns), the decoded
mode and the decoder (Pillow) version — a changed, added or removed file gives a new cache, never a stale one.
The array is written to a temporary file and renamed into place when complete, so an interrupted run never
leaves a partial cache that a later run would read (the temporary file of a killed run is deleted by the next).

:class:`DecodedImages` serves ``uint8`` ``[C, H, W]`` tensors from it, after :class:`DecodedAugment` — the
random crop, flip, AutoAugment and Cutout of :func:`~spaic_train.data.folder.image_transforms` on the array,
drawing the same torch random numbers in the same order, so each sample gets the same pixels as from the JPEG
path at the same seed.  :class:`FloatBatch` (the loaders' ``collate_fn``) turns a batch into float32 in
``[0, 1]`` and normalizes it — looked up in a table made by the element-wise operations of ``ToTensor`` +
``Normalize``, so the batches are bit-identical to the per-image path (tested), at a fraction of the cost.
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset, Subset

from .folder import CachedAutoAugment, PILLoader, autoaugment_policy, default_cache_dir

log = logging.getLogger(__name__)

#: bump when the layout of the cache files changes
_FORMAT = 1


def cache_key(samples: Sequence[tuple[str, int]], root: Path, mode: str) -> str:
    """Hash of what decoded pixels depend on: the files' relative paths, sizes and mtimes, ``mode``, Pillow."""
    import PIL

    h = hashlib.sha256(f"spaic_train-decoded-{_FORMAT}|{mode}|Pillow {PIL.__version__}".encode())
    for path, label in samples:
        st = os.stat(path)
        h.update(f"\n{os.path.relpath(path, root)}|{label}|{st.st_size}|{st.st_mtime_ns}".encode())
    return h.hexdigest()[:20]


def _remove_leftovers(dest_dir: Path, name: str) -> None:
    """Delete the temporary files of runs that were killed while writing ``name`` (their process is gone)."""
    for tmp in dest_dir.glob(f".{name}.tmp-*"):
        try:
            os.kill(int(tmp.name.rsplit("-", 1)[1]), 0)
        except ProcessLookupError:
            tmp.unlink(missing_ok=True)
        except (ValueError, PermissionError, OSError):  # not ours to judge: another user's process, odd name
            continue


def decoded_images(samples: Sequence[tuple[str, int]], root: str | os.PathLike, mode: str = "RGB",
                   cache_dir: str | os.PathLike | None = None) -> Path:
    """Decode the image files of ``samples`` (in that order) once into a ``uint8`` ``[N, H, W, C]`` ``.npy`` file
    and return its path (see the module docstring for the key and the atomic write).

    Raises:
        ValueError: the images do not all have the same size (decoding once needs a fixed shape).
    """
    root = Path(root)
    if not samples:
        raise ValueError(f"no image files under {root} to decode")
    key = cache_key(samples, root, mode)
    load = PILLoader(mode)
    first = np.asarray(load(samples[0][0]))
    shape = (len(samples), *first.shape[:2], first.shape[2] if first.ndim == 3 else 1)
    dest_dir = (Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()) / "decoded"
    dest = dest_dir / f"{root.name}-{'x'.join(map(str, shape))}-{key}.npy"
    if dest.is_file():
        return dest
    size_mb = int(np.prod(shape)) / 2**20
    log.info(f"decoding {len(samples)} images of {root} once into {dest} ({size_mb:.1f} MB uint8; reused while the "
             f"files are unchanged; data.decode_once=false decodes the files every epoch instead)")
    dest_dir.mkdir(parents=True, exist_ok=True)
    _remove_leftovers(dest_dir, dest.name)
    tmp = dest_dir / f".{dest.name}.tmp-{os.getpid()}"
    out = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.uint8, shape=shape)
    try:
        for i, (path, _) in enumerate(samples):
            img = np.asarray(load(path))
            if img.shape[:2] != shape[1:3]:
                raise ValueError(f"decode once: {path} is {img.shape[1]}x{img.shape[0]} pixels but {samples[0][0]} "
                                 f"is {shape[2]}x{shape[1]}; all images must have one size (or set "
                                 f"data.decode_once=false)")
            out[i] = img.reshape(shape[1:])
        out.flush()
        del out
        os.replace(tmp, dest)  # atomic: a reader sees no file or the complete one
    finally:
        if tmp.exists():
            tmp.unlink()
    return dest


class DecodedAugment:
    """The training augmentation of :func:`~spaic_train.data.folder.image_transforms` on a ``uint8`` ``[H, W, C]``
    array: random crop of ``crop_size`` after ``crop_padding`` zero pixels on every side, horizontal flip with
    probability 0.5 (if ``flip``), AutoAugment with the policy ``autoaugment`` (if given), Cutout of ``cutout``
    pixels (if > 0).  Each step draws torch's random numbers exactly as its torchvision / :class:`Cutout`
    counterpart does, in the same order.  Cutout zeroes ``uint8`` pixels, which ``/ 255`` maps to the 0.0 that the
    float Cutout writes."""

    def __init__(self, crop_size: tuple[int, int], crop_padding: int = 4, flip: bool = True,
                 autoaugment: str | None = None, cutout: int = 0):
        self.crop_size = (int(crop_size[0]), int(crop_size[1]))
        self.crop_padding = int(crop_padding)
        self.flip = bool(flip)
        self.autoaugment = CachedAutoAugment(autoaugment_policy(autoaugment)) if autoaugment else None
        self.cutout = int(cutout)

    def __call__(self, img: np.ndarray) -> np.ndarray:
        p, (th, tw) = self.crop_padding, self.crop_size
        h, w, c = img.shape
        i = j = 0
        if (h + 2 * p, w + 2 * p) != (th, tw):  # as RandomCrop.get_params on the padded image
            i = torch.randint(0, h + 2 * p - th + 1, size=(1,)).item()
            j = torch.randint(0, w + 2 * p - tw + 1, size=(1,)).item()
        # the crop of the zero-padded image without building it: rows i - p ..., columns j - p ... of ``img``
        r0, c0 = i - p, j - p
        y0, y1, x0, x1 = max(0, r0), min(h, r0 + th), max(0, c0), min(w, c0 + tw)
        out = np.zeros((th, tw, c), dtype=np.uint8)
        if y1 > y0 and x1 > x0:
            out[y0 - r0:y1 - r0, x0 - c0:x1 - c0] = img[y0:y1, x0:x1]
        img = out
        if self.flip and torch.rand(1) < 0.5:  # as RandomHorizontalFlip
            img = img[:, ::-1]
        if self.autoaugment is not None:
            from PIL import Image

            img = np.asarray(self.autoaugment(Image.fromarray(np.ascontiguousarray(img).squeeze(-1) if c == 1
                                                              else np.ascontiguousarray(img))))
            img = img.reshape(th, tw, c)
        if self.cutout:
            y, x = int(torch.randint(th, ())), int(torch.randint(tw, ()))  # as Cutout
            half = self.cutout // 2
            img = np.array(img)
            img[max(0, y - half):min(th, y + half), max(0, x - half):min(tw, x + half)] = 0
        return img

    def __repr__(self) -> str:
        return (f"DecodedAugment(crop_size={self.crop_size}, crop_padding={self.crop_padding}, flip={self.flip}, "
                f"autoaugment={self.autoaugment is not None}, cutout={self.cutout})")


class DecodedImages(Dataset):
    """``(uint8 [C, H, W] tensor, label)`` items from a :func:`decoded_images` file, augmented by ``augment``;
    ``targets`` are the labels (as in ``ImageFolder``).

    The file is memory-mapped lazily in each process (workers share the page cache; pickling sends the path).
    """

    def __init__(self, path: str | os.PathLike, labels: Sequence[int], augment: DecodedAugment | None = None):
        self.path = Path(path)
        self.targets = [int(t) for t in labels]
        self.augment = augment
        self._images: np.ndarray | None = None

    @property
    def images(self) -> np.ndarray:
        if self._images is None:
            self._images = np.load(self.path, mmap_mode="r")
            if len(self._images) != len(self.targets):
                raise ValueError(f"{self.path} holds {len(self._images)} images, expected {len(self.targets)}")
        return self._images

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_images": None}

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        img = self.images[i]
        if self.augment is not None:
            img = self.augment(img)
        return torch.from_numpy(np.ascontiguousarray(np.transpose(img, (2, 0, 1)))), self.targets[i]


class FloatBatch:
    """``collate_fn`` of decoded images: stack ``uint8`` ``[C, H, W]`` images into float32 ``x / 255``, then
    ``(x - mean) / std`` when both are given; labels as ``int64``.

    A ``uint8`` pixel has 256 values, so the result is looked up in a ``[C, 256]`` table that is computed with the
    very operations of ``ToTensor`` + ``Normalize`` (``.to(float32).div(255)``, ``.sub_(mean).div_(std)``): the
    same floats, bit for bit, at a fraction of the cost of four passes of tensor arithmetic over the batch.
    """

    def __init__(self, mean: Sequence[float] | None = None, std: Sequence[float] | None = None):
        self.mean = None if mean is None else [float(m) for m in mean]
        self.std = None if std is None else [float(s) for s in std]
        self._table: np.ndarray | None = None

    def table(self, channels: int) -> np.ndarray:
        """``[channels, 256]`` float32: the value every ``uint8`` pixel of every channel becomes."""
        if self._table is None or len(self._table) != channels:
            t = torch.arange(256, dtype=torch.uint8).to(torch.float32).div(255).expand(channels, 256).clone()
            if self.mean is not None and self.std is not None:
                mean = torch.as_tensor(self.mean, dtype=torch.float32).view(-1, 1)
                std = torch.as_tensor(self.std, dtype=torch.float32).view(-1, 1)
                t = t.sub_(mean).div_(std)
            self._table = t.numpy()
        return self._table

    def __call__(self, batch: Sequence[tuple[torch.Tensor, int]]) -> tuple[torch.Tensor, torch.Tensor]:
        images = torch.stack([item[0] for item in batch]).numpy()
        table = self.table(images.shape[1])
        x = np.empty(images.shape, dtype=np.float32)
        for c in range(images.shape[1]):
            np.take(table[c], images[:, c], out=x[:, c])
        return torch.from_numpy(x), torch.tensor([item[1] for item in batch], dtype=torch.int64)


def decoded_splits(train: Subset, val: Subset | None, test: Dataset | None, augment: DecodedAugment | None,
                   cache_dir: str | os.PathLike | None = None, mode: str = "RGB"):
    """The splits of :func:`~spaic_train.data.folder.build_folder_splits` (``Subset`` s of ``ImageFolder`` s, a test
    ``ImageFolder``) re-pointed at decoded caches: same samples, same indices; the training split gets
    ``augment``, validation and test none.  Returns ``(train, val, test)``."""
    paths: dict[str, Path] = {}  # the training and validation ImageFolders read the same directory: one cache

    def swap(ds, aug):
        if ds is None:
            return None
        base = getattr(ds, "dataset", ds)
        if base.root not in paths:
            paths[base.root] = decoded_images(base.samples, base.root, mode, cache_dir)
        decoded = DecodedImages(paths[base.root], base.targets, aug)
        return Subset(decoded, list(ds.indices)) if isinstance(ds, Subset) else decoded

    return swap(train, augment), swap(val, None), swap(test, None)
