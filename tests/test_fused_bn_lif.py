"""Batch norm fused into the compiled LIF kernels (:mod:`spaic_train.neurons.kernels.bn_lif`, C and numba) against the
unfused path (the ``batchnorm`` synapse's ``torch.nn.BatchNorm*``, then the LIF kernel).

Tolerances: the fused kernel normalises as ``x * A + B`` with ``A = w * invstd`` folded per channel (torch computes
the same affine map in another order) and sums the statistics and the parameter gradients in float64 (torch: float32),
so the drive differs by ~1 ulp; over ``T`` steps the membrane and the gradients stay within ``rtol = 1e-5`` of their
largest magnitude (``2e-5`` for the parameter gradients, sums over all ``T·B·H·W`` values of a channel).  Spikes are
compared exactly on inputs whose float64 membranes lie nowhere within ``1e-4`` of the threshold (where 1 ulp could flip
one).
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch
from torch import nn

import spaic_train as spaic
from spaic_train.neurons import build_neuron
from spaic_train.neurons.kernels import bn_lif, cpu_common, dispatch

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True, params=["c", "numba"])
def cpu_backend(request, monkeypatch):
    """Every test on both CPU backends: the C kernels (first choice) and numba's (where no C compiler works)."""
    monkeypatch.setattr(dispatch, "USE_C", request.param == "c")
    if request.param == "c" and dispatch._kernels("cpu") is not dispatch._kernel_mods.get("c"):
        pytest.skip("no working C compiler on this machine (numba's kernels are tested)")
    return request.param
MARGIN = 1e-4


def _close(a: torch.Tensor, b: torch.Tensor, rtol: float = 1e-5) -> None:
    torch.testing.assert_close(a, b, rtol=rtol, atol=rtol * float(b.abs().max()) + 1e-7)


def _input(layout: str, shape=(5, 3, 4, 6, 7), seed: int = 1) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(*shape, generator=g) * 2.0 + 0.5
    if layout == "channels_last":
        x = x.permute(0, 1, 3, 4, 2).contiguous().permute(0, 1, 4, 2, 3)
        assert not x.is_contiguous()
    return x


def _norm(C: int, train: bool, dims: int = 2, **kwargs) -> nn.Module:
    bn = {1: nn.BatchNorm1d, 2: nn.BatchNorm2d}[dims](C, **kwargs)
    g = torch.Generator().manual_seed(2)
    with torch.no_grad():
        if bn.weight is not None:
            bn.weight.copy_(torch.rand(C, generator=g) + 0.5)
            bn.bias.copy_(torch.rand(C, generator=g) * 0.7 - 0.2)
        if bn.running_mean is not None:
            bn.running_mean.fill_(0.3)
            bn.running_var.fill_(2.0)
    return bn.train(train)


def _run(fuse: bool, x0, bn_state, model="lif", train=True, norm_kwargs=None, dims=2, **neuron_kwargs):
    """One forward + backward; returns outputs, gradients and the batch norm's state afterwards."""
    dispatch.FUSE_BN = fuse
    try:
        x = x0.detach().clone(memory_format=torch.preserve_format).requires_grad_(True)
        bn = _norm(x.shape[2], train, dims, **(norm_kwargs or {}))
        bn.load_state_dict(bn_state)
        neuron = build_neuron(model, **neuron_kwargs)
        g = torch.Generator().manual_seed(3)
        V0 = (torch.rand(x.shape[1:], generator=g) * 0.5).requires_grad_(True)
        gO = torch.randn(x.shape, generator=g)
        O, state, Vseq = neuron.run_sequence_normed(x, bn, {"V": V0}, return_v=True)
        ((O * gO).sum() + (state["V"] ** 2).sum() + (Vseq * 0.1).sum()).backward()
    finally:
        dispatch.FUSE_BN = True
    params = {} if bn.weight is None else {"dweight": bn.weight.grad, "dbias": bn.bias.grad}
    return dict(O=O.detach(), VT=state["V"].detach(), Vseq=Vseq.detach(), dx=x.grad, dV0=V0.grad, **params,
                stats={k: v.clone() for k, v in bn.state_dict().items()})


