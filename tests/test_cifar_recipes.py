"""The CIFAR-10 recipes and the pieces they are built from: time-batched batch norm (tdBN statistics), the
non-spiking ``leaky_integrator`` readout, frozen connections, residual shortcuts, model graphs in configs, the
augmentation, the recipes' architectures against the papers' networks, and a smoke run of each recipe on real JPEGs."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from extras import require
from test_cli import assert_test_metrics_reproduced, composed
from torch import nn

import spaic_train as st
from spaic_train.cli import build_datamodule_from_config, build_model, run
from spaic_train.keras import Model
from spaic_train.keras.layers import Conv2dSyn, Flatten, Full, Input
from spaic_train.training import get_loss

# Channels-last (ours, on CPU) and contiguous convolutions sum in different orders: results differ by a few ulp
# of the accumulated magnitude (~1e-6 here); batch norm divides by a std of order 1, so 1e-5 is a safe bound.
CONV_ATOL = 1e-5


# ---------------------------------------------------------------------------------------------- batch norm over T x B
def test_batchnorm_statistics_are_taken_over_time_and_batch():
    """A time-batched conv + batch norm normalises with the mean/variance of all T·B samples (tdBN), i.e. exactly
    torch's BatchNorm2d on the flattened ``[T*B, C, H, W]`` current, running statistics included."""
    torch.manual_seed(0)
    x = Input((3, 8, 8))
    conv = Conv2dSyn(4, padding=1, batchnorm=True, name="c")
    model = Model(x, Full(2, name="out")(Flatten()(conv(x))), time_steps=3)
    model.train()
    seq = torch.randn(3, 5, 3, 8, 8) * torch.tensor([0.5, 1.0, 2.0]).view(3, 1, 1, 1, 1)  # steps differ in scale
    with model.record(("Isyn",)) as rec:
        model(seq)
    conn = conv.connections[0]
    ref_bn = nn.BatchNorm2d(4)  # same defaults as the synapse's: weight 1, bias 0, eps 1e-5, momentum 0.1
    ref = ref_bn(F.conv2d(seq.flatten(0, 1), conn.weight, conn.bias, padding=1)).view(3, 5, 4, 8, 8)
    got = rec["c"]["Isyn"]
    torch.testing.assert_close(got, ref, atol=CONV_ATOL, rtol=0)
    bn = conn.synapses[1].bn
    torch.testing.assert_close(bn.running_mean, ref_bn.running_mean, atol=1e-6, rtol=0)
    torch.testing.assert_close(bn.running_var, ref_bn.running_var, atol=1e-5, rtol=1e-5)
    # per-step statistics (BN on each step's B samples) would give another result: the steps differ in scale
    per_step = torch.stack([F.batch_norm(F.conv2d(s, conn.weight, conn.bias, padding=1), None, None, training=True)
                            for s in seq])
    assert (got - per_step).abs().max() > 0.1


# ------------------------------------------------------------------------------------- leaky_integrator readout
def test_li_neuron_is_a_leaky_integrator_without_spikes():
    I = torch.randn(6, 2, 5)
    no_memory = st.NeuronGroup(5, model="leaky_integrator").neuron
    O, state, V = no_memory.run_sequence(I, return_v=True)
    assert O is I and V is I and torch.equal(state["V"], I[-1])   # tau = 0: the current itself, no copy
    leaky = st.NeuronGroup(5, model="leaky_integrator", tau=2.0).neuron
    O, state, _ = leaky.run_sequence(I)
    beta, v, ref = math.exp(-0.5), torch.zeros(2, 5), []
    for t in range(6):
        v = beta * v + I[t]
        ref.append(v)
    torch.testing.assert_close(O, torch.stack(ref), rtol=1e-6, atol=1e-6)
    o, s = leaky.step(I[0], leaky.initial_state(I[0]))
    assert torch.equal(o, I[0]) and torch.equal(s["V"], I[0])


