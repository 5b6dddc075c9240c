"""Bias calibration of a converted SNN (``st.convert(..., calibrate='bias')``, Li et al. 2021)."""

from __future__ import annotations

import torch
from torch import nn

import spaic_train as st
from spaic_train.conversion import QCFS
from spaic_train.conversion.ann2snn_cifar import resnet_ann

T = 4


def _mlp():
    """Two ReLU layers (the second Linear without a bias: calibration gives it one) and a readout."""
    torch.manual_seed(5)
    return nn.Sequential(nn.Linear(6, 12), nn.ReLU(), nn.Linear(12, 10, bias=False), nn.ReLU(),
                         nn.Linear(10, 3)).eval()


def _ann_targets(ann, snn, x):
    """Direct computation: each ReLU layer's ANN activation clipped to its threshold, and the ANN's logits."""
    lam = snn.conversion["thresholds"]
    h1 = ann[1](ann[0](x))
    h2 = ann[3](ann[2](h1))
    return {"l0": h1.clamp(max=lam["1"]), "l2": h2.clamp(max=lam["3"]), "l4": ann[4](h2)}


def _snn_values(snn, x, steps):
    """Each layer's ``threshold × rate`` (IF layers) or mean current (the readout) over ``steps`` steps."""
    lam = snn.conversion["thresholds"]
    with torch.no_grad(), snn.record(("O",)) as rec:
        snn(x, time_steps=steps)
    return {"l0": rec["l0"]["O"].mean(0) * lam["1"], "l2": rec["l2"]["O"].mean(0) * lam["3"],
            "l4": rec["l4"]["O"].mean(0)}


def _mean_errors(ann, snn, x, steps):
    """Per layer: the per-channel mean of ANN value − SNN value."""
    ann_v, snn_v = _ann_targets(ann, snn, x), _snn_values(snn, x, steps)
    return {k: (ann_v[k] - snn_v[k]).mean(0) for k in ann_v}


def test_first_layer_correction_is_the_measured_mean_difference(float64):
    """The first layer's input is the constant current ``a = W x + b``: from ``v_init = 0`` it fires
    ``clamp(floor(a·T/λ), 0, T)`` times, so its correction is ``mean(min(relu(a), λ) − λ·count/T)`` per unit, and
    that is what is added to its bias (the ANN's bias + the correction)."""
    ann = _mlp()
    x = torch.rand(128, 6) * 2
    snn = st.convert(ann, x, v_init=0, calibrate="bias", calibrate_steps=T)
    lam = snn.conversion["thresholds"]["1"]
    pre = ann[0](x)
    counts = torch.clamp(torch.floor(pre * T / lam), 0, T)
    expected = (torch.relu(pre).clamp(max=lam) - lam * counts / T).mean(0)
    assert expected.abs().max() > 0.01  # flooring: a real, systematic error to correct
    corrections = snn.conversion["bias_corrections"]
    assert list(corrections) == ["1", "3", "4"]  # activation paths in network order, the readout included
    torch.testing.assert_close(torch.tensor(corrections["1"]), expected, rtol=0, atol=1e-12)
    torch.testing.assert_close(snn.get_layer("l0").connections[0].bias, ann[0].bias + expected, rtol=0, atol=1e-12)
    # the Linear without a bias got one: exactly its correction
    torch.testing.assert_close(snn.get_layer("l2").connections[0].bias, torch.tensor(corrections["3"]), rtol=0,
                               atol=1e-12)
    assert snn.conversion["calibrate"] == "bias" and snn.conversion["calibrate_steps"] == T


def test_calibration_reduces_every_layers_mean_error(float64):
    """Against a direct computation of the ANN values and the SNN's recorded rates: after calibration each layer's
    per-channel mean error is smaller than before (the readout's vanishes: its output is linear in the bias)."""
    ann = _mlp()
    x = torch.rand(256, 6) * 2
    plain = st.convert(ann, x, v_init=0, time_steps=T)
    calibrated = st.convert(ann, x, v_init=0, time_steps=T, calibrate="bias")
    assert calibrated.conversion["calibrate_steps"] == T  # default: the model's time_steps
    before, after = _mean_errors(ann, plain, x, T), _mean_errors(ann, calibrated, x, T)
    for name in ("l0", "l2", "l4"):
        assert after[name].abs().sum() < before[name].abs().sum(), name
    torch.testing.assert_close(after["l4"], torch.zeros(3), rtol=0, atol=1e-12)


def test_default_is_unchanged():
    """Without ``calibrate`` nothing changes (bad values: ``convert-*calibrate*`` in docs/errors.md)."""
    ann = _mlp()
    x = torch.rand(32, 6)
    snn = st.convert(ann, x)
    assert snn.conversion["calibrate"] is None and "bias_corrections" not in snn.conversion
    assert snn.get_layer("l2").connections[0].bias is None  # no bias added where the ANN has none


def test_calibrated_residual_qcfs_network_saves_and_loads(tmp_path):
    """A residual QCFS CNN (max pooling-free ResNet with 1×1 shortcuts): every layer is calibrated, the
    corrections are in the biases, and the saved model predicts the same after loading."""
    torch.manual_seed(0)
    ann = resnet_ann(width=4, activation="qcfs", levels=4).eval()
    for m in ann.modules():
        if isinstance(m, QCFS):
            m.threshold.data.fill_(1.0)
    x = torch.randn(24, 3, 32, 32)
    snn = st.convert(ann, x, time_steps=8, calibrate="bias", calibrate_steps=4, batch_size=12)
    corrections = snn.conversion["bias_corrections"]
    assert len(corrections) == len(snn.conversion["thresholds"]) + 1
    assert any(abs(d) > 0 for v in corrections.values() for d in v)
    snn.save(tmp_path / "snn.pt")
    back = st.load_model(tmp_path / "snn.pt")
    torch.testing.assert_close(back.predict(x, batch_size=12), snn.predict(x, batch_size=12), rtol=0, atol=0)


def test_spiking_readout_is_calibrated_against_the_clipped_logits(float64):
    """``readout='spikes'`` (the NIR variant): the readout is an IF layer too, its target the logits clipped to
    ``[0, λ]``; its correction is the measured mean difference of that target and ``λ·rate``."""
    ann = _mlp()
    x = torch.rand(64, 6) * 2
    snn = st.convert(ann, x, nir_compatible=True, calibrate="bias", calibrate_steps=T)
    lam = snn.get_layer("l4").group.neuron.v_th
    before = snn.get_layer("l4").connections[0].bias.detach().clone()
    correction = torch.tensor(snn.conversion["bias_corrections"]["4"])
    with torch.no_grad():  # undo the readout's correction and measure its error directly
        snn.get_layer("l4").connections[0].bias.sub_(correction)
        with snn.record(("O",)) as rec:
            snn(x, time_steps=T)
    h2 = ann[3](ann[2](ann[1](ann[0](x))))
    expected = (ann[4](h2).clamp(0, lam) - lam * rec["l4"]["O"].mean(0)).mean(0)
    torch.testing.assert_close(correction, expected, rtol=0, atol=1e-12)
    torch.testing.assert_close(before, ann[4].bias + expected, rtol=0, atol=1e-12)
