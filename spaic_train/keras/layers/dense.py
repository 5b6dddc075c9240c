"""Dense neuron layers: ``Full`` (all-to-all), ``SparseRandom`` (a fixed random mask) and ``OneToOne``."""

from __future__ import annotations

from typing import Any, Optional, Union

from .base import register_layer
from .checks import batchnorm_op, check_batchnorm, check_bias, check_positive_int, check_probability
from .config import to_json_value
from .neuron import NeuronLayer

__all__ = ["Full", "OneToOne", "SparseRandom"]


@register_layer
class Full(NeuronLayer):
    """Fully connected spiking layer: ``units`` neurons, each driven by every input unit.

    Builds ``NeuronGroup(units, model=neuron)`` and, per input, ``Connection(link_type='full')`` with a
    weight ``(units, prod(input_shape))`` (an input of any shape is flattened by the link).

    Args:
        units: number of neurons.
        neuron, neuron_kwargs, surrogate, max_delay, delay, name: see the module docstring / ``NeuronLayer``
            (``neuron=None``: a plain weighted layer, ``W x + b`` each step).
        bias: ``True`` (default, as ``nn.Linear`` / Keras ``Dense``: PyTorch's ``U(±1/sqrt(fan_in))``), ``False``
            or ``None`` for none, a number, a tensor ``(units,)`` or an initializer.  (A core ``Connection`` has no
            bias unless asked, as in SPAIC; a saved config without a ``bias`` key loads without one.)
        **connection_kwargs: ``weight`` (default ``kaiming_uniform(a=sqrt(5))``, PyTorch's ``Linear``
            init), ``w_min``/``w_max``, ...

    Output shape ``(units,)``; parameters ``units·in_num`` (+ ``units`` with a bias, + ``2·units`` with an
    affine ``batchnorm``: ``False``, ``True`` or a dict of ``eps``/``momentum``/``affine``, normalising the
    synaptic current over all ``T·B`` samples of a run, as in DCLS-Delays' Dcls1d → BatchNorm1d blocks).
    """

    default_name = "full"
    link_type = "full"
    takes_bias = True

    def __init__(self, units: int, neuron: Optional[str] = "lif", neuron_kwargs=None, surrogate=None,
                 max_delay: float = 0.0, delay=None, name: Optional[str] = None, bias=True,
                 batchnorm: Union[bool, dict[str, Any]] = False, **connection_kwargs):
        super().__init__(neuron, neuron_kwargs, surrogate, max_delay, delay, name, **connection_kwargs)
        self.units = check_positive_int(self.label, "units", units)
        self.bias = check_bias(self.label, bias)
        self.batchnorm = check_batchnorm(self.label, batchnorm)

    def _group_shape(self, inputs):
        return (self.units,)

    def _post_ops(self):
        return batchnorm_op(self.batchnorm)

    def get_config(self):
        cfg = {"units": self.units, **super().get_config()}
        if self.batchnorm:  # written only when set: configs saved before the option load unchanged
            cfg["batchnorm"] = to_json_value(self.label, "batchnorm", self.batchnorm)
        return cfg


@register_layer
class SparseRandom(Full):
    """Sparsely connected spiking layer: like :class:`Full` with a fixed random topology mask.

    Args:
        units: number of neurons.
        density: probability in ``(0, 1]`` that a synapse exists → ``link_type='sparse_connect'``.
        probability: the same for ``link_type='random'`` (which, pre == post, excludes self-synapses).
            Give at most one of them; neither means ``density=0.1``.
        (other arguments: see :class:`Full`)

    The weight is dense ``(units, in_num)`` times a fixed 0/1 ``mask`` buffer (saved with the model);
    the parameter count is the dense size.  No bias by default (``bias=True`` adds one), like the SPAIC sparse
    connection it builds.
    """

    default_name = "sparse"

    def __init__(self, units: int, density: Optional[float] = None, probability: Optional[float] = None,
                 neuron: Optional[str] = "lif", neuron_kwargs=None, surrogate=None, max_delay: float = 0.0,
                 delay=None, name: Optional[str] = None, bias=False, **connection_kwargs):
        self.link_type = "random" if probability is not None else "sparse_connect"  # before the keyword check
        super().__init__(units, neuron, neuron_kwargs, surrogate, max_delay, delay, name, bias, **connection_kwargs)
        if density is not None and probability is not None:
            raise ValueError(f"{self.label}: give density= (sparse_connect) or probability= (random), not both")
        for what, value in (("density", density), ("probability", probability)):
            if value is not None:
                check_probability(self.label, what, value)
        self.density = density
        self.probability = probability

    def _link_kwargs(self):
        if self.probability is not None:
            return {"probability": self.probability}
        return {"density": 0.1 if self.density is None else self.density}

    def _connection_defaults(self):
        return {}  # masked dense weights: keep the core's default init for sparse links

    def get_config(self):
        return {**super().get_config(), "density": self.density, "probability": self.probability}


@register_layer
class OneToOne(NeuronLayer):
    """One neuron per input unit: neuron ``i`` is driven by input unit ``i`` with its own weight.

    Builds ``Connection(link_type='one_to_one')`` (weight ``(num,)``, default every weight ``w_mean=0.05``
    unless ``weight``/``w_mean``/``w_std`` are given).  Output shape = the input's shape; parameters ``num``.
    """

    default_name = "one_to_one"
    link_type = "one_to_one"

    def __init__(self, neuron: Optional[str] = "lif", neuron_kwargs=None, surrogate=None, max_delay: float = 0.0,
                 delay=None, name: Optional[str] = None, **connection_kwargs):
        super().__init__(neuron, neuron_kwargs, surrogate, max_delay, delay, name, **connection_kwargs)

    def _group_shape(self, inputs):
        return inputs[0].shape

    def _connection_defaults(self):
        return {}


