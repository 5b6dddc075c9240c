"""Learnable per-synapse delays (``Connection(learn_delay=True)``): the relaxed op against a direct formula for every
link type, gradients against finite differences, clamping, the exact integer path after annealing, batched ==
stepped, checkpointing through time, ``torch.compile``, training (schedule, learning rates), save / load and
TensorBoard."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from extras import require
from torch.func import functional_call

import spaic_train as spaic
from spaic_train.assembly import Assembly
from spaic_train.connection import Connection
from spaic_train.init import uniform
from spaic_train.training import SNNModule, fit

QUIET = dict(logger=False, enable_progress_bar=False, accelerator="cpu", devices=1)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def A(shape, name):
    return Assembly(shape=shape, name=name)


def hand_taps(d, sigma, lo, hi):
    """``g[k − lo] = exp(−(k − d)² / 2σ²) / Σ_j exp(−(j − d)² / 2σ²)`` written out (dt = 1 ms), float64."""
    k = torch.arange(lo, hi + 1, dtype=torch.float64).view(-1, *([1] * d.dim()))
    e = torch.exp(-((k - d.double()) ** 2) / (2 * sigma ** 2))
    return e / e.sum(0)


def shifted_inputs(x, lo, hi):
    """``[K, T, B, ...]``: ``x`` delayed by ``k = lo … hi`` steps, zeros before ``x[0]``."""
    T = x.shape[0]
    out = torch.zeros(hi - lo + 1, *x.shape, dtype=x.dtype)
    for i, k in enumerate(range(lo, hi + 1)):
        out[i, k:] = x[:T - k]
    return out


# ------------------------------------------------------------------------------ the relaxed op, per link type
@pytest.mark.parametrize("lt, kw", [("full", {}), ("sparse_connect", dict(density=0.5)),
                                    ("random", dict(probability=0.5))])
def test_dense_relaxed_op_is_the_gaussian_mixture_of_shifts(lt, kw):
    c = Connection(A(6, "pre"), A(4, "post"), link_type=lt, max_delay=5.0, delay=uniform(0, 5), learn_delay=True,
                   delay_sigma=1.25, bias=0.25, **kw).double()
    x = torch.rand(9, 2, 6, dtype=torch.float64)
    g = hand_taps(c.delay.detach(), 1.25, 0, 5)  # [K, post, pre]
    W = c.effective_weight().detach()
    want = torch.einsum("ktbi,kji->tbj", shifted_inputs(x, 0, 5), W * g) + 0.25
    torch.testing.assert_close(c(x), want, rtol=1e-12, atol=1e-12)  # float64 (σ, bias dyadic: exact in float32)
    assert c.history_steps == 5


@pytest.mark.parametrize("lt", ["one_to_one", "one_to_one_sparse"])
def test_one_to_one_relaxed_op(lt):
    c = Connection(A(5, "pre"), A(5, "post"), link_type=lt, weight=torch.randn(5), max_delay=3.0,
                   delay=torch.tensor([0.0, 0.4, 1.5, 2.2, 3.0]), learn_delay=True, delay_sigma=0.75).double()
    x = torch.rand(7, 3, 5, dtype=torch.float64)
    g = hand_taps(c.delay.detach(), 0.75, 0, 3)  # [K, 5]
    want = torch.einsum("ktbi,ki->tbi", shifted_inputs(x, 0, 3), c.weight.detach() * g)
    torch.testing.assert_close(c(x), want, rtol=1e-12, atol=1e-12)


def test_conv_delays_are_per_channel_pair():
    """``(out, in/groups)`` delays: each channel pair's kernel slice is spread over the taps with its own delay."""
    pre, post = A((4, 5, 5), "pre"), A(None, "post")
    c = Connection(pre, post, link_type="conv", out_channels=4, groups=2, padding=1, max_delay=3.0,
                   delay=uniform(0, 3), learn_delay=True, delay_sigma=0.875).double()
    assert c.delay.shape == (4, 2) and isinstance(c.delay, torch.nn.Parameter)
    x = torch.rand(6, 2, 4, 5, 5, dtype=torch.float64)
    g = hand_taps(c.delay.detach(), 0.875, 0, 3)  # [K, out, in/groups]
    xs = shifted_inputs(x, 0, 3)
    want = torch.zeros(6, 2, *post.shape, dtype=torch.float64)
    for o in range(4):
        for ci in range(2):
            cin = (o // 2) * 2 + ci
            for i in range(4):
                w = (c.weight.detach()[o, ci] * g[i, o, ci])[None, None]
                want[:, :, o] += F.conv2d(xs[i, :, :, cin].reshape(12, 1, 5, 5), w, padding=1).reshape(6, 2, 5, 5)
    torch.testing.assert_close(c(x), want, rtol=1e-10, atol=1e-12)


# ------------------------------------------------------------------------------ gradients vs finite differences
@pytest.mark.parametrize("lt, pre_shape, kw", [
    ("full", (5,), {}),
    ("one_to_one", (5,), {}),
    ("conv", (2, 4, 4), dict(out_channels=3, padding=1)),
])
def test_delay_gradient_matches_finite_differences(lt, pre_shape, kw):
    post = A(None, "post") if lt == "conv" else A(5, "post")
    c = Connection(A(pre_shape, "pre"), post, link_type=lt, max_delay=4.0, delay=uniform(0.3, 3.7),
                   learn_delay=True, delay_sigma=0.9, **kw).double()
    x = torch.rand(8, 2, *pre_shape, dtype=torch.float64)
    r = torch.randn(8, 2, *post.shape, dtype=torch.float64)

    def loss(d):
        return (functional_call(c, {"delay": d}, (x,)) * r).sum()

    d = c.delay.detach().clone().requires_grad_(True)
    assert torch.autograd.gradcheck(loss, (d,), eps=1e-6, atol=1e-7, rtol=1e-6)


def test_network_delay_gradient_matches_finite_differences():
    """Through a whole network: learnable delays into leaky integrators (v_th never reached, so the model is
    smooth), a feedback connection with learnable delays (stepped cycle) and a max-voltage readout."""
    net = spaic.Network()
    net.inp = spaic.Encoder(shape=(4,), coding="passthrough")
    net.h = spaic.NeuronGroup(3, model="lif", tau=2.0, v_th=1e6)
    net.out = spaic.NeuronGroup(2, model="lif", tau=2.0, v_th=1e6)
    net.c1 = Connection(net.inp, net.h, max_delay=3.0, delay=uniform(0, 3), learn_delay=True, delay_sigma=0.8)
    net.c2 = Connection(net.h, net.out, max_delay=2.0, delay=uniform(0, 2), learn_delay=True, delay_sigma=0.6)
    net.fb = Connection(net.out, net.h, max_delay=3.0, delay=uniform(1, 3), learn_delay=True, delay_sigma=1.0)
    net.dec = spaic.Decoder(net.out, coding="mean_voltage")
    net.double()
    x = torch.rand(10, 2, 4, dtype=torch.float64)
    names = ["c1.delay", "c2.delay", "fb.delay"]
    params = dict(net.named_parameters())

    def loss(*delays):
        return (functional_call(net, dict(zip(names, delays)), (x,)) * torch.tensor([1.0, -2.0])).sum()

    delays = tuple(params[n].detach().clone().requires_grad_(True) for n in names)
    assert torch.autograd.gradcheck(loss, delays, eps=1e-6, atol=1e-7, rtol=1e-5)


# ------------------------------------------------------------------------------ clamping, snapping, feedback
def test_apply_constraints_clamps_and_snaps():
    c = Connection(A(4, "pre"), A(3, "post"), max_delay=3.0, min_delay=0.5, delay=1.0, learn_delay=True)
    assert c.delay_bounds() == (0.5, 3.0)
    with torch.no_grad():
        c.delay.copy_(torch.tensor([[-2.0, 0.2, 1.4, 5.0]] * 3))
    c.apply_constraints()
    assert torch.equal(c.delay[0], torch.tensor([0.5, 0.5, 1.4, 3.0]))  # clamped, not rounded while σ > 0
    c.set_delay_sigma(0.0)
    c.dt = 0.5
    with torch.no_grad():
        c.delay.copy_(torch.tensor([[0.1, 0.74, 1.26, 2.9]] * 3))
    c.apply_constraints()  # σ = 0: whole steps of dt, then clamped again
    assert torch.equal(c.delay[0], torch.tensor([0.5, 0.5, 1.5, 3.0]))


def test_feedback_connection_keeps_delays_of_at_least_one_step():
    net = spaic.Network()
    net.inp = spaic.Encoder(shape=(3,), coding="passthrough")
    net.a = spaic.NeuronGroup(4, model="lif", tau=2.0, v_th=0.3)
    net.b = spaic.NeuronGroup(4, model="lif", tau=2.0, v_th=0.3)
    net.ia = Connection(net.inp, net.a, w_mean=0.5, w_std=0.3)
    net.ab = Connection(net.a, net.b, w_mean=0.5, w_std=0.3)
    net.ba = Connection(net.b, net.a, max_delay=3.0, delay=0.0, learn_delay=True, delay_sigma=1.0)
    net(torch.rand(5, 2, 3))
    fb = net.ba
    assert fb.min_delay_steps == 1 and fb.delay_line.tap_range() == (1, 3)  # no tap reads the same step
    fb.apply_constraints()
    assert fb.delay.min().item() == 1.0 and fb.delay_bounds() == (1.0, 3.0)
    x = torch.rand(6, 2, 4)
    for mode in (fb.train, fb.eval):
        mode()
        y = fb(x)
        assert torch.equal(y[0], torch.zeros_like(y[0]))  # nothing arrives in the first step
        assert torch.equal(fb(x[:3])[1:], y[1:3])  # and step t depends only on x[< t]


# ------------------------------------------------------------------------------ the integer path, bit for bit
def _delay_net(learn: bool, sigma: float = 2.0, feedback: bool = True):
    torch.manual_seed(3)
    net = spaic.Network()
    net.inp = spaic.Encoder(shape=(2, 6, 6), coding="passthrough")
    net.conv = spaic.NeuronGroup(shape=None, model="lif", tau=2.0, v_th=0.5)
    net.h = spaic.NeuronGroup(12, model="lif", tau=2.0, v_th=0.5)
    net.o = spaic.NeuronGroup(12, model="lif", tau=2.0, v_th=0.5)
    net.out = spaic.NeuronGroup(3, model="lif", tau=2.0, v_th=0.5)
    kw = dict(learn_delay=True, delay_sigma=sigma) if learn else {}
    net.c1 = Connection(net.inp, net.conv, link_type="conv", out_channels=3, kernel_size=3, stride=2, w_mean=0.3,
                        max_delay=3.0, delay=uniform(0, 3), **kw)
    net.c2 = Connection(net.conv, net.h, syn_type=["flatten", "basic"], w_mean=0.1, w_std=0.4, max_delay=4.0,
                        delay=uniform(0, 4), **kw)
    net.c3 = Connection(net.h, net.o, link_type="one_to_one", w_mean=1.0, max_delay=2.0, delay=uniform(0, 2), **kw)
    net.c4 = Connection(net.o, net.out, w_mean=0.2, w_std=0.5, max_delay=3.0, delay=uniform(0, 3), **kw)
    if feedback:
        net.fb = Connection(net.out, net.h, w_std=0.3, max_delay=2.0, delay=uniform(1, 2), **kw)
    net.dec = spaic.Decoder(net.out, coding="spike_counts")
    return net


def test_annealed_delays_run_the_fixed_delay_path_bit_for_bit():
    """After a few steps with σ > 0 and annealing to σ = 0: the delays are whole steps, and the network (eval, and
    training at σ = 0) gives exactly what the same network with those delays as fixed delays gives."""
    net = _delay_net(learn=True)
    before = {n: p.detach().clone() for n, p in net.named_parameters() if n.endswith("delay")}
    opt = torch.optim.Adam(net.parameters(), lr=0.05)
    x = (torch.rand(12, 4, 2, 6, 6) < 0.4).float()
    for sigma in (2.0, 1.0, 0.5, 0.0):
        for conn in (net.c1, net.c2, net.c3, net.c4, net.fb):
            conn.set_delay_sigma(sigma)
        opt.zero_grad()
        (net(x) * torch.tensor([1.0, -1.0, 0.5])).sum().backward()
        opt.step()
        net.apply_constraints()
    learned = {n: p.detach() for n, p in net.named_parameters() if n.endswith("delay")}
    assert any(not torch.equal(learned[n], before[n]) for n in learned)  # the delays moved
    for n, d in learned.items():
        assert torch.equal(d, d.round()), n  # σ = 0: snapped to whole steps (dt = 1 ms)
    fixed = _delay_net(learn=False)
    missing, unexpected = fixed.load_state_dict(net.state_dict(), strict=False)
    assert not missing and sorted(unexpected) == [f"{c}.delay_sigma" for c in ("c1", "c2", "c3", "c4", "fb")]
    for mode in ("eval", "train"):  # train: σ = 0 runs the integer path too
        getattr(net, mode)()
        getattr(fixed, mode)()
        out, ref = net(x), fixed(x)
        assert out.sum() > 0 and torch.equal(out, ref)
    # and the relaxation is continuous: a tiny σ is indistinguishable from the integer path
    net.train()
    for conn in (net.c1, net.c2, net.c3, net.c4, net.fb):
        conn.set_delay_sigma(0.05)
    torch.testing.assert_close(net(x), fixed(x))


# ------------------------------------------------------------------------------ schedules, chunks, compile
def _grads(net, x, **kw):
    net.zero_grad(set_to_none=True)
    y = net(x, **kw)
    (y * torch.tensor([1.0, 2.0, 3.0])).sum().backward()
    return y.detach(), {n: p.grad.clone() for n, p in net.named_parameters() if p.grad is not None}


def test_time_batched_equals_step_by_step_and_checkpointed():
    net = _delay_net(learn=True, sigma=1.5)
    x = (torch.rand(14, 3, 2, 6, 6) < 0.4).float()
    ref, ref_grads = _grads(net, x)
    assert ref.sum() > 0 and ref_grads["c2.delay"].abs().sum() > 0 and ref_grads["fb.delay"].abs().sum() > 0
    for kw in (dict(mode="step"), dict(checkpoint_steps=4)):
        out, grads = _grads(net, x, **kw)
        torch.testing.assert_close(out, ref)
        assert grads.keys() == ref_grads.keys()
        for n in ref_grads:  # float32 sums in another order (per step vs all steps at once)
            torch.testing.assert_close(grads[n], ref_grads[n], rtol=1e-4, atol=1e-5)


@pytest.mark.filterwarnings("ignore")
def test_torch_compile_aot_eager():
    """The relaxed path traces into one graph (conv and dense learnable delays)."""
    torch._dynamo.reset()
    net = spaic.Network()
    net.inp = spaic.Encoder(shape=(2, 5, 5), coding="passthrough")
    net.conv = spaic.NeuronGroup(shape=None, model="lif", tau=2.0, v_th=0.5)
    net.out = spaic.NeuronGroup(3, model="lif", tau=2.0, v_th=0.5)
    net.c1 = Connection(net.inp, net.conv, link_type="conv", out_channels=2, kernel_size=3, stride=2, w_mean=0.3,
                        max_delay=2.0, delay=uniform(0, 2), learn_delay=True, delay_sigma=1.0)
    net.c2 = Connection(net.conv, net.out, syn_type=["flatten", "basic"], w_mean=0.2, w_std=0.4, max_delay=3.0,
                        delay=uniform(0, 3), learn_delay=True, delay_sigma=1.0)
    net.dec = spaic.Decoder(net.out, coding="spike_counts")
    x = (torch.rand(6, 3, 2, 5, 5) < 0.5).float()
    ref, ref_grads = _grads(net, x)
    assert ref.sum() > 0 and ref_grads["c1.delay"].abs().sum() > 0
    net.zero_grad(set_to_none=True)
    y = torch.compile(net, backend="aot_eager", fullgraph=True)(x)
    (y * torch.tensor([1.0, 2.0, 3.0])).sum().backward()
    grads = {n: p.grad.clone() for n, p in net.named_parameters() if p.grad is not None}
    torch.testing.assert_close(y.detach(), ref, rtol=1e-5, atol=1e-5)
    for n in ref_grads:
        torch.testing.assert_close(grads[n], ref_grads[n], rtol=1e-5, atol=1e-5)
    torch._dynamo.reset()


# ------------------------------------------------------------------------------ training with SNNModule / Keras
def _tiny_net(learn: bool = True):
    net = spaic.Network(time_steps=8)
    net.inp = spaic.Encoder(shape=(6,), coding="poisson")
    net.h = spaic.NeuronGroup(8, model="lif", tau=2.0, v_th=0.5)
    net.out = spaic.NeuronGroup(3, model="lif", tau=2.0, v_th=0.5)
    net.c1 = Connection(net.inp, net.h, w_mean=0.3, w_std=0.4, max_delay=3.0, delay=uniform(0.5, 2.5),
                        learn_delay=learn)
    net.c2 = Connection(net.h, net.out, w_mean=0.3, w_std=0.4)
    net.dec = spaic.Decoder(net.out, coding="spike_counts")
    return net


def test_delays_get_their_own_parameter_group():
    module = SNNModule(_tiny_net(), optimizer="adamw", lr=1e-3, optimizer_kwargs={"weight_decay": 0.1})
    opt = module.configure_optimizers()
    weights, delays = opt.param_groups
    assert delays["params"] == [module.network.c1.delay] and delays["delays"] is True
    assert delays["lr"] == pytest.approx(100 * 1e-3) and delays["weight_decay"] == 0.0  # never decay toward 0 ms
    assert weights["lr"] == 1e-3 and weights["weight_decay"] == 0.1 and len(weights["params"]) == 2
    assert SNNModule(_tiny_net(), delay_lr=0.25).configure_optimizers().param_groups[1]["lr"] == 0.25
    # fixed delays: one group, as without delays
    assert len(SNNModule(_tiny_net(learn=False)).configure_optimizers().param_groups) == 1


def test_sigma_schedule_and_scaled_delay_steps():
    """σ follows the schedule per epoch; with plain SGD each delay step is exactly ``−delay_lr · σ/start · grad``."""
    import lightning.pytorch as pl

    seen = []

    class Spy(pl.Callback):
        def on_before_optimizer_step(self, trainer, pl_module, optimizer):
            c = pl_module.network.c1
            self.before = (c.delay.detach().clone(), c.delay.grad.clone(), c.sigma_ms())

        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            d0, g, sigma = self.before
            seen.append((trainer.current_epoch, sigma, d0, pl_module.network.c1.delay.detach() - d0, g))

    x, y = torch.rand(32, 6), torch.randint(0, 3, (32,))
    module = SNNModule(_tiny_net(), optimizer="sgd", lr=0.01, delay_lr=0.5, loss="ce_count",
                       delay_sigma={"start": 1.2, "end": 0.0, "epochs": 2})
    fit(module, x, y, epochs=3, batch_size=16, callbacks=[Spy()], seed=0, **QUIET)
    sigmas = {e: s for e, s, *_ in seen}
    assert sigmas == pytest.approx({0: 1.2, 1: 0.6, 2: 0.0})
    for epoch, sigma, d0, step, grad in seen:
        if epoch < 2:
            expect = -0.5 * (sigma / 1.2) * grad
            inside = (d0 + expect > 0) & (d0 + expect < 3)  # not clamped by this step
            torch.testing.assert_close(step[inside], expect[inside], rtol=1e-4, atol=1e-6)
            assert grad.abs().sum() > 0
        else:  # σ = 0: integer path, zero gradient, no optimizer step: the delays are only snapped to whole steps
            assert torch.equal(grad, torch.zeros_like(grad)) and torch.equal(d0 + step, d0.round())
    assert torch.equal(module.network.c1.delay, module.network.c1.delay.round())


def _keras_model():
    from spaic_train.keras import Feedback, Sequential
    from spaic_train.keras import layers as L

    return Sequential([
        L.Input((1, 6, 6), encoder="poisson"),
        L.Conv2dSyn(3, kernel_size=3, padding=1, pool="max", name="conv", max_delay=2.0, learn_delay=True,
                    neuron_kwargs={"v_th": 0.5}),
        L.Flatten(),
        L.Full(16, name="hidden", max_delay=3.0, delay=uniform(0, 3), delay_learnable=True,
               neuron_kwargs={"v_th": 0.5}),
        L.OneToOne(name="relay", max_delay=2.0, learn_delay=True, w_mean=1.0),
        L.SparseRandom(3, density=0.5, name="out", max_delay=2.0, learn_delay=True, neuron_kwargs={"v_th": 0.3}),
    ], time_steps=6, feedback=[Feedback("out", "hidden", max_delay=2.0, learn_delay=True)])


def test_keras_fit_save_load_restores_delays(tmp_path):
    from spaic_train import load_model

    torch.manual_seed(0)
    model = _keras_model()
    conns = [c for c in model.connections if c.learn_delay]
    assert len(conns) == 5 and tuple(model.get_layer("conv").connections[0].delay.shape) == (3, 1)
    assert "learned" in model.get_layer("hidden").delay_description()
    start = [c.delay.detach().clone() for c in conns]
    x, y = torch.rand(48, 1, 6, 6), torch.randint(0, 3, (48,))
    model.compile(optimizer="adam", lr=1e-2, loss="ce_rate", delay_lr=0.2,
                  delay_sigma={"start": 1.0, "end": 0.0, "epochs": 1})
    model.fit(x, y, epochs=2, batch_size=16, seed=0, **QUIET)
    assert all(c.sigma_ms() == 0.0 for c in conns)
    assert any(not torch.equal(c.delay.detach(), s) for c, s in zip(conns, start))
    path = tmp_path / "m.pt"
    model.save(path)
    restored = load_model(path)
    for name, t in model.state_dict().items():
        assert torch.equal(restored.state_dict()[name], t), name
    assert all(isinstance(c.delay, torch.nn.Parameter) for c in restored.connections if c.learn_delay)
    model.eval()
    with torch.random.fork_rng():
        torch.manual_seed(1)
        a = model(x[:8])
    with torch.random.fork_rng():
        torch.manual_seed(1)
        b = restored(x[:8])
    assert torch.equal(a, b)
    assert restored.module.delay_sigma.to_dict() == {"start": 1.0, "end": 0.0, "epochs": 1}
    restored.fit(x, y, epochs=1, batch_size=16, **QUIET)  # continues with the saved optimizer state (2 groups)


def test_lightning_checkpoint_resume_restores_delays(tmp_path):
    """A run resumed from the epoch-1 checkpoint ends with the same delays (and σ) as the uninterrupted run."""
    x, y = torch.rand(32, 6), torch.randint(0, 3, (32,))

    def run(epochs, resume=None, ckpt=None):
        torch.manual_seed(0)
        module = SNNModule(_tiny_net(), lr=1e-2, delay_lr=0.2, loss="ce_count",
                           delay_sigma={"start": 1.0, "end": 0.2, "epochs": 3})
        fit(module, x, y, epochs=epochs, batch_size=16, seed=0, checkpoint_dir=ckpt, resume=resume, **QUIET)
        return module.network.c1

    full = run(3)
    first = run(1, ckpt=tmp_path / "ck")
    state = torch.load(tmp_path / "ck" / "last.ckpt", weights_only=True)["state_dict"]
    assert torch.equal(state["network.c1.delay"], first.delay.detach())
    assert state["network.c1.delay_sigma"].item() == 1.0
    resumed = run(3, resume=str(tmp_path / "ck" / "last.ckpt"), ckpt=tmp_path / "ck2")
    assert torch.equal(resumed.delay, full.delay)
    assert resumed.sigma_ms() == full.sigma_ms() == pytest.approx(1.0 + (0.2 - 1.0) * 2 / 3)  # σ of epoch 2


def test_tensorboard_logs_delay_histograms_and_sigma(tmp_path):
    from lightning.pytorch.loggers import TensorBoardLogger
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from spaic_train.monitoring import TensorBoardMonitor

    x, y = torch.rand(32, 6), torch.randint(0, 3, (32,))
    module = SNNModule(_tiny_net(), lr=1e-2, loss="ce_count", delay_sigma={"start": 1.0, "epochs": 1})
    logger = TensorBoardLogger(save_dir=str(tmp_path), name="tb", version="", default_hp_metric=False)
    fit(module, x, y, epochs=2, batch_size=16, seed=0, logger=logger, callbacks=[TensorBoardMonitor(num_samples=8)],
        enable_progress_bar=False, accelerator="cpu")
    ea = EventAccumulator(str(tmp_path / "tb"), size_guidance={"scalars": 0, "histograms": 0})
    ea.Reload()
    hist = ea.Histograms("delays/c1")
    assert len(hist) == 2 and hist[-1].histogram_value.num == 8 * 6
    assert hist[-1].histogram_value.min >= 0.0 and hist[-1].histogram_value.max <= 3.0
    assert [e.value for e in ea.Scalars("delays/sigma/c1")] == [pytest.approx(1.0), 0.0]  # σ of each epoch
    assert "delays/c2" not in ea.Tags()["histograms"]  # no per-synapse delays


def test_extra_repr_and_alias():
    c = Connection(A(3, "pre"), A(2, "post"), max_delay=2.0, delay_learnable=True)
    assert c.learn_delay and "learn_delay=True, delay_sigma=1" in repr(c)
    assert c.sigma_ms() == 1.0  # default width max_delay / 2
    assert Connection(A(3, "pre"), A(2, "post"), max_delay=2.0, learn_delay=True, delay_learnable=True).learn_delay
    with pytest.raises(ValueError, match="needs learnable delays"):
        Connection(A(3, "pre"), A(2, "post"), max_delay=2.0).set_delay_sigma(1.0)
    assert math.isclose(float(c.delay_sigma), 1.0)


DDP_SCRIPT = '''
import json, os, sys
import torch
import spaic_train as spaic
from spaic_train.init import uniform
from spaic_train.training import SNNModule, fit

def main():
    torch.manual_seed(0)
    net = spaic.Network(time_steps=6)
    net.inp = spaic.Encoder(shape=(6,), coding="poisson")
    net.h = spaic.NeuronGroup(8, model="lif", tau=2.0, v_th=0.5)
    net.out = spaic.NeuronGroup(3, model="lif", tau=2.0, v_th=0.5)
    net.c1 = spaic.Connection(net.inp, net.h, w_mean=0.3, w_std=0.4, max_delay=3.0, delay=uniform(0.5, 2.5),
                              learn_delay=True)
    net.c2 = spaic.Connection(net.h, net.out, w_mean=0.3, w_std=0.4)
    net.fb = spaic.Connection(net.out, net.h, max_delay=2.0, learn_delay=True)
    net.dec = spaic.Decoder(net.out, coding="spike_counts")
    g = torch.Generator().manual_seed(1)
    x, y = torch.rand(64, 6, generator=g), torch.randint(0, 3, (64,), generator=g)
    module = SNNModule(net, loss="ce_count", lr=1e-2, delay_lr=0.2, delay_sigma={"start": 1.0, "epochs": 1})
    fit(module, x, y, epochs=2, batch_size=16, devices=2, accelerator="cpu", strategy="ddp", seed=0, logger=False,
        enable_progress_bar=False)
    rank = int(os.environ.get("LOCAL_RANK", 0))
    with open(os.path.join(sys.argv[1], f"delays{rank}.json"), "w") as fh:
        json.dump({"c1": net.c1.delay.tolist(), "fb": net.fb.delay.tolist(), "sigma": net.c1.sigma_ms()}, fh)

if __name__ == "__main__":
    main()
'''


@pytest.mark.slow  # two processes: ~20-50 s
def test_ddp_with_learnable_delays_through_annealing(tmp_path):
    """2 CPU processes (gloo): epoch 0 relaxed, epoch 1 at σ = 0 (the integer path keeps the delays in the graph
    with a zero gradient, so DDP's reducer finds every parameter); both ranks end with the same whole-step delays."""
    import json
    import os
    import subprocess
    import sys
    from pathlib import Path

    script = tmp_path / "ddp_delays.py"
    script.write_text(DDP_SCRIPT)
    env = dict(os.environ)
    root = str(Path(__file__).resolve().parents[1])
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH", "")) if p)
    env.pop("LOCAL_RANK", None)
    proc = subprocess.run([sys.executable, str(script), str(tmp_path)], env=env, cwd=str(tmp_path),
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    r0, r1 = (json.loads((tmp_path / f"delays{r}.json").read_text()) for r in (0, 1))
    assert r0 == r1 and r0["sigma"] == 0.0
    d = torch.tensor(r0["c1"])
    assert torch.equal(d, d.round()) and torch.tensor(r0["fb"]).min() >= 1.0


def test_nir_export_writes_the_integer_delays_eval_runs():
    """NIR has no learnable delays: the export holds ``round(d/dt)`` (what ``eval()`` runs), so the loaded graph
    spikes exactly like the original in eval, even with fractional delays in the middle of annealing."""
    stn = require("spaic_train.nir", "nir")
    net = spaic.Network()
    net.inp = spaic.Encoder(shape=(6,), coding="direct")
    net.h = spaic.NeuronGroup(8, model="lif", tau=2.0, v_th=0.5)
    net.out = spaic.NeuronGroup(3, model="lif", tau=2.0, v_th=0.5)
    net.fc = Connection(net.inp, net.h, w_mean=0.3, w_std=0.4, max_delay=3.0, delay=uniform(0, 3), learn_delay=True)
    net.fb = Connection(net.out, net.h, w_std=0.4, max_delay=3.0, delay=uniform(1, 3), learn_delay=True)
    net.ho = Connection(net.h, net.out, w_mean=0.3, w_std=0.4)
    net.dec = spaic.Decoder(net.out, coding="spike_counts")
    net.eval()
    x = torch.rand(12, 4, 6)
    with torch.no_grad():
        loaded = stn.load(stn.export(net)).eval()
        assert torch.equal(loaded(x), net(x)) and net(x).sum() > 0
    fc = next(c for c in loaded.connections if c.pre.name == "inp")
    assert torch.equal(fc.delay_steps(), net.fc.delay_steps()) and not fc.learn_delay
