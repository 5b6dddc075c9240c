"""Spikes that bring their own bytes (:mod:`spaic_train.neurons.kernels.spike_bits`): the registry's safety rules,
and that the compiled kernels' bytes reach the weight ops instead of a check over every spike tensor."""

from __future__ import annotations

import gc

import pytest
import torch

import spaic_train as spaic
from spaic_train.neurons import build_neuron
from spaic_train.neurons.kernels import dispatch, spike_bits


def _spikes(shape=(4, 3, 5), memory_format=None):
    torch.manual_seed(0)
    s = (torch.rand(shape) > 0.6).float()
    if memory_format is not None:
        s = s.contiguous(memory_format=memory_format)
    return s, s != 0


def test_lookup_follows_views_and_keeps_the_layout():
    s, bits = _spikes((2, 3, 4, 5, 6))
    spike_bits.remember(s, bits)
    for view in (s, s.flatten(0, 1), s[1], s.permute(0, 1, 3, 4, 2), s[:, :, 1:3]):
        found = spike_bits.lookup(view)
        assert found is not None and found.shape == view.shape and found.stride() == view.stride()
        assert torch.equal(found, view != 0)


def test_channels_last_spikes_are_remembered_in_their_layout():
    s, bits = _spikes((6, 4, 5, 5), torch.channels_last)
    assert not s.is_contiguous()
    spike_bits.remember(s, bits)
    nhwc = s.permute(0, 2, 3, 1)  # a view (flatten would copy: other memory, no bytes)
    assert torch.equal(spike_bits.lookup(nhwc), nhwc != 0)
    assert spike_bits.lookup(s.flatten(1)) is None


def test_an_in_place_change_or_another_dtype_is_never_served_stale_bits():
    s, bits = _spikes()
    spike_bits.remember(s, bits)
    view = s[0]
    s.mul_(0.5)  # no longer 0/1: the version counter (shared with the view) moved on
    assert spike_bits.lookup(s) is None and spike_bits.lookup(view) is None
    t, tbits = _spikes()
    spike_bits.remember(t, tbits)
    assert spike_bits.lookup(t.view(torch.int32)) is None  # not a float view
    assert spike_bits.lookup(t.clone()) is None  # other memory


def test_an_entry_dies_with_its_tensor():
    s, bits = _spikes()
    spike_bits.remember(s, bits)
    key = s.untyped_storage().data_ptr()
    assert key in spike_bits._ENTRIES
    del s
    gc.collect()
    assert key not in spike_bits._ENTRIES  # its memory may now hold anything else


def test_remember_rejects_what_it_cannot_map():
    s, bits = _spikes((4, 6))
    with pytest.raises(ValueError, match="fill their storage"):
        spike_bits.remember(s[1:], bits[1:])  # offset view
    with pytest.raises(ValueError, match="same shape and strides"):
        spike_bits.remember(s, bits.t().contiguous().t())
    with pytest.raises(ValueError, match="bool"):
        spike_bits.remember(s, bits.to(torch.uint8))


@pytest.fixture
def compact(monkeypatch):
    monkeypatch.setattr(spike_bits, "COMPACT_SPIKES", True)


def test_the_c_kernel_writes_the_bytes_of_its_spikes(compact):
    if dispatch._kernels("cpu") is None or dispatch._kernels("cpu").__name__.rsplit(".", 1)[-1] != "c_lif":
        pytest.skip("the C kernels do not run on this machine (no working C compiler)")
    torch.manual_seed(1)
    I = (torch.randn(7, 3, 50) + 0.4).requires_grad_()
    O, _, _ = build_neuron("lif").run_sequence(I)
    found = spike_bits.lookup(O)
    assert found is not None and torch.equal(found, O != 0)
    with torch.no_grad():  # nothing is saved for backward: no bytes written
        O2, _, _ = build_neuron("lif").run_sequence(I)
    assert spike_bits.lookup(O2) is None


