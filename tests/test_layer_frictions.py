"""What users of Keras / PyTorch / SpikingJelly expect of the layers: a plain weighted readout (``neuron=None``), a
bias by default on ``Full`` / ``Conv2dSyn`` (old saved configs keep none), pooling of the spikes
(``pool_position='after'``) and ``Pool2d(size)``."""

from __future__ import annotations

import math

import pytest
import torch

import spaic_train as st
from spaic_train.layers import Conv2dSyn, Flatten, Full, Input, OneToOne, Pool2d, SparseRandom


def test_neuron_none_is_the_weighted_sum_each_step():
    torch.manual_seed(0)
    model = st.Sequential([Input((12,)), Full(5, neuron=None, name="out")], time_steps=4, decoder="mean_voltage")
    conn = model.get_layer("out").connections[0]
    x = torch.rand(3, 12)
    torch.testing.assert_close(model.predict(x), x @ conn.weight.T + conn.bias, rtol=1e-6, atol=1e-6)
    # the same as the explicit memoryless leaky integrator, the way it had to be written before
    torch.manual_seed(0)
    explicit = st.Sequential([Input((12,)), Full(5, neuron="leaky_integrator", neuron_kwargs={"tau": 0.0},
                                                 name="out")], time_steps=4, decoder="mean_voltage")
    assert torch.equal(explicit.predict(x), model.predict(x))
    assert "none (weighted sum)" in model.summary(print_fn=lambda *_: None)
    assert model.get_layer("out").get_config()["neuron"] is None


def test_full_and_conv_have_a_bias_by_default_like_torch_and_connection_keeps_none():
    torch.manual_seed(0)
    model = st.Sequential([Input((2, 6, 6)), Conv2dSyn(3, kernel_size=3, name="c"), Flatten(),
                           Full(7, name="f"), SparseRandom(4, density=0.5, name="s"), OneToOne(name="o")],
                          time_steps=2)
    conv, full = model.get_layer("c").connections[0], model.get_layer("f").connections[0]
    assert conv.bias.shape == (3,) and full.bias.shape == (7,)
    # PyTorch's default: U(±1/sqrt(fan_in))
    assert conv.bias.abs().max() <= 1 / math.sqrt(2 * 9) and full.bias.abs().max() <= 1 / math.sqrt(3 * 4 * 4)
    assert model.get_layer("s").connections[0].bias is None and model.get_layer("o").connections[0].bias is None
    a, b = st.NeuronGroup(3), st.NeuronGroup(2)
    assert st.Connection(a, b, link_type="full").bias is None  # SPAIC's default on the core
    no_bias = Full(7, bias=False)
    assert no_bias.get_config()["bias"] is False and Full(7).get_config()["bias"] is True


def test_config_without_a_bias_key_loads_without_a_bias(tmp_path):
    """Configs saved before ``bias`` was a layer argument had no bias: they must load as they were."""
    torch.manual_seed(0)
    old = st.Sequential([Input((1, 6, 6)), Conv2dSyn(3, kernel_size=3, bias=False, name="c"), Flatten(),
                         Full(5, bias=False, name="out")], time_steps=3)
    config = old.get_config()
    for entry in config["layers"]:
        entry["config"].pop("bias", None)  # what an earlier version wrote
    again = st.Sequential.from_config(config)
    assert all(c.bias is None for layer in again.layers[1:] for c in layer.connections)
    again.load_state_dict(old.state_dict())  # strict: the same parameters
    x = torch.rand(4, 1, 6, 6)
    assert torch.equal(again.predict(x), old.predict(x))
    # a bias that an old config gave explicitly (then a connection keyword) is still honoured
    entry = {"units": 5, "name": "out", "connection_kwargs": {"bias": True}}
    assert Full.from_config(entry).bias is True


def test_pool_after_the_neurons_is_a_pool_layer_after_the_layer():
    torch.manual_seed(0)
    after = st.Sequential([Input((1, 8, 8)), Conv2dSyn(4, padding=1, pool="max", pool_position="after", name="c"),
                           Flatten(), Full(10, name="out")], time_steps=4, decoder="spike_counts")
    separate = st.Sequential([Input((1, 8, 8)), Conv2dSyn(4, padding=1, name="c"), Pool2d(2), Flatten(),
                              Full(10, name="out")], time_steps=4, decoder="spike_counts")
    before = st.Sequential([Input((1, 8, 8)), Conv2dSyn(4, padding=1, pool="max", name="c"),
                            Flatten(), Full(10, name="out")], time_steps=4, decoder="spike_counts")
    separate.load_state_dict(after.state_dict())
    before.load_state_dict(after.state_dict())
    assert after.get_layer("c").group.shape == (4, 8, 8) and after.get_layer("c").output_shape == (4, 4, 4)
    assert before.get_layer("c").group.shape == (4, 4, 4)
    assert after.get_layer("out").connections[0].syn_type[0] == "maxpool"
    x = torch.rand(6, 1, 8, 8) * 2
    out = after.predict(x)
    assert out.sum() > 0
    assert torch.equal(out, separate.predict(x))
    assert not torch.equal(out, before.predict(x))
    again = st.Sequential.from_config(after.get_config())
    assert again.get_layer("c").pool_position == "after" and again.get_layer("c").output_shape == (4, 4, 4)


def test_pool2d_takes_the_size_first_and_the_kind_as_a_keyword():
    assert Pool2d(2).get_config() == Pool2d("max", 2).get_config() == Pool2d(size=2, kind="max").get_config()
    p = Pool2d(3, 2, 1, kind="avg")
    assert (p.kind, p.size, p.stride, p.padding) == ("avg", 3, 2, 1)
    old = Pool2d("avg", 3, stride=2, padding=1)  # the kind-first order of earlier versions
    assert old.get_config() == p.get_config()
    assert Pool2d.from_config({"kind": "sum", "size": 2, "stride": None, "padding": 0, "name": "p"}).kind == "sum"
    with pytest.raises(TypeError, match="stride/padding given both"):
        Pool2d(2, 2, stride=2)
