"""Node converters between spaic_train's parts and NIR nodes: one registry entry per part and direction.

Export (spaic_train → NIR), looked up by the part's registry name:

* :data:`NEURON_TO_NIR` — ``fn(neuron, shape, dt_s, owner) -> nir.LIF | nir.IF``
* :data:`LINK_TO_NIR` — a class ``cls(conn, in_shape)`` with ``.pre`` (shape adapters shared by every
  delay branch), ``.shape`` (the signal shape entering the weight node, where ``Delay`` nodes sit) and
  ``.node(weight, bias)`` (the weight node)
* :data:`SYNAPSE_TO_NIR` — ``fn(op, in_shape, weight, owner) -> nir node | None``; ``weight`` is the pending
  :class:`Affine` when the op directly follows the weight op (batch norm folds into it), else ``None``

Import (NIR → spaic_train), looked up by the NIR class name:

* :data:`NIR_TO_PART` — ``fn(node, name, dt_s) -> part``, a :class:`Source`, :class:`Sink`,
  :class:`Neuron`, :class:`Weight`, :class:`Op` or :class:`Delay`.

Time: NIR is continuous; spaic_train steps ``V ← βV + I`` with ``β = exp(−Δt/τ)``.  The converters use
forward Euler with the step ``dt_s`` (seconds), the discretisation snnTorch, SpikingJelly and Norse
use: ``v ← v + (dt_s/τ)(v_leak − v + r·I)``.  See :mod:`spaic_train.nir` for the full mapping.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass, field
from typing import Any, Optional

import nir
import numpy as np
import torch

from ..connection.synapses import SYNAPSES
from ..registry import Registry

#: spaic_train neuron model name → NIR node (export)
NEURON_TO_NIR: Registry = Registry("neuron model with a NIR form")
#: link type → NIR weight node builder class (export)
LINK_TO_NIR: Registry = Registry("link type with a NIR form")
#: synapse op (other than the weight op) → NIR node (export)
SYNAPSE_TO_NIR: Registry = Registry("synapse op with a NIR form")
#: NIR node class name → spaic_train part (import)
NIR_TO_PART: Registry = Registry("NIR node type")

#: why the parts without a registry entry have no counterpart (used in error messages)
NO_COUNTERPART = {
    "alif": "NIR has no adaptive-threshold neuron",
    "izhikevich": "NIR has no Izhikevich neuron",
    "maxpool": "NIR pools only by SumPool2d and AvgPool2d, and a maximum is not a sum",
    "CubaLIF": "spaic_train has no current-based (CUBA) synapse: its neurons add their input to the membrane",
    "CubaLI": "spaic_train has no non-spiking neuron nor current-based synapse",
    "LI": "spaic_train has no non-spiking (leaky integrator) neuron",
    "I": "spaic_train has no non-spiking integrator neuron",
    "Threshold": "spaic_train has no stateless threshold unit",
    "Conv1d": "spaic_train has no 1-D convolution link",
}

#: a gain this close to 1 is float noise of the exporter (snnTorch writes r = 9.999997 for tau/dt = 10)
GAIN_TOLERANCE = 1e-5


def no_counterpart(kind: str, name: str, owner: str, registry: Registry) -> ValueError:
    """The error for a part ``name`` (of ``kind``) that ``registry`` cannot convert."""
    reason = NO_COUNTERPART.get(name, "it has no converter")
    return ValueError(f"{owner}: {kind} {name!r} cannot be converted ({reason}); convertible: "
                      f"{', '.join(registry.names())}")



def lookup(registry: Registry, kind: str, name: str, owner: str):
    if name not in registry:
        raise no_counterpart(kind, name, owner, registry)
    return registry.get(name)


def seconds_per_step(owner: str, dt) -> float:
    """``dt`` checked: a positive finite number of seconds."""
    if isinstance(dt, bool) or not isinstance(dt, numbers.Real) or not (math.isfinite(dt) and dt > 0):
        raise ValueError(f"{owner}: dt must be a positive number of seconds per step, got {dt!r}")
    return float(dt)


def _np(t: torch.Tensor) -> np.ndarray:
    return t.detach().cpu().numpy()


def _full(shape, value: float) -> np.ndarray:
    return np.full(tuple(shape), float(value), dtype=np.float64)


# ----------------------------------------------------------------------------------------------------------------
# export: neurons
# ----------------------------------------------------------------------------------------------------------------
def _nir_expressible(neuron, owner: str) -> None:
    """What NIR's LIF / IF nodes cannot say: reset by subtraction and a membrane that does not start at rest."""
    if neuron.reset != "hard":
        raise ValueError(f"{owner}: reset='soft' (subtract the threshold) has no NIR form: NIR's LIF and IF set the "
                         "membrane to v_reset after a spike; use reset='hard'")
    if neuron.v_init != 0.0:
        raise ValueError(f"{owner}: v_init={neuron.v_init:g} has no NIR form: NIR's LIF and IF nodes have no initial "
                         "state, every NIR framework starts the membrane at rest (0); use v_init=0")


