"""A generated task that only synaptic delays solve: delayed coincidences between pairs of input channels.

Every sample is ``channels`` spike trains over ``time_steps`` steps in which **every channel fires exactly
once**, at a step in ``[0, window)`` (the remaining ``time_steps − window`` steps are silent, so that delayed
spikes still arrive): spike counts carry no information.  Class ``c`` has a rule ``(i_c, j_c, L_c)``: channel
``j_c`` fires exactly ``L_c`` steps after channel ``i_c`` (``min_lag <= L_c <= max_lag``).  In a sample of class
``c``:

* ``t[i_c]`` is uniform in ``[0, window − L_c)`` and ``t[j_c] = t[i_c] + L_c``;
* every other channel fires at a uniform time in ``[0, window)``, redrawn until no other class's rule holds
  (``t[j_c'] − t[i_c'] != L_c'`` for every ``c' != c``), so the rule of class ``c`` holds exactly in the samples
  of class ``c``.

The ``num_classes`` rules are drawn from ``task_seed`` (distinct ordered channel pairs, or the same pair with lags
at least 2 apart), the samples from ``seed`` (train, validation and test from independent streams); classes are
balanced.  A neuron that receives channel ``i_c`` with a delay ``L_c`` longer than channel ``j_c`` sees both spikes
at once — a coincidence a short membrane time constant detects — whereas without delays the two spikes are
``L_c`` steps apart, and with fixed random delays only a neuron whose delay difference happens to equal ``L_c``
sees the coincidence.
"""

from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import Dataset

from .base import DATASETS, SpikeDataModule
from .collate import time_first_collate

__all__ = ["DelayCoincidenceDataModule", "coincidence_rules", "coincidence_spike_times"]

#: smallest difference between the lags of two rules on the same ordered channel pair
PAIR_LAG_GAP = 2


def coincidence_rules(channels: int, num_classes: int, min_lag: int, max_lag: int,
                      seed: int) -> list[tuple[int, int, int]]:
    """``num_classes`` rules ``(i, j, lag)``: channel ``j`` fires ``lag`` steps after channel ``i`` (seeded).

    Two rules on the same ordered pair have lags at least :data:`PAIR_LAG_GAP` apart.
    """
    rng = np.random.default_rng(seed)
    rules: list[tuple[int, int, int]] = []
    for _ in range(100 * num_classes):
        if len(rules) == num_classes:
            break
        i, j = (int(v) for v in rng.choice(channels, size=2, replace=False))
        lag = int(rng.integers(min_lag, max_lag + 1))
        if all((a, b) != (i, j) or abs(lag - m) >= PAIR_LAG_GAP for a, b, m in rules):
            rules.append((i, j, lag))
    if len(rules) < num_classes:
        raise ValueError(f"data: cannot draw {num_classes} distinguishable rules from {channels} channels and lags "
                         f"{min_lag}..{max_lag}; use more channels or a wider lag range")
    return rules


def coincidence_spike_times(labels: np.ndarray, rules: list[tuple[int, int, int]], channels: int, window: int,
                            rng: np.random.Generator) -> np.ndarray:
    """Spike time of every channel, ``[N, channels]`` int64, for samples of class ``labels`` ``[N]``.

    See the module docstring for the distribution.
    """
    n = len(labels)
    rule = np.asarray(rules, dtype=np.int64)[labels]  # [N, 3]
    rows = np.arange(n)
    times = np.empty((n, channels), dtype=np.int64)
    first = rng.integers(0, window - rule[:, 2])
    todo = np.ones(n, dtype=bool)
    while todo.any():
        idx = np.flatnonzero(todo)
        times[idx] = rng.integers(0, window, size=(len(idx), channels))
        times[rows, rule[:, 0]] = first
        times[rows, rule[:, 1]] = first + rule[:, 2]
        clash = np.zeros(n, dtype=bool)
        for c, (i, j, lag) in enumerate(rules):
            clash |= (labels != c) & (times[:, j] - times[:, i] == lag)
        todo = clash
    return times


