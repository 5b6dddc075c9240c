"""``profile``: per-layer neurons, synapses, firing rates, SOPs/MACs and an energy estimate, from real runs."""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from typing import Any, Optional

import torch
from torch import Tensor

from ..assembly import NeuronGroup
from ..data.batches import unpack_batch
from .counting import count_connection, is_events, sum_over_batch, synapse_count
from .energy import HOROWITZ_45NM, EnergyModel

__all__ = ["LayerProfile", "ConnectionProfile", "ProfileResult", "SpikeCounter", "profile", "recorded_vars"]


@dataclass
class ConnectionProfile:
    """One connection: per-sample operations (averaged over the profiled samples)."""

    name: str
    pre: str
    post: str
    synapses: int
    sops: float
    macs: float
    analog_input: bool


@dataclass
class LayerProfile:
    """One assembly (encoder or neuron group); ``synapses``/``sops``/``macs`` are those of its incoming
    connections, per sample.  ``firing_rate`` is spikes per neuron per step; ``None`` for analog input."""

    name: str
    kind: str
    neurons: int
    synapses: int
    firing_rate: Optional[float]
    silent_fraction: Optional[float]
    sops: float
    macs: float


@dataclass
class ProfileResult:
    """What a network costs on some data (per sample), and its energy under :attr:`energy_model`.

    ``ann_macs`` is one pass of the equivalent ANN (same layers, every synapse one MAC, once per sample), the
    baseline papers quote the energy ratio against.
    """

    layers: list[LayerProfile]
    connections: list[ConnectionProfile]
    samples: int
    time_steps: int
    energy_model: EnergyModel = field(default_factory=lambda: HOROWITZ_45NM)

    @property
    def sops(self) -> float:
        """Synaptic operations (accumulates) per sample, all connections."""
        return sum(c.sops for c in self.connections)

    @property
    def macs(self) -> float:
        """Multiply-accumulates of analog-input connections per sample."""
        return sum(c.macs for c in self.connections)

    @property
    def energy_uj(self) -> float:
        """Estimated energy per sample in µJ: SOPs × pJ/AC + MACs × pJ/MAC."""
        return self.energy_model.microjoules(self.sops, self.macs)

    @property
    def ann_macs(self) -> int:
        """MACs of one pass of the equivalent ANN per sample (the number of synapses)."""
        return sum(c.synapses for c in self.connections)

    @property
    def ann_energy_uj(self) -> float:
        return self.energy_model.microjoules(0.0, self.ann_macs)

    @property
    def energy_ratio(self) -> float:
        """ANN energy / SNN energy (``inf`` when the SNN did nothing)."""
        e = self.energy_uj
        return self.ann_energy_uj / e if e > 0 else math.inf

    def metrics(self) -> dict[str, float]:
        """Flat numbers for ``metrics.json`` and loggers."""
        return {"sops_per_sample": self.sops, "macs_per_sample": self.macs, "energy_uj_per_sample": self.energy_uj,
                "ann_energy_uj_per_sample": self.ann_energy_uj}

    def to_dict(self) -> dict[str, Any]:
        return {"samples": self.samples, "time_steps": self.time_steps, **self.metrics(),
                "energy_model": asdict(self.energy_model),
                "layers": [asdict(x) for x in self.layers], "connections": [asdict(c) for c in self.connections]}

    def table(self) -> str:
        """The per-layer table with totals and the energy estimate."""
        rows = [("Layer", "Neurons", "Synapses", "Rate", "Silent", "SOPs/sample", "MACs/sample")]
        for x in self.layers:
            rows.append((f"{x.name} ({x.kind})", f"{x.neurons:,}", f"{x.synapses:,}" if x.synapses else "-",
                         "analog" if x.firing_rate is None else f"{x.firing_rate:.4f}",
                         "-" if x.silent_fraction is None else f"{x.silent_fraction:.1%}",
                         _num(x.sops), _num(x.macs)))
        rows.append(("Total", f"{sum(x.neurons for x in self.layers):,}", f"{self.ann_macs:,}", "", "",
                     _num(self.sops), _num(self.macs)))
        widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
        fmt = "  ".join([f"{{:<{widths[0]}}}"] + [f"{{:>{w}}}" for w in widths[1:]])
        total = sum(widths) + 2 * (len(widths) - 1)
        em = self.energy_model
        out = [f"Profile on {self.samples} sample(s), T={self.time_steps} steps", "=" * total,
               fmt.format(*rows[0]), "-" * total, *(fmt.format(*r) for r in rows[1:-1]), "-" * total,
               fmt.format(*rows[-1]), "=" * total,
               f"Energy per sample: {self.energy_uj:.4g} uJ (SNN)  vs  {self.ann_energy_uj:.4g} uJ (equivalent ANN, "
               f"{self.ann_macs:,} MACs): ratio {self.energy_ratio:.3g}x",
               f"Energy model: {em.pj_per_ac:g} pJ/AC, {em.pj_per_mac:g} pJ/MAC ({em.source}); arithmetic only"]
        return "\n".join(out)

    def __str__(self) -> str:
        return self.table()