@NEURON_TO_NIR.register_each("lif", "plif")
def _lif_to_nir(neuron, shape, dt_s: float, owner: str) -> nir.LIF:
    """``V ← βV + I`` is forward Euler of ``τ dv/dt = −v + r·I`` with ``τ = dt_s/(1−β)``, ``r = 1/(1−β)``;
    ``decay_input`` (``V ← βV + (1−β)I``) is the same with ``r = 1``."""
    _nir_expressible(neuron, owner)
    beta = neuron.beta()
    beta = float(beta.detach()) if isinstance(beta, torch.Tensor) else float(beta)
    if not 0.0 < beta < 1.0:
        raise ValueError(f"{owner}: the decay beta={beta!r} per step has no finite NIR time constant")
    r = 1.0 if neuron.decay_input else 1.0 / (1.0 - beta)
    return nir.LIF(tau=_full(shape, dt_s / (1.0 - beta)), r=_full(shape, r), v_leak=_full(shape, 0.0),
                   v_threshold=_full(shape, neuron.v_th), v_reset=_full(shape, neuron.v_reset))


@NEURON_TO_NIR.register("if")
def _if_to_nir(neuron, shape, dt_s: float, owner: str) -> nir.IF:
    """``V ← V + I`` is forward Euler of ``dv/dt = r·I`` with ``r = 1/dt_s``."""
    _nir_expressible(neuron, owner)
    return nir.IF(r=_full(shape, 1.0 / dt_s), v_threshold=_full(shape, neuron.v_th),
                  v_reset=_full(shape, neuron.v_reset))


# ----------------------------------------------------------------------------------------------------------------
# export: links (the weight op)
# ----------------------------------------------------------------------------------------------------------------
def _flatten_node(in_shape) -> nir.Flatten:
    return nir.Flatten(input_type=np.array(in_shape), start_dim=0, end_dim=-1)


def _no_reshape(conn, shape) -> ValueError:
    return ValueError(f"{conn.label}: its {conn.link_type!r} link writes into {conn.post.label} of shape "
                      f"{tuple(shape)}, but NIR has no reshape node; give the post group a 1-D shape")


@LINK_TO_NIR.register_each("full", "sparse_connect", "random")
class _DenseToNIR:
    """``Affine``/``Linear`` with the dense weight (absent synapses of sparse links are zeros); a pre of any shape
    is flattened first, as the link does."""

    def __init__(self, conn, in_shape):
        if len(conn.link.post_shape) != 1:
            raise _no_reshape(conn, conn.link.post_shape)
        self.pre = [_flatten_node(in_shape)] if len(in_shape) > 1 else []
        self.shape = (math.prod(in_shape),)

    def node(self, weight: torch.Tensor, bias: Optional[torch.Tensor]):
        return nir.Linear(weight=_np(weight)) if bias is None else nir.Affine(weight=_np(weight), bias=_np(bias))


