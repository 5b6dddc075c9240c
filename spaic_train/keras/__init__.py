"""Keras-style layers and models on the SPAIC-compatible core, trained with Lightning.

::

    import spaic_train as st
    from spaic_train.keras import layers

    model = st.Sequential([
        layers.Input((1, 8, 8), encoder="direct"),
        layers.Conv2dSyn(8, kernel_size=3, padding=1, pool="max", dropout=0.1),   # -> (8, 4, 4)
        layers.Flatten(),
        layers.Full(10, name="out"),
    ], time_steps=6, decoder="spike_rate")
    model.summary()
    model.compile(optimizer="adam", lr=5e-3, loss="ce_rate", metrics=["accuracy"])
    model.fit(x, y, epochs=5, batch_size=64, validation_split=0.2)
    model.save("digits.pt")
    same = st.load_model("digits.pt")

See :mod:`spaic_train.keras.layers` (what each layer builds, where ``Flatten``/``Dropout``/``Pool2d``
fold, ``Feedback``), :mod:`spaic_train.keras.models` and :mod:`spaic_train.keras.serialization`
(the file format).
"""

from . import layers
from .layers import (
    LAYERS,
    Conv2dSyn,
    Dropout,
    Feedback,
    Flatten,
    Full,
    Input,
    Layer,
    OneToOne,
    Pool2d,
    SparseRandom,
    SymbolicTensor,
    register_layer,
)
from .models import Model, Sequential
from .serialization import load_model, save_model

__all__ = [
    "LAYERS",
    "Conv2dSyn",
    "Dropout",
    "Feedback",
    "Flatten",
    "Full",
    "Input",
    "Layer",
    "Model",
    "OneToOne",
    "Pool2d",
    "Sequential",
    "SparseRandom",
    "SymbolicTensor",
    "layers",
    "load_model",
    "register_layer",
    "save_model",
]
