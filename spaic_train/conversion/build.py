"""Build the spiking Keras :class:`~spaic_train.Model` of a calibrated :class:`~.plan.NetworkPlan`.

Normalisation.  Layer ``l`` has IF neurons with threshold ``λ_l`` (its calibrated activation scale) and reset by
subtraction; a spike of layer ``l`` stands for the activation value ``λ_l``, so every weight reading it is multiplied
by ``λ_l`` and biases stay as in the ANN.  This is Rueckauer et al.'s (2017) layer-wise normalisation
(``W·λ_{l-1}/λ_l``, ``b/λ_l``, threshold 1) with all currents and thresholds of layer ``l`` multiplied by ``λ_l``,
which changes no spike and keeps the first layer's input current equal to the ANN's first pre-activation.

Initial membrane.  Layer ``l``'s IF membrane starts at ``f_l·λ_l`` (``v_init``).  A QCFS layer (levels ``L``, shift
``φ``) needs a membrane starting at ``φ·λ`` for its spike count after ``T`` steps to be the activation's
``clamp(floor(x·T/λ + φ), 0, T)`` (Bu et al. 2022); the part ``(φ − f_l)·λ`` its membrane does not carry is added to
its bias as ``(φ − f_l)·λ/L`` per step (the same charge after ``L`` steps: exact for the first layer at ``T = L``
only).  With ``f_l = φ`` nothing goes into the bias and the first layer is exact at every ``T``.  A ReLU / clip layer
starts at ``λ/2`` by default too: its rate then rounds the activation to the nearest multiple of ``λ/T`` instead of
flooring it (Bu et al.): on the README's better-trained CIFAR ResNet 28 points better at T = 8 and 3 at T = 64,
within a point either way on the barely trained one and on MNIST (README benchmark).
"""

from __future__ import annotations

import re

import torch

from ..keras import Input, Model
from ..keras.layers import Conv2dSyn, Flatten, Full, Pool2d
from .plan import INPUT, ConversionError, LayerPlan, NetworkPlan, Term

__all__ = ["build_model"]


def _identifier(path: str, taken: set) -> str:
    name = re.sub(r"[^0-9a-zA-Z_]", "_", path).strip("_") or "layer"
    if name[0].isdigit():
        name = f"l{name}"
    base, i = name, 2
    while name in taken:
        name, i = f"{base}_{i}", i + 1
    taken.add(name)
    return name


def _apply_folds(tensor, folds):
    for f in folds:
        if f.kind == "flatten":
            tensor = Flatten()(tensor)
        else:
            tensor = Pool2d(f.size, kind="max" if f.kind == "maxpool" else "avg", stride=f.stride,
                            padding=f.padding)(tensor)
    return tensor


def _is_shortcut(term: Term) -> bool:
    if term.folds or term.post:
        return False
    a = term.affine
    return a is None or (a.kind == "conv" and a.conv["kernel_size"] == (1, 1) and a.conv["dilation"] == (1, 1)
                         and a.conv["groups"] == 1 and a.conv["padding"] in ((0, 0), "valid"))


def _scaled_weight(term: Term, scale: float, channels: int, conv: bool) -> torch.Tensor:
    """The term's weight times the amplitude ``scale`` of its source's spikes (``scale·I`` for an identity)."""
    if term.affine is None:
        eye = torch.eye(channels, dtype=torch.float64) * scale
        return eye.view(channels, channels, 1, 1) if conv else eye
    return term.affine.weight.double() * scale