@LINK_TO_NIR.register_each("one_to_one", "one_to_one_sparse")
class _OneToOneToNIR:
    """``Scale`` by the weight vector (``Affine`` with a diagonal weight when there is a bias)."""

    def __init__(self, conn, in_shape):
        post_shape = tuple(conn.link.post_shape)
        self.owner = conn.label
        if tuple(in_shape) == post_shape:
            self.pre = []
        elif len(post_shape) == 1:
            self.pre = [_flatten_node(in_shape)]
        else:
            raise _no_reshape(conn, post_shape)
        self.shape = post_shape

    def node(self, weight, bias):
        if bias is None:
            return nir.Scale(scale=_np(weight).reshape(self.shape))
        if len(self.shape) != 1:
            raise ValueError(f"{self.owner}: a one_to_one link with a bias into a {len(self.shape)}-D group has no NIR "
                             "form (NIR's Scale has no bias, Affine needs a 1-D signal)")
        return nir.Affine(weight=np.diag(_np(weight)), bias=_np(bias))


@LINK_TO_NIR.register("conv")
class _ConvToNIR:
    """``Conv2d`` with the link's stride, padding, dilation and groups (a zero bias when there is none)."""

    def __init__(self, conn, in_shape):
        link = conn.link
        if link.upscale is not None:
            raise ValueError(f"{conn.label}: upscale={link.upscale} has no NIR form (NIR has no upsampling)")
        self.link = link
        self.pre = []
        self.shape = tuple(in_shape)

    def node(self, weight, bias):
        link = self.link
        b = torch.zeros(weight.shape[0], dtype=weight.dtype) if bias is None else bias
        node = nir.Conv2d(input_shape=self.shape[1:], weight=_np(weight), stride=link.stride, padding=link.padding,
                          dilation=link.dilation, groups=link.groups, bias=_np(b))
        # nir 1.0.8 takes the input channels from weight.shape[1], i.e. in_channels / groups
        node.input_type = {"input": np.array(self.shape)}
        return node


# ----------------------------------------------------------------------------------------------------------------
# export: the other synapse ops
# ----------------------------------------------------------------------------------------------------------------
@dataclass
class Affine:
    """The weight and bias of a connection while its chain is exported (batch norm folds into them)."""

    weight: torch.Tensor
    bias: Optional[torch.Tensor]


@SYNAPSE_TO_NIR.register("flatten")
def _flatten_to_nir(op, in_shape, weight, owner):
    return _flatten_node(in_shape) if len(in_shape) > 1 else None


def _pool_args(op) -> dict[str, np.ndarray]:
    return {"kernel_size": np.array(op.kernel_size), "stride": np.array(op.stride), "padding": np.array(op.padding)}


@SYNAPSE_TO_NIR.register("avgpool")
def _avgpool_to_nir(op, in_shape, weight, owner):
    return nir.AvgPool2d(**_pool_args(op))


@SYNAPSE_TO_NIR.register("sumpool")
def _sumpool_to_nir(op, in_shape, weight, owner):
    return nir.SumPool2d(**_pool_args(op))


@SYNAPSE_TO_NIR.register("dropout")
def _dropout_to_nir(op, in_shape, weight, owner):
    return None  # the graph describes the network in eval mode, where dropout is the identity


