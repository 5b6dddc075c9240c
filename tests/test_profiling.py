"""``st.profile``: SOPs / MACs against hand counts on tiny networks and against SpikingJelly's ``SynOpCounter``."""

import math

import pytest
import torch

import spaic_train as st
from spaic_train import Connection, Encoder, Network, NeuronGroup
from spaic_train.layers import Conv2dSyn, Flatten, Full, Input, Pool2d
from spaic_train.profiling import EnergyModel, count_connection, synapse_count


def _spikes(shape, p=0.4, seed=0):
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(shape, generator=g) < p).float()


def _net(in_shape, make_conns, post_num=None):
    """A network: passthrough encoder → group ``a`` (+ whatever ``make_conns`` adds)."""
    net = Network()
    net.inp = Encoder(shape=in_shape, coding="passthrough")
    net.a = NeuronGroup(post_num, model="lif", tau=2.0) if post_num else NeuronGroup(shape=None, model="lif")
    make_conns(net)
    return net


def _run(net, x):
    with torch.no_grad(), net.record(("O",)) as rec:
        net(x)
    return {k: v["O"] for k, v in rec.items()}


def test_full_link_counts_every_spike_times_fan_out():
    x = _spikes((5, 3, 6))  # T=5, B=3, 6 inputs
    net = _net((6,), lambda n: setattr(n, "c", Connection(n.inp, n.a, link_type="full")), post_num=4)
    r = st.profile(net, x)
    assert r.connections[0].sops == pytest.approx(float(x.sum()) * 4 / 3)
    assert r.connections[0].synapses == 24 and r.ann_macs == 24
    assert r.macs == 0 and not r.connections[0].analog_input


def test_sparse_mask_counts_only_present_synapses():
    w = torch.tensor([[0.5, 0.0, 0.2], [0.0, 0.0, 0.3]])  # synapses: 0→0, 2→0, 2→1
    x = _spikes((4, 2, 3), seed=1)
    net = _net((3,), lambda n: setattr(n, "c", Connection(n.inp, n.a, link_type="sparse", weight=w)), post_num=2)
    spikes_per_input = x.sum((0, 1))
    hand = float(spikes_per_input[0] * 1 + spikes_per_input[1] * 0 + spikes_per_input[2] * 2)
    r = st.profile(net, x)
    assert r.connections[0].sops * 2 == pytest.approx(hand)
    assert r.connections[0].synapses == 3


def test_conv_with_padding_and_stride_matches_a_hand_count():
    x = _spikes((3, 2, 2, 5, 5), seed=2)  # [T, B, C=2, 5, 5]
    net = _net((2, 5, 5), lambda n: setattr(n, "c", Connection(
        n.inp, n.a, link_type="conv", syn_type=["conv"], in_channels=2, out_channels=3, kernel_size=3, stride=2,
        padding=1)))
    assert tuple(net.a.shape) == (3, 3, 3)
    # output (i, j) reads input rows 2i-1 .. 2i+1: count, per input position, the outputs whose window holds it
    reach = torch.zeros(5, 5)
    for i in range(3):
        for j in range(3):
            for r in range(2 * i - 1, 2 * i + 2):
                for c in range(2 * j - 1, 2 * j + 2):
                    if 0 <= r < 5 and 0 <= c < 5:
                        reach[r, c] += 1
    hand = float((x.sum((0, 1)) * reach).sum()) * 3  # every output channel
    r = st.profile(net, x)
    assert r.connections[0].sops * 2 == pytest.approx(hand)
    assert r.connections[0].synapses == int(reach.sum()) * 2 * 3


def test_pooling_before_the_weight_op_counts_pooled_events():
    x = _spikes((4, 2, 1, 4, 4), p=0.3, seed=3)
    for kind in ("max", "avg", "sum"):
        net = _net((1, 4, 4), lambda n, k=kind: setattr(n, "c", Connection(
            n.inp, n.a, link_type="full", syn_type=[f"{k}pool", "flatten", "basic"], pool_kernel_size=2)),
            post_num=3)
        windows = x.reshape(4, 2, 2, 2, 2, 2).sum((3, 5))  # [T, B, 2, 2]: spikes in each 2x2 window
        events = (windows > 0).float() if kind == "max" else windows  # avg: w/4 added once per spike
        r = st.profile(net, x)
        assert r.connections[0].sops * 2 == pytest.approx(float(events.sum()) * 3), kind


