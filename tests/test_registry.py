"""Registries: what an unknown-name error lists is exactly what is accepted (aliases included)."""

from __future__ import annotations

import re

import pytest

import spaic_train  # noqa: F401  (imports every module that defines a registry)
from spaic_train.connection.links import LINKS
from spaic_train.connection.synapses import SYNAPSES
from spaic_train.data import DATASETS
from spaic_train.keras.layers import LAYERS
from spaic_train.network.decoders import DECODINGS
from spaic_train.network.encoders import ENCODINGS
from spaic_train.neurons.base import NEURONS
from spaic_train.registry import Registry
from spaic_train.surrogate import SURROGATES
from spaic_train.training import get_loss
from spaic_train.training.losses import LOSSES
from spaic_train.training.metrics import METRICS
from spaic_train.training.optimizers import OPTIMIZERS, SCHEDULERS

ALL = [SURROGATES, METRICS, OPTIMIZERS, SCHEDULERS, LOSSES, ENCODINGS, DECODINGS, DATASETS, NEURONS, SYNAPSES, LINKS,
       LAYERS]


def _listed(message: str) -> set[str]:
    """The names a 'valid ... are: a (or b, c), d.' message lists."""
    listing = re.search(r" are: (.*?)\.(?: Did you mean|$)", message).group(1)
    return {n.lower() for n in re.findall(r"[A-Za-z0-9_\-]+", listing.replace("(or", ""))}


@pytest.mark.parametrize("reg", ALL, ids=lambda r: r.kind)
def test_error_lists_exactly_the_accepted_names(reg: Registry):
    with pytest.raises(ValueError) as e:
        reg.get("no_such_name_xyz")
    accepted = {k for k in reg._items}
    assert _listed(str(e.value)) == accepted
    for name in accepted:
        assert reg.get(name) is reg.get(reg.canonical(name))


def test_loss_suggestion_is_accepted_and_listed():
    """The issue's case: ``cross_entropy`` is accepted, so the error lists it."""
    assert get_loss("cross_entropy") is not None
    with pytest.raises(ValueError) as e:
        get_loss("cross_entropyy")
    msg = str(e.value)
    assert "ce (or cross_entropy, crossentropy)" in msg and "Did you mean 'cross_entropy'?" in msg
    suggested = re.search(r"Did you mean '([^']+)'", msg).group(1)
    get_loss(suggested)
    with pytest.raises(TypeError, match=r"cross_entropy_rate"):
        get_loss(3)


def test_register_each_gives_one_object_several_canonical_names():
    from spaic_train.registry import Registry

    reg = Registry("thing")

    @reg.register_each("alpha", "beta")
    class Thing:
        pass

    assert reg.get("alpha") is Thing and reg.get("BETA") is Thing
    assert reg.names() == ["alpha", "beta"]
