"""The base of the layers that create neurons: a ``NeuronGroup`` and one ``Connection`` from each input into it,
with the synapse ops of the neuron-less layers before it (``Flatten``/``Dropout``/``Pool2d``) folded into the
connection's chain in front of its weight op."""

from __future__ import annotations

import inspect
import math
from collections.abc import Sequence
from typing import Any, Optional

from ... import init as _init
from ...assembly import NeuronGroup
from ...connection import Connection
from ...surrogate import Surrogate
from .base import Layer, Shape, SymbolicTensor, format_shape
from .checks import check_connection_kwargs, check_delays, check_neuron
from .config import materialize_kwargs, to_json_value

__all__ = ["NeuronLayer"]

#: connection keywords a neuron layer sets itself
RESERVED_CONNECTION_KWARGS = ("link_type", "syn_type", "syn_kwargs", "pre", "post")


def merge_syn_kwargs(owner: str, ops: Sequence[tuple[str, dict[str, Any], str]]) -> dict[str, Any]:
    """Merge the params of the ops of one chain; the same key with two values is an error."""
    merged: dict[str, Any] = {}
    origin: dict[str, str] = {}
    for _syn, params, who in ops:
        for k, v in params.items():
            if k in merged and merged[k] != v:
                raise ValueError(f"{owner}: the synapse chain of one connection would need {k}={merged[k]!r} (from "
                                 f"{origin[k]}) and {k}={v!r} (from {who}); all ops of a connection share one "
                                 f"parameter set, so use the same value or put a neuron layer between them")
            merged[k] = v
            origin[k] = who
    return merged


