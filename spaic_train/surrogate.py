"""Surrogate gradients for the non-differentiable spike function.

A spiking neuron emits ``S = H(x)`` with ``x = V - v_th`` and ``H`` the Heaviside step
(``H(x) = 1`` for ``x >= 0``).  In the backward pass ``dS/dx`` is replaced by the derivative
of a smooth approximation ``g(x)`` of ``H``; :class:`Surrogate` objects hold that derivative.

Every surrogate has one width / sharpness parameter ``alpha``.  Conventions (given per
class below) follow SpikingJelly (``spikingjelly.activation_based.surrogate``) where it has the
function, snnTorch for the fast sigmoid, and SPAIC for the STCA rectangle:

==========================  ==================================================  =============  ==============
name                        ``derivative(x)``                                   default alpha  convention
==========================  ==================================================  =============  ==============
``atan``                    ``(alpha/2) / (1 + (pi/2 * alpha * x)**2)``          2.0            SpikingJelly
``sigmoid``                 ``alpha * sig(alpha x) * (1 - sig(alpha x))``        4.0            SpikingJelly
``fast_sigmoid``            ``1 / (1 + alpha*|x|)**2`` (SuperSpike)              25.0           snnTorch
``rectangle`` (``stca``)    ``1`` on ``|x| < alpha``, else ``0``                 0.5            SPAIC STCA
``gaussian`` (``stbp``)     ``N(x; 0, alpha**2)`` (alpha = standard deviation)   0.5            STBP (Wu 2018)
``triangle``                ``max(0, alpha - |x|) / alpha**2`` (half-width)      1.0            Bellec 2018
``erf``                     ``alpha/sqrt(pi) * exp(-(alpha x)**2)``              2.0            SpikingJelly
``piecewise_quadratic``     ``max(0, alpha - alpha**2 * |x|)`` (sharpness)       1.0            SpikingJelly
==========================  ==================================================  =============  ==============

``triangle`` and ``piecewise_quadratic`` have the same shape (the primitive of a triangle is
piecewise quadratic); ``triangle`` is parametrised by its half-width, ``piecewise_quadratic`` by
its sharpness (half-width ``1/alpha``), so ``triangle(alpha=w) == piecewise_quadratic(alpha=1/w)``.

Example::

    >>> from spaic_train.surrogate import get_surrogate, spike
    >>> sg = get_surrogate("atan", alpha=2.0)
    >>> s = spike(v - 1.0, sg)      # forward: (v - 1 >= 0), backward: grad * sg.derivative(v - 1)
"""

from __future__ import annotations

import math
from typing import Any, Union

import torch

from .registry import Registry

__all__ = [
    "Surrogate",
    "SURROGATES",
    "ATan",
    "Sigmoid",
    "FastSigmoid",
    "Rectangle",
    "Gaussian",
    "Triangle",
    "Erf",
    "PiecewiseQuadratic",
    "get_surrogate",
    "spike",
    "SpikeFunction",
    "KERNEL_SURROGATE_IDS",
]

#: registry of surrogate classes, keyed by name (``get_surrogate`` instantiates them)
SURROGATES: Registry = Registry("surrogate")


class Surrogate:
    """Base class: the derivative of a smooth approximation ``g`` of the Heaviside step.

    Plain Python object (picklable, comparable), not an ``nn.Module``.

    Args:
        alpha: width / sharpness parameter (meaning per subclass); ``None`` → the class default.

    Subclasses set ``name``, ``default_alpha`` and implement :meth:`derivative` (and
    :meth:`primitive`, the smooth function whose derivative it is, used by tests).
    """

    name: str = "surrogate"
    default_alpha: float = 1.0

    def __init__(self, alpha: float | None = None):
        alpha = self.default_alpha if alpha is None else alpha
        if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not math.isfinite(alpha) or alpha <= 0:
            raise ValueError(f"surrogate {self.name!r}: alpha must be a positive finite number, got {alpha!r}")
        self.alpha = float(alpha)

    def derivative(self, x: torch.Tensor) -> torch.Tensor:
        """Analytic ``g'(x)`` at ``x = V - v_th`` (any shape; same shape and dtype out)."""
        if type(self).derivative_ is Surrogate.derivative_:
            raise NotImplementedError(f"{type(self).__name__} must implement derivative() or derivative_()")
        return self.derivative_(x.clone())

    def derivative_(self, x: torch.Tensor) -> torch.Tensor:
        """In-place :meth:`derivative`: overwrites the scratch tensor ``x`` with ``g'(x)`` and returns it.

        The fused neuron kernels call this on preallocated buffers; subclasses override at least
        one of :meth:`derivative` / :meth:`derivative_`.
        """
        if type(self).derivative is Surrogate.derivative:
            raise NotImplementedError(f"{type(self).__name__} must implement derivative() or derivative_()")
        return x.copy_(self.derivative(x))

    def primitive(self, x: torch.Tensor) -> torch.Tensor:
        """The smooth approximation ``g(x)`` (differentiable with torch autograd)."""
        raise NotImplementedError

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """``spike(x, self)``: Heaviside forward, surrogate backward."""
        return spike(x, self)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(alpha={self.alpha:g})"

    def __eq__(self, other: object) -> bool:
        return type(self) is type(other) and self.alpha == other.alpha  # type: ignore[attr-defined]

    def __hash__(self) -> int:
        return hash((type(self).__name__, self.alpha))


