"""N-MNIST (Orchard et al. 2015) on the event path: ``tonic.io``'s 5-byte reader, the frame spec, the cache and the
recorded split.

Files: 5 bytes per event (``.bin`` in the original release, ``.bs2`` in SLAYER's NMNISTsmall), big-endian bit
fields — byte 0: x (0..33), byte 1: y (0..33), bytes 2..4: bit 23 polarity (1 ON), bits 22..0 timestamp in µs
(:func:`~.formats.read_bin`).  Labels: SLAYER's list files or the original ``Train|Test/<digit>/`` folders
(:func:`~.layouts.find_nmnist`).

With the defaults (35 frames of 10 ms from ``t = 0``) the frames, the split, the batches and a seeded run's metrics
equal those of the hand-written reader this replaced (fe7fe02; ``tests/test_nmnist.py`` against
``tests/fixtures/nmnist_fe7fe02``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

from ..base import DATASETS
from .datamodule import EventDataModule
from .datasets import EventSource
from .formats import read_bin
from .layouts import find_nmnist

SENSOR_SIZE = (34, 34)  # (H, W) = (y, x)


@DATASETS.register("nmnist", "n-mnist", "nmnist_events")
class NMNISTDataModule(EventDataModule):
    """N-MNIST, 10 classes, 34×34, two polarities: batches ``x`` ``[T, B, 2, 34, 34]`` (time first), ``y`` ``[B]``.

    ``nmnist_events`` is an alias (the name of this path while the hand-written reader was ``nmnist``).

    Args:
        root: directory holding SLAYER's list files and ``.bs2`` recordings (e.g. ``.../nmnist-small``), or the
            original ``Train``/``Test`` folder tree (each also one directory below).
        train_list, test_list: explicit SLAYER list files (default: ``train*.txt`` / ``test*.txt`` under root).
        time_steps, bin_ms: default 35 × 10 ms (every N-MNIST recording, max ~336 ms).
        val_fraction: seeded, stratified share of the training recordings used for validation (default 0.1).
        (others: :class:`~.datamodule.EventDataModule`)
    """

    dataset_name = "nmnist"
    sensor_size = SENSOR_SIZE
    num_classes = 10
    defaults = {"time_steps": 35, "bin_ms": 10.0, "bin_mode": "time"}

    def __init__(self, root: str = "data", batch_size: int = 64, num_workers: int = 0, val_fraction: float = 0.1,
                 seed: int = 0, time_steps: Optional[int] = None, bin_ms: Optional[float] = None,
                 bin_mode: Optional[str] = None, polarity: Optional[str] = None, downsample: Optional[int] = None,
                 denoise_ms: Optional[float] = None, clamp: bool = False, flip_lr: float = 0.0, translate_px: int = 0,
                 drop_event: float = 0.0, train_list: Optional[str] = None, test_list: Optional[str] = None,
                 cache: bool = True, cache_dir: Optional[str] = None, time_first: bool = True,
                 pin_memory: bool = False, drop_last: bool = False):
        super().__init__(batch_size, num_workers, seed, pin_memory, drop_last)
        self.train_list, self.test_list = train_list, test_list
        self._init_events(root, val_fraction, time_steps, bin_ms, bin_mode, polarity, downsample, denoise_ms, clamp,
                          flip_lr, translate_px, drop_event, cache, cache_dir, time_first)
        self.save_hyperparameters()

    def _discover(self):
        return find_nmnist(Path(self.root).expanduser(), self.train_list, self.test_list)

    def _source(self, partition, samples):
        return EventSource(samples, self.spec, read_bin)