def _num(v: float) -> str:
    return "-" if v == 0 else f"{v:,.1f}" if v < 1e6 else f"{v:,.0f}"


def recorded_vars(network) -> tuple[str, ...]:
    """Variables :class:`SpikeCounter` needs from ``network.record``: spikes, plus ``V`` when a connection reads it."""
    return ("O", "V") if any(c.pre_var_name == "V" for c in network.connections) else ("O",)


class SpikeCounter:
    """Accumulates spikes per assembly and operations per connection over runs of one network.

    Feed it the dict of ``with network.record(recorded_vars(network)) as rec`` after each run
    (:meth:`update`), then read :meth:`result`.  Counting touches only the recorded tensors (summed over time
    and batch first), never the forward.
    """

    def __init__(self, network):
        if not all(hasattr(network, a) for a in ("record", "connections", "groups", "encoders")):
            raise TypeError(f"profiling needs a spaic_train Network (a Keras Model or a core Network), got "
                            f"{type(network).__name__}")
        self.network = network
        self.reset()

    def reset(self) -> None:
        self.samples = 0
        self.time_steps = 0
        self._spikes: dict[str, Tensor] = {}     # per-neuron spike totals
        # assembly name -> analog output, decided on the first run (an encoder's coding does not change)
        self._input_kind: dict[str, bool] = {}
        self._steps: dict[str, int] = {}         # sample-steps seen per assembly
        self._sops: dict[int, float] = {}
        self._macs: dict[int, float] = {}
        self._analog_conn: set[int] = set()

    def update(self, records: dict[str, dict[str, Tensor]]) -> None:
        """Add one run (``records`` from ``network.record``)."""
        net = self.network
        per_step: dict[str, Tensor] = {}
        T = B = 0
        for node in [*net.encoders, *net.groups]:
            o = records.get(node.name, {}).get("O")
            if o is None:
                raise ValueError(f"{net.label}: no recorded spikes of {node.name!r}; run the network inside "
                                 f"network.record({recorded_vars(net)!r})")
            T, B = o.shape[:2]
            if node.name not in self._input_kind:
                self._input_kind[node.name] = _is_analog(node, o)
            # one pass over the spikes: per step (for the connections) and per neuron (rates); float32 sums of
            # whole numbers are exact below 2**24 (a batch), totals over batches are kept in float64
            per_step[node.name] = sum_over_batch(o.detach())
            per_neuron = per_step[node.name].reshape(T, -1).sum(0).double()
            prev = self._spikes.get(node.name)
            self._spikes[node.name] = per_neuron if prev is None else prev + per_neuron.to(prev.device)
            self._steps[node.name] = self._steps.get(node.name, 0) + T * B
        for i, c in enumerate(net.connections):
            reads_spikes = c.pre_var_name == "O"
            cnt = count_connection(c, records[c.pre.name][c.pre_var_name],
                                   pre_analog=self._input_kind[c.pre.name] if reads_spikes else True,
                                   batch_sum=per_step[c.pre.name] if reads_spikes else None)
            self._sops[i] = self._sops.get(i, 0.0) + float(cnt.sops)
            self._macs[i] = self._macs.get(i, 0.0) + cnt.macs
            if cnt.analog:
                self._analog_conn.add(i)
        self.samples += int(B)
        self.time_steps = int(T)

    def result(self, energy: Optional[EnergyModel] = None) -> ProfileResult:
        """Per-sample averages of everything seen since the last :meth:`reset`."""
        if self.samples == 0:
            raise ValueError(f"{self.network.label}: nothing was profiled (no samples)")
        net, n = self.network, self.samples
        conns = []
        for i, c in enumerate(net.connections):
            conns.append(ConnectionProfile(name=c.name or c.label, pre=c.pre.name, post=c.post.name,
                                           synapses=synapse_count(c), sops=self._sops[i] / n, macs=self._macs[i] / n,
                                           analog_input=i in self._analog_conn))
        layers = []
        for node in [*net.encoders, *net.groups]:
            inc = [p for p, c in zip(conns, net.connections) if c.post is node]
            spikes = self._spikes[node.name]
            analog = self._input_kind[node.name]
            layers.append(LayerProfile(
                name=node.name, kind="input" if node in net.encoders else "neurons", neurons=int(node.num),
                synapses=sum(p.synapses for p in inc),
                firing_rate=None if analog else float(spikes.sum() / (spikes.numel() * self._steps[node.name])),
                silent_fraction=None if analog else float((spikes == 0).double().mean()),
                sops=sum(p.sops for p in inc), macs=sum(p.macs for p in inc)))
        return ProfileResult(layers=layers, connections=conns, samples=n, time_steps=self.time_steps,
                             energy_model=energy or HOROWITZ_45NM)


