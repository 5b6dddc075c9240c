"""spaic_train: a Keras-style training framework for spiking neural networks on PyTorch.

The core is SPAIC-compatible (``import spaic_train as spaic``): ``NeuronGroup``s joined by
``Connection``s inside a ``Network``, fed by ``Encoder``s and read by ``Decoder``s.
"""

from . import init, neurons, surrogate
from .assembly import Assembly, NeuronGroup
from .connection import Connection
from .init import (
    constant,
    kaiming_normal,
    kaiming_uniform,
    normal,
    sparse,
    uniform,
    xavier_normal,
    xavier_uniform,
)
from .network import Decoder, Encoder, Network, StateMonitor

__version__ = "0.1.0"

__all__ = [
    "Assembly",
    "Connection",
    "Decoder",
    "Encoder",
    "Network",
    "NeuronGroup",
    "StateMonitor",
    "constant",
    "init",
    "kaiming_normal",
    "kaiming_uniform",
    "neurons",
    "normal",
    "sparse",
    "surrogate",
    "uniform",
    "xavier_normal",
    "xavier_uniform",
]

# Keras-style API (layers, models, save/load) and the Lightning module they train with
import sys as _sys  # noqa: E402

from . import keras  # noqa: E402
from .keras import Model, Sequential, layers, load_model, save_model  # noqa: E402

# ``from spaic_train.layers import Full`` works like ``from spaic_train.keras.layers import Full``
_sys.modules.setdefault(__name__ + ".layers", layers)

__all__ += ["Model", "SNNModule", "Sequential", "from_nir", "keras", "layers", "load_model", "save_model"]


def from_nir(graph_or_path, dt=None, time_steps=None, decoder=None) -> Model:
    """A Keras ``Model`` from a NIR graph or ``.nir`` file: :func:`spaic_train.nir.load_model` (same arguments;
    ``dt`` in seconds per step).  Needs ``pip install 'spaic_train[nir]'``; ``nir`` is imported only here."""
    from .nir import load_model as _load_nir_model

    return _load_nir_model(graph_or_path, dt=dt, time_steps=time_steps, decoder=decoder)


def __getattr__(name):
    # ``SNNModule`` imports Lightning (slow): load it on first use, not on ``import spaic_train``
    if name == "SNNModule":
        from .training import SNNModule

        return SNNModule
    raise AttributeError(f"module 'spaic_train' has no attribute {name!r}")
