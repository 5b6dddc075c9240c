"""Layer constructors validate every argument: a bad one raises at construction (naming the layer, the argument,
the value and what is allowed), before any input is connected or any model built; good ones construct and keep
the value the user wrote (``get_config``)."""

from __future__ import annotations

import pytest
import torch
from layer_cases import FAMILIES

from spaic_train import layers as L
from spaic_train import uniform
from spaic_train.keras import Sequential


def _failure(fn, exc, words):
    """``None`` when ``fn()`` raises ``exc`` with every key word in its message, else what went wrong."""
    try:
        fn()
    except exc as e:
        missing = [w for w in words if w.lower() not in str(e).lower()]
        return f"message lacks {missing}: {e}" if missing else None
    except Exception as e:  # noqa: BLE001 - reported as the failure
        return f"raised {type(e).__name__} instead of {exc.__name__}: {e}"
    return f"no error (expected {exc.__name__})"


@pytest.mark.parametrize("family", list(FAMILIES))
def test_argument_family(family):
    """Every bad argument of the family raises at construction, naming the layer, the argument, the value and
    what is allowed (all cases of a family are run; the failures are listed together)."""
    failures = {case_id: f for case_id, fn, exc, words in FAMILIES[family] if (f := _failure(fn, exc, words))}
    assert not failures, failures


def test_every_family_has_cases_and_ids_are_unique():
    ids = [c[0] for cases in FAMILIES.values() for c in cases]
    assert all(FAMILIES.values()) and len(ids) == len(set(ids))


def test_construction_errors_come_before_any_core_object():
    """Validation does not build groups or connections, nor draw random numbers."""
    state = torch.random.get_rng_state()
    layer = L.Conv2dSyn(4, kernel_size=3, max_delay=3.0, learn_delay=True, delay_sigma=0.5, neuron="plif",
                        neuron_kwargs={"tau": 3.0}, surrogate="sigmoid")
    assert torch.equal(state, torch.random.get_rng_state())
    assert layer.group is None and layer.connections == [] and layer.output is None


def test_valid_neighbours_construct_and_keep_their_values():
    """The edge values just inside each bound are accepted, and get_config returns what was written."""
    conv = L.Conv2dSyn(4, kernel_size=[3, 1], stride=(2, 1), padding="valid", dilation=1, groups=2, pool="sum",
                       pool_size=[2, 1], pool_stride=1, dropout=0.0, batchnorm={"eps": 1e-3, "momentum": 0.2})
    cfg = conv.get_config()
    assert cfg["kernel_size"] == [3, 1] and cfg["stride"] == [2, 1] and cfg["padding"] == "valid"
    assert cfg["groups"] == 2 and cfg["pool"] == "sum" and cfg["dropout"] == 0.0
    assert L.Conv2dSyn(4, padding="same").padding == "same"
    assert L.Pool2d("avg", 3, padding=1).get_config()["padding"] == 1
    assert L.Dropout(0.0).p == 0.0 and L.SparseRandom(3, density=1.0).density == 1.0
    assert L.SparseRandom(3, probability=0.5).link_type == "random"
    full = L.Full(3, max_delay=4.0, min_delay=1.0, delay=uniform(1.0, 4.0), learn_delay=True, delay_sigma=0.0)
    assert full.max_delay == 4.0 and full.connection_kwargs["delay_sigma"] == 0.0
    assert L.Full(3, max_delay=2.0, delay=2.0).delay == 2.0
    fb = L.Feedback("out", "h", link_type="random", probability=0.2, max_delay=2.0, learn_delay=True)
    assert fb.get_config()["connection_kwargs"] == {"probability": 0.2, "learn_delay": True}


def test_validated_layers_still_build_the_same_model():
    """A model of validated layers builds and runs as before (output shape, grouped conv weights)."""
    torch.manual_seed(0)
    model = Sequential([L.Input((2, 6, 6)), L.Conv2dSyn(4, kernel_size=3, groups=2, padding=1, pool="avg"),
                        L.Flatten(), L.Full(3, max_delay=2.0, learn_delay=True)], time_steps=3)
    assert model.get_layer("conv").connections[0].weight.shape == (4, 1, 3, 3)
    assert model(torch.rand(5, 2, 6, 6)).shape == (5, 3)


def test_conv_groups_must_also_divide_the_input_channels_when_called():
    """Input channels are known only when the layer is called: the connection checks them there."""
    with pytest.raises(ValueError, match=r"in_channels=3.*divisible by groups=2"):
        L.Conv2dSyn(4, groups=2)(L.Input((3, 6, 6)))
