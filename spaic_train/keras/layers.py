"""Keras-style layers: thin builders of the shared SPAIC core (no op is implemented here).

A layer is a *recipe*.  Calling it on a symbolic tensor (``h = Full(64)(x)``) builds core objects
right away, so output shapes are known and shape errors surface at the call that caused them:

==================  ===========================================================  ====================================
layer               builds                                                       output shape (per step, no batch)
==================  ===========================================================  ====================================
``Input``           an :class:`~spaic_train.Encoder` (``coding=encoder``)        ``shape``
``Full``            ``NeuronGroup(units)`` + ``Connection(link_type='full')``    ``(units,)``
``Conv2dSyn``       ``NeuronGroup`` + ``Connection(link_type='conv')`` with      ``(out_channels, H', W')`` (after
                    ``syn_type=['conv'[, 'batchnorm'][, pool][, 'dropout']]``    conv and pool)
``OneToOne``        ``NeuronGroup`` + ``Connection(link_type='one_to_one')``     the input's shape
``SparseRandom``    ``NeuronGroup(units)`` + ``Connection('sparse_connect')``    ``(units,)``
                    (``density=``) or ``Connection('random')`` (``probability=``)
``Flatten``         nothing (folds ``'flatten'`` into the next connection)       ``(prod(shape),)``
``Dropout``         nothing (folds ``'dropout'`` into the next connection)       unchanged
``Pool2d``          nothing (folds ``'maxpool'``/``'avgpool'`` into the next     ``(C, H', W')``
                    connection)
``Feedback``        a ``Connection`` between two existing neuron layers (built   —
                    by the model: recurrent / top-down, with delays)
==================  ===========================================================  ====================================

**Where the neuron-less layers go.**  ``Flatten``, ``Dropout`` and ``Pool2d`` add no neurons; they are
folded into the synapse chain of the *next* connection, *before* its weight op — exactly where
their values flow: ``Conv2dSyn(8)`` → ``Pool2d('max', 2)`` → ``Dropout(0.2)`` → ``Flatten()`` →
``Full(10)`` gives the ``Full`` connection ``syn_type=['maxpool', 'dropout', 'flatten', 'basic']``
(pooling and dropout act on the *spikes* of the conv layer, like ``nn.MaxPool2d`` → ``nn.Dropout`` →
``nn.Linear`` in PyTorch).  ``Conv2dSyn(pool=..., dropout=...)`` instead puts its own ops *after*
the conv (on the synaptic current).  A neuron-less layer read by several layers is folded into
each of their connections (each with its own dropout mask); it cannot be a model output or the
end of a ``Feedback``.  All ops of one connection share its ``syn_kwargs``, so two pools (or two
dropouts) with *different* settings in one chain raise a ``ValueError``.

**Several inputs.**  ``Full(10)([a, b])`` makes one connection per input (each with its own
weight); their synaptic currents are summed in the layer's neurons (the network sums every
connection into a group).

**Residual blocks.**  ``Conv2dSyn(..., shortcut='auto')([h, x])`` adds the block input ``x`` to the current of
its neurons through an identity (frozen weight-1 one-to-one synapses) or a 1×1-conv + batch-norm shortcut, next
to the conv chain of ``h``: ``out = neuron(BN(conv(h)) + shortcut(x))`` — a ResNet basic block is two
``Conv2dSyn`` calls (see the class, and ``conf/model/resnet19.yaml``).

**Delays.**  Every neuron layer and ``Feedback`` accepts ``max_delay=`` (ms, ``> 0`` enables
per-synapse delays) and ``delay=`` (a tensor of the link's delay shape in ms, a number, or an
initializer such as ``spaic_train.uniform(1, 4)``; default: whole steps drawn uniformly in
``[min_delay, max_delay]``, ``min_delay`` one step).  ``learn_delay=True`` (a connection keyword) makes
them learnable: ``Full(64, max_delay=8.0, learn_delay=True)``, ``Conv2dSyn(...)`` with one delay per
``(out, in)`` channel pair, ``SparseRandom``, ``OneToOne``, ``Feedback`` (see
:class:`~spaic_train.Connection`; anneal their width with ``model.compile(delay_sigma=...)``).

Names: a layer's ``name`` (a Python identifier) becomes the attribute name of its group (or
encoder) in the network; unnamed layers are named by the model (``full``, ``full_1``, ...).
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence
from typing import Any, Optional, Union

import torch

from .. import init as _init
from ..assembly import NeuronGroup
from ..connection import Connection
from ..connection.synapses import SYNAPSES
from ..network import Encoder
from ..neurons import NEURONS
from ..registry import Registry
from ..surrogate import SURROGATES, Surrogate

__all__ = [
    "LAYERS",
    "Layer",
    "SymbolicTensor",
    "Input",
    "Full",
    "Conv2dSyn",
    "OneToOne",
    "SparseRandom",
    "Flatten",
    "Dropout",
    "Pool2d",
    "Feedback",
    "register_layer",
]

#: registry of layer classes by class name (used by :func:`~spaic_train.keras.load_model`)
LAYERS: Registry = Registry("layer")

Shape = tuple[int, ...]


def register_layer(cls):
    """Class decorator: make a :class:`Layer` subclass loadable by name from a saved config."""
    LAYERS.register(cls.__name__)(cls)
    return cls


def _reraise(e: Exception, prefix: str):
    """Raise ``e`` again (same type) with ``prefix: `` in front of its message, unless it is there already."""
    msg = str(e)
    if msg.startswith(prefix):
        raise e
    try:
        new = type(e)(f"{prefix}: {msg}")
    except Exception:  # noqa: BLE001 - exotic exception signature: keep the original
        raise e from None
    raise new from e


def _fmt_shape(shape) -> str:
    return "(" + ", ".join(str(s) for s in shape) + ("," if len(shape) == 1 else "") + ")"


def _check_name(owner: str, name: Optional[str]) -> Optional[str]:
    if name is None:
        return None
    if not isinstance(name, str) or not name.isidentifier() or name.startswith("_"):
        raise ValueError(f"{owner}: name must be a Python identifier not starting with '_' (it becomes an "
                         f"attribute of the network), got {name!r}")
    return name


def _positive_int(owner: str, what: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{owner}: {what} must be a positive int, got {value!r}")
    return value


# ---------------------------------------------------------------------------------------------------------------
# JSON-able configs: initializers, surrogates and tensors are encoded explicitly (never pickled)
# ---------------------------------------------------------------------------------------------------------------
def to_json_value(owner: str, key: str, value):
    """Encode a layer argument as JSON-able data; raises ``TypeError`` for anything it cannot describe.

    Initializers become ``{"__initializer__": class name, "params": {...}}``; surrogate objects
    ``{"name": ..., "alpha": ...}``; tensors/arrays ``{"__tensor__": shape}`` (their values live in the
    weights of a saved model, the config only records that one was given).
    """
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real):
        return float(value)
    if isinstance(value, _init.Initializer):
        return {"__initializer__": type(value).__name__,
                "params": {k: to_json_value(owner, key, v) for k, v in value._params().items()}}
    if isinstance(value, Surrogate):
        return {"name": value.name, "alpha": value.alpha}
    if isinstance(value, GivenTensor):
        return {"__tensor__": list(value.shape)}
    if isinstance(value, torch.Tensor) or type(value).__module__ == "numpy":
        shape = list(getattr(value, "shape", ()))
        return {"__tensor__": shape}
    if isinstance(value, (list, tuple)):
        return [to_json_value(owner, key, v) for v in value]
    if isinstance(value, dict):
        if not all(isinstance(k, str) for k in value):
            raise TypeError(f"{owner}: argument {key!r} is a dict with non-string keys; it cannot be saved")
        return {k: to_json_value(owner, f"{key}.{k}", v) for k, v in value.items()}
    raise TypeError(f"{owner}: argument {key}={value!r} of type {type(value).__name__} cannot be written to a "
                    "model config (use names, numbers, lists, dicts, tensors or spaic_train.init initializers)")


class GivenTensor:
    """Stands for a tensor argument of a layer rebuilt from a config (its values come with the saved weights).

    When the layer builds, a ``weight`` becomes ``None`` (default init), a ``bias`` or ``delay`` the number 0
    (so the parameter / buffer exists), anything else ``zeros(shape)``; ``load_state_dict`` then restores
    the saved values.  Re-serialises as ``{"__tensor__": shape}``.
    """

    __slots__ = ("shape",)

    def __init__(self, shape):
        self.shape = tuple(int(s) for s in shape)

    def __eq__(self, other):
        return isinstance(other, GivenTensor) and other.shape == self.shape

    def __hash__(self):
        return hash(self.shape)

    def __repr__(self):
        return f"GivenTensor{self.shape}"


_TENSOR_PLACEHOLDERS = {"weight": None, "bias": 0.0, "delay": 0.0}


def materialize(key: str, value):
    """Replace a :class:`GivenTensor` by its build-time placeholder (see there); other values pass."""
    if isinstance(value, GivenTensor):
        return _TENSOR_PLACEHOLDERS[key] if key in _TENSOR_PLACEHOLDERS else torch.zeros(value.shape)
    return value


def materialize_kwargs(kwargs: dict[str, Any]) -> dict[str, Any]:
    """:func:`materialize` every connection keyword; a given ``delay`` becomes ``min_delay`` (learnable delays may
    not start below it)."""
    out = {k: materialize(k, v) for k, v in kwargs.items()}
    if isinstance(kwargs.get("delay"), GivenTensor) and kwargs.get("min_delay") is not None:
        out["delay"] = kwargs["min_delay"]
    return out


def from_json_value(key: str, value):
    """Inverse of :func:`to_json_value` (tensors become :class:`GivenTensor` markers)."""
    if isinstance(value, list):
        return [from_json_value(key, v) for v in value]
    if isinstance(value, dict):
        if "__initializer__" in value:
            cls = getattr(_init, value["__initializer__"], None)
            if not (isinstance(cls, type) and issubclass(cls, _init.Initializer)):
                raise ValueError(f"unknown initializer {value['__initializer__']!r} in a model config")
            return cls(**{k: from_json_value(k, v) for k, v in value["params"].items()})
        if "__tensor__" in value:
            return GivenTensor(value["__tensor__"])
        return {k: from_json_value(k, v) for k, v in value.items()}
    return value


# ---------------------------------------------------------------------------------------------------------------
# symbolic tensors
# ---------------------------------------------------------------------------------------------------------------
class _PendingOp:
    """A synapse op of a neuron-less layer, waiting to be folded into the next connection."""

    __slots__ = ("syn", "params", "layer")

    def __init__(self, syn: str, params: dict[str, Any], layer: Layer):
        self.syn = syn
        self.params = params
        self.layer = layer


class SymbolicTensor:
    """What a layer call returns: the output of a layer at build time (no data).

    Attributes:
        layer: the layer that produced it.
        shape: shape of one sample per step (no batch, no time), e.g. ``(8, 4, 4)``.
        node: the core assembly (encoder or neuron group) whose values the next connection reads.
        ops: synapse ops of neuron-less layers (``Flatten``/``Dropout``/``Pool2d``) still to be folded
            into the next connection, in order.
    """

    def __init__(self, layer: Layer, shape: Shape, node, ops: tuple[_PendingOp, ...] = ()):
        self.layer = layer
        self.shape = tuple(shape)
        self.node = node
        self.ops = tuple(ops)

    def __repr__(self) -> str:
        return f"<SymbolicTensor shape={_fmt_shape(self.shape)} from {self.layer.label}>"


def _as_tensors(owner: str, inputs) -> list[SymbolicTensor]:
    items = list(inputs) if isinstance(inputs, (list, tuple)) else [inputs]
    out = []
    for t in items:
        if isinstance(t, Input):
            t = t.output
        if not isinstance(t, SymbolicTensor):
            raise TypeError(f"{owner}: layers are called on the output of Input(...) or of another layer call, "
                            f"got {type(t).__name__}")
        out.append(t)
    if not out:
        raise ValueError(f"{owner}: called on an empty list of inputs")
    return out


# ---------------------------------------------------------------------------------------------------------------
# base classes
# ---------------------------------------------------------------------------------------------------------------
class Layer:
    """Base class of all layers.

    Args:
        name: the layer's name (a Python identifier); ``None`` lets the model choose one.

    Attributes (after the layer was called):
        inbound: the :class:`SymbolicTensor` inputs.
        output: the :class:`SymbolicTensor` output.
        group: the core assembly it created (``NeuronGroup`` / ``Encoder``), or ``None``.
        connections: the incoming core ``Connection`` objects it created (one per input).
    """

    #: whether the layer creates neurons (a group the network integrates)
    creates_neurons = True
    #: base of generated names
    default_name = "layer"

    def __init__(self, name: Optional[str] = None):
        self.name = _check_name(type(self).__name__, name)
        self.inbound: list[SymbolicTensor] = []
        self.output: Optional[SymbolicTensor] = None
        self.group = None
        self.connections: list[Connection] = []
        self._model = None

    # ---- identity --------------------------------------------------------------------------------------------
    @property
    def label(self) -> str:
        """``Full 'h'`` — used as the prefix of every error message about this layer."""
        return f"{type(self).__name__} {self.name!r}" if self.name else type(self).__name__

    def __repr__(self) -> str:
        shape = f", output_shape={_fmt_shape(self.output.shape)}" if self.output is not None else ""
        return f"<{type(self).__name__} name={self.name!r}{shape}>"

    # ---- building --------------------------------------------------------------------------------------------
    def __call__(self, inputs) -> SymbolicTensor:
        """Connect the layer to ``inputs`` (a symbolic tensor, an ``Input``, or a list of them).

        Returns:
            The layer's output :class:`SymbolicTensor`.
        """
        if self.output is not None:
            raise ValueError(f"{self.label}: this layer was already called (it owns its neurons and weights); "
                             "create a new layer instead of reusing it")
        tensors = _as_tensors(self.label, inputs)
        try:
            out = self._build(tensors)
        except (ValueError, TypeError) as e:
            _reraise(e, self.label)
        self.inbound = tensors
        self.output = out
        return out

    def _build(self, inputs: list[SymbolicTensor]) -> SymbolicTensor:
        raise NotImplementedError

    def _rename(self) -> None:
        """Propagate :attr:`name` to the core objects (called by the model once names are final)."""
        if self.group is not None:
            self.group.name = self.name
            neuron = getattr(self.group, "neuron", None)
            if neuron is not None:
                neuron.owner = self.group.label

    # ---- description -----------------------------------------------------------------------------------------
    @property
    def output_shape(self) -> Shape:
        if self.output is None:
            raise ValueError(f"{self.label}: the layer has not been called yet, so its output shape is unknown")
        return self.output.shape

    def modules(self) -> list:
        """The core modules this layer owns (its group and incoming connections)."""
        mods = list(self.connections)
        if isinstance(self.group, torch.nn.Module):
            mods.append(self.group)
        return mods

    def count_params(self, trainable_only: bool = False) -> int:
        """Number of parameter elements in the layer's group and connections (dense weights count in full)."""
        seen = set()
        n = 0
        for m in self.modules():
            for p in m.parameters():
                if id(p) in seen or (trainable_only and not p.requires_grad):
                    continue
                seen.add(id(p))
                n += p.numel()
        return n

    def neuron_description(self) -> str:
        return "-"

    def delay_description(self) -> str:
        return _delays_text(self.connections)

    def get_config(self) -> dict[str, Any]:
        """JSON-able constructor arguments (``cls.from_config(cfg)`` rebuilds an uncalled twin)."""
        return {"name": self.name}

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> Layer:
        cfg = {k: from_json_value(k, v) for k, v in config.items()}
        extra = cfg.pop("connection_kwargs", None) or {}
        return cls(**cfg, **extra)


