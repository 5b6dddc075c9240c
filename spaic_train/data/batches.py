"""What a batch is: ``(x, y)``, ``x`` alone or a dict, and labels that are class indices.

Used by training, monitoring and profiling alike, so it lives below all of them.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Optional

import torch
from torch import Tensor

__all__ = ["class_index_labels", "unpack_batch"]


def class_index_labels(y: Tensor, what: str = "y") -> Tensor:
    """Labels of shape ``[N]`` are class indices: floating ones holding whole numbers become ``int64``.

    Other tensors (integer labels, ``[N, C]`` float targets) are returned unchanged; so are non-finite values,
    which :func:`check_finite` reports.

    Raises:
        ValueError: floating ``[N]`` labels with a non-integral value, naming ``what``, the dtype and the value.
    """
    if y.dim() != 1 or not torch.is_floating_point(y):
        return y
    finite = torch.isfinite(y)
    fractional = finite & (y != torch.round(y))
    if bool(fractional.any()):
        i = int(fractional.nonzero()[0, 0])
        raise ValueError(f"{what}: labels of shape [N] are class indices, but they have dtype {y.dtype} with "
                         f"non-integral values (e.g. {float(y[i])!r} at sample {i}); pass integer class indices, "
                         f"or per-class float targets of shape [N, num_classes]")
    return y.long() if bool(finite.all()) else y


_X_KEYS = ("x", "input", "inputs", "data")
_Y_KEYS = ("y", "target", "targets", "label", "labels")


def unpack_batch(batch: Any) -> tuple[Tensor, Optional[Tensor]]:
    """A batch → ``(x [B, ...], y [B] / [B, C] or None)``; float ``[B]`` labels holding whole numbers become
    ``int64`` (:func:`class_index_labels`)."""
    if isinstance(batch, Tensor):
        return batch, None
    if isinstance(batch, Mapping):
        x = next((batch[k] for k in _X_KEYS if k in batch), None)
        y = next((batch[k] for k in _Y_KEYS if k in batch), None)
        if x is None:
            raise ValueError(f"dict batch needs one of the keys {_X_KEYS}, got {sorted(batch)}")
    elif isinstance(batch, (tuple, list)):
        if len(batch) == 0:
            raise ValueError("empty batch")
        x, y = batch[0], (batch[1] if len(batch) > 1 else None)
    else:
        raise TypeError(f"cannot unpack a batch of type {type(batch).__name__}; expected (x, y), x or a dict")
    if isinstance(y, Tensor) and y.dim() == 1 and torch.is_floating_point(y):  # float class indices
        y = class_index_labels(y, "batch labels")
    return x, y
