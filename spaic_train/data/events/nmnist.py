"""N-MNIST on the event path: ``tonic.io``'s 5-byte reader, the frame spec, the cache and the recorded split.

With the defaults (``bin_mode='time'``, frame 0 at ``t = 0``) the frames equal those of
:class:`spaic_train.data.NMNISTDataModule` (tested on the real files), and so do the batches at the same seed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

from ..base import DATASETS
from ..nmnist import SENSOR_SIZE
from .datamodule import EventDataModule
from .datasets import EventSource
from .formats import read_bin
from .layouts import find_nmnist


@DATASETS.register("nmnist_events")
class NMNISTEventsDataModule(EventDataModule):
    """N-MNIST (Orchard et al. 2015), 10 classes, 34×34, through :mod:`spaic_train.data.events`.

    Args:
        train_list, test_list: explicit SLAYER list files (default: ``train*.txt`` / ``test*.txt`` under root).
        time_steps, bin_ms: default 35 × 10 ms (every N-MNIST recording, max ~336 ms).
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
