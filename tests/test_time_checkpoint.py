"""Checkpointing through time: ``Network(checkpoint_steps=K)`` / ``net(x, checkpoint_steps=K)``.

The time axis runs in chunks of ``K`` steps under ``torch.utils.checkpoint`` (non-reentrant), the
state and delay-line history carried between chunks; outputs and gradients must equal the plain
run, and far fewer bytes must be kept for backward.

The comparisons with the plain run are bitwise: the test networks' weights and inputs are on the grid of
``exact_sums`` (a chunk multiplies ``[K*B, n]`` matrices, the plain run ``[T*B, n]`` ones: with arbitrary
floats BLAS may round a row differently). The recomputation in backward repeats the chunk's own forward
(same shapes, same kernels), so it is bit-identical anyway.
"""

from __future__ import annotations

import pytest
import torch
from exact_sums import grid_input, on_grid

import spaic_train as spaic


def _ff_net(delays: bool = True, feedback: bool = False, dropout: bool = False) -> spaic.Network:
    torch.manual_seed(0)
    net = spaic.Network(dt=1.0)
    net.inp = spaic.Encoder(shape=(1, 8, 8), coding="poisson")
    net.l1 = spaic.NeuronGroup(shape=None, model="alif", tau=4.0)
    syn = ["conv", "maxpool"] + (["dropout"] if dropout else [])
    net.c1 = spaic.Connection(net.inp, net.l1, link_type="conv", syn_type=syn, in_channels=1, out_channels=4,
                              kernel_size=(3, 3), padding=1, w_mean=0.3, w_std=0.5,
                              syn_kwargs={"p": 0.3} if dropout else None,
                              max_delay=2.0 if delays else 0)
    net.l2 = spaic.NeuronGroup(12, model="plif", tau=4.0)
    net.c2 = spaic.Connection(net.l1, net.l2, link_type="full", w_mean=0.1, w_std=0.4,
                              max_delay=3.0 if delays else 0)
    net.l3 = spaic.NeuronGroup(5, model="lif", tau=4.0, reset="soft")
    net.c3 = spaic.Connection(net.l2, net.l3, link_type="full", w_mean=0.2, w_std=0.5)
    if feedback:
        # l3 -> l2 (delayed) and l2 -> l2: a stepped stage
        net.fb = spaic.Connection(net.l3, net.l2, link_type="full", w_std=0.5, max_delay=4.0 if delays else 0)
        net.rec = spaic.Connection(net.l2, net.l2, link_type="full", w_std=0.3)
    net.out = spaic.Decoder(net.l3, coding="spike_counts")
    net.mon = spaic.StateMonitor(net.l2, "V")
    return on_grid(net)


def _step(net, x, **kw):
    net.zero_grad(set_to_none=True)
    torch.manual_seed(7)  # poisson encoder and dropout draw from the global RNG
    out = net(x, **kw)
    (out * torch.linspace(0.5, 1.5, out.shape[-1])).sum().backward()
    grads = {n: p.grad.clone() for n, p in net.named_parameters()}
    return out.detach(), grads, net.mon.values.clone()


def _assert_same(a, b):
    out_a, grads_a, mon_a = a
    out_b, grads_b, mon_b = b
    assert torch.equal(out_a, out_b)
    assert torch.equal(mon_a, mon_b)
    assert grads_a.keys() == grads_b.keys()
    for name in grads_a:  # summation order over the chunks differs: float rounding only
        torch.testing.assert_close(grads_a[name], grads_b[name], rtol=1e-5, atol=1e-5, msg=name)


@pytest.mark.parametrize("K", [1, 4, 7])
@pytest.mark.parametrize("feedback", [False, True], ids=["feedforward", "feedback"])
def test_same_outputs_and_gradients(feedback, K):
    net = _ff_net(delays=True, feedback=feedback, dropout=True)
    x = torch.rand(3, 1, 8, 8)
    plain = _step(net, x, time_steps=13)
    assert plain[0].sum() > 0 and any(g.abs().sum() > 0 for g in plain[1].values())
    ck = _step(net, x, time_steps=13, checkpoint_steps=K)
    _assert_same(plain, ck)


