"""Tests of spaic_train.training: losses, optimizers/schedulers, metrics, SNNModule, fit/evaluate/predict."""

from __future__ import annotations

import math

import lightning.pytorch as pl
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from sklearn.datasets import load_digits
from torch import nn
from torch.utils.data import DataLoader, Dataset, TensorDataset

from spaic_train.surrogate import get_surrogate, spike
from spaic_train.training import (
    LOSSES,
    METRICS,
    OPTIMIZERS,
    SCHEDULERS,
    History,
    SNNModule,
    build_optimizer,
    check_labels,
    evaluate,
    fit,
    get_loss,
    get_metric,
    predict,
    prepare_fit_data,
    split_validation,
)
from spaic_train.training.metrics import accuracy

T = 4
QUIET = dict(enable_progress_bar=False, logger=False, accelerator="cpu", devices=1)


# --------------------------------------------------------------------------------------------------------------
# tiny SNN stand-ins
SURROGATE = get_surrogate("fast_sigmoid", alpha=3.0)  # g'(x) = 1 / (1 + 3|x|)^2


class TinySNN(nn.Module):
    """Linear synapses into T steps of LIF (decay 0.5, threshold 1, soft reset).

    ``decoder='counts'`` → ``[B, C]`` spike counts; ``'sequence'`` → ``[T, B, C]``.  ``poisson=True`` encodes the
    input as Bernoulli spikes per step (draws from the torch RNG).
    """

    def __init__(self, n_in=64, n_out=10, steps=T, decoder="counts", poisson=False):
        super().__init__()
        self.fc = nn.Linear(n_in, n_out)
        self.num_steps = steps
        self.decoder = decoder
        self.poisson = poisson

    def forward(self, x):
        x = x.flatten(1)
        v = torch.zeros(x.shape[0], self.fc.out_features, dtype=x.dtype, device=x.device)
        out = []
        cur = None if self.poisson else self.fc(x)
        for _ in range(self.num_steps):
            i_t = self.fc((torch.rand_like(x) < x).to(x.dtype)) if self.poisson else cur
            v = 0.5 * v + i_t
            s = spike(v - 1.0, SURROGATE)
            v = v - s
            out.append(s)
        seq = torch.stack(out)
        return seq if self.decoder == "sequence" else seq.sum(0)


class ClampedNet(nn.Module):
    """Non-spiking linear classifier whose weights must stay in [-bound, bound]."""

    def __init__(self, bound=0.01):
        super().__init__()
        self.fc = nn.Linear(64, 10)
        nn.init.uniform_(self.fc.weight, -bound, bound)
        self.bound = bound
        self.calls = 0

    def forward(self, x):
        return self.fc(x.flatten(1))

    def apply_constraints(self):
        self.calls += 1
        self.fc.weight.clamp_(-self.bound, self.bound)


@pytest.fixture(scope="module")
def digits():
    d = load_digits()
    x = (d.data / 16.0).astype(np.float32)
    y = d.target.astype(np.int64)
    return x[:600], y[:600]


# --------------------------------------------------------------------------------------------------------------
# losses
@pytest.fixture
def seq():
    g = torch.Generator().manual_seed(0)
    s = (torch.rand(5, 8, 10, generator=g) < 0.3).float()
    y = torch.randint(0, 10, (8,), generator=g)
    return s, y


def test_loss_registry_names():
    assert set(LOSSES.names()) >= {"ce_rate", "ce_count", "mse_count", "tet", "mse", "ce"}
    with pytest.raises(ValueError, match=r"valid loss functions are: ce \(or cross_entropy, crossentropy\), ce_count"):
        get_loss("ce_rat3x")


def test_ce_rate_and_ce_count(seq):
    s, y = seq
    assert torch.allclose(get_loss("ce_rate")(s, y), F.cross_entropy(s.mean(0), y))
    assert torch.allclose(get_loss("ce_rate", scale=3.0)(s, y), F.cross_entropy(3.0 * s.mean(0), y))
    assert torch.allclose(get_loss("ce_rate")(s.mean(0), y), F.cross_entropy(s.mean(0), y))  # [B, C] = rates
    assert torch.allclose(get_loss("ce_count")(s, y), F.cross_entropy(s.sum(0), y))
    assert torch.allclose(get_loss("ce_count")(s.sum(0), y), F.cross_entropy(s.sum(0), y))


