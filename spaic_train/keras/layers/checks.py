"""Argument checks of the layer constructors: every argument is validated when the layer is created, so a bad
value is reported at the line that wrote it (naming the layer, the argument, the value and what is allowed),
not later from deep inside the model build.

Names (neuron models, surrogates) go through their registries (every valid name, "did you mean"); neuron
parameters are checked by building the neuron model once (the same check the layer's ``NeuronGroup`` runs);
connection keywords against what the layer's connection accepts.
"""

from __future__ import annotations

import difflib
import math
import numbers
from collections.abc import Iterable
from typing import Any, Optional

import torch

from ... import init as _init
from ...connection import CONNECTION_PARAMS
from ...connection.delays import check_delay_sigma, learn_delay_flag
from ...connection.links import LINKS
from ...connection.synapses import SYNAPSES
from ...neurons import build_neuron
from ...surrogate import SURROGATES
from .config import materialize

__all__ = [
    "batchnorm_op",
    "check_batchnorm",
    "check_batchnorm_kwargs",
    "check_connection_kwargs",
    "check_delays",
    "check_fraction",
    "check_int_pair",
    "check_bias",
    "check_name",
    "check_neuron",
    "check_padding",
    "check_pool_padding",
    "check_positive_int",
    "check_probability",
]


def _is_int(value) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _is_number(value) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def check_name(owner: str, name: Optional[str]) -> Optional[str]:
    """A layer name: ``None`` or a Python identifier not starting with ``_`` (it becomes a network attribute)."""
    if name is None:
        return None
    if not isinstance(name, str) or not name.isidentifier() or name.startswith("_"):
        raise ValueError(f"{owner}: name must be a Python identifier not starting with '_' (it becomes an "
                         f"attribute of the network), got {name!r}")
    return name


def check_positive_int(owner: str, what: str, value) -> int:
    if not _is_int(value) or value < 1:
        raise ValueError(f"{owner}: {what} must be a positive int, got {value!r}")
    return int(value)


def check_int_pair(owner: str, what: str, value, minimum: int = 1):
    """An int ``>= minimum`` or a pair of them (as ``torch.nn.Conv2d`` takes ``kernel_size``, ``stride``, ...);
    returns ``value`` unchanged (the config keeps what the user wrote)."""
    pair = (value, value) if _is_int(value) else value
    try:
        pair = tuple(pair)
    except TypeError:
        pair = ()
    if len(pair) != 2 or not all(_is_int(v) and v >= minimum for v in pair):
        kind = "a positive int" if minimum == 1 else f"an int >= {minimum}"
        raise ValueError(f"{owner}: {what} must be {kind} or a pair of them, got {value!r}")
    return value


def check_padding(owner: str, padding, stride):
    """Conv padding: an int ``>= 0``, a pair of them, ``'valid'``, or ``'same'`` (which needs ``stride=1``)."""
    if padding == "same":
        if stride not in (1, (1, 1), [1, 1]):
            raise ValueError(f"{owner}: padding='same' needs stride=1, got stride={stride!r}")
        return padding
    if padding == "valid":
        return padding
    try:
        return check_int_pair(owner, "padding", padding, minimum=0)
    except ValueError:
        raise ValueError(f"{owner}: padding must be an int >= 0, a pair of them, 'same' or 'valid', "
                         f"got {padding!r}") from None


def check_pool_padding(owner: str, what: str, padding, size):
    """Pool padding: an int ``>= 0`` (or a pair) of at most half the window (PyTorch's rule)."""
    check_int_pair(owner, what, padding, minimum=0)
    pads = (padding, padding) if _is_int(padding) else tuple(padding)
    sizes = (size, size) if _is_int(size) else tuple(size)
    if any(2 * p > k for p, k in zip(pads, sizes)):
        raise ValueError(f"{owner}: {what}={padding!r} must be at most half the pooling window {size!r}")
    return padding


def check_fraction(owner: str, what: str, value) -> float:
    """A drop probability in ``[0, 1)``."""
    if not _is_number(value) or not 0.0 <= value < 1.0:
        raise ValueError(f"{owner}: {what} must be a number in [0, 1), got {value!r}")
    return float(value)


def check_probability(owner: str, what: str, value) -> float:
    """A connection probability / density in ``(0, 1]``."""
    if not _is_number(value) or not 0.0 < value <= 1.0:
        raise ValueError(f"{owner}: {what} must be a number in (0, 1], got {value!r}")
    return float(value)


def check_batchnorm_kwargs(owner: str, options: dict) -> None:
    """The options of a ``batchnorm=`` dict: the parameters of the ``'batchnorm'`` synapse op."""
    accepted = sorted(SYNAPSES.get("batchnorm").params)
    for key in options:
        if key not in accepted:
            raise TypeError(f"{owner}: batchnorm got an unknown option {key!r}; accepted: {', '.join(accepted)}")


def check_batchnorm(owner: str, batchnorm) -> Any:
    """A layer's ``batchnorm=``: ``False``, ``True`` or a dict of the batch-norm op's options."""
    if not isinstance(batchnorm, (bool, dict)):
        raise TypeError(f"{owner}: batchnorm must be a bool or a dict of eps/momentum/affine, got {batchnorm!r}")
    if isinstance(batchnorm, dict):
        check_batchnorm_kwargs(owner, batchnorm)
    return batchnorm


def batchnorm_op(batchnorm) -> list[tuple[str, dict[str, Any]]]:
    """The ``('batchnorm', options)`` synapse op of a layer's checked ``batchnorm=``, or none."""
    if not batchnorm:
        return []
    return [("batchnorm", dict(batchnorm) if isinstance(batchnorm, dict) else {})]