@SURROGATES.register("atan", "arctan")
class ATan(Surrogate):
    """Arc-tangent (SpikingJelly ``ATan``): ``g(x) = atan(pi/2 * alpha * x) / pi + 1/2``,
    ``g'(x) = (alpha/2) / (1 + (pi/2 * alpha * x)**2)``.  Default ``alpha = 2.0`` (peak ``g'(0) = 1``)."""

    name = "atan"
    default_alpha = 2.0

    def derivative_(self, x):
        a = self.alpha
        return x.mul_(math.pi / 2 * a).square_().add_(1).reciprocal_().mul_(a / 2)

    def primitive(self, x):
        return torch.atan(math.pi / 2 * self.alpha * x) / math.pi + 0.5


@SURROGATES.register("sigmoid")
class Sigmoid(Surrogate):
    """Logistic sigmoid (SpikingJelly ``Sigmoid``): ``g(x) = sigmoid(alpha * x)``,
    ``g'(x) = alpha * sigmoid(alpha x) * (1 - sigmoid(alpha x))``.  Default ``alpha = 4.0``."""

    name = "sigmoid"
    default_alpha = 4.0

    def derivative_(self, x):
        x.mul_(self.alpha).sigmoid_()
        return x.addcmul_(x, x, value=-1).mul_(self.alpha)

    def primitive(self, x):
        return torch.sigmoid(self.alpha * x)


@SURROGATES.register("fast_sigmoid", "superspike")
class FastSigmoid(Surrogate):
    """Fast sigmoid / SuperSpike (Zenke & Ganguli 2018; snnTorch ``fast_sigmoid(slope)``):
    ``g(x) = x / (1 + alpha*|x|)``, ``g'(x) = 1 / (1 + alpha*|x|)**2``.  Default ``alpha = 25.0``
    (snnTorch's ``slope``; peak ``g'(0) = 1``)."""

    name = "fast_sigmoid"
    default_alpha = 25.0

    def derivative_(self, x):
        return x.abs_().mul_(self.alpha).add_(1).square_().reciprocal_()

    def primitive(self, x):
        return x / (1 + self.alpha * x.abs())


@SURROGATES.register("rectangle", "stca", "rect")
class Rectangle(Surrogate):
    """Rectangular window, SPAIC's STCA (Gu et al. 2019): ``g'(x) = 1`` where ``|x| < alpha``, else 0
    (SPAIC ``STCA ActFun``; unit area at the SPAIC default ``alpha = 0.5``).
    ``g(x) = clamp(x, -alpha, alpha)`` up to a constant."""

    name = "rectangle"
    default_alpha = 0.5

    def derivative_(self, x):
        return x.abs_().lt_(self.alpha)

    def primitive(self, x):
        return x.clamp(-self.alpha, self.alpha)


@SURROGATES.register("gaussian", "stbp")
class Gaussian(Surrogate):
    """Gaussian (STBP, Wu et al. 2018): ``g'(x) = exp(-x**2 / (2 alpha**2)) / sqrt(2 pi alpha**2)``,
    ``g`` the normal CDF with standard deviation ``alpha``.  Unit area; default ``alpha = 0.5``."""

    name = "gaussian"
    default_alpha = 0.5

    def derivative_(self, x):
        a = self.alpha
        return x.square_().mul_(-1 / (2 * a * a)).exp_().mul_(1 / math.sqrt(2 * math.pi * a * a))

    def primitive(self, x):
        return 0.5 * (1 + torch.erf(x / (self.alpha * math.sqrt(2))))


@SURROGATES.register("triangle", "triangular")
class Triangle(Surrogate):
    """Triangle of half-width ``alpha`` and unit area (Bellec et al. 2018 pseudo-derivative, Esser
    et al. 2016): ``g'(x) = max(0, alpha - |x|) / alpha**2``.  Default ``alpha = 1.0``."""

    name = "triangle"
    default_alpha = 1.0

    def derivative_(self, x):
        a = self.alpha
        return x.abs_().neg_().add_(a).clamp_min_(0).mul_(1 / (a * a))

    def primitive(self, x):
        a = self.alpha
        # integral of the triangle: 1/2 + x/a - x|x|/(2a^2) inside, 0 / 1 outside
        inner = 0.5 + x / a - x * x.abs() / (2 * a * a)
        return torch.where(x <= -a, torch.zeros_like(x), torch.where(x >= a, torch.ones_like(x), inner))


