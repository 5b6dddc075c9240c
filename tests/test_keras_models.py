"""Keras-style models end to end: training on sklearn digits, evaluate/predict, summary, save/load, errors."""

import json
import os

import lightning.pytorch as pl
import pytest
import torch

import spaic_train as st
from spaic_train.keras import Conv2dSyn, Dropout, Feedback, Flatten, Full, Input, Model, Sequential, SparseRandom
from spaic_train.training.metrics import accuracy

FIT = dict(logger=False, enable_progress_bar=False)


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Tiny nets on a shared 2-core machine: one intra-op thread is much faster than oversubscribing."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="module")
def digits():
    """sklearn digits as [N, 1, 8, 8] images in [0, 1] (pixel / 16), seeded stratified 75/25 split."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    d = load_digits()
    x = torch.tensor(d.images[:, None] / 16.0, dtype=torch.float32)
    y = torch.tensor(d.target, dtype=torch.int64)
    tr, va = train_test_split(range(len(y)), test_size=0.25, stratify=d.target, random_state=0)
    return x[tr], y[tr], x[va], y[va]


@pytest.fixture(scope="module")
def trained_conv(digits):
    """A Sequential conv net (conv + max pool + dropout, then Full) trained on digits."""
    xtr, ytr, xva, yva = digits
    torch.manual_seed(0)
    model = Sequential([
        Input((1, 8, 8), encoder="direct"),
        Conv2dSyn(16, kernel_size=3, padding=1, pool="max", dropout=0.1, name="conv"),   # -> (16, 4, 4)
        Flatten(),
        Full(10, name="out"),
    ], time_steps=4, decoder="spike_rate")
    model.compile(optimizer="adam", lr=1e-2, loss="ce_rate", metrics=["accuracy"], scheduler="cosine")
    history = model.fit(xtr, ytr, epochs=8, batch_size=64, validation_data=(xva, yva), seed=0, **FIT)
    return model, history


def test_sequential_conv_net_trains_on_digits(trained_conv, digits):
    model, history = trained_conv
    xtr, ytr, xva, yva = digits
    assert model.get_layer("out").connections[0].syn_type == ["flatten", "basic"]
    assert model.get_layer("conv").connections[0].syn_type == ["conv", "maxpool", "dropout"]
    assert len(history.history["val_accuracy"]) == 8
    assert history.history["val_accuracy"][-1] >= 0.90, history.history
    res = model.evaluate(xva, yva, batch_size=128)
    assert set(res) == {"loss", "accuracy"} and res["accuracy"] >= 0.90
    pred = model.predict(xva, batch_size=128)
    assert pred.shape == (len(yva), 10)
    assert abs(accuracy(pred, yva).item() - res["accuracy"]) < 1e-6


def test_functional_model_with_delayed_feedback_trains_on_digits(digits):
    xtr, ytr, xva, yva = digits
    torch.manual_seed(0)
    x = Input((1, 8, 8))
    flat = Flatten()(x)
    h = Full(64, name="h")(flat)
    skip = Dropout(0.1)(flat)
    y = Full(10, name="out")([h, skip])                              # two inputs: the currents sum
    model = Model(x, y, time_steps=6, feedback=[Feedback("out", "h", max_delay=3.0)])
    fb = model.fb_out_to_h
    assert fb.delay.shape == (64, 10) and 1.0 <= float(fb.delay.min()) and float(fb.delay.max()) <= 3.0
    assert any(stage.stepped for stage in model.compile_plan().stages)   # the h <-> out cycle runs step by step
    model.compile(optimizer="adam", lr=1e-2, loss="ce_rate", scheduler="cosine")
    history = model.fit(xtr, ytr, epochs=6, batch_size=64, validation_data=(xva, yva), seed=0, **FIT)
    assert history.history["val_accuracy"][-1] >= 0.90, history.history


def test_save_and_load_model_round_trip(trained_conv, digits, tmp_path):
    model, history = trained_conv
    xtr, ytr, xva, yva = digits
    path = tmp_path / "sub" / "digits.pt"
    model.save(path)
    assert sorted(os.listdir(path.parent)) == ["digits.pt"]              # atomic: no temp file left behind
    raw = torch.load(path, weights_only=True)                            # plain data, loadable safely
    assert raw["format"] == "spaic_train.keras" and raw["class_name"] == "Sequential"
    assert json.loads(raw["config"])["layers"][1]["class_name"] == "Conv2dSyn"

    loaded = st.load_model(path)
    assert type(loaded) is Sequential and loaded.summary(print_fn=None) == model.summary(print_fn=None)
    for k, v in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[k], v), k
    assert torch.equal(loaded.predict(xva, batch_size=128), model.predict(xva, batch_size=128))

    # optimizer state restored, and used by the next fit
    saved = model.optimizer.state_dict()
    restored = loaded.optimizer_state_dict()
    assert restored["param_groups"][0]["lr"] == saved["param_groups"][0]["lr"]
    for i, st_i in saved["state"].items():
        for key, val in st_i.items():
            assert torch.equal(restored["state"][i][key], val)
    steps = int(saved["state"][0]["step"])
    assert steps == history.params["steps"]
    modes = []

    class Mode(pl.Callback):
        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            modes.append(all(m.training for m in pl_module.network.modules()))

    loaded.fit(xtr[:128], ytr[:128], epochs=1, batch_size=64, callbacks=[Mode()], **FIT)
    assert modes == [True, True]                                        # a loaded (eval) model trains in train mode
    assert int(loaded.optimizer.state_dict()["state"][0]["step"]) == steps + 2
    assert loaded.module.lr == 1e-2


def test_save_load_restores_masks_delays_batchnorm_stats_and_learnable_tau(tmp_path):
    torch.manual_seed(1)
    model = Sequential([
        Input((1, 8, 8)),
        Conv2dSyn(4, padding=1, batchnorm=True, pool="avg", name="c"),
        Flatten(),
        SparseRandom(16, density=0.4, neuron="plif", max_delay=3.0, name="h"),
        Full(10, weight=torch.randn(10, 16), bias=True, name="out"),
    ], time_steps=5, feedback=[Feedback("out", "h", max_delay=2.0)])
    model.train()
    model(torch.rand(16, 1, 8, 8))                                      # moves the batch-norm running stats
    with torch.no_grad():
        model.get_layer("h").group.neuron.log_tau.add_(0.3)
    model.eval()
    x = torch.rand(8, 1, 8, 8)
    expected = model(x)
    model.save(tmp_path / "m.pt")
    state = torch.random.get_rng_state()
    loaded = st.load_model(tmp_path / "m.pt")
    assert torch.equal(torch.random.get_rng_state(), state)             # loading does not consume the RNG
    assert loaded.module is None                                         # never compiled: loads uncompiled
    sd = loaded.state_dict()
    assert {"c_to_h.mask", "c_to_h.delay", "input_to_c.synapses.1.bn.running_mean", "fb_out_to_h.delay",
            "h.neuron.log_tau", "h_to_out.bias"} <= set(sd)
    for k, v in model.state_dict().items():
        assert torch.equal(sd[k], v), k
    assert torch.equal(loaded(x), expected)


def test_summary_content(capsys):
    model = Sequential([Input((1, 8, 8)), Conv2dSyn(8, pool="max", name="conv"), Flatten(),
                        Full(32, neuron="plif", neuron_kwargs={"tau": 2.0}, max_delay=2.0, delay=2.0, name="h"),
                        Full(10, name="out")], time_steps=4, feedback=[Feedback("out", "h", max_delay=3.0, delay=3.0)])
    text = model.summary()
    assert capsys.readouterr().out.strip() == text.strip()
    lines = text.splitlines()
    row = {line.split()[0]: line for line in lines if line and line.split()[0] in
           ("input", "conv", "flatten", "h", "out", "fb_out_to_h")}
    assert "(1, 8, 8)" in row["input"] and "encoder=direct" in row["input"]
    assert "(8, 3, 3)" in row["conv"] and "80" in row["conv"] and "lif" in row["conv"]
    assert "(72,)" in row["flatten"] and "folded" in row["flatten"]
    assert "(32,)" in row["h"] and "plif(tau=2)" in row["h"] and "2,337" in row["h"] and "2 ms" in row["h"]
    assert "330" in row["out"] and "h" in row["out"].split()[-1]
    assert "Feedback" in row["fb_out_to_h"] and "3 ms" in row["fb_out_to_h"] and "320" in row["fb_out_to_h"]
    total = 72 + 8 + 72 * 32 + 32 + 1 + 32 * 10 + 10 + 10 * 32  # weights, biases (the default), log_tau
    assert f"Total params: {total:,}" in text and model.count_params() == total
    assert "time_steps=4" in lines[0]


def test_input_shape_and_label_errors_come_before_training(digits):
    xtr, ytr, _, _ = digits
    model = Sequential([Input((1, 8, 8)), Flatten(), Full(10)], time_steps=2)
    with pytest.raises(RuntimeError, match="compile"):
        model.fit(xtr, ytr)
    model.compile()
    with pytest.raises(ValueError, match=r"\[20, 64\].*'input'.*\(1, 8, 8\)"):
        model.predict(xtr[:20].reshape(20, 64))
    with pytest.raises(ValueError, match=r"\[20, 64\].*\(1, 8, 8\)"):
        model.fit(xtr[:20].reshape(20, 64), ytr[:20])
    with pytest.raises(ValueError, match=r"labels.*\[0, 10\).*\[0, 12\].*'full'"):
        model.fit(xtr[:20], torch.arange(20) % 13, **FIT)
    with pytest.raises(ValueError, match=r"validation_data\[1\].*labels"):
        model.fit(xtr[:20], ytr[:20], validation_data=(xtr[:5], torch.full((5,), -1)), **FIT)
    assert model.optimizer is None                                      # no trainer ever ran
    no_t = Sequential([Input(4), Full(2)])
    with pytest.raises(ValueError, match="needs time_steps"):
        no_t.predict(torch.rand(3, 4))


def test_compile_options_and_unserializable_loss(tmp_path):
    model = Sequential([Input(4), Full(3)], time_steps=2)
    model.compile(optimizer=torch.optim.SGD, lr=0.1, loss=lambda out, y: out.sum(), metrics=None,
                  scheduler="cosine")
    model.save(tmp_path / "m.pt")
    assert st.load_model(tmp_path / "m.pt").module is None               # a lambda loss is not saved
    with pytest.raises(ValueError, match="unknown loss"):
        model.compile(loss="crossentropy_typo")