def check_neuron(owner: str, neuron, neuron_kwargs: Optional[dict], surrogate) -> None:
    """The neuron model name, its parameters and the surrogate, checked by building the model once (unknown
    names list the valid ones and suggest the closest; unknown parameters list the allowed ones)."""
    if not isinstance(neuron, str):
        raise TypeError(f"{owner}: neuron must be a model name such as 'lif' or 'plif', got "
                        f"{type(neuron).__name__} (set parameters with neuron_kwargs=)")
    if neuron_kwargs is not None and not isinstance(neuron_kwargs, dict):
        raise TypeError(f"{owner}: neuron_kwargs must be a dict, got {type(neuron_kwargs).__name__}")
    params = {k: materialize(k, v) for k, v in (neuron_kwargs or {}).items()}
    if surrogate is not None:
        if "surrogate" in params:
            raise ValueError(f"{owner}: surrogate given both as surrogate= and in neuron_kwargs")
        if isinstance(surrogate, str):
            SURROGATES.get(surrogate, owner=owner)
        params["surrogate"] = surrogate
    build_neuron(neuron, owner=owner, **params)


def check_delays(owner: str, max_delay, delay, kwargs: dict[str, Any]) -> None:
    """The delay arguments of a layer / ``Feedback`` (ms): ``max_delay >= 0``; ``delay`` / ``min_delay`` only with
    ``max_delay > 0`` and within ``[0, max_delay]``; ``learn_delay`` (alias ``delay_learnable``) a bool, and with
    ``delay_sigma >= 0`` only for learnable delays.  Tensor delays are checked against the link's delay shape
    when the layer is called (the shape depends on its input)."""
    if not _is_number(max_delay) or not max_delay >= 0 or math.isinf(max_delay):
        raise ValueError(f"{owner}: max_delay must be >= 0 ms (a finite number; 0: no per-synapse delays), "
                         f"got {max_delay!r}")
    min_delay = kwargs.get("min_delay")
    learn = learn_delay_flag(owner, kwargs.get("learn_delay"), kwargs.get("delay_learnable"))
    sigma = kwargs.get("delay_sigma")
    if max_delay == 0:
        given = [k for k, v in (("delay", delay), ("min_delay", min_delay)) if v is not None]
        if given:
            raise ValueError(f"{owner}: {'/'.join(given)} given but max_delay=0; set max_delay (ms) > 0 to enable "
                             "per-synapse delays")
        if learn or sigma is not None:
            raise ValueError(f"{owner}: learn_delay=True / delay_sigma given but max_delay=0; learnable delays need "
                             "max_delay (ms) > 0, the largest delay they may reach")
        return
    if min_delay is not None and (not _is_number(min_delay) or not 0 <= min_delay <= max_delay):
        raise ValueError(f"{owner}: min_delay={min_delay!r} ms must be a number in [0, max_delay={max_delay!r}] ms")
    if _is_number(delay):
        lo = 0.0 if min_delay is None or not learn else min_delay
        if not lo <= delay <= max_delay:
            raise ValueError(f"{owner}: delay={delay!r} ms must lie in [{lo!r}, max_delay={max_delay!r}] ms")
    elif isinstance(delay, bool):
        raise TypeError(f"{owner}: delay must be a number of ms, a tensor or an initializer, got {delay!r}")
    if sigma is not None:
        if not learn:
            raise ValueError(f"{owner}: delay_sigma is the width of learnable delays; it needs learn_delay=True")
        if not _is_number(sigma):
            raise ValueError(f"{owner}: delay_sigma must be a finite number of ms >= 0 (0: exact integer delays), "
                             f"got {sigma!r}")
        check_delay_sigma(owner, sigma)


def check_connection_kwargs(owner: str, kwargs: dict[str, Any], link_type: str, ops: Iterable[str],
                            reserved: Iterable[str] = (), own_args: Iterable[str] = ()) -> None:
    """Keywords a layer passes on to its ``Connection``: the connection's own (``weight``, ``bias``, delays, ...)
    and those of its link type and synapse ops; ``reserved`` ones are set by the layer itself; anything else is
    an unknown keyword, reported now (with the closest of ``own_args``, the layer's own arguments, and the
    connection keywords)."""
    reserved = tuple(reserved)
    for key in reserved:
        if key in kwargs:
            raise TypeError(f"{owner}: {key}= is set by the layer itself")
    accepted = set(CONNECTION_PARAMS) | set(LINKS.get(link_type, owner=owner).params)
    for op in ops:
        accepted |= set(SYNAPSES.get(op, owner=owner).params)
    accepted |= {"pre_var_name", "post_var_name", "sparse_with_mask", "syn_type", "syn_kwargs"} - set(reserved)
    own = [a for a in own_args if a not in ("self", "connection_kwargs")]
    for key in kwargs:
        if key not in accepted:
            close = difflib.get_close_matches(key, own + sorted(accepted), n=1, cutoff=0.6)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            takes = f"its arguments are {', '.join(own)}; " if own else ""
            raise TypeError(f"{owner}: unknown keyword argument {key!r}{hint} ({takes}other keywords go to its "
                            f"connection, link_type={link_type!r}, accepted: {', '.join(sorted(accepted))})")


def check_bias(owner: str, bias: Any) -> Any:
    """A layer's ``bias``: ``True`` (PyTorch's default ``U(±1/sqrt(fan_in))``), ``False``/``None`` (none), a number,
    a tensor or an initializer (its shape is checked when the layer is called)."""
    if bias is None or isinstance(bias, (bool, numbers.Real, torch.Tensor, _init.Initializer)):
        return bias
    raise TypeError(f"{owner}: bias must be True (PyTorch's default init), False/None (no bias), a number, a tensor "
                    f"or an initializer, got {type(bias).__name__} {bias!r}")
