"""Argument checks shared by connections, link types, synapse ops and delays.

Each raises with the owner's label, the argument's name and the value, so an error at construction
says which object got what.
"""

from __future__ import annotations

import numbers

import torch

__all__ = ["is_int", "int_pair", "fraction", "real_number", "real_tensor"]

_INT_DTYPES = (torch.int8, torch.int16, torch.int32, torch.int64, torch.uint8, torch.bool)


def is_int(value) -> bool:
    """Whether ``value`` is an ``int`` (a ``bool`` is not)."""
    return isinstance(value, int) and not isinstance(value, bool)


def int_pair(owner: str, name: str, value, allow_zero: bool = False) -> tuple[int, int]:
    """An int or a pair of ints → ``(a, b)``; raises ``ValueError`` naming ``owner`` and ``name``."""
    vals = (value, value) if is_int(value) else value
    try:
        vals = tuple(vals)
    except TypeError:
        vals = ()
    low = 0 if allow_zero else 1
    if len(vals) != 2 or not all(is_int(v) for v in vals) or any(v < low for v in vals):
        kind = "non-negative" if allow_zero else "positive"
        raise ValueError(f"{owner}: {name} must be a {kind} int or a pair of them, got {value!r}")
    return vals


def fraction(owner: str, name: str, value) -> float:
    """A number in ``(0, 1]`` (a probability that something exists)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not (0.0 < value <= 1.0):
        raise ValueError(f"{owner}: {name} must be a number in (0, 1], got {value!r}")
    return float(value)


def real_number(owner: str, name: str, value) -> float:
    """A real number (not a ``bool``) as a ``float``; ``TypeError`` otherwise."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{owner}: {name} must be a real number, got {value!r} of type {type(value).__name__}")
    return float(value)


def real_tensor(owner: str, name: str, value) -> torch.Tensor:
    """A tensor, array or number → a detached copy in the default float dtype; ``TypeError`` for anything else."""
    try:
        t = torch.as_tensor(value)
    except Exception as e:  # noqa: BLE001 - re-raised with context
        raise TypeError(f"{owner}: {name} must be a tensor, an array, a number or an Initializer, got "
                        f"{type(value).__name__}") from e
    if not (torch.is_floating_point(t) or t.dtype in _INT_DTYPES):
        raise TypeError(f"{owner}: {name} must be real-valued, got dtype {t.dtype}")
    return t.detach().to(torch.get_default_dtype()).clone()
