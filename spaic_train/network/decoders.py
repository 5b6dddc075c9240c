"""Decoders: read a group's recorded output ``[T, B, *shape]`` and turn it into the network's output."""

from __future__ import annotations

from collections.abc import Callable
from typing import Optional

import torch

from ..assembly import Assembly
from ..registry import Registry

#: coding name → ``(var_needed, fn(seq [T, B, ...], dt_ms) -> tensor)``
DECODINGS: Registry = Registry("decoder coding")


def _decoding(name: str, var: str):
    def deco(fn: Callable[[torch.Tensor, float], torch.Tensor]):
        fn.var = var
        return DECODINGS.register(name)(fn)
    return deco


@_decoding("spike_counts", "O")
def spike_counts(seq: torch.Tensor, dt: float) -> torch.Tensor:
    """Number of spikes per neuron over the run: ``[B, *shape]``."""
    return seq.sum(0)


@_decoding("spike_rate", "O")
def spike_rate(seq: torch.Tensor, dt: float) -> torch.Tensor:
    """Spikes per step (in [0, 1]) per neuron: ``[B, *shape]``."""
    return seq.mean(0)


@_decoding("mean_voltage", "V")
def mean_voltage(seq: torch.Tensor, dt: float) -> torch.Tensor:
    """Membrane potential averaged over the run: ``[B, *shape]``."""
    return seq.mean(0)


@_decoding("max_voltage", "V")
def max_voltage(seq: torch.Tensor, dt: float) -> torch.Tensor:
    """Largest membrane potential reached during the run: ``[B, *shape]``."""
    return seq.amax(0)


@_decoding("first_spike", "O")
def first_spike(seq: torch.Tensor, dt: float) -> torch.Tensor:
    """Time (ms) of each neuron's first spike, ``T · dt`` when it never spiked: ``[B, *shape]``.

    Not differentiable (a time index); use it for evaluation or with a time-to-first-spike loss
    on ``sequence`` output.
    """
    T = seq.shape[0]
    fired = seq > 0
    steps = torch.arange(T, device=seq.device).view(-1, *([1] * (seq.dim() - 1))).expand_as(seq)
    first = torch.where(fired, steps, torch.full_like(steps, T)).amin(0)
    return first.to(torch.float32) * dt


@_decoding("sequence", "O")
def sequence(seq: torch.Tensor, dt: float) -> torch.Tensor:
    """The whole spike sequence ``[T, B, *shape]`` (for per-step losses such as TET)."""
    return seq


class Decoder:
    """Network output: decodes a group's recorded variable after a run.

    Args:
        target: the :class:`~spaic_train.NeuronGroup` to read (SPAIC keyword ``dec_target=``).
        coding: one of :data:`DECODINGS` — ``'spike_counts'``, ``'spike_rate'``, ``'mean_voltage'``,
            ``'max_voltage'``, ``'first_spike'`` (ms), ``'sequence'`` (SPAIC keyword ``coding_method=``).
        name: display name.
    """

    def __init__(self, target: Optional[Assembly] = None, coding: Optional[str] = None, name: Optional[str] = None,
                 dec_target: Optional[Assembly] = None, coding_method: Optional[str] = None):
        target = target if target is not None else dec_target
        if not isinstance(target, Assembly):
            raise TypeError(f"Decoder({name!r}): target must be a NeuronGroup, got {type(target).__name__}")
        if coding is not None and coding_method is not None and coding != coding_method:
            raise ValueError(f"Decoder({name!r}): coding={coding!r} and coding_method={coding_method!r} disagree")
        coding = coding or coding_method or "spike_counts"
        self.name = name
        self._fn = DECODINGS.get(coding, owner=f"Decoder({name!r})")
        self.coding = DECODINGS.canonical(coding)
        self.var_name: str = self._fn.var
        if self.var_name not in target.var_names:
            raise ValueError(f"Decoder({name!r}): coding {self.coding!r} needs variable {self.var_name!r}, which "
                             f"{target.label} does not have (it has {', '.join(target.var_names)})")
        self.target = target

    def decode(self, records: dict[str, torch.Tensor], dt: float) -> torch.Tensor:
        return self._fn(records[self.var_name], dt)

    def __repr__(self) -> str:
        return f"Decoder(target={self.target.label}, coding={self.coding!r})"
