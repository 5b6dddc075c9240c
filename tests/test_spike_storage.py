"""Spikes saved for backward as 1 byte each: same gradients as the plain ops, bit for bit, on every path.

The reference is the previous computation: ``spike_ops.COMPACT_SPIKES = False`` runs the plain autograd
``F.linear`` / ``F.conv2d`` (which save the float32 input), and the torch LIF kernel's reference saves its
spikes as float32 (the old ``save_for_backward``).  Both runs start from the same weights and inputs and
must give identical outputs and gradients; the saved tensors are inspected with ``saved_tensors_hooks``.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import spaic_train as spaic
from spaic_train.connection import spike_ops
from spaic_train.neurons.kernels import spike_bits, torch_lif
from spaic_train.surrogate import get_surrogate


class _SavedBytes:
    """Sum of the bytes (by dtype) of the tensors autograd saves inside the block."""

    def __init__(self):
        self.by_dtype: dict[torch.dtype, int] = {}

    def pack(self, t):
        self.by_dtype[t.dtype] = self.by_dtype.get(t.dtype, 0) + t.numel() * t.element_size()
        return t

    def __enter__(self):
        self._ctx = torch.autograd.graph.saved_tensors_hooks(self.pack, lambda t: t)
        self._ctx.__enter__()
        return self

    def __exit__(self, *exc):
        self._ctx.__exit__(*exc)


@pytest.fixture(autouse=True)
def _compaction_on(monkeypatch):
    """The 1-byte storage is opt-in (``SPAIC_TRAIN_COMPACT_SPIKES=1``); these tests switch it on (tests that compare
    against the plain ops switch it off again)."""
    monkeypatch.setattr(spike_bits, "COMPACT_SPIKES", True)


def _spikes(*shape, p=0.3, seed=0):
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(*shape, generator=g) < p).float()


# ------------------------------------------------------------------------------------------ the weight ops
@pytest.mark.parametrize("shape", [(7, 13), (256, 784), (1, 1)])
def test_spike_linear_gradients_equal_plain_linear(shape):
    x = _spikes(*shape).requires_grad_()
    W = torch.randn(9, shape[1], generator=torch.Generator().manual_seed(1)).requires_grad_()
    gy = torch.randn(shape[0], 9, generator=torch.Generator().manual_seed(2))
    ref = torch.autograd.grad(F.linear(x, W), (x, W), gy)
    bits = spike_ops.compact_spikes(x)
    assert bits is not None and bits.dtype == torch.bool
    with _SavedBytes() as saved:
        y = spike_ops.spike_linear(x, bits, W)
    assert saved.by_dtype[torch.bool] == x.numel()
    assert saved.by_dtype[torch.float32] == W.numel() * 4  # only the weight is saved as float
    assert torch.equal(y, F.linear(x, W))
    got = torch.autograd.grad(y, (x, W), gy)
    for a, b in zip(ref, got):
        assert torch.equal(a, b)


@pytest.mark.parametrize("channels_last", [False, True])
@pytest.mark.parametrize("conv", [dict(stride=(1, 1), padding=(1, 1), dilation=(1, 1), groups=1),
                                  dict(stride=(2, 2), padding=(0, 0), dilation=(1, 1), groups=2),
                                  dict(stride=(1, 1), padding=(2, 2), dilation=(2, 2), groups=1)])
def test_spike_conv2d_gradients_equal_plain_conv(channels_last, conv):
    x = _spikes(6, 4, 11, 11)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    x.requires_grad_()
    W = torch.randn(8, 4 // conv["groups"], 3, 3, generator=torch.Generator().manual_seed(1)).requires_grad_()
    args = (conv["stride"], conv["padding"], conv["dilation"], conv["groups"])
    y_ref = F.conv2d(x, W, None, *args)
    gy = torch.randn(y_ref.shape, generator=torch.Generator().manual_seed(2))
    ref = torch.autograd.grad(y_ref, (x, W), gy)
    with _SavedBytes() as saved:
        y = spike_ops.spike_conv2d(x, spike_ops.compact_spikes(x), W, *args)
    assert saved.by_dtype[torch.bool] == x.numel()
    assert saved.by_dtype[torch.float32] == W.numel() * 4  # only the weight is saved as float
    assert torch.equal(y, y_ref)
    for a, b in zip(ref, torch.autograd.grad(y, (x, W), gy)):
        assert torch.equal(a, b)


@pytest.mark.parametrize("channels_last", [False, True])
@pytest.mark.parametrize("pool", [((2, 2), (2, 2), (0, 0)), ((3, 3), (2, 2), (1, 1)), ((2, 3), (1, 2), (1, 1))])
def test_spike_max_pool_gradients_equal_plain_pool(channels_last, pool):
    x = _spikes(4, 5, 10, 9, p=0.2)  # many all-zero windows: ties everywhere
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    x.requires_grad_()
    y_ref = F.max_pool2d(x, *pool)
    gy = torch.randn(y_ref.shape, generator=torch.Generator().manual_seed(2))
    (ref,) = torch.autograd.grad(y_ref, x, gy)
    with _SavedBytes() as saved:
        y = spike_ops.spike_max_pool2d(x, *pool)
    assert saved.by_dtype == {torch.bool: x.numel()}  # no float input, no int64 indices
    assert torch.equal(y, y_ref)
    assert torch.equal(torch.autograd.grad(y, x, gy)[0], ref)


def test_compact_spikes_only_for_binary_inputs_while_recording():
    x = _spikes(5, 6)
    assert spike_ops.compact_spikes(x) is not None
    assert spike_ops.compact_spikes(x * 0.5) is None  # not spikes
    assert spike_ops.compact_spikes(x.double().half()) is not None  # any float dtype holding 0/1
    with torch.no_grad():
        assert spike_ops.compact_spikes(x) is None  # nothing is saved: the plain op runs


def test_rows_of_maps_delay_tap_views():
    full = _spikes(9, 2, 3)
    bits = full != 0
    for a, b in ((0, 9), (2, 7), (4, 9)):
        assert torch.equal(spike_ops.rows_of(bits, full, full[a:b]), bits[a:b])
    assert spike_ops.rows_of(bits, full, full.clone()) is None  # another tensor
    assert spike_ops.rows_of(bits, full, full[:, :1]) is None  # not a row slice


# ------------------------------------------------------------------------------------------ the torch LIF kernel
class _FloatSpikesLIF(torch_lif.LIFSequenceFunction):
    """The previous kernel: spikes saved for backward as float32."""

    @staticmethod
    def forward(ctx, I, V0, a0, beta, cfg):  # type: ignore[override]
        out = torch_lif.LIFSequenceFunction.forward(ctx, I, V0, a0, beta, cfg)
        saved = list(ctx.to_save)
        saved[1] = out[0]
        ctx.save_for_backward(*saved)
        return out


@pytest.mark.parametrize("model", ["lif_hard", "lif_soft_detach", "alif", "plif"])
def test_torch_lif_kernel_uint8_spikes_equal_float_spikes(model):
    T, B, N = 9, 3, 17
    g = torch.Generator().manual_seed(3)
    I = (0.4 + 0.7 * torch.randn(T, B, N, generator=g)).requires_grad_()
    V0 = (0.2 * torch.rand(B, N, generator=g)).requires_grad_()
    a0 = (0.1 * torch.rand(B, N, generator=g)).requires_grad_() if model == "alif" else None
    beta = torch.full((N,), 0.7, requires_grad=True) if model == "plif" else 0.6
    hard, detach = model != "lif_soft_detach", model == "lif_soft_detach"
    cfg = torch_lif.LIFConfig(1.0, 0.0, hard, detach, get_surrogate("atan"), 0.8 if a0 is not None else 0.0,
                              0.3 if a0 is not None else 0.0, True)
    gO = torch.randn(T, B, N, generator=g)
    gV = torch.randn(T, B, N, generator=g)
    leaves = [t for t in (I, V0, a0, beta) if isinstance(t, torch.Tensor)]

    def grads(fn):
        O, VT, aT, Vseq = fn.apply(I, V0, a0, beta, cfg)
        loss = (O * gO).sum() + (Vseq * gV).sum() + VT.sum() + (aT.sum() if aT is not None else 0)
        return O, torch.autograd.grad(loss, leaves)

    with _SavedBytes() as saved:
        O, got = grads(torch_lif.LIFSequenceFunction)
    assert saved.by_dtype[torch.uint8] == O.numel()
    O_ref, ref = grads(_FloatSpikesLIF)
    assert torch.equal(O, O_ref)
    for a, b in zip(ref, got):
        assert torch.equal(a, b)


# ------------------------------------------------------------------------------------------ whole networks
def _net(delays, learn_delay=False, feedback=False, checkpoint_steps=None):
    torch.manual_seed(0)
    net = spaic.Network(dt=1.0, checkpoint_steps=checkpoint_steps)
    net.inp = spaic.Encoder(shape=(2, 8, 8), coding="poisson")
    net.l1 = spaic.NeuronGroup(shape=None, model="lif", tau=3.0)
    net.c1 = spaic.Connection(net.inp, net.l1, link_type="conv", syn_type=["conv", "batchnorm"], in_channels=2,
                              out_channels=4, kernel_size=(3, 3), padding=1, w_mean=0.3, w_std=0.6)
    net.l2 = spaic.NeuronGroup(shape=None, model="alif", tau=3.0)
    net.c2 = spaic.Connection(net.l1, net.l2, link_type="conv", syn_type=["maxpool", "conv"], in_channels=4,
                              out_channels=6, kernel_size=(3, 3), padding=1, w_mean=0.2, w_std=0.6,
                              max_delay=2.0 if delays else 0,
                              **(dict(learn_delay=True, delay_sigma=1.0) if learn_delay else {}))
    net.l3 = spaic.NeuronGroup(12, model="lif", tau=3.0)
    net.c3 = spaic.Connection(net.l2, net.l3, link_type="full", w_mean=0.05, w_std=0.3,
                              max_delay=3.0 if delays else 0,
                              **(dict(learn_delay=True, delay_sigma=1.0) if learn_delay else {}))
    net.l4 = spaic.NeuronGroup(5, model="plif", tau=3.0)
    net.c4 = spaic.Connection(net.l3, net.l4, link_type="full", w_mean=0.1, w_std=0.5)
    if feedback:
        net.fb = spaic.Connection(net.l4, net.l3, link_type="full", w_std=0.5, max_delay=2.0 if delays else 0)
    net.out = spaic.Decoder(net.l4, coding="spike_counts")
    return net


def _grads(net, x, mode):
    torch.manual_seed(5)  # the poisson encoder draws
    out = net(x, time_steps=7, mode=mode)
    loss = (out * torch.linspace(-1, 1, out.shape[-1])).sum()
    names, params = zip(*[(n, p) for n, p in net.named_parameters() if p.requires_grad])
    return out, dict(zip(names, torch.autograd.grad(loss, params, allow_unused=True)))


@pytest.mark.parametrize("case", ["batched", "step", "delays", "learned-delays", "feedback-delays", "checkpoint"])
def test_network_gradients_equal_with_and_without_compact_spikes(case, monkeypatch):
    kw = dict(delays=case in ("delays", "learned-delays", "feedback-delays"), learn_delay=case == "learned-delays",
              feedback=case == "feedback-delays", checkpoint_steps=3 if case == "checkpoint" else None)
    mode = "step" if case == "step" else "auto"
    x = torch.rand(3, 2, 8, 8, generator=torch.Generator().manual_seed(7))
    net = _net(**kw)
    net.train()
    monkeypatch.setattr(spike_bits, "COMPACT_SPIKES", False)  # the plain autograd ops (previous computation)
    ref_out, ref = _grads(net, x, mode)
    monkeypatch.setattr(spike_bits, "COMPACT_SPIKES", True)
    calls = []
    orig = spike_ops.compact_spikes
    monkeypatch.setattr("spaic_train.connection.connection.compact_spikes",
                        lambda z: calls.append(orig(z) is not None) or orig(z))
    out, got = _grads(net, x, mode)
    assert any(calls), "no connection input was compacted"
    assert torch.equal(out, ref_out)
    assert ref.keys() == got.keys()
    for name in ref:
        a, b = ref[name], got[name]
        assert (a is None) == (b is None), name
        if a is not None:
            assert torch.equal(a, b), name