def _delays_text(conns: Sequence[Connection]) -> str:
    parts = []
    for c in conns:
        if c.delay is None:
            continue
        if c.delay.numel() == 0:
            parts.append("0 ms")
            continue
        lo, hi = float(c.delay.detach().min()), float(c.delay.detach().max())
        text = f"{lo:.3g} ms" if lo == hi else f"{lo:.3g}-{hi:.3g} ms"
        parts.append(f"{text} learned" if c.learn_delay else text)
    return ", ".join(parts) if parts else "-"


def _merge_syn_kwargs(owner: str, ops: Sequence[tuple[str, dict[str, Any], str]]) -> dict[str, Any]:
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


class _NeuronLayer(Layer):
    """A layer that creates a ``NeuronGroup`` and one ``Connection`` from each input into it.

    Args:
        neuron: neuron model name (``'lif'``, ``'if'``, ``'plif'``, ``'alif'``, ``'izhikevich'``,
            ``'leaky_integrator'``).
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

    def __init__(self, neuron: str = "lif", neuron_kwargs: Optional[dict[str, Any]] = None, surrogate=None,
                 max_delay: float = 0.0, delay=None, name: Optional[str] = None, **connection_kwargs):
        super().__init__(name=name)
        if not isinstance(neuron, str):
            raise TypeError(f"{self.label}: neuron must be a model name such as 'lif' or 'plif', got "
                            f"{type(neuron).__name__} (set parameters with neuron_kwargs=)")
        if neuron_kwargs is not None and not isinstance(neuron_kwargs, dict):
            raise TypeError(f"{self.label}: neuron_kwargs must be a dict, got {type(neuron_kwargs).__name__}")
        if neuron_kwargs and "surrogate" in neuron_kwargs and surrogate is not None:
            raise ValueError(f"{self.label}: surrogate given both as surrogate= and in neuron_kwargs")
        NEURONS.get(neuron, owner=self.label)  # unknown names fail here, not when the model is built
        if isinstance(surrogate, str):
            SURROGATES.get(surrogate, owner=self.label)
        self.neuron = neuron
        self.neuron_kwargs = dict(neuron_kwargs or {})
        self.surrogate = surrogate
        self.max_delay = max_delay
        self.delay = delay
        self.connection_kwargs = dict(connection_kwargs)
        for reserved in ("link_type", "syn_type", "syn_kwargs", "pre", "post"):
            if reserved in self.connection_kwargs:
                raise TypeError(f"{self.label}: {reserved}= is set by the layer itself")

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

    def _neuron_params(self) -> dict[str, Any]:
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
        group = NeuronGroup(shape=shape, model=self.neuron, name=self.name, **self._neuron_params())
        conns = []
        post_ops = self._post_ops()
        for i, t in enumerate(inputs):
            ops = [(op.syn, op.params, op.layer.label) for op in t.ops]
            ops += [(s, p, f"{self.label}'s own {s}") for s, p in post_ops]
            syn_kwargs = _merge_syn_kwargs(self.label, ops)
            syn_type = [op.syn for op in t.ops] + [self._weight_op()] + [s for s, _ in post_ops]
            kwargs = {**self._connection_defaults(), **self.connection_kwargs, **self._link_kwargs()}
            if self.delay is not None:
                kwargs["delay"] = self.delay
            kwargs = materialize_kwargs(kwargs)
            try:
                conn = Connection(t.node, group, link_type=self.link_type, syn_type=syn_type,
                                  max_delay=self.max_delay, syn_kwargs=syn_kwargs, **kwargs)
            except ValueError as e:
                if shape is not None or i == 0:
                    raise
                raise ValueError(f"input from {t.layer.label} (shape {_fmt_shape(t.shape)}) does not fit: the "
                                 f"layer's output shape is {_fmt_shape(group.shape)} (set by its first input "
                                 f"{inputs[0].layer.label}); {e}") from e
            conns.append(conn)
        self.group = group
        self.connections = conns
        return SymbolicTensor(self, group.shape, group)

    # description ---------------------------------------------------------------------------------------------
    def neuron_description(self) -> str:
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
        return cfg


def _short(v) -> str:
    if isinstance(v, float):
        return f"{v:g}"
    if isinstance(v, Surrogate):
        return v.name
    return repr(v) if isinstance(v, str) else str(v)


# ---------------------------------------------------------------------------------------------------------------
# concrete layers
# ---------------------------------------------------------------------------------------------------------------
@register_layer
class Input(Layer):
    """Model input: an :class:`~spaic_train.Encoder` turning ``[B, *shape]`` into ``[T, B, *shape]``.

    Args:
        shape: shape of one sample (no batch), e.g. ``(1, 28, 28)`` or ``784``.
        encoder: coding — ``'direct'`` (the value as input current every step; default), ``'poisson'``
            (rate ``x·max_rate`` Hz), ``'bernoulli'`` (probability ``x`` per step), ``'latency'`` (one
            spike, earlier for larger ``x``), ``'passthrough'`` (the data already is a sequence
            ``[T, B, *shape]``, e.g. an event datamodule's batches) or ``'sequence'`` (spike trains or frames stored
            sample by sample: ``fit``/``evaluate``/``predict`` take an array ``[N, T, *shape]``, each batch
            ``[B, T, *shape]`` is transposed to ``[T, B, *shape]``; another shape is an error naming the layout).
            Every other encoder passes ``[T, B, *shape]`` sequences through unchanged.
        name: layer name.
        **encoder_kwargs: coding parameters (``max_rate`` in Hz for poisson, ``threshold`` for latency).

    An ``Input`` is used directly as the first tensor: ``x = Input((1, 8, 8)); h = Full(64)(x)``.
    """

    creates_neurons = False
    default_name = "input"

    def __init__(self, shape, encoder: str = "direct", name: Optional[str] = None, **encoder_kwargs):
        super().__init__(name=name)
        if isinstance(shape, int) and not isinstance(shape, bool):
            shape = (shape,)
        try:
            shape = tuple(shape)
        except TypeError:
            raise TypeError(f"{self.label}: shape must be an int or a sequence of ints, got {shape!r}") from None
        for s in shape:
            _positive_int(self.label, "every entry of shape", s)
        if not shape:
            raise ValueError(f"{self.label}: shape must not be empty")
        self.shape = shape
        self.encoder = encoder
        self.encoder_kwargs = dict(encoder_kwargs)
        try:
            self.group = Encoder(shape=shape, coding=encoder, name=name, **self.encoder_kwargs)
        except (ValueError, TypeError) as e:
            _reraise(e, self.label)
        self.output = SymbolicTensor(self, shape, self.group)

    def __call__(self, inputs):
        raise TypeError(f"{self.label}: an Input takes no inputs; pass it (or its output) to the next layer")

    def neuron_description(self) -> str:
        return f"encoder={self.group.coding}"

    def get_config(self):
        return {"name": self.name, "shape": list(self.shape), "encoder": self.encoder,
                "encoder_kwargs": to_json_value(self.label, "encoder_kwargs", self.encoder_kwargs)}

    @classmethod
    def from_config(cls, config):
        cfg = dict(config)
        kw = from_json_value("encoder_kwargs", cfg.pop("encoder_kwargs", None) or {})
        return cls(**cfg, **kw)


@register_layer
class Full(_NeuronLayer):
    """Fully connected spiking layer: ``units`` neurons, each driven by every input unit.

    Builds ``NeuronGroup(units, model=neuron)`` and, per input, ``Connection(link_type='full')`` with a
    weight ``(units, prod(input_shape))`` (an input of any shape is flattened by the link).

    Args:
        units: number of neurons.
        neuron, neuron_kwargs, surrogate, max_delay, delay, name: see the module docstring / ``_NeuronLayer``.
        **connection_kwargs: ``weight`` (default ``kaiming_uniform(a=sqrt(5))``, PyTorch's ``Linear``
            init), ``bias`` (default none; ``True`` for PyTorch's default), ``w_min``/``w_max``, ...

    Output shape ``(units,)``; parameters ``units·in_num`` (+ ``units`` with a bias, + ``2·units`` with an
    affine ``batchnorm``: ``False``, ``True`` or a dict of ``eps``/``momentum``/``affine``, normalising the
    synaptic current over all ``T·B`` samples of a run, as in DCLS-Delays' Dcls1d → BatchNorm1d blocks).
    """

    default_name = "full"
    link_type = "full"

    def __init__(self, units: int, neuron: str = "lif", neuron_kwargs=None, surrogate=None, max_delay: float = 0.0,
                 delay=None, name: Optional[str] = None, batchnorm: Union[bool, dict[str, Any]] = False,
                 **connection_kwargs):
        super().__init__(neuron, neuron_kwargs, surrogate, max_delay, delay, name, **connection_kwargs)
        self.units = _positive_int(self.label, "units", units)
        if not isinstance(batchnorm, (bool, dict)):
            raise TypeError(f"{self.label}: batchnorm must be a bool or a dict of eps/momentum/affine, "
                            f"got {batchnorm!r}")
        self.batchnorm = batchnorm

    def _group_shape(self, inputs):
        return (self.units,)

    def _post_ops(self):
        return [("batchnorm", dict(self.batchnorm) if isinstance(self.batchnorm, dict) else {})] \
            if self.batchnorm else []

    def get_config(self):
        cfg = {"units": self.units, **super().get_config()}
        if self.batchnorm:
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
    the parameter count is the dense size.
    """

    default_name = "sparse"

    def __init__(self, units: int, density: Optional[float] = None, probability: Optional[float] = None,
                 neuron: str = "lif", neuron_kwargs=None, surrogate=None, max_delay: float = 0.0, delay=None,
                 name: Optional[str] = None, **connection_kwargs):
        super().__init__(units, neuron, neuron_kwargs, surrogate, max_delay, delay, name, **connection_kwargs)
        if density is not None and probability is not None:
            raise ValueError(f"{self.label}: give density= (sparse_connect) or probability= (random), not both")
        self.density = density
        self.probability = probability
        self.link_type = "random" if probability is not None else "sparse_connect"

    def _link_kwargs(self):
        if self.probability is not None:
            return {"probability": self.probability}
        return {"density": 0.1 if self.density is None else self.density}

    def _connection_defaults(self):
        return {}  # masked dense weights: keep the core's default init for sparse links

    def get_config(self):
        return {**super().get_config(), "density": self.density, "probability": self.probability}


@register_layer
class OneToOne(_NeuronLayer):
    """One neuron per input unit: neuron ``i`` is driven by input unit ``i`` with its own weight.

    Builds ``Connection(link_type='one_to_one')`` (weight ``(num,)``, default every weight ``w_mean=0.05``
    unless ``weight``/``w_mean``/``w_std`` are given).  Output shape = the input's shape; parameters ``num``.
    """

    default_name = "one_to_one"
    link_type = "one_to_one"

    def __init__(self, neuron: str = "lif", neuron_kwargs=None, surrogate=None, max_delay: float = 0.0, delay=None,
                 name: Optional[str] = None, **connection_kwargs):
        super().__init__(neuron, neuron_kwargs, surrogate, max_delay, delay, name, **connection_kwargs)

    def _group_shape(self, inputs):
        return inputs[0].shape

    def _connection_defaults(self):
        return {}


@register_layer
class Conv2dSyn(_NeuronLayer):
    """Convolutional spiking layer: conv synapses (optionally + batch norm, pooling, dropout) into neurons.

    Builds ``Connection(link_type='conv', syn_type=['conv'[, 'batchnorm'][, pool][, 'dropout']])`` (pool:
    ``'maxpool'``, ``'avgpool'`` or ``'sumpool'``) into a ``NeuronGroup`` whose shape the connection infers.  The
    pool / batch norm / dropout act on the synaptic current, before the neurons.

    Args:
        out_channels: output channels.
        kernel_size, stride, padding, dilation, groups: as ``torch.nn.Conv2d`` (``padding`` may be
            ``'same'``/``'valid'``).
        pool: ``None``, ``'max'``, ``'avg'`` or ``'sum'``.
        pool_size: pooling window (int or pair); ``pool_stride`` defaults to the window.
        dropout: drop probability in ``[0, 1)`` (one mask per sample, shared by all steps) or ``None``.
        batchnorm: ``False``, ``True``, or a dict of ``eps``/``momentum``/``affine``.  In training the
            statistics are taken over all ``T·B`` samples (and ``H·W``) of a run, as tdBN does.
        shortcut: ``None`` (default), or the residual shortcut of a ResNet basic block for a layer called
            on two inputs ``[h, x]``: ``h`` goes through the layer's conv chain, and ``x`` (the block's
            input) is added to the current of the same neurons, ``out = neuron(BN(conv(h)) + shortcut(x))``:

            * ``'identity'``: one-to-one synapses of fixed weight 1 (``Connection(link_type='one_to_one',
              is_parameter=False)``); ``x`` must have the output shape;
            * ``'projection'``: a 1×1 conv (no bias; stride = input size // output size, so it matches a
              strided first conv of the block), then batch norm when the layer has ``batchnorm``;
            * ``'auto'``: ``'identity'`` when ``x`` has the output shape, else ``'projection'``.

            Without a shortcut, every input gets its own copy of the conv chain (their currents sum).
        neuron, neuron_kwargs, surrogate, max_delay, delay, name, **connection_kwargs: see :class:`Full`;
            delays are per ``(out_channel, in_channel/groups)`` pair (main path only).

    Input ``(C, H, W)``; output ``(out_channels, H', W')`` with
    ``H' = floor((H + 2p - d(k-1) - 1)/s) + 1`` then ``floor((H' - pool)/pool_stride) + 1``.
    Parameters: ``out·(C/groups)·kh·kw`` (+ ``out`` with a bias, + ``2·out`` with an affine batch norm;
    a projection shortcut adds ``out·C_x`` (+ ``2·out``), an identity one ``C·H·W`` frozen weights).
    """

    #: values of ``shortcut=``
    SHORTCUTS = (None, "auto", "identity", "projection")

    default_name = "conv"
    link_type = "conv"

    def __init__(self, out_channels: int, kernel_size=3, stride=1, padding=0, dilation=1, groups: int = 1,
                 pool: Optional[str] = None, pool_size=2, pool_stride=None, dropout: Optional[float] = None,
                 batchnorm: Union[bool, dict[str, Any]] = False, shortcut: Optional[str] = None,
                 neuron: str = "lif", neuron_kwargs=None, surrogate=None, max_delay: float = 0.0, delay=None,
                 name: Optional[str] = None, **connection_kwargs):
        super().__init__(neuron, neuron_kwargs, surrogate, max_delay, delay, name, **connection_kwargs)
        self.out_channels = _positive_int(self.label, "out_channels", out_channels)
        self.kernel_size = kernel_size
        self.stride = stride
        self.padding = padding
        self.dilation = dilation
        self.groups = groups
        if pool not in (None, "max", "avg", "sum"):
            raise ValueError(f"{self.label}: pool must be None, 'max', 'avg' or 'sum', got {pool!r}")
        self.pool = pool
        self.pool_size = pool_size
        self.pool_stride = pool_stride
        if dropout is not None and (isinstance(dropout, bool) or not isinstance(dropout, (int, float))
                                    or not 0.0 <= dropout < 1.0):
            raise ValueError(f"{self.label}: dropout must be None or a number in [0, 1), got {dropout!r}")
        self.dropout = dropout
        if not isinstance(batchnorm, (bool, dict)):
            raise TypeError(f"{self.label}: batchnorm must be a bool or a dict of eps/momentum/affine, "
                            f"got {batchnorm!r}")
        self.batchnorm = batchnorm
        if shortcut not in self.SHORTCUTS:
            raise ValueError(f"{self.label}: shortcut must be one of {self.SHORTCUTS}, got {shortcut!r}")
        self.shortcut = shortcut

    def _build(self, inputs):
        if self.shortcut is None:
            return super()._build(inputs)
        if len(inputs) != 2:
            raise ValueError(f"shortcut={self.shortcut!r} needs exactly two inputs [h, x] (h through the conv, x the "
                             f"block input added through the shortcut), got {len(inputs)}")
        main, skip = inputs
        self._check_input(skip)
        if skip.ops:
            raise ValueError(f"the shortcut input from {skip.layer.label} passes through "
                             f"{', '.join(op.layer.label for op in skip.ops)}; a shortcut reads the output of a neuron "
                             "layer or Input directly")
        out = super()._build([main])
        self.connections.append(self._shortcut_connection(skip, out.shape))
        return out

    def _shortcut_connection(self, skip: SymbolicTensor, out_shape: Shape) -> Connection:
        kind = self.shortcut
        if kind == "auto":
            kind = "identity" if skip.shape == out_shape else "projection"
        if kind == "identity":
            if skip.shape != out_shape:
                raise ValueError(f"shortcut='identity' needs the input from {skip.layer.label} to have the output "
                                 f"shape {_fmt_shape(out_shape)}, got {_fmt_shape(skip.shape)}; use "
                                 "shortcut='projection' or 'auto'")
            return Connection(skip.node, self.group, link_type="one_to_one", weight=1.0, is_parameter=False)
        weight = self.connection_kwargs.get("weight")
        if not isinstance(weight, _init.Initializer):
            weight = _init.kaiming_uniform(a=math.sqrt(5))
        stride = tuple(max(1, i // o) for i, o in zip(skip.shape[1:], out_shape[1:]))
        return Connection(skip.node, self.group, link_type="conv",
                          syn_type=["conv", "batchnorm"] if self.batchnorm else ["conv"],
                          syn_kwargs=dict(self.batchnorm) if isinstance(self.batchnorm, dict) else {},
                          out_channels=self.out_channels, kernel_size=1, stride=stride, weight=weight)

    def _check_input(self, t):
        if len(t.shape) != 3:
            raise ValueError(f"expected an input of shape (C, H, W), got {_fmt_shape(t.shape)} from {t.layer.label}")

    def _group_shape(self, inputs):
        return None  # inferred by the conv connection

    def _weight_op(self):
        return "conv"

    def _link_kwargs(self):
        return {"out_channels": self.out_channels, "kernel_size": self.kernel_size, "stride": self.stride,
                "padding": self.padding, "dilation": self.dilation, "groups": self.groups}

    def _post_ops(self):
        ops = []
        if self.batchnorm:
            ops.append(("batchnorm", dict(self.batchnorm) if isinstance(self.batchnorm, dict) else {}))
        if self.pool is not None:
            ops.append((f"{self.pool}pool", {"pool_kernel_size": self.pool_size, "pool_stride": self.pool_stride}))
        if self.dropout is not None:
            ops.append(("dropout", {"p": float(self.dropout)}))
        return ops

    def get_config(self):
        return {"out_channels": self.out_channels, "kernel_size": to_json_value(self.label, "kernel_size",
                                                                                self.kernel_size),
                "stride": to_json_value(self.label, "stride", self.stride),
                "padding": to_json_value(self.label, "padding", self.padding),
                "dilation": to_json_value(self.label, "dilation", self.dilation), "groups": self.groups,
                "pool": self.pool, "pool_size": to_json_value(self.label, "pool_size", self.pool_size),
                "pool_stride": to_json_value(self.label, "pool_stride", self.pool_stride),
                "dropout": self.dropout, "batchnorm": to_json_value(self.label, "batchnorm", self.batchnorm),
                "shortcut": self.shortcut, **super().get_config()}


class _FoldLayer(Layer):
    """A layer without neurons: its synapse op is folded into the next connection's chain."""

    creates_neurons = False
    syn = ""

    def _params(self) -> dict[str, Any]:
        return {}

    def _syn_name(self) -> str:
        return self.syn

    def _build(self, inputs):
        if len(inputs) != 1:
            raise ValueError(f"takes exactly one input, got {len(inputs)}")
        (t,) = inputs
        syn = self._syn_name()
        params = self._params()
        op = SYNAPSES.get(syn)(self.label, t.shape, params)  # the core op validates and gives the shape
        shape = tuple(op.output_shape(t.shape))
        return SymbolicTensor(self, shape, t.node, t.ops + (_PendingOp(syn, params, self),))

    def neuron_description(self) -> str:
        return f"(folded: {self._syn_name()})"

    def delay_description(self) -> str:
        return "-"


@register_layer
class Flatten(_FoldLayer):
    """``(*shape)`` → ``(prod(shape),)``: folds a ``'flatten'`` op into the next connection (no neurons)."""

    default_name = "flatten"
    syn = "flatten"

    def __init__(self, name: Optional[str] = None):
        super().__init__(name=name)


@register_layer
class Dropout(_FoldLayer):
    """Dropout on the values the next layer reads: folds ``'dropout'`` (``p``) into the next connection.

    One mask per sample, shared by all time steps (a dropped neuron stays silent for the whole run);
    identity in ``eval()``.  Output shape = input shape.

    Args:
        p: drop probability in ``[0, 1)``.
    """

    default_name = "dropout"
    syn = "dropout"

    def __init__(self, p: float = 0.5, name: Optional[str] = None):
        super().__init__(name=name)
        if isinstance(p, bool) or not isinstance(p, (int, float)) or not 0.0 <= p < 1.0:
            raise ValueError(f"{self.label}: p must be a number in [0, 1), got {p!r}")
        self.p = float(p)

    def _params(self):
        return {"p": self.p}

    def get_config(self):
        return {"p": self.p, "name": self.name}


@register_layer
class Pool2d(_FoldLayer):
    """2-D pooling of ``(C, H, W)`` values: folds ``'maxpool'``/``'avgpool'``/``'sumpool'`` into the next
    connection.

    Args:
        kind: ``'max'``, ``'avg'`` or ``'sum'`` (the window's sum, NIR's ``SumPool2d``).
        size: window (int or pair).
        stride: step (default: the window).
        padding: zero padding (at most half the window).

    Output ``(C, floor((H + 2p - size)/stride) + 1, ...)``.
    """

    default_name = "pool"

    def __init__(self, kind: str = "max", size=2, stride=None, padding=0, name: Optional[str] = None):
        super().__init__(name=name)
        if kind not in ("max", "avg", "sum"):
            raise ValueError(f"{self.label}: kind must be 'max', 'avg' or 'sum', got {kind!r}")
        self.kind = kind
        self.size = size
        self.stride = stride
        self.padding = padding

    def _syn_name(self):
        return f"{self.kind}pool"

    def _params(self):
        return {"pool_kernel_size": self.size, "pool_stride": self.stride, "pool_padding": self.padding}

    def _build(self, inputs):
        t = inputs[0]
        if len(t.shape) != 3:
            raise ValueError(f"expected an input of shape (C, H, W), got {_fmt_shape(t.shape)} from {t.layer.label}")
        return super()._build(inputs)

    def get_config(self):
        return {"kind": self.kind, "size": to_json_value(self.label, "size", self.size),
                "stride": to_json_value(self.label, "stride", self.stride),
                "padding": to_json_value(self.label, "padding", self.padding), "name": self.name}


# ---------------------------------------------------------------------------------------------------------------
# feedback
# ---------------------------------------------------------------------------------------------------------------
class Feedback:
    """A connection between two neuron layers of a model, typically recurrent or top-down, with delays.

    Passed to a model as ``feedback=[...]``::

        Sequential([Input((64,)), Full(64, name='h'), Full(10, name='out')],
                   feedback=[Feedback('out', 'h', max_delay=4.0)])           # top-down out → h
        Model(x, y, feedback=[Feedback(y, h, max_delay=2.0),                # endpoints as tensors,
                              Feedback('h', 'h', link_type='random', probability=0.2)])  # or self-recurrent

    Args:
        source: the layer whose spikes are read — its name, the layer, or its output tensor.
        target: the layer the connection drives (same forms).
        link_type: ``'full'`` (default), ``'sparse_connect'``, ``'random'``, ``'one_to_one'`` or ``'conv'``.
        max_delay: largest delay in ms (``0``: no per-synapse delays).
        delay: per-synapse delays in ms (tensor/number/initializer; default drawn in ``[min_delay, max_delay]``).
        name: connection attribute name in the network (default ``fb_<source>_to_<target>``).
        **connection_kwargs: passed to :class:`~spaic_train.Connection` (``weight``, ``w_mean``,
            ``w_std``, ``density``, ``probability``, ``kernel_size``, ``post_var_name``, ...).

    Timing: a connection from a layer to itself or to an earlier layer is a *feedback* edge and
    always reads the previous step at the earliest (effective delay ``>= 1`` step); the network
    runs that cycle step by step.  A ``Feedback`` to a *later* layer is simply an extra (delayed)
    forward connection.  Endpoints must be neuron layers (not ``Input``, ``Flatten``, ``Dropout``,
    ``Pool2d``).
    """

    def __init__(self, source, target, link_type: str = "full", max_delay: float = 0.0, delay=None,
                 name: Optional[str] = None, **connection_kwargs):
        self.source = source
        self.target = target
        self.link_type = link_type
        self.max_delay = max_delay
        self.delay = delay
        self.name = _check_name("Feedback", name)
        self.connection_kwargs = dict(connection_kwargs)
        self.connection: Optional[Connection] = None

    @staticmethod
    def _ref_name(ref) -> Optional[str]:
        if isinstance(ref, str):
            return ref
        if isinstance(ref, SymbolicTensor):
            return ref.layer.name
        if isinstance(ref, Layer):
            return ref.name
        raise TypeError(f"Feedback: endpoints must be layer names, layers or layer outputs, got {type(ref).__name__}")

    def _resolve(self, ref, layers: dict[str, Layer], role: str) -> Layer:
        if isinstance(ref, SymbolicTensor):
            ref = ref.layer
        if isinstance(ref, Layer):
            if ref not in layers.values():
                raise ValueError(f"{self.label}: the {role} {ref.label} is not a layer of this model")
            layer = ref
        elif isinstance(ref, str):
            if ref not in layers:
                raise ValueError(f"{self.label}: no layer named {ref!r} for the {role}; layers are: "
                                 f"{', '.join(layers)}")
            layer = layers[ref]
        else:
            raise TypeError(f"{self.label}: the {role} must be a layer name, a layer or a layer's output, "
                            f"got {type(ref).__name__}")
        if not layer.creates_neurons or isinstance(layer, Input):
            raise ValueError(f"{self.label}: the {role} {layer.label} has no neurons; a Feedback connects two "
                             "neuron layers (Full, Conv2dSyn, OneToOne, SparseRandom)")
        return layer

    @property
    def label(self) -> str:
        try:
            src, tgt = self._ref_name(self.source), self._ref_name(self.target)
        except TypeError:
            src = tgt = "?"
        return f"Feedback({src}→{tgt})" if self.name is None else f"Feedback {self.name!r}"

    def resolve(self, layers: dict[str, Layer]) -> tuple[Layer, Layer]:
        """The ``(source, target)`` layers among ``layers`` (name → layer of the model)."""
        return self._resolve(self.source, layers, "source"), self._resolve(self.target, layers, "target")

    def build(self, src: Layer, tgt: Layer, name: str) -> Connection:
        """Create the connection ``src.group → tgt.group`` named ``name`` (called by the model)."""
        self.source, self.target, self.name = src.name, tgt.name, name
        kwargs = dict(self.connection_kwargs)
        if self.delay is not None:
            kwargs["delay"] = self.delay
        kwargs = materialize_kwargs(kwargs)
        try:
            conn = Connection(src.group, tgt.group, name=name, link_type=self.link_type,
                              max_delay=self.max_delay, **kwargs)
        except (ValueError, TypeError) as e:
            _reraise(e, self.label)
        self.connection = conn
        return conn

    # description ---------------------------------------------------------------------------------------------
    def count_params(self, trainable_only: bool = False) -> int:
        if self.connection is None:
            return 0
        return sum(p.numel() for p in self.connection.parameters() if p.requires_grad or not trainable_only)

    def delay_description(self) -> str:
        if self.connection is None:
            return "-"
        text = _delays_text([self.connection])
        return text

    def get_config(self) -> dict[str, Any]:
        return {"source": self._ref_name(self.source), "target": self._ref_name(self.target),
                "link_type": self.link_type, "max_delay": to_json_value(self.label, "max_delay", self.max_delay),
                "delay": to_json_value(self.label, "delay", self.delay), "name": self.name,
                "connection_kwargs": to_json_value(self.label, "connection_kwargs", self.connection_kwargs)}

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> Feedback:
        cfg = {k: from_json_value(k, v) for k, v in config.items()}
        extra = cfg.pop("connection_kwargs", None) or {}
        return cls(**cfg, **extra)

    def __repr__(self) -> str:
        return f"<{self.label} link_type={self.link_type!r} max_delay={self.max_delay}>"
