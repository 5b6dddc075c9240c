"""Layers without neurons — ``Flatten``, ``Dropout``, ``Pool2d``: each adds its synapse op to the tensor it
returns, and the next neuron layer folds the pending ops into its connection's chain, before the weight op."""

from __future__ import annotations

from typing import Any, Optional

from ...connection.synapses import SYNAPSES
from .base import Layer, PendingOp, SymbolicTensor, format_shape, register_layer
from .checks import check_fraction, check_int_pair, check_pool_padding
from .config import to_json_value

__all__ = ["Dropout", "Flatten", "FoldLayer", "Pool2d"]

#: pooling kinds of ``Pool2d`` (the synapse op is ``<kind>pool``)
POOL_KINDS = ("max", "avg", "sum")


class FoldLayer(Layer):
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
        return SymbolicTensor(self, shape, t.node, t.ops + (PendingOp(syn, params, self),))

    def neuron_description(self) -> str:
        return f"(folded: {self._syn_name()})"

    def delay_description(self) -> str:
        return "-"


@register_layer
class Flatten(FoldLayer):
    """``(*shape)`` → ``(prod(shape),)``: folds a ``'flatten'`` op into the next connection (no neurons)."""

    default_name = "flatten"
    syn = "flatten"

    def __init__(self, name: Optional[str] = None):
        super().__init__(name=name)


@register_layer
class Dropout(FoldLayer):
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
        self.p = check_fraction(self.label, "p", p)

    def _params(self):
        return {"p": self.p}

    def get_config(self):
        return {"p": self.p, "name": self.name}


@register_layer
class Pool2d(FoldLayer):
    """2-D pooling of ``(C, H, W)`` values: folds ``'maxpool'``/``'avgpool'``/``'sumpool'`` into the next
    connection.  ``Pool2d(2)`` is Keras' ``MaxPooling2D(2)``; ``Pool2d(2, kind="avg")`` its ``AveragePooling2D``.

    Args:
        size: window (int or pair).
        stride: step (default: the window).
        padding: zero padding (at most half the window).
        kind: ``'max'`` (default), ``'avg'`` or ``'sum'`` (the window's sum, NIR's ``SumPool2d``).

    The older order with the kind first, ``Pool2d("max", 2, stride=..., padding=...)``, is still accepted.

    Output ``(C, floor((H + 2p - size)/stride) + 1, ...)``.
    """

    default_name = "pool"

    def __init__(self, size=2, *args, stride=None, padding=0, kind: Optional[str] = None,
                 name: Optional[str] = None):
        super().__init__(name=name)
        if isinstance(size, str):  # the kind-first order of earlier versions: Pool2d("max", 2, ...)
            if kind is not None:
                raise TypeError(f"{self.label}: kind given twice ({size!r} first and kind={kind!r}); write "
                                f"Pool2d(size, kind={kind!r})")
            kind = size
            size, args = (args[0], args[1:]) if args else (2, ())
        if len(args) > 2:
            raise TypeError(f"{self.label}: takes size, stride and padding positionally, got {len(args) + 1} "
                            f"positional arguments; give kind= by keyword")
        if args:
            if stride is not None or (len(args) == 2 and padding != 0):
                raise TypeError(f"{self.label}: stride/padding given both positionally and by keyword")
            stride, padding = (args[0], padding) if len(args) == 1 else args
        kind = "max" if kind is None else kind
        if kind not in POOL_KINDS:
            raise ValueError(f"{self.label}: kind must be 'max', 'avg' or 'sum', got {kind!r}")
        self.kind = kind
        self.size = check_int_pair(self.label, "size", size)
        self.stride = None if stride is None else check_int_pair(self.label, "stride", stride)
        self.padding = check_pool_padding(self.label, "padding", padding, size)

    def _syn_name(self):
        return f"{self.kind}pool"

    def _params(self):
        return {"pool_kernel_size": self.size, "pool_stride": self.stride, "pool_padding": self.padding}

    def _build(self, inputs):
        t = inputs[0]
        if len(t.shape) != 3:
            raise ValueError(f"expected an input of shape (C, H, W), got {format_shape(t.shape)} from {t.layer.label}")
        return super()._build(inputs)

    def get_config(self):
        return {"kind": self.kind, "size": to_json_value(self.label, "size", self.size),
                "stride": to_json_value(self.label, "stride", self.stride),
                "padding": to_json_value(self.label, "padding", self.padding), "name": self.name}
