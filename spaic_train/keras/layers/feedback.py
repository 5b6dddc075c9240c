"""``Feedback``: a connection between two neuron layers of a model (recurrent, top-down, or an extra delayed
forward edge), built by the model once both layers exist."""

from __future__ import annotations

from typing import Any, Optional

from ...connection import Connection
from .base import Layer, SymbolicTensor, delays_text, reraise_with_prefix
from .checks import check_connection_kwargs, check_delays, check_name
from .config import from_json_value, materialize_kwargs, to_json_value

__all__ = ["Feedback"]


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
        self.name = check_name("Feedback", name)
        owner = self.label  # checks the endpoint types
        if not isinstance(link_type, str):
            raise TypeError(f"{owner}: link_type must be a link type name such as 'full', got {link_type!r}")
        syn_type = connection_kwargs.get("syn_type", ("basic",))
        ops = [syn_type] if isinstance(syn_type, str) else list(syn_type)
        check_connection_kwargs(owner, connection_kwargs, link_type, [op for op in ops if isinstance(op, str)],
                                own_args=("source", "target", "link_type", "max_delay", "delay", "name"))
        check_delays(owner, max_delay, delay, connection_kwargs)
        self.link_type = link_type
        self.max_delay = max_delay
        self.delay = delay
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
        if not layer.creates_neurons:
            raise ValueError(f"{self.label}: the {role} {layer.label} has no neurons; a Feedback connects two "
                             "neuron layers (Full, Conv2dSyn, OneToOne, SparseRandom)")
        return layer

    @property
    def label(self) -> str:
        src, tgt = self._ref_name(self.source), self._ref_name(self.target)
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
            reraise_with_prefix(e, self.label)
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
        text = delays_text([self.connection])
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
