"""Events → frames, from a declarative :class:`FrameSpec` (the ``data.*`` keys of every event dataset).

Binning modes (``bin_mode``), all giving exactly ``time_steps`` frames:

* ``time``: frame ``k`` holds the events with ``origin + k·bin_ms <= t < origin + (k+1)·bin_ms`` (later events
  are dropped): the N-MNIST reader's rule, and SHD/SSC's 10 ms bins;
* ``duration``: the recording's span ``[t_first, t_last]`` cut into ``time_steps`` equal slices
  (``bin_ms`` unused);
* ``events``: ``time_steps`` slices with the same number of events, the last one taking the remainder
  (SpikingJelly's ``split_by='number'``, which the PLIF/TEBN DVS results use).

Before binning: ``denoise_ms`` drops every event with no event at a 4-neighbour pixel within that many ms before
it (``tonic.functional.denoise_numpy``, which lets every event of the first ``denoise_ms`` of a recording pass);
``downsample`` divides x and y by an integer factor (counts of a ``f × f`` pixel block add up); ``channels`` bins
SHD/SSC's 700 cochlea channels into ``channels`` groups of neighbouring channels (``unit · channels // 700``,
DCLS-Delays' 700 → 140 is ``channels=140``).  ``polarity``: ``split`` → 2 channels (0 = OFF, 1 = ON), ``merge`` →
1 channel with both.
Frames hold event counts; binarising (``clamp``) and augmentation happen later, after the cache
(:mod:`.augment`), so that they cannot make a cached frame stale.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import numpy as np

from .formats import require

BIN_MODES = ("time", "duration", "events")
POLARITY_MODES = ("split", "merge")


@dataclass(frozen=True)
class FrameSpec:
    """Everything that decides a sample's count frames (hashed into the cache key, see :mod:`.cache`).

    Args:
        sensor_size: ``(H, W)`` of the recordings (``(1, 700)`` for SHD/SSC: one row of 700 channels).
        time_steps: frames per sample ``T``.
        bin_ms: frame width in ms (``bin_mode='time'``).
        bin_mode: ``'time'``, ``'duration'`` or ``'events'`` (module docstring).
        polarity: ``'split'`` (2 channels) or ``'merge'`` (1 channel).
        downsample: integer spatial factor (1: none).
        denoise_ms: denoising window in ms (0: off).
        channels: SHD/SSC channel groups (``None``: keep all 700; audio only).
        origin: ``'zero'`` (``t = 0`` starts frame 0: N-MNIST, SHD) or ``'first'`` (the first event does:
            recordings with absolute timestamps, CIFAR10-DVS, N-Caltech101); DVS Gesture windows start at the
            label's ``startTime_usec`` (set per sample by the reader).
    """

    sensor_size: tuple[int, int]
    time_steps: int
    bin_ms: float = 10.0
    bin_mode: str = "time"
    polarity: str = "split"
    downsample: int = 1
    denoise_ms: float = 0.0
    channels: int | None = None
    origin: str = "zero"

    def __post_init__(self):
        if isinstance(self.time_steps, bool) or not isinstance(self.time_steps, int) or self.time_steps < 1:
            raise ValueError(f"data.time_steps must be an int >= 1, got {self.time_steps!r}")
        if self.bin_mode not in BIN_MODES:
            raise ValueError(f"data.bin_mode must be one of {', '.join(BIN_MODES)}, got {self.bin_mode!r}")
        if self.bin_mode == "time" and not self.bin_ms > 0:
            raise ValueError(f"data.bin_ms must be > 0 with bin_mode='time', got {self.bin_ms!r}")
        if self.polarity not in POLARITY_MODES:
            raise ValueError(f"data.polarity must be 'split' or 'merge', got {self.polarity!r}")
        if isinstance(self.downsample, bool) or not isinstance(self.downsample, int) or self.downsample < 1:
            raise ValueError(f"data.downsample must be an int >= 1, got {self.downsample!r}")
        if not self.denoise_ms >= 0:
            raise ValueError(f"data.denoise_ms must be >= 0 (0: off), got {self.denoise_ms!r}")
        if self.channels is not None and not 1 <= self.channels <= self.sensor_size[1]:
            raise ValueError(f"data.channels must be in [1, {self.sensor_size[1]}] or null, got {self.channels!r}")
        if self.origin not in ("zero", "first"):
            raise ValueError(f"origin must be 'zero' or 'first', got {self.origin!r}")

    @property
    def is_audio(self) -> bool:
        """SHD/SSC: no polarity, frames ``[T, channels]``."""
        return self.channels is not None

    @property
    def frame_shape(self) -> tuple[int, ...]:
        """Shape of one frame: ``(channels,)`` for audio, else ``(C, ceil(H/f), ceil(W/f))``."""
        if self.is_audio:
            return (self.channels,)
        h, w = self.sensor_size
        f = self.downsample
        return (2 if self.polarity == "split" else 1, math.ceil(h / f), math.ceil(w / f))

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)


def time_bins(t: np.ndarray, spec: FrameSpec, origin_us: int | None) -> np.ndarray:
    """Frame index of every event (``-1``: outside the ``time_steps`` frames) for ``t`` in µs, sorted."""
    n, steps = len(t), spec.time_steps
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    if spec.bin_mode == "events":
        per = n // steps
        if per == 0:  # fewer events than frames: one event per frame, the rest empty
            return np.arange(n, dtype=np.int64)
        return np.minimum(np.arange(n, dtype=np.int64) // per, steps - 1)
    if spec.bin_mode == "duration":
        span = int(t[-1]) - int(t[0]) + 1
        return (t.astype(np.int64) - int(t[0])) * steps // span
    if origin_us is None:
        origin_us = int(t[0]) if spec.origin == "first" else 0
    b = np.floor_divide(t.astype(np.int64) - int(origin_us), spec.bin_ms * 1000.0).astype(np.int64)
    b[(b < 0) | (b >= steps)] = -1
    return b


def events_to_counts(events: np.ndarray, spec: FrameSpec, origin_us: int | None = None) -> np.ndarray:
    """Count frames ``float32 [T, *spec.frame_shape]`` of one recording (:data:`~.formats.EVENT_DTYPE`, sorted
    by ``t``); ``origin_us`` overrides the spec's origin (DVS Gesture windows)."""
    ev = events
    if spec.denoise_ms > 0 and len(ev):
        tf = require("tonic.functional")
        ev = tf.denoise_numpy(ev, filter_time=spec.denoise_ms * 1000.0)
    h, w = spec.sensor_size
    x, y = ev["x"].astype(np.int64), ev["y"].astype(np.int64)
    inside = (x >= 0) & (x < w) & (y >= 0) & (y < h)
    if not inside.all():  # e.g. N-Caltech101 recordings wider than the common frame: cropped, not wrapped around
        ev, x, y = ev[inside], x[inside], y[inside]
    b = time_bins(ev["t"], spec, origin_us)
    keep = b >= 0
    b = b[keep]
    frame = spec.frame_shape
    if spec.is_audio:
        flat = b * frame[0] + x[keep] * spec.channels // w
    else:
        f = spec.downsample
        c = ev["p"][keep].astype(np.int64) if spec.polarity == "split" else np.zeros(len(b), dtype=np.int64)
        flat = ((b * frame[0] + c) * frame[1] + y[keep] // f) * frame[2] + x[keep] // f
    size = spec.time_steps * int(np.prod(frame))
    return np.bincount(flat, minlength=size).astype(np.float32).reshape(spec.time_steps, *frame)
