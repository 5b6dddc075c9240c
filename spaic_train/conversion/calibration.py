"""Activation statistics of the ANN on calibration data, which set the IF thresholds (layer-wise normalisation).

``'max'`` is the largest activation (Diehl et al. 2015); ``'percentile'`` the ``p``-th percentile of all values of
the layer's activation, zeros included, over the calibration data (Rueckauer et al. 2017: robust to outliers).
The percentile is exact while a layer has at most ``max_values`` values in total; beyond that it is taken over a
uniform random sample of that many (seeded), which keeps memory bounded for large calibration sets.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import torch
from torch import fx
from torch.utils.data import DataLoader, Dataset, IterableDataset

__all__ = ["ActivationStats", "NodeRecorder", "as_input_of", "iter_batches", "limited_batches"]


def iter_batches(data, batch_size: int = 256) -> Iterator[torch.Tensor]:
    """The input batches of ``data``: a tensor ``[N, ...]``, a tuple ``(x, y)``, a ``Dataset`` of ``(x, y)`` pairs or
    an iterable of batches (``x`` or ``(x, y, ...)``, e.g. a ``DataLoader``)."""
    if isinstance(data, (tuple, list)) and data and isinstance(data[0], torch.Tensor) and data[0].dim() > 1:
        data = data[0]
    if isinstance(data, torch.Tensor):
        for i in range(0, len(data), batch_size):
            yield data[i:i + batch_size]
        return
    if isinstance(data, Dataset) and not isinstance(data, IterableDataset):
        data = DataLoader(data, batch_size=batch_size)
    if not isinstance(data, Iterable):
        raise TypeError(f"convert: data must be a tensor, an (x, y) tuple, a Dataset or an iterable of batches, "
                        f"got {type(data).__name__}")
    for batch in data:
        x = batch[0] if isinstance(batch, (tuple, list)) else batch
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"convert: a batch of the data holds {type(x).__name__}, not a tensor")
        yield x


def as_input_of(module: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    """``x`` on the device and in the dtype of ``module``'s parameters (as it is for a module without any)."""
    param = next(module.parameters(), None)
    return x if param is None else x.to(device=param.device, dtype=param.dtype)


def limited_batches(data, batch_size: int = 256, max_samples: int | None = None) -> Iterator[torch.Tensor]:
    """The batches of :func:`iter_batches`, cut after ``max_samples`` samples in all (``None``: every one)."""
    seen = 0
    for x in iter_batches(data, batch_size):
        if max_samples is not None:
            if seen >= max_samples:
                return
            x = x[:max_samples - seen]
        seen += len(x)
        yield x


class NodeRecorder(fx.Interpreter):
    """Runs a traced ANN and hands the value of every node named in ``wanted`` to ``sink(name, value)``."""

    def __init__(self, gm: fx.GraphModule, wanted: set, sink):
        super().__init__(gm)
        self.wanted = wanted
        self.sink = sink

    def run_node(self, n):
        out = super().run_node(n)
        if n.name in self.wanted:
            self.sink(n.name, out.detach())
        return out


class ActivationStats:
    """Running max and a bounded sample of the values of some nodes of a traced ANN."""

    def __init__(self, nodes: Iterable[str], max_values: int = 4_000_000, seed: int = 0):
        self.nodes = set(nodes)
        self.max_values = int(max_values)
        self.maximum = {n: float("-inf") for n in self.nodes}
        self._pool: dict[str, list] = {n: [] for n in self.nodes}
        self._count = {n: 0 for n in self.nodes}
        self._rate = {n: 1.0 for n in self.nodes}
        self._gen = torch.Generator().manual_seed(seed)
        self.samples = 0

    def _add(self, name: str, value: torch.Tensor) -> None:
        flat = value.reshape(-1).float().cpu()
        self.maximum[name] = max(self.maximum[name], float(flat.max()))
        if self._rate[name] < 1.0:
            flat = flat[torch.rand(flat.numel(), generator=self._gen) < self._rate[name]]
        self._pool[name].append(flat)
        self._count[name] += flat.numel()
        while self._count[name] > self.max_values:  # halve the sample and the rate of what comes next
            pool = torch.cat(self._pool[name])
            pool = pool[torch.rand(pool.numel(), generator=self._gen) < 0.5]
            self._pool[name] = [pool]
            self._count[name] = pool.numel()
            self._rate[name] /= 2

    def collect(self, gm: fx.GraphModule, data, batch_size: int = 256, max_samples: int | None = None) -> None:
        recorder = NodeRecorder(gm, self.nodes, self._add)
        with torch.no_grad():
            for x in limited_batches(data, batch_size, max_samples):
                recorder.run(as_input_of(gm, x))
                self.samples += len(x)
        if self.samples == 0:
            raise ValueError("convert: calibration_data holds no samples")

    def percentile(self, name: str, p: float) -> float:
        pool = torch.cat(self._pool[name])
        return float(torch.quantile(pool.double(), p / 100.0))