class _SpikeTimesDataset(Dataset):
    """Item ``i``: ``(x [time_steps, channels] float32 with one 1 per channel, y)``."""

    def __init__(self, times: np.ndarray, labels: np.ndarray, time_steps: int):
        n, channels = times.shape
        x = torch.zeros(n, time_steps, channels)
        x[torch.arange(n)[:, None], torch.as_tensor(times), torch.arange(channels)[None, :]] = 1.0
        self.x = x
        self.labels = torch.as_tensor(labels, dtype=torch.int64)

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.x[i], self.labels[i]


@DATASETS.register("delay_coincidence", "coincidence")
class DelayCoincidenceDataModule(SpikeDataModule):
    """The delayed-coincidence task (see the module docstring).

    ``input_shape`` is ``(channels,)`` per step; ``is_sequence`` is True, ``sequence_length`` is ``time_steps``.
    Batches: ``x`` ``[T, B, channels]`` float32 spikes (time first) or ``[B, T, channels]`` with
    ``time_first=False``; ``y`` ``[B]`` int64.

    Args:
        batch_size, num_workers, seed, pin_memory, drop_last: see :class:`SpikeDataModule`; ``seed`` also draws
            the samples.
        channels: number of input channels (each fires once per sample).
        num_classes: number of classes (rules).
        time_steps: steps per sample ``T``.
        window: the spikes fall in the first ``window`` steps (``<= time_steps``).
        min_lag, max_lag: range of the rules' lags (steps, ``1 <= min_lag <= max_lag < window``).
        train_size, val_size, test_size: samples per split (``val_size`` may be 0).
        task_seed: seed of the rules (the same task for every ``seed``).
        time_first: collate batches as ``[T, B, channels]`` (default).
    """

    loader_workers_help = False  # small in-memory tensors: data.num_workers=auto gives 0

    is_sequence = True

    def __init__(
        self,
        batch_size: int = 64,
        num_workers: int | str = "auto",
        seed: int = 0,
        channels: int = 16,
        num_classes: int = 10,
        time_steps: int = 32,
        window: int = 16,
        min_lag: int = 2,
        max_lag: int = 8,
        train_size: int = 2048,
        val_size: int = 512,
        test_size: int = 512,
        task_seed: int = 0,
        time_first: bool = True,
        pin_memory: bool | str = "auto",
        drop_last: bool = False,
    ):
        super().__init__(batch_size, num_workers, seed, pin_memory, drop_last)
        for name, value, low in (("channels", channels, 2), ("num_classes", num_classes, 2),
                                 ("time_steps", time_steps, 2), ("min_lag", min_lag, 1), ("train_size", train_size, 1),
                                 ("val_size", val_size, 0), ("test_size", test_size, 1)):
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ValueError(f"data.{name} must be an int >= {low}, got {value!r}")
        if isinstance(window, bool) or not isinstance(window, int) or not 2 <= window <= time_steps:
            raise ValueError(f"data.window must be an int in [2, time_steps={time_steps}], got {window!r}")
        if isinstance(max_lag, bool) or not isinstance(max_lag, int) or not min_lag <= max_lag < window:
            raise ValueError(f"data.max_lag must be an int in [min_lag={min_lag}, window={window}), got {max_lag!r}")
        self.channels, self.num_classes, self.time_steps, self.window = channels, num_classes, time_steps, window
        self.min_lag, self.max_lag, self.task_seed = min_lag, max_lag, int(task_seed)
        self.sizes = {"train": train_size, "val": val_size, "test": test_size}
        self.input_shape = (channels,)
        self.sequence_length = time_steps
        self.time_first = bool(time_first)
        self.collate_fn = time_first_collate if self.time_first else None
        self.rules = coincidence_rules(channels, num_classes, min_lag, max_lag, self.task_seed)

    def _build(self) -> None:
        streams = np.random.SeedSequence([self.seed, self.task_seed]).spawn(3)
        for (split, n), stream in zip(self.sizes.items(), streams):
            if n == 0:
                setattr(self, f"{split}_set", None)
                continue
            rng = np.random.default_rng(stream)
            labels = rng.permutation(np.arange(n) % self.num_classes)
            times = coincidence_spike_times(labels, self.rules, self.channels, self.window, rng)
            setattr(self, f"{split}_set", _SpikeTimesDataset(times, labels, self.time_steps))
