"""NIR interchange: conventions, export → load round trips, files, the Keras side (``to_nir`` / ``from_nir``).

Round trips rebuild the same kernels with the same tensors, so spikes are compared exactly: the exported decay
β goes through ``τ = dt/(1−β)`` and back (``1 − dt/τ``, ``exp(ln β)``), a few ulps in float64, far below the
float32 resolution at which the kernels use it (asserted per group).
"""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from extras import require

nir = require("nir", "nir")

import spaic_train as st  # noqa: E402
import spaic_train.nir as stn  # noqa: E402
from spaic_train.keras.layers import Conv2dSyn, Feedback, Flatten, Full, Input, Pool2d  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def run(net, x, **kw):
    """Every group's spikes ``{name: [T, B, ...]}`` of one eval-mode run."""
    net.eval()
    with torch.no_grad(), net.record(("O",)) as rec:
        net(x, **kw)
    return {k: v["O"] for k, v in rec.items()}


def assert_same_spikes(a: dict, b: dict, min_spikes: int = 1) -> None:
    assert set(a) == set(b)
    for k in a:
        assert torch.equal(a[k], b[k]), f"{k}: {int((a[k] != b[k]).sum())} of {a[k].numel()} differ"
    total = sum(float(v.sum()) for k, v in a.items())
    assert total >= min_spikes, "the test network is silent"


def assert_same_decay(original, loaded) -> None:
    twins = {g.name: g for g in loaded.groups}
    for g in original.groups:
        g.neuron.dt, twins[g.name].neuron.dt = original.dt, loaded.dt  # as a run sets them
        b0, b1 = (float(torch.as_tensor(m.neuron.beta()).detach()) for m in (g, twins[g.name]))
        assert np.float32(b0) == np.float32(b1), (g.name, b0, b1)


def test_import_spaic_train_does_not_import_nir():
    code = "import sys, spaic_train; assert 'nir' not in sys.modules and 'h5py' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True)


# ------------------------------------------------------------------------------------------------ conventions
def test_exported_lif_is_forward_euler_of_the_same_update():
    net = st.Network(dt=0.5)
    net.inp = st.Encoder(shape=(3,), coding="direct")
    net.h = st.NeuronGroup(3, model="lif", tau=8.0, v_th=0.7, v_reset=-0.2)
    net.c = st.Connection(net.inp, net.h, weight=torch.eye(3))
    g = stn.export(net)
    lif = g.nodes["h"]
    dt_s, beta = 0.5e-3, math.exp(-0.5 / 8.0)
    np.testing.assert_allclose(lif.tau, dt_s / (1 - beta), rtol=1e-12)
    np.testing.assert_allclose(lif.r, 1 / (1 - beta), rtol=1e-12)
    np.testing.assert_array_equal(lif.v_leak, 0.0)
    np.testing.assert_array_equal(lif.v_threshold, 0.7)
    np.testing.assert_array_equal(lif.v_reset, -0.2)
    assert g.metadata["dt"] == dt_s
    # one Euler step of tau dv/dt = (v_leak - v) + r I is our step beta v + I
    v, i = 0.3, 0.45
    euler = v + dt_s / lif.tau[0] * (lif.v_leak[0] - v + lif.r[0] * i)
    assert euler == pytest.approx(beta * v + i, rel=1e-12)
    # IF: dv/dt = r I with r = 1/dt
    net.h2 = st.NeuronGroup(3, model="if", v_th=2.0)
    net.c2 = st.Connection(net.h, net.h2, weight=torch.eye(3))
    iff = stn.export(net).nodes["h2"]
    np.testing.assert_allclose(iff.r * dt_s, 1.0)
    np.testing.assert_array_equal(iff.v_threshold, 2.0)


