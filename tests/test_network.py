"""Engine: timing semantics, schedule equivalence, encoders/decoders, state, save/load."""

import math

import pytest
import torch
from exact_sums import grid_input, on_grid

import spaic_train as spaic


def spike_train(T, B, n, at):
    """[T, B, n] input with one spike per neuron at the steps in ``at`` (list per neuron)."""
    x = torch.zeros(T, B, n)
    for i, steps in enumerate(at):
        for t in steps:
            x[t, :, i] = 1.0
    return x


def first_spikes(values):
    """First spike step per neuron of a monitor's [T, B, n] values (batch 0), -1 when silent."""
    out = []
    for j in range(values.shape[2]):
        idx = torch.nonzero(values[:, 0, j]).flatten()
        out.append(int(idx[0]) if len(idx) else -1)
    return out


def chain(n_layers, T=6):
    net = spaic.Network()
    net.inp = spaic.Encoder(num=1, coding="passthrough")
    prev = net.inp
    mons = []
    for i in range(n_layers):
        g = spaic.NeuronGroup(1, model="if", v_th=1.0)
        net.add(g, f"l{i}")
        net.add(spaic.Connection(prev, g, weight=torch.full((1, 1), 2.0)), f"c{i}")
        mons.append(net.add(spaic.StateMonitor(g, "O"), f"m{i}"))
        prev = g
    return net, mons


def test_feed_forward_chain_responds_in_the_same_step():
    net, mons = chain(3)
    net(spike_train(6, 1, 1, [[2]]))
    assert [first_spikes(m.values) for m in mons] == [[2], [2], [2]]


def test_per_synapse_delays_arrive_exactly_d_steps_later():
    T, n = 10, 4
    net = spaic.Network()
    net.inp = spaic.Encoder(num=n, coding="passthrough")
    net.out = spaic.NeuronGroup(n, model="if")
    delays = torch.tensor([1.0, 2.0, 3.0, 5.0])
    net.c = spaic.Connection(net.inp, net.out, link_type="one_to_one", w_mean=2.0, max_delay=5.0, delay=delays)
    net.m = spaic.StateMonitor(net.out, "O")
    net(spike_train(T, 2, n, [[0]] * n))
    assert first_spikes(net.m.values) == [1, 2, 3, 5]


def test_dense_per_synapse_delays_with_dt():
    """Delays are in ms: with dt=0.5 ms a 1.5 ms delay is 3 steps."""
    net = spaic.Network(dt=0.5)
    net.inp = spaic.Encoder(num=2, coding="passthrough")
    net.out = spaic.NeuronGroup(2, model="if")
    w = torch.tensor([[2.0, 0.0], [0.0, 2.0]])
    net.c = spaic.Connection(net.inp, net.out, weight=w, max_delay=2.0, delay=torch.tensor([[1.5, 0.5], [1.0, 2.0]]))
    net.m = spaic.StateMonitor(net.out, "O")
    net(spike_train(8, 1, 2, [[0], [0]]))
    assert first_spikes(net.m.values) == [3, 4]


def test_feedback_loop_takes_one_step_per_crossing():
    T = 8
    net = spaic.Network()
    net.inp = spaic.Encoder(num=1, coding="passthrough")
    net.a = spaic.NeuronGroup(1, model="if")
    net.b = spaic.NeuronGroup(1, model="if")
    net.c_in = spaic.Connection(net.inp, net.a, weight=torch.full((1, 1), 2.0))
    net.c_ab = spaic.Connection(net.a, net.b, weight=torch.full((1, 1), 2.0))
    net.c_ba = spaic.Connection(net.b, net.a, weight=torch.full((1, 1), 2.0))  # feedback: declared pre after post
    net.ma = spaic.StateMonitor(net.a, "O")
    net.mb = spaic.StateMonitor(net.b, "O")
    net(spike_train(T, 1, 1, [[0]]))
    # a fires at 0 from the input, b in the same step, then a again one step later via feedback, ...
    assert net.ma.values[:, 0, 0].tolist() == [1.0] * T
    assert net.mb.values[:, 0, 0].tolist() == [1.0] * T
    # with a feedback delay of 3 steps the loop period is 3
    net2 = spaic.Network()
    net2.inp = spaic.Encoder(num=1, coding="passthrough")
    net2.a = spaic.NeuronGroup(1, model="if")
    net2.b = spaic.NeuronGroup(1, model="if")
    net2.c_in = spaic.Connection(net2.inp, net2.a, weight=torch.full((1, 1), 2.0))
    net2.c_ab = spaic.Connection(net2.a, net2.b, weight=torch.full((1, 1), 2.0))
    net2.c_ba = spaic.Connection(net2.b, net2.a, weight=torch.full((1, 1), 2.0), max_delay=3.0,
                                 delay=torch.full((1, 1), 3.0))
    net2.ma = spaic.StateMonitor(net2.a, "O")
    net2(spike_train(T, 1, 1, [[0]]))
    assert torch.nonzero(net2.ma.values[:, 0, 0]).flatten().tolist() == [0, 3, 6]