def test_pool_after_the_conv_costs_nothing_extra():
    x = _spikes((3, 2, 1, 6, 6), seed=4)
    kw = dict(link_type="conv", in_channels=1, out_channels=2, kernel_size=3, padding=1)
    plain = _net((1, 6, 6), lambda n: setattr(n, "c", Connection(n.inp, n.a, syn_type=["conv"], **kw)))
    pooled = _net((1, 6, 6), lambda n: setattr(n, "c", Connection(n.inp, n.a, syn_type=["conv", "maxpool"], **kw)))
    assert st.profile(pooled, x).sops == pytest.approx(st.profile(plain, x).sops)


def test_delayed_spikes_cross_their_synapse_once_on_arrival():
    T = 6
    x = _spikes((T, 2, 3), p=0.5, seed=5)
    delay = torch.tensor([[1.0, 0.0, 3.0], [2.0, 5.0, 1.0]])  # ms, dt = 1 ms: steps
    net = _net((3,), lambda n: setattr(n, "c", Connection(n.inp, n.a, link_type="full", max_delay=5.0,
                                                         delay=delay)), post_num=2)
    hand = 0.0
    for j in range(2):
        for i in range(3):
            d = int(delay[j, i])
            hand += float(x[:T - d, :, i].sum())  # sent at t, arrives at t + d < T
    r = st.profile(net, x)
    assert r.connections[0].sops * 2 == pytest.approx(hand)
    # a delay moves accumulates in time, never multiplies them: at most one per spike and synapse
    assert r.connections[0].sops * 2 <= float(x.sum()) * 2


def test_feedback_connection_counts_the_previous_steps_spikes():
    def build(n):
        n.b = NeuronGroup(3, model="lif", tau=2.0)
        n.ff1 = Connection(n.inp, n.a, link_type="full", weight=torch.full((4, 5), 0.6))
        n.ff2 = Connection(n.a, n.b, link_type="full", weight=torch.full((3, 4), 0.7))
        n.fb = Connection(n.b, n.a, link_type="full", weight=torch.full((4, 3), 0.2))  # declared after: feedback

    net = _net((5,), build, post_num=4)
    x = _spikes((8, 2, 5), p=0.7, seed=6)
    spikes = _run(net, x)
    assert spikes["b"].sum() > 0
    r = st.profile(net, x)
    by_name = {c.name: c for c in r.connections}
    assert by_name["ff1"].sops * 2 == pytest.approx(float(spikes["inp"].sum()) * 4)
    assert by_name["ff2"].sops * 2 == pytest.approx(float(spikes["a"].sum()) * 3)
    # one step of delay: the last step's spikes of b are still in flight when the run ends
    assert by_name["fb"].sops * 2 == pytest.approx(float(spikes["b"][:-1].sum()) * 4)
    layer_a = next(x for x in r.layers if x.name == "a")
    assert layer_a.sops == pytest.approx(by_name["ff1"].sops + by_name["fb"].sops)


def test_analog_input_costs_macs_per_step_and_rates_are_exact():
    torch.manual_seed(0)
    model = st.Sequential([Input((1, 6, 6), encoder="direct"),
                           Conv2dSyn(2, kernel_size=3, padding=1, name="conv"), Flatten(), Full(5, name="out")],
                          time_steps=4)
    x = torch.rand(3, 1, 6, 6)
    r = st.profile(model, x)
    conv = r.connections[0]
    assert conv.analog_input and conv.sops == 0
    assert conv.macs == 4 * conv.synapses  # every synapse, every step (T = 4), whatever the pixel value
    with torch.no_grad(), model.record(("O",)) as rec:
        model.eval()
        model(x)
    s = rec["conv"]["O"]
    layer = next(x for x in r.layers if x.name == "conv")
    assert layer.firing_rate == pytest.approx(float(s.mean()))
    assert layer.silent_fraction == pytest.approx(float((s.sum((0, 1)) == 0).float().mean()))
    assert r.connections[1].sops == pytest.approx(float(s.sum()) * 5 / 3)
    # energy: ACs at 0.9 pJ, MACs at 4.6 pJ; the equivalent ANN runs every synapse once
    assert r.energy_uj == pytest.approx((r.sops * 0.9 + r.macs * 4.6) * 1e-6)
    assert r.ann_energy_uj == pytest.approx(r.ann_macs * 4.6e-6)
    cheap = st.profile(model, x, energy=EnergyModel(pj_per_ac=0.1, pj_per_mac=1.0))
    assert cheap.energy_uj == pytest.approx((r.sops * 0.1 + r.macs * 1.0) * 1e-6)
    assert "Energy per sample" in str(r) and "Horowitz" in r.table()


