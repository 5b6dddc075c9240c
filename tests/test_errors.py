"""Bad input → a clear error, raised early.  One row per case of docs/errors.md (same ids).

Each case is a zero-argument callable that must raise ``exc`` with every key word of ``words`` in its message
(case-insensitive).  Cases run at construction, ``compile`` or ``fit`` start — none needs a training step.
"""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from event_error_cases import EVENT_CASES
from extras import require
from layer_cases import LAYER_CASES

import spaic_train as spaic
from spaic_train.training import SNNModule, fit, predict
from spaic_train.training.resume import ResumableRandomSampler

QUIET = dict(enable_progress_bar=False, logger=False, accelerator="cpu", devices=1)


# ------------------------------------------------------------------------------------------------ helpers
def grp(n=4, **kw):
    return spaic.NeuronGroup(n, model="lif", **kw)


def enc(shape=(4,), **kw):
    return spaic.Encoder(shape=shape, coding="poisson", **kw)


def small_net(n_in=4, n_out=3, T=4, readout="lif"):
    net = spaic.Network(time_steps=T)
    net.input = enc((n_in,))
    net.out = grp(n_out) if readout == "lif" else spaic.NeuronGroup(n_out, model=readout)
    net.c = spaic.Connection(net.input, net.out, link_type="full")
    net.dec = spaic.Decoder(net.out, coding="spike_counts")
    return net


def fit_net(x, y, net=None, **kw):
    net = net or small_net()
    return fit(SNNModule(net), x, y, **{"epochs": 1, "batch_size": 4, **QUIET, **kw})


X = torch.rand(8, 4)
Y = torch.randint(0, 3, (8,))
#: float labels with a non-integral value (Y / 2 of a random Y has none when Y is all even)
HALF_LABELS = np.array([0, 1, 2, 1, 0, 2, 1, 0], dtype=np.float32) / 2


def _model_ending_on_pooled_spikes():
    from spaic_train.layers import Conv2dSyn, Input

    return spaic.Sequential([Input((1, 8, 8)), Conv2dSyn(4, pool="max", pool_position="after", name="conv")])


def with_nan(x):
    x = x.clone()
    x[3, 1] = float("nan")
    return x


def feedback_net_runs():
    """Auto-handled: a loop of zero-delay connections runs (feedback reads >= 1 step back)."""
    net = spaic.Network(time_steps=5)
    net.input = enc((4,))
    net.a = grp(4)
    net.b = grp(4)
    net.ab = spaic.Connection(net.a, net.b)  # forward
    net.inp = spaic.Connection(net.input, net.a)
    net.ba = spaic.Connection(net.b, net.a)  # closes the cycle, max_delay=0
    out = net(torch.rand(2, 4))
    assert out.shape == (5, 2, 4) and torch.isfinite(out).all()
    assert net.ba.min_delay_steps == 1 and net.ab.min_delay_steps == 0
    return "ok"


def keras_model(n_out=3):
    from spaic_train.keras import Sequential
    from spaic_train.keras.layers import Full, Input

    return Sequential([Input((4,)), Full(n_out, name="out")], time_steps=4)


def keras_fit(x, y, **kw):
    m = keras_model()
    m.compile(optimizer="adam", loss="ce_rate")
    return m.fit(x, y, epochs=1, **{**QUIET, **kw})


def integral_float_labels_fit():
    """Auto-handled: float labels holding whole numbers are class indices, cast to int64 at fit start."""
    h = fit_net(X, Y.float())
    assert len(h.history["loss"]) == 1
    m = keras_model()
    m.compile(optimizer="adam", loss="ce_rate")
    assert set(m.evaluate(X, Y.numpy().astype(np.float32), **QUIET)) >= {"loss"}
    return "ok"


def keras_evaluate(x, y):
    m = keras_model()
    m.compile(optimizer="adam", loss="ce_rate")
    return m.evaluate(x, y, **QUIET)


