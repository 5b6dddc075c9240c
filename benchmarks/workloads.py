"""Workload definitions shared by every framework: sizes, input data and initial weights.

Every worker process regenerates the data and the weights from fixed seeds, so all frameworks
train exactly the same network on exactly the same input (bit-identical tensors).

Neuron model everywhere: ``V[t] = beta * V[t-1] + I[t]`` with ``beta = 0.5``, spike when
``V >= 1`` (``> 1`` in the peers, a measure-zero difference), hard reset to 0.
"""

from __future__ import annotations

import math
import time

import torch
import torch.nn.functional as F

BETA = 0.5
#: membrane time constant (ms) giving beta = exp(-dt / tau) = 0.5 at dt = 1 ms
TAU = 1.0 / math.log(2.0)
V_TH = 1.0
V_RESET = 0.0
#: atan surrogate sharpness (SpikingJelly / snnTorch / spaic_train convention): g'(x) = (a/2) / (1 + (pi/2 a x)^2)
ATAN_ALPHA = 2.0

WORKLOADS = ("lif", "fc", "conv", "delay-feedback")
#: spaic_train only: the same delayed feed-forward net run time-batched and forced step by step
FASTPATH_WORKLOADS = ("fastpath-batched", "fastpath-step")
#: spaic_train only (``--learned-delays``): the fastpath net with fixed vs learnable delays (relaxed, training mode)
DELAY_WORKLOADS = ("delays-fixed", "delays-learned")
#: relaxation width (ms) of the learnable delays of ``delays-learned``
DELAY_SIGMA = 2.0
#: spaic_train only (``--memory``): long-T versions of ``fc`` / ``conv``, plain vs checkpointed through time
MEMORY_WORKLOADS = ("memory-fc-plain", "memory-fc-ckpt", "memory-conv-plain", "memory-conv-ckpt")
#: long time axis and chunk length ``checkpoint_steps`` of the ``--memory`` workloads (other sizes as ``fc``/``conv``)
MEMORY_FULL = {"fc": dict(T=200, checkpoint_steps=20), "conv": dict(T=32, checkpoint_steps=4)}
MEMORY_QUICK = {"fc": dict(T=64, checkpoint_steps=8), "conv": dict(T=8, checkpoint_steps=2)}

#: long-T rows: the ``conv`` net (CIFAR-shaped, width 64: the ``cifar_snn`` scale) at T = 4, 16, 64 (``--long-t``)
LONG_T_WORKLOADS = ("conv-t4", "conv-t16", "conv-t64")
LONG_T_QUICK = {"conv-t4": 2, "conv-t16": 4, "conv-t64": 8}

FULL = {
    "lif": dict(N=4096, T=256, B=32),
    "fc": dict(n_in=784, n_hid=512, n_out=10, T=25, B=128, p=0.2),
    "conv": dict(C=(64, 128, 128), H=32, n_out=10, T=4, B=16),
    "delay-feedback": dict(n_in=100, n_hid=256, n_out=10, T=64, B=32, p=0.2, max_delay=8),
    "fastpath": dict(n_in=100, n_hid=256, n_out=10, T=64, B=32, p=0.2, max_delay=8),
}
QUICK = {
    "lif": dict(N=256, T=32, B=4),
    "fc": dict(n_in=784, n_hid=64, n_out=10, T=8, B=8, p=0.2),
    "conv": dict(C=(4, 8, 8), H=16, n_out=10, T=2, B=2),
    "delay-feedback": dict(n_in=100, n_hid=32, n_out=10, T=16, B=4, p=0.2, max_delay=8),
    "fastpath": dict(n_in=100, n_hid=32, n_out=10, T=16, B=4, p=0.2, max_delay=8),
}