def test_property_and_continuation():
    net = _ff_net(delays=True, feedback=True)
    x = torch.rand(2, 1, 8, 8)
    plain = _step(net, x, time_steps=10)
    plain_carry = net._carry
    net.checkpoint_steps = 3
    assert net.checkpoint_steps == 3
    ck = _step(net, x, time_steps=10)
    _assert_same(plain, ck)
    # the carried state (and delay-line history) is the plain run's: reset=False continues alike
    for v, node in plain_carry.items():
        if v == "batch":
            continue
        for part in ("state", "history"):
            for k, t in node[part].items():
                assert torch.equal(t, net._carry[v][part][k])
    with torch.no_grad():
        cont_ck = net(x, time_steps=5, reset=False)
        net.checkpoint_steps = None
        net(x, time_steps=10)
        cont_plain = net(x, time_steps=5, reset=False)
    assert torch.equal(cont_ck, cont_plain)


def test_matches_two_halves_with_reset_false_including_batchnorm():
    """With batch norm (training mode) the statistics are per chunk: the run equals running the chunks with
    ``reset=False``; the running statistics are updated once per chunk, not again on recomputation."""

    def make():
        torch.manual_seed(0)
        net = spaic.Network()
        net.inp = spaic.Encoder(shape=(1, 6, 6), coding="direct")
        net.l1 = spaic.NeuronGroup(shape=None, model="lif", tau=4.0)
        net.c1 = spaic.Connection(net.inp, net.l1, link_type="conv", syn_type=["conv", "batchnorm"], in_channels=1,
                                  out_channels=3, kernel_size=(3, 3), padding=1)
        net.l2 = spaic.NeuronGroup(4, model="lif", tau=4.0)
        net.c2 = spaic.Connection(net.l1, net.l2, link_type="full", w_mean=0.1, w_std=0.5, max_delay=2.0)
        net.out = spaic.Decoder(net.l2, coding="sequence")
        return net

    x = torch.rand(8, 2, 1, 6, 6)  # a [T, B, ...] sequence
    a, b = make(), make()
    out_a = torch.cat([a(x[:4]), a(x[4:], reset=False)])
    out_a.sum().backward()
    out_b = b(x, checkpoint_steps=4)
    out_b.sum().backward()
    assert torch.equal(out_a, out_b)
    for (name, pa), pb in zip(a.named_parameters(), b.parameters()):
        torch.testing.assert_close(pa.grad, pb.grad, rtol=1e-5, atol=1e-6, msg=name)
    for (name, ba), bb in zip(a.named_buffers(), b.buffers()):
        assert torch.equal(ba, bb), name  # running_mean / running_var / num_batches_tracked


def test_record_inside_checkpointed_run():
    net = _ff_net(delays=True)
    x = torch.rand(2, 1, 8, 8)
    with net.record(("O", "V")) as rec:
        torch.manual_seed(1)
        net(x, time_steps=9)
        plain = {g: {k: v.clone() for k, v in d.items()} for g, d in rec.items()}
        torch.manual_seed(1)
        net(x, time_steps=9, checkpoint_steps=2)
    assert plain.keys() == rec.keys()
    for g in plain:
        for k in plain[g]:
            assert torch.equal(plain[g][k], rec[g][k]), (g, k)