class _Builder:
    def __init__(self, plan: NetworkPlan, reset: str, readout: str, v_init, every_bias: bool):
        self.plan = plan
        self.every_bias = every_bias
        self.reset = reset
        self.readout = readout
        self.v_init = v_init
        self.names: set = {"input"}
        self.copies: list = []  # (connection getter, weight, bias) applied once the model exists

    def scale(self, source: int) -> float:
        return 1.0 if source == INPUT else float(self.plan.layers[source].threshold)

    def membrane_fraction(self, layer: LayerPlan) -> float:
        """``f_l``: the layer's membrane starts at ``f_l·λ_l`` (``'auto'``: a QCFS layer's shift, else 1/2)."""
        if self.v_init == "auto":
            return layer.qcfs[1] if layer.qcfs is not None else 0.5
        return float(self.v_init)

    def bias(self, layer: LayerPlan) -> torch.Tensor | None:
        biases = [t.affine.bias.double() for t in layer.terms if t.affine is not None and t.affine.bias is not None]
        total = sum(biases) if biases else None
        if layer.qcfs is not None:
            levels, shift = layer.qcfs
            rest = shift - self.membrane_fraction(layer)
            if rest != 0.0:  # the QCFS shift the membrane does not start with, spread over L steps
                extra = torch.full(layer.shape[:1], rest * layer.threshold / levels, dtype=torch.float64)
                total = extra if total is None else total + extra
        return total

    def neuron(self, layer: LayerPlan) -> dict:
        if layer.readout and self.readout == "current":
            return {"neuron": "leaky_integrator"}
        kwargs = {"v_th": float(layer.threshold), "reset": self.reset}
        fraction = self.membrane_fraction(layer)
        if fraction != 0.0:
            kwargs["v_init"] = fraction * float(layer.threshold)
        return {"neuron": "if", "neuron_kwargs": kwargs}

    def layer(self, layer: LayerPlan, tensors: list):
        main = [t for t in layer.terms if not _is_shortcut(t)] or [t for t in layer.terms if t.affine is not None][:1]
        if len(main) != 1:
            raise ConversionError(f"convert: the sum into {layer.path!r} has {len(main)} weight-op paths that are not "
                                  "shortcuts; a residual addition is converted as one weight-op path plus an identity "
                                  "or 1x1-conv shortcut")
        main = main[0]
        others = [t for t in layer.terms if t is not main]
        name = layer.name = _identifier(main.affine.path, self.names)
        bias = self.bias(layer)
        if bias is None and self.every_bias:  # a bias of zeros for the calibration to correct
            bias = torch.zeros(layer.shape[:1], dtype=torch.float64)
        kwargs = {**self.neuron(layer), "name": name, "bias": bias is not None}
        inputs = [_apply_folds(tensors[main.source], main.folds)]
        if main.affine.kind == "linear":
            units = main.affine.weight.shape[0]
            inputs += [_apply_folds(tensors[t.source], t.folds) for t in others]
            out = Full(units, **kwargs)(inputs if others else inputs[0])
            conv = False
        else:
            if len(others) > 1:
                raise ConversionError(f"convert: the sum into {layer.path!r} has {len(layer.terms)} terms; a "
                                      "convolutional layer takes one conv path and at most one shortcut")
            if len(main.post) > 1:
                raise ConversionError(f"convert: {main.affine.path!r} is followed by {len(main.post)} poolings of its "
                                      "current; at most one is supported")
            c = main.affine.conv
            pool = {}
            if main.post:
                p = main.post[0]
                pool = {"pool": "max" if p.kind == "maxpool" else "avg", "pool_size": p.size, "pool_stride": p.stride}
            if others:
                inputs.append(tensors[others[0].source])
                kwargs["shortcut"] = "projection"
            out = Conv2dSyn(main.affine.weight.shape[0], kernel_size=c["kernel_size"], stride=c["stride"],
                            padding=c["padding"], dilation=c["dilation"], groups=c["groups"], **pool,
                            **kwargs)(inputs if others else inputs[0])
            if others:
                self._check_shortcut(tensors[others[0].source].shape, out.shape, others[0], layer)
            conv = True
        channels = out.shape[0]
        for i, t in enumerate([main] + others):
            w = _scaled_weight(t, self.scale(t.source), channels, conv)
            self.copies.append((out.layer, i, w, bias if i == 0 else None))
        return out

    @staticmethod
    def _check_shortcut(skip_shape: tuple, out_shape: tuple, term: Term, layer: LayerPlan) -> None:
        """Conv2dSyn's projection shortcut strides by input size // output size; the ANN's must do the same."""
        stride = tuple(max(1, i // o) for i, o in zip(skip_shape[1:], out_shape[1:]))
        given = (1, 1) if term.affine is None else tuple(term.affine.conv["stride"])
        if given != stride:
            raise ConversionError(f"convert: the shortcut into {layer.path!r} has stride {given}, but its input "
                                  f"{skip_shape} and the block output {out_shape} need stride {stride}")

    def build(self, time_steps: int) -> Model:
        inp = Input(self.plan.input_shape, encoder="direct", name="input")
        tensors = {INPUT: inp.output}
        for i, layer in enumerate(self.plan.layers):
            tensors[i] = self.layer(layer, tensors)
        decoder = "spike_rate"
        model = Model(inp, tensors[len(self.plan.layers) - 1], time_steps=time_steps, decoder=decoder)
        with torch.no_grad():
            for keras_layer, i, w, b in self.copies:
                conn = keras_layer.connections[i]
                conn.weight.copy_(w.reshape(conn.weight.shape).to(conn.weight.dtype))
                if conn.bias is not None:
                    conn.bias.copy_(b.to(conn.bias.dtype) if b is not None else torch.zeros_like(conn.bias))
        return model


def build_model(plan: NetworkPlan, time_steps: int, reset: str = "soft", readout: str = "current",
                v_init="auto", every_bias: bool = False) -> Model:
    """The spiking model of ``plan`` (thresholds set): IF layers with reset ``reset``; the readout integrates the
    logits' current (``readout='current'``: a ``leaky_integrator`` with no memory, the ``spike_rate`` decoder then
    gives the mean logits over ``T``) or spikes like the other layers (``'spikes'``).  ``v_init``: ``'auto'`` or
    the fraction ``f`` of its threshold every IF layer's membrane starts at (module docstring).  ``every_bias``:
    give every layer a bias (zeros where the ANN has none), for the bias calibration."""
    return _Builder(plan, reset, readout, v_init, every_bias).build(time_steps)
