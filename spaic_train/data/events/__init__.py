"""Event data: DVS Gesture, CIFAR10-DVS, N-Caltech101, SHD, SSC and N-MNIST as count-frame sequences.

Needs the ``events`` extra (``pip install -e ".[events]"`` in a clone, ``pip install 'spaic_train[events]'``: tonic
for the readers and transforms, h5py for SHD/SSC, aedat for AEDAT 4); without it a datamodule's ``setup`` raises a
:class:`~spaic_train.data.MissingExtraError` naming the extra (``python train.py``: that message alone, exit 2).
Every dataset is a registered datamodule (``build_datamodule(name, root=...)``):

================  ===============================  ====================================================
name              input_shape per step              release read (:mod:`.layouts`)
================  ===============================  ====================================================
``dvs_gesture``   ``(2, 128, 128)``                 IBM AEDAT 3.1 + label CSVs, or tonic's ``.npy`` repack
``cifar10_dvs``   ``(2, 128, 128)``                 jAER ``.aedat`` original, or tonic's ``.aedat4`` repack
``ncaltech101``   ``(2, 180, 240)``                 ``Caltech101/<class>/image_NNNN.bin``
``shd``           ``(channels,)``                   ``shd_train.h5``, ``shd_test.h5``
``ssc``           ``(channels,)``                   ``ssc_train.h5``, ``ssc_valid.h5``, ``ssc_test.h5``
``nmnist``        ``(2, 34, 34)``                   SLAYER lists + ``.bs2``, or ``Train|Test/<digit>/*.bin``
================  ===============================  ====================================================

(``downsample`` divides H and W; ``polarity='merge'`` makes one channel.)  Frames: :mod:`.frames`; augmentation:
:mod:`.augment`; the cache: :mod:`.cache`; splits and their hash: :mod:`.splits`.
"""

from .audio import SHDDataModule, SpikeAudio, SSCDataModule
from .augment import FrameAugment
from .cache import FrameCache, cache_key, open_or_build
from .datamodule import EventDataModule
from .datasets import EventFrames, EventSource
from .formats import (
    EVENT_DTYPE,
    CorruptEventFileError,
    SpikeHDF5,
    read_aedat4,
    read_aedat31,
    read_bin,
    read_gesture_npy,
    read_jaer_dvs128,
)
from .frames import FrameSpec, events_to_counts
from .layouts import CIFAR10_DVS_CLASSES, GESTURE_CLASSES, Sample, natural_key
from .nmnist import NMNISTDataModule
from .splits import RecordedSplit, per_class_rule, split_hash
from .vision import CameraEvents, CIFAR10DVSDataModule, DVSGestureDataModule, NCaltech101DataModule

__all__ = [
    "EVENT_DTYPE", "CorruptEventFileError", "SpikeHDF5", "read_aedat4", "read_aedat31", "read_bin",
    "read_gesture_npy", "read_jaer_dvs128", "FrameSpec", "events_to_counts", "FrameAugment", "FrameCache",
    "cache_key", "open_or_build", "EventDataModule", "EventFrames", "EventSource", "Sample", "natural_key",
    "per_class_rule", "split_hash", "RecordedSplit", "CameraEvents", "DVSGestureDataModule", "CIFAR10DVSDataModule",
    "NCaltech101DataModule", "SpikeAudio", "SHDDataModule", "SSCDataModule", "NMNISTDataModule",
    "GESTURE_CLASSES", "CIFAR10_DVS_CLASSES",
]
