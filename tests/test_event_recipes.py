"""The event-data recipes: each one's architecture against the published model (layer shapes and trainable
parameter count computed from the paper's architecture, or SpikingJelly's implementation of it), and a CPU smoke
run of each on tiny files in its release's on-disk format."""

from __future__ import annotations

import json
import math

import pytest
import torch
from test_cli import composed

from spaic_train.cli import build_datamodule_from_config, build_model, run

pytest.importorskip("tonic", reason="event data needs the 'events' extra: pip install 'spaic_train[events]'")
pytest.importorskip("h5py", reason="event data needs the 'events' extra: pip install 'spaic_train[events]'")

from event_files import make_cifar10_dvs, make_gesture, make_shd  # noqa: E402


def _trainable(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters() if p.requires_grad)


def _shapes(model) -> list:
    return [layer.output_shape for layer in model.layers if type(layer).__name__ in ("Conv2dSyn", "Full")]


@pytest.mark.parametrize("recipe, hidden, classes, paper_millions", [("shd", 256, 20, 0.2), ("ssc", 512, 35, 0.7)])
def test_dcls_delays_recipes_have_the_papers_parameter_count(recipe, hidden, classes, paper_millions, tmp_path):
    cfg = composed(f"recipe={recipe}", f"paths.data={tmp_path}")
    dm = build_datamodule_from_config(cfg.data)
    assert dm.input_shape == (140,) and cfg.model.dt == cfg.data.bin_ms == 10.0
    model = build_model(cfg.model, dm.input_shape)
    # DCLS-Delays (ICLR 2024): 140 -> hidden -> hidden -> classes, no biases; every synapse has a weight and a
    # learned delay (one DCLS position per weight); the two hidden layers have batch norm (scale and shift)
    layers = [(140, hidden), (hidden, hidden), (hidden, classes)]
    paper = sum(2 * i * o for i, o in layers) + 2 * 2 * hidden
    assert _trainable(model) == paper == {"shd": 214_016, "ssc": 705_536}[recipe]
    assert round(paper / 1e6, 1) == paper_millions  # the paper's table: 0.2M (SHD), 0.7M (SSC)
    assert _shapes(model) == [(hidden,), (hidden,), (classes,)]
    conns = [m for m in model.modules() if type(m).__name__ == "Connection"]
    assert all(c.learn_delay and c.delay.shape == c.weight.shape for c in conns) and len(conns) == 3
    assert all(float(c.delay.detach().max()) <= 250.0 for c in conns)


@pytest.mark.parametrize("recipe, net, blocks, classes, pooled", [
    ("dvs_gesture", "DVSGestureNet", 5, 11, 4), ("cifar10_dvs", "CIFAR10DVSNet", 4, 10, 8)])
def test_plif_dvs_recipes_build_the_papers_networks(recipe, net, blocks, classes, pooled, tmp_path):
    sj_model = pytest.importorskip("spikingjelly.activation_based.model.parametric_lif_net",
                                   reason="the reference network needs the 'peers' extra")
    from spikingjelly.activation_based import neuron

    cfg = composed(f"recipe={recipe}", f"paths.data={tmp_path}")
    assert cfg.data.time_steps == 20 and cfg.model.vars.neuron == "plif"
    dm = build_datamodule_from_config(cfg.data)
    assert dm.input_shape == (2, 128, 128) and dm.num_classes == classes
    model = build_model(cfg.model, dm.input_shape)
    reference = getattr(sj_model, net)(channels=128, spiking_neuron=neuron.ParametricLIFNode)
    voting_layer = 512 * classes * 10 + classes * 10 + 1  # fc 512 -> 10·classes, bias, its PLIF's learnable tau
    readout = 512 * classes + classes                      # ours: fc 512 -> classes, bias, non-spiking
    assert _trainable(model) == _trainable(reference) - voting_layer + readout
    size = [128 // 2 ** k for k in range(blocks)]
    assert _shapes(model) == [(128, s, s) for s in size] + [(512,), (classes,)]
    assert 128 * pooled * pooled == model.layers[[type(m).__name__ for m in model.layers].index("Full")].connections[
        0].weight.shape[1]


def _smoke(recipe: str, root, tmp_path, *overrides):
    cfg = composed(f"recipe={recipe}", f"data.root={root}", f"data.cache_dir={tmp_path / 'cache'}",
                   "data.batch_size=2", "trainer.max_epochs=1", "trainer.limit_train_batches=2",
                   "trainer.limit_val_batches=1", "trainer.limit_test_batches=1", "trainer.accelerator=cpu",
                   "trainer.enable_progress_bar=false", "trainer.checkpoint=false", "trainer.logger=none",
                   "summary=false", *overrides)
    metrics = run(cfg, tmp_path / "run")
    assert math.isfinite(metrics["loss"]) and math.isfinite(metrics["test_loss"]) and metrics["epochs"] == 1
    assert 0.0 <= metrics["test_accuracy"] <= 1.0
    written = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert written["test_loss"] == metrics["test_loss"]
    assert written["split_hash"] == build_datamodule_from_config(cfg.data).split_hash()  # the run records its split
    return metrics


@pytest.mark.parametrize("recipe", ["shd", "ssc"])
def test_dcls_recipe_smoke_run_on_hdf5_files(recipe, tmp_path):
    partitions = ("train", "test") if recipe == "shd" else ("train", "valid", "test")
    make_shd(tmp_path / "data", recipe, partitions, n=6, classes=20 if recipe == "shd" else 35)
    _smoke(recipe, tmp_path / "data", tmp_path, "data.time_steps=30", "data.val_fraction=0.34")


def test_dvs_gesture_recipe_smoke_run_on_aedat31_trials(tmp_path):
    make_gesture(tmp_path / "data")
    _smoke("dvs_gesture", tmp_path / "data", tmp_path, "data.time_steps=3", "data.val_fraction=0.34",
           "model.vars.width=4", "model.vars.hidden=16", "data.flip_lr=0.5", "data.translate_px=4")


def test_cifar10_dvs_recipe_smoke_run_on_jaer_files(tmp_path):
    make_cifar10_dvs(tmp_path / "data", indices=(0, 100, 101))
    _smoke("cifar10_dvs", tmp_path / "data", tmp_path, "data.time_steps=3", "data.val_fraction=0.2",
           "model.vars.width=4", "model.vars.hidden=16")


def test_full_layer_batchnorm_is_torch_batchnorm_over_time_and_batch():
    """``Full(batchnorm=True)`` (DCLS-Delays' Dcls1d → BatchNorm1d) normalises the synaptic current with the
    statistics of all T·B samples, exactly torch's BatchNorm1d on ``[T*B, units]``; the config round-trips."""
    from torch import nn

    from spaic_train.keras import Model
    from spaic_train.keras.layers import Full, Input

    torch.manual_seed(0)
    x = Input((6,), encoder="passthrough")
    layer = Full(4, batchnorm=True, name="h")
    model = Model(x, layer(x))
    model.train()
    seq = torch.randn(3, 5, 6) * torch.tensor([0.5, 1.0, 2.0]).view(3, 1, 1)
    with model.record(("Isyn",)) as rec:
        model(seq)
    ref_bn = nn.BatchNorm1d(4)
    ref = ref_bn(seq.flatten(0, 1) @ layer.connections[0].weight.T).view(3, 5, 4)
    torch.testing.assert_close(rec["h"]["Isyn"], ref, atol=1e-5, rtol=0)
    assert Full.from_config(layer.get_config()).batchnorm is True
    with pytest.raises(TypeError, match="batchnorm must be a bool or a dict"):
        Full(4, batchnorm="yes")
