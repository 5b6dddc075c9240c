"""NeuronGroup: shape / num handling and neuron-model parameters passed through to ``build_neuron``."""

from __future__ import annotations

import pytest
import torch

from spaic_train.assembly import NeuronGroup
from spaic_train.neurons import ALIF, LIF, PLIF, Izhikevich, NeuronModel


def test_num_and_default_model():
    g = NeuronGroup(10)
    assert g.num == 10 and g.shape == (10,)
    assert isinstance(g.neuron, LIF) and isinstance(g.neuron, NeuronModel)
    assert g.model_name == "lif"
    assert (g.neuron.tau, g.neuron.v_th, g.neuron.v_reset, g.neuron.reset) == (8.0, 1.0, 0.0, "hard")


def test_shape_and_num():
    g = NeuronGroup(shape=(2, 3, 4))
    assert g.shape == (2, 3, 4) and g.num == 24
    assert NeuronGroup(24, shape=[2, 3, 4]).shape == (2, 3, 4)
    assert NeuronGroup(shape=7).shape == (7,)


@pytest.mark.parametrize("num", [0, -3, 2.5, True, "10"])
def test_bad_num(num):
    with pytest.raises(ValueError, match="num"):
        NeuronGroup(num, name="bad")


def test_bad_shape():
    with pytest.raises(ValueError, match="does not match"):
        NeuronGroup(10, shape=(3, 3))
    with pytest.raises(ValueError, match="positive"):
        NeuronGroup(shape=(3, 0))
    with pytest.raises(ValueError, match="positive"):
        NeuronGroup(shape=())
    with pytest.raises(TypeError, match="shape"):
        NeuronGroup(shape="abc")
    g = NeuronGroup(name="later")
    assert not g.shape_known
    with pytest.raises(ValueError, match="later"):
        _ = g.shape
    g.shape = (4, 2)
    assert g.num == 8


def test_params_pass_through():
    g = NeuronGroup(5, model="lif", name="hid", tau=4.0, v_th=0.5, v_reset=-0.1, reset="soft",
                    surrogate="sigmoid", surrogate_alpha=2.0, detach_reset=True)
    n = g.neuron
    assert (n.tau, n.v_th, n.v_reset, n.reset, n.detach_reset) == (4.0, 0.5, -0.1, "soft", True)
    assert n.surrogate.name == "sigmoid" and n.surrogate.alpha == 2.0
    assert NeuronGroup(3, model="lif", tau_m=12.0).neuron.tau == 12.0
    p = NeuronGroup(3, model="plif", tau=3.0).neuron
    assert isinstance(p, PLIF) and float(p.tau.detach()) == pytest.approx(3.0)
    assert sum(x.numel() for x in NeuronGroup(3, model="plif").parameters()) == 1
    a = NeuronGroup(3, model="ALIF", tau_adapt=50.0).neuron
    assert isinstance(a, ALIF) and a.tau_adapt == 50.0
    z = NeuronGroup(3, model="izhikevich", a=0.1, d=2.0).neuron
    assert isinstance(z, Izhikevich) and (z.a, z.d) == (0.1, 2.0)


def test_model_errors_name_the_group():
    with pytest.raises(TypeError) as e:
        NeuronGroup(4, model="lif", name="hid", tua=2.0)
    assert "NeuronGroup('hid')" in str(e.value) and "'tua'" in str(e.value) and "tau" in str(e.value)
    with pytest.raises(ValueError) as e:
        NeuronGroup(4, model="lfi", name="hid")
    assert "NeuronGroup('hid')" in str(e.value) and "Did you mean 'lif'" in str(e.value)
    with pytest.raises(ValueError, match="tau"):
        NeuronGroup(4, model="lif", name="hid", tau=-1.0)


def test_neuron_model_instance():
    m = LIF(tau=3.0)
    g = NeuronGroup(4, model=m)
    assert g.neuron is m and g.model_name == "LIF"
    with pytest.raises(TypeError, match="NeuronModel instance"):
        NeuronGroup(4, model=LIF(), tau=2.0)


def test_group_neuron_runs_on_its_shape():
    g = NeuronGroup(shape=(2, 3), model="lif")
    I = torch.rand(5, 4, *g.shape) * 2
    O, state, V = g.neuron.run_sequence(I, g.neuron.initial_state(I[0]), return_v=True)
    assert O.shape == (5, 4, 2, 3) and V.shape == O.shape and state["V"].shape == (4, 2, 3)
