"""Event-camera datasets: DVS Gesture, CIFAR10-DVS, N-Caltech101 (files and splits: :mod:`.layouts`,
:mod:`.splits`; frames: :mod:`.frames`)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

from ..base import DATASETS
from .datamodule import EventDataModule
from .datasets import EventSource
from .formats import read_aedat4, read_aedat31, read_bin, read_gesture_npy, read_jaer_dvs128
from .layouts import CIFAR10_DVS_CLASSES, GESTURE_CLASSES, Sample, find_cifar10_dvs, find_dvs_gesture, find_ncaltech101
from .splits import CIFAR10_DVS_SPLITS, NCALTECH101_SPLITS, per_class_rule


class CameraEvents(EventDataModule):
    """An event-camera dataset: frames ``[T, C, H, W]`` (``C`` = 2 polarities or 1 with ``polarity='merge'``).

    Args:
        split: the split rule for releases that ship none (CIFAR10-DVS: ``'tebn'`` default or ``'plif'``;
            N-Caltech101: ``'first20'``); ``None``: the dataset's default.  DVS Gesture has its own.
        (others: :class:`~.datamodule.EventDataModule`)
    """

    #: accepted values of ``split`` (first: default); empty for releases with their own split
    split_rules: tuple[str, ...] = ()

    def __init__(self, root: str = "data", batch_size: int = 16, num_workers: int = 0, val_fraction: float = 0.1,
                 seed: int = 0, time_steps: Optional[int] = None, bin_ms: Optional[float] = None,
                 bin_mode: Optional[str] = None, polarity: Optional[str] = None, downsample: Optional[int] = None,
                 denoise_ms: Optional[float] = None, clamp: bool = False, flip_lr: float = 0.0, translate_px: int = 0,
                 drop_event: float = 0.0, split: Optional[str] = None, cache: bool = True,
                 cache_dir: Optional[str] = None, time_first: bool = True, pin_memory: bool = False,
                 drop_last: bool = False):
        super().__init__(batch_size, num_workers, seed, pin_memory, drop_last)
        if split is not None and split not in self.split_rules:
            allowed = ", ".join(self.split_rules) if self.split_rules else "none (the release ships its split)"
            raise ValueError(f"data.split={split!r} is not a split of {self.dataset_name}; allowed: {allowed}")
        self.split = split if split is not None else (self.split_rules[0] if self.split_rules else None)
        self._init_events(root, val_fraction, time_steps, bin_ms, bin_mode, polarity, downsample, denoise_ms, clamp,
                          flip_lr, translate_px, drop_event, cache, cache_dir, time_first)
        self.save_hyperparameters()

    def _rule_split(self, samples: list[Sample]) -> tuple[list[int], list[int]]:
        return per_class_rule(samples, self.split)


@DATASETS.register("dvs_gesture", "dvsgesture", "dvs128_gesture")
class DVSGestureDataModule(CameraEvents):
    """IBM DVS Gesture (Amir et al. 2017): 11 classes, 128×128, train users 1–23 / test 24–29 (the release's
    ``trials_to_*.txt``), validation carved from training.  Reads IBM's AEDAT 3.1 trials + label CSVs (each
    gesture = the events of ``[startTime_usec, endTime_usec)``, frame 0 starting at ``startTime_usec``) or tonic's
    ``.npy`` repack.  Default frames: 20 with equal event counts (the PLIF paper's T=20, SpikingJelly
    ``split_by='number'``)."""

    dataset_name = "dvs_gesture"
    sensor_size = (128, 128)
    num_classes = len(GESTURE_CLASSES)
    classes = GESTURE_CLASSES
    defaults = {"time_steps": 20, "bin_mode": "events", "bin_ms": 10.0}

    def _discover(self):
        parts, self.layout = find_dvs_gesture(Path(self.root).expanduser())
        return parts

    def _source(self, partition, samples):
        return EventSource(samples, self.spec, read_aedat31 if self.layout == "aedat" else read_gesture_npy)


@DATASETS.register("cifar10_dvs", "cifar10dvs")
class CIFAR10DVSDataModule(CameraEvents):
    """CIFAR10-DVS (Li et al. 2017): 10 classes × 1000 recordings, 128×128.  Reads the jAER ``.aedat`` originals
    (turned upright as in SpikingJelly, :func:`~.formats.read_jaer_dvs128`) or tonic's ``.aedat4`` repack.
    ``split='tebn'`` (default; files 0–99 of each class test) or ``'plif'`` (first 90 % train), see
    :mod:`.splits`.  Default frames: 16 with equal event counts."""

    dataset_name = "cifar10_dvs"
    sensor_size = (128, 128)
    num_classes = 10
    classes = CIFAR10_DVS_CLASSES
    defaults = {"time_steps": 16, "bin_mode": "events", "bin_ms": 10.0}
    origin = "first"
    split_rules = CIFAR10_DVS_SPLITS

    def _discover(self):
        parts, self.layout = find_cifar10_dvs(Path(self.root).expanduser())
        return parts

    def _source(self, partition, samples):
        return EventSource(samples, self.spec, read_jaer_dvs128 if self.layout == "aedat" else read_aedat4)


@DATASETS.register("ncaltech101", "n-caltech101", "n_caltech101")
class NCaltech101DataModule(CameraEvents):
    """N-Caltech101 (Orchard et al. 2015): 101 classes (the class folders present, ``BACKGROUND_Google``
    excluded), recordings up to 240×180 (frames 180×240, events beyond cropped).  ``split='first20'``: the first
    20 % of each class by numeric index are the test set.  Default frames: 16 with equal event counts."""

    dataset_name = "ncaltech101"
    sensor_size = (180, 240)
    num_classes = 101
    defaults = {"time_steps": 16, "bin_mode": "events", "bin_ms": 10.0}
    origin = "first"
    split_rules = NCALTECH101_SPLITS

    def _discover(self):
        parts, self.classes = find_ncaltech101(Path(self.root).expanduser())
        self.num_classes = len(self.classes)
        return parts

    def _source(self, partition, samples):
        return EventSource(samples, self.spec, read_bin)
