"""The initial membrane potential ``v_init`` of the LIF-family neurons (``lif``, ``if``, ``plif``, ``alif``): the
analytic QCFS spike count, every execution path, the default, saving and NIR export."""

from __future__ import annotations

import math

import pytest
import torch

import spaic_train as st
from spaic_train.neurons import IF, NEURONS, build_neuron
from spaic_train.neurons.kernels import dispatch


def _qcfs_count(x: torch.Tensor, theta: float, T: int) -> torch.Tensor:
    """Spikes a QCFS activation stands for after ``T`` steps: ``clamp(floor(x·T/θ + 1/2), 0, T)``."""
    return torch.clamp(torch.floor(x * T / theta + 0.5), 0, T)


@pytest.mark.parametrize("theta", [1.0, 0.75, 2.5])
def test_if_from_half_threshold_counts_the_qcfs_levels_exactly(float64, theta):
    """IF, threshold θ, v_init = θ/2, reset by subtraction, constant current x for T steps: the spike count is
    ``clamp(floor(x·T/θ + 1/2), 0, T)`` exactly, ties included.  On a dyadic grid of x (x = k·θ/(2T)·2^-3, every
    partial sum exact in float64) many x sit exactly on a level boundary; random x cover the rest."""
    g = torch.Generator().manual_seed(0)
    for T in (1, 2, 4, 8, 16, 32):
        grid = torch.arange(-3 * 16 * T, 3 * 16 * T + 1, dtype=torch.float64) * theta / (16 * T)
        x = torch.cat([grid, torch.rand(4000, generator=g, dtype=torch.float64) * 1.6 * theta - 0.3 * theta])
        neuron = IF(v_th=theta, reset="soft", v_init=theta / 2)
        current = x.expand(T, 1, -1).contiguous()
        spikes, _, _ = neuron.run_sequence(current)
        counts = spikes.sum(0)[0]
        expected = _qcfs_count(x, theta, T)
        assert torch.equal(counts, expected), f"T={T}: {(counts != expected).sum()} counts differ"
        on_boundary = (torch.frac(grid * T / theta + 0.5) == 0) & (grid > 0) & (grid < theta)
        assert int(on_boundary.sum()) >= T  # ties are really exercised
        stepped, _, _ = neuron.run_sequence_unfused(current)
        assert torch.equal(stepped, spikes)


def test_v_init_zero_is_the_default_and_bit_identical():
    """``v_init=0`` (the default) is the zero state every model started from before the option existed: the same
    initial state object values and the same outputs as the kernel's own zero ``V0``, bit for bit."""
    torch.manual_seed(1)
    current = torch.randn(12, 3, 5) * 0.8
    for name in ("lif", "if", "plif", "alif"):
        default, explicit = build_neuron(name), build_neuron(name, v_init=0.0)
        assert default.v_init == 0.0
        like = current[0]
        for state in (default.initial_state(like), explicit.initial_state(like)):
            assert all(torch.equal(v, torch.zeros_like(like)) for v in state.values())
        O, VT, Vseq = default.run_sequence(current, return_v=True)
        O2, VT2, Vseq2 = explicit.run_sequence(current, return_v=True)
        assert torch.equal(O, O2) and torch.equal(Vseq, Vseq2)
    lif = build_neuron("lif", reset="soft")
    O, VT, a, Vseq = dispatch.lif_sequence(current, None, lif.beta(), lif.v_th, 0.0, "soft", lif.surrogate,
                                           return_v=True)
    O2, state, Vseq2 = lif.run_sequence(current, return_v=True)
    assert torch.equal(O, O2) and torch.equal(Vseq, Vseq2) and torch.equal(VT, state["V"])


@pytest.mark.parametrize("name", ["lif", "if", "plif", "alif"])
@pytest.mark.parametrize("reset", ["hard", "soft"])
def test_v_init_reaches_every_path_and_equals_an_explicit_initial_state(name, reset):
    """The fused kernel (numba on CPU where it applies, the torch kernel otherwise), the stepped loop and an
    explicit ``V0 = v_init`` agree; gradients match the unfused reference."""
    torch.manual_seed(2)
    neuron = build_neuron(name, reset=reset, v_init=0.6)
    current = (torch.randn(10, 4, 6) * 0.5).requires_grad_()
    like = current[0].detach()
    assert torch.equal(neuron.initial_state(like)["V"], torch.full_like(like, 0.6))
    O, state, Vseq = neuron.run_sequence(current, return_v=True)
    O_ref, state_ref, Vseq_ref = neuron.run_sequence_unfused(current, return_v=True)
    assert torch.equal(O, O_ref)
    torch.testing.assert_close(Vseq, Vseq_ref, rtol=0, atol=1e-6)
    zero = build_neuron(name, reset=reset)
    given = {k: (torch.full_like(like, 0.6) if k == "V" else torch.zeros_like(like)) for k in zero.state_names}
    O_given, _, _ = zero.run_sequence(current, given)
    assert torch.equal(O, O_given)
    assert not torch.equal(Vseq, zero.run_sequence(current, return_v=True)[2])  # it really starts elsewhere
    (Vseq * torch.linspace(-1, 1, 6)).sum().backward()
    g = current.grad.clone()
    current.grad = None
    (Vseq_ref * torch.linspace(-1, 1, 6)).sum().backward()
    torch.testing.assert_close(g, current.grad, rtol=1e-5, atol=1e-6)


