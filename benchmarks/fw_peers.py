"""SpikingJelly, snnTorch and Norse implementations of the workloads.

All peers run *layer by layer* (each synaptic layer on all ``T·B`` samples at once, then the
neuron layer over ``T``), the fastest structure each offers on CPU; batch-norm statistics are
therefore over ``T·B·H·W`` everywhere (SpikingJelly's multi-step semantics, and spaic_train's).

Neuron matching (``V = 0.5 V + I``, threshold 1, hard reset to 0):

* SpikingJelly ``LIFNode(tau=2, decay_input=False, v_reset=0, surrogate=ATan(alpha=2),
  detach_reset=False, step_mode='m')``: ``H = V - (V - 0)/2 + X``.
* snnTorch ``Leaky(beta=0.5, threshold=1, reset_mechanism='zero', spike_grad=atan(alpha=2))``:
  the reset is applied at the start of the next step (same spikes); the reset is always detached.
* Norse ``LIFBoxCell`` (no synaptic current; ``v += dt·tau_mem_inv·(i − v)``) with
  ``dt·tau_mem_inv = 0.5`` gives ``v = 0.5 v + 0.5 i``: the weights (or BN scale) feeding a Norse
  LIF layer are doubled, which is exact in floating point, so ``v`` equals ours.  Norse has no
  atan surrogate: ``method='circ'`` (``g' = 1/(1 + (x/a)^2)^1.5``, peak 1) with ``a`` chosen for the
  same half-maximum width as atan(2).  (Norse 1.1's ``'super'`` ignores its ``alpha``.)
"""

from __future__ import annotations

import math

import torch
from torch import nn
from workloads import ATAN_ALPHA, BETA, V_RESET, V_TH, LayeredModel, base_name, conv_from, linear_from

#: Norse 'circ' width with the same half-maximum width as atan(alpha=2): |x| = 1/pi
NORSE_CIRC_ALPHA = 1.0 / (math.pi * math.sqrt(2.0 ** (2.0 / 3.0) - 1.0))


def _stack_loop(step, cur):
    """Run ``step(cur[t], state) -> (spikes, state)`` over ``T``; returns ``[T, B, ...]`` spikes.

    The steps take ``cur.unbind(0)``, not ``cur[t]``: the backward of ``T`` separate ``cur[t]`` selects
    writes ``T`` full-size ``[T, B, ...]`` gradients, an O(T^2) cost that would slow the peer down by
    30x on ``lif`` without being part of its neuron model.
    """
    out = []
    state = None
    for c in cur.unbind(0):
        s, state = step(c, state)
        out.append(s)
    return torch.stack(out)


def _conv_stage(conv, bn, x):
    """Conv + BN on all ``T·B`` samples: ``[T, B, C, H, W]`` → ``[T, B, C', H', W']``."""
    T, B = x.shape[:2]
    y = bn(conv(x.flatten(0, 1)))
    return y.view(T, B, *y.shape[1:])


def _pool(x):
    T, B = x.shape[:2]
    y = nn.functional.max_pool2d(x.flatten(0, 1), 2)
    return y.view(T, B, *y.shape[1:])