DESCRIPTIONS = {
    "lif": "one LIF layer, random input currents, forward + backward of the spike sum (no optimizer)",
    "fc": "784-hid LIF-10 LIF, Bernoulli(0.2) spikes, CE on spike counts, Adam",
    "conv": "conv-BN-LIF x3 (+maxpool2 x2), full 10 LIF, direct input, CE on rate, Adam",
    "delay-feedback": "in-hid LIF (per-synapse delays <= 8 steps) with recurrent hid->hid, hid-10 LIF, "
                      "CE on counts, Adam",
    "fastpath": "in-hid LIF-10 LIF, per-synapse delays on both connections, no loop",
    "delays": "spaic_train only: the fastpath net with fixed vs learnable per-synapse delays (learn_delay=True, "
              "Gaussian relaxation, training mode)",
    "long-t": "the conv net at T = 4, 16, 64 (--long-t): time and peak memory vs the plain loop and the peers",
    "memory": "spaic_train only: fc and conv at long T, plain vs Network checkpoint_steps (checkpoint through time)",
}


def base_name(workload: str) -> str:
    if workload.startswith("memory-"):
        return workload.split("-")[1]  # memory-fc-ckpt -> fc
    if workload in LONG_T_WORKLOADS:
        return "conv"
    return "fastpath" if workload.startswith(("fastpath", "delays")) else workload


def spec_for(workload: str, quick: bool) -> dict:
    base = base_name(workload)
    spec = dict((QUICK if quick else FULL)[base])
    if workload in LONG_T_WORKLOADS:
        spec["T"] = LONG_T_QUICK[workload] if quick else int(workload.split("-t")[1])
    if workload.startswith("memory-"):
        mem = (MEMORY_QUICK if quick else MEMORY_FULL)[base]
        spec["T"] = mem["T"]
        spec["checkpoint_steps"] = mem["checkpoint_steps"] if workload.endswith("-ckpt") else None
    return spec


def _gen(seed: int) -> torch.Generator:
    g = torch.Generator()
    g.manual_seed(seed)
    return g


def make_data(workload: str, spec: dict):
    """``(x, y)``: the input (sequence ``[T, B, ...]`` or static ``[B, ...]``) and integer labels (or ``None``)."""
    w = base_name(workload)
    g = _gen(1234)
    if w == "lif":
        # currents ~ N(0.35, 0.6): about 20 % of steps spike
        x = 0.35 + 0.6 * torch.randn(spec["T"], spec["B"], spec["N"], generator=g)
        return x, None
    if w == "conv":
        x = torch.rand(spec["B"], 3, spec["H"], spec["H"], generator=g)
        y = torch.randint(0, spec["n_out"], (spec["B"],), generator=g)
        return x, y
    x = (torch.rand(spec["T"], spec["B"], spec["n_in"], generator=g) < spec["p"]).float()
    y = torch.randint(0, spec["n_out"], (spec["B"],), generator=g)
    return x, y


def _normal(g, shape, mean, std):
    return mean + std * torch.randn(*shape, generator=g)