def _euler_reference(nodes, W, x, dt_s):
    """Forward Euler of NIR's LIF/IF ODEs in float64, membranes starting at v_leak (0 for IF)."""
    v = {k: np.full(n.v_threshold.shape, float(getattr(n, "v_leak", np.zeros(1))[0])) for k, n in nodes.items()}
    out = {k: [] for k in nodes}
    for t in range(x.shape[0]):
        inp = x[t]
        for k, n in nodes.items():
            cur = inp @ W[k].T
            if isinstance(n, nir.LIF):
                v[k] = v[k] + dt_s / n.tau * (n.v_leak - v[k] + n.r * cur)
            else:
                v[k] = v[k] + dt_s * n.r * cur
            s = v[k] > n.v_threshold
            v[k] = np.where(s, n.v_reset, v[k])
            out[k].append(s.astype(np.float64))
            inp = out[k][-1]
    return {k: np.stack(o) for k, o in out.items()}


def test_imported_lif_and_if_reproduce_nir_dynamics_with_leak_and_gain():
    """v_leak != 0 and r·dt/tau != 1 are absorbed by reading the membrane as u = (v − v_leak)/g."""
    rng = np.random.default_rng(0)
    dt_s = 1e-3
    W = {"lif": rng.normal(0.4, 0.5, (6, 4)), "if": rng.normal(0.5, 0.6, (3, 6))}
    nodes = {"lif": nir.LIF(tau=np.full(6, 5e-3), r=np.full(6, 2.5), v_leak=np.full(6, -0.3),
                            v_threshold=np.full(6, 0.2), v_reset=np.full(6, -0.5)),
             "if": nir.IF(r=np.full(3, 600.0), v_threshold=np.full(3, 0.9), v_reset=np.full(3, 0.1))}
    graph = nir.NIRGraph(nodes={"x": nir.Input(np.array([4])), "w1": nir.Linear(W["lif"]), **nodes,
                                "w2": nir.Linear(W["if"]), "y": nir.Output(np.array([3]))},
                         edges=[("x", "w1"), ("w1", "lif"), ("lif", "w2"), ("w2", "if"), ("if", "y")])
    x = rng.uniform(0, 1, (40, 5, 4))
    ref = _euler_reference(nodes, W, x, dt_s)
    with torch.random.fork_rng(devices=[]):
        torch.set_default_dtype(torch.float64)  # compare with the float64 reference: no threshold ties
        try:
            net = stn.load(graph, dt=dt_s)
        finally:
            torch.set_default_dtype(torch.float32)
    spikes = run(net, torch.from_numpy(x))
    assert net.dt == pytest.approx(1.0)
    for k in nodes:
        assert ref[k].sum() > 0
        np.testing.assert_array_equal(spikes[k].numpy(), ref[k])


# ------------------------------------------------------------------------------------------------ round trips
def fc_net():
    torch.manual_seed(0)
    net = st.Network(dt=1.0, time_steps=12)
    net.inp = st.Encoder(shape=(2, 5), coding="poisson", max_rate=400.0)
    net.h = st.NeuronGroup(16, model="lif", tau=6.0, v_th=0.8)
    net.s = st.NeuronGroup(16, model="lif", tau=3.0)
    net.o = st.NeuronGroup(4, model="if", v_reset=-0.1)
    net.c1 = st.Connection(net.inp, net.h, w_mean=0.3, w_std=0.4, bias=0.05)
    net.c2 = st.Connection(net.h, net.s, link_type="one_to_one", w_mean=1.2, w_std=0.3)
    net.c3 = st.Connection(net.s, net.o, link_type="sparse", density=0.6, w_mean=0.3, w_std=0.4)
    net.dec = st.Decoder(net.o, coding="spike_counts")
    return net


def conv_net():
    torch.manual_seed(1)
    net = st.Network(dt=0.5, time_steps=8)
    net.inp = st.Encoder(shape=(2, 8, 8), coding="direct")
    net.c = st.NeuronGroup(shape=None, model="lif", tau=3.0)
    net.d = st.NeuronGroup(shape=None, model="lif", tau=4.0, v_th=0.6)
    net.o = st.NeuronGroup(5, model="lif", tau=5.0)
    net.conv1 = st.Connection(net.inp, net.c, link_type="conv", syn_type=["conv", "batchnorm", "avgpool"],
                              out_channels=4, kernel_size=3, padding=1, w_mean=0.2, w_std=0.3, bias=0.1)
    net.conv2 = st.Connection(net.c, net.d, link_type="conv", syn_type=["conv", "sumpool"], out_channels=6,
                              kernel_size=3, stride=1, dilation=2, padding=2, groups=2, w_mean=0.1, w_std=0.2)
    net.fc = st.Connection(net.d, net.o, syn_type=["flatten", "basic"], w_mean=0.05, w_std=0.2)
    with torch.no_grad():  # non-trivial batch-norm statistics, folded into conv1 on export
        bn = net.conv1.synapses[1].bn
        bn.running_mean.uniform_(-0.2, 0.2)
        bn.running_var.uniform_(0.5, 2.0)
        bn.weight.uniform_(0.5, 1.5)
        bn.bias.uniform_(-0.1, 0.1)
    return net