def _away_from_threshold(x, bn_state, train, dims=2, norm_kwargs=None, model="lif", **neuron_kwargs):
    """``x`` with the few values moved (by 0.05) whose pre-reset membrane, computed in float64, lies within MARGIN
    of the threshold, until none does: there float32 rounding could flip a spike in one path and not the other."""
    bn = _norm(x.shape[2], train, dims, **(norm_kwargs or {})).double()
    neuron = build_neuron(model, **neuron_kwargs)
    beta = neuron.beta()
    x = x.clone(memory_format=torch.preserve_format)
    for _ in range(20):
        bn.load_state_dict(bn_state)
        with torch.no_grad():
            I = neuron._drive(bn(x.double().reshape(-1, *x.shape[2:])).reshape(x.shape), beta)
            V = torch.rand(x.shape[1:], generator=torch.Generator().manual_seed(3)).double() * 0.5
            near = torch.zeros(x.shape, dtype=torch.bool)
            for t in range(x.shape[0]):
                H = beta * V + I[t]
                near[t] = (H - neuron.v_th).abs() <= MARGIN
                S = (H >= neuron.v_th).double()
                V = H * (1 - S) + neuron.v_reset * S if neuron.reset == "hard" else H - neuron.v_th * S
        if not near.any():
            return x
        x[near] += 0.05
    raise AssertionError("membranes stay at the threshold")


def _compare(x, train=True, dims=2, norm_kwargs=None, model="lif", calls=None, **neuron_kwargs):
    bn_state = _norm(x.shape[2], train, dims, **(norm_kwargs or {})).state_dict()
    x = _away_from_threshold(x, bn_state, train, dims, norm_kwargs, model, **neuron_kwargs)
    fused = _run(True, x, bn_state, model, train, norm_kwargs, dims, **neuron_kwargs)
    plain = _run(False, x, bn_state, model, train, norm_kwargs, dims, **neuron_kwargs)
    assert torch.equal(fused["O"], plain["O"])
    for key in ("VT", "Vseq", "dx", "dV0"):
        _close(fused[key], plain[key])
    for key in ("dweight", "dbias"):
        if key in plain:
            _close(fused[key], plain[key], rtol=2e-5)
    assert fused["stats"].keys() == plain["stats"].keys()
    for key, value in plain["stats"].items():
        if value.is_floating_point():
            _close(fused["stats"][key], value, rtol=1e-6)
        else:
            assert torch.equal(fused["stats"][key], value), key
    return fused


@pytest.fixture
def fused_calls(monkeypatch):
    """Counts the calls that reach the fused kernel."""
    calls = []
    original = bn_lif.bn_lif_sequence

    def counting(*args, **kwargs):
        calls.append(args[0].shape)
        return original(*args, **kwargs)

    monkeypatch.setattr(bn_lif, "bn_lif_sequence", counting)
    return calls


@pytest.mark.parametrize("layout", ["contiguous", "channels_last"])
@pytest.mark.parametrize("train", [True, False], ids=["train", "eval"])
@pytest.mark.parametrize("reset", ["hard", "soft"])
@pytest.mark.parametrize("surrogate", ["atan", "sigmoid", "triangle"])
def test_matches_unfused(layout, train, reset, surrogate, fused_calls):
    x = _input(layout)
    fused = _compare(x, train, reset=reset, surrogate=surrogate, tau=4.0)
    assert len(fused_calls) == 1
    assert 0.05 < float(fused["O"].mean()) < 0.95  # both spiking and silent neurons are exercised
    if layout == "channels_last":
        assert fused["O"].stride() == x.stride() and fused["dx"].stride() == x.stride()  # no copies


@pytest.mark.parametrize("case", ["if-detach", "decay_input", "no-affine", "momentum-none", "no-running-stats",
                                  "bn1d-len", "bn1d"])
def test_variants_match_unfused(case, fused_calls):
    x, dims, norm_kwargs, model, kw = _input("contiguous"), 2, {}, "lif", dict(tau=4.0)
    if case == "if-detach":
        model, kw = "if", dict(detach_reset=True, v_th=1.5)
    elif case == "decay_input":
        kw = dict(tau=2.0, decay_input=True, v_th=0.5)
    elif case == "no-affine":
        norm_kwargs = dict(affine=False)
    elif case == "momentum-none":
        norm_kwargs = dict(momentum=None)
    elif case == "no-running-stats":
        norm_kwargs = dict(track_running_stats=False)
    elif case == "bn1d-len":
        x, dims = _input("contiguous", (6, 4, 5, 9)), 1
    else:
        x, dims = _input("contiguous", (6, 4, 50)), 1
    _compare(x, True, dims, norm_kwargs, model, **kw)
    assert len(fused_calls) == 1