def test_sequence_of_li_logits_feeds_the_tet_loss():
    """The readout of the recipes: per-step logits ``W s_t + b`` ([T, B, 10]) and TET = mean_t CE + λ MSE(·, φ)."""
    torch.manual_seed(0)
    x = Input((6,))
    h = Full(8, name="h")(x)
    out = Full(3, neuron="leaky_integrator", bias=True, name="out")
    model = Model(x, out(h), time_steps=4, decoder="sequence")
    inp, y = torch.rand(5, 6), torch.tensor([0, 1, 2, 1, 0])
    with model.record(("O",)) as rec:
        logits = model(inp)
    conn = out.connections[0]
    torch.testing.assert_close(logits, F.linear(rec["h"]["O"], conn.weight, conn.bias))
    loss = get_loss("tet", lamb=0.05, means=1.0)(logits, y)
    ref = 0.95 * sum(F.cross_entropy(logits[t], y) for t in range(4)) / 4 + 0.05 * ((logits - 1.0) ** 2).mean()
    torch.testing.assert_close(loss, ref)


# ---------------------------------------------------------------------------------------------- residual shortcuts
def _block(shortcut, in_shape, out_channels, stride):
    torch.manual_seed(0)
    x = Input(in_shape)
    a = Conv2dSyn(out_channels, padding=1, stride=stride, batchnorm=True, name="a")(x)
    b = Conv2dSyn(out_channels, padding=1, batchnorm=True, shortcut=shortcut, name="b")
    model = Model(x, b([a, x]), time_steps=3)
    return model, b


def test_identity_shortcut_adds_the_block_input_to_the_current():
    model, b = _block("auto", (4, 6, 6), 4, 1)
    main, skip = b.connections
    assert skip.link_type == "one_to_one" and not skip.weight.requires_grad and torch.equal(skip.weight,
                                                                                             torch.ones(144))
    x = torch.rand(7, 4, 6, 6)
    with model.record(("O", "Isyn")) as rec:
        model(x)
    bn = main.synapses[1].bn
    main_current = F.conv2d(rec["a"]["O"].flatten(0, 1), main.weight, padding=1)
    ref = F.batch_norm(main_current, None, None, bn.weight, bn.bias, training=True) + x.repeat(3, 1, 1, 1)
    torch.testing.assert_close(rec["b"]["Isyn"], ref.view(3, 7, 4, 6, 6), atol=CONV_ATOL, rtol=0)
    # trains through the shortcut; the frozen weight gets no gradient and stays 1 after an optimizer step
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.5)
    model(x).sum().backward()
    assert skip.weight.grad is None and model.a_to_b.weight.grad.abs().sum() > 0
    opt.step()
    assert torch.equal(skip.weight, torch.ones(144))


def test_projection_shortcut_is_a_strided_1x1_conv_with_batchnorm():
    model, b = _block("auto", (4, 8, 8), 6, 2)
    main, skip = b.connections
    assert skip.link_type == "conv" and tuple(skip.weight.shape) == (6, 4, 1, 1) and skip.syn_type == ["conv",
                                                                                                      "batchnorm"]
    x = torch.rand(5, 4, 8, 8)
    with model.record(("O", "Isyn")) as rec:
        model(x)
    bn_main, bn_skip = main.synapses[1].bn, skip.synapses[1].bn
    cur = F.batch_norm(F.conv2d(rec["a"]["O"].flatten(0, 1), main.weight, padding=1), None, None, bn_main.weight,
                       bn_main.bias, training=True)
    cur = cur + F.batch_norm(F.conv2d(x.repeat(3, 1, 1, 1), skip.weight, stride=2), None, None, bn_skip.weight,
                             bn_skip.bias, training=True)
    torch.testing.assert_close(rec["b"]["Isyn"], cur.view(3, 5, 6, 4, 4), atol=CONV_ATOL, rtol=0)
    assert b.count_params(trainable_only=True) == 6 * 6 * 9 + 6 + 2 * 6 + 6 * 4 + 2 * 6  # conv + bias + BN, 1x1 + BN


def test_residual_model_saves_and_loads(tmp_path):
    model, _ = _block("auto", (4, 8, 8), 4, 1)
    model.eval()
    x = torch.rand(3, 4, 8, 8)
    model.save(tmp_path / "m.pt")
    restored = st.load_model(tmp_path / "m.pt")
    restored.eval()
    assert torch.equal(restored(x), model(x))
    assert not restored.get_layer("b").connections[1].weight.requires_grad


# ---------------------------------------------------------------------------------------------- architectures
def _trainable(module) -> int:
    return sum(p.numel() for p in module.parameters() if p.requires_grad)