def recurrent_net():
    torch.manual_seed(2)
    net = st.Network(dt=1.0, time_steps=20)
    net.inp = st.Encoder(shape=(6,), coding="bernoulli")
    net.h = st.NeuronGroup(12, model="lif", tau=5.0)
    net.o = st.NeuronGroup(4, model="lif", tau=4.0)
    net.fc = st.Connection(net.inp, net.h, w_mean=0.3, w_std=0.5, max_delay=3.0)         # per-synapse 1-3 steps
    net.rec = st.Connection(net.h, net.h, w_mean=0.0, w_std=0.4)                         # self, 1 step
    net.out = st.Connection(net.h, net.o, w_mean=0.2, w_std=0.5)
    net.fb = st.Connection(net.o, net.h, w_mean=0.1, w_std=0.5, max_delay=4.0, min_delay=2.0)  # top-down 2-4
    net.dec = st.Decoder(net.o, coding="spike_rate")
    return net


@pytest.mark.parametrize("make,shape", [(fc_net, (2, 5)), (conv_net, (2, 8, 8)), (recurrent_net, (6,))],
                         ids=["fc", "conv_pool", "recurrent_feedback_delays"])
def test_round_trip_through_a_file_gives_identical_spikes(make, shape, tmp_path):
    net = make()
    x = torch.rand(6, *shape) * (3.0 if make is conv_net else 1.0)
    net.eval()
    graph = stn.export(net, sample_input=x)  # also checks the reloaded graph on x
    path = tmp_path / "net.nir"
    stn.write(graph, path)
    loaded = stn.load(path)
    assert loaded.dt == net.dt and loaded.time_steps == net.time_steps
    assert [g.name for g in loaded.groups] == [g.name for g in net.groups]
    assert_same_decay(net, loaded)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(5)
        a = run(net, x)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(5)
        b = run(loaded, x)
    if make is conv_net:
        # batch norm folded into the conv weights is a different float path: spikes sitting on the threshold may
        # flip (none do for this seed; 0.5 % would be a bug, not rounding)
        for k in a:
            assert float((a[k] != b[k]).float().mean()) <= 0.005, k
        assert sum(float(v.sum()) for v in a.values()) > 100
    else:
        assert_same_spikes(a, b, min_spikes=50)


def test_per_synapse_delays_become_delay_nodes_and_merge_back():
    net = recurrent_net()
    graph = stn.export(net)
    delays = {k: float(n.delay.flat[0]) / 1e-3 for k, n in graph.nodes.items() if isinstance(n, nir.Delay)}
    # forward 1..3 steps: Delay of d steps; top-down feedback 2..4 steps: the cycle's own step + Delay of d - 1
    assert sorted(round(v) for k, v in delays.items() if k.startswith("fc_")) == [1, 2, 3]
    assert sorted(round(v) for k, v in delays.items() if k.startswith("fb_")) == [1, 2, 3]
    assert ("h", "rec") in graph.edges and ("rec", "h") in graph.edges  # the self-loop is a plain cycle
    loaded = stn.load(graph)
    for name in ("fc", "fb"):
        conn = [c for c in loaded.connections if c.pre.name == getattr(net, name).pre.name
                and c.post.name == getattr(net, name).post.name][0]
        assert torch.equal(conn.delay_steps(), getattr(net, name).delay_steps())
        assert torch.equal(conn.weight, getattr(net, name).weight)
    assert len(loaded.connections) == len(net.connections)