def test_a_conv_net_checks_only_its_input(compact, monkeypatch):
    """Hidden spikes (LIF outputs, and max-pooled spikes) come with their bytes; only the network's input,
    whose origin is unknown, is checked value by value.  Gradients equal the float32 storage's bit for bit."""
    if dispatch._kernels("cpu") is None or dispatch._kernels("cpu").__name__.rsplit(".", 1)[-1] != "c_lif":
        pytest.skip("the C kernels do not run on this machine (no working C compiler)")
    lookups = []
    orig = spike_bits.lookup
    monkeypatch.setattr(spike_bits, "lookup", lambda x: lookups.append((x.dim(), orig(x) is not None)) or orig(x))
    torch.manual_seed(2)
    net = spaic.Network(dt=1.0)
    net.inp = spaic.Encoder(shape=(2, 8, 8), coding="poisson")
    net.l1 = spaic.NeuronGroup(shape=None, model="lif", tau=3.0)
    net.c1 = spaic.Connection(net.inp, net.l1, link_type="conv", syn_type=["conv", "batchnorm"], in_channels=2,
                              out_channels=4, kernel_size=(3, 3), padding=1, w_mean=0.3, w_std=0.6)
    net.l2 = spaic.NeuronGroup(shape=None, model="lif", tau=3.0)
    net.c2 = spaic.Connection(net.l1, net.l2, link_type="conv", syn_type=["maxpool", "conv"], in_channels=4,
                              out_channels=6, kernel_size=(3, 3), padding=1, w_mean=0.2, w_std=0.6)
    net.l3 = spaic.NeuronGroup(5, model="lif", tau=3.0)
    net.c3 = spaic.Connection(net.l2, net.l3, link_type="full", w_mean=0.05, w_std=0.3)
    net.out = spaic.Decoder(net.l3, coding="spike_counts")
    x = torch.rand(3, 2, 8, 8, generator=torch.Generator().manual_seed(7))
    grads = []
    for on in (False, True):
        monkeypatch.setattr(spike_bits, "COMPACT_SPIKES", on)
        lookups.clear()
        torch.manual_seed(5)  # the poisson encoder draws
        out = net(x, time_steps=7)
        params = [p for p in net.parameters() if p.requires_grad]
        grads.append(torch.autograd.grad((out * torch.linspace(-1, 1, 5)).sum(), params))
    assert lookups[0][1] is False  # the encoder's spikes: unknown origin, checked
    assert len(lookups) >= 4 and all(hit for _, hit in lookups[1:])  # l1 (into the pool), pooled, l2: known
    for a, b in zip(*grads):
        assert torch.equal(a, b)  # the same kernels on the same 0/1 values


@pytest.mark.parametrize("kind", ["bits", "float"])
@pytest.mark.parametrize("layout", ["nchw", "channels_last", "channels_last_gy_nchw"])
@pytest.mark.parametrize("pool", [((2, 2), (2, 2), (0, 0), 10, 8), ((2, 2), (2, 2), (0, 0), 9, 7),
                                  ((3, 3), (2, 2), (1, 1), 10, 9), ((2, 3), (1, 2), (1, 1), 7, 9)])
def test_pool_backward_equals_autograd(kind, layout, pool):
    """The max pool's gradient from its saved input (C kernel, or torch recomputing the indices) equals autograd's
    max_pool2d backward bit for bit: same tie rule (the first of equal maxima: a window's first 1, else its first
    element, for spikes as bytes), overlapping and padded windows summed in the same order, inputs the windows do
    not tile; channels-last inputs (the C kernel's channel-vectorised path; 19 channels: vector tails too) with a
    channels-last or a contiguous incoming gradient."""
    k, s, p, H, W = pool
    g = torch.Generator().manual_seed(3)
    x = (torch.rand(3, 19, H, W, generator=g) < 0.2).float() if kind == "bits" else \
        torch.randint(0, 3, (3, 19, H, W), generator=g).float()
    x[0, 2, :3, :3] = float("nan") if kind == "float" else x[0, 2, :3, :3]  # NaN wins its windows (the last one)
    if layout != "nchw":
        x = x.contiguous(memory_format=torch.channels_last)
    x.requires_grad_()
    y = torch.nn.functional.max_pool2d(x, k, s, p)
    gy = torch.randn(y.shape, generator=g)
    if layout == "channels_last":
        gy = gy.contiguous(memory_format=torch.channels_last)
    (ref,) = torch.autograd.grad(y, x, gy)
    saved = x.detach() != 0 if kind == "bits" else x.detach()
    got = dispatch.max_pool2d_backward(saved, gy, k, s, p)
    assert torch.equal(got, ref) and got.stride() == x.stride()


def test_pool_after_a_neuron_group_keeps_the_kernels_bytes(monkeypatch):
    """Compaction on: the max pool after a LIF layer keeps the bytes the kernel wrote (no check of its own), not the
    float spikes; gradients equal autograd's max pool on the same spikes."""
    from spaic_train.connection import spike_ops

    if dispatch._kernels("cpu") is None or dispatch._kernels("cpu").__name__.rsplit(".", 1)[-1] != "c_lif":
        pytest.skip("the C kernels do not run on this machine (no working C compiler)")
    monkeypatch.setattr(spike_bits, "COMPACT_SPIKES", True)
    checks = []
    monkeypatch.setattr(spike_ops, "compact_spikes", lambda x: checks.append(1))
    torch.manual_seed(4)
    I = (torch.randn(5, 2, 6, 8, 8) + 0.3).requires_grad_()
    O, _, _ = build_neuron("lif").run_sequence(I)
    folded = O.flatten(0, 1)
    saved = []
    with torch.autograd.graph.saved_tensors_hooks(lambda t: saved.append(t.dtype) or t, lambda t: t):
        y = spike_ops.spike_max_pool2d(folded, (2, 2), (2, 2), (0, 0))
    assert saved == [torch.bool] and not checks
    gy = torch.randn(y.shape)
    (got,) = torch.autograd.grad(y, I, gy, retain_graph=True)
    (ref,) = torch.autograd.grad(torch.nn.functional.max_pool2d(O.flatten(0, 1), 2), I, gy)
    assert torch.equal(got, ref)

