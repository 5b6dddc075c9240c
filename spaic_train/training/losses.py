"""Loss functions for spiking networks, registry :data:`LOSSES`.

Shapes.  A network's output is either a per-sample tensor ``[B, C]`` (spike counts, rates or voltages, as
chosen by its decoder) or, for the ``'sequence'`` decoder, the whole output sequence ``[T, B, C]`` (time
first).  Targets are class indices ``[B]`` (``int64``) or per-class float targets ``[B, C]`` (one-hot or soft
labels).  An output is treated as a *sequence* when it has one dimension more than a per-sample output
matching the target (see :func:`is_sequence`): ``[T, B, C]`` with a ``[B]`` or ``[B, C]`` target.

Every loss returns a scalar (mean over the batch) and computes in ``float32`` whatever the autocast dtype
(outputs are upcast), so ``bf16-mixed`` training stays stable.

=============  ===========================================================================================
name           definition (``r`` = rate = mean over ``T`` of a sequence, ``n`` = count = sum over ``T``)
=============  ===========================================================================================
``ce_rate``    ``CE(scale · r, y)``; a ``[B, C]`` output is taken as the rate already.  ``scale`` (default 1)
               is a softmax temperature: rates lie in ``[0, 1]`` so with ``scale=1`` the softmax is soft
               (the loss cannot go below ``log(1 + (C-1)/e)``); it still trains, raise ``scale`` for sharper
               targets.
``ce_count``   ``CE(n, y)``; a ``[B, C]`` output is taken as the counts already (SPAIC's usual recipe).
``mse_count``  ``mean((n - n*)²)`` with target counts ``n* = T·correct_rate`` for the true class and
               ``T·incorrect_rate`` elsewhere (snnTorch ``mse_count_loss``; defaults ``1.0`` / ``0.0``).
               ``T`` is the sequence length, or ``num_steps`` for a ``[B, C]`` count output (the
               :class:`~spaic_train.training.SNNModule` fills it from the network when it can).  snnTorch
               additionally divides by ``T``: pass ``divide_by_steps=True`` for that.
``tet``        Temporal Efficient Training (Deng et al., ICLR 2022):
               ``(1-λ)·(1/T) Σ_t CE(O_t, y) + λ·mean((O - φ)²)``, ``λ = lamb`` (default 0: no regulariser),
               ``φ = means`` (default 1.0, the paper's code).  Needs a ``[T, B, C]`` sequence output (decoder
               ``'sequence'``); anything else raises a ``ValueError`` on the first batch.
``mse``        ``mean((r - t)²)``; ``t`` is one-hot for class-index targets (SpikingJelly's usual rate
               loss), else the target itself.  Sequences are averaged over ``T`` first.
``ce``         Plain ``CE(output, y)`` (the output are logits); a sequence is averaged over ``T`` first.
=============  ===========================================================================================

Any callable ``(output, target) -> scalar`` can be used instead of a name (:func:`get_loss`).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any, Optional, Union

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from spaic_train.registry import Registry

__all__ = [
    "LOSSES",
    "CECount",
    "CERate",
    "CrossEntropy",
    "MSE",
    "MSECount",
    "SpikeLoss",
    "TETLoss",
    "get_loss",
    "is_sequence",
    "reduce_time",
    "to_per_class_target",
]

#: Registry of loss classes; each is constructed with its keyword options and called as ``loss(output, target)``.
LOSSES: Registry = Registry("loss function")

LossLike = Union[str, Callable[[Tensor, Tensor], Tensor]]


def is_index_target(target: Tensor) -> bool:
    return not (torch.is_floating_point(target) or torch.is_complex(target))


def is_sequence(output: Tensor, target: Optional[Tensor] = None) -> bool:
    """Whether ``output`` carries a leading time axis.

    With a target: ``output.dim() == target.dim() + 2`` for class indices (``[T, B, C]`` vs ``[B]``) and
    ``output.dim() == target.dim() + 1`` for per-class targets (``[T, B, C]`` vs ``[B, C]``).  Without a
    target, any output of 3 or more dimensions is taken as ``[T, B, C]``.
    """
    if target is None:
        return output.dim() >= 3
    extra = 2 if is_index_target(target) else 1
    return output.dim() == target.dim() + extra


def reduce_time(output: Tensor, target: Optional[Tensor] = None, mode: str = "mean") -> Tensor:
    """Collapse the time axis of a sequence output (``[T, B, C]`` → ``[B, C]``); other outputs pass through.

    Args:
        output: ``[B, C]`` or ``[T, B, C]``.
        target: the batch's target, used to tell a sequence apart (see :func:`is_sequence`).
        mode: ``'mean'`` (rate, spikes per step) or ``'sum'`` (count).
    """
    if not is_sequence(output, target):
        return output
    return output.mean(0) if mode == "mean" else output.sum(0)


def to_per_class_target(target: Tensor, num_classes: int, on: float = 1.0, off: float = 0.0) -> Tensor:
    """``[B]`` class indices → ``[B, C]`` float targets (``on`` for the class, ``off`` elsewhere);
    float ``[B, C]`` targets are returned as ``float32``."""
    if not is_index_target(target):
        return target.float()
    check_class_indices(target, num_classes)
    onehot = F.one_hot(target.long(), num_classes).float()
    return onehot * (on - off) + off


def check_class_indices(target: Tensor, num_classes: int) -> None:
    """Raise a ``ValueError`` if a class-index target is outside ``[0, num_classes)``."""
    if target.numel() == 0 or not is_index_target(target):
        return
    lo, hi = int(target.min()), int(target.max())
    if lo < 0 or hi >= num_classes:
        raise ValueError(
            f"labels must be class indices in [0, {num_classes}) for an output of {num_classes} classes, "
            f"got labels in [{lo}, {hi}]"
        )


class SpikeLoss(nn.Module):
    """Base class of the registered losses: ``forward(output, target) -> scalar``.

    Attributes:
        requires_sequence: the loss needs a ``[T, B, C]`` output (decoder ``'sequence'``).
    """

    requires_sequence: bool = False

    def extra_repr(self) -> str:
        return ", ".join(f"{k}={v!r}" for k, v in vars(self).items() if not k.startswith("_") and k != "training")


def _ce(logits: Tensor, target: Tensor) -> Tensor:
    if is_index_target(target):
        check_class_indices(target, logits.shape[-1])
        return F.cross_entropy(logits.float(), target.long())
    return F.cross_entropy(logits.float(), target.float())


@LOSSES.register("ce_rate", "cross_entropy_rate")
class CERate(SpikeLoss):
    """Cross-entropy on the spike rate: ``CE(scale · rate, y)``.

    Args:
        scale: multiplies the rate (spikes per step, in ``[0, 1]``) before the softmax.

    ``output``: ``[T, B, C]`` spikes (averaged over ``T``) or ``[B, C]`` rates. ``target``: ``[B]`` or ``[B, C]``.
    """

    def __init__(self, scale: float = 1.0):
        super().__init__()
        self.scale = float(scale)

    def forward(self, output: Tensor, target: Tensor) -> Tensor:
        return _ce(reduce_time(output.float(), target, "mean") * self.scale, target)


@LOSSES.register("ce_count", "cross_entropy_count")
class CECount(SpikeLoss):
    """Cross-entropy on spike counts: ``CE(count, y)``.

    ``output``: ``[T, B, C]`` spikes (summed over ``T``) or ``[B, C]`` counts. ``target``: ``[B]`` or ``[B, C]``.
    """

    def forward(self, output: Tensor, target: Tensor) -> Tensor:
        return _ce(reduce_time(output.float(), target, "sum"), target)


@LOSSES.register("mse_count")
class MSECount(SpikeLoss):
    """MSE between spike counts and target counts (snnTorch's ``mse_count_loss``).

    Target count: ``T · correct_rate`` for the true class, ``T · incorrect_rate`` for the others (for a float
    ``[B, C]`` target ``t``: ``T · t``).

    Args:
        correct_rate: target firing rate (spikes per step) of the true class.
        incorrect_rate: target firing rate of the other classes.
        num_steps: ``T`` for ``[B, C]`` count outputs (ignored for sequences, whose length is used).
        divide_by_steps: divide the MSE by ``T`` as snnTorch does.

    ``output``: ``[T, B, C]`` spikes or ``[B, C]`` counts. ``target``: ``[B]`` or ``[B, C]``.
    """

    def __init__(self, correct_rate: float = 1.0, incorrect_rate: float = 0.0, num_steps: Optional[int] = None,
                 divide_by_steps: bool = False):
        super().__init__()
        self.correct_rate = float(correct_rate)
        self.incorrect_rate = float(incorrect_rate)
        self.num_steps = num_steps
        self.divide_by_steps = bool(divide_by_steps)

    def forward(self, output: Tensor, target: Tensor) -> Tensor:
        output = output.float()
        if is_sequence(output, target):
            steps = output.shape[0]
            counts = output.sum(0)
        else:
            if self.num_steps is None:
                raise ValueError(
                    "mse_count: the output is per-sample counts of shape "
                    f"{list(output.shape)}, so the number of time steps T is unknown; use the 'sequence' "
                    "decoder (output [T, B, C]) or pass num_steps=T (get_loss('mse_count', num_steps=T))"
                )
            steps = int(self.num_steps)
            counts = output
        goal = to_per_class_target(target, counts.shape[-1], self.correct_rate, self.incorrect_rate) * steps
        loss = F.mse_loss(counts, goal)
        return loss / steps if self.divide_by_steps else loss


@LOSSES.register("tet")
class TETLoss(SpikeLoss):
    """Temporal Efficient Training loss (Deng et al. 2022).

    ``L = (1 - lamb) · (1/T) Σ_t CE(O_t, y) + lamb · mean((O - means)²)``.

    Args:
        lamb: weight ``λ`` of the MSE regulariser (default 0: pure TET; the paper uses ~1e-3..0.05).
        means: ``φ``, the constant the regulariser pulls every output towards (default 1.0).

    ``output``: ``[T, B, C]`` (decoder ``'sequence'``; per-step outputs are used as logits).
    ``target``: ``[B]`` or ``[B, C]``.
    """

    requires_sequence = True

    def __init__(self, lamb: float = 0.0, means: float = 1.0):
        super().__init__()
        self.lamb = float(lamb)
        self.means = float(means)

    def forward(self, output: Tensor, target: Tensor) -> Tensor:
        if not is_sequence(output, target):
            raise ValueError(
                f"tet loss needs the whole output sequence [T, B, C] (decoder 'sequence'), got an output of "
                f"shape {list(output.shape)} for a target of shape {list(target.shape)}"
            )
        output = output.float()
        T = output.shape[0]
        # CE at every step: flatten time into the batch; mean over T·B == (1/T) Σ_t mean_b CE(O_t, y)
        tgt = target.unsqueeze(0).expand(T, *target.shape).reshape(T * target.shape[0], *target.shape[1:])
        loss = _ce(output.reshape(T * output.shape[1], *output.shape[2:]), tgt)
        if self.lamb != 0.0:
            reg = F.mse_loss(output, torch.full_like(output, self.means))
            loss = (1.0 - self.lamb) * loss + self.lamb * reg
        return loss


@LOSSES.register("mse")
class MSE(SpikeLoss):
    """MSE between the (time-averaged) output and the target; class indices become one-hot targets.

    ``output``: ``[B, C]`` or ``[T, B, C]`` (averaged over ``T``). ``target``: ``[B]`` (→ one-hot) or the
    output's per-sample shape.
    """

    def forward(self, output: Tensor, target: Tensor) -> Tensor:
        out = reduce_time(output.float(), target, "mean")
        goal = to_per_class_target(target, out.shape[-1]) if is_index_target(target) else target.float()
        return F.mse_loss(out, goal)


@LOSSES.register("ce", "cross_entropy", "crossentropy")
class CrossEntropy(SpikeLoss):
    """Plain cross-entropy on the output taken as logits (a sequence is averaged over ``T`` first).

    ``output``: ``[B, C]`` or ``[T, B, C]``. ``target``: ``[B]`` or ``[B, C]``.
    """

    def forward(self, output: Tensor, target: Tensor) -> Tensor:
        return _ce(reduce_time(output.float(), target, "mean"), target)


def get_loss(loss: LossLike, **kwargs: Any) -> Callable[[Tensor, Tensor], Tensor]:
    """Resolve a loss.

    Args:
        loss: a registered name (see :data:`LOSSES`), a loss class (``nn.Module`` subclass, instantiated with
            ``kwargs``) or any callable ``(output, target) -> scalar`` (returned as is).
        **kwargs: options of a named loss (e.g. ``get_loss('tet', lamb=0.05)``).

    Raises:
        ValueError: unknown name (the message lists the valid ones).
        TypeError: not a name nor a callable, or ``kwargs`` given with a loss instance.
    """
    if isinstance(loss, str):
        return LOSSES.get(loss, owner="loss")(**kwargs)
    if inspect.isclass(loss):
        return loss(**kwargs)
    if callable(loss):
        if kwargs:
            raise TypeError(f"loss options {sorted(kwargs)} can only be given with a loss name or class")
        return loss
    raise TypeError(f"loss must be a name ({LOSSES.describe()}) or a callable (output, target) -> scalar, "
                    f"got {loss!r}")