def test_self_connection_is_feedback():
    net = spaic.Network()
    net.inp = spaic.Encoder(num=1, coding="passthrough")
    net.a = spaic.NeuronGroup(1, model="if")
    net.c_in = spaic.Connection(net.inp, net.a, weight=torch.full((1, 1), 2.0))
    net.rec = spaic.Connection(net.a, net.a, weight=torch.full((1, 1), 2.0))
    net.m = spaic.StateMonitor(net.a, "O")
    net(spike_train(4, 1, 1, [[1]]))
    assert net.m.values[:, 0, 0].tolist() == [0.0, 1.0, 1.0, 1.0]


def test_several_connections_into_one_group_are_summed():
    torch.manual_seed(0)
    net = spaic.Network()
    net.x1 = spaic.Encoder(num=5, coding="direct")
    net.x2 = spaic.Encoder(num=3, coding="direct")
    net.post = spaic.NeuronGroup(4, model="lif", tau=2.0)
    net.c1 = spaic.Connection(net.x1, net.post)
    net.c2 = spaic.Connection(net.x2, net.post)
    net.m = spaic.StateMonitor(net.post, "Isyn")
    a, b = torch.rand(2, 5), torch.rand(2, 3)
    net({"x1": a, "x2": b}, time_steps=3)
    expected = a @ net.c1.weight.T + b @ net.c2.weight.T
    torch.testing.assert_close(net.m.values, expected.expand(3, 2, 4))


def test_monitor_voltage_matches_lif_equation():
    net = spaic.Network()
    net.inp = spaic.Encoder(num=1, coding="direct")
    net.g = spaic.NeuronGroup(1, model="lif", tau=2.0, v_th=1.0)
    net.c = spaic.Connection(net.inp, net.g, weight=torch.ones(1, 1))
    net.m = spaic.StateMonitor(net.g, "V")
    net.o = spaic.StateMonitor(net.g, "O")
    net(torch.tensor([[0.4]]), time_steps=6)
    beta = math.exp(-1.0 / 2.0)
    v, vs, ss = 0.0, [], []
    for _ in range(6):
        v = beta * v + 0.4
        s = float(v >= 1.0)
        v = 0.0 if s else v
        vs.append(v)
        ss.append(s)
    torch.testing.assert_close(net.m.values[:, 0, 0], torch.tensor(vs))
    assert net.o.values[:, 0, 0].tolist() == ss


def test_poisson_encoder_rate_matches_intensity():
    torch.manual_seed(0)
    enc = spaic.Encoder(shape=(4,), coding="poisson")
    x = torch.tensor([[0.0, 0.1, 0.5, 0.9]]).expand(256, 4)
    spikes = enc.encode(x, 200, dt=1.0)
    assert spikes.shape == (200, 256, 4)
    torch.testing.assert_close(spikes.mean((0, 1)), x[0], atol=0.01, rtol=0)
    # rate in Hz at another dt: 100 Hz at dt = 2 ms is p = 0.2 per step
    enc = spaic.Encoder(shape=(1,), coding="poisson", max_rate=100.0)
    s = enc.encode(torch.ones(1000, 1), 100, dt=2.0)
    assert abs(s.mean().item() - 0.2) < 0.01


