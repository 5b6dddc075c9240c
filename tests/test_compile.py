"""``torch.compile`` of whole models: forward and backward equal eager execution.

The default tests use the ``aot_eager`` backend (Dynamo tracing + AOTAutograd, no code generation:
a few seconds); the ``inductor`` backend (C++ code generation with gcc, about a minute per model
on two cores) is under ``@pytest.mark.slow``.

Graph breaks: a network without per-synapse delays traces into one graph (``fullgraph=True``
passes, the fused LIF autograd function included).  Per-synapse delays break the graph in
``Connection.history_steps`` / ``Connection.forward`` (``int(steps.max())``) and in
``delays.delayed_weight_op`` (``torch.unique(steps).tolist()``: one masked weight per distinct
delay value, a data-dependent Python loop); Dynamo falls back to eager there, so the results
stay exact (tested below), only the compiled regions are smaller.
"""

from __future__ import annotations

import pytest
import torch

import spaic_train as spaic

pytestmark = pytest.mark.filterwarnings("ignore")


@pytest.fixture(autouse=True)
def _fresh_dynamo():
    torch._dynamo.reset()
    yield
    torch._dynamo.reset()


def _net(delays: bool = False, feedback: bool = False) -> spaic.Network:
    torch.manual_seed(0)
    net = spaic.Network(dt=1.0)
    net.inp = spaic.Encoder(shape=(20,), coding="direct")
    net.l1 = spaic.NeuronGroup(16, model="lif", tau=4.0)
    net.l2 = spaic.NeuronGroup(5, model="plif", tau=4.0)
    md = 3.0 if delays else 0
    net.c1 = spaic.Connection(net.inp, net.l1, link_type="full", w_mean=0.15, w_std=0.5, max_delay=md)
    net.c2 = spaic.Connection(net.l1, net.l2, link_type="full", w_mean=0.2, w_std=0.5, max_delay=md)
    if feedback:
        net.fb = spaic.Connection(net.l2, net.l1, link_type="full", w_std=0.5, max_delay=md)
    net.out = spaic.Decoder(net.l2, coding="spike_counts")
    return net


def _run(model, fn, x, **kw):
    model.zero_grad(set_to_none=True)
    out = fn(x, **kw)
    (out * torch.linspace(0.5, 1.5, out.shape[-1])).sum().backward()
    return out.detach(), {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


def _check_same(model, compiled, x, **kw):
    ref_out, ref_grads = _run(model, model, x, **kw)
    out, grads = _run(model, compiled, x, **kw)
    assert ref_out.sum() > 0, "the test network should spike"
    torch.testing.assert_close(out, ref_out, rtol=1e-5, atol=1e-5)
    assert grads.keys() == ref_grads.keys()
    for name in ref_grads:
        torch.testing.assert_close(grads[name], ref_grads[name], rtol=1e-5, atol=1e-5, msg=name)
    assert any(g.abs().sum() > 0 for g in ref_grads.values())


def test_network_compiles_to_one_graph_aot_eager():
    net = _net()
    x = torch.rand(4, 20)
    compiled = torch.compile(net, backend="aot_eager", fullgraph=True)  # fullgraph: any graph break raises
    _check_same(net, compiled, x, time_steps=8)


def test_network_with_delays_and_feedback_compiles_aot_eager():
    # graph breaks at the delay bookkeeping fall back to eager; the results must not change
    net = _net(delays=True, feedback=True)
    x = torch.rand(4, 20)
    compiled = torch.compile(net, backend="aot_eager")
    _check_same(net, compiled, x, time_steps=8)


def test_keras_sequential_compiles_aot_eager():
    from spaic_train.layers import Conv2dSyn, Flatten, Full, Input

    torch.manual_seed(0)
    model = spaic.Sequential([
        Input((1, 8, 8), encoder="direct"),
        Conv2dSyn(4, kernel_size=3, padding=1, pool="max", neuron="lif", name="conv", w_mean=0.3),
        Flatten(),
        Full(16, neuron="plif", name="hidden", w_mean=0.2),
        Full(5, name="out", w_mean=0.3),
    ], time_steps=6, decoder="spike_rate")
    x = 2.0 * torch.rand(3, 1, 8, 8)
    compiled = torch.compile(model, backend="aot_eager", fullgraph=True)
    _check_same(model, compiled, x)


@pytest.mark.slow
def test_network_compiles_inductor():
    net = _net()
    x = torch.rand(4, 20)
    compiled = torch.compile(net, backend="inductor")
    _check_same(net, compiled, x, time_steps=8)
