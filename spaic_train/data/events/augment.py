"""Training augmentation of event count frames, and the binarisation that follows it.

They act on the (cached) count frames ``[T, C, H, W]`` and are exactly the event-level augmentations:

* ``flip_lr``: with this probability the sample is mirrored left–right (event ``x → W-1-x``);
* ``translate_px``: the sample is shifted by integers ``(dx, dy)`` drawn uniformly from
  ``[-translate_px, translate_px]``; what leaves the frame is lost (events moved off the sensor are dropped);
* ``drop_event``: every event is dropped independently with this probability — on counts, each count ``n``
  becomes ``Binomial(n, 1 - drop_event)``, the same distribution as dropping events before binning with fixed
  bins (``bin_mode='time'``; with the other modes the bin edges are those of the full recording).

Random numbers come from torch's generator of the loading process (seeded per worker by the DataLoader), so a
seeded run is reproducible.  ``clamp`` (binary frames) is applied last.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class FrameAugment:
    """Augmentation settings (``data.flip_lr``, ``data.translate_px``, ``data.drop_event``); all off by default."""

    flip_lr: float = 0.0
    translate_px: int = 0
    drop_event: float = 0.0

    def __post_init__(self):
        for key in ("flip_lr", "drop_event"):
            v = getattr(self, key)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0.0 <= v <= 1.0:
                raise ValueError(f"data.{key} must be a probability in [0, 1], got {v!r}")
        if isinstance(self.translate_px, bool) or not isinstance(self.translate_px, int) or self.translate_px < 0:
            raise ValueError(f"data.translate_px must be an int >= 0, got {self.translate_px!r}")

    @property
    def active(self) -> bool:
        return self.flip_lr > 0 or self.translate_px > 0 or self.drop_event > 0

    def check_spatial(self, frame_shape: tuple[int, ...]) -> None:
        """Flips and translations need image frames ``(C, H, W)``."""
        if (self.flip_lr > 0 or self.translate_px > 0) and len(frame_shape) != 3:
            raise ValueError(f"data.flip_lr / data.translate_px need image frames (C, H, W), got frames of shape "
                             f"{frame_shape} (SHD/SSC have channels only; use data.drop_event)")

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """Augment one sample's count frames ``[T, ...]`` (a new tensor; ``x`` is not modified)."""
        if self.drop_event > 0:
            x = torch.binomial(x, torch.full_like(x, 1.0 - self.drop_event))
        if self.flip_lr > 0 and torch.rand(()) < self.flip_lr:
            x = x.flip(-1)
        if self.translate_px > 0:
            m = self.translate_px
            dy, dx = (int(v) for v in torch.randint(-m, m + 1, (2,)))
            x = shift(x, dy, dx)
        return x


def shift(x: torch.Tensor, dy: int, dx: int) -> torch.Tensor:
    """``x[..., H, W]`` moved down by ``dy`` and right by ``dx`` pixels, zeros where nothing moved in."""
    h, w = x.shape[-2:]
    out = torch.zeros_like(x)
    if abs(dy) >= h or abs(dx) >= w:
        return out
    out[..., max(dy, 0):h + min(dy, 0), max(dx, 0):w + min(dx, 0)] = \
        x[..., max(-dy, 0):h + min(-dy, 0), max(-dx, 0):w + min(-dx, 0)]
    return out
