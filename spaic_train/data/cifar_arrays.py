"""CIFAR-10 as in-memory tensors: a seeded, stratified subset of the JPEG tars (or a ``<split>/<class>/*.jpg`` tree),
the standard normalisation, and the standard crop + flip augmentation on whole uint8 batches (for plain PyTorch loops
and benchmarks that need the same data in the same order without a DataLoader)."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from .cifar import CIFAR10_MEAN, CIFAR10_STD
from .folder import IMG_EXTENSIONS, resolve_split_dir

__all__ = ["augment", "load_cifar_subset", "normalize"]


def load_cifar_subset(root: str, n_train: int, n_test: int, seed: int = 0):
    """``(x_train, y_train, x_test, y_test)`` from the CIFAR-10 JPEG tars (or ``<split>/<class>/*.jpg``) under
    ``root``: ``n/10`` images per class of each split drawn with ``seed``; ``x`` uint8 ``[N, 3, 32, 32]``."""
    from PIL import Image  # imported on use: only this loader needs Pillow

    rng = np.random.default_rng(seed)
    out = []
    for split, n in (("train", n_train), ("test", n_test)):
        d = resolve_split_dir(root, split)
        if d is None:
            raise FileNotFoundError(f"no CIFAR-10 '{split}' split under {root!r} (expects the "
                                    "CIFAR-10-images_{train,test}.tar JPEG tars or <split>/<class>/*.jpg)")
        classes = sorted(c for c in d.iterdir() if c.is_dir())
        if len(classes) != 10 or n % 10:
            raise ValueError(f"expected 10 class folders in {d} and a multiple of 10 images, got "
                             f"{len(classes)} classes and n={n}")
        files, labels = [], []
        for label, c in enumerate(classes):
            names = sorted(p for p in c.iterdir() if p.suffix.lower() in IMG_EXTENSIONS)
            pick = rng.choice(len(names), n // 10, replace=False)
            files += [names[i] for i in sorted(pick)]
            labels += [label] * (n // 10)
        order = rng.permutation(n)
        x = np.stack([np.asarray(Image.open(files[i]).convert("RGB")) for i in order]).transpose(0, 3, 1, 2)
        out += [torch.from_numpy(np.ascontiguousarray(x)), torch.tensor(labels)[torch.from_numpy(order)]]
    return tuple(out)


def normalize(x_uint8: torch.Tensor) -> torch.Tensor:
    """uint8 images → float, standardised with the CIFAR-10 channel mean and std."""
    mean = torch.tensor(CIFAR10_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(CIFAR10_STD).view(1, 3, 1, 1)
    return (x_uint8.float() / 255.0 - mean) / std


def augment(x_uint8: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Random 32-px crop of the 4-px zero-padded image and a random horizontal flip (uint8 in and out)."""
    n = x_uint8.shape[0]
    padded = F.pad(x_uint8, (4, 4, 4, 4))
    top = torch.randint(0, 9, (n,), generator=gen)
    left = torch.randint(0, 9, (n,), generator=gen)
    flip = torch.rand(n, generator=gen) < 0.5
    ar = torch.arange(32)
    rows = top[:, None] + ar
    cols = left[:, None] + torch.where(flip[:, None], 31 - ar, ar)
    return padded[torch.arange(n)[:, None, None, None], torch.arange(3)[None, :, None, None],
                  rows[:, None, :, None], cols[:, None, None, :]]