def test_other_encoders():
    x = torch.tensor([[0.0, 0.5, 1.0]])
    direct = spaic.Encoder(shape=(3,), coding="direct").encode(x, 4, 1.0)
    assert torch.equal(direct, x.expand(4, 1, 3))
    lat = spaic.Encoder(shape=(3,), coding="latency").encode(x, 5, 1.0)
    assert lat[:, 0, 0].sum() == 0  # zero intensity never spikes
    assert torch.nonzero(lat[:, 0, 1]).item() == 2 and torch.nonzero(lat[:, 0, 2]).item() == 0
    torch.manual_seed(1)
    bern = spaic.Encoder(shape=(3,), coding="bernoulli").encode(x.expand(5000, 3), 2, 1.0)
    torch.testing.assert_close(bern.mean((0, 1)), x[0], atol=0.02, rtol=0)
    seq = torch.rand(7, 2, 3)
    assert spaic.Encoder(shape=(3,), coding="poisson").encode(seq, None, 1.0) is seq


def decoded(x, coding):
    net = spaic.Network()
    net.inp = spaic.Encoder(num=3, coding="passthrough")
    net.g = spaic.NeuronGroup(3, model="if", v_th=1.0)
    net.c = spaic.Connection(net.inp, net.g, link_type="one_to_one", w_mean=1.0)
    net.d = spaic.Decoder(net.g, coding=coding)
    return net(x)


def test_decoders_match_hand_computation():
    # IF neurons with weight 1 and threshold 1 copy their input spikes; 0.5 stays as membrane
    x = torch.tensor([[1, 0, 0], [0, 0, 0], [0, 1, 0], [1, 0, 0], [0.5, 0, 0]]).unsqueeze(1)  # [5, 1, 3]
    spikes = (x == 1).float()
    v = torch.tensor([[0, 0, 0], [0, 0, 0], [0, 0, 0], [0, 0, 0], [0.5, 0, 0]]).unsqueeze(1)
    expected = {"spike_counts": spikes.sum(0), "spike_rate": spikes.mean(0),
                "first_spike": torch.tensor([[0.0, 2.0, 5.0]]), "sequence": spikes,
                "mean_voltage": v.mean(0), "max_voltage": v.amax(0)}
    for coding, value in expected.items():
        torch.testing.assert_close(decoded(x, coding), value, msg=coding)
    g = spaic.NeuronGroup(3)
    d = spaic.Decoder(dec_target=g, coding_method="spike_rate")
    assert d.coding == "spike_rate" and d.target is g


def build_random_net(seed, n_in=6, sizes=(5, 4, 3), feedback=True, delays=True):
    g = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    net = spaic.Network()
    net.inp = spaic.Encoder(num=n_in, coding="direct")
    groups = []
    for i, n in enumerate(sizes):
        grp = spaic.NeuronGroup(n, model="lif", tau=3.0, v_th=0.5, reset="soft" if i % 2 else "hard")
        net.add(grp, f"g{i}")
        groups.append(grp)
    pre = net.inp
    for i, grp in enumerate(groups):
        kw = {}
        if delays and i == 0:
            kw = dict(max_delay=3.0, delay=torch.randint(0, 4, (grp.num, pre.num), generator=g).float())
        net.add(spaic.Connection(pre, grp, w_mean=0.4, w_std=0.5, **kw), f"ff{i}")
        pre = grp
    if feedback:
        net.fb = spaic.Connection(groups[2], groups[0], w_mean=0.3, w_std=0.5, max_delay=2.0,
                                  delay=torch.randint(1, 3, (groups[0].num, groups[2].num), generator=g).float())
        net.rec = spaic.Connection(groups[1], groups[1], w_mean=0.1, w_std=0.5)
    net.skip = spaic.Connection(net.inp, groups[2], w_mean=0.2, w_std=0.3)
    net.out = spaic.Decoder(groups[2], coding="spike_counts")
    return on_grid(net)  # exact sums: time-batched and stepped matmuls of different shapes agree bitwise


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("feedback", [False, True])
def test_time_batched_equals_step_by_step(seed, feedback):
    net = build_random_net(seed, feedback=feedback)
    x = grid_input(torch.rand(3, 6, generator=torch.Generator().manual_seed(100 + seed)) * 1.5)
    outs, grads = [], []
    for mode in ("auto", "step"):
        net.zero_grad()
        y = net(x, time_steps=12, mode=mode)
        (y * torch.arange(1, 4.0)).sum().backward()
        outs.append(y.detach())
        grads.append([p.grad.clone() for p in net.parameters()])
    assert outs[0].sum() > 0
    torch.testing.assert_close(outs[0], outs[1])
    for a, b in zip(*grads):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
    assert any(g.abs().sum() > 0 for g in grads[0])


