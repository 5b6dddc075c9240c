"""Keras-named callbacks (``st.callbacks``), a user's own Lightning ``ModelCheckpoint`` in ``fit``, and the
``History`` conveniences (epoch times, ``to_dataframe``, ``plot``).

Most cases train a scripted module whose validation loss of each epoch is given and whose one weight ``w`` grows
by exactly 1 per epoch (one SGD step of ``lr=1`` on ``loss = -w``), so the epoch a callback stops at, saves or
restores is known in advance."""

from __future__ import annotations

import math
import sys
import time

import lightning.pytorch as pl
import numpy as np
import pytest
import torch
from extras import require
from lightning.pytorch.loggers import CSVLogger
from torch import nn

import spaic_train as st
from spaic_train.training import History, fit

ONE_BATCH = dict(batch_size=4, logger=False, enable_progress_bar=False, accelerator="cpu")


class Scripted(pl.LightningModule):
    """``w`` is ``e + 1`` after epoch ``e``; epoch ``e`` logs ``val_loss = val_losses[e]``."""

    def __init__(self, val_losses: list[float]) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.zeros(()))
        self.val_losses = val_losses

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.w

    def training_step(self, batch, batch_idx):
        loss = -self.w
        self.log("train_loss", loss, on_step=False, on_epoch=True)
        return loss

    def validation_step(self, batch, batch_idx):
        self.log("val_loss", torch.tensor(float(self.val_losses[self.current_epoch])))

    def configure_optimizers(self):
        return torch.optim.SGD([self.w], lr=1.0)


def scripted_fit(val_losses, callbacks, epochs=None, **kwargs):
    x, y = torch.zeros(4, 1), torch.zeros(4, dtype=torch.long)
    module = Scripted(val_losses)
    history = fit(module, x, y, epochs=epochs or len(val_losses), validation_data=(x, y), callbacks=callbacks,
                  **{**ONE_BATCH, **kwargs})
    return module, history


# ---------------------------------------------------------------------------------------------- EarlyStopping
def test_early_stopping_stops_after_patience_epochs_without_improvement():
    # best at epoch 1 (3.0); epochs 2, 3 do not improve on it: patience 2 stops at the end of epoch 3
    module, history = scripted_fit([5.0, 3.0, 3.0, 3.5, 1.0, 1.0], [st.callbacks.EarlyStopping(patience=2)])
    assert history.epoch == [0, 1, 2, 3]
    assert history.history["val_loss"] == [5.0, 3.0, 3.0, 3.5]
    assert float(module.w.detach()) == 4.0  # the last epoch's weights: nothing restored by default


def test_early_stopping_min_delta_and_restore_best_weights():
    # improvements must exceed 0.5: 4.0 (epoch 1) is one, 3.6 and 3.55 are not -> patience 2 stops after epoch 3
    stop = st.callbacks.EarlyStopping(monitor="val_loss", patience=2, min_delta=0.5, restore_best_weights=True)
    module, history = scripted_fit([5.0, 4.0, 3.6, 3.55, 0.0], [stop])
    assert history.epoch == [0, 1, 2, 3] and stop.best_epoch == 1
    assert float(module.w.detach()) == 2.0  # the weights after epoch 1


def test_early_stopping_mode_max_and_baseline():
    # maximise; nothing beats the baseline 10 -> patience 0 stops after the first epoch
    module, history = scripted_fit([1.0, 2.0, 3.0], [st.callbacks.EarlyStopping(mode="max", baseline=10.0)])
    assert history.epoch == [0]
    # without the baseline the values rise every epoch: no stop, all 3 epochs
    module, history = scripted_fit([1.0, 2.0, 3.0], [st.callbacks.EarlyStopping(mode="max", patience=0)])
    assert history.epoch == [0, 1, 2]


def test_early_stopping_on_a_keras_model():
    """``model.fit(..., callbacks=[st.callbacks.EarlyStopping(...)])`` with History names: ``val_accuracy``
    (mode 'auto' → max) never reaching the baseline of 1.01 stops the 5-epoch fit after its first epoch."""
    from sklearn.datasets import load_digits

    d = load_digits()
    x, y = (d.data[:200] / 16.0).astype(np.float32), d.target[:200]
    torch.manual_seed(0)
    model = st.keras.Sequential([st.keras.layers.Input((64,)), st.keras.layers.Full(10)], time_steps=2)
    model.compile(optimizer="adam", lr=1e-2, loss="ce_rate")
    history = model.fit(x, y, epochs=5, batch_size=50, validation_split=0.25, logger=False,
                        enable_progress_bar=False, callbacks=[st.callbacks.EarlyStopping("val_accuracy",
                                                                                         baseline=1.01)])
    assert history.epoch == [0]


@pytest.mark.parametrize("kwargs, match", [
    (dict(monitor="val_spikes"), "mode='auto' cannot tell.*val_spikes.*mode='min' or mode='max'"),
    (dict(patience=-1), "patience must be an int >= 0, got -1"),
    (dict(min_delta=-0.1), "min_delta must be a number >= 0, got -0.1"),
    (dict(mode="maximum"), "mode must be one of 'auto', 'min', 'max', got 'maximum'"),
    (dict(monitor=""), "monitor must be a metric name"),
])
def test_early_stopping_rejects_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=f"EarlyStopping: {match}"):
        st.callbacks.EarlyStopping(**kwargs)


# ---------------------------------------------------------------------------------------------- ModelCheckpoint
def test_model_checkpoint_save_best_only_keeps_the_best_epoch(tmp_path):
    path = tmp_path / "best.ckpt"
    scripted_fit([5.0, 2.0, 4.0, 3.0], [st.callbacks.ModelCheckpoint(path, save_best_only=True)])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["best.ckpt"]
    saved = torch.load(path, weights_only=True)
    assert saved["epoch"] == 1 and float(saved["state_dict"]["w"]) == 2.0


