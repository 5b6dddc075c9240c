"""Keras-style layers: what each builds in the core, output shapes, parameter counts, folding, feedback, errors."""

import json

import pytest
import torch

import spaic_train as st
from spaic_train.keras import (
    Conv2dSyn,
    Dropout,
    Feedback,
    Flatten,
    Full,
    Input,
    Model,
    OneToOne,
    Pool2d,
    Sequential,
    SparseRandom,
)


def conn_into(model, name):
    """The single feed-forward connection into the layer ``name``."""
    (c,) = model.get_layer(name).connections
    return c


# ---------------------------------------------------------------------------------------------- shapes and params
def test_input_builds_an_encoder():
    x = Input((1, 8, 8), encoder="poisson", max_rate=500.0)
    assert isinstance(x.group, st.Encoder) and x.group.coding == "poisson"
    assert x.group.params == {"max_rate": 500.0}
    assert x.output.shape == (1, 8, 8)
    assert Input(784).output.shape == (784,)


def test_full_shape_and_params():
    m = Sequential([Input((1, 8, 8)), Full(64, name="h"), Full(10, bias=True, name="out")], time_steps=2)
    h, out = m.get_layer("h"), m.get_layer("out")
    assert h.output_shape == (64,) and out.output_shape == (10,)
    assert h.count_params() == 64 * 64 + 64              # (post, pre) weight + bias (default, as nn.Linear)
    assert out.count_params() == 10 * 64 + 10            # + bias
    assert isinstance(h.group, st.NeuronGroup) and h.group.shape == (64,)
    c = conn_into(m, "h")
    assert c.link_type == "full" and c.syn_type == ["basic"] and c.pre is m.get_layer("input").group
    assert m.count_params() == 64 * 64 + 64 + 10 * 64 + 10
    # the model *is* the core network: its groups/connections are registered under the layer names
    assert isinstance(m, st.Network) and m.h is h.group and m.input_to_h is c
    assert m(torch.rand(3, 1, 8, 8)).shape == (3, 10)


