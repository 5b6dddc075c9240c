"""Neuron models: ``NeuronModel`` base, the ``NEURONS`` registry and the built-in models.

====================  =======================================  ==========================
name                  class                                    state
====================  =======================================  ==========================
``lif``               :class:`~.lif.LIF`                       ``V``
``if``                :class:`~.lif.IF`                        ``V``
``plif``              :class:`~.lif.PLIF` (learnable tau)      ``V``
``alif``              :class:`~.lif.ALIF` (adaptive thr.)      ``V``, ``a``
``izhikevich``        :class:`~.izhikevich.Izhikevich`         ``V``, ``u``
``leaky_integrator``  :class:`~.li.LI` (non-spiking readout)   ``V`` (output ``O = V``)
====================  =======================================  ==========================

``build_neuron(name, owner='', **params)`` instantiates one by name.  The sequence kernels the models call
(torch, numba, Triton, and the dispatch between them) are in :mod:`spaic_train.neurons.kernels`.
"""

from .base import NEURONS, NeuronModel, State, build_neuron
from .izhikevich import Izhikevich
from .kernels import LIFSequenceFunction, lif_sequence, load_compiled_kernels
from .li import LI
from .lif import ALIF, IF, LIF, PLIF, LIFFamily

__all__ = [
    "NEURONS",
    "NeuronModel",
    "State",
    "build_neuron",
    "LIFFamily",
    "LIF",
    "IF",
    "PLIF",
    "ALIF",
    "Izhikevich",
    "LI",
    "LIFSequenceFunction",
    "lif_sequence",
    "load_compiled_kernels",
]
