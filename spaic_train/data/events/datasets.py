"""The torch side of the event datasets: reading one sample's counts (from the files or the cache) and the
``Dataset`` that augments and binarises them."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from .augment import FrameAugment
from .cache import FrameCache
from .formats import SpikeHDF5
from .frames import FrameSpec, events_to_counts
from .layouts import Sample


class EventSource:
    """Count frames of ``samples[i]`` straight from the files: ``reader(path) → events`` (or the HDF5 partition
    for SHD/SSC), a DVS Gesture window cut out of its trial, binned by ``spec``.

    The last whole file read is kept, so the gestures of one trial (consecutive samples) decode it once.
    """

    def __init__(self, samples: Sequence[Sample], spec: FrameSpec, reader: Callable | None = None,
                 hdf5: SpikeHDF5 | None = None):
        self.samples, self.spec, self.reader, self.hdf5 = list(samples), spec, reader, hdf5
        self._last: tuple = (None, None)

    def __len__(self) -> int:
        return len(self.samples)

    def events(self, i: int) -> tuple[np.ndarray, int | None]:
        """Events of sample ``i`` (time-sorted) and the origin of its frame 0 (``None``: the spec's)."""
        s = self.samples[i]
        if s.item is not None:
            return self.hdf5.events(s.item), None
        if self._last[0] != s.path:
            self._last = (s.path, self.reader(s.path))
        ev = self._last[1]
        if s.window_us is None:
            return ev, None
        a, b = s.window_us
        return ev[(ev["t"] >= a) & (ev["t"] < b)], a

    def __call__(self, i: int) -> np.ndarray:
        ev, origin = self.events(i)
        if len(ev) > 1 and np.any(np.diff(ev["t"]) < 0):
            ev = ev[np.argsort(ev["t"], kind="stable")]
        return events_to_counts(ev, self.spec, origin)

    def close(self) -> None:
        """Release the open file and the last decoded recording (after the cache is built)."""
        self._last = (None, None)
        if self.hdf5 is not None:
            self.hdf5.close()

    def __getstate__(self):
        return {**self.__dict__, "_last": (None, None)}


class CachedSource:
    """Count frames of the ``i``-th kept sample from a :class:`~.cache.FrameCache` (pickled by directory, so
    DataLoader workers memory-map the same files)."""

    def __init__(self, directory):
        self.directory = directory
        self.cache = FrameCache(directory)

    def __call__(self, i: int) -> np.ndarray:
        return self.cache.frames(i)

    def __getstate__(self):
        return {"directory": self.directory}

    def __setstate__(self, state):
        self.__init__(state["directory"])


class EventFrames(Dataset):
    """Samples ``(x, y)``: ``x`` float32 ``[T, *frame_shape]`` counts from ``source``, augmented (training) and
    clipped to 1 with ``clamp``; ``y`` int64.

    Args:
        source: ``source(i)`` → counts of sample ``i`` (:class:`EventSource` or :class:`CachedSource`).
        labels: class of each sample.
        augment: training augmentation (``None``: none).
        clamp: binary frames.
    """

    def __init__(self, source: Callable[[int], np.ndarray], labels: Sequence[int], augment: FrameAugment | None = None,
                 clamp: bool = False):
        self.source = source
        self.labels = np.asarray(labels, dtype=np.int64)
        self.augment = augment if augment is not None and augment.active else None
        self.clamp = bool(clamp)

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        x = torch.from_numpy(self.source(i))
        if self.augment is not None:
            x = self.augment(x)
        if self.clamp:  # numpy, in place: torch's threaded clamp costs ~10 ms per sample on a loaded CPU
            np.minimum(x.numpy(), 1.0, out=x.numpy())
        return x, torch.tensor(self.labels[i], dtype=torch.int64)