def test_conv2dsyn_shapes_and_params():
    m = Sequential([
        Input((1, 8, 8)),
        Conv2dSyn(8, kernel_size=3, name="c1"),                                   # (8, 6, 6)
        Conv2dSyn(6, kernel_size=3, stride=2, padding=1, groups=2, bias=True, name="c2"),  # (6, 3, 3)
        Conv2dSyn(4, kernel_size=(1, 3), padding=(0, 1), pool="avg", pool_size=3, name="c3"),  # (4, 1, 1)
    ], time_steps=2)
    assert m.get_layer("c1").output_shape == (8, 6, 6)
    assert m.get_layer("c1").count_params() == 8 * 1 * 3 * 3 + 8
    assert m.get_layer("c2").output_shape == (6, 3, 3)          # floor((6 + 2 - 2 - 1)/2) + 1 = 3
    assert m.get_layer("c2").count_params() == 6 * (8 // 2) * 3 * 3 + 6
    assert m.get_layer("c3").output_shape == (4, 1, 1)          # conv keeps 3x3, avg pool 3 -> 1x1
    assert m.get_layer("c3").count_params() == 4 * 6 * 1 * 3 + 4
    assert conn_into(m, "c3").syn_type == ["conv", "avgpool"]
    assert m(torch.rand(2, 1, 8, 8)).shape == (2, 4, 1, 1)


def test_conv2dsyn_chain_with_batchnorm_pool_dropout_and_dilation():
    m = Sequential([Input((2, 9, 9)),
                    Conv2dSyn(4, kernel_size=3, dilation=2, batchnorm=True, pool="max", pool_size=2, dropout=0.25,
                              name="c")], time_steps=2)
    c = conn_into(m, "c")
    assert c.syn_type == ["conv", "batchnorm", "maxpool", "dropout"]
    # dilation 2: 9 - 2*(3-1) = 5; max pool 2 -> 2
    assert m.get_layer("c").output_shape == (4, 2, 2)
    assert m.get_layer("c").count_params() == 4 * 2 * 3 * 3 + 4 + 2 * 4   # conv + bias + affine batch norm
    dropout = [op for op in c.synapses if type(op).__name__ == "Dropout"][0]
    assert dropout.p == 0.25


def test_fold_layers_go_into_the_next_connection_and_create_no_groups():
    m = Sequential([Input((1, 8, 8)), Conv2dSyn(8, name="conv"), Pool2d("max", 2, name="pool"),
                    Dropout(0.3, name="drop"), Flatten(name="flat"), Full(10, name="out")], time_steps=2)
    assert len(m.groups) == 2                                        # conv and out only
    assert [layer.output_shape for layer in m.layers] == [(1, 8, 8), (8, 6, 6), (8, 3, 3), (8, 3, 3), (72,), (10,)]
    c = conn_into(m, "out")
    assert c.pre is m.get_layer("conv").group
    assert c.syn_type == ["maxpool", "dropout", "flatten", "basic"]
    assert [op.p for op in c.synapses if type(op).__name__ == "Dropout"] == [0.3]
    assert m.get_layer("out").count_params() == 10 * 72 + 10
    assert sum(layer.count_params() for layer in m.layers) == m.count_params() == 8 * 9 + 8 + 730
    assert m(torch.rand(2, 1, 8, 8)).shape == (2, 10)


def test_pool2d_avg_stride_and_padding():
    m = Sequential([Input((3, 7, 7)), Pool2d("avg", 3, stride=2, padding=1, name="p"), OneToOne(name="o")],
                   time_steps=2)
    assert m.get_layer("p").output_shape == (3, 4, 4)               # floor((7 + 2 - 3)/2) + 1 = 4
    assert m.get_layer("o").output_shape == (3, 4, 4)
    assert m.get_layer("o").count_params() == 3 * 4 * 4
    assert conn_into(m, "o").syn_type == ["avgpool", "basic"] and conn_into(m, "o").link_type == "one_to_one"


def test_one_to_one_and_sparse_random():
    m = Sequential([Input(50), OneToOne(name="o"), SparseRandom(20, density=0.3, name="s"),
                    SparseRandom(30, probability=0.5, name="r")], time_steps=2)
    assert m.get_layer("o").output_shape == (50,) and m.get_layer("o").count_params() == 50
    s, r = conn_into(m, "s"), conn_into(m, "r")
    assert s.link_type == "sparse_connect" and r.link_type == "random"
    assert m.get_layer("s").count_params() == 20 * 50 and m.get_layer("r").count_params() == 30 * 20
    assert s.mask is not None and s.mask.shape == (20, 50) and 0.15 < s.mask.float().mean() < 0.45
    assert torch.all(s.weight[~s.mask] == 0)
    with pytest.raises(ValueError, match="not both"):
        SparseRandom(5, density=0.1, probability=0.1)


def test_neuron_parameters_pass_through():
    m = Sequential([Input(4), Full(3, neuron="plif", neuron_kwargs={"tau": 2.0, "v_th": 0.5}, surrogate="sigmoid",
                                   name="p"),
                    Full(2, neuron="if", name="i")], time_steps=2)
    neuron = m.get_layer("p").group.neuron
    assert type(neuron).__name__ == "PLIF" and abs(float(neuron.tau) - 2.0) < 1e-6 and neuron.v_th == 0.5
    assert neuron.surrogate.name == "sigmoid"
    assert m.get_layer("p").count_params() == 3 * 4 + 3 + 1          # weights + bias + learnable log_tau
    assert type(m.get_layer("i").group.neuron).__name__ == "IF"
    assert "plif(tau=2" in m.get_layer("p").neuron_description()
    with pytest.raises(TypeError, match=r"Full 'bad'.*unknown parameter 'taux'"):
        Sequential([Input(4), Full(3, neuron_kwargs={"taux": 1.0}, name="bad")])


def test_skip_connection_sums_two_inputs():
    x = Input(6)
    a = Full(4, neuron="if", name="a")(x)
    y = Full(3, neuron="if", name="y")([a, x])                       # one connection per input
    m = Model(x, y, time_steps=3, decoder="spike_counts")
    layer = m.get_layer("y")
    assert len(layer.connections) == 2 and layer.count_params() == 3 * 4 + 3 * 6 + 3  # one bias per layer
    assert {c.name for c in layer.connections} == {"a_to_y", "input_to_y"}
    assert [lay.name for lay in m.input_layers] == ["input"]
    # the currents sum: compare with the two connections applied by hand
    mon = st.StateMonitor(layer.group, "Isyn")
    m.add(mon, "mon")
    mon_a = st.StateMonitor(m.get_layer("a").group, "O")
    m.add(mon_a, "mon_a")
    inp = torch.rand(2, 6) * 3
    m(inp)
    seq = inp.unsqueeze(0).expand(3, 2, 6)
    assert layer.connections[1].bias is None  # the layer's one bias sits on its first connection
    expected = (mon_a.values @ layer.connections[0].weight.T + layer.connections[0].bias
                + seq @ layer.connections[1].weight.T)
    assert torch.allclose(mon.values, expected.detach(), atol=1e-5)


def test_skip_into_conv_requires_matching_shapes():
    x2 = Input((1, 8, 8))
    a2 = Conv2dSyn(4, padding=1, name="a2")(x2)                     # (4, 8, 8)
    b2 = Conv2dSyn(4, padding=1, name="b2")([a2, x2])              # both give (4, 8, 8): fine
    assert b2.shape == (4, 8, 8)
    x3 = Input((1, 8, 8))
    a3 = Conv2dSyn(4, name="a3")(x3)                                # (4, 6, 6)
    with pytest.raises(ValueError, match=r"Conv2dSyn 'b3'.*input from Input.*\(1, 8, 8\).*\(4, 6, 6\)"):
        Conv2dSyn(4, padding=1, name="b3")([a3, x3])                # (4, 6, 6) vs (4, 8, 8)


# ---------------------------------------------------------------------------------------------- delays and feedback
def test_delay_arguments_on_a_layer():
    d = torch.full((5, 4), 2.0)
    m = Sequential([Input(4), Full(5, max_delay=3.0, delay=d, name="h"),
                    Full(2, max_delay=4.0, delay=st.uniform(0.0, 4.0), name="o")], time_steps=2)
    assert torch.equal(conn_into(m, "h").delay, d)
    do = conn_into(m, "o").delay
    assert do.shape == (2, 5) and float(do.min()) >= 0 and float(do.max()) <= 4.0
    assert m.get_layer("h").delay_description() == "2 ms"


def test_feedback_in_sequential_by_name():
    m = Sequential([Input(8), Full(6, name="h"), Full(3, name="out")], time_steps=4,
                   feedback=[Feedback("out", "h", max_delay=4.0, w_mean=0.1),
                             Feedback("h", "h", link_type="random", probability=0.5)])
    fb, rec = m.feedbacks
    assert fb.connection is m.fb_out_to_h and rec.connection is m.fb_h_to_h
    assert fb.connection.pre is m.get_layer("out").group and fb.connection.post is m.get_layer("h").group
    assert fb.connection.delay.shape == (6, 3) and float(fb.connection.delay.max()) <= 4.0
    assert rec.connection.link_type == "random" and not rec.connection.mask.diagonal().any()
    out = m(torch.rand(2, 8))
    assert out.shape == (2, 3)
    plan = m.compile_plan()
    assert fb.connection.min_delay_steps == 1 and rec.connection.min_delay_steps == 1
    assert any(stage.stepped for stage in plan.stages)
    assert m.count_params() == 6 * 8 + 6 + 3 * 6 + 3 + 6 * 3 + 6 * 6


def test_feedback_in_functional_model_by_tensor_and_layer():
    x = Input(8)
    h_layer = Full(6, name="h")
    h = h_layer(x)
    y = Full(3, name="out")(h)
    m = Model(x, y, time_steps=3, feedback=[Feedback(y, h_layer, max_delay=2.0, delay=2.0, name="topdown")])
    assert m.topdown.pre is m.get_layer("out").group and torch.all(m.topdown.delay == 2.0)
    assert m(torch.rand(2, 8)).shape == (2, 3)


def test_feedback_errors():
    with pytest.raises(ValueError, match=r"no layer named 'nope'.*input, h, out"):
        Sequential([Input(8), Full(6, name="h"), Full(3, name="out")], feedback=[Feedback("out", "nope")])
    with pytest.raises(ValueError, match="has no neurons"):
        Sequential([Input(8), Full(6, name="h"), Full(3, name="out")], feedback=[Feedback("h", "input")])
    with pytest.raises(TypeError, match="pass Feedback"):
        Sequential([Input(8), Full(6, name="h"), Feedback("h", "h")])


# ---------------------------------------------------------------------------------------------- names and errors
def test_default_names_are_unique_and_deterministic():
    def build():
        return Sequential([Input(4), Full(3), Full(3), Dropout(0.1), Full(2)], time_steps=2)

    a, b = build(), build()
    assert [lay.name for lay in a.layers] == ["input", "full", "full_1", "dropout", "full_2"]
    assert list(a.state_dict()) == list(b.state_dict())
    b.load_state_dict(a.state_dict())


def test_incompatible_layers_name_the_layer_and_both_shapes():
    with pytest.raises(ValueError, match=r"Conv2dSyn 'conv'.*\(C, H, W\).*\(16,\).*Full 'full'"):
        Sequential([Input((1, 8, 8)), Full(16), Conv2dSyn(4)])
    with pytest.raises(ValueError, match=r"Pool2d 'pool'.*\(C, H, W\).*\(64,\)"):
        Sequential([Input((1, 8, 8)), Flatten(), Pool2d()])
    with pytest.raises(ValueError, match=r"Conv2dSyn 'c'.*too small"):
        Sequential([Input((1, 4, 4)), Conv2dSyn(4, kernel_size=5, name="c")])
    with pytest.raises(ValueError, match=r"OneToOne 'o'.*equal size"):
        x = Input(4)
        OneToOne(name="o")([x, Full(5)(x)])


def test_model_structure_errors():
    with pytest.raises(ValueError, match="first layer must be Input"):
        Sequential([Full(3)])
    with pytest.raises(ValueError, match="two layers are named 'h'"):
        Sequential([Input(4), Full(3, name="h"), Full(3, name="h")])
    with pytest.raises(ValueError, match="clashes with an attribute"):
        Sequential([Input(4), Full(3, name="summary")])
    with pytest.raises(ValueError, match="must be a Python identifier"):
        Full(3, name="my layer")
    with pytest.raises(ValueError, match="no neurons to decode"):
        x = Input(4)
        Model(x, Dropout(0.1)(Full(3)(x)))
    layer = Full(3)
    x = Input(4)
    layer(x)
    with pytest.raises(ValueError, match="already called"):
        layer(x)
    with pytest.raises(ValueError, match=r"Conv2dSyn.*'p'|the synapse chain.*p=0.5.*p=0.2"):
        Sequential([Input((1, 8, 8)), Dropout(0.5), Conv2dSyn(2, dropout=0.2)])
    with pytest.raises(ValueError, match="not in inputs"):
        a, b = Input(4, name="a"), Input(4, name="b")
        Model(a, Full(2)([a, b]))


# ---------------------------------------------------------------------------------------------- config
def test_config_round_trip_is_json_and_rebuilds_the_same_architecture():
    m = Sequential([
        Input((1, 8, 8), encoder="poisson", max_rate=800.0),
        Conv2dSyn(4, padding=1, pool="max", batchnorm={"momentum": 0.2}, weight=st.kaiming_normal(), name="c"),
        Dropout(0.2), Flatten(),
        SparseRandom(12, density=0.5, neuron="alif", name="h", max_delay=2.0),
        Full(3, neuron="plif", neuron_kwargs={"tau": 3.0}, surrogate={"name": "atan", "alpha": 3.0},
             weight=torch.zeros(3, 12), bias=True, name="out"),
    ], time_steps=3, decoder="spike_counts", dt=0.5, feedback=[Feedback("out", "h", max_delay=1.0)], name="net")
    cfg = m.get_config()
    text = json.dumps(cfg)                                        # JSON-able, nothing pickled
    twin = Sequential.from_config(json.loads(text))
    assert twin.get_config() == cfg
    assert list(twin.state_dict()) == list(m.state_dict())
    assert [p.shape for p in twin.parameters()] == [p.shape for p in m.parameters()]
    assert twin.summary(print_fn=None) == m.summary(print_fn=None)
    assert twin.dt == 0.5 and twin.time_steps == 3 and twin.decoder_codings == ["spike_counts"]


def test_functional_config_round_trip():
    x = Input(6)
    a = Full(4, name="a")(x)
    b = Full(4, name="b")(Dropout(0.1)(x))
    y = Full(2, name="y")([a, b])
    m = Model(x, y, time_steps=2, feedback=[Feedback("y", "a")])
    twin = Model.from_config(json.loads(json.dumps(m.get_config())))
    assert twin.get_config() == m.get_config()
    assert list(twin.state_dict()) == list(m.state_dict())


def test_multi_input_multi_output_model():
    a, b = Input(4, name="a"), Input((2, 3), name="b")
    h = Full(5, name="h")([a, b])
    o1 = Full(3, name="o1")(h)
    o2 = OneToOne(name="o2")(h)
    m = Model([a, b], [o1, o2], time_steps=3, decoder=["spike_rate", "spike_counts"])
    assert [d.coding for d in m.decoders] == ["spike_rate", "spike_counts"]
    assert m.decoder_o1.target is m.o1 and m.decoder_o2.target is m.o2
    r, c = m({"a": torch.rand(2, 4), "b": torch.rand(2, 2, 3)})
    assert r.shape == (2, 3) and c.shape == (2, 5)
    assert m.input_shape == [(4,), (2, 3)] and m.output_shape == [(3,), (5,)]
    with pytest.raises(ValueError, match="single-input, single-output"):
        m.predict(torch.rand(2, 4))
