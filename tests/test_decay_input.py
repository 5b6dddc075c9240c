"""``decay_input=True``: SpikingJelly's default LIF (the input decays with the membrane), through every kernel."""

from __future__ import annotations

import math

import pytest
import torch
from extras import require

from spaic_train.layers import Full, Input
from spaic_train.neurons import LIF, PLIF, build_neuron

D = torch.float64


def _input(T, B, n, seed, dtype=D, scale=0.9, bias=0.7):
    g = torch.Generator().manual_seed(seed)
    return torch.randn((T, B, n), generator=g, dtype=dtype) * scale + bias


def _tau_for_spikingjelly(tau_sj: float, dt: float = 1.0) -> float:
    """spaic_train's ``tau`` (ms) whose ``beta = exp(-dt/tau)`` is SpikingJelly's ``1 - 1/tau_sj``."""
    return -dt / math.log(1.0 - 1.0 / tau_sj)


@pytest.mark.parametrize("tau_sj, v_reset", [(2.0, 0.0), (3.0, 0.0), (2.0, None)])
def test_matches_spikingjelly_lifnode_decay_input_spike_for_spike(tau_sj, v_reset):
    require("spikingjelly", "peers")
    from spikingjelly.activation_based import functional, neuron

    I = _input(T=80, B=4, n=32, seed=int(tau_sj * 10) + (v_reset is None))
    node = neuron.LIFNode(tau=tau_sj, decay_input=True, v_threshold=1.0, v_reset=v_reset, step_mode="m",
                          store_v_seq=True)
    with torch.no_grad():
        ref = node(I)
    ref_v = node.v_seq
    functional.reset_net(node)
    m = LIF(tau=_tau_for_spikingjelly(tau_sj), decay_input=True, v_th=1.0, v_reset=0.0,
            reset="hard" if v_reset is not None else "soft").to(D)
    assert float(m.beta()) == pytest.approx(1.0 - 1.0 / tau_sj, rel=1e-15)
    with torch.no_grad():
        O, _, Vseq = m.run_sequence(I, return_v=True)
    assert 0.05 < ref.mean() < 0.95  # the neurons fire, and not every step
    assert torch.equal(O, ref)
    # SpikingJelly computes V + (X - V)/tau, we fma(beta, V, (1 - beta) X): the same value up to float64 rounding
    torch.testing.assert_close(Vseq, ref_v, rtol=0, atol=1e-12)
    # and the default (decay_input=False) is a different neuron: the check above can fail
    with torch.no_grad():
        O_plain, _, _ = LIF(tau=_tau_for_spikingjelly(tau_sj), v_th=1.0).to(D).run_sequence(I)
    assert not torch.equal(O_plain, ref)


@pytest.mark.parametrize("reset", ["hard", "soft"])
def test_compiled_kernel_equals_the_input_scaled_by_one_minus_beta(reset):
    """float32 (the numba kernel on CPU): decay_input is the plain neuron on ``(1 - beta) * I``, bit for bit, in the
    forward and in the gradients."""
    tau = 3.0
    beta = math.exp(-1.0 / tau)
    I = _input(T=40, B=3, n=64, seed=3, dtype=torch.float32, scale=1.5, bias=1.2)
    I1 = I.clone().requires_grad_(True)
    I2 = (I.clone() * (1.0 - beta)).requires_grad_(True)
    a = LIF(tau=tau, decay_input=True, reset=reset)
    b = LIF(tau=tau, reset=reset)
    O1, s1, V1 = a.run_sequence(I1, return_v=True)
    O2, s2, V2 = b.run_sequence(I2, return_v=True)
    assert O1.sum() > 0
    assert torch.equal(O1, O2) and torch.equal(V1, V2) and torch.equal(s1["V"], s2["V"])
    w = torch.randn(O1.shape, generator=torch.Generator().manual_seed(4))
    ((O1 * w).sum() + V1.sum()).backward()
    ((O2 * w).sum() + V2.sum()).backward()
    assert torch.equal(I1.grad, I2.grad * (1.0 - beta))


@pytest.mark.parametrize("cls", [LIF, PLIF])
def test_fused_equals_step_by_step_with_gradients(cls):
    """The fused kernel and the per-step reference agree (values and gradients, float64), learnable tau included."""
    torch.manual_seed(0)
    I = _input(T=30, B=2, n=8, seed=5, scale=1.2, bias=1.0).requires_grad_(True)
    m = cls(tau=2.5, decay_input=True).to(D)
    O, state, V = m.run_sequence(I, return_v=True)
    ref_O, ref_state, ref_V = m.run_sequence_unfused(I, return_v=True)
    assert O.sum() > 0
    torch.testing.assert_close(O, ref_O, rtol=0, atol=0)
    torch.testing.assert_close(V, ref_V, rtol=1e-12, atol=1e-12)
    params = [I, *m.parameters()]
    g1 = torch.autograd.grad((O.sum() + V.pow(2).sum()), params)
    g2 = torch.autograd.grad((ref_O.sum() + ref_V.pow(2).sum()), params)
    for x, y in zip(g1, g2):
        torch.testing.assert_close(x, y, rtol=1e-10, atol=1e-10)


def test_decay_input_is_validated_and_only_for_leaky_models():
    with pytest.raises(ValueError, match=r"decay_input must be a bool.*'yes'"):
        LIF(decay_input="yes")
    with pytest.raises(TypeError, match="decay_input"):
        build_neuron("if", decay_input=True)  # no leak: (1 - beta) = 0 would silence the input
    assert build_neuron("alif", decay_input=True).decay_input is True
    assert "decay_input=True" in repr(LIF(decay_input=True))


def test_keras_layer_and_saved_config_keep_decay_input(tmp_path):
    import spaic_train as st

    torch.manual_seed(0)
    model = st.Sequential([Input((12,)), Full(6, neuron_kwargs={"tau": 2.0, "decay_input": True}, name="h")],
                          time_steps=5)
    assert model.layers[-1].group.neuron.decay_input is True
    x = torch.rand(4, 12) * 3
    model.save(tmp_path / "m.pt")
    again = st.load_model(tmp_path / "m.pt")
    assert again.layers[-1].group.neuron.decay_input is True
    assert torch.equal(again.predict(x), model.predict(x))


def test_nir_export_of_decay_input_has_unit_gain_and_round_trips(tmp_path):
    """NIR's ``tau dv/dt = (v_leak - v) + r I`` stepped by Euler is ``beta v + (1 - beta) r I``: ``r = 1``.  With
    ``sample_input`` the export loads the graph back and checks every layer's spikes."""
    require("nir", "nir")
    import spaic_train as st
    from spaic_train.nir import export

    torch.manual_seed(0)
    model = st.Sequential([Input((12,)), Full(6, neuron_kwargs={"tau": 2.0, "decay_input": True}, name="h")],
                          time_steps=5)
    x = torch.rand(4, 12) * 4
    assert model.predict(x).sum() > 0
    graph = export(model.eval(), sample_input=x)
    lif = next(node for node in graph.nodes.values() if type(node).__name__ == "LIF")
    assert float(lif.r.flatten()[0]) == 1.0
    again = st.from_nir(graph)
    assert torch.equal(again.predict(x), model.predict(x))