@SURROGATES.register("erf")
class Erf(Surrogate):
    """Error function (SpikingJelly ``Erf``): ``g(x) = erfc(-alpha x) / 2``,
    ``g'(x) = alpha / sqrt(pi) * exp(-(alpha x)**2)``.  Default ``alpha = 2.0``."""

    name = "erf"
    default_alpha = 2.0

    def derivative_(self, x):
        a = self.alpha
        return x.square_().mul_(-a * a).exp_().mul_(a / math.sqrt(math.pi))

    def primitive(self, x):
        return torch.erfc(-self.alpha * x) / 2


@SURROGATES.register("piecewise_quadratic", "pwq")
class PiecewiseQuadratic(Surrogate):
    """Piecewise quadratic (SpikingJelly ``PiecewiseQuadratic``, Esser et al. 2016):
    ``g'(x) = max(0, alpha - alpha**2 |x|)`` (zero for ``|x| > 1/alpha``);
    ``g(x) = -alpha**2 x|x|/2 + alpha x + 1/2`` on ``|x| <= 1/alpha``, 0 below, 1 above.
    Default ``alpha = 1.0``."""

    name = "piecewise_quadratic"
    default_alpha = 1.0

    def derivative_(self, x):
        a = self.alpha
        return x.abs_().mul_(-a * a).add_(a).clamp_min_(0)

    def primitive(self, x):
        a = self.alpha
        inner = -0.5 * a * a * x * x.abs() + a * x + 0.5
        return torch.where(x <= -1 / a, torch.zeros_like(x), torch.where(x >= 1 / a, torch.ones_like(x), inner))


#: built-in surrogate class -> id of its formula in the compiled neuron kernels (Triton, numba); an exact
#: type match is required, so subclasses and custom surrogates use the torch kernels
KERNEL_SURROGATE_IDS = {ATan: 0, Sigmoid: 1, FastSigmoid: 2, Rectangle: 3, Gaussian: 4, Triangle: 5, Erf: 6,
                        PiecewiseQuadratic: 7}

SurrogateLike = Union[str, Surrogate, dict, None]


def get_surrogate(name_or_obj: SurrogateLike = "atan", owner: str = "", **kwargs: Any) -> Surrogate:
    """Resolve a surrogate.

    Args:
        name_or_obj: a registered name (``'atan'``, ``'sigmoid'``, ``'fast_sigmoid'``, ``'rectangle'``,
            ``'gaussian'``, ``'triangle'``, ``'erf'``, ``'piecewise_quadratic'`` or an alias), a
            :class:`Surrogate` instance (returned as is, or copied with ``alpha`` overridden when
            ``alpha`` is given), a dict ``{'name': ..., 'alpha': ...}``, or ``None`` (→ ``'atan'``).
        owner: prefix for error messages.
        **kwargs: constructor arguments, i.e. ``alpha`` (``None`` → default).

    Raises:
        ValueError: unknown name (the message lists the valid names) or bad ``alpha``.
        TypeError: unsupported type or unknown keyword.
    """
    if name_or_obj is None:
        name_or_obj = "atan"
    if isinstance(name_or_obj, dict):
        spec = dict(name_or_obj)
        name = spec.pop("name", "atan")
        spec.update({k: v for k, v in kwargs.items() if v is not None})
        return get_surrogate(name, owner=owner, **spec)
    bad = set(kwargs) - {"alpha"}
    if bad:
        where = f"{owner}: " if owner else ""
        raise TypeError(f"{where}unknown surrogate argument(s) {sorted(bad)}; allowed: ['alpha']")
    if isinstance(name_or_obj, Surrogate):
        alpha = kwargs.get("alpha")
        return name_or_obj if alpha is None else type(name_or_obj)(alpha)
    cls = SURROGATES.get(name_or_obj, owner=owner)
    return cls(kwargs.get("alpha"))


class SpikeFunction(torch.autograd.Function):
    """``S = (x >= 0)`` (dtype of ``x``) forward; ``dL/dx = dL/dS * surrogate.derivative(x)`` backward."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, surrogate: Surrogate) -> torch.Tensor:  # type: ignore[override]
        ctx.surrogate = surrogate
        ctx.save_for_backward(x)
        return (x >= 0).to(x.dtype)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):  # type: ignore[override]
        (x,) = ctx.saved_tensors
        return grad * ctx.surrogate.derivative(x), None


def spike(x: torch.Tensor, surrogate: SurrogateLike = "atan") -> torch.Tensor:
    """Heaviside spike with a surrogate gradient.

    Args:
        x: ``V - v_th``, any shape.
        surrogate: a :class:`Surrogate` or anything :func:`get_surrogate` accepts.

    Returns:
        ``(x >= 0)`` as ``x.dtype``, same shape; backward multiplies by ``surrogate.derivative(x)``.
    """
    if not isinstance(surrogate, Surrogate):
        surrogate = get_surrogate(surrogate)
    return SpikeFunction.apply(x, surrogate)
