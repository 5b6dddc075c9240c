"""Bias calibration of a converted SNN against its ANN (Li et al., "A Free Lunch From ANN: Towards Efficient,
Accurate Spiking Neural Networks Calibration", ICML 2021).

A converted layer ``l`` stands for the ANN activation ``a_l`` (clipped to ``[0, λ_l]``, the values its IF
neurons with threshold ``λ_l`` can represent) by ``λ_l · rate_l``.  After ``T`` steps the two differ, and
deeper layers inherit the uneven spike timing of the layers before them, so the error has a non-zero mean per
channel.  Bias calibration
runs the SNN at the target ``T`` on the calibration data, layer by layer in network order, and adds to layer ``l``'s
per-step bias the per-channel mean (over samples and positions)

    δ_l[c] = mean(clip(a_l, 0, λ_l)[c]) − mean(λ_l · rate_l[c])

measured with layers ``1 … l−1`` already corrected.  A bias ``δ`` more per step is ``δ·T`` more charge, ``δ·T/λ``
more spikes, i.e. ``δ`` more in ``λ·rate`` while the neurons neither stay silent nor fire every step, so the
correction removes the mean error of the layer's unsaturated neurons.  The readout is calibrated too: with the
``'current'`` readout its output is the mean logit over ``T`` and its target the ANN's logits (no clip).
"""

from __future__ import annotations

import torch
from torch import fx

from ..keras import Model
from .calibration import NodeRecorder, as_input_of, limited_batches
from .plan import NetworkPlan

__all__ = ["CALIBRATION_METHODS", "calibrate_biases"]

#: what ``convert(calibrate=...)`` can calibrate after the conversion
CALIBRATION_METHODS = ("bias",)


def _channel_sums(value: torch.Tensor) -> torch.Tensor:
    """``[B, C, ...]`` → the per-channel sums over the batch and every position, float64."""
    return value.double().transpose(0, 1).reshape(value.shape[1], -1).sum(1)


class _Means:
    """Per-channel running means of several named values ``[B, C, ...]``."""

    def __init__(self):
        self.sums: dict[str, torch.Tensor] = {}
        self.counts: dict[str, int] = {}

    def add(self, name: str, value: torch.Tensor) -> None:
        sums = _channel_sums(value).cpu()
        self.sums[name] = self.sums[name] + sums if name in self.sums else sums
        self.counts[name] = self.counts.get(name, 0) + value.numel() // value.shape[1]

    def mean(self, name: str) -> torch.Tensor:
        return self.sums[name] / self.counts[name]


def ann_targets(gm: fx.GraphModule, plan: NetworkPlan, data, batch_size: int, max_samples, clip_readout: bool):
    """Per layer of ``plan``: the per-channel mean of the ANN value its spiking layer stands for (clipped to
    ``[0, λ]``, what IF neurons can represent; the readout's logits too when it spikes, ``clip_readout``)."""
    ceiling = {layer.node: (layer.threshold if (not layer.readout or clip_readout) else None) for layer in plan.layers}
    means = _Means()

    def sink(node: str, value: torch.Tensor) -> None:
        top = ceiling[node]
        means.add(node, value.clamp(0.0, top) if top is not None else value)

    recorder = NodeRecorder(gm, set(ceiling), sink)
    with torch.no_grad():
        for x in limited_batches(data, batch_size, max_samples):
            recorder.run(as_input_of(gm, x))
    return [means.mean(layer.node) for layer in plan.layers]


def snn_values(model: Model, name: str, scale: float, data, steps: int, batch_size: int, max_samples):
    """The per-channel mean of layer ``name``'s value over ``steps`` steps: its mean output (spikes, or the
    readout's current) times ``scale`` (its threshold for IF neurons, 1 for a current readout)."""
    means = _Means()
    with torch.no_grad(), model.record(("O",)) as rec:
        for x in limited_batches(data, batch_size, max_samples):
            model(as_input_of(model, x), time_steps=steps)
            means.add(name, rec[name]["O"].mean(0) * scale)
    return means.mean(name)


def calibrate_biases(model: Model, plan: NetworkPlan, gm: fx.GraphModule, data, steps: int, *, readout: str,
                     batch_size: int = 256, max_samples=None) -> dict:
    """Bias calibration (module docstring) of ``model``, built from ``plan`` with a bias on every layer, in place.

    Returns ``{layer path: [δ per channel]}``, the corrections added to each layer's bias, in network order."""
    was_training = model.training
    model.eval()
    targets = ann_targets(gm, plan, data, batch_size, max_samples, clip_readout=readout == "spikes")
    corrections = {}
    try:
        for layer, target in zip(plan.layers, targets):
            current = layer.readout and readout == "current"
            scale = 1.0 if current else float(layer.threshold)
            measured = snn_values(model, layer.name, scale, data, steps, batch_size, max_samples)
            delta = target - measured
            bias = model.get_layer(layer.name).connections[0].bias
            with torch.no_grad():
                bias.add_(delta.to(device=bias.device, dtype=bias.dtype))
            corrections[layer.path] = [float(d) for d in delta]
    finally:
        model.train(was_training)
    return corrections
