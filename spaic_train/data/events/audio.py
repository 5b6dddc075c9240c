"""Spiking audio: SHD and SSC (Cramer et al. 2020), HDF5 files of cochlea-model spikes on 700 channels."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

from ..base import DATASETS
from .datamodule import EventDataModule
from .datasets import EventSource
from .formats import SpikeHDF5
from .layouts import Sample, find_hdf5


class SpikeAudio(EventDataModule):
    """SHD/SSC spikes binned into frames ``[T, channels]``: ``bin_ms`` wide bins from ``t = 0`` and the 700
    channels in ``channels`` groups of neighbours (DCLS-Delays: 10 ms, ``channels=140``).

    Args:
        channels: channel groups, 1..700 (default 700: no grouping).
        time_steps: bins (default: the longest recording, SHD 150 × 10 ms, SSC 100 × 10 ms).
        (others: :class:`~.datamodule.EventDataModule`; ``drop_event`` is the only augmentation of channels)
    """

    sensor_size = (1, 700)
    partitions: tuple[str, ...] = ("train", "test")
    requires = ("h5py",)  # no tonic: the spikes are binned without it (denoising is for cameras)

    def __init__(self, root: str = "data", batch_size: int = 64, num_workers: int = 0, val_fraction: float = 0.1,
                 seed: int = 0, channels: int = 700, time_steps: Optional[int] = None, bin_ms: float = 10.0,
                 clamp: bool = False, drop_event: float = 0.0, cache: bool = True, cache_dir: Optional[str] = None,
                 time_first: bool = True, pin_memory: bool = False, drop_last: bool = False):
        super().__init__(batch_size, num_workers, seed, pin_memory, drop_last)
        self.audio_channels = int(channels)
        self.channels = int(channels)
        self._init_events(root, val_fraction, time_steps, bin_ms, "time", "merge", 1, 0.0, clamp, 0.0, 0, drop_event,
                          cache, cache_dir, time_first)
        self.save_hyperparameters()

    def _discover(self):
        self.files = find_hdf5(self.dataset_name, Path(self.root).expanduser(), self.partitions)
        self.hdf5 = {p: SpikeHDF5(f) for p, f in self.files.items()}
        return {p: [Sample(f, int(y), item=i, group=p, index=i) for i, y in enumerate(self.hdf5[p].labels)]
                for p, f in self.files.items()}

    def _source(self, partition, samples):
        return EventSource(samples, self.spec, hdf5=self.hdf5[partition])


@DATASETS.register("shd")
class SHDDataModule(SpikeAudio):
    """Spiking Heidelberg Digits: 20 classes (English and German digits), ``shd_train.h5`` and ``shd_test.h5``;
    validation carved from training."""

    dataset_name = "shd"
    num_classes = 20
    defaults = {"time_steps": 150}


@DATASETS.register("ssc")
class SSCDataModule(SpikeAudio):
    """Spiking Speech Commands: 35 classes, ``ssc_train.h5``, ``ssc_valid.h5`` (the release's validation set)
    and ``ssc_test.h5``."""

    dataset_name = "ssc"
    num_classes = 35
    defaults = {"time_steps": 100}
    partitions = ("train", "valid", "test")
