"""Layer arguments ↔ JSON-able model configs: initializers, surrogates and tensors are encoded explicitly (never
pickled), and a tensor read back from a config becomes a :class:`GivenTensor` placeholder whose values come with
the saved weights."""

from __future__ import annotations

import numbers
from typing import Any

import torch

from ... import init as _init
from ...surrogate import Surrogate

__all__ = ["GivenTensor", "from_json_value", "materialize", "materialize_kwargs", "to_json_value"]


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


