"""NIR against the real peers: graphs written by snnTorch, SpikingJelly and Norse's own exporters, imported into
spaic_train, and spaic_train's graphs imported by the peers that can read them, compared spike by spike on the
same input (what maps and what does not: README "Interoperability (NIR)").

Tolerance: the peers step the membrane with other float operation orders (snnTorch ``β·mem + input`` rounded
twice, SpikingJelly ``v − (v − v_reset)/τ + x``, Norse ``v + dt/τ·(v_leak − v + i)``; spaic_train one fused
multiply-add), so a membrane within an ulp of the threshold could fire in one and not the other, and the flip
would echo downstream.  None differed when these tests were written (2026-12-01, AMD EPYC, 1 thread); more
than 0.5 % would be a bug, not rounding.
"""

from __future__ import annotations

import pytest
import torch
from extras import require

nir = require("nir", "nir")

import spaic_train as st  # noqa: E402
import spaic_train.nir as stn  # noqa: E402

T, B = 30, 5


def assert_agree(ref: torch.Tensor, out: torch.Tensor, min_spikes: int = 10) -> None:
    assert ref.shape == out.shape
    assert float(ref.sum()) >= min_spikes, "the test network is silent"
    assert float((ref != out).float().mean()) <= 0.005, f"{int((ref != out).sum())} of {ref.numel()} spikes differ"


def spikes(net, x):
    """Every group's spikes of an eval-mode run of a spaic_train network, by group name."""
    net.eval()
    with torch.no_grad(), net.record(("O",)) as rec:
        net(x)
    return {k: v["O"] for k, v in rec.items()}


def scaled(module: torch.nn.Module, factor: float) -> torch.nn.Module:
    """Larger weights than PyTorch's default init, so that every layer spikes."""
    with torch.no_grad():
        for p in module.parameters():
            p.mul_(factor)
    return module


def stepped(fn, x):
    """``fn(x[t])`` for every step, stacked (state kept by the peer's modules)."""
    with torch.no_grad():
        return torch.stack([fn(x[t]) for t in range(x.shape[0])])


def stepped_graph_module(gm, x):
    """A nirtorch ``GraphModule`` (``out, state = gm(x_t, state)``) stepped through ``x``."""
    state, outs = None, []
    with torch.no_grad():
        for t in range(x.shape[0]):
            out, state = gm(x[t], state)
            outs.append(out)
    return torch.stack(outs)


def recorded(modules):
    """Forward hooks collecting the spikes of ``modules``: ``{index: list of per-step outputs}``."""
    store = {i: [] for i in range(len(modules))}
    for i, m in enumerate(modules):
        m.register_forward_hook(lambda mod, inp, out, i=i: store[i].append(out[0] if isinstance(out, tuple) else out))
    return store


# ------------------------------------------------------------------------------------------------ snnTorch
@pytest.fixture
def snn():
    snn = require("snntorch", "nir")
    require("nirtorch", "nir")  # snnTorch's NIR exporter and importer
    return snn


def leaky(snn, shape, beta, **kw):
    """snnTorch 1.0's exporter needs beta/threshold tensors of the layer's shape: with scalars it writes 0-d LIF
    parameters that nir 1.0.8's type check rejects."""
    return snn.Leaky(beta=torch.full(shape, beta), threshold=torch.ones(shape), init_hidden=True,
                     reset_mechanism="zero", **kw)


def snn_export(snn, net, sample, tmp_path):
    from snntorch.export_nir import export_to_nir

    graph = export_to_nir(net, sample, ignore_dims=[0])  # ignore_dims: no batch dimension in the Output node
    path = tmp_path / "snntorch.nir"
    nir.write(path, graph)
    return path