def test_numba_kernel_receives_v_init_through_v0(monkeypatch):
    """The compiled CPU kernel takes ``V0`` from ``initial_state``: with it on and off, the spikes are equal."""
    pytest.importorskip("numba")
    torch.manual_seed(3)
    neuron = build_neuron("lif", reset="soft", v_init=0.45)
    current = torch.randn(16, 8, 32) * 0.4
    monkeypatch.setattr(dispatch, "USE_NUMBA", True)
    calls = []
    real = dispatch._kernels

    def spy(device):
        calls.append(device)
        return real(device)

    monkeypatch.setattr(dispatch, "_kernels", spy)
    O_numba, _, V_numba = neuron.run_sequence(current, return_v=True)
    assert calls == ["cpu"]
    monkeypatch.setattr(dispatch, "USE_NUMBA", False)
    O_torch, _, V_torch = neuron.run_sequence(current, return_v=True)
    assert torch.equal(O_numba, O_torch)
    torch.testing.assert_close(V_numba, V_torch, rtol=0, atol=1e-5)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="the Triton kernel runs on CUDA only")
def test_triton_kernel_receives_v_init_through_v0():
    torch.manual_seed(4)
    neuron = build_neuron("if", reset="soft", v_init=0.5)
    current = torch.randn(16, 8, 32, device="cuda") * 0.4
    O, _, _ = neuron.run_sequence(current)
    O_ref, _, _ = neuron.run_sequence_unfused(current)
    assert torch.equal(O, O_ref)


def _model(v_init: float, **kw):
    from spaic_train.keras import Sequential
    from spaic_train.keras.layers import Full, Input

    kwargs = {"v_th": 1.0, "reset": "soft", "v_init": v_init}
    return Sequential([Input((5,), encoder="direct"), Full(7, neuron="if", neuron_kwargs=kwargs, name="h"),
                       Full(3, neuron="lif", neuron_kwargs={**kwargs, "tau": 4.0}, name="out")], time_steps=9, **kw)


def test_model_paths_stepped_checkpointed_config_and_save_load(tmp_path):
    """A Keras model with ``v_init`` in ``neuron_kwargs``: time-batched, stepped (``mode='step'``) and
    checkpointed-through-time runs agree; ``get_config`` carries it and ``save`` / ``load_model`` round-trips."""
    torch.manual_seed(5)
    model = _model(0.5)
    x = torch.rand(6, 5)
    with torch.no_grad():
        out = model(x)
        assert torch.equal(out, model(x, mode="step"))
        assert not torch.equal(out, _copy_weights(_model(0.0), model)(x))  # the option changes the result
    x.requires_grad_()
    model(x).sum().backward()
    g = x.grad.clone()
    x.grad = None
    model(x, checkpoint_steps=4).sum().backward()
    torch.testing.assert_close(x.grad, g, rtol=0, atol=1e-6)
    assert model.get_layer("h").get_config()["neuron_kwargs"]["v_init"] == 0.5
    model.save(tmp_path / "m.pt")
    back = st.load_model(tmp_path / "m.pt")
    assert back.get_layer("out").group.neuron.v_init == 0.5
    with torch.no_grad():
        assert torch.equal(back(x), model(x))


def _copy_weights(dst, src):
    dst.load_state_dict(src.state_dict())
    return dst


def test_every_lif_family_model_takes_v_init_and_bad_values_are_refused():
    for name in ("lif", "if", "plif", "alif"):
        assert "v_init" in NEURONS.get(name).allowed_params()
        assert build_neuron(name, v_init=-0.25).v_init == -0.25
        assert "v_init=-0.25" in repr(build_neuron(name, v_init=-0.25))
    for bad in (float("nan"), math.inf, "0.5", True, None):
        with pytest.raises(ValueError, match=r"NeuronGroup\('h'\): if: v_init .*must be a finite number"):
            st.NeuronGroup(4, model="if", name="h", v_init=bad)


def test_nir_export_refuses_a_membrane_that_does_not_start_at_rest(tmp_path):
    pytest.importorskip("nir", reason="NIR export needs the 'nir' package (pip install 'spaic_train[nir]')")
    from spaic_train.nir import export

    for v_init, works in ((0.0, True), (0.5, False)):
        net = st.Network(time_steps=4)
        net.input = st.Encoder(shape=(3,), coding="direct")
        net.h = st.NeuronGroup(4, model="if", name="h", v_init=v_init)
        net.c = st.Connection(net.input, net.h, link_type="full")
        if works:
            export(net)
        else:
            with pytest.raises(ValueError, match=r"NeuronGroup\('h'\): v_init=0.5 has no NIR form.*initial state"):
                export(net)
