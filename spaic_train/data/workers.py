"""How many DataLoader worker processes a datamodule uses: ``data.num_workers: auto`` and its companions.

``auto`` (the default of every datamodule) derives the number from the machine at the moment the loaders are
made, when the Lightning ``Trainer`` the datamodule is attached to is known:

* the cores this process may run on (``os.sched_getaffinity(0)``; ``os.cpu_count()`` where that is missing),
* shared among the training processes of this machine (``trainer.num_devices``: the DDP processes per node;
  1 without a trainer or with one device),
* minus one core per process for the training loop itself: ``workers = cores // processes - 1`` (never < 0).

Datasets where workers cannot help (small in-memory tensors with nothing to decode or augment: ``digits``,
``digits_rows``, ``delay_coincidence``) set :attr:`SpikeDataModule.loader_workers_help` to False and get 0.
``pin_memory: auto`` pins batches when the trainer's device is CUDA (asynchronous host-to-device copies);
``persistent_workers`` keeps the worker processes between epochs when there are workers and the fit runs more
than one epoch (not for a one-off ``evaluate`` / ``predict``).  An explicit number or boolean always wins.
The choice is logged once per datamodule (again only if it changes, e.g. for a test run on other devices).
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from typing import Any

log = logging.getLogger(__name__)

AUTO = "auto"


def available_cores() -> int:
    """Cores this process may run on: ``len(os.sched_getaffinity(0))``, else ``os.cpu_count()``, at least 1."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return max(1, os.cpu_count() or 1)


def check_num_workers(value: Any) -> int | str:
    """``'auto'`` or an int >= 0 (``data.num_workers``); anything else raises a ``ValueError`` naming the value."""
    if isinstance(value, str) and value.strip().lower() == AUTO:
        return AUTO
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"data.num_workers must be 'auto' or an int >= 0 (worker processes; 0 = load in the "
                         f"training process), got {value!r}")
    return int(value)


def check_pin_memory(value: Any) -> bool | str:
    """``'auto'`` or a bool (``data.pin_memory``)."""
    if isinstance(value, str) and value.strip().lower() == AUTO:
        return AUTO
    if not isinstance(value, bool):
        raise ValueError(f"data.pin_memory must be 'auto' or true/false, got {value!r}")
    return value


@dataclass(frozen=True)
class TrainerContext:
    """What the loader settings depend on: training processes on this machine, device type, and whether the
    loaders serve a fit of more than one epoch."""

    processes_per_machine: int = 1
    cuda: bool = False
    multi_epoch_fit: bool = False

    @classmethod
    def of(cls, trainer: Any) -> TrainerContext:
        """The context of a Lightning ``Trainer`` (``None``: one process on the CPU, loaders used once)."""
        if trainer is None:
            return cls()
        procs = int(getattr(trainer, "num_devices", 1) or 1)
        try:
            cuda = trainer.strategy.root_device.type == "cuda"
        except Exception:  # a trainer without a strategy yet (mocked or half-built)
            cuda = False
        fn = str(getattr(getattr(trainer, "state", None), "fn", "") or "")
        epochs = getattr(trainer, "max_epochs", None)
        fitting = fn.lower().endswith("fit") or fn.lower().endswith("fitting")
        return cls(procs, cuda, fitting and (epochs is None or epochs < 0 or epochs > 1))


@dataclass(frozen=True)
class LoaderOptions:
    """Resolved ``DataLoader`` settings and why (``reason`` is the text that is logged)."""

    num_workers: int
    pin_memory: bool
    persistent_workers: bool
    reason: str


def resolve_loader_options(num_workers: int | str, pin_memory: bool | str, workers_help: bool,
                           ctx: TrainerContext, cores: int | None = None) -> LoaderOptions:
    """``data.num_workers`` / ``data.pin_memory`` (each ``'auto'`` or explicit) for the machine and trainer ``ctx``.

    Example (2 cores, one process): ``resolve_loader_options('auto', 'auto', True, TrainerContext())`` →
    1 worker, no pinning.  With ``TrainerContext(processes_per_machine=2)`` on the same cores: 0 workers.
    """
    cores = available_cores() if cores is None else int(cores)
    procs = max(1, int(ctx.processes_per_machine))
    if num_workers != AUTO:
        workers, why = int(num_workers), f"data.num_workers={num_workers}"
    elif not workers_help:
        workers, why = 0, "data.num_workers=auto: in-memory data, nothing for workers to do"
    else:
        workers = max(0, cores // procs - 1)
        why = (f"data.num_workers=auto: {cores} core{'s' * (cores != 1)} / {procs} training "
               f"process{'es' * (procs != 1)} on this machine - 1 for training")
    pin = ctx.cuda if pin_memory == AUTO else bool(pin_memory)
    persistent = workers > 0 and ctx.multi_epoch_fit
    reason = (f"data loading: {workers} worker process{'es' * (workers != 1)} per training process ({why}), "
              f"pin_memory={pin}, persistent_workers={persistent}")
    return LoaderOptions(workers, pin, persistent, reason)
