"""TensorBoard monitoring: the callback's tags and values, read back from the event files."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from lightning.pytorch.loggers import TensorBoardLogger
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from spaic_train.keras import Feedback, Sequential
from spaic_train.keras import layers as L
from spaic_train.monitoring import TensorBoardMonitor, raster_image, spike_statistics


def test_spike_statistics_and_raster():
    spikes = torch.zeros(4, 2, 3)  # [T, B, N]
    spikes[0, 0, 0] = 1
    spikes[:, 1, 1] = 1
    rate, silent, per_neuron = spike_statistics(spikes)
    assert rate == pytest.approx(5 / 24) and silent == pytest.approx(1 / 3)
    torch.testing.assert_close(per_neuron, torch.tensor([1 / 8, 4 / 8, 0.0]))
    img = raster_image(spikes[:, 1], max_neurons=2, pixels_per_step=3)
    assert img.shape == (2, 12) and img.min() >= 0 and img.max() <= 1
    big = raster_image(torch.ones(5, 1000), max_neurons=64)
    assert big.shape == (64, 20)


def _events(log_dir):
    ea = EventAccumulator(str(log_dir), size_guidance={"scalars": 0, "histograms": 0, "images": 0})
    ea.Reload()
    return ea


@pytest.fixture(scope="module")
def monitored_run(tmp_path_factory):
    """2 epochs of a small conv + feedback net on random data, with the TensorBoard logger and monitor."""
    torch.manual_seed(0)
    x = torch.rand(96, 1, 8, 8)
    y = (x.mean(dim=(1, 2, 3)) > 0.5).long() + 2 * (x[:, 0, :4].mean(dim=(1, 2)) > 0.5).long()
    model = Sequential([
        L.Input((1, 8, 8), encoder="direct"),
        L.Conv2dSyn(4, kernel_size=3, padding=1, pool="max", name="conv"),
        L.Flatten(),
        L.Full(32, name="hidden", neuron_kwargs={"v_th": 0.5}),
        L.Full(4, name="out", neuron_kwargs={"v_th": 0.25}),
    ], time_steps=6, feedback=[Feedback("out", "hidden", max_delay=2.0)])
    model.compile(optimizer="adam", lr=1e-2, loss="ce_rate", metrics=["accuracy"], scheduler="cosine")
    log_dir = tmp_path_factory.mktemp("tb")
    logger = TensorBoardLogger(save_dir=str(log_dir), name="tb", version="", default_hp_metric=False)
    monitor = TensorBoardMonitor(num_samples=8, max_raster_neurons=16)
    model.fit(x[:64], y[:64], validation_data=(x[64:], y[64:]), epochs=2, batch_size=16, logger=logger,
              callbacks=[monitor], enable_progress_bar=False, accelerator="cpu", seed=0)
    return _events(log_dir / "tb"), monitor


def test_training_curves_and_learning_rate(monitored_run):
    ea, _ = monitored_run
    scalars = set(ea.Tags()["scalars"])
    assert {"train_loss_epoch", "train_accuracy", "val_loss", "val_accuracy", "lr"} <= scalars
    for tag in ("train_accuracy", "val_accuracy"):
        values = [e.value for e in ea.Scalars(tag)]
        assert len(values) == 2 and all(0.0 <= v <= 1.0 for v in values)
    assert all(np.isfinite(e.value) and e.value > 0 for e in ea.Scalars("val_loss"))
    lrs = [e.value for e in ea.Scalars("lr")]
    assert lrs[0] == pytest.approx(1e-2) and lrs[-1] < lrs[0]  # cosine decay


def test_firing_rates_silent_fractions_and_histograms(monitored_run):
    ea, _ = monitored_run
    tags = ea.Tags()
    for layer in ("conv", "hidden", "out"):
        rates = [e.value for e in ea.Scalars(f"spikes/firing_rate/{layer}")]
        silent = [e.value for e in ea.Scalars(f"spikes/silent_fraction/{layer}")]
        assert len(rates) == 2 and len(silent) == 2  # once per epoch
        assert all(0.0 <= r <= 1.0 for r in rates) and all(0.0 <= s <= 1.0 for s in silent)
        assert max(rates) > 0.0 and min(silent) < 1.0  # the net is alive
        assert f"membrane/{layer}" in tags["histograms"]
        h = ea.Histograms(f"membrane/{layer}")[-1].histogram_value
        assert h.num > 0 and np.isfinite(h.min) and np.isfinite(h.max)
        assert f"spikes/firing_rate_hist/{layer}" in tags["histograms"]
        hr = ea.Histograms(f"spikes/firing_rate_hist/{layer}")[-1].histogram_value
        assert 0.0 <= hr.min <= hr.max <= 1.0
    weights = [t for t in tags["histograms"] if t.startswith("weights/")]
    assert {"weights/input_to_conv", "weights/hidden_to_out", "weights/fb_out_to_hidden"} <= set(weights)
    # the input's spikes are data, not a layer
    assert not any(t.endswith("/input") for t in tags["scalars"])


def test_spike_raster_image_per_epoch(monitored_run):
    ea, monitor = monitored_run
    images = ea.Images("spike_raster/hidden")
    assert len(images) == 2
    assert images[-1].height == 16 and images[-1].width == 6 * monitor.pixels_per_step
    assert monitor.sample is not None and monitor.sample.shape[0] == 8  # the fixed validation sample
    assert {"spike_raster/conv", "spike_raster/out"} <= set(ea.Tags()["images"])


def test_monitor_without_tensorboard_logger_is_a_no_op(tmp_path):
    model = Sequential([L.Input((4,)), L.Full(3, name="out")], time_steps=3)
    model.compile(optimizer="adam", lr=1e-2, loss="ce_rate")
    x, y = torch.rand(16, 4), torch.randint(0, 3, (16,))
    model.fit(x, y, epochs=1, batch_size=8, logger=False, callbacks=[TensorBoardMonitor()],
              enable_progress_bar=False, accelerator="cpu", log_dir=str(tmp_path))
    assert not list(tmp_path.rglob("events.out.tfevents.*"))


@pytest.mark.parametrize("kwargs", [{"num_samples": 0}, {"every_n_epochs": 0}, {"raster_sample": -1}])
def test_monitor_rejects_bad_options(kwargs):
    with pytest.raises(ValueError, match="monitor"):
        TensorBoardMonitor(**kwargs)