def _model_file(tmp: str, kind: str) -> str:
    """A path to load_model: a text file, a directory, a truncated model file or a training checkpoint."""
    path = os.path.join(tmp, "model.pt")
    if kind == "directory":
        return tmp
    if kind == "text":
        with open(path, "w") as fh:
            fh.write("layers: [Full(3)]\n")
        return path
    m = keras_model()
    m.save(path)
    if kind == "truncated":
        with open(path, "rb") as fh:
            raw = fh.read()
        with open(path, "wb") as fh:
            fh.write(raw[: len(raw) // 2])
    elif kind == "checkpoint":
        torch.save({"state_dict": m.state_dict(), "epoch": 3}, path)
    return path


def load_model_case(kind: str):
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        path = _model_file(tmp, kind)
        if kind == "directory":  # a saved model inside: the message names it
            keras_model().save(os.path.join(tmp, "digits.pt"))
        spaic.load_model(path)


def config_unknown_key():
    from omegaconf import OmegaConf

    from spaic_train.config import TrainerConfig

    base = OmegaConf.structured(TrainerConfig)
    OmegaConf.merge(base, OmegaConf.create({"max_epoch": 1}))


def _composed(*overrides: str):
    from hydra import compose, initialize_config_dir

    from spaic_train.cli import CONFIG_DIR
    from spaic_train.config import register_configs

    register_configs()
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        return compose(config_name="config", overrides=list(overrides))


def config_added_unknown_key():
    from spaic_train.config import validate_config

    validate_config(_composed("+trainer.max_epoch=1"))


def run_missing_dataset():
    from spaic_train.cli import build_datamodule_from_config, load_data

    cfg = _composed("recipe=mnist_fc", "paths.data=/nonexistent/datasets")
    load_data(build_datamodule_from_config(cfg.data), cfg)


def config_bad_type():
    from omegaconf import OmegaConf

    from spaic_train.config import TrainerConfig

    base = OmegaConf.structured(TrainerConfig)
    OmegaConf.merge(base, OmegaConf.create({"max_epochs": "abc"}))


def config_unknown_layer():
    from spaic_train.cli import build_model

    build_model({"input": {"shape": [4]}, "layers": [{"type": "Ful", "units": 3}]})


def config_bad_layer_arg():
    from spaic_train.cli import build_model

    build_model({"input": {"shape": [4]}, "layers": [{"type": "Full", "units": 3, "neuronz": "lif"}]})


def _layer(**kw):
    """Neuron and surrogate names are checked by the layer constructor."""
    from spaic_train.keras.layers import Full

    Full(3, **kw)


def config_unknown_init():
    from spaic_train.cli import resolve_initializers

    resolve_initializers({"init": "kaiming_unifrom"}, "model.layers[0].weight")


def config_bad_delay_sigma():
    from spaic_train.cli import compile_kwargs

    compile_kwargs({"optimizer": {"name": "adam", "lr": 1e-3, "delay_sigma": {"start": -1.0, "epochs": 5}},
                    "model": {"loss": "ce"}})


def _omegaconf_errors():
    from omegaconf.errors import ConfigKeyError, ValidationError

    return ConfigKeyError, ValidationError


# ------------------------------------------------------------------------------------------------ NIR cases
def _nir():
    """The nir package, or a skip of the case (it propagates through ``pytest.raises``)."""
    return require("nir", "nir")


def nir_export(net, **kw):
    _nir()
    from spaic_train.nir import export

    return export(net, **kw)


def nir_net(model="lif", link="full", post_shape=(4,), **conn):
    net = spaic.Network()
    net.input = enc((4,))
    net.h = spaic.NeuronGroup(shape=post_shape, **({"model": model} if isinstance(model, str) else model))
    net.c = spaic.Connection(net.input, net.h, link_type=link, **conn)
    return net


def nir_membrane_net():
    net = nir_net()
    net.o = grp(2)
    net.v = spaic.Connection(net.h, net.o, pre_var_name="V")
    return net


def nir_conv_net(**conn):
    net = spaic.Network()
    net.input = spaic.Encoder(shape=(1, 4, 4), coding="direct")
    net.h = spaic.NeuronGroup(shape=None)
    net.c = spaic.Connection(net.input, net.h, link_type="conv", out_channels=2, kernel_size=3, **conn)
    return net


def readme_keras_model():
    from spaic_train.keras import Sequential
    from spaic_train.keras.layers import Conv2dSyn, Flatten, Full, Input

    return Sequential([Input((1, 8, 8)), Conv2dSyn(4, kernel_size=3, padding=1, pool="max", name="conv"), Flatten(),
                       Full(10, name="out")], time_steps=4)


def nir_graph(*middle, edges=None, metadata=None):
    """Input(4) → ``middle`` nodes in a row → Output, with ``metadata`` (default: dt = 1 ms)."""
    nir = _nir()
    nodes = {"x": nir.Input(np.array([4]))}
    names = ["x"]
    for i, node in enumerate(middle):
        nodes[f"n{i}"] = node
        names.append(f"n{i}")
    nodes["y"] = nir.Output(np.array([1]))
    names.append("y")
    edges = edges or list(zip(names, names[1:]))
    return nir.NIRGraph(nodes=nodes, edges=edges, metadata={"dt": 1e-3} if metadata is None else metadata,
                        type_check=False)


def nir_lif(n=3, tau=0.01, **kw):
    nir = _nir()
    tau = np.full(n, tau) if np.isscalar(tau) else np.asarray(tau)
    return nir.LIF(tau=tau, r=np.ones(n), v_leak=np.zeros(n), v_threshold=np.ones(n), **kw)


def nir_load(graph, **kw):
    from spaic_train.nir import load

    return load(graph, **kw)


def nir_mixed_links():
    nir = _nir()
    from spaic_train.keras.nir_models import from_nir as load_model

    graph = nir.NIRGraph(nodes={"x": nir.Input(np.array([3])), "a": nir.Linear(np.ones((3, 3))),
                                "s": nir.Scale(np.ones(3)), "h": nir_lif(3), "y": nir.Output(np.array([3]))},
                         edges=[("x", "a"), ("x", "s"), ("a", "h"), ("s", "h"), ("h", "y")],
                         metadata={"dt": 1e-3}, type_check=False)
    return load_model(graph)


def _conv(*args, **kw):
    from spaic_train.keras.layers import Conv2dSyn

    return Conv2dSyn(*args, **kw)


def _image_input(shape=(4, 8, 8)):
    from spaic_train.keras.layers import Input

    return Input(shape)


def identity_shortcut_shape_mismatch():
    x = _image_input()
    h = _conv(8, padding=1)(x)
    _conv(8, padding=1, shortcut="identity")([h, x])


def decode_mixed_sizes():
    import tempfile

    from PIL import Image

    from spaic_train.data.decoded import decoded_images

    d = Path(tempfile.mkdtemp())
    Image.new("RGB", (8, 8)).save(d / "a.png")
    Image.new("RGB", (16, 8)).save(d / "b.png")
    decoded_images([(str(d / "a.png"), 0), (str(d / "b.png"), 0)], d, cache_dir=d / "cache")


def _cifar(**kw):
    from spaic_train.data import CIFAR10DataModule

    return CIFAR10DataModule(**kw)


def config_unknown_inbound():
    from spaic_train.cli import build_model

    build_model({"input": {"shape": [4]}, "layers": [{"type": "Full", "units": 3, "name": "h"},
                                                    {"type": "Full", "units": 3, "inbound": ["nope"]}]})


def config_bad_early_stopping():
    from spaic_train.recipe import early_stopping

    early_stopping({"enabled": True, "monitor": "val_loss", "patience": 2, "mode": "largest"})


# ------------------------------------------------------------------------------------------------ the table
# (id, callable, exception type, key words)
def buffer_pool_limit_from_env(value):
    from spaic_train.neurons.kernels import buffers

    old = os.environ.get("SPAIC_TRAIN_BUFFER_POOL_MB")
    os.environ["SPAIC_TRAIN_BUFFER_POOL_MB"] = value
    try:
        return buffers._pool_limit()
    finally:
        if old is None:
            del os.environ["SPAIC_TRAIN_BUFFER_POOL_MB"]
        else:
            os.environ["SPAIC_TRAIN_BUFFER_POOL_MB"] = old


# ------------------------------------------------------------------------------ the command line (python train.py)
def _in_tmp(fn):
    """``fn(tmp_dir)`` run with a fresh temporary directory as the working directory."""
    import tempfile

    cwd = os.getcwd()
    with tempfile.TemporaryDirectory() as tmp:
        os.chdir(tmp)
        try:
            return fn(tmp)
        finally:
            os.chdir(cwd)


def cli_resume(kind: str):
    """``trainer.resume=<file>`` checked before the run starts: a missing, text, truncated file or ``last``."""
    from pathlib import Path

    from spaic_train.recipe import resume_checkpoint

    def check(tmp):
        path = Path(tmp) / "x.ckpt"
        if kind == "text":
            path.write_text("not a checkpoint")
        elif kind == "truncated":
            torch.save({"state_dict": {"w": torch.zeros(1000)}}, path)
            path.write_bytes(path.read_bytes()[:2000])
        return resume_checkpoint("last" if kind == "last" else str(path), Path(tmp))

    return _in_tmp(check)


def cli_gpu_absent():
    """``trainer.accelerator=gpu`` where PyTorch sees no GPU (as on this machine)."""
    from spaic_train import recipe

    visible, recipe._gpu_visible = recipe._gpu_visible, lambda: False
    try:
        recipe.check_accelerator("gpu")
    finally:
        recipe._gpu_visible = visible


def cli_arguments(*argv):
    from spaic_train.cli import _checked_arguments

    return _in_tmp(lambda tmp: _checked_arguments(list(argv)))


def cli_locked_run_dir():
    from spaic_train.run_dir import RunDirLock

    def lock_twice(tmp):
        with RunDirLock(tmp), RunDirLock(tmp):
            pass

    return _in_tmp(lock_twice)


def cli_compile_kwargs(**optimizer):
    from spaic_train.recipe import compile_kwargs

    return compile_kwargs({"optimizer": {"name": "adam", **optimizer}, "model": {}})


CASES = [
    # --- NeuronGroup / Encoder / Decoder --------------------------------------------------------------------
    ("group-unknown-model", lambda: spaic.NeuronGroup(4, model="lf"), ValueError,
     ["unknown neuron model", "'lf'", "valid", "lif", "did you mean"]),
    ("group-unknown-surrogate", lambda: spaic.NeuronGroup(4, model="lif", surrogate="sigmod"), ValueError,
     ["unknown surrogate", "valid", "did you mean", "sigmoid"]),
    ("group-bad-num", lambda: spaic.NeuronGroup(-3), ValueError, ["num must be a positive int", "-3"]),
    ("group-num-shape-mismatch", lambda: spaic.NeuronGroup(10, shape=(3, 3)), ValueError,
     ["num=10", "does not match shape"]),
    ("group-bad-shape-type", lambda: spaic.NeuronGroup(shape="abc"), TypeError, ["shape must be an int"]),
    ("group-bad-param", lambda: spaic.NeuronGroup(4, model="lif", tau=-1.0), ValueError, ["tau", "-1"]),
    ("encoder-unknown-coding", lambda: spaic.Encoder(shape=(4,), coding="poison"), ValueError,
     ["unknown", "poison", "did you mean", "poisson"]),
    ("decoder-unknown-coding", lambda: spaic.Decoder(grp(), coding="spike_count"), ValueError,
     ["unknown", "spike_count", "did you mean", "spike_counts"]),
    # --- Connection -----------------------------------------------------------------------------------------
    ("conn-pre-not-assembly", lambda: spaic.Connection(torch.zeros(3), grp()), TypeError,
     ["pre must be an assembly"]),
    ("conn-unknown-link", lambda: spaic.Connection(grp(), grp(), link_type="ful"), ValueError,
     ["unknown link type", "'ful'", "did you mean", "full"]),
    ("conn-unknown-syn", lambda: spaic.Connection(grp(), grp(), syn_type=["basci"]), ValueError,
     ["unknown", "basci", "did you mean", "basic"]),
    ("conn-weight-shape", lambda: spaic.Connection(grp(4), grp(3), weight=torch.zeros(4, 4)), ValueError,
     ["weight", "shape", "(3, 4)"]),
    ("conn-conv-shape-mismatch",
     lambda: spaic.Connection(spaic.Encoder(shape=(1, 8, 8)), spaic.NeuronGroup(shape=(4, 5, 5)), link_type="conv",
                              in_channels=1, out_channels=4, kernel_size=3, padding=1), ValueError,
     ["produces shape", "(4, 8, 8)", "post"]),
    ("conn-one-to-one-mismatch", lambda: spaic.Connection(grp(4), grp(5), link_type="one_to_one"), ValueError,
     ["one_to_one", "4", "5"]),
    ("conn-unknown-kwarg", lambda: spaic.Connection(grp(), grp(), kernel_sise=3), TypeError,
     ["unknown", "kernel_sise"]),
    ("conn-bad-pre-var", lambda: spaic.Connection(grp(), grp(), pre_var_name="X"), ValueError,
     ["pre_var_name", "not allowed"]),
    ("conn-wmin-gt-wmax", lambda: spaic.Connection(grp(), grp(), w_min=1.0, w_max=0.0), ValueError,
     ["w_min", "larger than", "w_max"]),
    ("delay-negative-max", lambda: spaic.Connection(grp(), grp(), max_delay=-1.0), ValueError,
     ["max_delay must be >= 0"]),
    ("delay-without-max", lambda: spaic.Connection(grp(), grp(), delay=torch.ones(4, 4)), ValueError,
     ["max_delay=0", "delay"]),
    ("delay-min-gt-max", lambda: spaic.Connection(grp(), grp(), max_delay=2.0, min_delay=5.0), ValueError,
     ["min_delay", "5"]),
    ("delay-out-of-range", lambda: spaic.Connection(grp(), grp(), max_delay=2.0, delay=torch.full((4, 4), 7.0)),
     ValueError, ["delay", "max_delay"]),
    ("delay-wrong-shape", lambda: spaic.Connection(grp(), grp(), max_delay=2.0, delay=torch.ones(3)), ValueError,
     ["delay has shape", "(3,)"]),
    ("delay-learn-without-max", lambda: spaic.Connection(grp(), grp(), learn_delay=True), ValueError,
     ["learn_delay=true", "max_delay=0", "max_delay (ms) > 0"]),
    ("delay-learn-alias-conflict",
     lambda: spaic.Connection(grp(), grp(), max_delay=2.0, learn_delay=True, delay_learnable=False), ValueError,
     ["learn_delay=true", "delay_learnable=false", "disagree"]),
    ("delay-learn-not-bool", lambda: spaic.Connection(grp(), grp(), max_delay=2.0, learn_delay="yes"), TypeError,
     ["learn_delay must be true or false", "'yes'"]),
    ("delay-learn-below-min",
     lambda: spaic.Connection(grp(), grp(), max_delay=4.0, min_delay=2.0, delay=1.0, learn_delay=True), ValueError,
     ["learnable delay 1.0 ms", "below min_delay=2.0"]),
    ("delay-sigma-negative",
     lambda: spaic.Connection(grp(), grp(), max_delay=2.0, learn_delay=True, delay_sigma=-0.5), ValueError,
     ["delay_sigma", ">= 0", "-0.5"]),
    ("delay-sigma-without-learn", lambda: spaic.Connection(grp(), grp(), max_delay=2.0, delay_sigma=1.0), ValueError,
     ["delay_sigma", "learn_delay=true"]),
    # --- Network --------------------------------------------------------------------------------------------
    ("net-time-steps-0", lambda: spaic.Network(time_steps=0), ValueError, ["time_steps must be an int >= 1", "0"]),
    ("net-call-time-steps-0", lambda: small_net()(torch.rand(2, 4), time_steps=0), ValueError,
     ["time_steps must be an int >= 1"]),
    ("net-dt-0", lambda: spaic.Network(dt=0), ValueError, ["dt must be a positive number"]),
    ("net-no-encoder", lambda: _net_without_encoder()(torch.rand(2, 4)), ValueError, ["no encoder"]),
    ("net-foreign-group", lambda: _net_with_foreign_group()(torch.rand(2, 4)), ValueError,
     ["not part of the network"]),
    ("net-wrong-input-shape", lambda: small_net()(torch.rand(2, 5)), ValueError, ["expected input", "[b, 4]"]),
    ("net-bad-mode", lambda: small_net()(torch.rand(2, 4), mode="fast"), ValueError, ["mode must be one of"]),
    ("net-zero-delay-loop", feedback_net_runs, None, []),
    # --- fit / SNNModule ------------------------------------------------------------------------------------
    ("fit-nan-input", lambda: fit_net(with_nan(X), Y), ValueError, ["non-finite", "nan", "sample 3"]),
    ("fit-inf-val-input", lambda: fit_net(X, Y, validation_data=(X * float("inf"), Y)), ValueError,
     ["x_val", "non-finite", "inf"]),
    ("fit-label-out-of-range", lambda: fit_net(X, torch.full((8,), 7)), ValueError,
     ["labels", "[0, 3)", "7", "output", "out"]),
    ("fit-negative-label", lambda: fit_net(X, torch.full((8,), -1)), ValueError, ["labels", "[0, 3)", "-1"]),
    ("fit-wrong-input-shape", lambda: fit_net(torch.rand(8, 6), Y), ValueError,
     ["samples have shape [6]", "encoder", "expects", "[4]"]),
    ("fit-empty-data", lambda: fit_net(torch.zeros(0, 4), torch.zeros(0, dtype=torch.long)), ValueError,
     ["empty", "0 samples"]),
    ("fit-length-mismatch", lambda: fit_net(X, Y[:5]), ValueError, ["8 samples", "labels"]),
    ("fit-no-targets", lambda: fit_net(X, None), ValueError, ["needs targets"]),
    ("fit-epochs-0", lambda: fit_net(X, Y, epochs=0), ValueError, ["epochs must be a positive int"]),
    ("fit-batch-size-0", lambda: fit(SNNModule(small_net()), X, Y, batch_size=0, **QUIET), ValueError,
     ["batch_size must be a positive int"]),
    ("fit-bad-split", lambda: fit_net(X, Y, validation_split=1.5), ValueError, ["validation_split"]),
    ("fit-bad-on-nan", lambda: fit_net(X, Y, on_nan="skipp"), ValueError, ["on_nan must be one of", "skip"]),
    ("fit-resume-missing", lambda: fit_net(X, Y, resume="/nonexistent/x.ckpt"), FileNotFoundError,
     ["does not exist", "/nonexistent/x.ckpt"]),
    ("fit-resume-last-no-dir", lambda: fit_net(X, Y, resume="last"), ValueError, ["needs checkpoint_dir"]),
    ("fit-float-labels", lambda: fit_net(X, torch.full((8,), 0.5)), ValueError,
     ["network", "y", "class indices", "torch.float32", "non-integral", "0.5"]),
    ("fit-float-labels-integral", integral_float_labels_fit, None, []),
    ("evaluate-float-labels", lambda: keras_evaluate(X, HALF_LABELS), ValueError,
     ["sequential", "y", "class indices", "float32", "non-integral", "0.5"]),
    ("load-model-missing", lambda: spaic.load_model("/nonexistent/model.pt"), FileNotFoundError,
     ["model file", "/nonexistent/model.pt", "does not exist"]),
    ("load-model-text-file", lambda: load_model_case("text"), ValueError,
     ["model file", "model.pt", "not a pytorch file", "b'laye'"]),
    ("load-model-directory", lambda: load_model_case("directory"), IsADirectoryError,
     ["model file", "is a directory", "digits.pt"]),
    ("load-model-corrupt", lambda: load_model_case("truncated"), ValueError,
     ["model file", "model.pt", "truncated or corrupt", "model.save"]),
    ("load-model-not-a-model", lambda: load_model_case("checkpoint"), ValueError,
     ["model file", "model.pt", "not a spaic_train keras model file", "model.save"]),
    ("loss-unknown", lambda: SNNModule(small_net(), loss="ce_rat"), ValueError,
     ["unknown loss", "did you mean", "ce_rate"]),
    ("optimizer-unknown", lambda: SNNModule(small_net(), optimizer="adamm"), ValueError,
     ["unknown optimizer", "did you mean", "adam"]),
    ("scheduler-unknown", lambda: SNNModule(small_net(), scheduler="cosin"), ValueError,
     ["unknown", "scheduler", "did you mean", "cosine"]),
    ("metric-unknown", lambda: SNNModule(small_net(), metrics=["acuracy"]), ValueError,
     ["unknown", "metric", "did you mean", "accuracy"]),
    ("delay-sigma-schedule-start", lambda: SNNModule(small_net(), delay_sigma={"start": 0.0, "epochs": 5}),
     ValueError, ["delay_sigma", "start must be > 0", "0.0"]),
    ("delay-sigma-schedule-end", lambda: SNNModule(small_net(), delay_sigma={"start": 1.0, "end": 2.0, "epochs": 5}),
     ValueError, ["delay_sigma", "end must lie in [0, start=1.0]", "2.0"]),
    ("delay-sigma-schedule-epochs", lambda: SNNModule(small_net(), delay_sigma={"start": 1.0, "epochs": 0}),
     ValueError, ["delay_sigma", "epochs must be an int >= 1", "0"]),
    ("delay-sigma-schedule-key", lambda: SNNModule(small_net(), delay_sigma={"start": 1.0, "epoch": 5}),
     ValueError, ["delay_sigma", "unknown key", "epoch", "start, end, epochs"]),
    ("delay-lr-negative", lambda: SNNModule(small_net(), delay_lr=-1.0), ValueError, ["delay_lr", ">= 0", "-1.0"]),
    # --- keras layers / models ------------------------------------------------------------------------------
    ("layer-bad-units", lambda: __import__("spaic_train.keras.layers", fromlist=["Full"]).Full(0), ValueError,
     ["units", "positive"]),
    ("layer-unknown-neuron", lambda: _layer(neuron="lf"), ValueError,
     ["full", "unknown neuron model", "did you mean", "lif"]),
    ("model-wrong-input-shape", lambda: keras_fit(torch.rand(8, 6), Y), ValueError,
     ["has shape [8, 6]", "expects samples of shape", "input"]),
    ("model-label-out-of-range", lambda: keras_fit(X, torch.full((8,), 5)), ValueError,
     ["labels", "[0, 3)", "output layer", "out"]),
    ("model-fit-before-compile", lambda: keras_model().fit(X, Y), RuntimeError, ["compile"]),
    ("model-unknown-loss", lambda: keras_model().compile(loss="mse_cont"), ValueError,
     ["unknown loss", "did you mean", "mse_count"]),
    ("model-ends-on-pooled-spikes", lambda: _model_ending_on_pooled_spikes(), ValueError,
     ["sequential", "output conv", "maxpool", "pool_position='after'", "end the model with a neuron layer"]),
    ("group-bad-decay-input", lambda: spaic.NeuronGroup(4, model="plif", decay_input=1), ValueError,
     ["decay_input must be a bool", "1"]),
    # --- configs (Hydra) ------------------------------------------------------------------------------------
    ("config-unknown-key", config_unknown_key, "ConfigKeyError", ["max_epoch"]),
    ("config-bad-type", config_bad_type, "ValidationError", ["max_epochs", "abc"]),
    ("config-added-unknown-key", config_added_unknown_key, ValueError,
     ["trainer.max_epoch", "unknown config key", "did you mean trainer.max_epochs?", "valid keys of trainer"]),
    ("run-missing-dataset", run_missing_dataset, FileNotFoundError,
     ["mnist files not found", "data.root='${paths.data}/mnist'", "paths.data='/nonexistent/datasets'",
      "spaic_train_data", "t10k-images-idx3-ubyte[.gz]"]),
    ("config-unknown-layer", config_unknown_layer, ValueError, ["model.layers[0]", "ful", "full"]),
    ("config-bad-layer-arg", config_bad_layer_arg, ValueError, ["model", "full", "neuronz", "accepted"]),
    ("config-unknown-init", config_unknown_init, ValueError, ["unknown initializer", "kaiming_unifrom",
                                                              "kaiming_uniform"]),
    ("config-bad-delay-sigma", config_bad_delay_sigma, ValueError, ["optimizer.delay_sigma", "start must be > 0"]),
    # --- NIR interchange (skipped without the nir package) ---------------------------------------------------
    ("nir-export-soft-reset", lambda: nir_export(nir_net({"model": "lif", "reset": "soft"})), ValueError,
     ["neurongroup('h')", "reset='soft'", "no nir form", "reset='hard'"]),
    ("nir-export-v-init", lambda: nir_export(nir_net({"model": "if", "v_init": 0.5})), ValueError,
     ["neurongroup('h')", "v_init=0.5", "no nir form", "no initial state", "v_init=0"]),
    ("nir-export-neuron-model", lambda: nir_export(nir_net("alif")), ValueError,
     ["neurongroup('h')", "'alif'", "adaptive-threshold", "convertible", "lif"]),
    ("nir-export-maxpool", lambda: nir_export(readme_keras_model()), ValueError,
     ["input_to_conv", "'maxpool'", "sumpool2d", "avgpool2d"]),
    ("nir-export-membrane-read", lambda: nir_export(nir_membrane_net()), ValueError,
     ["connection('v')", "reads 'v'", "pre_var_name='o'"]),
    ("nir-export-upscale", lambda: nir_export(nir_conv_net(upscale=2)), ValueError,
     ["connection('c')", "upscale", "no nir form"]),
    ("nir-export-batchnorm", lambda: nir_export(nir_net(syn_type=["batchnorm", "basic"])), ValueError,
     ["batchnorm", "folded", "directly follows the weight op"]),
    ("nir-export-reshape", lambda: nir_export(nir_net(post_shape=(2, 2, 1))), ValueError,
     ["connection('c')", "(2, 2, 1)", "no reshape"]),
    ("nir-export-not-network", lambda: nir_export(torch.nn.Linear(2, 2)), TypeError,
     ["spaic_train network", "linear"]),
    ("nir-export-bad-dt", lambda: nir_export(small_net(), dt=0.0), ValueError,
     ["dt must be a positive number of seconds"]),
    ("nir-load-no-dt", lambda: nir_load(nir_graph(_nir().Linear(np.ones((3, 4))), nir_lif(), metadata={})),
     ValueError, ["'n1' (lif)", "does not record its time step", "dt=", "1e-4"]),
    ("nir-load-unsupported-node",
     lambda: nir_load(nir_graph(_nir().CubaLIF(tau_syn=np.ones(4), tau_mem=np.ones(4), r=np.ones(4),
                                               v_leak=np.zeros(4), v_threshold=np.ones(4)))), ValueError,
     ["'n0'", "'cubalif'", "cannot be converted", "current-based", "convertible"]),
    ("nir-load-nonuniform",
     lambda: nir_load(nir_graph(_nir().Linear(np.ones((3, 4))), nir_lif(tau=[0.01, 0.02, 0.01]))), ValueError,
     ["'n1' (lif)", "tau differs between neurons", "one value per parameter"]),
    ("nir-load-tau-below-dt", lambda: nir_load(nir_graph(_nir().Linear(np.ones((3, 4))), nir_lif(tau=5e-4))),
     ValueError, ["'n1' (lif)", "tau=0.0005", "not longer than dt=0.001", "forward euler"]),
    ("nir-load-two-weights",
     lambda: nir_load(nir_graph(_nir().Linear(np.ones((3, 4))), _nir().Linear(np.ones((3, 3))), nir_lif())),
     ValueError, ["'n0' and 'n1'", "two weight nodes", "one weight op"]),
    ("nir-load-fractional-delay",
     lambda: nir_load(nir_graph(_nir().Delay(np.full(4, 1.5e-3)), _nir().Linear(np.ones((3, 4))), nir_lif())),
     ValueError, ["'n0' (delay)", "0.0015 s", "not a whole number of steps"]),
    ("nir-load-output-not-neuron", lambda: nir_load(nir_graph(_nir().Linear(np.ones((1, 4))))), ValueError,
     ["'y' (output)", "reads 'n0' (linear)", "neuron groups"]),
    ("nir-load-missing-file", lambda: _nir() and nir_load("/nonexistent/net.nir"), FileNotFoundError,
     ["no nir file", "/nonexistent/net.nir"]),
    ("nir-load-model-mixed-links", nir_mixed_links, ValueError,
     ["'h'", "keras layer", "one link type", "spaic_train.nir.load"]),
    # --- distributed (DDP) ------------------------------------------------------------------------------------
    ("predict-ddp-iterable", lambda: predict_two_processes(_Stream()), ValueError,
     ["predict on 2 processes", "map-style", "iterable", "devices=1"]),
    ("sampler-bad-shard", lambda: ResumableRandomSampler(range(8), seed=0).set_shard(2, 2), ValueError,
     ["set_shard", "rank", "[0, 2)", "2"]),
    # --- environment ------------------------------------------------------------------------------------------
    ("env-buffer-pool-size", lambda: buffer_pool_limit_from_env("2GB"), ValueError,
     ["SPAIC_TRAIN_BUFFER_POOL_MB", "'2GB'", "number of MiB", "0 disables"]),
    # --- CIFAR recipes: residual shortcuts, readout, augmentation, model graphs -------------------------------
    ("layer-bad-shortcut", lambda: _conv(4, shortcut="residual"), ValueError,
     ["shortcut must be one of", "'residual'", "identity", "projection"]),
    ("layer-shortcut-inputs", lambda: _conv(4, shortcut="auto")(_image_input()), ValueError,
     ["conv2dsyn", "needs exactly two inputs", "got 1"]),
    ("layer-identity-shortcut-shape", identity_shortcut_shape_mismatch, ValueError,
     ["shortcut='identity'", "output shape (8, 8, 8)", "(4, 8, 8)", "projection"]),
    ("conn-bad-is-parameter", lambda: spaic.Connection(grp(), grp(), is_parameter="no"), TypeError,
     ["is_parameter must be True or False", "'no'"]),
    ("neuron-integrator-negative-tau", lambda: spaic.NeuronGroup(4, model="leaky_integrator", tau=-1.0), ValueError,
     ["leaky_integrator", "tau", ">= 0", "-1"]),
    ("neuron-bad-v-init", lambda: spaic.NeuronGroup(4, model="if", name="h", v_init=float("nan")), ValueError,
     ["neurongroup('h')", "if", "v_init", "initial membrane potential", "finite number", "nan"]),
    ("data-bad-cutout", lambda: _cifar(cutout=-4), ValueError, ["data.cutout", ">= 0", "-4"]),
    ("data-unknown-autoaugment", lambda: _cifar(autoaugment="cifar"), ValueError,
     ["data.autoaugment", "'cifar'", "cifar10"]),
    ("data-bad-num-workers", lambda: _cifar(num_workers=-1), ValueError,
     ["data.num_workers", "'auto'", "int >= 0", "-1"]),
    ("data-bad-pin-memory", lambda: _cifar(pin_memory="yes"), ValueError, ["data.pin_memory", "'auto'", "'yes'"]),
    ("data-decode-mixed-sizes", decode_mixed_sizes, ValueError,
     ["decode once", "b.png", "16x8", "8x8", "data.decode_once=false"]),
    ("config-bad-early-stopping", config_bad_early_stopping, ValueError,
     ["trainer.early_stopping", "mode must be one of", "'largest'"]),
    ("config-unknown-inbound", config_unknown_inbound, ValueError,
     ["model.layers[1].inbound", "no earlier layer named 'nope'", "input"]),
    # --- the command line: python train.py (each stops the run: the message alone, exit 2, no run directory) ---
    ("cli-bad-batch-size", lambda: __import__("spaic_train.recipe", fromlist=["x"]).build_datamodule_from_config(
        {"name": "digits", "batch_size": -1}), ValueError, ["data.batch_size must be >= 1", "-1"]),
    ("cli-negative-lr", lambda: cli_compile_kwargs(lr=-1.0), ValueError, ["optimizer.lr", ">= 0", "-1.0"]),
    ("cli-gpu-absent", cli_gpu_absent, ValueError, ["trainer.accelerator=gpu", "no such device", "cpu"]),
    ("cli-resume-missing", lambda: cli_resume("missing"), ValueError, ["trainer.resume", "x.ckpt", "does not exist"]),
    ("cli-resume-corrupt", lambda: cli_resume("text"), ValueError, ["trainer.resume", "not a pytorch file"]),
    ("cli-resume-truncated", lambda: cli_resume("truncated"), ValueError,
     ["trainer.resume", "truncated or corrupt"]),
    ("cli-resume-last-no-checkpoint", lambda: cli_resume("last"), ValueError,
     ["trainer.resume=last", "no checkpoint at", "last.ckpt", "hydra.run.dir"]),
    ("cli-resume-last-no-run", lambda: cli_arguments("trainer.resume=last"), ValueError,
     ["trainer.resume=last", "no run of recipe 'digits_snn'", "outputs/digits_snn/", "hydra.run.dir"]),
    ("cli-run-dir-locked", cli_locked_run_dir, ValueError, ["in use by another run", f"pid {os.getpid()}"]),
    ("cli-dashed-override", lambda: cli_arguments("--recipe", "cifar_snn"), ValueError,
     ["unrecognized option '--recipe'", "without dashes", "recipe=cifar_snn"]),
    ("compile-negative-lr", lambda: keras_model().compile(lr=-1e-2), ValueError,
     ["lr must be a finite number >= 0", "-0.01"]),
    ("fit-string-labels", lambda: keras_fit(X, np.array(list("abcabcab"))), TypeError,
     ["y", "expected numbers", "dtype <u1", "'a'", "class indices"]),
    ("fit-float64-labels", lambda: keras_fit(X, np.full(8, 0.5)), ValueError,
     ["y", "float64", "non-integral", "0.5"]),
    # --- callbacks and History ------------------------------------------------------------------------------
    ("callback-auto-mode-unknown", lambda: spaic.callbacks.EarlyStopping("val_spikes"), ValueError,
     ["EarlyStopping", "mode='auto' cannot tell", "'val_spikes'", "mode='min' or mode='max'"]),
    ("callback-bad-mode", lambda: spaic.callbacks.EarlyStopping(mode="maximum"), ValueError,
     ["EarlyStopping", "mode must be one of", "'auto', 'min', 'max'", "'maximum'"]),
    ("callback-bad-patience", lambda: spaic.callbacks.EarlyStopping(patience=-1), ValueError,
     ["EarlyStopping", "patience must be an int >= 0", "-1"]),
    ("callback-bad-min-delta", lambda: spaic.callbacks.EarlyStopping(min_delta=-0.1), ValueError,
     ["EarlyStopping", "min_delta must be a number >= 0", "-0.1"]),
    ("checkpoint-bad-filepath", lambda: spaic.callbacks.ModelCheckpoint("best.keras"), ValueError,
     ["ModelCheckpoint", "filepath must end in '.ckpt'", "'best.keras'"]),
    ("checkpoint-bad-save-freq", lambda: spaic.callbacks.ModelCheckpoint("m.ckpt", save_freq=0), ValueError,
     ["ModelCheckpoint", "save_freq must be 'epoch' or a positive number of steps", "0"]),
    ("history-no-pandas", lambda: _without(("pandas",), _one_epoch_history().to_dataframe), ImportError,
     ["History.to_dataframe needs pandas", "pip install pandas", "spaic_train[plot]"]),
    ("history-no-matplotlib", lambda: _without(("matplotlib", "matplotlib.pyplot"), _one_epoch_history().plot),
     ImportError, ["History.plot needs matplotlib", "pip install matplotlib", "spaic_train[plot]"]),
    # profiling and activity regularisers (spaic_train.profiling, spaic_train.training.regularizers)
    ("profile-bad-data", lambda: spaic.profile(small_net(), 3), TypeError,
     ["profile: data must be", "int"]),
    ("profile-bad-batch-size", lambda: spaic.profile(small_net(), X, batch_size=0), ValueError,
     ["batch_size must be an int >= 1", "0"]),
    ("profile-not-a-network", lambda: spaic.profile(torch.nn.Linear(4, 3), X), TypeError,
     ["spaic_train network", "linear"]),
    ("energy-model-bad-pj", lambda: spaic.EnergyModel(pj_per_mac=-1), ValueError,
     ["pj_per_mac", "> 0", "-1"]),
    ("regularizer-unknown", lambda: SNNModule(small_net(), regularizers={"enrgy": 1.0}), ValueError,
     ["unknown regularizer", "'enrgy'", "did you mean", "energy"]),
    ("regularizer-bad-coef", lambda: SNNModule(small_net(), regularizers={"rate": -1.0}), ValueError,
     ["regularizers.rate", "coef must be a number >= 0", "-1"]),
    ("regularizer-bad-target", lambda: SNNModule(small_net(), regularizers={"rate": {"target": 2}}), ValueError,
     ["regularizers.rate", "target rates", "[0, 1]"]),
    ("regularizer-unknown-layer", lambda: SNNModule(small_net(), regularizers={"spike_l1": {"layers": ["x"]}}),
     ValueError, ["regularizers.spike_l1", "unknown layer", "'x'", "out"]),
    ("regularizer-non-spiking-layer",
     lambda: SNNModule(small_net(readout="leaky_integrator"), regularizers={"rate": {"target": {"out": 0.1}}}),
     ValueError, ["regularizers.rate", "['out'] do not spike", "no rate to regularize"]),
]
CASES += LAYER_CASES  # every layer argument family (tests/layer_cases.py; per family: test_layer_validation.py)


def _one_epoch_history():
    from spaic_train.training import History

    history = History()
    history.record(0, {"loss": 1.0}, 0.5)
    return history


def _without(modules, fn):
    """``fn()`` as if ``modules`` were not installed."""
    saved = {m: sys.modules.get(m) for m in modules}
    sys.modules.update(dict.fromkeys(modules))
    try:
        return fn()
    finally:
        for m, mod in saved.items():
            if mod is None:
                sys.modules.pop(m, None)
            else:
                sys.modules[m] = mod
CASES += EVENT_CASES  # spaic_train.data.events (tests/event_error_cases.py)

from conversion_error_cases import CONVERSION_CASES  # noqa: E402 - ANN -> SNN conversion (issue 24)

CASES += CONVERSION_CASES


class _Stream(torch.utils.data.IterableDataset):
    def __iter__(self):
        return iter(torch.rand(8, 4))


def predict_two_processes(dataset):
    """Raises while the Trainer is checked, before any process is started."""
    return predict(SNNModule(small_net()), torch.utils.data.DataLoader(dataset, batch_size=4), accelerator="cpu",
                   devices=2, strategy="ddp")


def _net_without_encoder():
    net = spaic.Network(time_steps=3)
    net.a = grp(4)
    return net


def _net_with_foreign_group():
    net = spaic.Network(time_steps=3)
    net.input = enc((4,))
    other = grp(4)
    net.c = spaic.Connection(net.input, other)
    return net


@pytest.mark.parametrize("case_id,fn,exc,words", CASES, ids=[c[0] for c in CASES])
def test_error_table(case_id, fn, exc, words):
    if exc is None:  # auto-handled case: runs
        assert fn() == "ok"
        return
    if isinstance(exc, str):
        exc = dict(zip(("ConfigKeyError", "ValidationError"), _omegaconf_errors()))[exc]
    with pytest.raises(exc) as info:
        fn()
    msg = str(info.value).lower()
    missing = [w for w in words if w.lower() not in msg]
    assert not missing, f"{case_id}: message lacks {missing}: {info.value}"


def test_table_has_at_least_30_cases():
    assert len(CASES) >= 30
    assert len({c[0] for c in CASES}) == len(CASES)


def test_docs_table_matches_cases():
    """docs/errors.md lists every case id of this file (and no other)."""
    from pathlib import Path

    doc = (Path(__file__).resolve().parents[1] / "docs" / "errors.md").read_text()
    ids = set(re.findall(r"^\| `([a-z0-9-]+)` \|", doc, flags=re.M))
    case_ids = {c[0] for c in CASES}
    assert case_ids <= ids, f"missing in docs/errors.md: {sorted(case_ids - ids)}"
    assert ids <= case_ids, f"documented but not tested: {sorted(ids - case_ids)}"
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    assert f"\n{len(CASES)} cases." in doc, "the case count at the top of docs/errors.md is stale"
    assert f"({len(CASES)} cases, each with a test)" in readme, "the case count in README's Reliability is stale"


def test_errors_are_raised_before_training():
    """Input errors come at fit start: no optimizer step ever runs."""
    steps = []

    class Spy(torch.nn.Module):
        def forward(self, x):
            steps.append(1)
            return x

    with pytest.raises(ValueError, match="non-finite"):
        fit(SNNModule(torch.nn.Sequential(Spy(), torch.nn.Linear(4, 3)), loss="ce", metrics=()),
            np.where(np.arange(32).reshape(8, 4) == 5, np.nan, 1.0), Y, **QUIET)
    assert steps == []
