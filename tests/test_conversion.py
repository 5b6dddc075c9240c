"""ANN → SNN conversion: ``st.convert``, ``st.conversion_report``, the QCFS activation (issue 24)."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from conversion_error_cases import _Branchy, _Tanh
from torch import nn

import spaic_train as st
from spaic_train.conversion import QCFS, ConversionError, qcfs
from spaic_train.conversion.ann2snn_cifar import resnet_ann
from spaic_train.conversion.trace import trace


def _randomize_bn(net: nn.Module, seed: int = 0) -> nn.Module:
    """Non-trivial batch-norm statistics and affine parameters (a fresh BN is the identity in eval mode)."""
    g = torch.Generator().manual_seed(seed)
    for m in net.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            n = m.num_features
            m.running_mean.copy_(torch.rand(n, generator=g) * 0.4 - 0.2)
            m.running_var.copy_(torch.rand(n, generator=g) + 0.5)
            m.weight.data.copy_(torch.rand(n, generator=g) + 0.5)
            m.bias.data.copy_(torch.rand(n, generator=g) * 0.4 - 0.2)
    return net.eval()


class FunctionalResNet(nn.Module):
    """A residual CNN written with functional calls (F.relu, +, F.max_pool2d, torch.flatten, x.mean)."""

    def __init__(self):
        super().__init__()
        self.conv0 = nn.Conv2d(3, 6, 3, padding=1)
        self.conv1 = nn.Conv2d(6, 6, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(6)
        self.conv2 = nn.Conv2d(6, 6, 3, padding=1)
        self.fc = nn.Linear(6, 4)

    def forward(self, x):
        x = F.max_pool2d(F.relu(self.conv0(x)), 2)
        h = F.relu(self.bn1(self.conv1(x)))
        x = F.relu(self.conv2(h) + x)
        return self.fc(x.mean((2, 3)))


# ------------------------------------------------------------------------------------------------- exactness
def test_first_layer_current_equals_the_ann_pre_activation_at_every_step(float64):
    torch.manual_seed(0)
    ann = _randomize_bn(nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(),
                                      nn.Linear(4 * 6 * 6, 10)))
    x = torch.rand(8, 1, 6, 6)
    snn = st.convert(ann, x)
    with snn.record(("Isyn",)) as rec:
        snn(x, time_steps=5)
    current = rec["l0"]["Isyn"]
    expected = ann[1](ann[0](x))
    assert current.dtype == torch.float64 and current.shape == (5, *expected.shape)
    for t in range(5):
        torch.testing.assert_close(current[t], expected, rtol=0, atol=1e-12)


def test_batch_norm_folding_is_exact(float64):
    torch.manual_seed(1)
    ann = _randomize_bn(nn.Sequential(nn.Conv2d(2, 5, 3, stride=2, padding=1), nn.BatchNorm2d(5), nn.ReLU(),
                                      nn.Flatten(), nn.Linear(5 * 4 * 4, 6), nn.BatchNorm1d(6), nn.ReLU(),
                                      nn.Linear(6, 3)), seed=1)
    x = torch.randn(7, 2, 8, 8)
    plan, _ = trace(ann, x)
    conv, lin = plan.layers[0].terms[0].affine, plan.layers[1].terms[0].affine
    folded = F.conv2d(x, conv.weight, conv.bias, conv.conv["stride"], conv.conv["padding"])
    torch.testing.assert_close(folded, ann[1](ann[0](x)), rtol=0, atol=1e-12)
    h = torch.randn(7, 80)
    torch.testing.assert_close(F.linear(h, lin.weight, lin.bias), ann[5](ann[4](h)), rtol=0, atol=1e-12)


@pytest.mark.parametrize("v_init", [0.0, "auto"])
def test_if_rates_approach_the_normalised_activations_with_the_analytic_bound(float64, v_init):
    """Layer 1 (constant current ``a``, threshold ``λ``, reset by subtraction) fires ``floor(t·a/λ)`` times by step
    ``t`` with its membrane from 0, so ``|λ·rate − min(a, λ)| < λ/t``, and ``floor(t·a/λ + 1/2)`` times from ``λ/2``
    (the default), so ``≤ λ/(2t)``; every layer conserves charge, ``λ·N(t) = v_init + Σ I − V(t)`` exactly, and its
    ``λ·rate`` approaches the ANN's activation as ``T`` grows."""
    torch.manual_seed(2)
    ann = nn.Sequential(nn.Linear(20, 32), nn.ReLU(), nn.Linear(32, 32), nn.ReLU(), nn.Linear(32, 5)).eval()
    x = torch.rand(64, 20)
    snn = st.convert(ann, x, threshold="max", v_init=v_init)
    start, bound = (0.0, 1.0) if v_init == 0.0 else (0.5, 0.5)
    T = 256
    with snn.record(("O", "Isyn", "V")) as rec:
        snn(x, time_steps=T)
    steps = torch.arange(1, T + 1, dtype=torch.float64).view(-1, 1, 1)
    acts = [ann[1](ann[0](x))]
    acts.append(ann[3](ann[2](acts[0])))
    errors = []
    for name, lam, a in zip(("l0", "l2"), snn.conversion["thresholds"].values(), acts):
        O, I, V = rec[name]["O"], rec[name]["Isyn"], rec[name]["V"]
        counts = O.cumsum(0)
        assert snn.get_layer(name).group.neuron.v_init == pytest.approx(start * lam)
        torch.testing.assert_close(lam * counts, start * lam + I.cumsum(0) - V, rtol=0, atol=1e-9)  # charge
        err = (lam * counts / steps - a.clamp(max=lam)).abs()
        errors.append(err)
        if name == "l0":
            assert bool((err <= bound * lam / steps + 1e-12).all())
    deep = errors[1].mean((1, 2))
    assert deep[T - 1] < 0.25 * deep[15] and deep[T - 1] < 0.01 * float(acts[1].detach().max())