@SYNAPSE_TO_NIR.register("batchnorm")
def _batchnorm_to_nir(op, in_shape, weight: Optional[Affine], owner: str):
    """Fold the eval-mode batch norm ``(x − mean)·s + β`` (``s = γ/√(var + ε)``) into the weight op before it."""
    bn = op.bn
    per_out = weight is not None and bn.num_features == weight.weight.shape[0] and (
        len(in_shape) == 1 or weight.weight.dim() == 4)
    if not per_out or bn.running_mean is None:
        raise ValueError(f"{owner}: batchnorm has no NIR node; it is folded into the weights only when it directly "
                         "follows the weight op, normalizes its output channels and tracks running statistics")
    s = (bn.weight if bn.affine else 1.0) / torch.sqrt(bn.running_var + bn.eps)
    shift = bn.bias if bn.affine else 0.0
    w = weight.weight
    bias = torch.zeros(w.shape[0], dtype=w.dtype) if weight.bias is None else weight.bias
    weight.weight = w * s.reshape(-1, *([1] * (w.dim() - 1)))
    weight.bias = ((bias - bn.running_mean) * s + shift).detach()
    return None


# ----------------------------------------------------------------------------------------------------------------
# import: parts
# ----------------------------------------------------------------------------------------------------------------
@dataclass
class Source:
    """An NIR ``Input``: becomes an :class:`~spaic_train.Encoder`."""

    shape: tuple[int, ...]
    coding: str = "direct"
    params: dict[str, Any] = field(default_factory=dict)


@dataclass
class Sink:
    """An NIR ``Output``: its source becomes a decoded group."""

    decoder: Optional[str] = None


@dataclass
class Neuron:
    """A neuron node: ``NeuronGroup(shape, model=model, **params)``."""

    model: str
    params: dict[str, Any]
    shape: Optional[tuple[int, ...]]


