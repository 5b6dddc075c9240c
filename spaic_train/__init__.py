"""spaic_train: a Keras-style training framework for spiking neural networks on PyTorch.

The core is SPAIC-compatible (``import spaic_train as spaic``): ``NeuronGroup``s joined by
``Connection``s inside a ``Network``, fed by ``Encoder``s and read by ``Decoder``s.

The public names below are imported on first use (PEP 562), so that ``import spaic_train`` and the
command line's ``--help`` do not pay for importing torch and Lightning until something needs them.
"""

from importlib import import_module

from . import console

__version__ = "0.1.0"

#: public name -> submodule that defines it
_EXPORTS = {
    "Assembly": "assembly",
    "NeuronGroup": "assembly",
    "Connection": "connection",
    "Decoder": "network",
    "Encoder": "network",
    "Network": "network",
    "StateMonitor": "network",
    "constant": "init",
    "kaiming_normal": "init",
    "kaiming_uniform": "init",
    "normal": "init",
    "sparse": "init",
    "uniform": "init",
    "xavier_normal": "init",
    "xavier_uniform": "init",
    # Keras-style API (layers, models, save/load) and the Lightning module they train with
    "Model": "keras",
    "Sequential": "keras",
    "load_model": "keras",
    "save_model": "keras",
    "SNNModule": "training",
    # cost of a network: SOPs, MACs, firing rates, energy
    "profile": "profiling",
    "EnergyModel": "profiling",
    # ANN -> SNN conversion
    "convert": "conversion",
    "conversion_report": "conversion",
}
__all__ = [
    "Assembly",
    "Connection",
    "Decoder",
    "EnergyModel",
    "Encoder",
    "Model",
    "Network",
    "NeuronGroup",
    "SNNModule",
    "Sequential",
    "StateMonitor",
    "console",
    "constant",
    "conversion_report",
    "convert",
    "from_nir",
    "init",
    "kaiming_normal",
    "kaiming_uniform",
    "keras",
    "layers",
    "load_model",
    "neurons",
    "normal",
    "profile",
    "profiling",
    "save_model",
    "sparse",
    "surrogate",
    "uniform",
    "xavier_normal",
    "xavier_uniform",
]


def __getattr__(name: str):
    if name in _EXPORTS:
        value = getattr(import_module(f".{_EXPORTS[name]}", __name__), name)
    else:
        try:
            value = import_module(f".{name}", __name__)  # any submodule: spaic_train.network, ...
        except ModuleNotFoundError as e:
            if e.name != f"{__name__}.{name}":
                raise
            raise AttributeError(f"module 'spaic_train' has no attribute {name!r}") from None
    globals()[name] = value
    return value


def from_nir(graph_or_path, dt=None, time_steps=None, decoder=None):
    """A Keras ``Model`` from a NIR graph or ``.nir`` file: :func:`spaic_train.keras.nir_models.from_nir` (the
    arguments of :func:`spaic_train.nir.load`; ``dt`` in seconds per step).  Needs ``pip install
    'spaic_train[nir]'``; ``nir`` is imported only here (an optional package: ``import spaic_train`` never needs it)."""
    from .keras.nir_models import from_nir as _from_nir

    return _from_nir(graph_or_path, dt=dt, time_steps=time_steps, decoder=decoder)


def __dir__() -> list:
    return sorted(set(globals()) | set(__all__))