def test_schedule_batches_acyclic_parts_and_steps_cycles():
    net = build_random_net(0, feedback=True)
    plan = net.compile_plan()
    kinds = [(sorted(s.nodes), s.stepped) for s in plan.stages]
    assert kinds == [([0], False), ([1, 2, 3], True)]
    net = build_random_net(0, feedback=False)
    assert all(not s.stepped for s in net.compile_plan().stages)


@pytest.mark.parametrize("mode", ["auto", "step"])
def test_reset_false_continues_the_run(mode):
    net = build_random_net(3)
    net.out2 = spaic.Decoder(net.g0, coding="sequence")
    x = grid_input(torch.rand(2, 6, generator=torch.Generator().manual_seed(0)) * 1.5)
    seq = torch.stack([x] * 10)
    full_counts, full_seq = net(seq, mode=mode)
    a_counts, a_seq = net(seq[:4], mode=mode)
    b_counts, b_seq = net(seq[4:], reset=False, mode=mode)
    torch.testing.assert_close(torch.cat([a_seq, b_seq]), full_seq)
    torch.testing.assert_close(a_counts + b_counts, full_counts)
    # reset=True starts again from rest
    again, _ = net(seq[4:], mode=mode)
    assert not torch.equal(again, b_counts) or again.sum() == 0


def test_state_dict_round_trip():
    net = build_random_net(1)
    x = torch.rand(2, 6, generator=torch.Generator().manual_seed(5)) * 1.5
    y = net(x, time_steps=8)
    other = build_random_net(2)
    assert not torch.equal(other.ff0.weight, net.ff0.weight)
    other.load_state_dict(net.state_dict())
    torch.testing.assert_close(other(x, time_steps=8), y)
    assert {"ff0.weight", "fb.weight", "rec.weight"} <= set(net.state_dict())


def test_network_errors():
    net = spaic.Network()
    net.inp = spaic.Encoder(num=2, coding="direct")
    net.g = spaic.NeuronGroup(2)
    stray = spaic.NeuronGroup(2, name="stray")
    net.c = spaic.Connection(stray, net.g)
    with pytest.raises(ValueError, match="stray.*not part of the network"):
        net(torch.rand(1, 2), time_steps=2)
    net2 = spaic.Network()
    net2.inp = spaic.Encoder(num=2, coding="direct")
    with pytest.raises(ValueError, match="time_steps"):
        net2(torch.rand(1, 2))
    with pytest.raises(ValueError, match="time_steps must be an int >= 1"):
        net2(torch.rand(1, 2), time_steps=0)
    with pytest.raises(ValueError, match=r"expected input \[B, 2\]"):
        net2(torch.rand(1, 3), time_steps=2)
    with pytest.raises(ValueError, match="dt must be a positive"):
        spaic.Network(dt=0)
    with pytest.raises(ValueError, match="unknown encoder coding 'poison'.*Did you mean 'poisson'"):
        spaic.Encoder(num=2, coding="poison")
    with pytest.raises(ValueError, match="unknown decoder coding"):
        spaic.Decoder(net.g, coding="counts")
    with pytest.raises(ValueError, match="no Encoder"):
        empty = spaic.Network()
        empty.g = spaic.NeuronGroup(2)
        empty(torch.rand(1, 2), time_steps=2)


def test_record_context_captures_every_group():
    net = build_random_net(0)
    x = torch.rand(2, 6, generator=torch.Generator().manual_seed(0))
    with net.record(("O", "V")) as rec:
        counts = net(x, time_steps=5)
    assert set(rec) == {"inp", "g0", "g1", "g2"}
    assert rec["g1"]["V"].shape == (5, 2, 4) and "V" not in rec["inp"]
    torch.testing.assert_close(rec["g2"]["O"].sum(0), counts.detach())
    net(x, time_steps=5)
    assert rec["g1"]["O"].shape == (5, 2, 4)  # outside the block nothing is refilled