def test_feedback_loads_the_same_without_the_order_metadata():
    """Peers' graphs carry no group order: the importer orders depth-first from the inputs, which puts the lag on
    the same edges for a self-loop and a top-down connection."""
    net = recurrent_net()
    graph = stn.export(net)
    del graph.metadata["order"]
    x = torch.rand(4, 6)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(3)
        a = run(net, x)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(3)
        b = run(stn.load(graph), x)
    assert_same_spikes(a, b, min_spikes=50)


def test_group_order_decides_which_edge_of_a_cycle_lags():
    """Input into the later group B of the cycle A ⇄ B: A → B is forward, B → A lags (declaration order)."""
    torch.manual_seed(4)
    net = st.Network(time_steps=15)
    net.inp = st.Encoder(shape=(5,), coding="direct")
    net.a = st.NeuronGroup(8, model="lif", tau=4.0)
    net.b = st.NeuronGroup(8, model="lif", tau=4.0)
    net.ab = st.Connection(net.a, net.b, w_mean=0.3, w_std=0.5)
    net.ba = st.Connection(net.b, net.a, w_mean=0.3, w_std=0.5)
    net.ib = st.Connection(net.inp, net.b, w_mean=0.4, w_std=0.5)
    x = torch.rand(3, 5)
    graph = stn.export(net)
    assert list(graph.metadata["order"]) == ["inp", "a", "b"]
    assert not any(isinstance(n, nir.Delay) for n in graph.nodes.values())
    assert_same_spikes(run(net, x), run(stn.load(graph), x), min_spikes=20)


def test_subgraph_nodes_are_inlined():
    """A graph node holding a recurrent subgraph (Input → LIF ⇄ Linear, LIF → Output) reads like the flat graph."""
    rng = np.random.default_rng(7)
    w_in, w_rec = rng.normal(0.5, 0.5, (5, 3)), rng.normal(0.0, 0.5, (5, 5))

    def lif():
        return nir.LIF(tau=np.full(5, 4e-3), r=np.full(5, 4.0), v_leak=np.zeros(5), v_threshold=np.ones(5))

    sub = nir.NIRGraph(nodes={"i": nir.Input(np.array([5])), "lif": lif(), "w": nir.Linear(w_rec),
                              "o": nir.Output(np.array([5]))},
                       edges=[("i", "lif"), ("lif", "w"), ("w", "lif"), ("lif", "o")])
    nested = nir.NIRGraph(nodes={"x": nir.Input(np.array([3])), "fc": nir.Linear(w_in), "rnn": sub,
                                 "y": nir.Output(np.array([5]))},
                          edges=[("x", "fc"), ("fc", "rnn"), ("rnn", "y")], metadata={"dt": 1e-3})
    flat = nir.NIRGraph(nodes={"x": nir.Input(np.array([3])), "fc": nir.Linear(w_in), "lif": lif(),
                               "w": nir.Linear(w_rec), "y": nir.Output(np.array([5]))},
                        edges=[("x", "fc"), ("fc", "lif"), ("lif", "w"), ("w", "lif"), ("lif", "y")],
                        metadata={"dt": 1e-3})
    x = torch.rand(25, 4, 3)
    a, b = stn.load(nested), stn.load(flat)
    assert [g.name for g in a.groups] == ["rnn_lif"]
    assert run(a, x)["rnn_lif"].sum() > 0
    assert torch.equal(run(a, x)["rnn_lif"], run(b, x)["lif"])


def test_export_check_reports_a_graph_that_differs(monkeypatch):
    net = fc_net()
    real_load = stn.load

    def tampered(graph):
        twin = real_load(graph)
        with torch.no_grad():
            twin.inp_to_h.weight.mul_(3.0)
        return twin

    monkeypatch.setattr("spaic_train.nir.importer.load", tampered)
    with pytest.raises(RuntimeError, match=r"does not reproduce NeuronGroup\('h'\).*spikes differ"):
        stn.export(net, sample_input=torch.rand(4, 2, 5))