def test_qcfs_layer_reproduces_the_quantized_activation_at_t_equal_levels(float64):
    torch.manual_seed(3)
    ann = nn.Sequential(nn.Linear(6, 8), QCFS(levels=4, threshold=1.5), nn.Linear(8, 3)).eval()
    x = torch.rand(32, 6) * 2
    snn = st.convert(ann, x, time_steps=4)
    assert snn.conversion["thresholds"] == {"1": pytest.approx(1.5)}
    with snn.record(("O",)) as rec:
        snn(x)
    counts = rec["l0"]["O"].sum(0)
    torch.testing.assert_close(counts * 1.5 / 4, ann[1](ann[0](x)), rtol=0, atol=1e-12)


def test_qcfs_is_a_trainable_clip_with_straight_through_floor():
    act = QCFS(levels=4, threshold=2.0)
    x = torch.tensor([-1.0, 0.1, 0.3, 1.0, 1.9, 5.0], requires_grad=True)
    y = act(x)
    torch.testing.assert_close(y, torch.tensor([0.0, 0.0, 0.5, 1.0, 2.0, 2.0]))  # 2·clamp(floor(2x + 0.5)/4, 0, 1)
    y.sum().backward()
    assert act.threshold.grad is not None and x.grad is not None
    torch.testing.assert_close(qcfs(x.detach(), torch.tensor(2.0), 4), y.detach())
    with pytest.raises(ValueError, match="QCFS: levels"):
        QCFS(levels=0)
    with pytest.raises(ValueError, match="QCFS: threshold"):
        QCFS(threshold=-1.0)


