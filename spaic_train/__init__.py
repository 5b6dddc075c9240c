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
