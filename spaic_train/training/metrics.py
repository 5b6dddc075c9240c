"""Classification metrics, registry :data:`METRICS`.

A metric is a function ``(output, target) -> scalar tensor``: the *mean over the batch* of a per-sample score.
:class:`~spaic_train.training.SNNModule` logs it with ``batch_size=B`` and ``sync_dist=True``, so Lightning's
epoch value is the exact sample-weighted mean over the epoch and over all DDP processes
(``Σ_ranks Σ_batches B·m / Σ_ranks Σ_batches B``).  For validation and test, the samples a
``DistributedSampler`` repeats to even out the shards (when the data set size is not a multiple of the number
of processes) are not scored, so the value is that of the data set, as in one process.

Outputs are reduced first: a ``[T, B, C]`` sequence is averaged over ``T`` (:func:`reduce_time`); the score
is read from ``argmax`` over the last dimension, so it suits counts, rates and voltages (not
``first_spike`` times, where smaller means more likely: pass ``-output`` through a custom metric).
Float ``[B, C]`` targets (one-hot / soft) are turned into class indices by ``argmax``.

* ``accuracy`` (alias ``acc``): fraction of samples whose top class is the label.
* ``top5_accuracy`` (alias ``top5``): label among the 5 largest outputs (all classes if fewer than 5).
* ``mse``: mean squared error between the reduced output and the one-hot target (or the float target).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Union

import torch
import torch.nn.functional as F
from torch import Tensor

from spaic_train.registry import Registry

from .losses import is_index_target, reduce_time

__all__ = ["METRICS", "accuracy", "get_metric", "metric_name", "top5_accuracy", "topk_accuracy"]

#: Registry of metric functions ``(output, target) -> scalar`` (batch mean).
METRICS: Registry = Registry("metric")

MetricLike = Union[str, Callable[[Tensor, Tensor], Tensor]]


def _labels(target: Tensor) -> Tensor:
    return target.long() if is_index_target(target) else target.argmax(-1)


def topk_accuracy(output: Tensor, target: Tensor, k: int = 1) -> Tensor:
    """Fraction (``float32`` scalar in ``[0, 1]``) of samples whose label is among the ``k`` largest outputs.

    Ties (frequent with integer spike counts) count as broken uniformly at random, in expectation: a sample
    whose label shares the ``k``-th place with others scores the fraction of remaining places over tied
    classes (``argmax`` would silently pick class 0, so a silent network could score 100% on class-sorted
    data).

    Args:
        output: ``[B, C]`` or ``[T, B, C]`` (averaged over ``T``).
        target: ``[B]`` class indices or ``[B, C]`` float targets.
    """
    out = reduce_time(output.detach(), target, "mean")
    labels = _labels(target.detach())
    if out.shape[0] == 0:
        return torch.zeros((), device=out.device)
    # ties are broken uniformly at random, in expectation: a silent output layer (all scores equal)
    # scores chance level 1/C instead of whatever class argmax happens to pick first
    label_score = out.gather(-1, labels.unsqueeze(-1))
    above = (out > label_score).sum(-1)
    tied = (out == label_score).sum(-1)  # includes the label itself
    free_slots = (k - above).clamp(min=0)
    return (free_slots.float() / tied.float()).clamp(max=1.0).mean()


@METRICS.register("accuracy", "acc")
def accuracy(output: Tensor, target: Tensor) -> Tensor:
    """Top-1 accuracy (see :func:`topk_accuracy`)."""
    return topk_accuracy(output, target, 1)


@METRICS.register("top5_accuracy", "top5", "top_5_accuracy")
def top5_accuracy(output: Tensor, target: Tensor) -> Tensor:
    """Top-5 accuracy (see :func:`topk_accuracy`)."""
    return topk_accuracy(output, target, 5)


@METRICS.register("mse")
def mse(output: Tensor, target: Tensor) -> Tensor:
    """Mean squared error between the time-averaged output and the one-hot (or float) target."""
    out = reduce_time(output.detach().float(), target, "mean")
    if is_index_target(target):
        goal = F.one_hot(target.long(), out.shape[-1]).float()
    else:
        goal = target.detach().float()
    return F.mse_loss(out, goal)


def get_metric(metric: MetricLike) -> Callable[[Tensor, Tensor], Tensor]:
    """Resolve a metric name (see :data:`METRICS`) or return a callable ``(output, target) -> scalar`` as is."""
    if isinstance(metric, str):
        return METRICS.get(metric, owner="metrics")
    if callable(metric):
        return metric
    raise TypeError(f"metric must be a name ({METRICS.describe()}) or a callable, got {metric!r}")


def metric_name(metric: MetricLike) -> str:
    """The logging name of a metric: the canonical registry name, else the callable's ``__name__``."""
    if isinstance(metric, str):
        return METRICS.canonical(metric)
    return getattr(metric, "__name__", type(metric).__name__).lower()
