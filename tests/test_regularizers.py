"""Activity regularisers in ``compile``: their values, gradients, logging, errors, and what they buy on digits."""

import pytest
import torch

import spaic_train as st
from spaic_train.layers import Full, Input
from spaic_train.training.regularizers import (
    REGULARIZERS,
    EnergyTerm,
    FiringRateTarget,
    SpikeL1,
    build_regularizers,
)


def _digits():
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    d = load_digits()
    x = torch.tensor(d.images[:, None] / 16.0, dtype=torch.float32).flatten(1)
    return train_test_split(x, torch.tensor(d.target), test_size=0.25, stratify=d.target, random_state=0)


def _model():
    return st.Sequential([Input((64,), encoder="direct"), Full(64, name="hidden"), Full(10, name="out")],
                         time_steps=6)


def test_terms_equal_their_definitions():
    torch.manual_seed(0)
    model = _model()
    x = torch.rand(5, 64)
    with model.record(("O",), detach=False) as rec:
        model(x)
    spikes = {k: v["O"] for k, v in rec.items()}
    h, o = spikes["hidden"], spikes["out"]
    assert h.requires_grad  # detach=False keeps the graph
    rate = FiringRateTarget(coef=2.0, target={"hidden": 0.1})
    assert float(rate(model, spikes).detach()) == pytest.approx(2.0 * (float(h.mean()) - 0.1) ** 2)
    l1 = SpikeL1(coef=1.0)
    expected = float(h.sum()) / (6 * 5 * 64) + float(o.sum()) / (6 * 5 * 10)
    assert float(l1(model, spikes).detach()) == pytest.approx(expected)
    energy = EnergyTerm(coef=1.0)
    # hidden -> out: every hidden spike reaches 10 synapses; the input layer (analog) is left out
    expected = float(h.sum()) / 5 * 10 * 0.9 / (4.6 * (64 * 64 + 64 * 10))
    assert float(energy(model, spikes).detach()) == pytest.approx(expected)
    energy(model, spikes).backward()
    assert model.hidden_to_out.weight.grad is None  # the term depends on the spikes only
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.parameters())


def test_a_non_spiking_readout_has_no_rate_to_regularize():
    """A ``leaky_integrator`` readout outputs its potential: by default every term covers the spiking layers only
    (here: the hidden layer, against a direct computation), and naming the readout is an error."""
    torch.manual_seed(0)
    model = st.Sequential([Input((64,), encoder="direct"), Full(32, name="hidden"),
                           Full(10, neuron="leaky_integrator", name="out")], time_steps=6)
    x = torch.rand(5, 64)
    with model.record(("O",), detach=False) as rec:
        model(x)
    spikes = {k: v["O"] for k, v in rec.items()}
    assert float(spikes["out"].min()) < 0  # potentials, not spikes
    assert [g.name for g in SpikeL1().groups(model)] == ["hidden"]
    h = spikes["hidden"]
    assert float(SpikeL1(coef=1.0)(model, spikes).detach()) == pytest.approx(float(h.sum()) / (6 * 5 * 32))
    assert float(FiringRateTarget(coef=1.0, target=0.1)(model, spikes).detach()) == \
        pytest.approx((float(h.mean()) - 0.1) ** 2)
    with pytest.raises(ValueError, match=r"regularizers.rate: layer\(s\) \['out'\] do not spike.*\['hidden'\]"):
        FiringRateTarget(target={"out": 0.1}).groups(model)


def test_specs_and_errors():
    regs = build_regularizers({"rate": {"target": 0.05, "coef": 3.0}, "energy": 0.5, "spike_l1": None})
    assert [type(r) for r in regs] == [FiringRateTarget, EnergyTerm] and regs[0].coef == 3.0 and regs[1].coef == 0.5
    assert [r.name for r in build_regularizers(["l1", "sops"])] == ["spike_l1", "energy"]
    assert build_regularizers(None) == []
    with pytest.raises(ValueError, match="unknown regularizer 'rat'.*Did you mean 'rate'"):
        build_regularizers("rat")
    with pytest.raises(ValueError, match="coef must be a number >= 0"):
        build_regularizers({"energy": -1})
    with pytest.raises(ValueError, match="target rates must be numbers in"):
        FiringRateTarget(target=1.5)
    with pytest.raises(ValueError, match=r"regularizers.rate: .*unexpected keyword"):
        build_regularizers({"rate": {"traget": 0.1}})
    with pytest.raises(ValueError, match=r"unknown layer\(s\) \['hiden'\]"):
        SpikeL1(layers=["hiden"]).groups(_model())
    assert "energy" in REGULARIZERS and "rate" in REGULARIZERS


def test_each_term_is_logged_and_saved_with_the_model(tmp_path):
    x_train, _, y_train, _ = _digits()
    torch.manual_seed(0)
    model = _model()
    model.compile(optimizer="adam", lr=1e-2, loss="ce_rate", regularizers={"rate": {"target": 0.05}, "energy": 1.0})
    history = model.fit(x_train[:128], y_train[:128], epochs=1, batch_size=64, seed=0, logger=False,
                        enable_progress_bar=False)
    for key in ("reg_rate", "reg_energy"):  # logged as train_reg_<name>; History drops "train_"
        assert history.history[key][0] > 0, key
    model.save(tmp_path / "m.pt")
    restored = st.load_model(tmp_path / "m.pt")
    assert [(r.name, r.coef) for r in restored.module.regularizers] == [("rate", 10.0), ("energy", 1.0)]


def _train(regularizers, x_train, y_train, x_test, y_test):
    torch.manual_seed(0)
    model = _model()
    model.compile(optimizer="adam", lr=1e-2, loss="ce_rate", metrics=["accuracy"], regularizers=regularizers)
    model.fit(x_train, y_train, epochs=6, batch_size=64, seed=0, logger=False, enable_progress_bar=False)
    return model.evaluate(x_test, y_test)["accuracy"], st.profile(model, x_test).sops


@pytest.fixture(scope="module")
def digits_baseline():
    data = _digits()
    x_train, x_test, y_train, y_test = data
    return data, _train(None, x_train, y_train, x_test, y_test)


@pytest.mark.parametrize("name", ["energy", pytest.param("rate", marks=pytest.mark.slow),
                                  pytest.param("spike_l1", marks=pytest.mark.slow)])
def test_default_coefficient_cuts_sops_by_a_quarter_at_the_same_accuracy(name, digits_baseline):
    (x_train, x_test, y_train, y_test), (acc0, sops0) = digits_baseline
    acc, sops = _train(name, x_train, y_train, x_test, y_test)
    assert acc0 > 0.9
    assert sops <= 0.75 * sops0, (name, sops, sops0)
    assert acc >= acc0 - 0.02, (name, acc, acc0)


def test_recipes_take_regularizers_from_the_config():
    from hydra import compose, initialize_config_dir

    from spaic_train.cli import CONFIG_DIR, ConfigError, compile_kwargs
    from spaic_train.config import register_configs

    register_configs()
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base=None):
        cfg = compose(config_name="config", overrides=["+model.regularizers.energy=2.0",
                                                       "+model.regularizers.rate={target: 0.05}"])
        bad = compose(config_name="config", overrides=["+model.regularizers.enrgy=1.0"])
    assert compile_kwargs(cfg)["regularizers"] == {"energy": 2.0, "rate": {"target": 0.05}}
    with pytest.raises(ConfigError, match=r"model.regularizers: unknown regularizer 'enrgy'"):
        compile_kwargs(bad)
