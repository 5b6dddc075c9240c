"""TensorBoard preview of event data: a few frames of one fixed validation sample, logged once at the start of
``fit`` as ``event_frames/sample_<i>`` (step 0), so what the network sees (bins, polarity, downsampling,
augmentation off) can be checked by eye.

Camera frames ``[T, C, H, W]``: ``n_frames`` frames evenly spaced over ``T`` side by side (1-pixel white gaps),
ON events red and OFF events green (``C = 2``) or grey (``C = 1``), each scaled by the sample's largest count.
Audio frames ``[T, channels]`` (SHD/SSC): one image, channels (rows) × time steps (columns).
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

import lightning.pytorch as pl
import torch
from torch import Tensor

from .tensorboard import _summary_writer


def event_frames_image(x: Tensor, n_frames: int = 8, scale: int = 1) -> Tensor:
    """``[3, H, W]`` float image in ``[0, 1]`` of one sample's frames ``x`` (``[T, C, H, W]`` or ``[T, N]``)."""
    x = x.detach().float().cpu()
    peak = float(x.max()) or 1.0
    x = x / peak
    if x.dim() == 2:  # audio: channels x time
        img = x.t().unsqueeze(0).expand(3, -1, -1)
    elif x.dim() == 4:
        t, c = x.shape[:2]
        picks = torch.linspace(0, t - 1, min(n_frames, t)).round().long().unique()
        tiles = []
        for k in picks:
            f = x[k]
            rgb = torch.stack([f[1], f[0], torch.zeros_like(f[0])]) if c == 2 else f[:1].expand(3, -1, -1)
            tiles += [rgb, torch.ones(3, f.shape[-2], 1)]
        img = torch.cat(tiles[:-1], dim=2)
    else:
        raise ValueError(f"event frames must be [T, C, H, W] or [T, channels], got shape {tuple(x.shape)}")
    return img.repeat_interleave(scale, dim=1).repeat_interleave(scale, dim=2).contiguous()


@runtime_checkable
class SequenceSamples(Protocol):
    """What the preview needs of a datamodule (:class:`spaic_train.data.SpikeDataModule`)."""

    is_sequence: bool
    train_set: Any
    val_set: Any

    def setup(self, stage: Any = None) -> None: ...


class EventFramePreview(pl.Callback):
    """Log :func:`event_frames_image` of validation sample ``sample`` once when ``fit`` starts (TensorBoard logger
    only; datamodules without sequence samples are skipped).

    Args:
        sample: index in the validation set (in its seeded order) of the sample shown.
        n_frames: frames shown side by side.
        scale: integer upscaling of small sensors (N-MNIST's 34×34).
    """

    def __init__(self, sample: int = 0, n_frames: int = 8, scale: int = 2):
        for key, v, low in (("sample", sample, 0), ("n_frames", n_frames, 1), ("scale", scale, 1)):
            if isinstance(v, bool) or not isinstance(v, int) or v < low:
                raise ValueError(f"EventFramePreview: {key} must be an int >= {low}, got {v!r}")
        self.sample, self.n_frames, self.scale = sample, n_frames, scale

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        writer = _summary_writer(trainer)
        dm = trainer.datamodule
        if writer is None or not isinstance(dm, SequenceSamples) or not dm.is_sequence or not trainer.is_global_zero:
            return
        dm.setup()
        ds = dm.val_set if dm.val_set is not None else dm.train_set
        if ds is None or len(ds) == 0:
            return
        x = ds[min(self.sample, len(ds) - 1)][0]
        writer.add_image(f"event_frames/sample_{self.sample}", event_frames_image(x, self.n_frames, self.scale), 0,
                         dataformats="CHW")
