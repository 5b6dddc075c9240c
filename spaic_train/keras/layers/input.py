"""``Input``: the model input, an :class:`~spaic_train.Encoder` built at construction."""

from __future__ import annotations

from typing import Optional

from ...network import Encoder
from .base import Layer, SymbolicTensor, register_layer, reraise_with_prefix
from .checks import check_positive_int
from .config import from_json_value, to_json_value

__all__ = ["Input"]


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
    is_source = True
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
            check_positive_int(self.label, "every entry of shape", s)
        if not shape:
            raise ValueError(f"{self.label}: shape must not be empty")
        self.shape = shape
        self.encoder = encoder
        self.encoder_kwargs = dict(encoder_kwargs)
        try:
            self.group = Encoder(shape=shape, coding=encoder, name=name, **self.encoder_kwargs)
        except (ValueError, TypeError) as e:
            reraise_with_prefix(e, self.label)
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