def test_keras_sequential_checkpoint_steps():
    from spaic_train.layers import Feedback, Full, Input

    torch.manual_seed(0)
    model = spaic.Sequential([Input((20,), encoder="direct"), Full(16, name="h", w_mean=0.15, max_delay=3.0),
                              Full(4, name="out", w_mean=0.2)], time_steps=12, decoder="spike_counts",
                             feedback=[Feedback("out", "h", max_delay=2.0)])
    on_grid(model)
    x = grid_input(torch.rand(3, 20))
    res = []
    for k in (None, 5):
        model.zero_grad(set_to_none=True)
        out = model(x, checkpoint_steps=k)
        out.sum().backward()
        res.append((out.detach(), [p.grad.clone() for p in model.parameters()]))
    assert res[0][0].sum() > 0
    assert torch.equal(res[0][0], res[1][0])
    for ga, gb in zip(res[0][1], res[1][1]):
        torch.testing.assert_close(ga, gb, rtol=1e-5, atol=1e-6)


def test_invalid_checkpoint_steps():
    with pytest.raises(ValueError, match="checkpoint_steps"):
        spaic.Network(checkpoint_steps=0)
    net = _ff_net()
    for bad in (0, -2, 2.5, True, "4"):
        with pytest.raises(ValueError, match="checkpoint_steps"):
            net.checkpoint_steps = bad
        with pytest.raises(ValueError, match="checkpoint_steps"):
            net(torch.rand(2, 1, 8, 8), time_steps=4, checkpoint_steps=bad)


# ------------------------------------------------------------------------------------------------ memory
def _saved_bytes(fn):
    """Bytes of distinct storages saved for backward *outside* checkpointed regions while ``fn`` runs."""
    seen = {}

    def pack(t):
        st = t.untyped_storage()
        seen[st.data_ptr()] = st.nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = fn()
    return sum(seen.values()), out


def _tensor_bytes(obj) -> int:
    if isinstance(obj, torch.Tensor):
        return obj.numel() * obj.element_size()
    if isinstance(obj, dict):
        return sum(_tensor_bytes(v) for v in obj.values())
    return 0


def test_checkpointed_run_keeps_much_less_for_backward():
    torch.manual_seed(0)
    net = spaic.Network()
    net.inp = spaic.Encoder(shape=(2, 16, 16), coding="direct")
    net.l1 = spaic.NeuronGroup(shape=None, model="lif", tau=4.0)
    net.c1 = spaic.Connection(net.inp, net.l1, link_type="conv", syn_type=["conv", "batchnorm"], in_channels=2,
                              out_channels=8, kernel_size=(3, 3), padding=1)
    net.l2 = spaic.NeuronGroup(shape=None, model="lif", tau=4.0)
    net.c2 = spaic.Connection(net.l1, net.l2, link_type="conv", syn_type=["maxpool", "conv", "batchnorm"],
                              in_channels=8, out_channels=8, kernel_size=(3, 3), padding=1, pool_kernel_size=[2, 2])
    net.l3 = spaic.NeuronGroup(10, model="lif", tau=4.0)
    net.c3 = spaic.Connection(net.l2, net.l3, link_type="full", syn_type=["maxpool", "basic"],
                              pool_kernel_size=[2, 2], max_delay=3.0)
    net.out = spaic.Decoder(net.l3, coding="spike_counts")
    x = torch.rand(4, 2, 16, 16)
    T, K = 64, 8

    plain, out = _saved_bytes(lambda: net(x, time_steps=T))
    out.sum().backward()
    # one chunk's activations: what the recomputation holds at a time during backward
    per_chunk, out = _saved_bytes(lambda: net(x, time_steps=K))
    out.sum().backward()
    outside, out = _saved_bytes(lambda: net(x, time_steps=T, checkpoint_steps=K))
    # each chunk keeps its inputs for the recomputation: the carried state and delay-line history
    carried = (T // K) * _tensor_bytes({v: n for v, n in net._carry.items() if v != "batch"})
    out.sum().backward()

    assert plain > 4_000_000  # MB-sized: conv / batch norm / pool activations of 64 steps
    assert outside < 0.01 * plain  # nothing of the chunks is kept outside them
    ckpt_total = outside + carried + per_chunk
    assert ckpt_total < 0.3 * plain, (plain, per_chunk, outside, carried)