def test_mse_count(seq):
    s, y = seq
    steps = s.shape[0]
    onehot = F.one_hot(y, 10).float()
    goal = onehot * steps * 0.8 + (1 - onehot) * steps * 0.1
    ref = F.mse_loss(s.sum(0), goal)
    loss = get_loss("mse_count", correct_rate=0.8, incorrect_rate=0.1)
    assert torch.allclose(loss(s, y), ref)
    # [B, C] counts need num_steps
    with pytest.raises(ValueError, match="num_steps"):
        loss(s.sum(0), y)
    loss2 = get_loss("mse_count", correct_rate=0.8, incorrect_rate=0.1, num_steps=steps)
    assert torch.allclose(loss2(s.sum(0), y), ref)
    loss3 = get_loss("mse_count", correct_rate=0.8, incorrect_rate=0.1, divide_by_steps=True)
    assert torch.allclose(loss3(s, y), ref / steps)
    # default target: T for the true class, 0 elsewhere
    assert torch.allclose(get_loss("mse_count")(s, y), F.mse_loss(s.sum(0), onehot * steps))


def test_tet(seq):
    s, y = seq
    logits = s * 2.0 + torch.randn_like(s)
    ref = torch.stack([F.cross_entropy(logits[t], y) for t in range(s.shape[0])]).mean()
    assert torch.allclose(get_loss("tet")(logits, y), ref, atol=1e-6)
    lam = 0.05
    ref2 = (1 - lam) * ref + lam * F.mse_loss(logits, torch.ones_like(logits))
    assert torch.allclose(get_loss("tet", lamb=lam)(logits, y), ref2, atol=1e-6)
    with pytest.raises(ValueError, match="sequence"):
        get_loss("tet")(logits.mean(0), y)


def test_mse_ce_callable_and_targets(seq):
    s, y = seq
    onehot = F.one_hot(y, 10).float()
    assert torch.allclose(get_loss("mse")(s, y), F.mse_loss(s.mean(0), onehot))
    assert torch.allclose(get_loss("mse")(s.mean(0), onehot), F.mse_loss(s.mean(0), onehot))
    out = torch.randn(8, 10)
    assert torch.allclose(get_loss("ce")(out, y), F.cross_entropy(out, y))
    soft = torch.softmax(torch.randn(8, 10), -1)
    assert torch.allclose(get_loss("ce")(out, soft), F.cross_entropy(out, soft))

    def my_loss(o, t):
        return (o**2).mean()

    assert get_loss(my_loss) is my_loss
    assert isinstance(get_loss(nn.CrossEntropyLoss), nn.CrossEntropyLoss)
    with pytest.raises(TypeError):
        get_loss(3)
    with pytest.raises(ValueError, match="class indices"):
        get_loss("ce")(out, torch.full((8,), 10))
    # bf16 outputs are computed in float32
    assert get_loss("ce_rate")(s.bfloat16(), y).dtype == torch.float32


def test_metrics(seq):
    s, y = seq
    out = torch.randn(8, 10)
    assert torch.allclose(get_metric("accuracy")(out, y), (out.argmax(-1) == y).float().mean())
    assert torch.allclose(get_metric("accuracy")(s, y), (s.mean(0).argmax(-1) == y).float().mean())
    top5 = out.topk(5, -1).indices
    assert torch.allclose(get_metric("top5")(out, y), (top5 == y[:, None]).any(-1).float().mean())
    assert get_metric("top5_accuracy")(out[:, :3], y.clamp(max=2)) == 1.0  # fewer classes than k
    assert set(METRICS.names()) >= {"accuracy", "top5_accuracy"}
    with pytest.raises(ValueError, match="valid metrics"):
        get_metric("acuracy")


