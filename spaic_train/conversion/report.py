"""Accuracy of a converted SNN over the number of steps ``T``, next to its ANN's (a table and a PNG curve)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Union

import torch
from torch import nn

from .calibration import as_input_of

__all__ = ["ConversionReport", "conversion_report"]


@dataclass
class ConversionReport:
    """``ann_accuracy`` and ``accuracy[T]`` (fractions in ``[0, 1]``) on ``samples`` samples."""

    ann_accuracy: float
    accuracy: dict = field(default_factory=dict)
    samples: int = 0

    def gap(self, T: int) -> float:
        """SNN minus ANN accuracy at ``T``, in percentage points."""
        return 100.0 * (self.accuracy[T] - self.ann_accuracy)

    def table(self) -> str:
        """A Markdown table: one row per ``T`` with the SNN accuracy and its gap to the ANN."""
        rows = [f"| T | SNN accuracy | SNN − ANN (ANN {100 * self.ann_accuracy:.2f} %) |", "|---|---|---|"]
        rows += [f"| {T} | {100 * a:.2f} % | {self.gap(T):+.2f} |" for T, a in sorted(self.accuracy.items())]
        return "\n".join(rows)

    def __str__(self) -> str:
        return f"conversion report on {self.samples} samples\n{self.table()}"

    def plot(self, path: Union[str, Path], title: Optional[str] = None) -> Path:
        """Write the accuracy-vs-T curve (log-2 axis) with the ANN's accuracy as a line to ``path`` (PNG)."""
        try:
            import matplotlib

            matplotlib.use("Agg")
            import matplotlib.pyplot as plt
        except ImportError as e:
            raise ImportError("ConversionReport.plot needs matplotlib: pip install 'spaic_train[convert]'") from e
        steps = sorted(self.accuracy)
        fig, ax = plt.subplots(figsize=(5, 3.5))
        ax.plot(steps, [100 * self.accuracy[T] for T in steps], "o-", label="SNN")
        ax.axhline(100 * self.ann_accuracy, color="gray", ls="--", label="ANN")
        ax.set_xscale("log", base=2)
        ax.set_xticks(steps, [str(T) for T in steps])
        ax.set_xlabel("time steps T")
        ax.set_ylabel("accuracy (%)")
        ax.set_title(title or f"ANN → SNN ({self.samples} samples)")
        ax.legend()
        fig.tight_layout()
        path = Path(path)
        fig.savefig(path, dpi=120)
        plt.close(fig)
        return path


def _pairs(data, batch_size: int):
    if isinstance(data, (tuple, list)) and len(data) == 2 and isinstance(data[0], torch.Tensor):
        x, y = data
        for i in range(0, len(x), batch_size):
            yield x[i:i + batch_size], y[i:i + batch_size]
        return
    for batch in data:
        if not isinstance(batch, (tuple, list)) or len(batch) < 2:
            raise TypeError("conversion_report: data must be (x, y) or an iterable of (x, y) batches")
        yield batch[0], batch[1]


def _accuracy_over_time(snn: nn.Module, x: torch.Tensor, y: torch.Tensor, steps: list) -> list:
    """Correct predictions at every ``T`` in ``steps`` from one run of ``max(steps)`` steps: the network runs in
    chunks up to each ``T`` (``reset=False`` continues exactly, as one longer run), and the output over the first
    ``T`` steps is the step-weighted mean of the chunks' outputs (each a mean over its steps)."""
    total, done, hits = None, 0, {}
    for T in sorted(set(steps)):
        out = snn(x, time_steps=T - done, reset=done == 0)
        total = out * (T - done) if total is None else total + out * (T - done)
        done = T
        hits[T] = int((total.argmax(1).cpu() == y).sum())
    return [hits[T] for T in steps]


def conversion_report(snn: Union[nn.Module, Mapping], ann: nn.Module, data,
                      time_steps: Sequence[int] = (4, 8, 16, 32, 64), batch_size: int = 256,
                      plot: Union[str, Path, None] = None) -> ConversionReport:
    """Accuracy of ``snn`` at each ``T`` in ``time_steps`` and of ``ann`` on the same labelled ``data``.

    Args:
        snn: a converted model (a spiking ``Network`` whose output is a mean over the steps, such as the
            ``spike_rate`` decoder of :func:`~spaic_train.convert`'s models, and whose argmax is the class), or a
            mapping ``{T: model}`` of one model per ``T`` (e.g. each converted with ``calibrate='bias',
            calibrate_steps=T``): each ``T`` is then evaluated on its own model.
        ann: the ANN it came from.
        data: ``(x, y)`` tensors or an iterable of ``(x, y)`` batches (a ``DataLoader``).
        time_steps: the values of ``T`` (positive ints; keys of ``snn`` when it is a mapping).
        batch_size: batch size for tensors.
        plot: a path: also write the curve there as a PNG (needs matplotlib, the ``convert`` extra).
    """
    steps = list(time_steps)
    if not steps or any(isinstance(T, bool) or not isinstance(T, int) or T < 1 for T in steps):
        raise ValueError(f"conversion_report: time_steps must be positive ints, got {time_steps!r}")
    per_step = isinstance(snn, Mapping)
    if per_step:
        missing = [T for T in steps if T not in snn]
        if missing:
            raise ValueError(f"conversion_report: snn is a mapping {{T: model}} without a model for T = "
                             f"{', '.join(map(str, missing))} (it has T = {', '.join(map(str, sorted(snn)))})")
        models = {T: snn[T] for T in steps}
    else:
        models = {T: snn for T in steps}
    modes = {id(m): (m, m.training) for m in [*models.values(), ann]}
    for model, _ in modes.values():
        model.eval()
    hits = {T: 0 for T in steps}
    ann_hits = n = 0
    try:
        with torch.no_grad():
            for x, y in _pairs(data, batch_size):
                y = y.reshape(-1)
                ann_hits += int((ann(as_input_of(ann, x)).argmax(1).cpu() == y).sum())
                if per_step:
                    for T in steps:
                        hits[T] += _accuracy_over_time(models[T], x, y, [T])[0]
                else:
                    for T, hit in zip(steps, _accuracy_over_time(snn, x, y, steps)):
                        hits[T] += hit
                n += len(y)
    finally:
        for model, mode in modes.values():
            model.train(mode)
    if n == 0:
        raise ValueError("conversion_report: data holds no samples")
    report = ConversionReport(ann_hits / n, {T: hits[T] / n for T in steps}, n)
    if plot is not None:
        report.plot(plot)
    return report
