"""Exact synaptic-operation counts of one connection, from the values that actually reached it.

A *synaptic operation* (SOP, an accumulate) is one presynaptic spike reaching one synapse: the post neuron's
current gets ``+= w``.  For a connection whose weight op ``op(x, W)`` is linear in ``W`` (every link type:
matmul, one-to-one, sparse COO, conv) the number of accumulates a spike tensor ``s`` causes is::

    SOPs = sum(op(s, 1[W ≠ 0]))

(each output element adds one for every spike that reaches it through a present synapse), which counts
sparse masks, pruned (zero) weights, conv padding, stride, dilation and groups exactly as the forward does.
Because ``op`` is also linear in ``x``, the spikes are first summed over time and batch, so the count costs one
op on a single sample per distinct delay.

What reaches the weight op:

* the ops listed *before* it (``Pool2d``, ``Dropout``, ``Flatten`` folded into the connection) act on the
  spikes: max pooling passes one event per window with a spike, ``avgpool`` is counted as the sum of the
  window (an event-driven implementation adds ``w / k`` once per spike), ``dropout`` is the identity
  (counts are those of inference), ``batchnorm`` makes the input analog;
* the ops *after* it (``Conv2dSyn(pool=...)``, batch norm, dropout on the synaptic current) cost no
  accumulates: the conv computes every position before the pool.

Delays: a spike sent at step ``t`` over a synapse of delay ``d`` steps is counted once, when it arrives at
``t + d``; spikes still in flight when the run ends (``t + d ≥ T``) were never accumulated and are not counted.
Feedback connections (at least one step of delay) follow the same rule.  Learnable delays are counted at their
rounded (evaluation) delays.

Analog input (a ``direct`` encoder, a connection reading the membrane ``V``, batch norm before the weight op,
anything that is not a non-negative whole number) costs a multiply-accumulate (MAC) per present synapse per
step instead, whatever the value: ``MACs = Σ_steps sum(op(1, 1[W ≠ 0]))``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch
import torch.nn.functional as F
from torch import Tensor

from ..connection import Connection
from ..connection.synapses import SYNAPSES, AvgPool, BatchNorm, Dropout

__all__ = ["ConnectionCount", "count_connection", "present_synapses", "sum_over_batch", "synapse_count",
           "weight_op_index"]


@dataclass
class ConnectionCount:
    """Operations of one connection over a batch (totals over its samples and steps).

    Attributes:
        sops: accumulates caused by spikes (``0`` for analog input).
        macs: multiply-accumulates of analog input (``0`` for spike input).
        analog: whether the weight op's input was analog.
    """

    sops: Tensor
    macs: float
    analog: bool


def weight_op_index(conn: Connection) -> int:
    """Position of the weight op (``'basic'``/``'conv'``) in the connection's synapse chain."""
    return next(i for i, op in enumerate(conn.synapse_ops()) if op.is_weight_op)


def present_synapses(conn: Connection) -> Tensor:
    """``1[W ≠ 0]`` of the effective (masked) weight, as a float tensor of the weight's shape."""
    return (conn.effective_weight().detach() != 0).to(conn.weight.dtype)


def _one_sample_op(conn: Connection, x: Tensor, weight: Tensor) -> Tensor:
    """``op(x[None], weight)``: the weight op on one sample ``x`` of the weight op's input shape."""
    return conn.link.op(x.unsqueeze(0), weight)


def synapse_count(conn: Connection) -> int:
    """Number of (input element, output element) pairs joined by a present synapse: ``sum(op(1, 1[W ≠ 0]))``.

    For a conv that is every kernel tap that lands on a real (not padding) input position at every output
    position; for a dense link the nonzero weights.  It is also the MACs of one pass of the equivalent ANN.
    """
    with torch.no_grad():
        ones = conn.weight.new_ones(tuple(conn.in_shape))
        return int(round(float(_one_sample_op(conn, ones, present_synapses(conn)).sum(dtype=torch.float64))))


def _delay_groups(conn: Connection) -> list[tuple[int, Optional[Tensor]]]:
    """``(k, selector)`` per distinct effective delay ``k`` (steps); selector ``None`` = every synapse."""
    steps = conn.delay_steps()
    if steps is None:
        return [(int(conn.min_delay_steps), None)]
    return [(int(k), (steps == k)) for k in torch.unique(steps).tolist()]


_KNOWN_EXACT = ("maxpool", "sumpool", "flatten")  # whole numbers in, whole numbers out