# --------------------------------------------------------------------------------------------------------------
# optimizers and schedulers
def test_optimizer_resolution():
    params = [nn.Parameter(torch.zeros(3))]
    opt = build_optimizer("sgd", params, lr=0.1, momentum=0.9)
    assert isinstance(opt, torch.optim.SGD) and opt.defaults["momentum"] == 0.9 and opt.defaults["lr"] == 0.1
    assert isinstance(build_optimizer("adamw", params, lr=1e-2, weight_decay=0.1), torch.optim.AdamW)
    assert isinstance(build_optimizer("RMSprop", params), torch.optim.RMSprop)
    assert isinstance(build_optimizer(torch.optim.Adagrad, params, lr=0.5), torch.optim.Adagrad)
    opt = build_optimizer(lambda p: torch.optim.SGD(p, lr=0.3), params)
    assert opt.defaults["lr"] == 0.3
    assert set(OPTIMIZERS.names()) == {"adam", "adamw", "rmsprop", "sgd"}
    with pytest.raises(ValueError, match="valid optimizers are: adam, adamw, rmsprop, sgd"):
        build_optimizer("adm", params)
    with pytest.raises(TypeError):
        SNNModule(nn.Linear(2, 2), optimizer=torch.optim.SGD(params, lr=0.1))


def test_unknown_names_fail_at_construction():
    net = nn.Linear(64, 10)
    with pytest.raises(ValueError, match=r"valid schedulers are: constant \(or none\), cosine"):
        SNNModule(net, scheduler="cosin")
    with pytest.raises(ValueError, match="valid optimizers"):
        SNNModule(net, optimizer="nadam2")
    with pytest.raises(ValueError, match="valid loss functions"):
        SNNModule(net, loss="foo")
    with pytest.raises(ValueError, match="valid metrics"):
        SNNModule(net, metrics=["accurcy"])
    assert set(SCHEDULERS.names()) == {"constant", "cosine", "exponential", "onecycle", "plateau", "step"}


@pytest.mark.parametrize(
    "sched,kwargs",
    [("cosine", {}), ("step", {"step_size": 1, "gamma": 0.5}), ("exponential", {"gamma": 0.5}), ("onecycle", {}),
     ("plateau", {}), (None, {}), (torch.optim.lr_scheduler.ExponentialLR, {"gamma": 0.5})],
)
def test_schedulers_run(digits, sched, kwargs):
    x, y = digits
    module = SNNModule(nn.Linear(64, 10), loss="ce", lr=0.1, scheduler=sched, scheduler_kwargs=kwargs)
    h = fit(module, x[:128], y[:128], epochs=3, batch_size=64, validation_split=0.25, **QUIET)
    lr = h.history["lr"]
    assert len(lr) == 3 and all(math.isfinite(v) for v in lr)
    if sched in ("exponential", "step") or sched is torch.optim.lr_scheduler.ExponentialLR:
        assert lr == pytest.approx([0.1, 0.05, 0.025])
    if sched == "cosine":  # T_max = max_epochs = 3
        expected = [0.1 * (1 + math.cos(math.pi * e / 3)) / 2 for e in range(3)]
        assert lr == pytest.approx(expected)
    if sched is None:
        assert lr == pytest.approx([0.1] * 3)


def test_plateau_without_validation_monitors_train_loss(digits):
    x, y = digits
    module = SNNModule(nn.Linear(64, 10), loss="ce", scheduler="plateau", scheduler_kwargs={"patience": 0})
    h = fit(module, x[:64], y[:64], epochs=2, batch_size=32, **QUIET)
    assert "val_loss" not in h.history and len(h.history["loss"]) == 2


# --------------------------------------------------------------------------------------------------------------
# data conversion
def test_validation_split_sizes():
    x = np.arange(101 * 2, dtype=np.float32).reshape(101, 2)
    y = np.arange(101) % 3
    data = prepare_fit_data(x, y, batch_size=10, validation_split=0.2)
    assert len(data.train.dataset) == 80 and len(data.val.dataset) == 21  # Keras: int(101 * 0.8) = 80
    val_x = torch.cat([b[0] for b in data.val])
    assert torch.equal(val_x, torch.from_numpy(x[80:]))  # the last samples, in order
    tr, va = split_validation(TensorDataset(torch.from_numpy(x)), 0.2, mode="random", seed=3)
    tr2, va2 = split_validation(TensorDataset(torch.from_numpy(x)), 0.2, mode="random", seed=3)
    assert list(va.indices) == list(va2.indices) and len(tr) == 80 and len(va) == 21
    assert sorted(list(tr.indices) + list(va.indices)) == list(range(101))
    with pytest.raises(ValueError):
        prepare_fit_data(x[:1], y[:1], validation_split=0.5)  # empty train part
    with pytest.raises(ValueError, match="split"):
        prepare_fit_data(DataLoader(TensorDataset(torch.zeros(4, 2), torch.zeros(4))), validation_split=0.5)