class PeerModel(LayeredModel):
    """Common structure; subclasses provide ``lif(i)`` (a neuron layer applied to a ``[T, B, ...]`` current)
    and optionally ``scale`` (the factor folded into the weights feeding a neuron layer)."""

    scale = 1.0
    note = "exact"

    def __init__(self, workload, spec, params):
        super().__init__()
        self.workload = workload
        self.w = base_name(workload)
        s = self.scale
        p = params
        if self.w == "fc":
            self.fc1 = self._linear(p["W1"] * s)
            self.fc2 = self._linear(p["W2"] * s)
            self.nlayers = 2
        elif self.w == "conv":
            c1, c2, c3 = spec["C"]
            self.conv1 = self._conv(p["K1"])
            self.conv2 = self._conv(p["K2"])
            self.conv3 = self._conv(p["K3"])
            self.bn1, self.bn2, self.bn3 = nn.BatchNorm2d(c1), nn.BatchNorm2d(c2), nn.BatchNorm2d(c3)
            for bn in (self.bn1, self.bn2, self.bn3):
                with torch.no_grad():
                    bn.weight.mul_(s)  # gamma = s, beta = 0 (same default init as spaic_train's batchnorm)
            self.fc4 = self._linear(p["W4"] * s)
            self.nlayers = 4
        elif self.w == "delay-feedback":
            self.note = "approximate (no per-synapse delays)"
            self.fc1 = self._linear(p["W1"] * s)
            self.rec = self._linear(p["R"] * s)
            self.fc2 = self._linear(p["W2"] * s)
            self.nlayers = 2
        elif self.w != "lif":
            raise ValueError(f"workload {self.workload!r} is not available for this framework")
        self.make_neurons(spec)

    _linear = staticmethod(linear_from)
    _conv = staticmethod(conv_from)

    # ---- to override
    def make_neurons(self, spec):
        raise NotImplementedError

    def lif(self, i, cur):
        """Neuron layer ``i`` on the current sequence ``cur`` ``[T, B, ...]`` → spikes."""
        raise NotImplementedError

    def recurrent_lif(self, cur):
        """Layer 0 of ``delay-feedback``: ``I[t] = cur[t] + rec(S[t-1])``."""
        raise NotImplementedError

    def prepare_input(self, x):
        """Once, before timing (the ``lif`` input currents are the leaf that receives the gradient)."""
        if self.w == "lif" and self.scale != 1.0:
            return x * self.scale
        return x

    # ---- shared
    def layers(self, x):
        w = self.w
        if w == "lif":
            return [self.lif(0, x)]
        if w == "fc":
            s1 = self.lif(0, self.fc1(x))
            return [s1, self.lif(1, self.fc2(s1))]
        if w == "conv":
            T = self.T
            xs = x.unsqueeze(0).expand(T, *x.shape)  # direct coding: the same image every step
            s1 = self.lif(0, _conv_stage(self.conv1, self.bn1, xs))
            s2 = self.lif(1, _conv_stage(self.conv2, self.bn2, s1))
            s3 = self.lif(2, _conv_stage(self.conv3, self.bn3, _pool(s2)))
            s4 = self.lif(3, self.fc4(_pool(s3).flatten(2)))
            return [s1, s2, s3, s4]
        # delay-feedback
        s1 = self.recurrent_lif(self.fc1(x))
        return [s1, self.lif(1, self.fc2(s1))]


# ------------------------------------------------------------------------------------------ SpikingJelly
class SpikingJellyModel(PeerModel):
    def make_neurons(self, spec):
        from spikingjelly.activation_based import functional, layer, neuron, surrogate

        self._functional = functional
        self.T = spec.get("T")

        def node(step_mode="m"):
            return neuron.LIFNode(tau=1.0 / (1.0 - BETA), decay_input=False, v_threshold=V_TH, v_reset=V_RESET,
                                  surrogate_function=surrogate.ATan(alpha=ATAN_ALPHA), detach_reset=False,
                                  step_mode=step_mode)

        n = 1 if self.w == "lif" else self.nlayers
        self.nodes = nn.ModuleList([node() for _ in range(n)])
        if self.w == "conv":
            # SpikingJelly's own multi-step layers (they fold T into the batch, like _conv_stage)
            self.sj_conv = nn.ModuleList()
            for conv, bn in ((self.conv1, self.bn1), (self.conv2, self.bn2), (self.conv3, self.bn3)):
                c = layer.Conv2d(conv.in_channels, conv.out_channels, 3, padding=1, bias=False, step_mode="m")
                b = layer.BatchNorm2d(conv.out_channels, step_mode="m")
                c.load_state_dict(conv.state_dict())
                b.load_state_dict(bn.state_dict())
                self.sj_conv.append(nn.ModuleList([c, b]))
            del self.conv1, self.conv2, self.conv3, self.bn1, self.bn2, self.bn3
            self.pool = layer.MaxPool2d(2, step_mode="m")
            self.flat = layer.Flatten(start_dim=1, step_mode="m")
        if self.w == "delay-feedback":
            n_hid = self.rec.weight.shape[0]
            rc = layer.LinearRecurrentContainer(node("s"), n_hid, n_hid, bias=False, step_mode="m")
            with torch.no_grad():  # rc.weight = [I, R]: the child receives x[t] + R y[t-1]
                rc.rc.weight.copy_(torch.cat([torch.eye(n_hid), self.rec.weight], dim=1))
            self.rc = rc
            del self.rec

    def lif(self, i, cur):
        return self.nodes[i](cur)

    def recurrent_lif(self, cur):
        return self.rc(cur)

    def layers(self, x):
        self._functional.reset_net(self)
        if self.w != "conv":
            return super().layers(x)
        xs = x.unsqueeze(0).repeat(self.T, 1, 1, 1, 1)
        (c1, b1), (c2, b2), (c3, b3) = self.sj_conv
        s1 = self.nodes[0](b1(c1(xs)))
        s2 = self.nodes[1](b2(c2(s1)))
        s3 = self.nodes[2](b3(c3(self.pool(s2))))
        s4 = self.nodes[3](self.fc4(self.flat(self.pool(s3))))
        return [s1, s2, s3, s4]