#: encoder codings that emit spikes (0/1); other codings (``direct``, ``passthrough``) are judged by their values
_SPIKE_CODINGS = ("poisson", "bernoulli", "latency")


def _is_analog(node, o: Tensor) -> bool:
    """Whether an assembly's output is analog: neuron groups spike unless their model does not (a non-spiking
    readout such as ``leaky_integrator`` outputs its potential); spike codings spike; other encoders (``direct``,
    which passes a pre-encoded sequence through unchanged) are analog unless every value is a whole number >= 0."""
    if isinstance(node, NeuronGroup):
        return not node.emits_spikes
    coding = getattr(node, "coding", None)
    if coding is None or coding in _SPIKE_CODINGS:
        return False
    return not is_events(o)


def _batches(network, data, batch_size: int) -> Iterable[Any]:
    """Input batches ``x`` from a tensor/array, an ``(x, y)`` pair, a Dataset, a DataLoader or any iterable."""

    if isinstance(data, (tuple, list)) and data and not isinstance(data[0], (tuple, list, dict)) \
            and hasattr(data[0], "shape") and (len(data) == 2 or len(data) == 1):
        data = data[0]  # (x, y) or (x,)
    if type(data).__module__ == "numpy":
        data = torch.as_tensor(data)
    if isinstance(data, Tensor):
        enc = network.encoders[0]
        time_first = data.dim() == len(enc.shape) + 2
        dim = 1 if time_first else 0
        for start in range(0, data.shape[dim], batch_size):
            yield data.narrow(dim, start, min(batch_size, data.shape[dim] - start))
        return
    if isinstance(data, torch.utils.data.Dataset) and not isinstance(data, torch.utils.data.IterableDataset):
        data = torch.utils.data.DataLoader(data, batch_size=batch_size)
    try:
        it = iter(data)
    except TypeError:
        raise TypeError(f"profile: data must be a tensor, an array, an (x, y) pair, a Dataset or an iterable of "
                        f"batches, got {type(data).__name__}") from None
    for batch in it:
        x, _ = unpack_batch(batch)
        yield x


def profile(model, data, batch_size: int = 256, time_steps: Optional[int] = None,
            energy: Optional[EnergyModel] = None, max_samples: Optional[int] = None, seed: Optional[int] = 0,
            device: Any = None) -> ProfileResult:
    """Run ``model`` on ``data`` (eval mode, no gradients) and count what it costs.

    Args:
        model: a Keras ``Model``/``Sequential``, a core ``Network``, or an ``SNNModule`` wrapping one.
        data: input samples ``[N, *shape]`` (or a sequence ``[T, N, *shape]``), an ``(x, y)`` pair, a Dataset,
            a DataLoader or an iterable of batches (labels are ignored).
        batch_size: samples per run when ``data`` is a tensor, an array or a Dataset.
        time_steps: steps ``T`` for static input (default: the network's ``time_steps``).
        energy: pJ per AC and per MAC (default :data:`~spaic_train.profiling.HOROWITZ_45NM`, 0.9 / 4.6 pJ).
        max_samples: stop after this many samples (whole batches).
        seed: seed of the random encoders during profiling (the global RNG state is restored afterwards);
            ``None`` leaves the RNG alone.
        device: run there (default: where the network's parameters are).

    Returns:
        a :class:`ProfileResult`: per-layer neurons, synapses, firing rate, silent fraction, SOPs and MACs per
        sample, totals, energy and the equivalent ANN's energy; ``print(result)`` shows the table.
    """
    net = getattr(model, "network", model)
    counter = SpikeCounter(net)
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"profile: batch_size must be an int >= 1, got {batch_size!r}")
    if device is None:
        p = next(iter(net.parameters()), None)
        device = p.device if p is not None else torch.device("cpu")
    was_training = net.training
    net.eval()
    rng = torch.random.fork_rng(devices=[device] if torch.device(device).type == "cuda" else [])
    try:
        with torch.no_grad(), rng:
            if seed is not None:
                torch.manual_seed(seed)
            for x in _batches(net, data, batch_size):
                if isinstance(x, Tensor):
                    x = x.to(device)
                with net.record(recorded_vars(net)) as rec:
                    net(x, time_steps=time_steps)
                counter.update(rec)
                if max_samples is not None and counter.samples >= max_samples:
                    break
    finally:
        net.train(was_training)
    return counter.result(energy)
