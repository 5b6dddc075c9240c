"""Datasets and LightningDataModules for spaic_train.

Use :func:`build_datamodule` with a registered name (``DATASETS.names()``) and the ``data.*`` config keys::

    dm = build_datamodule("mnist", root="/data/mnist", batch_size=128)
    dm.input_shape, dm.num_classes            # (1, 28, 28), 10
    x, y = next(iter(dm.train_dataloader()))  # x [B, 1, 28, 28] float32, y [B] int64

===============  ==========================  ================================================================
name             input_shape / batches        source
===============  ==========================  ================================================================
``digits``       ``(1, 8, 8)``                scikit-learn bundled digits, 60/20/20 stratified split
``digits_rows``  ``(8,)`` per step            the same digits row by row → ``x`` ``[8 · steps_per_row, B, 8]``
``mnist``        ``(1, 28, 28)``              idx files (gz/raw), CSV training subset, or torchvision download
``cifar10``      ``(3, 32, 32)``              torchvision batches or ImageFolder tree / ``.tar`` of JPEGs
``folder``       ``(C, H, W)``                any ImageFolder tree / archive
===============  ==========================  ================================================================

Event data (DVS Gesture, CIFAR10-DVS, N-Caltech101, SHD, SSC and ``nmnist``: N-MNIST events → ``x``
``[T, B, 2, 34, 34]``) is :mod:`spaic_train.data.events`; it needs the ``events`` extra (tonic), and without it
``setup`` raises a :class:`MissingExtraError` naming the extra.

``delay_coincidence``: a generated task only synaptic delays solve (which pair of channels fires with which lag),
``input_shape`` ``(channels,)`` per step, ``x`` ``[T, B, channels]`` with one spike per channel
(:mod:`spaic_train.data.delay_coincidence`).

Loading: ``num_workers`` / ``pin_memory`` default to ``'auto'`` (:mod:`spaic_train.data.workers`: worker processes
from the cores and the training processes per machine, printed once); ``cifar10`` from image files decodes them once
into a ``uint8`` cache and only augments per epoch (:mod:`spaic_train.data.decoded`, ``decode_once``).
"""

from . import events  # noqa: F401  registers the event datasets (dvs_gesture, cifar10_dvs, ncaltech101, shd, ssc, ...)
from .base import (
    DATASETS,
    DataNotFoundError,
    ImageTensorDataset,
    MissingExtraError,
    SpikeDataModule,
    build_datamodule,
    first_per_class,
    split_indices,
)
from .cifar import CIFAR10_CLASSES, CIFAR10_MEAN, CIFAR10_STD, CIFAR10DataModule
from .collate import batch_first_collate, time_first_collate
from .delay_coincidence import DelayCoincidenceDataModule
from .digits import DigitsDataModule
from .digits_rows import DigitsRowsDataModule, RowSequenceDataset
from .events import NMNISTDataModule
from .folder import ImageFolderDataModule, default_cache_dir, extract_tar, resolve_split_dir
from .mnist import MNIST_MEAN, MNIST_STD, MNISTDataModule, find_mnist_csv, find_mnist_file, read_idx, read_mnist_csv

__all__ = [
    "DataNotFoundError",
    "DATASETS",
    "build_datamodule",
    "SpikeDataModule",
    "ImageTensorDataset",
    "split_indices",
    "first_per_class",
    "DelayCoincidenceDataModule",
    "DigitsDataModule",
    "DigitsRowsDataModule",
    "RowSequenceDataset",
    "MNISTDataModule",
    "MNIST_MEAN",
    "MNIST_STD",
    "read_idx",
    "read_mnist_csv",
    "find_mnist_file",
    "find_mnist_csv",
    "CIFAR10DataModule",
    "CIFAR10_MEAN",
    "CIFAR10_STD",
    "CIFAR10_CLASSES",
    "ImageFolderDataModule",
    "extract_tar",
    "resolve_split_dir",
    "default_cache_dir",
    "NMNISTDataModule",
    "MissingExtraError",
    "time_first_collate",
    "batch_first_collate",
]