def _event_input(conn: Connection, pre: Tensor) -> tuple[Tensor, Optional[bool]]:
    """The values reaching the weight op in counting form ``[T, B, *in_shape]``, and whether they are analog
    (``None``: an op of unknown kind ran, look at the values)."""
    analog: Optional[bool] = conn.pre_var_name != "O"
    z = pre
    for op in conn.synapse_ops()[:weight_op_index(conn)]:
        if isinstance(op, Dropout):
            continue
        if isinstance(op, BatchNorm):
            analog = True
            continue  # analog: only the shape matters, and batch norm keeps it
        if isinstance(op, AvgPool):  # one accumulate of w/k per spike in the window: count the window's sum
            T, B = z.shape[:2]
            y = F.avg_pool2d(z.reshape(T * B, *z.shape[2:]), op.kernel_size, op.stride, op.padding,
                             divisor_override=1)
            z = y.reshape(T, B, *y.shape[1:])
            continue
        z = op(z)
        if analog is False and type(op) not in {SYNAPSES.get(n) for n in _KNOWN_EXACT}:
            analog = None
    return z, analog


def sum_over_batch(x: Tensor) -> Tensor:
    """``x.sum(1)`` for ``[T, B, ...]``, reduced in memory order: the neurons write channels-last spikes after a
    conv, and a plain ``sum(1)`` over such strides is several times slower than the forward's own copy."""
    inner = sorted(range(2, x.dim()), key=lambda d: -x.stride(d))
    y = x.permute(0, 1, *inner).sum(1)
    back = [0] + [1 + inner.index(d) for d in range(2, x.dim())]
    return y.permute(*back)


def _selected(conn: Connection, sel: Optional[Tensor], dtype: torch.dtype) -> Tensor:
    """``1[W ≠ 0]``, restricted to the synapses of one delay (``sel``, delay-shaped; ``None``: all)."""
    present = present_synapses(conn).to(dtype)
    return present if sel is None else present * conn.link.expand_delay(sel.to(dtype))


def is_events(z: Tensor) -> bool:
    """Non-negative whole numbers: spikes (or spike counts after sum pooling)."""
    return bool(((z >= 0) & (z == torch.round(z))).all())


def count_connection(conn: Connection, pre: Tensor, differentiable: bool = False, pre_analog: Optional[bool] = None,
                     batch_sum: Optional[Tensor] = None) -> ConnectionCount:
    """SOPs (or MACs) of ``conn`` over a run, from the values ``pre`` ``[T, B, *pre.shape]`` of its pre variable.

    Args:
        conn: a connection of a network that has run (so feedback connections know their one-step delay).
        pre: what the connection read: the pre group's spikes ``O`` (or membrane ``V``), all ``T`` steps.
        differentiable: keep the autograd graph from ``pre`` to ``sops`` (for regularisers; the input is then
            taken to be spikes without checking its values).
        pre_analog: whether ``pre`` is known to be analog (``True``) or spikes (``False``); ``None``: look at the
            values.
        batch_sum: ``pre.sum(1)`` if the caller has it already (saves one pass over ``pre``).

    Returns:
        totals over the ``B`` samples and ``T`` steps (divide by ``B`` for per-sample numbers).
    """
    if pre.dim() != len(conn.pre.shape) + 2:
        raise ValueError(f"{conn.label}: count_connection needs [T, B, *{tuple(conn.pre.shape)}] values, got shape "
                         f"{tuple(pre.shape)}")
    grad = torch.enable_grad() if differentiable else torch.no_grad()
    with grad:
        plain = weight_op_index(conn) == 0
        z, analog = _event_input(conn, pre)
        if differentiable:
            analog = False
        elif analog is False and pre_analog is not None:
            analog = pre_analog  # whole numbers through ops that keep them whole
        elif analog is not True:
            analog = not is_events(z)
        T, B = z.shape[:2]
        groups = [(k, sel) for k, sel in _delay_groups(conn) if k < T]  # k >= T: nothing arrives in this run
        if analog:
            ones = conn.weight.new_ones(tuple(z.shape[2:]), dtype=torch.float64)
            macs = 0.0
            for k, sel in groups:
                macs += (T - k) * B * float(_one_sample_op(conn, ones, _selected(conn, sel, torch.float64)).sum())
            return ConnectionCount(sops=pre.new_zeros(()), macs=macs, analog=True)
        per_step = batch_sum if plain and batch_sum is not None and not differentiable else sum_over_batch(z)
        sent = {k: per_step[:T - k].sum(0) for k, _ in groups}  # spikes sent early enough to arrive: [*in]
        # whole numbers: the op is exact in float32 while no output can exceed 2**24; else count in float64
        dtype = conn.weight.dtype
        if not differentiable and sent and max(float(v.max()) for v in sent.values()) * conn.link.fan_in >= 2**24:
            dtype = torch.float64
        sops = z.new_zeros((), dtype=torch.float64)
        for k, sel in groups:
            sops = sops + _one_sample_op(conn, sent[k].to(dtype), _selected(conn, sel, dtype)).sum(dtype=torch.float64)
    return ConnectionCount(sops=sops if differentiable else sops.detach(), macs=0.0, analog=False)
