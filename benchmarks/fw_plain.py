"""The plain PyTorch loop a user would write: the baseline every framework should beat.

No framework, no tricks: ``torch.nn`` layers, one Python loop over the time steps per neuron layer, and a
spike function with a hand-written surrogate gradient (a ``torch.autograd.Function``, as in every SNN
tutorial).  Autograd records the whole unrolled graph and saves what each op needs (float32 everywhere).

Neuron (same as every framework in this benchmark): ``V = 0.5 V + I``; spike ``S = (V >= 1)``; hard reset
``V = V (1 - S)`` (the spike is not detached in the reset); atan surrogate ``g'(x) = (a/2) / (1 + (pi/2 a x)^2)``
with ``a = 2``.  Convolutions and batch norm run on all ``T·B`` samples at once (the natural way to write a
conv SNN), the neurons step by step.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from workloads import ATAN_ALPHA, BETA, V_TH, LayeredModel, base_name, conv_from, linear_from

NAME = "plain-pytorch"


class SpikeFn(torch.autograd.Function):
    """Heaviside forward, atan surrogate backward (the textbook custom spike function)."""

    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return (x >= 0).to(x.dtype)

    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved_tensors
        y = (math.pi / 2 * ATAN_ALPHA) * x
        return grad * (ATAN_ALPHA / 2) / (1 + y * y)


def lif_loop(cur: torch.Tensor) -> torch.Tensor:
    """LIF over ``cur`` ``[T, B, ...]`` one step at a time → spikes ``[T, B, ...]``."""
    v = torch.zeros_like(cur[0])
    out = []
    for c in cur.unbind(0):
        v = BETA * v + c
        s = SpikeFn.apply(v - V_TH)
        v = v * (1 - s)
        out.append(s)
    return torch.stack(out)


def _time_fold(layer, x):
    """Apply a per-sample layer to ``[T, B, ...]`` by folding time into the batch."""
    T, B = x.shape[:2]
    y = layer(x.flatten(0, 1))
    return y.view(T, B, *y.shape[1:])


class PlainModel(LayeredModel):
    def __init__(self, workload, spec, params):
        super().__init__()
        self.workload = workload
        self.w = base_name(workload)
        self.T = spec.get("T")
        if self.w == "fc":
            self.fc1 = self._linear(params["W1"])
            self.fc2 = self._linear(params["W2"])
        elif self.w == "conv":
            c1, c2, c3 = spec["C"]
            self.conv1 = nn.Sequential(self._conv(params["K1"]), nn.BatchNorm2d(c1))
            self.conv2 = nn.Sequential(self._conv(params["K2"]), nn.BatchNorm2d(c2))
            self.conv3 = nn.Sequential(nn.MaxPool2d(2), self._conv(params["K3"]), nn.BatchNorm2d(c3))
            self.fc4 = nn.Sequential(nn.MaxPool2d(2), nn.Flatten(), self._linear(params["W4"]))
        elif self.w != "lif":
            raise ValueError(f"workload {workload!r} has no plain PyTorch version")

    _linear = staticmethod(linear_from)
    _conv = staticmethod(conv_from)

    def layers(self, x):
        if self.w == "lif":
            return [lif_loop(x)]
        if self.w == "fc":
            s1 = lif_loop(self.fc1(x))
            return [s1, lif_loop(self.fc2(s1))]
        xs = x.unsqueeze(0).repeat(self.T, 1, 1, 1, 1)  # direct coding: the same image every step
        s1 = lif_loop(_time_fold(self.conv1, xs))
        s2 = lif_loop(_time_fold(self.conv2, s1))
        s3 = lif_loop(_time_fold(self.conv3, s2))
        s4 = lif_loop(_time_fold(self.fc4, s3))
        return [s1, s2, s3, s4]


def version() -> str:
    return torch.__version__


def build(workload, spec, params, probe=False):
    return PlainModel(workload, spec, params)
