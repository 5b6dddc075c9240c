"""Conversion of QCFS networks with the membrane starting at the QCFS shift (``v_init``, Bu et al. 2022)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import spaic_train as st
from spaic_train.conversion import QCFS


def _qcfs_mlp(levels=4, threshold=1.5):
    torch.manual_seed(3)
    return nn.Sequential(nn.Linear(6, 8), QCFS(levels=levels, threshold=threshold), nn.Linear(8, 8),
                         QCFS(levels=levels, threshold=0.8), nn.Linear(8, 3)).eval()


def _first_layer(snn, x, T):
    with snn.record(("O", "Isyn")) as rec:
        snn(x, time_steps=T)
    return rec["l0"]["O"].sum(0), rec["l0"]["Isyn"]


def test_first_qcfs_layer_counts_the_quantized_activation_at_every_t(float64):
    """Membrane from ``λ/2``: after ``T`` steps of the constant current ``a`` (the ANN's pre-activation) the first
    layer has fired ``clamp(floor(a·T/λ + 1/2), 0, T)`` times for every ``T``; at ``T = L`` that is the ANN's QCFS
    output (``λ·count/L``) exactly.  No shift is folded into the bias."""
    ann = _qcfs_mlp()
    x = torch.rand(64, 6) * 2
    snn = st.convert(ann, x, time_steps=4)
    assert snn.conversion["v_init"] == "auto"
    layer = snn.get_layer("l0")
    assert layer.group.neuron.v_init == pytest.approx(0.75) and layer.group.neuron.reset == "soft"
    torch.testing.assert_close(layer.connections[0].bias, ann[0].bias, rtol=0, atol=0)
    pre = ann[0](x)
    for T in (1, 2, 3, 4, 7, 8, 16, 33):
        counts, current = _first_layer(snn, x, T)
        torch.testing.assert_close(current[-1], pre, rtol=0, atol=1e-12)
        assert torch.equal(counts, torch.clamp(torch.floor(pre * T / 1.5 + 0.5), 0, T)), T
        if T == 4:
            torch.testing.assert_close(counts * 1.5 / 4, ann[1](pre), rtol=0, atol=1e-12)


def test_v_init_zero_folds_the_shift_into_the_bias_exact_at_t_equal_levels_only(float64):
    ann = _qcfs_mlp()
    x = torch.rand(64, 6) * 2
    snn = st.convert(ann, x, time_steps=4, v_init=0)
    assert snn.get_layer("l0").group.neuron.v_init == 0.0
    torch.testing.assert_close(snn.get_layer("l0").connections[0].bias, ann[0].bias + 0.5 * 1.5 / 4, rtol=0,
                               atol=1e-15)
    counts, _ = _first_layer(snn, x, 4)
    torch.testing.assert_close(counts * 1.5 / 4, ann[1](ann[0](x)), rtol=0, atol=1e-12)
    counts8, _ = _first_layer(snn, x, 8)
    half = st.convert(ann, x, time_steps=4)
    expected8 = torch.clamp(torch.floor(ann[0](x) * 8 / 1.5 + 0.5), 0, 8)
    assert torch.equal(_first_layer(half, x, 8)[0], expected8) and not torch.equal(counts8, expected8)


def test_a_fraction_sets_every_if_layer_and_the_rest_of_the_shift_goes_into_the_bias(float64):
    ann = _qcfs_mlp()
    x = torch.rand(16, 6)
    snn = st.convert(ann, x, v_init=0.25)
    for name, lam in zip(("l0", "l2"), (1.5, 0.8)):
        layer = snn.get_layer(name)
        assert layer.group.neuron.v_init == pytest.approx(0.25 * lam)
        i = 0 if name == "l0" else 2
        torch.testing.assert_close(layer.connections[0].bias, ann[i].bias + (0.5 - 0.25) * lam / 4, rtol=0,
                                   atol=1e-15)
    relu = nn.Sequential(nn.Linear(6, 8), nn.ReLU(), nn.Linear(8, 3)).eval()
    zero = st.convert(relu, x, v_init=0)
    assert zero.get_layer("l0").group.neuron.v_init == 0.0
    half = st.convert(relu, x)  # 'auto': ReLU layers start at λ/2 too
    lam = half.conversion["thresholds"]["1"]
    assert half.get_layer("l0").group.neuron.v_init == pytest.approx(lam / 2)
    torch.testing.assert_close(half.get_layer("l0").connections[0].bias, relu[0].bias, rtol=0, atol=0)


def test_converted_qcfs_model_saves_and_loads_with_its_initial_membrane(tmp_path):
    ann = _qcfs_mlp()
    x = torch.rand(16, 6) * 2
    snn = st.convert(ann, x, time_steps=8)
    snn.save(tmp_path / "snn.pt")
    back = st.load_model(tmp_path / "snn.pt")
    assert back.get_layer("l2").group.neuron.v_init == pytest.approx(0.4)
    torch.testing.assert_close(back.predict(x, batch_size=8), snn.predict(x, batch_size=8), rtol=0, atol=0)


def test_nir_compatible_qcfs_conversion_starts_at_rest_and_exports(tmp_path):
    pytest.importorskip("nir", reason="NIR export needs the 'nir' package (pip install 'spaic_train[nir]')")
    ann = _qcfs_mlp()
    x = torch.rand(16, 6) * 2
    snn = st.convert(ann, x, nir_compatible=True, time_steps=4)
    assert snn.conversion["v_init"] == 0 and snn.get_layer("l0").group.neuron.v_init == 0.0
    snn.to_nir(tmp_path / "q.nir", sample_input=x[:4])
    with pytest.raises(ValueError, match="nir_compatible=True needs v_init=0, got v_init='auto'"):
        st.convert(ann, x, nir_compatible=True, v_init="auto")
    with pytest.raises(ValueError, match="v_init=0.375 has no NIR form"):
        st.convert(ann, x, reset="hard", maxpool="avg", readout="spikes", v_init=0.25).to_nir(tmp_path / "b.nir")
