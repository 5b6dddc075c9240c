"""Weight, bias and delay initializers (SPAIC's ``Initializer`` objects).

An initializer is a small object that fills a tensor of a declared shape.  Pass one as
``weight=``, ``bias=`` or ``delay=`` to :class:`~spaic_train.connection.Connection`::

    Connection(l1, l2, link_type='conv', kernel_size=3,
               weight=kaiming_uniform(a=math.sqrt(5)),
               bias=uniform(-0.03, 0.03))

Each one draws exactly like the matching ``torch.nn.init`` function (same random calls, so the
same values for the same seed).  The fans come from the connection's declared weight shape:
a dense ``(post_num, pre_num)`` weight has ``fan_in = pre_num`` and ``fan_out = post_num``; a
conv weight ``(out, in/groups, kh, kw)`` has ``fan_in = in/groups·kh·kw`` and
``fan_out = out·kh·kw``.  For a bias (1-D) the fan-based initializers use the *connection's*
fans (SPAIC raises instead), so ``kaiming_uniform(a=math.sqrt(5))`` on a bias gives the bound
``1/sqrt(fan_in)``, the default of ``torch.nn.Linear``.  Delay initializers produce values in ms.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Optional

import torch
from torch import nn

__all__ = [
    "Initializer",
    "Uniform",
    "Normal",
    "Constant",
    "XavierUniform",
    "XavierNormal",
    "KaimingUniform",
    "KaimingNormal",
    "Sparse",
    "uniform",
    "normal",
    "constant",
    "xavier_uniform",
    "xavier_normal",
    "kaiming_uniform",
    "kaiming_normal",
    "sparse",
    "compute_fans",
]


def compute_fans(shape: Sequence[int]) -> tuple[int, int]:
    """``(fan_in, fan_out)`` of a weight of ``shape`` the way ``torch.nn.init`` computes them.

    Raises:
        ValueError: ``shape`` has fewer than 2 dimensions (pass the fans explicitly).
    """
    shape = tuple(int(s) for s in shape)
    if len(shape) < 2:
        raise ValueError(f"fans cannot be computed for a tensor of shape {shape} (fewer than 2 dimensions); "
                         "pass fan_in= and fan_out=")
    receptive = math.prod(shape[2:]) if len(shape) > 2 else 1
    return shape[1] * receptive, shape[0] * receptive


class Initializer:
    """Base class: ``init(shape, fan_in=None, fan_out=None)`` returns a new filled tensor.

    Subclasses implement :meth:`fill_`.  ``fan_in``/``fan_out`` default to the torch rule for
    the shape (``shape[1]·receptive``, ``shape[0]·receptive``); connections always pass their own.
    """

    #: whether :meth:`fill_` uses the fans (so a 1-D tensor needs explicit ones)
    uses_fans = False

    def __call__(self, shape: Sequence[int], fan_in: Optional[int] = None, fan_out: Optional[int] = None,
                 dtype: Optional[torch.dtype] = None, device=None) -> torch.Tensor:
        shape = tuple(int(s) for s in shape)
        tensor = torch.empty(shape, dtype=dtype or torch.get_default_dtype(), device=device)
        if self.uses_fans and (fan_in is None or fan_out is None):
            f_in, f_out = compute_fans(shape)
            fan_in = f_in if fan_in is None else fan_in
            fan_out = f_out if fan_out is None else fan_out
        with torch.no_grad():
            self.fill_(tensor, fan_in, fan_out)
        return tensor

    def fill_(self, tensor: torch.Tensor, fan_in: Optional[int], fan_out: Optional[int]) -> torch.Tensor:
        raise NotImplementedError

    def _params(self) -> dict:
        return dict(self.__dict__)

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self._params().items())
        return f"{type(self).__name__}({args})"

    def __eq__(self, other) -> bool:
        return type(self) is type(other) and self._params() == other._params()

    def __hash__(self) -> int:
        return hash((type(self).__name__, tuple(sorted(self._params().items()))))


def _check_number(cls: str, name: str, value, minimum: Optional[float] = None) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{cls}: {name} must be a number, got {value!r}")
    if minimum is not None and value < minimum:
        raise ValueError(f"{cls}: {name} must be >= {minimum}, got {value!r}")
    return float(value)


class Uniform(Initializer):
    """Uniform on ``[a, b)`` (``torch.nn.init.uniform_``)."""

    def __init__(self, a: float = 0.0, b: float = 1.0):
        self.a = _check_number("uniform", "a", a)
        self.b = _check_number("uniform", "b", b)
        if self.a > self.b:
            raise ValueError(f"uniform: need a <= b, got a={a!r}, b={b!r}")

    def fill_(self, tensor, fan_in, fan_out):
        return tensor.uniform_(self.a, self.b)


class Normal(Initializer):
    """Normal with ``mean`` and standard deviation ``std`` (``torch.nn.init.normal_``)."""

    def __init__(self, mean: float = 0.0, std: float = 1.0):
        self.mean = _check_number("normal", "mean", mean)
        self.std = _check_number("normal", "std", std, minimum=0.0)

    def fill_(self, tensor, fan_in, fan_out):
        return tensor.normal_(self.mean, self.std)


class Constant(Initializer):
    """Every element equal to ``value`` (``torch.nn.init.constant_``)."""

    def __init__(self, value: float):
        self.value = _check_number("constant", "value", value)

    def fill_(self, tensor, fan_in, fan_out):
        return tensor.fill_(self.value)


class XavierUniform(Initializer):
    """Glorot uniform: bound ``gain·sqrt(6/(fan_in+fan_out))`` (``torch.nn.init.xavier_uniform_``)."""

    uses_fans = True

    def __init__(self, gain: float = 1.0):
        self.gain = _check_number("xavier_uniform", "gain", gain)

    def fill_(self, tensor, fan_in, fan_out):
        std = self.gain * math.sqrt(2.0 / float(fan_in + fan_out))
        bound = math.sqrt(3.0) * std
        return tensor.uniform_(-bound, bound)


class XavierNormal(Initializer):
    """Glorot normal: std ``gain·sqrt(2/(fan_in+fan_out))`` (``torch.nn.init.xavier_normal_``)."""

    uses_fans = True

    def __init__(self, gain: float = 1.0):
        self.gain = _check_number("xavier_normal", "gain", gain)

    def fill_(self, tensor, fan_in, fan_out):
        std = self.gain * math.sqrt(2.0 / float(fan_in + fan_out))
        return tensor.normal_(0.0, std)


class _Kaiming(Initializer):
    uses_fans = True
    _fn = ""

    def __init__(self, a: float = 0.0, mode: str = "fan_in", nonlinearity: str = "leaky_relu"):
        self.a = _check_number(self._fn, "a", a)
        if mode not in ("fan_in", "fan_out"):
            raise ValueError(f"{self._fn}: mode must be 'fan_in' or 'fan_out', got {mode!r}")
        self.mode = mode
        nn.init.calculate_gain(nonlinearity, self.a)  # validates the name now, not at build time
        self.nonlinearity = nonlinearity

    def _std(self, fan_in, fan_out) -> float:
        fan = fan_in if self.mode == "fan_in" else fan_out
        if fan == 0:
            raise ValueError(f"{self._fn}: fan is zero")
        return nn.init.calculate_gain(self.nonlinearity, self.a) / math.sqrt(fan)


class KaimingUniform(_Kaiming):
    """He uniform: bound ``gain·sqrt(3/fan)`` (``torch.nn.init.kaiming_uniform_``)."""

    _fn = "kaiming_uniform"

    def fill_(self, tensor, fan_in, fan_out):
        bound = math.sqrt(3.0) * self._std(fan_in, fan_out)
        return tensor.uniform_(-bound, bound)


class KaimingNormal(_Kaiming):
    """He normal: std ``gain/sqrt(fan)`` (``torch.nn.init.kaiming_normal_``)."""

    _fn = "kaiming_normal"

    def fill_(self, tensor, fan_in, fan_out):
        return tensor.normal_(0.0, self._std(fan_in, fan_out))


class Sparse(Initializer):
    """``torch.nn.init.sparse_``: normal(0, ``std``) with a fraction ``sparsity`` of each column zeroed.

    The tensor is viewed as ``(shape[0], -1)`` (a 1-D tensor as ``(n, 1)``), so for a dense
    ``(post, pre)`` weight each presynaptic neuron keeps ``ceil((1-sparsity)·post)`` synapses,
    and for a conv weight each (in-channel, kernel position) column is thinned over output channels.
    """

    def __init__(self, sparsity: float, std: float = 0.01):
        self.sparsity = _check_number("sparse", "sparsity", sparsity, minimum=0.0)
        if self.sparsity > 1.0:
            raise ValueError(f"sparse: sparsity must be in [0, 1], got {sparsity!r}")
        self.std = _check_number("sparse", "std", std, minimum=0.0)

    def fill_(self, tensor, fan_in, fan_out):
        view = tensor.view(tensor.shape[0], -1) if tensor.dim() != 0 else tensor.view(1, 1)
        nn.init.sparse_(view, self.sparsity, self.std)
        return tensor


def uniform(a: float = 0.0, b: float = 1.0) -> Uniform:
    """Uniform initializer on ``[a, b)``."""
    return Uniform(a, b)


def normal(mean: float = 0.0, std: float = 1.0) -> Normal:
    """Normal initializer ``N(mean, std²)``."""
    return Normal(mean, std)


def constant(value: float) -> Constant:
    """Constant initializer."""
    return Constant(value)


def xavier_uniform(gain: float = 1.0) -> XavierUniform:
    """Glorot/Xavier uniform initializer."""
    return XavierUniform(gain)


def xavier_normal(gain: float = 1.0) -> XavierNormal:
    """Glorot/Xavier normal initializer (works, unlike SPAIC's misspelled table entry)."""
    return XavierNormal(gain)


def kaiming_uniform(a: float = 0.0, mode: str = "fan_in", nonlinearity: str = "leaky_relu") -> KaimingUniform:
    """He/Kaiming uniform initializer; ``a=math.sqrt(5)`` is PyTorch's default for Linear/Conv weights."""
    return KaimingUniform(a, mode, nonlinearity)


def kaiming_normal(a: float = 0.0, mode: str = "fan_in", nonlinearity: str = "leaky_relu") -> KaimingNormal:
    """He/Kaiming normal initializer."""
    return KaimingNormal(a, mode, nonlinearity)


def sparse(sparsity: float, std: float = 0.01) -> Sparse:
    """Sparse normal initializer (``torch.nn.init.sparse_``)."""
    return Sparse(sparsity, std)