def test_data_errors(digits):
    x, y = digits
    module = SNNModule(nn.Linear(64, 10), loss="ce")
    with pytest.raises(ValueError, match="empty"):
        fit(module, np.zeros((0, 64), np.float32), np.zeros(0, np.int64), **QUIET)
    with pytest.raises(ValueError, match="empty"):
        fit(module, TensorDataset(torch.zeros(0, 64), torch.zeros(0)), **QUIET)
    with pytest.raises(ValueError, match="samples"):
        fit(module, x[:10], y[:9], **QUIET)
    with pytest.raises(ValueError, match="targets"):
        fit(module, x[:10], **QUIET)
    with pytest.raises(ValueError, match="validation_data"):
        fit(module, x[:10], y[:10], validation_data=(x[:4], y[:4], y[:4]), **QUIET)
    with pytest.raises(ValueError, match="class indices"):  # labels out of range for 10 outputs, first batch
        fit(module, x[:10], y[:10] + 10, **QUIET)
    with pytest.raises(ValueError, match="class indices"):
        check_labels([0, 3, 12], 10)
    check_labels([0, 3, 9], 10)


class _DigitsDataset(Dataset):
    def __init__(self, x, y):
        self.x, self.y = torch.as_tensor(x), torch.as_tensor(y)

    def __len__(self):
        return len(self.x)

    def __getitem__(self, i):
        return self.x[i], self.y[i]


class _DigitsDM(pl.LightningDataModule):
    def __init__(self, x, y):
        super().__init__()
        self.x, self.y = x, y

    def train_dataloader(self):
        return DataLoader(_DigitsDataset(self.x[:192], self.y[:192]), batch_size=64, shuffle=True)

    def val_dataloader(self):
        return DataLoader(_DigitsDataset(self.x[192:256], self.y[192:256]), batch_size=64)

    def test_dataloader(self):
        return self.val_dataloader()

    def predict_dataloader(self):
        return self.val_dataloader()


@pytest.mark.parametrize("kind", ["tensor", "numpy", "dataset", "dataloader", "datamodule"])
def test_fit_input_kinds(digits, kind):
    x, y = digits
    x, y = x[:256], y[:256]
    module = SNNModule(TinySNN(), loss="ce_count", lr=0.05)
    if kind == "tensor":
        h = fit(module, torch.from_numpy(x), torch.from_numpy(y), epochs=2, batch_size=64,
                validation_data=(torch.from_numpy(x[:64]), torch.from_numpy(y[:64])), **QUIET)
    elif kind == "numpy":
        h = fit(module, x.astype(np.float64), y.astype(np.int32), epochs=2, batch_size=64, validation_split=0.25,
                **QUIET)
    elif kind == "dataset":
        h = fit(module, _DigitsDataset(x, y), epochs=2, batch_size=64, validation_data=_DigitsDataset(x[:64], y[:64]),
                **QUIET)
    elif kind == "dataloader":
        h = fit(module, DataLoader(_DigitsDataset(x, y), batch_size=64, shuffle=True), epochs=2,
                validation_data=DataLoader(_DigitsDataset(x[:64], y[:64]), batch_size=32), **QUIET)
    else:
        h = fit(module, _DigitsDM(x, y), epochs=2, **QUIET)
    assert isinstance(h, History) and h.epoch == [0, 1]
    for key in ("loss", "accuracy", "val_loss", "val_accuracy", "lr"):
        assert len(h.history[key]) == 2 and all(math.isfinite(v) for v in h.history[key]), key
    if kind == "datamodule":
        res = evaluate(module, _DigitsDM(x, y))
        assert set(res) == {"loss", "accuracy"}
        assert predict(module, _DigitsDM(x, y)).shape == (64, 10)