@pytest.mark.parametrize("kind", ["fc", "conv"])
def test_snntorch_export_imports_with_identical_spikes(snn, kind, tmp_path):
    from snntorch import utils as snn_utils

    torch.manual_seed(0)
    nn = torch.nn
    if kind == "fc":
        net = nn.Sequential(nn.Flatten(), nn.Linear(16, 12), leaky(snn, (12,), 0.9), nn.Linear(12, 4),
                            leaky(snn, (4,), 0.8, output=True))
        x = torch.rand(T, B, 1, 4, 4)
    else:
        net = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.AvgPool2d(2), leaky(snn, (4, 4, 4), 0.9), nn.Flatten(),
                            nn.Linear(64, 5), leaky(snn, (5,), 0.85, output=True))
        x = torch.rand(T, B, 1, 8, 8)
    scaled(net, 3.0)
    path = snn_export(snn, net, x[0, :1], tmp_path)
    lif = [m for m in net if isinstance(m, snn.Leaky)]
    hooks = recorded(lif)
    snn_utils.reset(net)
    stepped(lambda xt: net(xt)[0], x)
    ours = spikes(stn.load(path, dt=1e-4), x)  # snnTorch's exporter steps with dt = 1e-4 s
    names = [str(list(net).index(m)) for m in lif]  # node names: module indices
    for i, name in enumerate(names):
        assert_agree(torch.stack(hooks[i]), ours[stn.importer.node_attribute(name)])
    # the same file as a Keras model: its output is the last layer's spike train
    model = st.from_nir(path, dt=1e-4)
    assert_agree(torch.stack(hooks[len(lif) - 1]), model(x))


def test_snntorch_recurrent_rleaky_imports_as_feedback(snn, tmp_path):
    """``RLeaky``'s cycle LIF ⇄ w_rec becomes a self-connection reading the previous step.  ``reset_delay=False``:
    with the default (``True``) its zero reset clears the membrane a step late, after adding that step's input,
    which is not NIR's reset (snnTorch's own importer builds ``RLeaky(reset_delay=False)``)."""
    from snntorch import utils as snn_utils

    torch.manual_seed(1)
    nn = torch.nn
    rleaky = snn.RLeaky(beta=torch.full((10,), 0.9), threshold=torch.ones(10), linear_features=10, all_to_all=True,
                        init_hidden=True, reset_mechanism="zero", reset_delay=False)
    net = scaled(nn.Sequential(nn.Linear(6, 10), rleaky, nn.Linear(10, 3), leaky(snn, (3,), 0.8, output=True)), 2.0)
    x = torch.rand(T, B, 6)
    path = snn_export(snn, net, x[0, :1], tmp_path)
    hooks = recorded([rleaky])
    snn_utils.reset(net)
    ref = stepped(lambda xt: net(xt)[0], x)
    loaded = stn.load(path, dt=1e-4)
    ours = spikes(loaded, x)
    rec = [c for c in loaded.connections if c.pre is c.post]
    assert len(rec) == 1 and rec[0].min_delay_steps == 1  # set when the network compiled its schedule
    assert_agree(torch.stack(hooks[0]), ours["n1_lif"])
    assert_agree(ref, ours["n3"])


def test_snntorch_imports_our_feed_forward_graphs(snn):
    """snnTorch's ``import_from_nir`` assumes dt = 1e-4 s: export with it.  It maps NIR's ``Flatten(start_dim=0)``
    to ``torch.nn.Flatten(0)``, which flattens the batch too, so its module is run one sample at a time."""
    from snntorch.import_nir import import_from_nir

    torch.manual_seed(2)
    net = st.Network(dt=1.0)
    net.inp = st.Encoder(shape=(2, 8, 8), coding="direct")
    net.c = st.NeuronGroup(shape=None, model="lif", tau=4.0)
    net.h = st.NeuronGroup(10, model="lif", tau=6.0)
    net.o = st.NeuronGroup(3, model="lif", tau=3.0, v_th=0.5)
    net.conv = st.Connection(net.inp, net.c, link_type="conv", syn_type=["conv", "avgpool"], out_channels=4,
                             kernel_size=3, padding=1, w_mean=0.2, w_std=0.4, bias=0.1)
    net.fc = st.Connection(net.c, net.h, w_mean=0.05, w_std=0.3, bias=0.02)
    net.out = st.Connection(net.h, net.o, w_mean=0.2, w_std=0.5)
    x = torch.rand(T, B, 2, 8, 8) * 2
    ours = spikes(net, x)
    from snntorch import utils as snn_utils

    gm = import_from_nir(stn.export(net, dt=1e-4))
    theirs = []
    for b in range(B):
        snn_utils.reset(gm)  # its Leaky modules keep the membrane themselves (init_hidden=True)
        theirs.append(stepped_graph_module(gm, x[:, b:b + 1]).reshape(T, 1, -1))
    theirs = torch.cat(theirs, 1)
    assert float(ours["h"].sum()) > 10
    assert_agree(theirs, ours["o"])