def test_max_pooling_moves_before_the_neurons(float64):
    torch.manual_seed(4)
    ann = nn.Sequential(nn.Conv2d(1, 3, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
                        nn.Linear(3 * 3 * 3, 4)).eval()
    x = torch.rand(5, 1, 6, 6)
    snn = st.convert(ann, x)
    assert snn.get_layer("l0").pool == "max"
    with snn.record(("Isyn",)) as rec:
        snn(x, time_steps=3)
    for t in range(3):
        torch.testing.assert_close(rec["l0"]["Isyn"][t], F.max_pool2d(ann[0](x), 2), rtol=0, atol=1e-12)
    kinds = {m: [layer.kind for layer in st.convert(ann, x, maxpool=m).layers if type(layer).__name__ == "Pool2d"]
             for m in ("spikes", "avg")}
    assert kinds == {"spikes": ["max"], "avg": ["avg"]}
    before = nn.Sequential(nn.Conv2d(1, 3, 3, padding=1), nn.MaxPool2d(2), nn.ReLU(), nn.Flatten(),
                           nn.Linear(3 * 3 * 3, 4)).eval()  # pooling the pre-activation: part of the layer
    assert [st.convert(before, x, maxpool=m).get_layer("l0").pool for m in ("current", "avg")] == ["max", "avg"]


# ------------------------------------------------------------------------------------------------- residual nets
@pytest.mark.parametrize("make", [lambda: resnet_ann(width=4), FunctionalResNet], ids=["sequential", "functional"])
def test_residual_networks_convert_and_converge_to_the_ann(make, float64):
    torch.manual_seed(5)
    ann = _randomize_bn(make())
    x = torch.rand(16, 3, 8, 8)
    snn = st.convert(ann, x, threshold="max")
    shortcuts = [layer for layer in snn.layers if getattr(layer, "shortcut", None) == "projection"]
    assert shortcuts, "the residual additions became shortcut connections"
    y = ann(x).detach()
    with torch.no_grad():
        err = {T: float((snn(x, time_steps=T) - y).abs().max()) for T in (32, 512)}
    assert err[512] < 0.3 * err[32] and err[512] < 0.05 * float(y.abs().max())


# ------------------------------------------------------------------------------------------------- errors
class _Nested(nn.Module):
    def __init__(self):
        super().__init__()
        self.block = nn.Sequential(nn.Conv2d(1, 2, 3), nn.GELU())
        self.fc = nn.Linear(2 * 4 * 4, 2)

    def forward(self, x):
        return self.fc(self.block(x).flatten(1))


@pytest.mark.parametrize("ann, x, pattern", [
    (nn.Sequential(nn.Linear(4, 4), nn.Sigmoid(), nn.Linear(4, 2)), torch.rand(2, 4),
     r"Sigmoid at '1' in Sequential: Sigmoid is not a convertible module\. Supported parts: modules: "
     r"AdaptiveAvgPool2d, .*Conv2d.*; functions: .*add"),
    (_Nested(), torch.rand(2, 1, 6, 6), r"GELU at 'block\.1' in _Nested: GELU is not a convertible module"),
    (_Tanh(), torch.rand(2, 4), r"tanh\(\) at 'tanh' in _Tanh: tanh\(\) is not a convertible function"),
    (_Branchy(), torch.rand(2, 4), r"_Branchy cannot be traced by torch\.fx"),
    (nn.Sequential(nn.Linear(4, 2), nn.ReLU()), torch.rand(2, 4), r"must end with one weight op"),
    (nn.Sequential(nn.Linear(4, 4), nn.Linear(4, 2)), torch.rand(2, 4), r"Linear at '1'.*two weight ops"),
])
def test_unsupported_parts_name_the_part_its_path_and_what_is_supported(ann, x, pattern):
    with pytest.raises(ConversionError, match=pattern):
        st.convert(ann, x)


def test_bad_arguments_are_refused_early():
    ann = nn.Sequential(nn.Linear(4, 4), nn.ReLU(), nn.Linear(4, 2))
    x = torch.rand(8, 4)
    with pytest.raises(TypeError, match="ann must be a torch.nn.Module"):
        st.convert("net", x)
    with pytest.raises(ValueError, match="threshold must be one of"):
        st.convert(ann, x, threshold="mean")
    with pytest.raises(ValueError, match=r"percentile must be a number in \(0, 100\]"):
        st.convert(ann, x, percentile=150)
    with pytest.raises(ValueError, match="nir_compatible=True needs reset='hard'"):
        st.convert(ann, x, nir_compatible=True, reset="soft")
    with pytest.raises(ConversionError, match=r"threshold='clip' needs a trained clip value, but the activation '1'"):
        st.convert(ann, x, threshold="clip")
    with pytest.raises(ValueError, match="calibration_data holds no samples"):
        st.convert(ann, torch.empty(0, 4))
    with pytest.raises(ValueError, match="time_steps must be positive ints"):
        st.conversion_report(st.convert(ann, x), ann, (x, torch.zeros(8, dtype=torch.long)), time_steps=[0])


def test_calibration_reads_loaders_and_datasets_up_to_max_samples():
    torch.manual_seed(9)
    ann = nn.Sequential(nn.Linear(4, 6), nn.ReLU(), nn.Linear(6, 2)).eval()
    x, y = torch.rand(40, 4), torch.zeros(40, dtype=torch.long)
    ds = torch.utils.data.TensorDataset(x, y)
    from_tensor = st.convert(ann, x[:32], threshold="max")
    from_loader = st.convert(ann, torch.utils.data.DataLoader(ds, batch_size=16), threshold="max", max_samples=32)
    from_dataset = st.convert(ann, ds, threshold="max", batch_size=12, max_samples=32)
    assert from_loader.conversion["calibration_samples"] == from_dataset.conversion["calibration_samples"] == 32
    expected = float(ann[1](ann[0](x[:32])).detach().max())
    for snn in (from_tensor, from_loader, from_dataset):
        assert snn.conversion["thresholds"]["1"] == pytest.approx(expected, rel=1e-6)


# ------------------------------------------------------------------------------------------------- report
def test_report_from_one_run_equals_separate_runs_at_each_t(tmp_path):
    torch.manual_seed(6)
    ann = resnet_ann(width=4).eval()
    x = torch.rand(24, 3, 8, 8)
    y = ann(x).detach().argmax(1)
    snn = st.convert(ann, x)
    rep = st.conversion_report(snn, ann, (x, y), time_steps=[2, 5, 12], batch_size=10)
    assert rep.ann_accuracy == 1.0 and rep.samples == 24
    with torch.no_grad():
        direct = {T: float((snn(x, time_steps=T).argmax(1) == y).double().mean()) for T in (2, 5, 12)}
    assert rep.accuracy == pytest.approx(direct, abs=1e-12)
    assert "| 12 |" in rep.table() and f"{100 * rep.gap(12):+.2f}"[:2] in rep.table()
    pytest.importorskip("matplotlib", reason="the report's plot needs matplotlib (pip install 'spaic_train[convert]')")
    png = rep.plot(tmp_path / "curve.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_report_of_one_model_per_t_evaluates_each_at_its_own_t():
    """``snn={T: model}``: every T on its own model (here bias-calibrated at that T), equal to direct runs."""
    torch.manual_seed(8)
    ann = resnet_ann(width=4).eval()
    x = torch.rand(20, 3, 8, 8)
    y = ann(x).detach().argmax(1)
    models = {T: st.convert(ann, x, time_steps=T, calibrate="bias", calibrate_steps=T) for T in (2, 6)}
    rep = st.conversion_report(models, ann, (x, y), time_steps=[2, 6], batch_size=8)
    with torch.no_grad():
        direct = {T: float((m(x, time_steps=T).argmax(1) == y).double().mean()) for T, m in models.items()}
    assert rep.accuracy == pytest.approx(direct, abs=1e-12) and rep.samples == 20
    models[2].train()  # modes are restored per model
    models[6].eval()
    st.conversion_report(models, ann, (x, y), time_steps=[2, 6])
    assert models[2].training and not models[6].training


def test_profile_of_a_converted_residual_cnn_counts_its_spikes():
    """``st.profile`` on a converted ResNet: each IF layer's firing rate is the mean of its recorded spikes, the
    readout (a non-spiking integrator of the logits' current) is analog, and the SOPs into the first block's conv
    equal a direct count: every spike of the stem times the synapses it drives (3x3, padding 1)."""
    torch.manual_seed(9)
    ann = _randomize_bn(resnet_ann(width=4)).eval()
    x = torch.rand(12, 3, 8, 8)
    snn = st.convert(ann, x, time_steps=6).eval()
    result = st.profile(snn, x)
    with torch.no_grad(), snn.record(("O",)) as rec:
        snn(x, time_steps=6)
    rows = {layer.name: layer for layer in result.layers}
    for name in ("l0", "l3_conv1", "l4_conv2", "l5_conv2"):
        spikes = rec[name]["O"]
        assert set(spikes.unique().tolist()) <= {0.0, 1.0}
        assert rows[name].firing_rate == pytest.approx(float(spikes.double().mean()), rel=1e-12)
    assert rows["l8"].firing_rate is None and rows["l8"].silent_fraction is None  # the readout: analog
    weight = snn.get_layer("l3_conv1").connections[0].weight.detach()
    drives = F.conv_transpose2d(torch.ones(1, weight.shape[0], 8, 8), (weight != 0).double().float(), padding=1)
    direct = float((rec["l0"]["O"].double() * drives.double()).sum() / len(x))
    assert rows["l3_conv1"].sops == pytest.approx(direct, rel=1e-9) and direct > 0


# ------------------------------------------------------------------------------------------------- end to end
def test_residual_cnn_convert_evaluate_finetune_save_load(tmp_path):
    torch.manual_seed(7)
    ann = _randomize_bn(resnet_ann(width=4))
    x = torch.rand(64, 3, 8, 8)
    y = ann(x).argmax(1)
    snn = st.convert(ann, x, time_steps=16)
    snn.compile(optimizer="adam", lr=1e-3, loss="ce", metrics=["accuracy"])
    before = snn.evaluate(x, y, batch_size=32, enable_progress_bar=False)
    assert before["accuracy"] > 0.5
    w0 = snn.get_layer("l3_conv1").connections[0].weight.detach().clone()
    history = snn.fit(x, y, epochs=1, batch_size=32, seed=0, logger=False, enable_progress_bar=False)
    assert len(history.history["loss"]) == 1 and math.isfinite(history.history["loss"][0])
    assert not torch.equal(w0, snn.get_layer("l3_conv1").connections[0].weight)
    snn.save(tmp_path / "snn.pt")
    same = st.load_model(tmp_path / "snn.pt")
    torch.testing.assert_close(same.predict(x, batch_size=32), snn.predict(x, batch_size=32), rtol=0, atol=0)


def test_exportable_variant_goes_to_nir_and_the_default_one_is_refused(tmp_path):
    pytest.importorskip("nir", reason="NIR export needs the 'nir' package (pip install 'spaic_train[nir]')")
    torch.manual_seed(8)
    ann = _randomize_bn(resnet_ann(width=4))
    x = torch.rand(16, 3, 8, 8)
    snn = st.convert(ann, x, nir_compatible=True, time_steps=8)
    snn.to_nir(tmp_path / "snn.nir", sample_input=x[:4])  # re-imports the graph and compares every layer's spikes
    from spaic_train.nir import load

    back = load(tmp_path / "snn.nir", time_steps=8)  # a core Network (st.from_nir's Keras rebuild has no shortcuts)
    with torch.no_grad():
        torch.testing.assert_close(back(x), snn(x), rtol=0, atol=0)
    with pytest.raises(ValueError, match="soft"):
        st.convert(ann, x).to_nir(tmp_path / "soft.nir")


# ------------------------------------------------------------------------------------------------- README
def _readme_section() -> str:
    from pathlib import Path

    text = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    start = text.index("## ANN → SNN conversion\n")
    return text[start:text.index("\n## ", start + 10)]


@pytest.mark.slow  # ~20 s of CPU (a CNN trained, converted, evaluated at 5 T, fine-tuned for an epoch)
def test_readme_conversion_example_runs_as_printed(tmp_path, monkeypatch):
    pytest.importorskip("matplotlib", reason="the README example plots (pip install 'spaic_train[convert]')")
    pytest.importorskip("nir", reason="the README example exports to NIR (pip install 'spaic_train[nir]')")
    section = _readme_section()
    code = section.split("```python\n", 1)[1].split("```", 1)[0]
    monkeypatch.chdir(tmp_path)
    scope: dict = {}
    exec(compile(code, "README.md (ANN → SNN conversion)", "exec"), scope)
    rep = scope["report"]
    assert rep.ann_accuracy > 0.9 and rep.accuracy[64] > rep.ann_accuracy - 0.03
    assert (tmp_path / "conversion.png").is_file() and (tmp_path / "digits_converted.nir").is_file()
    x_test = scope["x_test"]
    torch.testing.assert_close(scope["same"].predict(x_test), scope["snn"].predict(x_test), rtol=0, atol=0)


@pytest.mark.slow
def test_readme_recipe_command_runs_as_printed(tmp_path, shared_data):
    """The ``ann2snn_cifar`` command of the README, from a folder beside ``shared/`` (its ``--data`` is relative)."""
    import os
    import shlex
    import subprocess
    import sys
    from pathlib import Path

    if not (shared_data / "cifar10-jpeg").is_dir():
        pytest.skip(f"needs the CIFAR-10 JPEG tars under {shared_data / 'cifar10-jpeg'}")
    line = next(ln.strip() for ln in _readme_section().splitlines() if "-m spaic_train.conversion.ann2snn_cifar" in ln)
    (tmp_path / "shared").symlink_to(shared_data.parent)
    (tmp_path / "run").mkdir()
    repo = Path(__file__).resolve().parents[1]
    env = dict(os.environ, PYTHONPATH=str(repo) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    args = shlex.split(line)
    assert args[0] == "python"
    res = subprocess.run([sys.executable, *args[1:]], cwd=tmp_path / "run", env=env, capture_output=True, text=True,
                         timeout=900)
    assert res.returncode == 0, res.stderr[-3000:]
    out = tmp_path / "run" / "outputs" / "ann2snn_quick"
    assert {"ann.pt", "snn_T4.pt", "snn_T8.pt", "report.md", "report.json", "report.png"} <= \
        {p.name for p in out.iterdir()}
    assert "| 8 |" in (out / "report.md").read_text()
    import spaic_train as st

    assert st.load_model(out / "snn_T8.pt").time_steps == 8  # each model runs at the T it was calibrated for


@pytest.mark.slow
def test_conversion_benchmark_quick_mode_runs(tmp_path, shared_data):
    """``python benchmarks/conversion.py --quick`` (tiny sizes), then ``--merge`` of its JSON (the README table's
    script)."""
    import subprocess
    import sys
    from pathlib import Path

    pytest.importorskip("spikingjelly", reason="the benchmark compares with SpikingJelly (pip install "
                                               "'spaic_train[bench]')")
    if not (shared_data / "cifar10-jpeg").is_dir() or not (shared_data / "mnist").is_dir():
        pytest.skip(f"needs MNIST and the CIFAR-10 JPEG tars under {shared_data}")
    script = Path(__file__).resolve().parents[1] / "benchmarks" / "conversion.py"
    out = tmp_path / "quick.json"
    res = subprocess.run([sys.executable, str(script), "--quick", "--data", str(shared_data), "--out", str(out)],
                         capture_output=True, text=True, timeout=1200)
    assert res.returncode == 0, res.stderr[-3000:]
    assert "| MNIST CNN |" in res.stdout and "SpikingJelly 2.0.0" in res.stdout
    res = subprocess.run([sys.executable, str(script), "--merge", str(out)], capture_output=True, text=True,
                         timeout=300)
    assert res.returncode == 0 and "CIFAR ResNet (QCFS L=8)" in res.stdout, res.stderr[-3000:]
