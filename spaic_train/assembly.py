"""Assemblies: things with a shape that connections read from and write to.

``NeuronGroup`` is the SPAIC assembly of identical neurons.  Encoders (in
:mod:`spaic_train.network.encoders`) are assemblies too.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Optional, Union

from torch import nn

ShapeLike = Union[int, Sequence[int], None]


def _as_shape(owner: str, shape: ShapeLike) -> Optional[tuple[int, ...]]:
    if shape is None:
        return None
    if isinstance(shape, int):
        shape = (shape,)
    try:
        if isinstance(shape, (str, bytes)):
            raise TypeError
        shape = tuple(int(s) for s in shape)
    except (TypeError, ValueError):
        raise TypeError(f"{owner}: shape must be an int or a sequence of ints, got {shape!r}") from None
    if not shape or any(s <= 0 for s in shape):
        raise ValueError(f"{owner}: shape must be non-empty with positive sizes, got {shape!r}")
    return shape


class Assembly(nn.Module):
    """Base of everything a :class:`~spaic_train.Connection` can connect.

    Args:
        num: number of units (``prod(shape)``); optional when ``shape`` is given.
        shape: unit layout excluding batch and time, e.g. ``(C, H, W)``.  May be left
            ``None`` (with ``num=None``) for a post group whose shape a connection infers.
        name: display name; the network fills it with the attribute name when ``None``.
    """

    #: variables this assembly exposes to connections and monitors
    var_names: tuple[str, ...] = ("O",)

    def __init__(self, num: Optional[int] = None, shape: ShapeLike = None, name: Optional[str] = None):
        super().__init__()
        self.name = name
        owner = f"{type(self).__name__}({name!r})" if name else type(self).__name__
        shape = _as_shape(owner, shape)
        if num is not None:
            if isinstance(num, bool) or not isinstance(num, int) or num <= 0:
                raise ValueError(f"{owner}: num must be a positive int, got {num!r}")
            if shape is None:
                shape = (num,)
            elif math.prod(shape) != num:
                raise ValueError(f"{owner}: num={num} does not match shape {shape} (prod={math.prod(shape)})")
        self._shape = shape

    @property
    def label(self) -> str:
        """Human-readable identity used in error messages."""
        return f"{type(self).__name__}({self.name!r})" if self.name else type(self).__name__

    @property
    def shape(self) -> tuple[int, ...]:
        if self._shape is None:
            raise ValueError(f"{self.label}: shape is not known yet (give num= or shape=, or connect it with a conv "
                             "connection that infers it)")
        return self._shape

    @shape.setter
    def shape(self, value: ShapeLike) -> None:
        self._shape = _as_shape(self.label, value)

    @property
    def shape_known(self) -> bool:
        return self._shape is not None

    @property
    def num(self) -> int:
        return math.prod(self.shape)

    def extra_repr(self) -> str:
        return f"name={self.name!r}, shape={self._shape}"


class NeuronGroup(Assembly):
    """A group of identical spiking neurons (SPAIC's ``NeuronGroup``).

    Args:
        num: number of neurons.
        shape: neuron layout (excluding batch/time), e.g. ``(C, H, W)`` for a conv layer.
        model: neuron model name from :data:`spaic_train.neurons.NEURONS` (``'lif'``, ``'if'``,
            ``'plif'``, ``'alif'``, ``'izhikevich'``) or a :class:`~spaic_train.neurons.NeuronModel`.
        name: display name.
        **params: model parameters (``tau`` in ms, ``v_th``, ``v_reset``, ``reset``,
            ``surrogate``, ...).

    Attributes:
        neuron: the :class:`~spaic_train.neurons.NeuronModel` that integrates this group.
    """

    var_names = ("O", "V", "Isyn")

    def __init__(self, num: Optional[int] = None, shape: ShapeLike = None, model="lif", name: Optional[str] = None,
                 **params):
        super().__init__(num=num, shape=shape, name=name)
        from .neurons import NeuronModel, build_neuron

        if isinstance(model, NeuronModel):
            if params:
                raise TypeError(f"{self.label}: parameters {sorted(params)} given with a NeuronModel instance; "
                                "set them on the instance instead")
            self.neuron = model
        else:
            self.neuron = build_neuron(model, owner=self.label, **params)
        self.model_name = model if isinstance(model, str) else type(model).__name__

    @property
    def emits_spikes(self) -> bool:
        """Whether the group's output ``O`` is 0/1 spikes (``False`` for a non-spiking readout such as
        ``leaky_integrator``, whose ``O`` is its potential)."""
        return self.neuron.emits_spikes