# --------------------------------------------------------------------------------------------------------------
# History, evaluate, predict
def test_history_and_learning(digits, tmp_path):
    x, y = digits
    torch.manual_seed(0)
    module = SNNModule(TinySNN(), loss="ce_count", lr=0.05)
    h = fit(module, x, y, epochs=5, batch_size=32, validation_split=0.2, log_dir=str(tmp_path / "runs"),
            enable_progress_bar=False, accelerator="cpu")
    assert set(h.history) == {"loss", "accuracy", "val_loss", "val_accuracy", "lr"}
    assert h.epoch == list(range(5)) and all(len(v) == 5 for v in h.history.values())
    assert h.history["loss"][-1] < h.history["loss"][0]
    assert h.history["val_accuracy"][-1] > 0.3  # chance is 0.1
    assert h.model is module
    assert any((tmp_path / "runs").rglob("events.out.tfevents.*"))  # TensorBoard logger by default
    # the epoch accuracy is the sample-weighted mean: compare with a direct computation on the val part
    res = evaluate(module, x[480:], y[480:], batch_size=7)
    out = predict(module, x[480:], batch_size=7)
    assert out.shape == (120, 10)
    direct = accuracy(out, torch.from_numpy(y[480:])).item()  # one call over all 120 samples
    assert res["accuracy"] == pytest.approx(direct, abs=1e-6)
    assert res["loss"] == pytest.approx(F.cross_entropy(out, torch.from_numpy(y[480:])).item(), rel=1e-5)


def test_sequence_output_predict_and_tet(digits):
    x, y = digits
    module = SNNModule(TinySNN(decoder="sequence", steps=3), loss="tet", lr=0.05)
    h = fit(module, x[:128], y[:128], epochs=2, batch_size=32, **QUIET)
    assert len(h.history["loss"]) == 2
    out = predict(module, x[:70], batch_size=32)
    assert out.shape == (3, 70, 10)  # concatenated along the batch axis (dim 1)
    out_amb = predict(module, x[:6], batch_size=3)  # T == batch size: the loss (tet) says sequence
    assert out_amb.shape == (3, 6, 10)
    # tet with a [B, C] output: clear error on the first batch
    with pytest.raises(ValueError, match="sequence"):
        fit(SNNModule(TinySNN(), loss="tet"), x[:64], y[:64], **QUIET)


def test_constraints_applied_after_every_step(digits):
    x, y = digits
    net = ClampedNet(bound=0.01)
    seen = []

    class Check(pl.Callback):
        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            seen.append(pl_module.network.fc.weight.abs().max().item())

    module = SNNModule(net, loss="ce", optimizer="sgd", lr=5.0)  # huge steps: would leave the range
    h = fit(module, x[:200], y[:200], epochs=2, batch_size=20, callbacks=[Check()], accumulate_grad_batches=2,
            **QUIET)
    steps = h.params["steps"]
    assert steps == 10 and net.calls == steps  # one call per optimizer step (2 batches per step)
    assert len(seen) == 20 and max(seen) <= 0.01 + 1e-7


def test_seed_reproducible(digits):
    x, y = digits

    def run():
        torch.manual_seed(0)
        module = SNNModule(TinySNN(poisson=True), loss="ce_count", lr=0.05)
        h = fit(module, x[:192], y[:192], epochs=2, batch_size=32, validation_split=0.25, seed=123, **QUIET)
        return h.history, module.network.fc.weight.detach().clone()

    h1, w1 = run()
    h2, w2 = run()
    assert h1 == h2 and torch.equal(w1, w2)
    torch.manual_seed(0)
    module = SNNModule(TinySNN(poisson=True), loss="ce_count", lr=0.05)
    h3 = fit(module, x[:192], y[:192], epochs=2, batch_size=32, validation_split=0.25, seed=7, **QUIET)
    assert h3.history != h1


