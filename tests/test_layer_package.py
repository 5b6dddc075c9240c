"""The layer package (``spaic_train/keras/layers/``, one family per module) exports what the single
``keras/layers.py`` module exported, under both of its names."""

from __future__ import annotations

from pathlib import Path

import spaic_train.keras.layers as keras_layers
import spaic_train.layers as layers

#: ``__all__`` of keras/layers.py at d33ab22, before the split
ALL_BEFORE = ["LAYERS", "Layer", "SymbolicTensor", "Input", "Full", "Conv2dSyn", "OneToOne", "SparseRandom", "Flatten",
              "Dropout", "Pool2d", "Feedback", "register_layer"]
#: its other names of spaic_train's own (the config helpers custom layers and the model code use)
HELPERS_BEFORE = ["GivenTensor", "Shape", "from_json_value", "materialize", "materialize_kwargs", "to_json_value"]


def test_same_public_names_under_both_module_names():
    assert layers is keras_layers
    assert keras_layers.__all__ == ALL_BEFORE
    for name in ALL_BEFORE + HELPERS_BEFORE:
        assert getattr(layers, name) is getattr(keras_layers, name), name
    assert {n for n in keras_layers.LAYERS} == {"Input", "Full", "SparseRandom", "OneToOne", "Conv2dSyn", "Flatten",
                                                "Dropout", "Pool2d"}


def test_every_module_of_the_package_is_small():
    for path in Path(keras_layers.__file__).parent.glob("*.py"):
        assert len(path.read_text().splitlines()) <= 600, path.name
