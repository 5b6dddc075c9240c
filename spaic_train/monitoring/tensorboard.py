"""``TensorBoardMonitor``: per-epoch spiking statistics of a fixed sample, written to TensorBoard.

At the end of every ``every_n_epochs``-th training epoch (and the last one) the monitor runs the network on a
fixed batch of ``num_samples`` validation samples (training samples when there is no validation data) inside
``network.record(("O", "V"))``, in eval mode, without gradients and with a fixed random seed (so Poisson
encoders draw the same spikes every epoch and the training RNG streams are left untouched), and logs, at
``trainer.global_step``:

==================================  =============================================================================
tag                                 value
==================================  =============================================================================
``spikes/firing_rate/<layer>``      mean spikes per neuron per step over the sample, in ``[0, 1]``
``spikes/silent_fraction/<layer>``  fraction of the layer's neurons that never spiked on any sample, ``[0, 1]``
``spikes/firing_rate_hist/<layer>`` histogram of the per-neuron firing rates (``histograms=True``)
``membrane/<layer>``                histogram of the membrane potential ``V`` over all steps (``histograms=True``)
``weights/<connection>``            histogram of each connection's weight (and ``.../bias``) (``histograms=True``)
``delays/<connection>``             histogram of the per-synapse delays (ms) of each connection that has them
                                    (``histograms=True``)
``delays/sigma/<connection>``       relaxation width (ms) of a connection's learnable delays (``histograms=True``)
``spike_raster/<layer>``            image: neurons (rows, at most ``max_raster_neurons``, evenly spaced) × time
                                    steps (columns, each ``pixels_per_step`` wide) of sample ``raster_sample``;
                                    white = spike
==================================  =============================================================================

Losses, accuracies (``train_loss``, ``val_loss``, ``train_accuracy``, ``val_accuracy``, ...) and the learning
rate (``lr``) are logged by :class:`~spaic_train.training.SNNModule` itself.  Only the global-zero process
logs.  Works with any :class:`~spaic_train.training.protocols.SpikingNetwork` (every
:class:`~spaic_train.Network`, a Keras ``Model`` included) wrapped in an ``SNNModule`` (or any LightningModule
with a ``network`` attribute: :class:`~spaic_train.training.protocols.NetworkHolder`), and any logger whose
``experiment`` is a ``SummaryWriter`` (``TensorBoardLogger``); without one it does nothing.
"""

from __future__ import annotations

import math
from typing import Any, Optional

import lightning.pytorch as pl
import torch
from torch import Tensor

from ..training.data import unpack_batch
from ..training.protocols import SpikingNetwork, network_of

__all__ = ["TensorBoardMonitor", "raster_image", "spike_statistics"]


def spike_statistics(spikes: Tensor) -> tuple[float, float, Tensor]:
    """Firing statistics of one layer.

    Args:
        spikes: ``[T, B, *shape]`` spike tensor (0/1).

    Returns:
        ``(firing_rate, silent_fraction, per_neuron_rate)``: mean spikes per neuron per step (``[0, 1]``), the
        fraction of neurons without any spike over all steps and samples, and ``[num]`` per-neuron rates.
    """
    s = spikes.detach().float()
    per_neuron = s.reshape(s.shape[0] * s.shape[1], -1).mean(0)
    return float(per_neuron.mean()), float((per_neuron == 0).float().mean()), per_neuron


def raster_image(spikes: Tensor, max_neurons: int = 256, pixels_per_step: int = 4) -> Tensor:
    """A spike raster of one sample as a ``[H, W]`` float image in ``[0, 1]`` (TensorBoard ``dataformats='HW'``).

    Args:
        spikes: ``[T, *shape]`` spikes of one sample.
        max_neurons: at most this many neurons (rows), evenly spaced over the layer.
        pixels_per_step: width in pixels of one time step (column block).

    Returns:
        ``[min(num, max_neurons), T * pixels_per_step]``: row ``i`` is a neuron, white pixels are spikes.
    """
    s = spikes.detach().float().reshape(spikes.shape[0], -1)  # [T, N]
    n = s.shape[1]
    if n > max_neurons:
        idx = torch.linspace(0, n - 1, max_neurons).round().long()
        s = s[:, idx]
    img = (s.t() > 0).float()  # [N, T]
    return img.repeat_interleave(max(1, int(pixels_per_step)), dim=1)