def test_summary_with_a_sample_appends_the_profile_table():
    torch.manual_seed(0)
    model = st.Sequential([Input((4,)), Full(3, name="out")], time_steps=3)
    text = model.summary(print_fn=None, sample=torch.rand(2, 4))
    assert "SOPs/sample" in text and "Total params" in text
    assert "SOPs/sample" not in model.summary(print_fn=None)


def test_profile_reads_loaders_and_pairs_and_restores_mode():
    torch.manual_seed(0)
    model = st.Sequential([Input((4,)), Full(3, name="out")], time_steps=3)
    x, y = torch.rand(10, 4), torch.zeros(10, dtype=torch.long)
    model.train()
    a = st.profile(model, (x, y), batch_size=4)
    b = st.profile(model, torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=3))
    assert a.samples == b.samples == 10 and a.sops == pytest.approx(b.sops)
    assert model.training
    with pytest.raises(TypeError, match="profile: data must be"):
        st.profile(model, 3)
    with pytest.raises(ValueError, match="pj_per_ac"):
        EnergyModel(pj_per_ac=0)


def test_count_connection_is_differentiable_and_equal_to_the_exact_count():
    torch.manual_seed(0)
    net = _net((6,), lambda n: setattr(n, "c", Connection(n.inp, n.a, link_type="full")), post_num=4)
    x = _spikes((5, 2, 6), seed=7).requires_grad_(True)
    _run(net, x.detach())
    exact = count_connection(net.c, x.detach())
    soft = count_connection(net.c, x, differentiable=True)
    assert float(soft.sops.detach()) == pytest.approx(float(exact.sops))
    soft.sops.backward()
    assert torch.allclose(x.grad, torch.full_like(x, 4.0))  # each spike: one accumulate per post neuron
    assert synapse_count(net.c) == 24


# ------------------------------------------------------------------------------------------------ peer
def _peer_counter():
    try:
        from spikingjelly.activation_based.op_counter import DispatchCounterMode, SynOpCounter
    except ImportError:
        pytest.skip("SpikingJelly 2.0 is not installed (pip install 'spaic_train[peers]')")
    return SynOpCounter, DispatchCounterMode


@pytest.mark.parametrize("kind", ["full", "conv", "pool"])
def test_sops_equal_spikingjellys_synop_counter(kind):
    SynOpCounter, DispatchCounterMode = _peer_counter()
    torch.manual_seed(0)
    if kind == "full":
        layers = [Input((20,), encoder="poisson"), Full(16, name="h"), Full(10, name="out")]
        x = torch.rand(6, 20)
    elif kind == "conv":
        layers = [Input((2, 9, 9), encoder="poisson"), Conv2dSyn(4, kernel_size=3, stride=2, padding=1, name="c1"),
                  Conv2dSyn(3, kernel_size=2, name="c2"), Flatten(), Full(10, name="out")]
        x = torch.rand(6, 2, 9, 9)
    else:  # a pool after a conv (on the current) and a max pool of spikes before a dense layer
        layers = [Input((1, 8, 8), encoder="poisson"), Conv2dSyn(4, kernel_size=3, padding=1, pool="max", name="c1"),
                  Pool2d("max", 2), Flatten(), Full(10, name="out")]
        x = torch.rand(6, 1, 8, 8)
    model = st.Sequential(layers, time_steps=5)
    model.eval()
    r = st.profile(model, x, seed=3)
    counter = SynOpCounter()
    with torch.no_grad(), torch.random.fork_rng():
        torch.manual_seed(3)
        with DispatchCounterMode([counter]):
            model(x)
    assert r.sops > 0
    assert counter.get_total() == pytest.approx(r.sops * len(x), abs=0.5)
    assert math.isfinite(r.energy_ratio)