def test_bf16_mixed(digits):
    x, y = digits
    module = SNNModule(TinySNN(), loss="ce_rate", lr=0.05)
    h = fit(module, x[:256], y[:256], epochs=2, batch_size=64, validation_split=0.25, precision="bf16-mixed",
            **QUIET)
    assert all(math.isfinite(v) for v in h.history["loss"] + h.history["val_loss"])
    assert len(h.history["val_accuracy"]) == 2
    assert predict(module, x[:10], precision="bf16-mixed").dtype == torch.float32


def test_checkpoint_and_resume(digits, tmp_path):
    x, y = digits
    ckpt = tmp_path / "ckpt"
    module = SNNModule(nn.Linear(64, 10), loss="ce", lr=0.1)
    fit(module, x[:128], y[:128], epochs=2, batch_size=64, checkpoint_dir=str(ckpt), **QUIET)
    assert (ckpt / "last.ckpt").exists()
    module2 = SNNModule(nn.Linear(64, 10), loss="ce", lr=0.1)
    h = fit(module2, x[:128], y[:128], epochs=3, batch_size=64, checkpoint_dir=str(ckpt), resume="last", **QUIET)
    assert h.epoch == [0, 1, 2]  # epochs 0-1 restored from the checkpoint, epoch 2 trained
    assert h.params["steps"] == 6
    with pytest.raises(FileNotFoundError):
        fit(module2, x[:64], y[:64], resume=str(tmp_path / "nope.ckpt"), **QUIET)


def test_plain_nn_module_and_own_trainer(digits):
    x, y = digits
    net = nn.Linear(64, 10)
    h = fit(net, x[:64], y[:64], epochs=1, batch_size=32, **QUIET)  # wrapped in SNNModule with defaults
    assert isinstance(h.model, SNNModule) and h.model.network is net
    # SNNModule with a user-built Trainer
    module = SNNModule(TinySNN(), loss="ce_count", metrics=["accuracy", "top5_accuracy"])
    trainer = pl.Trainer(max_epochs=1, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                         enable_model_summary=False, accelerator="cpu")
    loader = DataLoader(TensorDataset(torch.from_numpy(x[:64]), torch.from_numpy(y[:64])), batch_size=32)
    trainer.fit(module, loader, loader)
    assert {"train_loss", "train_accuracy", "train_top5_accuracy", "val_loss", "val_accuracy", "lr"} <= set(
        trainer.callback_metrics
    )


def test_accuracy_counts_ties_against_the_label():
    from spaic_train.training.metrics import top5_accuracy

    silent = torch.zeros(4, 10)  # a dead output layer: every class scores the same -> chance level
    labels = torch.tensor([0, 0, 0, 0])
    assert accuracy(silent, labels).item() == pytest.approx(0.1)
    assert top5_accuracy(silent, labels).item() == pytest.approx(0.5)
    out = torch.tensor([[3.0, 1.0, 1.0], [1.0, 2.0, 2.0], [0.0, 0.0, 5.0]])
    assert accuracy(out, torch.tensor([0, 1, 2])).item() == pytest.approx(2.5 / 3)  # sample 1 ties 2 ways
    assert accuracy(out, torch.tensor([1, 0, 2])).item() == pytest.approx(1 / 3)
    assert top5_accuracy(out, torch.tensor([1, 0, 0])).item() == pytest.approx(1.0)  # fewer than 5 classes


def test_time_first_batches_are_weighted_by_their_label_count():
    """A [T, B, ...] input logs metrics with batch size B (the labels), not T."""
    from spaic_train.training import SNNModule

    class Seq(torch.nn.Module):
        def forward(self, x):  # [T, B, 3] -> [B, 3]
            return x.mean(0)

    module = SNNModule(Seq(), loss="ce")
    logged = {}
    module.log = lambda name, value, **kw: logged.setdefault(name, kw.get("batch_size"))
    x = torch.rand(7, 2, 3)
    module._shared_step((x, torch.tensor([0, 1])), "train")
    assert logged["train_loss"] == 2
    module._shared_step((x, torch.tensor([0, 1])), "val")  # validation: a weighted mean, weight = samples
    assert float(module._eval_means["val_loss_0"].weight) == 2
