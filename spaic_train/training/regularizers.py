"""Activity regularisers: terms added to the training loss that make a network spike less (or at a target rate).

``model.compile(..., regularizers={"rate": {"target": 0.05}, "energy": 1e-3})`` or ``SNNModule(net,
regularizers=...)``.  During training the forward runs inside ``network.record(detach=False)``, so each term is a
differentiable function of the spikes (through the surrogate gradient); each term is logged separately as
``train_reg_<name>`` (the weighted value that was added; ``reg_<name>`` in ``History``), next to ``train_loss``
(which includes them).
Validation and test losses never include them.

==================  ============================================================================================
name                term (``coef ×``)
==================  ============================================================================================
``rate``            ``Σ_layers (r_l − target_l)²``, ``r_l`` the mean spikes per neuron per step of layer ``l``
                    (``target``: one rate for every layer or ``{layer: rate}``; default 0.02)
``spike_l1``        ``Σ_layers spikes_l / (T · neurons_l)`` per sample: the L1 norm of the spike counts, in the
                    units of a rate (mean over the batch)
``energy``          the spikes' energy per sample relative to the equivalent ANN's (``SOPs × pJ/AC / (synapses ×
                    pJ/MAC)``), SOPs counted exactly (:func:`~spaic_train.profiling.count_connection`,
                    differentiable in the spikes); analog-input layers cost a constant and are left out
==================  ============================================================================================

``layers`` (every term): the neuron groups it applies to, by name (default: every spiking group; a non-spiking
readout has no rate).  Register a new term with
``@REGULARIZERS.register("name")`` on a :class:`Regularizer` subclass.
"""

from __future__ import annotations

import numbers
from collections.abc import Mapping, Sequence
from typing import Any, Optional, Union

import torch
from torch import Tensor

from ..profiling import EnergyModel, count_connection, synapse_count
from ..registry import Registry

__all__ = ["REGULARIZERS", "Regularizer", "FiringRateTarget", "SpikeL1", "EnergyTerm", "build_regularizers"]

#: registry of activity regularisers (``compile(regularizers=...)``)
REGULARIZERS: Registry = Registry("regularizer")


def _coef(owner: str, value) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not value >= 0:
        raise ValueError(f"{owner}: coef must be a number >= 0, got {value!r}")
    return float(value)


class Regularizer:
    """Base class: ``coef × term(network, spikes)``.

    Args:
        coef: weight of the term in the loss (``>= 0``).
        layers: names of the neuron groups it applies to (default: every spiking group).
    """

    #: name in :data:`REGULARIZERS` (set by subclasses)
    name = ""
    default_coef = 1.0

    def __init__(self, coef: Optional[float] = None, layers: Optional[Sequence[str]] = None):
        self.coef = _coef(self.label, self.default_coef if coef is None else coef)
        if layers is not None and (isinstance(layers, str) or not all(isinstance(n, str) for n in layers)):
            raise TypeError(f"{self.label}: layers must be a list of layer names, got {layers!r}")
        self.layers = None if layers is None else list(layers)

    @property
    def label(self) -> str:
        return f"regularizers.{self.name}"

    def groups(self, network) -> list:
        """The spiking neuron groups this term covers (checked against the network on first use): by default every
        group whose output is spikes (a non-spiking readout's output is a potential, not a rate)."""
        groups = list(network.groups)
        if self.layers is None:
            return [g for g in groups if g.emits_spikes]
        names = {g.name for g in groups}
        unknown = [n for n in self.layers if n not in names]
        if unknown:
            raise ValueError(f"{self.label}: unknown layer(s) {unknown}; the network's layers are {sorted(names)}")
        silent = [g.name for g in groups if g.name in self.layers and not g.emits_spikes]
        if silent:
            raise ValueError(f"{self.label}: layer(s) {silent} do not spike (a non-spiking readout outputs its "
                             f"potential), so there is no rate to regularize; the spiking layers are "
                             f"{sorted(g.name for g in groups if g.emits_spikes)}")
        return [g for g in groups if g.name in self.layers]

    def term(self, network, spikes: Mapping[str, Tensor]) -> Tensor:
        """The unweighted term, from ``spikes`` ``{assembly name: [T, B, *shape]}`` (with autograd)."""
        raise NotImplementedError

    def __call__(self, network, spikes: Mapping[str, Tensor]) -> Tensor:
        return self.coef * self.term(network, spikes)

    def get_config(self) -> dict[str, Any]:
        return {"coef": self.coef, "layers": self.layers}


