"""Lightning training checkpoints: written atomically, loaded safely and checked before a fit resumes.

* :class:`AtomicCheckpointIO`: the Trainer's ``CheckpointIO`` plugin (``fit`` installs it) that writes with
  :func:`~spaic_train.io.atomic_torch_save` (a process killed during a save leaves the previous ``last.ckpt``
  intact) and reads with :func:`~spaic_train.io.load_checkpoint_safely` (``weights_only=True``).
* :func:`check_checkpoint`: ``fit(resume=...)`` checks the file *before* the Trainer is built, so a truncated,
  corrupt or unsafe checkpoint (:class:`~spaic_train.io.CheckpointError`) overwrites nothing.

What a checkpoint adds for an exact mid-epoch resume (data order, RNG states, partial epoch metrics) is in
:mod:`spaic_train.training.resume`.
"""

from __future__ import annotations

import os
from typing import Any, Optional

from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO

from ..io import CheckpointError, atomic_torch_save, load_checkpoint_safely

__all__ = ["AtomicCheckpointIO", "check_checkpoint"]

#: what every Lightning training checkpoint holds
_REQUIRED_KEYS = ("state_dict",)


def check_checkpoint(path: Any) -> dict:
    """Load ``path`` safely and check it is a Lightning training checkpoint (has ``state_dict`` and loop state).

    Returns the loaded dict.  Raises :class:`CheckpointError` (see :func:`load_checkpoint_safely`).
    """
    ckpt = load_checkpoint_safely(path)
    path = os.fspath(path)
    if not isinstance(ckpt, dict):
        raise CheckpointError(f"checkpoint {path!r} is not a Lightning checkpoint: it holds a "
                              f"{type(ckpt).__name__}, not a dict")
    missing = [k for k in _REQUIRED_KEYS if k not in ckpt]
    if missing:
        raise CheckpointError(f"checkpoint {path!r} is not a Lightning training checkpoint: missing "
                              f"{', '.join(missing)} (keys: {', '.join(sorted(map(str, ckpt))[:8])})")
    return ckpt


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning ``CheckpointIO`` that saves atomically (:func:`atomic_torch_save`) and loads with
    ``weights_only=True`` (:func:`load_checkpoint_safely`)."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path: Any, storage_options: Optional[Any] = None) -> None:
        if storage_options is not None:
            raise TypeError("AtomicCheckpointIO.save_checkpoint does not take storage_options, got "
                            f"{storage_options!r}")
        atomic_torch_save(checkpoint, path)

    def load_checkpoint(self, path: Any, map_location: Optional[Any] = None,
                        weights_only: Optional[bool] = None) -> dict[str, Any]:
        return load_checkpoint_safely(path, map_location=map_location or "cpu")