def test_several_chunks_across_channels(monkeypatch, fused_calls):
    """16-neuron chunks that start and end inside a channel, a partial last chunk, and a short backward chunk."""
    monkeypatch.setattr(cpu_common, "MAX_WIDTH", 16)
    _compare(_input("contiguous", (4, 3, 5, 3, 5)), True, tau=4.0)
    monkeypatch.setattr(cpu_common, "MAX_WIDTH", 1024)
    monkeypatch.setattr(cpu_common, "SCRATCH_ELEMS", 32 * 12)
    _compare(_input("channels_last", (12, 2, 5, 4, 3), seed=4), True, tau=4.0)
    assert len(fused_calls) == 2


def test_uncovered_calls_run_unfused(fused_calls):
    """float64, a learnable tau, adaptation, a hooked batch norm and a batch norm subclass (``SyncBatchNorm`` is one:
    its statistics span processes) take the unfused path, with the same result."""
    class SubclassedNorm(nn.BatchNorm2d):
        pass

    x = _input("contiguous")
    for model, kw, dtype, hooked in [("lif", {}, torch.float64, False), ("plif", {}, torch.float32, False),
                                     ("alif", {}, torch.float32, False), ("lif", {}, torch.float32, True),
                                     ("lif", {}, torch.float32, "subclass")]:
        bn = _norm(x.shape[2], True).to(dtype)
        if hooked == "subclass":
            bn = SubclassedNorm(x.shape[2]).train()
            bn.load_state_dict(_norm(x.shape[2], True).state_dict())
            hooked = False
        neuron = build_neuron(model, **kw).to(dtype)
        seen = []
        if hooked:
            bn.register_forward_hook(lambda m, i, o, seen=seen: seen.append(o.shape))
        O, state, _ = neuron.run_sequence_normed(x.to(dtype), bn)
        ref = _norm(x.shape[2], True).to(dtype)
        O_ref, state_ref, _ = neuron.run_sequence(ref(x.to(dtype).reshape(-1, *x.shape[2:])).reshape(x.shape))
        assert torch.equal(O, O_ref) and torch.equal(state["V"], state_ref["V"])
        assert seen == ([torch.Size([15, 4, 6, 7])] if hooked else [])
    assert fused_calls == []


def _conv_net(checkpoint_steps=None):
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        import workloads as W
        from fw_spaic import build_network
    finally:
        sys.path.remove(str(ROOT / "benchmarks"))
    spec = dict(W.QUICK["conv"], T=3, B=2)
    net = build_network(spaic, "conv", spec, W.make_params("conv", spec))
    net.checkpoint_steps = checkpoint_steps
    net.time_steps = spec["T"]
    x, y = W.make_data("conv", spec)
    return net, x, y, W


def _train_step(fuse: bool, checkpoint_steps=None):
    dispatch.FUSE_BN = fuse
    try:
        net, x, y, W = _conv_net(checkpoint_steps)
        out = net(x)
        W.loss_fn("conv", out, y).backward()
    finally:
        dispatch.FUSE_BN = True
    grads = {n: p.grad.clone() for n, p in net.named_parameters() if p.grad is not None}
    buffers = {n: b.clone() for n, b in net.named_buffers()}
    return out.detach(), grads, buffers


@pytest.mark.parametrize("checkpoint_steps", [None, 2])
def test_conv_network_gradients_match(checkpoint_steps, fused_calls):
    """The benchmark's conv-BN-LIF net: the fused path runs for each of its 3 batch norms and every parameter
    gradient and running statistic matches the unfused path (with checkpointing through time too)."""
    out, grads, buffers = _train_step(True, checkpoint_steps)
    # checkpointing: 2 chunks, each run forward and recomputed in backward
    assert len(fused_calls) == (3 if checkpoint_steps is None else 12)
    out_ref, grads_ref, buffers_ref = _train_step(False, checkpoint_steps)
    assert len(fused_calls) == (3 if checkpoint_steps is None else 12)
    _close(out, out_ref)
    assert grads.keys() == grads_ref.keys() and len(grads) >= 7
    for name, g in grads_ref.items():
        _close(grads[name], g, rtol=1e-4)
    for name, b in buffers_ref.items():
        if b.is_floating_point():
            _close(buffers[name], b, rtol=1e-5)
        else:
            assert torch.equal(buffers[name], b), name


def test_network_recording(fused_calls):
    """Recording the membrane keeps the fused path (same records as unfused); recording the input current, or
    stepped mode, runs unfused (the normalised current is then needed)."""
    net, x, _, _ = _conv_net()
    net.eval()
    records = []
    for fuse in (True, False):
        dispatch.FUSE_BN = fuse
        try:
            with net.record(("O", "V")) as rec:
                net(x)
        finally:
            dispatch.FUSE_BN = True
        records.append({g: dict(v) for g, v in rec.items()})
    assert len(fused_calls) == 3
    for group, recs in records[1].items():
        for var, seq in recs.items():
            _close(records[0][group][var], seq)
    with net.record(("Isyn",)) as rec:
        net(x)
    assert len(fused_calls) == 3 and rec["l1"]["Isyn"].shape[0] == net.time_steps
    net(x, mode="step")
    assert len(fused_calls) == 3


