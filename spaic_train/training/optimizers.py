"""Optimizers and learning-rate schedulers: registries :data:`OPTIMIZERS` and :data:`SCHEDULERS`.

Optimizers (``lr`` plus keyword options of the torch class):

* ``adam`` (:class:`torch.optim.Adam`), ``adamw`` (:class:`torch.optim.AdamW`),
  ``sgd`` (:class:`torch.optim.SGD`, ``momentum=0.0`` by default, ``nesterov``...),
  ``rmsprop`` (:class:`torch.optim.RMSprop`).
* or a :class:`torch.optim.Optimizer` subclass (called as ``cls(params, lr=lr, **kwargs)``),
* or a factory ``params -> Optimizer`` (called as ``factory(params)``; ``lr`` and kwargs are not passed).

Schedulers (stepped once per epoch unless noted; keyword options override the defaults):

* ``None`` / ``'none'`` / ``'constant'``: constant learning rate;
* ``cosine``: :class:`~torch.optim.lr_scheduler.CosineAnnealingLR`, ``T_max = max_epochs``, ``eta_min=0``;
* ``step``: :class:`~torch.optim.lr_scheduler.StepLR`, ``step_size = max(1, max_epochs // 3)``, ``gamma=0.1``;
* ``exponential``: :class:`~torch.optim.lr_scheduler.ExponentialLR`, ``gamma=0.95``;
* ``onecycle``: :class:`~torch.optim.lr_scheduler.OneCycleLR`, ``max_lr`` = each parameter group's ``lr``,
  ``total_steps`` = the trainer's estimated optimizer steps; stepped every optimizer step;
* ``plateau``: :class:`~torch.optim.lr_scheduler.ReduceLROnPlateau` monitoring ``val_loss`` (``train_loss``
  when there is no validation data; ``monitor=`` overrides; ``mode`` is ``'max'`` for accuracy-like names),
  ``factor=0.1``, ``patience=10``; an epoch where the monitored value is missing is skipped with a warning;
* or a :class:`~torch.optim.lr_scheduler.LRScheduler` subclass (``cls(optimizer, **kwargs)``), a factory
  ``optimizer -> scheduler``, or a full Lightning scheduler config ``dict``-returning factory.

Each registered scheduler factory is called as ``factory(optimizer, ctx, **kwargs)`` and returns a Lightning
``lr_scheduler`` config dict (``{'scheduler': ..., 'interval': ..., ...}``); ``ctx`` is a
:class:`SchedulerContext` with the base ``lr``, ``max_epochs``, ``total_steps`` and ``has_validation``.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterable
from typing import Any, Optional, Union

import torch
from torch.optim import Optimizer
from torch.optim import lr_scheduler as lrs

from spaic_train.registry import Registry

__all__ = [
    "OPTIMIZERS",
    "SCHEDULERS",
    "SchedulerContext",
    "build_optimizer",
    "build_scheduler",
    "check_optimizer",
    "check_scheduler",
]

#: Registry of optimizer factories ``(params, lr, **kwargs) -> Optimizer``.
OPTIMIZERS: Registry = Registry("optimizer")
#: Registry of scheduler factories ``(optimizer, ctx: SchedulerContext, **kwargs) -> Lightning scheduler dict``.
SCHEDULERS: Registry = Registry("scheduler")

OptimizerLike = Union[str, type, Callable[..., Optimizer]]
SchedulerLike = Union[None, str, type, Callable[..., Any]]


@OPTIMIZERS.register("adam")
def _adam(params: Iterable, lr: float, **kw: Any) -> Optimizer:
    return torch.optim.Adam(params, lr=lr, **kw)


@OPTIMIZERS.register("adamw")
def _adamw(params: Iterable, lr: float, **kw: Any) -> Optimizer:
    return torch.optim.AdamW(params, lr=lr, **kw)


@OPTIMIZERS.register("sgd")
def _sgd(params: Iterable, lr: float, momentum: float = 0.0, **kw: Any) -> Optimizer:
    return torch.optim.SGD(params, lr=lr, momentum=momentum, **kw)


@OPTIMIZERS.register("rmsprop")
def _rmsprop(params: Iterable, lr: float, **kw: Any) -> Optimizer:
    return torch.optim.RMSprop(params, lr=lr, **kw)


def check_optimizer(optimizer: OptimizerLike) -> None:
    """Validate an optimizer spec without building it (unknown names raise ``ValueError`` listing valid ones)."""
    if isinstance(optimizer, str):
        OPTIMIZERS.get(optimizer, owner="optimizer")
    elif isinstance(optimizer, Optimizer):
        raise TypeError("optimizer must be a name, an Optimizer class or a factory params -> Optimizer, not an "
                        "Optimizer instance (its parameters would not be the module's)")
    elif not callable(optimizer):
        raise TypeError(f"optimizer must be a name ({OPTIMIZERS.describe()}), an Optimizer class or a "
                        f"factory params -> Optimizer, got {optimizer!r}")


def build_optimizer(optimizer: OptimizerLike, params: Iterable, lr: float = 1e-3, **kwargs: Any) -> Optimizer:
    """Build an optimizer over ``params``.

    Args:
        optimizer: a name in :data:`OPTIMIZERS`, a :class:`torch.optim.Optimizer` subclass, or a factory
            ``params -> Optimizer`` (``lr``/``kwargs`` are then not used).
        params: parameters (or parameter groups) to optimize.
        lr: learning rate.
        **kwargs: extra options of the optimizer (``weight_decay``, ``momentum``, ``betas``...).
    """
    check_optimizer(optimizer)
    if isinstance(optimizer, str):
        return OPTIMIZERS.get(optimizer)(params, lr, **kwargs)
    if inspect.isclass(optimizer) and issubclass(optimizer, Optimizer):
        return optimizer(params, lr=lr, **kwargs)
    opt = optimizer(params)
    if not isinstance(opt, Optimizer):
        raise TypeError(f"optimizer factory {optimizer!r} returned {type(opt).__name__}, not a torch Optimizer")
    return opt


class SchedulerContext:
    """What a scheduler factory may need to know about the run.

    Attributes:
        lr: base learning rate.
        max_epochs: the trainer's ``max_epochs`` (``None`` when unbounded).
        total_steps: estimated number of optimizer steps of the whole fit (``None`` when unknown); computed on
            first access only (it may need to load the training dataloader).
        has_validation: whether validation data is attached (decides ``plateau``'s default monitor).
    """

    def __init__(self, lr: float, max_epochs: Optional[int] = None,
                 total_steps: Union[int, None, Callable[[], Optional[int]]] = None, has_validation: bool = True):
        self.lr = lr
        self.max_epochs = max_epochs
        self._total_steps = total_steps
        self.has_validation = has_validation

    @property
    def total_steps(self) -> Optional[int]:
        if callable(self._total_steps):
            self._total_steps = self._total_steps()
        return self._total_steps

    def __repr__(self) -> str:
        return (f"SchedulerContext(lr={self.lr}, max_epochs={self.max_epochs}, "
                f"has_validation={self.has_validation})")


def _need(value: Optional[int], what: str, name: str, kwarg: str) -> int:
    if value is None or value <= 0:
        raise ValueError(f"scheduler {name!r} needs {what}; pass it as scheduler_kwargs={{'{kwarg}': ...}}")
    return int(value)


@SCHEDULERS.register("constant", "none")
def _constant(optimizer: Optimizer, ctx: SchedulerContext, **kw: Any) -> None:
    return None


@SCHEDULERS.register("cosine", "cosineannealing")
def _cosine(optimizer: Optimizer, ctx: SchedulerContext, **kw: Any) -> dict:
    if "T_max" not in kw:
        kw["T_max"] = _need(ctx.max_epochs, "a bounded max_epochs", "cosine", "T_max")
    return {"scheduler": lrs.CosineAnnealingLR(optimizer, **kw), "interval": "epoch"}


@SCHEDULERS.register("step", "steplr")
def _step(optimizer: Optimizer, ctx: SchedulerContext, **kw: Any) -> dict:
    if "step_size" not in kw:
        kw["step_size"] = max(1, _need(ctx.max_epochs, "a bounded max_epochs", "step", "step_size") // 3)
    kw.setdefault("gamma", 0.1)
    return {"scheduler": lrs.StepLR(optimizer, **kw), "interval": "epoch"}


@SCHEDULERS.register("exponential", "exp")
def _exponential(optimizer: Optimizer, ctx: SchedulerContext, **kw: Any) -> dict:
    kw.setdefault("gamma", 0.95)
    return {"scheduler": lrs.ExponentialLR(optimizer, **kw), "interval": "epoch"}


@SCHEDULERS.register("onecycle", "one_cycle")
def _onecycle(optimizer: Optimizer, ctx: SchedulerContext, **kw: Any) -> dict:
    kw.setdefault("max_lr", [g["lr"] for g in optimizer.param_groups])
    if "total_steps" not in kw and not ("epochs" in kw and "steps_per_epoch" in kw):
        kw["total_steps"] = _need(ctx.total_steps, "the number of optimizer steps", "onecycle", "total_steps")
    return {"scheduler": lrs.OneCycleLR(optimizer, **kw), "interval": "step"}


@SCHEDULERS.register("plateau", "reducelronplateau")
def _plateau(optimizer: Optimizer, ctx: SchedulerContext, **kw: Any) -> dict:
    monitor = kw.pop("monitor", None) or ("val_loss" if ctx.has_validation else "train_loss")
    mode = kw.pop("mode", "max" if "acc" in monitor else "min")
    kw.setdefault("factor", 0.1)
    kw.setdefault("patience", 10)
    return {"scheduler": lrs.ReduceLROnPlateau(optimizer, mode=mode, **kw), "interval": "epoch",
            "monitor": monitor, "strict": False}


def check_scheduler(scheduler: SchedulerLike) -> None:
    """Validate a scheduler spec without building it (unknown names raise ``ValueError`` listing valid ones)."""
    if scheduler is None:
        return
    if isinstance(scheduler, str):
        SCHEDULERS.get(scheduler, owner="scheduler")
    elif not callable(scheduler):
        raise TypeError(f"scheduler must be None, a name ({SCHEDULERS.describe()}), an LRScheduler class "
                        f"or a factory optimizer -> scheduler, got {scheduler!r}")


def build_scheduler(scheduler: SchedulerLike, optimizer: Optimizer, ctx: SchedulerContext,
                    **kwargs: Any) -> Optional[dict]:
    """Build a Lightning ``lr_scheduler`` config dict (or ``None`` for a constant learning rate).

    Args:
        scheduler: ``None``, a name in :data:`SCHEDULERS`, an LRScheduler class (``cls(optimizer, **kwargs)``),
            or a factory ``optimizer -> scheduler`` (or ``-> Lightning scheduler dict``).
        optimizer: the optimizer to schedule.
        ctx: run information (see :class:`SchedulerContext`).
        **kwargs: options overriding the defaults of a named scheduler; for a class, its constructor options.
    """
    check_scheduler(scheduler)
    if scheduler is None:
        return None
    if isinstance(scheduler, str):
        return SCHEDULERS.get(scheduler)(optimizer, ctx, **dict(kwargs))
    sched = scheduler(optimizer, **kwargs) if inspect.isclass(scheduler) else scheduler(optimizer)
    if sched is None or isinstance(sched, dict):
        return sched
    if isinstance(sched, lrs.ReduceLROnPlateau):
        return {"scheduler": sched, "interval": "epoch", "monitor": "val_loss" if ctx.has_validation else "train_loss"}
    return {"scheduler": sched, "interval": "epoch"}
