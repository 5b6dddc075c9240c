"""The base of every layer: the :data:`LAYERS` registry, :class:`SymbolicTensor` (what a layer call returns) and
:class:`Layer` (naming, calling, description, config)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Optional

import torch

from ...connection import Connection
from ...registry import Registry
from .checks import check_name
from .config import from_json_value

__all__ = ["LAYERS", "Layer", "PendingOp", "Shape", "SymbolicTensor", "as_tensors", "delays_text", "format_shape",
           "register_layer", "reraise_with_prefix"]

#: registry of layer classes by class name (used by :func:`~spaic_train.keras.load_model`)
LAYERS: Registry = Registry("layer")

Shape = tuple[int, ...]


def register_layer(cls):
    """Class decorator: make a :class:`Layer` subclass loadable by name from a saved config."""
    LAYERS.register(cls.__name__)(cls)
    return cls


def reraise_with_prefix(e: Exception, prefix: str):
    """Raise ``e`` again (same type) with ``prefix: `` in front of its message, unless it is there already."""
    msg = str(e)
    if msg.startswith(prefix):
        raise e
    try:
        new = type(e)(f"{prefix}: {msg}")
    except Exception:  # noqa: BLE001 - exotic exception signature: keep the original
        raise e from None
    raise new from e


def format_shape(shape) -> str:
    """``(8, 4, 4)``, ``(10,)``: a per-sample shape as Python writes a tuple."""
    return "(" + ", ".join(str(s) for s in shape) + ("," if len(shape) == 1 else "") + ")"


# ---------------------------------------------------------------------------------------------------------------
# symbolic tensors
# ---------------------------------------------------------------------------------------------------------------
class PendingOp:
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

    def __init__(self, layer: Layer, shape: Shape, node, ops: tuple[PendingOp, ...] = ()):
        self.layer = layer
        self.shape = tuple(shape)
        self.node = node
        self.ops = tuple(ops)

    def __repr__(self) -> str:
        return f"<SymbolicTensor shape={format_shape(self.shape)} from {self.layer.label}>"


def as_tensors(owner: str, inputs) -> list[SymbolicTensor]:
    items = list(inputs) if isinstance(inputs, (list, tuple)) else [inputs]
    out = []
    for t in items:
        if isinstance(t, Layer) and t.is_source:
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
    #: whether the layer object stands for its output (``Input``: built at construction, called on nothing)
    is_source = False
    #: base of generated names
    default_name = "layer"

    def __init__(self, name: Optional[str] = None):
        self.name = check_name(type(self).__name__, name)
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
        shape = f", output_shape={format_shape(self.output.shape)}" if self.output is not None else ""
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
        tensors = as_tensors(self.label, inputs)
        try:
            out = self._build(tensors)
        except (ValueError, TypeError) as e:
            reraise_with_prefix(e, self.label)
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
        return delays_text(self.connections)

    def get_config(self) -> dict[str, Any]:
        """JSON-able constructor arguments (``cls.from_config(cfg)`` rebuilds an uncalled twin)."""
        return {"name": self.name}

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> Layer:
        cfg = {k: from_json_value(k, v) for k, v in config.items()}
        extra = cfg.pop("connection_kwargs", None) or {}
        return cls(**cfg, **extra)


def delays_text(conns: Sequence[Connection]) -> str:
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