# ------------------------------------------------------------------------------------------------ SpikingJelly
@pytest.fixture
def sj():
    require("spikingjelly", "peers")
    require("nirtorch", "nir")  # SpikingJelly's NIR exchange
    from spikingjelly.activation_based import functional, layer, neuron
    from spikingjelly.activation_based.nir_exchange import from_nir, to_nir

    return functional, layer, neuron, from_nir, to_nir


def test_spikingjelly_export_imports_with_identical_spikes(sj, tmp_path):
    functional, layer, neuron, _, to_nir = sj
    torch.manual_seed(3)
    lifs = [neuron.LIFNode(tau=2.0, decay_input=False), neuron.LIFNode(tau=3.0, decay_input=False), neuron.IFNode()]
    net = scaled(torch.nn.Sequential(layer.Conv2d(1, 4, 3, padding=1), layer.AvgPool2d(2), lifs[0], layer.Flatten(),
                                     layer.Linear(64, 8), lifs[1], layer.Linear(8, 3), lifs[2]), 3.0)
    x = torch.rand(T, B, 1, 8, 8) * 6
    path = tmp_path / "sj.nir"
    to_nir.export_to_nir(net, x[0, :2], save_path=path)  # SpikingJelly's exporter: dt = 1e-4 s
    hooks = recorded(lifs)
    functional.reset_net(net)
    stepped(net, x)
    ours = spikes(stn.load(path, dt=1e-4), x)
    for i, name in enumerate(["n_2", "n_5", "n_7"]):  # node names: '_<module index>'
        assert_agree(torch.stack(hooks[i]), ours[name])


def test_spikingjelly_imports_our_graphs(sj):
    """Conv, avg pooling, LIF, IF and a self-recurrent connection (SpikingJelly reads NIR cycles step by step)."""
    *_, from_nir, _ = sj
    torch.manual_seed(4)
    net = st.Network(dt=1.0)
    net.inp = st.Encoder(shape=(1, 8, 8), coding="direct")
    net.c = st.NeuronGroup(shape=None, model="lif", tau=4.0)
    net.h = st.NeuronGroup(8, model="lif", tau=5.0)
    net.o = st.NeuronGroup(3, model="if")
    net.conv = st.Connection(net.inp, net.c, link_type="conv", syn_type=["conv", "avgpool"], out_channels=4,
                             kernel_size=3, padding=1, w_mean=0.3, w_std=0.5, bias=0.1)
    net.fc = st.Connection(net.c, net.h, w_mean=0.1, w_std=0.4)
    net.out = st.Connection(net.h, net.o, w_mean=0.2, w_std=0.5, bias=0.05)
    net.rec = st.Connection(net.h, net.h, w_mean=0.0, w_std=0.3)
    x = torch.rand(T, B, 1, 8, 8)
    ours = spikes(net, x)
    theirs = stepped_graph_module(from_nir.import_from_nir(stn.export(net, dt=1e-4), dt=1e-4), x)
    assert float(ours["h"].sum()) > 10
    assert_agree(theirs, ours["o"])


# ------------------------------------------------------------------------------------------------ Norse
def test_norse_export_imports_with_dt_squared():
    """Norse 1.1's exporter writes ``tau = dt / tau_mem_inv`` (= dt·τ) for its LIF and ``r = 1``: read with
    ``dt = dt_norse²`` the graph steps exactly like Norse (β = 1 − dt·tau_mem_inv, input gain dt·tau_mem_inv).
    Its ``Input`` node keeps the batch dimension (``[1, 16]``), which the importer drops."""
    norse = require("norse.torch", "peers")
    torch.manual_seed(5)
    net = scaled(norse.SequentialState(torch.nn.Linear(16, 8), norse.LIFBoxCell(), torch.nn.Linear(8, 4),
                                       norse.LIFBoxCell()), 20.0)
    graph = norse.to_nir(net, torch.rand(1, 16))  # dt = 1e-3 s
    x = torch.rand(T, B, 16)
    state, outs = None, []
    with torch.no_grad():
        for t in range(T):
            out, state = net(x[t], state)
            outs.append(out)
    ours = spikes(stn.load(graph, dt=1e-3 ** 2), x)
    assert_agree(torch.stack(outs), ours["n3"])