class NeuronLayer(Layer):
    """A layer that creates a ``NeuronGroup`` and one ``Connection`` from each input into it.

    Args:
        neuron: neuron model name (``'lif'``, ``'if'``, ``'plif'``, ``'alif'``, ``'izhikevich'``,
            ``'leaky_integrator'``), or ``None`` for no neurons: a plain weighted layer whose output is its
            synaptic current (``W x + b`` each step, e.g. a readout of logits; a ``leaky_integrator`` with
            ``tau=0`` inside).
        neuron_kwargs: model parameters (``tau`` in ms, ``v_th``, ``v_reset``, ``reset``, ...).
        surrogate: surrogate gradient (a name such as ``'atan'``, a dict ``{'name', 'alpha'}`` or a
            :class:`~spaic_train.surrogate.Surrogate`); ``None`` keeps the model's default.
        max_delay: largest synaptic delay in ms (``0``: no per-synapse delays).
        delay: per-synapse delays in ms (tensor of the link's delay shape, number or initializer).
        name: layer name.
        **connection_kwargs: passed to :class:`~spaic_train.Connection` (``weight``, ``bias``,
            ``w_mean``, ``w_std``, ``w_min``, ``w_max``, ``min_delay``, ``sparse_with_mask``, ...).
    """

    link_type = "full"
    #: whether the layer has a ``bias`` argument of its own (else a ``bias`` keyword goes to the connection as is)
    takes_bias = False
    #: what ``bias`` is when a saved config has no ``bias`` key (configs written before the layer had the argument)
    legacy_bias = False
    bias: Any = None

    def __init__(self, neuron: Optional[str] = "lif", neuron_kwargs: Optional[dict[str, Any]] = None, surrogate=None,
                 max_delay: float = 0.0, delay=None, name: Optional[str] = None, **connection_kwargs):
        super().__init__(name=name)
        if neuron is None:
            if neuron_kwargs or surrogate is not None:
                raise ValueError(f"{self.label}: neuron=None (a plain weighted layer: its output is the synaptic "
                                 f"current) takes no neuron_kwargs or surrogate, got neuron_kwargs={neuron_kwargs!r}, "
                                 f"surrogate={surrogate!r}")
        else:
            check_neuron(self.label, neuron, neuron_kwargs, surrogate)
        check_delays(self.label, max_delay, delay, connection_kwargs)
        check_connection_kwargs(self.label, connection_kwargs, self.link_type, [self._weight_op()],
                                reserved=RESERVED_CONNECTION_KWARGS,
                                own_args=inspect.signature(type(self).__init__).parameters)
        self.neuron = neuron
        self.neuron_kwargs = dict(neuron_kwargs or {})
        self.surrogate = surrogate
        self.max_delay = max_delay
        self.delay = delay
        self.connection_kwargs = dict(connection_kwargs)

    # hooks ---------------------------------------------------------------------------------------------------
    def _group_shape(self, inputs: list[SymbolicTensor]) -> Optional[Shape]:
        raise NotImplementedError

    def _check_input(self, t: SymbolicTensor) -> None:
        """Raise a ``ValueError`` when ``t`` cannot feed this layer."""

    def _link_kwargs(self) -> dict[str, Any]:
        """Link-specific connection kwargs (``out_channels``, ``density``, ...)."""
        return {}

    def _post_ops(self) -> list[tuple[str, dict[str, Any]]]:
        """Synapse ops after the weight op, with their params."""
        return []
    def _weight_op(self) -> str:
        return "basic"

    def _neuron_model(self) -> str:
        return "leaky_integrator" if self.neuron is None else self.neuron

    def _neuron_params(self) -> dict[str, Any]:
        if self.neuron is None:
            return {"tau": 0.0}  # a leaky integrator without memory: its output is the input current itself
        params = dict(self.neuron_kwargs)
        if self.surrogate is not None:
            params["surrogate"] = self.surrogate
        return params

    def _connection_defaults(self) -> dict[str, Any]:
        """Default weight init of the layer (PyTorch's ``Linear``/``Conv2d`` default) unless one was given."""
        kw = self.connection_kwargs
        if "weight" in kw or "w_mean" in kw or "w_std" in kw:
            return {}
        return {"weight": _init.kaiming_uniform(a=math.sqrt(5))}

    # build ---------------------------------------------------------------------------------------------------
    def _build(self, inputs):
        for t in inputs:
            self._check_input(t)
        shape = self._group_shape(inputs)
        group = NeuronGroup(shape=shape, model=self._neuron_model(), name=self.name, **self._neuron_params())
        conns = []
        post_ops = self._post_ops()
        for i, t in enumerate(inputs):
            ops = [(op.syn, op.params, op.layer.label) for op in t.ops]
            ops += [(s, p, f"{self.label}'s own {s}") for s, p in post_ops]
            syn_kwargs = merge_syn_kwargs(self.label, ops)
            syn_type = [op.syn for op in t.ops] + [self._weight_op()] + [s for s, _ in post_ops]
            kwargs = {**self._connection_defaults(), **self.connection_kwargs, **self._link_kwargs()}
            if self.takes_bias:  # one bias per layer, as in Keras: on the connection from its first input
                kwargs["bias"] = self.bias if i == 0 else None
            if self.delay is not None:
                kwargs["delay"] = self.delay
            kwargs = materialize_kwargs(kwargs)
            try:
                conn = Connection(t.node, group, link_type=self.link_type, syn_type=syn_type,
                                  max_delay=self.max_delay, syn_kwargs=syn_kwargs, **kwargs)
            except ValueError as e:
                if shape is not None or i == 0:
                    raise
                raise ValueError(f"input from {t.layer.label} (shape {format_shape(t.shape)}) does not fit: the "
                                 f"layer's output shape is {format_shape(group.shape)} (set by its first input "
                                 f"{inputs[0].layer.label}); {e}") from e
            conns.append(conn)
        self.group = group
        self.connections = conns
        return SymbolicTensor(self, group.shape, group)

    # description ---------------------------------------------------------------------------------------------
    def neuron_description(self) -> str:
        if self.neuron is None:
            return "none (weighted sum)"
        text = self.neuron
        params = {k: v for k, v in self._neuron_params().items()}
        if params:
            text += "(" + ", ".join(f"{k}={_short(v)}" for k, v in params.items()) + ")"
        return text

    def get_config(self):
        cfg = {
            "name": self.name,
            "neuron": self.neuron,
            "neuron_kwargs": to_json_value(self.label, "neuron_kwargs", self.neuron_kwargs),
            "surrogate": to_json_value(self.label, "surrogate", self.surrogate),
            "max_delay": to_json_value(self.label, "max_delay", self.max_delay),
            "delay": to_json_value(self.label, "delay", self.delay),
            "connection_kwargs": to_json_value(self.label, "connection_kwargs", self.connection_kwargs),
        }
        if self.takes_bias:
            cfg["bias"] = to_json_value(self.label, "bias", self.bias)
        return cfg

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> NeuronLayer:
        """A config without a ``bias`` key was written before the layer had the argument: it had no bias then."""
        if cls.takes_bias and "bias" not in config and "bias" not in (config.get("connection_kwargs") or {}):
            config = {**config, "bias": cls.legacy_bias}
        return super().from_config(config)


def _short(v) -> str:
    if isinstance(v, float):
        return f"{v:g}"
    if isinstance(v, Surrogate):
        return v.name
    return repr(v) if isinstance(v, str) else str(v)


