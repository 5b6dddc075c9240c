"""``EnergyMonitor``: SOPs, firing rates and energy of every training epoch, counted from the training batches.

Every training batch runs inside ``network.record`` (the spikes the forward computes anyway, detached) and a
:class:`~spaic_train.profiling.SpikeCounter` adds its counts; at the end of each epoch the monitor logs, at
``trainer.global_step``, to a TensorBoard ``SummaryWriter`` (any logger whose ``experiment`` has
``add_scalar``):

========================================  ======================================================================
tag                                       value (per sample, means over the epoch's training samples)
========================================  ======================================================================
``energy/sops_per_sample``                synaptic operations (accumulates), all connections
``energy/macs_per_sample``                multiply-accumulates of analog-input connections
``energy/energy_uj_per_sample``           the energy estimate (µJ) of the :class:`EnergyModel`
``energy/sops/<layer>``                   SOPs into one layer (its incoming connections)
``energy/firing_rate/<layer>``            spikes per neuron per step of one layer, ``[0, 1]``
``energy/silent_fraction/<layer>``        neurons of the layer that never spiked during the epoch
========================================  ======================================================================

Counts are those of training mode (dropout active; learnable delays counted at their rounded delays).  Without
the monitor nothing of this runs.  The last epoch's :class:`ProfileResult` is :attr:`EnergyMonitor.last`; every
epoch's is in :attr:`EnergyMonitor.results`.
"""

from __future__ import annotations

import contextlib
from typing import Any, Optional

import lightning.pytorch as pl

from .energy import EnergyModel
from .report import ProfileResult, SpikeCounter, recorded_vars

__all__ = ["EnergyMonitor"]


class EnergyMonitor(pl.Callback):
    """Count SOPs and spikes on every training batch; log per-layer rates, SOPs and energy each epoch.

    Args:
        energy: pJ per AC and per MAC (default 0.9 / 4.6 pJ, 45 nm, Horowitz 2014).
        layers: also log the per-layer tags (``False``: the totals only).
    """

    def __init__(self, energy: Optional[EnergyModel] = None, layers: bool = True):
        super().__init__()
        if energy is not None and not isinstance(energy, EnergyModel):
            raise TypeError(f"EnergyMonitor: energy must be a spaic_train.profiling.EnergyModel, got "
                            f"{type(energy).__name__}")
        self.energy = energy
        self.layers = bool(layers)
        self.results: list[ProfileResult] = []
        self._counter: Optional[SpikeCounter] = None
        self._stack: Optional[contextlib.ExitStack] = None
        self._records: Optional[dict] = None

    @property
    def last(self) -> Optional[ProfileResult]:
        """The last epoch's profile (``None`` before the first epoch ends)."""
        return self.results[-1] if self.results else None

    @staticmethod
    def _network(pl_module: pl.LightningModule) -> Any:
        return getattr(pl_module, "network", pl_module)

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        net = self._network(pl_module)
        if self._counter is None or self._counter.network is not net:
            self._counter = SpikeCounter(net)
        self._counter.reset()

    def on_train_batch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any,
                             batch_idx: int) -> None:
        net = self._network(pl_module)
        self._stack = contextlib.ExitStack()
        self._records = self._stack.enter_context(net.record(recorded_vars(net)))

    def _close(self) -> Optional[dict]:
        records, self._records = self._records, None
        if self._stack is not None:
            self._stack.close()
            self._stack = None
        return records

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        records = self._close()
        if records and self._counter is not None:
            self._counter.update(records)

    def on_exception(self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException) -> None:
        self._close()

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._close()
        if self._counter is None or self._counter.samples == 0:
            return
        result = self._counter.result(self.energy)
        self.results.append(result)
        if not trainer.is_global_zero:
            return
        writer = next((lg.experiment for lg in trainer.loggers
                       if hasattr(getattr(lg, "experiment", None), "add_scalar")), None)
        if writer is None:
            return
        step = int(trainer.global_step)
        for key, value in result.metrics().items():
            writer.add_scalar(f"energy/{key}", value, step)
        if self.layers:
            for layer in result.layers:
                if layer.kind == "neurons" or layer.sops or layer.macs:
                    writer.add_scalar(f"energy/sops/{layer.name}", layer.sops, step)
                if layer.firing_rate is not None:
                    writer.add_scalar(f"energy/firing_rate/{layer.name}", layer.firing_rate, step)
                    writer.add_scalar(f"energy/silent_fraction/{layer.name}", layer.silent_fraction, step)
