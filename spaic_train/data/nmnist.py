"""N-MNIST (Orchard et al. 2015) event recordings → time-binned event-count frames.

File format (``.bin`` in the original release, ``.bs2`` in SLAYER's NMNISTsmall): 5 bytes per event,
big-endian bit fields::

    byte 0: x (0..33)     byte 1: y (0..33)
    bytes 2..4: bit 23 = polarity (1 = ON / brightness increase, 0 = OFF), bits 22..0 = timestamp in µs

Events with ``y == 240`` are timestamp-overflow markers (as in the reference MATLAB/tonic readers): they
are dropped and ``2**13`` µs is added to every later timestamp (they do not occur in N-MNIST recordings,
which last ~300 ms, far below the 2**23 µs wrap).

Labels come from list files (SLAYER layout, e.g. ``train1K.txt``/``test100.txt``: header line
``#sample #class``, then one ``<sample id>\\t<class>`` line per sample, sample ``<id>`` stored as
``<id>.bs2`` next to the list) or from the original folder layout ``root/{Train,Test}/<digit>/*.bin``.

Shapes: one sample is ``[T, 2, 34, 34]`` (time, polarity channel, y, x); the datamodule's collate function
:func:`time_first_collate` returns batches time first, ``x`` ``[T, B, 2, 34, 34]``, ``y`` ``[B]`` — the
engine's ``[T, B, *shape]`` convention.  With ``time_first=False`` the default collate gives ``[B, T, ...]``,
which must be transposed (``x.transpose(0, 1)``) before feeding the network.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset, Subset

from .base import DATASETS, DataNotFoundError, SpikeDataModule, split_indices

SENSOR_SIZE = (34, 34)  # (H, W) = (y, x)

#: dtype of :func:`read_nmnist_events`: pixel x/y, polarity p (0 OFF, 1 ON), timestamp t in µs
EVENT_DTYPE = np.dtype([("x", np.int16), ("y", np.int16), ("p", np.int8), ("t", np.int64)])


def decode_nmnist_events(raw: bytes | np.ndarray) -> np.ndarray:
    """Decode N-MNIST 5-byte events (see module docstring) into a structured array of :data:`EVENT_DTYPE`."""
    buf = np.frombuffer(raw, dtype=np.uint8) if isinstance(raw, (bytes, bytearray, memoryview)) else raw
    n = len(buf) // 5
    r = buf[: 5 * n].reshape(n, 5).astype(np.int64)
    x, y = r[:, 0], r[:, 1]
    p = r[:, 2] >> 7
    t = ((r[:, 2] & 0x7F) << 16) | (r[:, 3] << 8) | r[:, 4]
    overflow = y == 240
    if overflow.any():
        t = t + np.cumsum(overflow) * (1 << 13)
        keep = ~overflow
        x, y, p, t = x[keep], y[keep], p[keep], t[keep]
    ev = np.empty(len(t), dtype=EVENT_DTYPE)
    ev["x"], ev["y"], ev["p"], ev["t"] = x, y, p, t
    return ev


def read_nmnist_events(path: str | os.PathLike) -> np.ndarray:
    """Read one N-MNIST recording.

    Returns:
        Structured array ``[N]`` with fields ``x``, ``y`` (pixel, 0..33), ``p`` (polarity 0/1) and ``t``
        (timestamp, µs from the start of the recording), in file order (non-decreasing ``t``).
    """
    with open(path, "rb") as f:
        return decode_nmnist_events(f.read())


def events_to_frames(
    events: np.ndarray,
    time_steps: int | None = None,
    bin_ms: float = 1.0,
    clamp: bool = False,
    sensor_size: tuple[int, int] = SENSOR_SIZE,
    t_start_us: int = 0,
) -> np.ndarray:
    """Bin events into per-polarity count frames.

    Frame ``k`` counts the events with ``t_start_us + k * bin_ms * 1000 <= t < t_start_us + (k+1) * bin_ms * 1000``.

    Args:
        events: structured array with ``x``, ``y``, ``p``, ``t`` (µs), e.g. from :func:`read_nmnist_events`.
        time_steps: number of frames ``T``; events after ``T * bin_ms`` are dropped.  ``None``: just enough
            frames to hold the last event.
        bin_ms: frame width in ms.
        clamp: clip counts to 1 (binary spike frames).
        sensor_size: ``(H, W)``.
        t_start_us: time (µs) of the start of frame 0; earlier events are dropped.

    Returns:
        ``float32`` array ``[T, 2, H, W]`` (channel = polarity, row = y, column = x).
    """
    if bin_ms <= 0:
        raise ValueError(f"bin_ms must be > 0, got {bin_ms}")
    h, w = sensor_size
    t = events["t"].astype(np.int64) - int(t_start_us)
    b = np.floor_divide(t, bin_ms * 1000.0).astype(np.int64)
    if time_steps is None:
        time_steps = int(b.max()) + 1 if len(b) else 1
    keep = (b >= 0) & (b < time_steps)
    x = events["x"][keep].astype(np.int64)
    y = events["y"][keep].astype(np.int64)
    p = events["p"][keep].astype(np.int64)
    if len(x) and (x.max() >= w or y.max() >= h or x.min() < 0 or y.min() < 0):
        raise ValueError(f"event coordinates outside the sensor {sensor_size}")
    flat = ((b[keep] * 2 + p) * h + y) * w + x
    counts = np.bincount(flat, minlength=time_steps * 2 * h * w).astype(np.float32)
    frames = counts.reshape(time_steps, 2, h, w)
    if clamp:
        np.minimum(frames, 1.0, out=frames)
    return frames


def read_label_list(path: str | os.PathLike) -> list[tuple[str, int]]:
    """Parse a SLAYER-style list file: ``#`` comment/header lines, then ``<sample id> <class>`` per line
    (tab or space separated, CRLF tolerated).  Returns ``[(sample_id, label), ...]`` in file order."""
    out = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            parts = line.split()
            if len(parts) < 2:
                raise ValueError(f"{path}: malformed line {line!r} (expected '<sample id> <class>')")
            out.append((parts[0], int(parts[1])))
    return out


def _search_dirs(root: Path) -> list[Path]:
    dirs = [root]
    if root.is_dir():
        dirs += sorted(d for d in root.iterdir() if d.is_dir())
    return dirs


def find_samples(
    root: str | os.PathLike, split: str, list_file: str | os.PathLike | None = None
) -> tuple[list[Path], list[int]]:
    """Locate the recordings and labels of ``split`` (``"train"``/``"test"``).

    Order of lookup: ``list_file`` (explicit); a ``<split>*.txt`` list in ``root`` or one directory below
    (e.g. ``root/NMNISTsmall/train1K.txt``); the folder layout ``root/{Train,train,...}/<digit>/*.bin|*.bs2``.

    Returns:
        ``(paths, labels)``.

    Raises:
        DataNotFoundError: nothing found; the message names ``data.root`` and the layouts looked for.
    """
    root = Path(root).expanduser()
    lists = [Path(list_file).expanduser()] if list_file else [
        f for d in _search_dirs(root) if d.is_dir() for f in sorted(d.glob("*.txt")) if f.name.lower().startswith(split)
    ]
    for lf in lists:
        if not lf.is_file():
            raise DataNotFoundError(f"N-MNIST list file {lf} does not exist")
        paths, labels = [], []
        for sid, label in read_label_list(lf):
            cands = [lf.parent / f"{sid}{ext}" for ext in (".bs2", ".bin", "")]
            hit = next((c for c in cands if c.is_file()), None)
            if hit is None:
                raise DataNotFoundError(f"N-MNIST sample {sid!r} listed in {lf} not found ({cands[0]} / .bin)")
            paths.append(hit)
            labels.append(label)
        return paths, labels
    for d in _search_dirs(root):
        if d.is_dir() and d.name.lower() == split:
            paths, labels = [], []
            for cls in sorted(c for c in d.iterdir() if c.is_dir() and c.name.isdigit()):
                files = sorted(f for f in cls.iterdir() if f.suffix.lower() in (".bin", ".bs2"))
                paths += files
                labels += [int(cls.name)] * len(files)
            if paths:
                return paths, labels
    raise DataNotFoundError(
        f"N-MNIST {split} split not found under data.root={str(root)!r}: looked for a list file '{split}*.txt' "
        f"(lines '<sample id> <class>', recordings '<id>.bs2' next to it) in data.root or one level below, and for "
        f"the original layout data.root/{split.capitalize()}/<digit>/*.bin. Set data.root (or data.{split}_list) "
        f"to local N-MNIST files; there is no downloader."
    )


class NMNISTDataset(Dataset):
    """N-MNIST recordings as event-count frame sequences.

    Args:
        root: data directory (see :func:`find_samples`).
        split: ``"train"`` or ``"test"``.
        time_steps: frames per sample ``T``.
        bin_ms: frame width (ms); ``time_steps * bin_ms`` ms of each recording are kept (~300 ms recorded).
        clamp: clip counts to 1 (binary spikes).
        list_file: explicit list file for this split.
        cache: keep decoded events in memory after the first read (per worker process).
        transform: optional callable applied to the ``[T, 2, 34, 34]`` tensor.

    Items: ``(x, y)`` with ``x`` float32 ``[T, 2, 34, 34]`` (counts per bin; channel 0 = OFF, 1 = ON) and
    ``y`` an int64 scalar tensor.
    """

    def __init__(
        self,
        root: str | os.PathLike,
        split: str = "train",
        time_steps: int = 35,
        bin_ms: float = 10.0,
        clamp: bool = False,
        list_file: str | os.PathLike | None = None,
        cache: bool = True,
        transform: Callable | None = None,
    ):
        self.paths, self.labels = find_samples(root, split, list_file)
        self.time_steps = int(time_steps)
        self.bin_ms = float(bin_ms)
        self.clamp = bool(clamp)
        self.cache = bool(cache)
        self.transform = transform
        self._events: dict[int, np.ndarray] = {}

    def __len__(self) -> int:
        return len(self.paths)

    def events(self, i: int) -> np.ndarray:
        """Decoded events of sample ``i`` (see :func:`read_nmnist_events`)."""
        ev = self._events.get(i)
        if ev is None:
            ev = read_nmnist_events(self.paths[i])
            if self.cache:
                self._events[i] = ev
        return ev

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        frames = events_to_frames(self.events(i), self.time_steps, self.bin_ms, self.clamp)
        x = torch.from_numpy(frames)
        if self.transform is not None:
            x = self.transform(x)
        return x, torch.tensor(self.labels[i], dtype=torch.int64)


def time_first_collate(batch: Sequence[tuple[torch.Tensor, torch.Tensor]]) -> tuple[torch.Tensor, torch.Tensor]:
    """Collate ``[(x [T, ...], y), ...]`` into ``(x [T, B, ...], y [B])`` (time first, engine convention)."""
    xs, ys = zip(*batch)
    return torch.stack(xs, dim=1), torch.stack([torch.as_tensor(y, dtype=torch.int64) for y in ys])


@DATASETS.register("nmnist", "n-mnist")
class NMNISTDataModule(SpikeDataModule):
    """N-MNIST event-frame sequences (see module docstring for files and layouts).

    ``input_shape`` is the per-time-step shape ``(2, 34, 34)``; ``is_sequence`` is True and
    ``sequence_length`` is ``time_steps``.  Batches: ``x`` ``[T, B, 2, 34, 34]`` float32 (time first, via
    :func:`time_first_collate`) or ``[B, T, 2, 34, 34]`` when ``time_first=False``; ``y`` ``[B]`` int64.

    Args:
        root: directory holding the recordings and list files (e.g. ``.../nmnist-small`` or
            ``.../NMNISTsmall``), or the original ``Train``/``Test`` folder tree.
        batch_size, num_workers, seed, pin_memory, drop_last: see :class:`SpikeDataModule`.
        val_fraction: seeded, stratified fraction of the training recordings used for validation (default 0.1).
        time_steps: frames per sample ``T`` (default 35).
        bin_ms: frame width in ms (default 10; 35 × 10 ms = 350 ms covers every N-MNIST recording, max ~336 ms).
        clamp: clip counts to 1 (binary spike frames).
        time_first: collate batches as ``[T, B, ...]`` (default) instead of ``[B, T, ...]``.
        train_list, test_list: explicit list files (default: ``train*.txt`` / ``test*.txt`` found under root).
        cache: keep decoded events in memory.
        download: not supported (raises if True).
    """

    input_shape = (2, *SENSOR_SIZE)
    num_classes = 10
    is_sequence = True

    def __init__(
        self,
        root: str = "data",
        batch_size: int = 64,
        num_workers: int | str = "auto",
        val_fraction: float = 0.1,
        seed: int = 0,
        time_steps: int = 35,
        bin_ms: float = 10.0,
        clamp: bool = False,
        time_first: bool = True,
        train_list: str | None = None,
        test_list: str | None = None,
        cache: bool = True,
        download: bool = False,
        pin_memory: bool | str = "auto",
        drop_last: bool = False,
    ):
        super().__init__(batch_size, num_workers, seed, pin_memory, drop_last)
        if download:
            raise ValueError(
                "data.download=true is not supported for N-MNIST; download it manually and set data.root"
            )
        if time_steps < 1 or bin_ms <= 0:
            raise ValueError(f"data.time_steps must be >= 1 and data.bin_ms > 0, got {time_steps}, {bin_ms}")
        self.root = str(root)
        self.val_fraction = float(val_fraction)
        self.time_steps = int(time_steps)
        self.sequence_length = self.time_steps
        self.bin_ms = float(bin_ms)
        self.clamp = bool(clamp)
        self.time_first = bool(time_first)
        self.train_list, self.test_list = train_list, test_list
        self.cache = bool(cache)
        self.collate_fn = time_first_collate if self.time_first else None
        self.save_hyperparameters()

    def _dataset(self, split: str, list_file: str | None) -> NMNISTDataset:
        return NMNISTDataset(self.root, split, self.time_steps, self.bin_ms, self.clamp, list_file, self.cache)

    def _build(self) -> None:
        train = self._dataset("train", self.train_list)
        tr, va = split_indices(len(train), self.val_fraction, self.seed, labels=train.labels)
        self.train_set = Subset(train, tr.tolist())
        self.val_set = Subset(train, va.tolist()) if len(va) else None
        self.test_set = self._dataset("test", self.test_list)