def _summary_writer(trainer: pl.Trainer) -> Any:
    """The first logger experiment that can ``add_scalar``/``add_histogram``/``add_image`` (a SummaryWriter)."""
    for logger in trainer.loggers:
        exp = getattr(logger, "experiment", None)
        if exp is not None and all(hasattr(exp, m) for m in ("add_scalar", "add_histogram", "add_image")):
            return exp
    return None


def _first_batch(loader: Any) -> Any:
    if loader is None:
        return None
    if isinstance(loader, (list, tuple)):
        loader = loader[0] if loader else None
        if loader is None:
            return None
    try:
        return next(iter(loader))
    except (StopIteration, TypeError):
        return None


class TensorBoardMonitor(pl.Callback):
    """Log firing rates, silent fractions, membrane/weight histograms and a spike raster every epoch.

    Args:
        num_samples: size of the fixed monitoring sample (taken from the first validation batch; several
            batches are concatenated when one is smaller).
        sample: an explicit input batch ``[B, *input_shape]`` (or ``[T, B, ...]``) to use instead.
        raster_sample: index (within the sample) of the sample drawn as the spike raster.
        max_raster_neurons: neurons per raster image.
        pixels_per_step: raster width of one time step.
        every_n_epochs: log every n-th epoch; the last epoch is always logged.
        histograms: log membrane-potential, firing-rate and weight histograms.
        seed: RNG seed of the monitoring run (Poisson encoders draw the same input spikes every time).
        log_at_start: also log once before training (the initial network).
    """

    def __init__(self, num_samples: int = 32, sample: Optional[Tensor] = None, raster_sample: int = 0,
                 max_raster_neurons: int = 256, pixels_per_step: int = 4, every_n_epochs: int = 1,
                 histograms: bool = True, seed: int = 0, log_at_start: bool = False):
        super().__init__()
        if num_samples < 1:
            raise ValueError(f"monitor.num_samples must be >= 1, got {num_samples}")
        if every_n_epochs < 1:
            raise ValueError(f"monitor.every_n_epochs must be >= 1, got {every_n_epochs}")
        if raster_sample < 0:
            raise ValueError(f"monitor.raster_sample must be >= 0, got {raster_sample}")
        self.num_samples = int(num_samples)
        self.sample = sample
        self.raster_sample = int(raster_sample)
        self.max_raster_neurons = int(max_raster_neurons)
        self.pixels_per_step = int(pixels_per_step)
        self.every_n_epochs = int(every_n_epochs)
        self.histograms = bool(histograms)
        self.seed = int(seed)
        self.log_at_start = bool(log_at_start)
        self._time_first: Optional[bool] = None

    # -------------------------------------------------------------------------------------------- sample
    @staticmethod
    def _network(pl_module: pl.LightningModule) -> SpikingNetwork:
        net = network_of(pl_module)
        if not isinstance(net, SpikingNetwork):
            raise TypeError(f"TensorBoardMonitor needs a spaic_train Network (with .record), got {type(net).__name__}")
        return net

    @staticmethod
    def _input_ndim(net: SpikingNetwork) -> Optional[int]:
        return len(net.encoders[0].shape) if net.encoders else None

    def _is_time_first(self, x: Tensor, net: SpikingNetwork, trainer: pl.Trainer) -> bool:
        dm = getattr(trainer, "datamodule", None)
        if dm is not None and getattr(dm, "is_sequence", False):
            return bool(getattr(dm, "time_first", True))
        nd = self._input_ndim(net)
        return nd is not None and x.dim() == nd + 2

    def _collect(self, trainer: pl.Trainer, net: SpikingNetwork) -> Optional[Tensor]:
        """Gather (once) the fixed monitoring batch from the validation (else training) data."""
        if self.sample is not None:
            x = self.sample
            self._time_first = self._is_time_first(x, net, trainer) if self._time_first is None else self._time_first
            return x
        loaders = []
        dm = getattr(trainer, "datamodule", None)
        for name in ("val_dataloader", "train_dataloader"):
            if dm is not None and hasattr(dm, name):
                try:
                    loaders.append(getattr(dm, name)())
                    break
                except Exception:  # no such split
                    continue
        if not loaders:
            loaders = [trainer.val_dataloaders, trainer.train_dataloader]
        for loader in loaders:
            if loader is None:
                continue
            if isinstance(loader, (list, tuple)):
                loader = loader[0] if loader else None
            if loader is None:
                continue
            parts, n, time_first = [], 0, None
            try:
                for batch in loader:
                    x, _ = unpack_batch(batch)
                    if not isinstance(x, Tensor):
                        break
                    if time_first is None:
                        time_first = self._is_time_first(x, net, trainer)
                    parts.append(x)
                    n += x.shape[1] if time_first else x.shape[0]
                    if n >= self.num_samples:
                        break
            except TypeError:
                continue
            if parts:
                dim = 1 if time_first else 0
                x = torch.cat(parts, dim=dim).narrow(dim, 0, min(n, self.num_samples))
                self.sample, self._time_first = x, bool(time_first)
                return x
        return None

    # -------------------------------------------------------------------------------------------- logging
    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self.log_at_start:
            self.log_now(trainer, pl_module)

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        epoch = trainer.current_epoch
        last = trainer.max_epochs is not None and epoch + 1 >= trainer.max_epochs
        if (epoch + 1) % self.every_n_epochs == 0 or last or trainer.should_stop:
            self.log_now(trainer, pl_module)

    @torch.no_grad()
    def log_now(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Run the fixed sample through the network and write every tag at ``trainer.global_step``."""
        if not trainer.is_global_zero:
            return
        writer = _summary_writer(trainer)
        if writer is None:
            return
        net = self._network(pl_module)
        x = self._collect(trainer, net)
        if x is None:
            return
        step = int(trainer.global_step)
        was_training = net.training
        net.eval()
        try:
            devices = [pl_module.device] if pl_module.device.type == "cuda" else []
            with torch.random.fork_rng(devices=devices):
                torch.manual_seed(self.seed)
                with net.record(("O", "V")) as rec:
                    net(x.to(pl_module.device))
        finally:
            net.train(was_training)
        groups = {g.name for g in net.groups}
        for name, vars_ in rec.items():
            if groups and name not in groups:
                continue  # encoders: their "spikes" are the input
            spikes = vars_.get("O")
            if spikes is None:
                continue
            rate, silent, per_neuron = spike_statistics(spikes)
            writer.add_scalar(f"spikes/firing_rate/{name}", rate, step)
            writer.add_scalar(f"spikes/silent_fraction/{name}", silent, step)
            b = spikes.shape[1]
            i = min(self.raster_sample, b - 1)
            img = raster_image(spikes[:, i].cpu(), self.max_raster_neurons, self.pixels_per_step)
            writer.add_image(f"spike_raster/{name}", img, step, dataformats="HW")
            if self.histograms:
                writer.add_histogram(f"spikes/firing_rate_hist/{name}", per_neuron.cpu(), step)
                v = vars_.get("V")
                if v is not None and v.numel():
                    v = v.detach().float().reshape(-1)
                    v = v[torch.isfinite(v)]
                    if v.numel():
                        writer.add_histogram(f"membrane/{name}", v.cpu(), step)
        if self.histograms:
            self._log_weights(writer, net, step)
        flush = getattr(writer, "flush", None)
        if callable(flush):
            flush()

    @staticmethod
    def _log_weights(writer: Any, net: SpikingNetwork, step: int) -> None:
        conns = list(net.connections)
        if conns:
            for c in conns:
                name = c.name or type(c).__name__
                for pname, tag in (("weight", f"weights/{name}"), ("bias", f"weights/{name}/bias"),
                                   ("delay", f"delays/{name}")):
                    p = getattr(c, pname, None)
                    if isinstance(p, Tensor) and p.numel():
                        writer.add_histogram(tag, p.detach().float().cpu(), step)
                if c.learn_delay:
                    writer.add_scalar(f"delays/sigma/{name}", c.sigma_ms(), step)
            return
        for pname, p in net.named_parameters():
            if p.numel() and math.prod(p.shape) > 0:
                writer.add_histogram(f"weights/{pname}", p.detach().float().cpu(), step)