@pytest.mark.parametrize("channels_last", [False, True])
@pytest.mark.parametrize("binary", [True, False], ids=["spikes", "real"])
def test_max_pool_keeps_no_indices(channels_last, binary, monkeypatch):
    """With spike compaction off (the default) the max pool keeps its float input only, no int64 argmax indices, and
    its gradient equals autograd's max pool bit for bit (same kernels on the same values: ties go to the first
    index, as in torch), on spikes (ties in every all-zero window) and on real values with ties."""
    from spaic_train.connection import spike_ops
    from spaic_train.neurons.kernels import spike_bits

    monkeypatch.setattr(spike_bits, "COMPACT_SPIKES", False)
    g = torch.Generator().manual_seed(5)
    x = (torch.rand(4, 5, 10, 9, generator=g) < 0.2).float() if binary else torch.randint(0, 3, (4, 5, 10, 9),
                                                                                            generator=g).float()
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    x.requires_grad_()
    pool = ((3, 3), (2, 2), (1, 1))
    y_ref = torch.nn.functional.max_pool2d(x, *pool)
    gy = torch.randn(y_ref.shape, generator=g)
    (ref,) = torch.autograd.grad(y_ref, x, gy)
    saved = []
    with torch.autograd.graph.saved_tensors_hooks(lambda t: saved.append(t.dtype) or t, lambda t: t):
        y = spike_ops.spike_max_pool2d(x, *pool)
    assert saved == [torch.float32]
    assert torch.equal(y, y_ref)
    assert torch.equal(torch.autograd.grad(y, x, gy)[0], ref)


@pytest.mark.parametrize("learn_delay", [False, True])
def test_delayed_connection_with_batchnorm(learn_delay, fused_calls):
    """Per-synapse delays (fixed or learnable) before a 1-d batch norm: the fused network's gradients (delays
    included) and running statistics match the unfused one's."""
    results = []
    for fuse in (True, False):
        dispatch.FUSE_BN = fuse
        try:
            torch.manual_seed(0)
            net = spaic.Network(dt=1.0)
            net.inp = spaic.Encoder(shape=(12,), coding="direct")
            net.out = spaic.NeuronGroup(8, model="lif", tau=4.0)
            net.c = spaic.Connection(net.inp, net.out, link_type="full", syn_type=["basic", "batchnorm"],
                                     max_delay=3.0, learn_delay=learn_delay)
            x = torch.rand(6, 5, 12, generator=torch.Generator().manual_seed(1)) * 2
            out = net(x)
            (out * torch.linspace(-1, 1, 8)).sum().backward()
        finally:
            dispatch.FUSE_BN = True
        results.append((out.detach(), {n: p.grad for n, p in net.named_parameters() if p.grad is not None},
                        {n: b.clone() for n, b in net.named_buffers()}))
    assert len(fused_calls) == 1
    (out, grads, bufs), (out_ref, grads_ref, bufs_ref) = results
    assert torch.equal(out, out_ref)
    assert grads.keys() == grads_ref.keys() and len(grads) >= 3 + learn_delay
    for name, g in grads_ref.items():
        _close(grads[name], g, rtol=1e-4)
    for name, b in bufs_ref.items():
        _close(bufs[name].double(), b.double(), rtol=1e-5)


def test_hooks_on_the_batchnorm_synapse_keep_it_unfused(fused_calls):
    """A forward hook on the ``batchnorm`` synapse (not only on its ``torch.nn`` module) must see every call: such a
    connection runs unfused, with the hook called once per forward."""
    torch.manual_seed(0)
    net = spaic.Network(dt=1.0)
    net.inp = spaic.Encoder(shape=(2, 6, 6), coding="poisson")
    net.l1 = spaic.NeuronGroup(shape=None, model="lif", tau=3.0)
    net.c1 = spaic.Connection(net.inp, net.l1, link_type="conv", syn_type=["conv", "batchnorm"], in_channels=2,
                              out_channels=3, kernel_size=(3, 3), padding=1, w_std=0.6)
    seen = []
    net.c1.synapses[-1].register_forward_hook(lambda m, i, o: seen.append(o.shape))
    net(torch.rand(4, 3, 2, 6, 6), time_steps=4)
    assert len(seen) == 1 and not fused_calls