@REGULARIZERS.register("rate", "firing_rate")
class FiringRateTarget(Regularizer):
    """``Σ_layers (rate − target)²``: pulls each layer's mean firing rate (spikes per neuron per step) to a target.

    Args:
        target: one rate in ``[0, 1]`` for every layer, or ``{layer name: rate}`` (layers not named: no term).
    """

    name = "rate"
    default_coef = 10.0

    def __init__(self, coef: Optional[float] = None, target: Union[float, Mapping[str, float]] = 0.02,
                 layers: Optional[Sequence[str]] = None):
        if isinstance(target, Mapping):
            if layers is None:
                layers = list(target)
            targets = dict(target)
        else:
            targets = None
        super().__init__(coef, layers)
        for v in ([target] if targets is None else targets.values()):
            if isinstance(v, bool) or not isinstance(v, numbers.Real) or not 0 <= v <= 1:
                raise ValueError(f"{self.label}: target rates must be numbers in [0, 1], got {target!r}")
        self.target = target if targets is None else targets

    def term(self, network, spikes):
        total = None
        for g in self.groups(network):
            target = self.target.get(g.name) if isinstance(self.target, dict) else self.target
            if target is None:
                continue
            d = (spikes[g.name].mean() - float(target)) ** 2
            total = d if total is None else total + d
        return total if total is not None else torch.zeros(())

    def get_config(self):
        return {**super().get_config(), "target": self.target}


@REGULARIZERS.register("spike_l1", "l1")
class SpikeL1(Regularizer):
    """``Σ_layers spikes / (T · neurons)`` per sample (mean over the batch): the L1 norm of the spike counts."""

    name = "spike_l1"
    default_coef = 0.2

    def term(self, network, spikes):
        total = None
        for g in self.groups(network):
            s = spikes[g.name]
            v = s.sum() / (s.shape[0] * s.shape[1] * g.num)
            total = v if total is None else total + v
        return total if total is not None else torch.zeros(())


@REGULARIZERS.register("energy", "sops")
class EnergyTerm(Regularizer):
    """The spikes' energy per sample relative to the equivalent ANN's:
    ``Σ SOPs × pJ/AC / (Σ synapses × pJ/MAC)`` — the inverse of the ratio papers quote, dimensionless (about
    ``T × rate × 0.2`` with the defaults).  SOPs are counted exactly and differentiably from the spikes, on the
    connections out of the covered layers (their spikes are what costs); the ANN's MACs are those of every
    connection of the network.

    Args:
        pj_per_ac, pj_per_mac: energy of one accumulate / multiply-accumulate in pJ (default 0.9 / 4.6: 45 nm,
            Horowitz 2014).
    """

    name = "energy"
    default_coef = 1.0

    def __init__(self, coef: Optional[float] = None, layers: Optional[Sequence[str]] = None, pj_per_ac: float = 0.9,
                 pj_per_mac: float = 4.6):
        super().__init__(coef, layers)
        model = EnergyModel(pj_per_ac=pj_per_ac, pj_per_mac=pj_per_mac)  # validates
        self.pj_per_ac, self.pj_per_mac = model.pj_per_ac, model.pj_per_mac

    def term(self, network, spikes):
        names = {g.name for g in self.groups(network)}
        total = None
        for c in network.connections:
            if c.pre.name not in names or c.pre_var_name != "O":
                continue
            s = spikes[c.pre.name]
            sops = count_connection(c, s, differentiable=True).sops / s.shape[1]
            total = sops if total is None else total + sops
        ann_macs = sum(synapse_count(c) for c in network.connections)
        if total is None or ann_macs == 0:
            return torch.zeros(())
        return total * (self.pj_per_ac / (self.pj_per_mac * ann_macs))

    def get_config(self):
        return {**super().get_config(), "pj_per_ac": self.pj_per_ac, "pj_per_mac": self.pj_per_mac}


RegularizerSpec = Union[None, Regularizer, str, Sequence[Union[str, Regularizer]], Mapping[str, Any]]


def build_regularizers(spec: RegularizerSpec) -> list[Regularizer]:
    """Regularizers from a spec: ``None``; a name or a :class:`Regularizer`; a list of them; or a dict
    ``{name: coef}`` / ``{name: {coef: ..., target: ..., layers: [...]}}`` (``null``/``false`` = off)."""
    if spec is None:
        return []
    if isinstance(spec, (str, Regularizer)):
        spec = [spec]
    if isinstance(spec, Mapping):
        out = []
        for name, opts in spec.items():
            cls = REGULARIZERS.get(name, owner="regularizers")
            if opts is None or opts is False:
                continue
            if isinstance(opts, Mapping):
                try:
                    out.append(cls(**dict(opts)))
                except TypeError as e:
                    raise ValueError(f"regularizers.{name}: {e}") from None
            else:
                out.append(cls(coef=opts))
        return out
    out = []
    for item in spec:
        out.append(item if isinstance(item, Regularizer) else REGULARIZERS.get(item, owner="regularizers")())
    return out


def regularization(regularizers: Sequence[Regularizer], network, spikes: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """``{name: weighted term}`` of every regulariser (to add to the loss and to log)."""
    return {r.name: r(network, spikes) for r in regularizers}