def make_params(workload: str, spec: dict) -> dict:
    """Initial weights (``full``: ``(post, pre)``; conv: ``(out, in, kh, kw)``) and delays (ms, whole steps)."""
    w = base_name(workload)
    g = _gen(4321)
    if w == "lif":
        return {}
    if w == "fc":
        act = spec["n_in"] * spec["p"]
        return {
            "W1": _normal(g, (spec["n_hid"], spec["n_in"]), 0.0, 1.0 / act ** 0.5),
            "W2": _normal(g, (spec["n_out"], spec["n_hid"]), 0.0, 1.5 / (0.2 * spec["n_hid"]) ** 0.5),
        }
    if w == "conv":
        c1, c2, c3 = spec["C"]
        hw = spec["H"] // 4
        p = {
            "K1": _normal(g, (c1, 3, 3, 3), 0.0, (2.0 / 27) ** 0.5),
            "K2": _normal(g, (c2, c1, 3, 3), 0.0, (2.0 / (9 * c1)) ** 0.5),
            "K3": _normal(g, (c3, c2, 3, 3), 0.0, (2.0 / (9 * c2)) ** 0.5),
        }
        n_flat = c3 * hw * hw
        p["W4"] = _normal(g, (spec["n_out"], n_flat), 0.0, 2.0 / (0.2 * n_flat) ** 0.5)
        return p
    # delay-feedback and fastpath
    act = spec["n_in"] * spec["p"]
    n_hid = spec["n_hid"]
    p = {
        "W1": _normal(g, (n_hid, spec["n_in"]), 0.05 / act ** 0.5, 1.0 / act ** 0.5),
        "R": _normal(g, (n_hid, n_hid), 0.0, 0.5 / (0.2 * n_hid) ** 0.5),
        "W2": _normal(g, (spec["n_out"], n_hid), 0.0, 1.5 / (0.2 * n_hid) ** 0.5),
        "D1": torch.randint(0, spec["max_delay"] + 1, (n_hid, spec["n_in"]), generator=g).float(),
        "D2": torch.randint(0, spec["max_delay"] + 1, (spec["n_out"], n_hid), generator=g).float(),
    }
    return p


class LayeredModel(torch.nn.Module):
    """What the benchmark calls on a model built layer by layer: subclasses give ``layers(x)`` (the spikes of every
    neuron layer) and ``workload``."""

    note = "exact"

    def layers(self, x):
        raise NotImplementedError

    def output(self, x):
        return readout(self.workload, self.layers(x)[-1])

    def probe(self, x):
        return self.layers(x)

    def after_step(self):
        pass


def linear_from(W: torch.Tensor) -> torch.nn.Linear:
    """``nn.Linear`` without bias holding ``W`` ``(out, in)`` (the peers and the plain loop build their layers so)."""
    lin = torch.nn.Linear(W.shape[1], W.shape[0], bias=False)
    with torch.no_grad():
        lin.weight.copy_(W)
    return lin


def conv_from(K: torch.Tensor) -> torch.nn.Conv2d:
    """``nn.Conv2d`` without bias, 'same' padding, holding ``K`` ``(out, in, k, k)``."""
    conv = torch.nn.Conv2d(K.shape[1], K.shape[0], K.shape[2], padding=K.shape[2] // 2, bias=False)
    with torch.no_grad():
        conv.weight.copy_(K)
    return conv


def loss_fn(workload: str, out: torch.Tensor, y) -> torch.Tensor:
    """Loss on a model's output: the spike sequence for ``lif``, counts / rates ``[B, n_out]`` otherwise."""
    if base_name(workload) == "lif":
        return out.sum()
    return F.cross_entropy(out, y)


def readout(workload: str, seq: torch.Tensor) -> torch.Tensor:
    """What the loss sees from the output layer's spikes ``[T, B, n_out]`` (peers use this)."""
    w = base_name(workload)
    if w == "lif":
        return seq
    if w == "conv":
        return seq.mean(0)  # rate
    return seq.sum(0)  # counts


def uses_optimizer(workload: str) -> bool:
    return base_name(workload) != "lif"


def training_step(workload: str, model, x, y):
    """One training iteration of ``model`` on ``(x, y)`` as every framework's row times it: zero the gradients, the
    workload's loss, backward, an Adam step (lr 1e-3, its own optimizer), then ``model.after_step()``."""
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)

    def step():
        opt.zero_grad(set_to_none=True)
        loss_fn(workload, model.output(x), y).backward()
        opt.step()
        model.after_step()

    return step


def timed(step, warmup: int, iters: int) -> list:
    """Milliseconds of each of ``iters`` calls of ``step()``, after ``warmup`` untimed calls."""
    for _ in range(warmup):
        step()
    times = []
    for _ in range(iters):
        t0 = time.perf_counter()
        step()
        times.append((time.perf_counter() - t0) * 1e3)
    return times
