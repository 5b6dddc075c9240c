"""Numerical faults: NaN/Inf loss or gradient → NonFiniteError naming step/loss/layer, or skipped steps with
``on_nan='skip'``; dead-network warning."""

from __future__ import annotations

import warnings

import lightning.pytorch as pl
import pytest
import torch
from torch import nn

import spaic_train as spaic
from spaic_train.training import SNNModule, fit
from spaic_train.training.guards import NonFiniteError

QUIET = dict(enable_progress_bar=False, logger=False, accelerator="cpu", devices=1)


def data(n=32, d=8, c=3):
    g = torch.Generator().manual_seed(0)
    return torch.rand(n, d, generator=g), torch.randint(0, c, (n,), generator=g)


class Poison(pl.Callback):
    """Sets ``param`` to NaN at the start of global step ``at``."""

    def __init__(self, at, param="network.fc.weight"):
        self.at, self.param = at, param

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if trainer.global_step == self.at:
            with torch.no_grad():
                dict(pl_module.named_parameters())[self.param][0, 0] = float("nan")


class Blowup(nn.Module):
    """Finite weights, but its activation overflows to Inf when ``armed``."""

    def __init__(self):
        super().__init__()
        self.armed = False

    def forward(self, x):
        return x * 1e38 * 1e38 if self.armed else x


class MLP(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(8, 3)
        self.boom = Blowup()

    def forward(self, x):
        return self.boom(self.fc(x))


class _NaNGrad(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        return x.clone()

    @staticmethod
    def backward(ctx, g):
        return g * float("nan")


class GradNet(MLP):
    bad = False

    def forward(self, x):
        out = self.fc(x)
        return _NaNGrad.apply(out) if self.bad else out


def test_nan_weight_raises_with_step_loss_and_layer():
    x, y = data()
    with pytest.raises(NonFiniteError) as info:
        fit(SNNModule(MLP(), loss="ce", metrics=()), x, y, epochs=1, batch_size=8, callbacks=[Poison(2)], **QUIET)
    msg = str(info.value)
    assert "step 2" in msg and "nan" in msg.lower() and "network.fc.weight" in msg
    assert isinstance(info.value, FloatingPointError)


def test_inf_activation_names_the_layer():
    x, y = data()
    net = MLP()

    class Arm(pl.Callback):
        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            net.boom.armed = trainer.global_step == 1

    with pytest.raises(NonFiniteError) as info:
        fit(SNNModule(net, loss="ce", metrics=()), x, y, epochs=1, batch_size=8, callbacks=[Arm()], **QUIET)
    msg = str(info.value)
    assert "step 1" in msg and "network.boom" in msg and "activation" in msg


def test_nan_in_spaic_group_named():
    net = spaic.Network(time_steps=4)
    net.input = spaic.Encoder(shape=(8,), coding="poisson")
    net.hid = spaic.NeuronGroup(6, model="lif")
    net.out = spaic.NeuronGroup(3, model="lif")
    net.c1 = spaic.Connection(net.input, net.hid)
    net.c2 = spaic.Connection(net.hid, net.out)
    net.dec = spaic.Decoder(net.out, coding="spike_counts")
    x, y = data()
    with pytest.raises(NonFiniteError) as info:
        fit(SNNModule(net, loss="ce_count"), x, y, epochs=1, batch_size=8,
            callbacks=[Poison(1, "network.c1.weight")], **QUIET)
    msg = str(info.value)
    assert "step 1" in msg and "network.c1.weight" in msg and "'hid'" in msg


def test_nonfinite_gradient_raises():
    x, y = data()
    net = GradNet()

    class Arm(pl.Callback):
        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            net.bad = trainer.global_step == 3

    with pytest.raises(NonFiniteError, match=r"non-finite gradient at step 3.*network\.fc\.weight"):
        fit(SNNModule(net, loss="ce", metrics=()), x, y, epochs=1, batch_size=8, callbacks=[Arm()], **QUIET)


def test_skip_mode_keeps_weights_and_counts():
    x, y = data()
    net = GradNet()
    snapshots = {}

    class Arm(pl.Callback):
        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            net.bad = trainer.current_epoch == 0 and batch_idx in (1, 2)
            snapshots[(trainer.current_epoch, batch_idx, "before")] = net.fc.weight.detach().clone()

        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            snapshots[(trainer.current_epoch, batch_idx, "after")] = net.fc.weight.detach().clone()

    with pytest.warns(UserWarning, match="skipped the optimizer step"):
        h = fit(SNNModule(net, loss="ce", metrics=()), x, y, epochs=2, batch_size=8, on_nan="skip",
                callbacks=[Arm()], **QUIET)
    assert h.history["nan_skipped"] == [2.0, 0.0]
    for b in (1, 2):
        assert torch.equal(snapshots[(0, b, "before")], snapshots[(0, b, "after")])
    assert not torch.equal(snapshots[(0, 0, "before")], snapshots[(0, 0, "after")])
    assert torch.isfinite(net.fc.weight).all()


def test_skip_mode_nan_loss_keeps_epoch_loss_finite():
    x, y = data()
    calls = {"n": 0}

    def loss(out, target):
        calls["n"] += 1
        base = nn.functional.cross_entropy(out, target)
        return base * float("nan") if calls["n"] == 2 else base

    net = MLP()
    h = fit(SNNModule(net, loss=loss, metrics=()), x, y, epochs=1, batch_size=8, on_nan="skip", **QUIET)
    assert h.history["nan_skipped"] == [1.0]
    assert all(v == v for v in h.history["loss"])  # not NaN
    assert torch.isfinite(net.fc.weight).all()


def test_dead_network_warns_naming_output():
    net = spaic.Network(time_steps=3)
    net.input = spaic.Encoder(shape=(8,), coding="poisson")
    net.out = spaic.NeuronGroup(3, model="lif", v_th=1e6)
    net.c = spaic.Connection(net.input, net.out)
    net.dec = spaic.Decoder(net.out, coding="spike_counts")
    x, y = data()
    with pytest.warns(UserWarning, match=r"dead network.*NeuronGroup\('out'\)"):
        fit(SNNModule(net, loss="ce_count"), x, y, epochs=1, batch_size=16, **QUIET)


def test_live_network_does_not_warn():
    net = spaic.Network(time_steps=6)
    net.input = spaic.Encoder(shape=(8,), coding="poisson")
    net.out = spaic.NeuronGroup(3, model="lif", v_th=0.05)
    net.c = spaic.Connection(net.input, net.out, weight=torch.full((3, 8), 0.5))
    net.dec = spaic.Decoder(net.out, coding="spike_counts")
    x, y = data()
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        warnings.filterwarnings("ignore", message=r"(?!dead network).*")
        fit(SNNModule(net, loss="ce_count"), x, y, epochs=1, batch_size=16, **QUIET)