@dataclass
class Weight:
    """A weight node: the weight op of a connection (``link_type``, tensors, link kwargs)."""

    link_type: str
    weight: torch.Tensor
    bias: Optional[torch.Tensor] = None
    kwargs: dict[str, Any] = field(default_factory=dict)
    #: for ``one_to_one``: the signal shape (NIR's Scale keeps it)
    shape: Optional[tuple[int, ...]] = None

    @property
    def weight_op(self) -> str:
        return "conv" if self.link_type == "conv" else "basic"

    def signature(self) -> tuple:
        """What two weights must share to be merged into one connection."""
        kw = tuple(sorted((k, str(v)) for k, v in self.kwargs.items()))
        return self.link_type, tuple(self.weight.shape), kw

    def support(self) -> torch.Tensor:
        """Bool mask of the synapses that exist, in the link's delay shape."""
        w = self.weight != 0
        return w.flatten(2).any(-1) if self.link_type == "conv" else w

    def out_shape(self, in_shape: tuple[int, ...]) -> tuple[int, ...]:
        if self.link_type == "full":
            return (self.weight.shape[0],)
        if self.link_type == "one_to_one":
            return self.shape or tuple(in_shape)
        k = self.weight.shape[2:]
        out = []
        for i, size in enumerate(in_shape[1:]):
            pad = self.kwargs["padding"]
            if pad == "same":
                out.append(size)
                continue
            p = 0 if pad == "valid" else pad[i]
            s, d = self.kwargs["stride"][i], self.kwargs["dilation"][i]
            out.append((size + 2 * p - d * (k[i] - 1) - 1) // s + 1)
        return (self.weight.shape[0], *out)


def identity_weight(shape) -> Weight:
    """A direct edge between two assemblies: a ``one_to_one`` link with unit weights (``x·1 = x`` exactly)."""
    return Weight("one_to_one", torch.ones(math.prod(shape)), shape=tuple(shape))


@dataclass
class Op:
    """A synapse op other than the weight op (``flatten``, ``avgpool``, ``sumpool``) with its kwargs."""

    syn: str
    kwargs: dict[str, Any] = field(default_factory=dict)

    def out_shape(self, in_shape, owner: str) -> tuple[int, ...]:
        return tuple(SYNAPSES.get(self.syn)(owner, in_shape, self.kwargs).output_shape(tuple(in_shape)))


@dataclass
class Delay:
    """A ``Delay`` node: a whole number of steps."""

    steps: int


def _where(name: str, node) -> str:
    return f"NIR node {name!r} ({type(node).__name__})"


def need_dt(dt_s: Optional[float], name: str, node) -> float:
    if dt_s is None:
        raise ValueError(f"{_where(name, node)}: the graph does not record its time step; pass dt= (seconds per "
                         "step): 1e-4 for graphs from snnTorch and SpikingJelly, the dt given to Norse's exporter "
                         "(default 1e-3) for Norse")
    return dt_s


def _uniform(values, name: str, node, what: str) -> float:
    arr = np.asarray(values, dtype=np.float64)
    lo, hi = float(arr.min()), float(arr.max())
    if lo != hi:
        raise ValueError(f"{_where(name, node)}: {what} differs between neurons ({lo:g} to {hi:g}); a spaic_train "
                         "group has one value per parameter")
    return lo


def _gain(value: float, name: str, node) -> float:
    if not value > 0:
        raise ValueError(f"{_where(name, node)}: the input gain r·dt/tau = {value:g} must be positive")
    return 1.0 if abs(value - 1.0) <= GAIN_TOLERANCE else value


def _param_shape(values) -> Optional[tuple[int, ...]]:
    shape = np.shape(values)
    return tuple(int(s) for s in shape) if len(shape) and math.prod(shape) > 1 else None


@NIR_TO_PART.register("LIF")
def _lif_from_nir(node: nir.LIF, name: str, dt_s: Optional[float]) -> Neuron:
    """Forward Euler: ``β = 1 − dt/τ``, input gain ``g = r·dt/τ``; the membrane is read as ``u = (v − v_leak)/g``,
    so ``u ← βu + I`` with threshold ``(v_threshold − v_leak)/g`` and reset ``(v_reset − v_leak)/g``."""
    dt_s = need_dt(dt_s, name, node)
    tau = _uniform(node.tau, name, node, "tau")
    if not (math.isfinite(tau) and tau > dt_s):
        raise ValueError(f"{_where(name, node)}: tau={tau:g} s is not longer than dt={dt_s:g} s; forward Euler needs "
                         "dt < tau < inf (pass the dt the graph was exported with)")
    beta = 1.0 - dt_s / tau
    g = _gain(_uniform(node.r, name, node, "r") * dt_s / tau, name, node)
    v_leak = _uniform(node.v_leak, name, node, "v_leak")
    params = {"tau": -dt_s * 1e3 / math.log(beta),
              "v_th": (_uniform(node.v_threshold, name, node, "v_threshold") - v_leak) / g,
              "v_reset": (_uniform(node.v_reset, name, node, "v_reset") - v_leak) / g, "reset": "hard"}
    return Neuron("lif", params, _param_shape(node.tau))


@NIR_TO_PART.register("IF")
def _if_from_nir(node: nir.IF, name: str, dt_s: Optional[float]) -> Neuron:
    """Forward Euler: input gain ``g = r·dt``; threshold and reset divided by ``g``."""
    dt_s = need_dt(dt_s, name, node)
    g = _gain(_uniform(node.r, name, node, "r") * dt_s, name, node)
    params = {"v_th": _uniform(node.v_threshold, name, node, "v_threshold") / g,
              "v_reset": _uniform(node.v_reset, name, node, "v_reset") / g, "reset": "hard"}
    return Neuron("if", params, _param_shape(node.r))


def _matrix(node, name: str) -> torch.Tensor:
    w = torch.as_tensor(np.asarray(node.weight), dtype=torch.get_default_dtype())
    if w.dim() != 2:
        raise ValueError(f"{_where(name, node)}: a weight of shape {tuple(w.shape)}; only 2-D weights are supported")
    return w


def _tensor(values) -> torch.Tensor:
    return torch.as_tensor(np.asarray(values), dtype=torch.get_default_dtype())


@NIR_TO_PART.register("Affine")
def _affine_from_nir(node: nir.Affine, name: str, dt_s) -> Weight:
    return Weight("full", _matrix(node, name), _tensor(node.bias).reshape(-1))


@NIR_TO_PART.register("Linear")
def _linear_from_nir(node: nir.Linear, name: str, dt_s) -> Weight:
    return Weight("full", _matrix(node, name))


@NIR_TO_PART.register("Scale")
def _scale_from_nir(node: nir.Scale, name: str, dt_s) -> Weight:
    scale = np.asarray(node.scale)
    return Weight("one_to_one", _tensor(scale).reshape(-1), shape=tuple(int(s) for s in scale.shape) or None)


def _ints(value, n: int = 2) -> tuple[int, ...]:
    arr = np.asarray(value).reshape(-1)
    vals = tuple(int(v) for v in arr)
    return vals * n if len(vals) == 1 else vals


@NIR_TO_PART.register("Conv2d")
def _conv_from_nir(node: nir.Conv2d, name: str, dt_s) -> Weight:
    pad = node.padding
    if isinstance(pad, bytes):
        pad = pad.decode()
    if not isinstance(pad, str):
        pad = _ints(pad)
    kwargs = {"stride": _ints(node.stride), "padding": pad, "dilation": _ints(node.dilation),
              "groups": int(np.asarray(node.groups).reshape(-1)[0]), "kernel_size": tuple(node.weight.shape[2:])}
    return Weight("conv", _tensor(node.weight), _tensor(node.bias).reshape(-1), kwargs)


@NIR_TO_PART.register("Flatten")
def _flatten_from_nir(node: nir.Flatten, name: str, dt_s) -> Op:
    shape = node.input_type.get("input") if node.input_type else None
    start, end = int(node.start_dim), int(node.end_dim)
    if shape is not None:
        ndim = max(1, len(shape))
        start, end = start % ndim, end % ndim - ndim
    if (start, end) != (0, -1):
        raise ValueError(f"{_where(name, node)}: start_dim={node.start_dim}, end_dim={node.end_dim} flattens only part "
                         "of the signal; spaic_train's flatten makes it 1-D")
    return Op("flatten")


def _pool_from_nir(syn: str):
    def convert(node, name: str, dt_s) -> Op:
        return Op(syn, {"pool_kernel_size": _ints(node.kernel_size), "pool_stride": _ints(node.stride),
                        "pool_padding": _ints(node.padding)})

    return convert


NIR_TO_PART.register("AvgPool2d")(_pool_from_nir("avgpool"))
NIR_TO_PART.register("SumPool2d")(_pool_from_nir("sumpool"))


@NIR_TO_PART.register("Delay")
def _delay_from_nir(node: nir.Delay, name: str, dt_s: Optional[float]) -> Delay:
    dt_s = need_dt(dt_s, name, node)
    steps = _uniform(node.delay, name, node, "delay") / dt_s
    whole = round(steps)
    if whole < 0 or abs(steps - whole) > 1e-6 * max(1.0, abs(steps)):
        raise ValueError(f"{_where(name, node)}: a delay of {steps * dt_s:g} s is not a whole number of steps of "
                         f"dt={dt_s:g} s")
    return Delay(int(whole))


def text(value) -> str:
    """A metadata string (HDF5 returns bytes)."""
    return value.decode() if isinstance(value, bytes) else str(value)


@NIR_TO_PART.register("Input")
def _input_from_nir(node: nir.Input, name: str, dt_s) -> Source:
    meta = {k: v for k, v in (node.metadata or {}).items()}
    coding = text(meta.pop("coding", "direct"))
    params = {k: v.item() if isinstance(v, np.generic) else v for k, v in meta.items()}
    return Source(tuple(int(s) for s in np.asarray(node.input_type["input"]).reshape(-1)), coding, params)


@NIR_TO_PART.register("Output")
def _output_from_nir(node: nir.Output, name: str, dt_s) -> Sink:
    decoder = (node.metadata or {}).get("decoder")
    return Sink(None if decoder is None else text(decoder))