class TorchResNet19(nn.Module):
    """ResNet-19 laid out like the TET code (``models/resnet_models.py``), neurons left out (they have no
    parameters): conv-BN stem, BasicBlocks [3, 3, 2] of 128/256/512 channels with conv1x1-BN downsampling,
    average pool, fc 512→256, fc 256→10."""

    def __init__(self):
        super().__init__()

        def conv_bn(cin, cout, k, s):
            return [nn.Conv2d(cin, cout, k, s, k // 2, bias=False), nn.BatchNorm2d(cout)]

        mods, cin = conv_bn(3, 128, 3, 1), 128
        for cout, blocks, stride in ((128, 3, 1), (256, 3, 2), (512, 2, 2)):
            for i in range(blocks):
                s = stride if i == 0 else 1
                mods += conv_bn(cin, cout, 3, s) + conv_bn(cout, cout, 3, 1)
                if s != 1 or cin != cout:
                    mods += conv_bn(cin, cout, 1, s)
                cin = cout
        self.body = nn.Sequential(*mods, nn.Linear(512, 256), nn.Linear(256, 10))


def test_resnet19_recipe_builds_the_papers_resnet19():
    cfg = composed("recipe=cifar_resnet19")
    assert cfg.model.time_steps == 4 and cfg.model.loss == "tet" and cfg.optimizer.name == "sgd"
    assert cfg.data.autoaugment == "cifar10" and cfg.data.cutout == 16
    model = build_model(cfg.model, (3, 32, 32))
    assert _trainable(model) == _trainable(TorchResNet19()) == 12_697_994
    shapes = {layer.name: layer.output_shape for layer in model.layers}
    assert shapes["conv1"] == shapes["s1b3"] == (128, 32, 32)
    assert shapes["s2b1a"] == shapes["s2b3"] == (256, 16, 16)
    assert shapes["s3b1a"] == shapes["s3b2"] == (512, 8, 8)
    assert shapes["fc1"] == (256,) and shapes["out"] == (10,)
    kinds = {layer.name: layer.connections[1].link_type for layer in model.layers
             if getattr(layer, "shortcut", None)}
    assert [k for k, v in kinds.items() if v == "conv"] == ["s2b1", "s3b1"]   # projections where the shape changes
    assert len(kinds) == 8                                                     # one shortcut per basic block


def test_cifar_snn_recipe_builds_the_plif_papers_cifar10net():
    sj_model = require("spikingjelly.activation_based.model.parametric_lif_net", "peers")
    from spikingjelly.activation_based import neuron

    cfg = composed("recipe=cifar_snn")
    assert cfg.model.time_steps == 4 and cfg.model.loss == "tet" and cfg.model.decoder == "sequence"
    model = build_model(cfg.model, (3, 32, 32))
    reference = sj_model.CIFAR10Net(channels=256, spiking_neuron=neuron.LIFNode, tau=2.0)
    voting, readout = 2048 * 100 + 100, 2048 * 10 + 10   # SpikingJelly's 100 voting outputs vs our 10 logits
    assert _trainable(model) == _trainable(reference) - voting + readout == 36_536_074
    shapes = [layer.output_shape for layer in model.layers if type(layer).__name__ in ("Conv2dSyn", "Full")]
    assert shapes == [(256, 32, 32)] * 3 + [(256, 16, 16)] * 3 + [(2048,), (10,)]
    plif = build_model(composed("recipe=cifar_snn", "model.vars.neuron=plif").model, (3, 32, 32))
    assert _trainable(plif) == _trainable(model) + 7   # one learnable tau per spiking layer


def test_cifar_spaic_ref_keeps_the_reference_stack():
    cfg = composed("recipe=cifar_spaic_ref")
    assert cfg.model.name == "cifar_spaic_ref" and cfg.optimizer.name == "adam"
    conv = [layer for layer in cfg.model.layers if layer.type == "Conv2dSyn"]
    assert [c.out_channels for c in conv] == [128, 256, 512, 1024] and conv[0].pool_size == 4


def test_cutout_zeroes_one_clipped_square():
    from spaic_train.data.folder import Cutout

    torch.manual_seed(3)
    img = torch.ones(3, 32, 32)
    out = Cutout(16)(img)
    zero = (out == 0).all(0)
    rows, cols = zero.any(1).nonzero().flatten(), zero.any(0).nonzero().flatten()
    assert torch.equal(img, torch.ones(3, 32, 32))                            # the input is not modified
    assert zero.sum() == len(rows) * len(cols) and 8 <= len(rows) <= 16 and 8 <= len(cols) <= 16   # one square
    assert (out[:, ~zero] == 1).all()


# ---------------------------------------------------------------------------------------------- smoke runs
SMALL = {"cifar_snn": ["model.vars.width=8", "model.vars.hidden=32"],
         "cifar_resnet19": ["model.vars.width=4", "model.vars.hidden=16"]}


@pytest.mark.parametrize("recipe", sorted(SMALL))
def test_recipe_smoke_run_on_cifar_jpegs(recipe, shared_data, tmp_path):
    """A whole ``run`` of the recipe (augmentation included) at small width on 6 real images per class: every
    batch of every split is used, so the class mix is the splits' own, checked to be balanced."""
    tars = shared_data / "cifar10-jpeg"
    if not (tars / "CIFAR-10-images_train.tar").is_file():
        pytest.skip(f"CIFAR-10 JPEG tars not found under {tars}")
    cfg = composed(f"recipe={recipe}", *SMALL[recipe], "model.time_steps=2", "data.format=folder",
                   f"data.root={tars}", "data.limit_per_class=6", "data.val_fraction=0.2", "data.batch_size=16",
                   "trainer.max_epochs=1", "trainer.accelerator=cpu", "trainer.enable_progress_bar=false",
                   "trainer.checkpoint=false", "summary=false")
    dm = build_datamodule_from_config(cfg.data)
    dm.setup("fit")
    dm.setup("test")

    def counts(ds):
        return torch.bincount(torch.tensor([int(y) for _, y in ds]), minlength=10).tolist()

    train, val, test = counts(dm.train_set), counts(dm.val_set), counts(dm.test_set)
    assert test == [6] * 10 and min(train) >= 4 and min(val) >= 1 and sum(train) + sum(val) == 60
    metrics = run(cfg, tmp_path)
    assert math.isfinite(metrics["loss"]) and math.isfinite(metrics["test_loss"])
    assert metrics["epochs"] == 1
    assert_test_metrics_reproduced(tmp_path, cfg, metrics)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("recipe", sorted(SMALL))
def test_recipe_trains_on_cuda_in_bf16(recipe):
    """Forward + backward of a recipe's model on CUDA under bf16 autocast (what ``trainer=gpu`` runs): finite
    loss and gradients, every parameter reached."""
    cfg = composed(f"recipe={recipe}", *SMALL[recipe])
    model = build_model(cfg.model, (3, 32, 32)).cuda()
    loss_fn = get_loss(cfg.model.loss, **cfg.model.loss_kwargs)
    x, y = torch.randn(8, 3, 32, 32, device="cuda"), torch.arange(8, device="cuda") % 10
    with torch.autocast("cuda", dtype=torch.bfloat16):
        loss = loss_fn(model(x), y)
    loss.backward()
    assert torch.isfinite(loss)
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)


def test_half_precision_currents_are_integrated_in_float32():
    """Under bf16 autocast a LIF layer receives bf16 currents; it integrates them in float32 (a bf16 membrane has
    8 mantissa bits) — the same spikes as the float32 run on the same (bf16-rounded) currents."""
    torch.manual_seed(0)
    I = (0.4 + 0.6 * torch.randn(16, 4, 300)).bfloat16().requires_grad_(True)
    lif = st.NeuronGroup(300, model="lif", tau=4.0).neuron
    O, state, _ = lif.run_sequence(I)
    ref, ref_state, _ = lif.run_sequence(I.detach().float())
    assert O.dtype == torch.float32 and torch.equal(O, ref) and torch.equal(state["V"], ref_state["V"])
    O.sum().backward()
    assert I.grad.dtype == torch.bfloat16 and I.grad.abs().sum() > 0
    # a bf16 membrane would not give these spikes: accumulating in bf16 rounds every step
    v, spikes = torch.zeros(4, 300, dtype=torch.bfloat16), []
    for t in range(16):
        v = math.exp(-0.25) * v + I[t].detach()
        s = (v >= 1).to(v.dtype)
        spikes.append(s)
        v = v * (1 - s)
    assert not torch.equal(torch.stack(spikes).float(), O)