def test_write_replaces_a_file_atomically(tmp_path):
    path = tmp_path / "g.nir"
    path.write_bytes(b"old")
    stn.write(stn.export(fc_net()), path)
    assert set(nir.read(path).nodes) >= {"inp", "h", "s", "o", "output"}
    assert [p.name for p in tmp_path.iterdir()] == ["g.nir"]


def test_sumpool_synapse_sums_each_window():
    from spaic_train.connection import SYNAPSES

    op = SYNAPSES.get("sumpool")("test", (2, 5, 5), {"pool_kernel_size": 2, "pool_stride": 2, "pool_padding": 1})
    x = torch.rand(3, 4, 2, 5, 5)
    padded = torch.nn.functional.pad(x, (1, 1, 1, 1))
    ref = padded.unfold(3, 2, 2).unfold(4, 2, 2).sum((-1, -2))
    torch.testing.assert_close(op(x), ref)
    assert op.output_shape((2, 5, 5)) == (2, 3, 3)


# ------------------------------------------------------------------------------------------------ Keras
def readme_model(pool: str):
    """The README's Keras-style model (``pool='max'`` there)."""
    return st.Sequential([
        Input((1, 8, 8), encoder="direct"),
        Conv2dSyn(16, kernel_size=3, padding=1, pool=pool, dropout=0.1, neuron="lif", name="conv"),
        Flatten(),
        Full(64, neuron="plif", neuron_kwargs={"tau": 2.0}, surrogate="atan", name="hidden"),
        Full(10, name="out"),
    ], time_steps=6, decoder="spike_rate", feedback=[Feedback("out", "hidden", max_delay=3.0)])


@pytest.fixture(scope="module")
def digits():
    from sklearn.datasets import load_digits

    d = load_digits()
    x = torch.tensor(d.images[:, None] / 16.0, dtype=torch.float32)
    return x[:600], torch.tensor(d.target[:600])


def test_readme_sequential_round_trips_through_to_nir_and_from_nir(digits, tmp_path):
    x, y = digits
    torch.manual_seed(0)
    model = readme_model("avg")
    model.compile(optimizer="adam", lr=1e-2, loss="ce_rate", metrics=["accuracy"])
    model.fit(x, y, epochs=2, batch_size=64, seed=0, logger=False, enable_progress_bar=False)
    path = tmp_path / "digits.nir"
    graph = model.to_nir(path, sample_input=x[:32])
    assert isinstance(graph, nir.NIRGraph) and path.is_file()
    restored = st.from_nir(path)
    assert isinstance(restored, st.Model)
    assert [layer.name for layer in restored.layers] == ["input", "conv", "flatten", "hidden", "out"]
    assert restored.time_steps == 6 and restored.decoder_codings == ["spike_rate"]
    assert_same_decay(model, restored)
    a, b = model.predict(x), restored.predict(x)
    assert float(a.sum()) > 100
    assert torch.equal(a, b)
    # the imported model trains and saves like any Keras model
    restored.compile(optimizer="adam", lr=1e-3, loss="ce_rate")
    restored.fit(x[:128], y[:128], epochs=1, batch_size=64, logger=False, enable_progress_bar=False)
    restored.save(tmp_path / "restored.pt")
    again = st.load_model(tmp_path / "restored.pt")
    assert torch.equal(again.predict(x[:64]), restored.predict(x[:64]))


def test_keras_pool_layer_and_one_to_one_round_trip():
    from spaic_train.keras.layers import OneToOne

    torch.manual_seed(6)
    model = st.Sequential([
        Input((2, 6, 6), encoder="direct"),
        Pool2d("sum", 2),
        OneToOne(neuron="if", neuron_kwargs={"v_th": 0.8}, w_mean=0.5, w_std=0.2, name="o2o"),
        Pool2d("avg", 3),
        Flatten(),
        Full(5, neuron="lif", bias=True, name="out"),
    ], time_steps=7, decoder="spike_counts")
    x = torch.rand(4, 2, 6, 6)
    restored = st.from_nir(model.to_nir())
    assert torch.equal(model.predict(x), restored.predict(x))
    assert float(model.predict(x).sum()) > 0