def test_model_checkpoint_keras_placeholders_save_every_epoch(tmp_path):
    """``{epoch}`` counts from 1 as in Keras, metrics by History name (``loss`` is the logged ``train_loss``)."""
    cb = st.callbacks.ModelCheckpoint(tmp_path / "w-{epoch:02d}-{val_loss:.1f}-{loss:.0f}.ckpt")
    scripted_fit([5.0, 2.0, 4.0], [cb])
    # train loss of epoch e: -w before its step = -e
    assert sorted(p.name for p in tmp_path.iterdir()) == ["w-01-5.0-0.ckpt", "w-02-2.0--1.ckpt",
                                                          "w-03-4.0--2.ckpt"]


def test_model_checkpoint_rejects_bad_arguments(tmp_path):
    with pytest.raises(ValueError, match=r"ModelCheckpoint: filepath must end in '\.ckpt'.*'m\.keras'"):
        st.callbacks.ModelCheckpoint("m.keras")
    with pytest.raises(ValueError, match="ModelCheckpoint: save_freq must be 'epoch' or a positive number"):
        st.callbacks.ModelCheckpoint(tmp_path / "m.ckpt", save_freq=0)
    with pytest.raises(ValueError, match="ModelCheckpoint: mode='auto' cannot tell"):
        st.callbacks.ModelCheckpoint(tmp_path / "m.ckpt", monitor="rate", save_best_only=True)


def test_a_users_lightning_model_checkpoint_just_works(tmp_path):
    """Issue 25, item 8: ``fit(callbacks=[lightning ModelCheckpoint(...)])`` without ``checkpoint_dir`` used to
    fail with "enable_checkpointing=False but found ModelCheckpoint"."""
    cb = pl.callbacks.ModelCheckpoint(dirpath=tmp_path, filename="e{epoch}", monitor="val_loss", save_top_k=1,
                                      auto_insert_metric_name=False)
    scripted_fit([3.0, 1.0, 2.0], [cb])
    assert [p.name for p in tmp_path.iterdir()] == ["e1.ckpt"] and cb.best_model_score == 1.0


# ---------------------------------------------------------------------------------------------- LR monitor
def test_learning_rate_monitor_logs_the_rate_each_epoch(tmp_path):
    module, history = scripted_fit([1.0, 1.0], [st.callbacks.LearningRateMonitor()],
                                   logger=CSVLogger(tmp_path, name="csv", version=""))
    rows = (tmp_path / "csv" / "metrics.csv").read_text().splitlines()
    col = rows[0].split(",").index("lr-SGD")
    assert [float(r.split(",")[col]) for r in rows[1:] if r.split(",")[col]] == [1.0, 1.0]


# ---------------------------------------------------------------------------------------------- History
def test_history_records_the_seconds_of_each_epoch():
    t0 = time.perf_counter()
    _, history = scripted_fit([1.0, 1.0, 1.0], [])
    wall = time.perf_counter() - t0
    assert len(history.epoch_time) == 3 and all(0.0 < t for t in history.epoch_time)
    assert sum(history.epoch_time) <= wall
    assert "epoch_time" not in history.history  # not a metric: differs between processes and reruns


def test_history_state_without_epoch_times_loads():
    h = History()
    h.load_state_dict({"history": {"loss": [2.0, 1.0]}, "epoch": [0, 1]})  # a checkpoint of an older version
    assert h.history == {"loss": [2.0, 1.0]} and all(math.isnan(t) for t in h.epoch_time) and len(h.epoch_time) == 2
    h.load_state_dict(h.state_dict())
    assert len(h.epoch_time) == 2


def test_history_to_dataframe_is_what_keras_users_build():
    pd = require("pandas", "plot")
    _, history = scripted_fit([3.0, 2.0], [])
    df = history.to_dataframe()
    expected = pd.DataFrame(history.history, index=pd.Index([0, 1], name="epoch"))
    pd.testing.assert_frame_equal(df.drop(columns="epoch_time"), expected)
    assert df["epoch_time"].tolist() == history.epoch_time and df["val_loss"].tolist() == [3.0, 2.0]


def test_history_plot_draws_each_key_with_its_validation_curve():
    require("matplotlib", "plot")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    _, history = scripted_fit([3.0, 2.0, 2.5], [])
    fig = history.plot()
    try:
        panels = {ax.get_ylabel(): ax for ax in fig.axes}
        assert set(panels) == {"loss"}  # loss with val_loss
        lines = {line.get_label(): line for line in panels["loss"].get_lines()}
        assert lines["val_loss"].get_ydata().tolist() == [3.0, 2.0, 2.5]
        assert lines["loss"].get_ydata().tolist() == history.history["loss"] == [0.0, -1.0, -2.0]
        assert lines["loss"].get_xdata().tolist() == [0, 1, 2]
    finally:
        plt.close(fig)
    with pytest.raises(ValueError, match=r"History.plot: no recorded key 'accuracy'"):
        history.plot(["accuracy"])


def test_history_conveniences_name_the_missing_package(monkeypatch):
    history = History()
    history.record(0, {"loss": 1.0}, 0.5)
    monkeypatch.setitem(sys.modules, "pandas", None)
    with pytest.raises(ImportError, match=r"History.to_dataframe needs pandas: pip install pandas"):
        history.to_dataframe()
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    monkeypatch.setitem(sys.modules, "matplotlib.pyplot", None)
    with pytest.raises(ImportError, match=r"History.plot needs matplotlib: pip install matplotlib"):
        history.plot()