class SpikingJellyMemoptModel(SpikingJellyModel):
    """The SpikingJelly conv net with ``memopt.optimize_memory(level=1)`` (layer-wise recomputation with
    compressed spikes; levels 2-4 need CUDA): each conv-BN-LIF block and the output block is a target."""

    note = "exact (memopt level 1)"

    def make_neurons(self, spec):
        super().make_neurons(spec)
        if self.w != "conv":
            raise ValueError("spikingjelly-memopt runs the conv workloads only")
        blocks = [nn.Sequential(c, b, node) for (c, b), node in zip(self.sj_conv, self.nodes)]
        self.block1 = blocks[0]
        self.block2 = blocks[1]
        self.block3 = nn.Sequential(self.pool, *blocks[2])
        self.block4 = nn.Sequential(self.pool, self.flat, self.fc4, self.nodes[3])
        del self.sj_conv, self.fc4

    def layers(self, x):
        self._functional.reset_net(self)
        xs = x.unsqueeze(0).repeat(self.T, 1, 1, 1, 1)
        s1 = self.block1(xs)
        s2 = self.block2(s1)
        s3 = self.block3(s2)
        return [s1, s2, s3, self.block4(s3)]

    def optimize(self, x):
        from spikingjelly.activation_based import memopt

        memopt.optimize_memory(self, nn.Sequential, lambda m: m.output(x).sum(), level=1)


# ------------------------------------------------------------------------------------------ snnTorch
class SnnTorchModel(PeerModel):
    def make_neurons(self, spec):
        import snntorch as snn
        from snntorch import surrogate

        self.T = spec.get("T")
        n = 1 if self.w == "lif" else self.nlayers
        self.nodes = nn.ModuleList([
            snn.Leaky(beta=BETA, threshold=V_TH, spike_grad=surrogate.atan(alpha=ATAN_ALPHA), reset_mechanism="zero")
            for _ in range(n)])
        # snn.RLeaky(reset_mechanism='zero') zeroes the whole membrane, input included, on the step after a
        # spike, so it is not our hard reset: the recurrence is an explicit nn.Linear around a Leaky instead.

    def lif(self, i, cur):
        node = self.nodes[i]

        def step(c, mem):
            return node(c, torch.zeros_like(c) if mem is None else mem)

        return _stack_loop(step, cur)

    def recurrent_lif(self, cur):
        node = self.nodes[0]
        out = []
        mem = torch.zeros_like(cur[0])
        spk = None
        for c in cur.unbind(0):
            c = c if spk is None else c + self.rec(spk)
            spk, mem = node(c, mem)
            out.append(spk)
        return torch.stack(out)


# ------------------------------------------------------------------------------------------ Norse
class NorseModel(PeerModel):
    scale = 2.0  # LIFBox integrates 0.5 * input with dt * tau_mem_inv = 0.5

    def make_neurons(self, spec):
        import norse.torch as norse
        from norse.torch.functional.lif_box import LIFBoxFeedForwardState

        self.T = spec.get("T")
        self._state = LIFBoxFeedForwardState
        p = norse.LIFBoxParameters(tau_mem_inv=torch.as_tensor(1.0 - BETA), v_leak=torch.as_tensor(0.0),
                                   v_th=torch.as_tensor(V_TH), v_reset=torch.as_tensor(V_RESET), method="circ",
                                   alpha=NORSE_CIRC_ALPHA)
        n = 1 if self.w == "lif" else self.nlayers
        self.nodes = nn.ModuleList([norse.LIFBoxCell(p, dt=1.0) for _ in range(n)])

    def _step(self, node):
        def step(c, state):
            if state is None:
                state = self._state(v=torch.zeros_like(c))
            return node(c, state)

        return step

    def lif(self, i, cur):
        return _stack_loop(self._step(self.nodes[i]), cur)

    def recurrent_lif(self, cur):
        step = self._step(self.nodes[0])
        out = []
        state = None
        z = None
        for c in cur.unbind(0):
            z, state = step(c if z is None else c + self.rec(z), state)
            out.append(z)
        return torch.stack(out)


MODELS = {"spikingjelly": SpikingJellyModel, "spikingjelly-memopt": SpikingJellyMemoptModel, "snntorch": SnnTorchModel,
          "norse": NorseModel}


def version(name: str) -> str:
    import importlib.metadata as md

    return md.version(name)


def build(framework, workload, spec, params, probe=False):
    model = MODELS[framework](workload, spec, params)
    if framework == "spikingjelly-memopt":
        from workloads import make_data

        model.optimize(make_data(workload, spec)[0])
    if framework == "norse" and base_name(workload) == "lif":
        model.note = "exact (input currents pre-doubled)"
    return model
