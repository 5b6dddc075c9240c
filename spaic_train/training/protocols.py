"""What training and monitoring need from a network, written down as :class:`typing.Protocol` classes.

``spaic_train.training`` and ``spaic_train.monitoring`` type against these and never import
:class:`~spaic_train.Network` or the Keras ``Model``: both satisfy :class:`SpikingNetwork` structurally (the
tests check it), and so can any user network.

==========================  =====================================================================================
protocol                    used by
==========================  =====================================================================================
:class:`SpikingNetwork`     ``fit`` (input-shape and label-range checks, label in messages), ``NonFiniteGuard``
                            (recording the group that went non-finite), ``DeadNetworkMonitor`` (silent outputs),
                            ``TensorBoardMonitor`` (recording, groups, connections)
:class:`CheckedNetwork`     the data checks at the start of ``fit`` / ``evaluate`` / ``predict`` (``checks.py``)
:class:`NetworkHolder`      how a LightningModule exposes the network it trains (``SNNModule.network``)
==========================  =====================================================================================

Any other ``nn.Module`` still trains: what needs a :class:`SpikingNetwork` is then skipped (the fit-start checks,
the dead-output warning, the non-finite layer found by recording), and ``TensorBoardMonitor`` refuses it.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractContextManager
from typing import Optional, Protocol, runtime_checkable

from torch import Tensor, nn

__all__ = ["CheckedNetwork", "ConnectionView", "Constrained", "DecoderView", "EncoderView", "GroupView",
           "NetworkHolder", "SpikingNetwork", "network_of"]


class GroupView(Protocol):
    """A neuron group (:class:`~spaic_train.NeuronGroup`)."""

    #: key of the group in :meth:`SpikingNetwork.record`'s dict
    name: str
    #: how messages name the group, e.g. ``"NeuronGroup('out')"``
    label: str

    @property
    def shape(self) -> tuple[int, ...]:
        """Neurons per sample; may raise ``ValueError`` while not known yet."""

    @property
    def emits_spikes(self) -> bool:
        """Whether the group's output is 0/1 spikes (``False``: a non-spiking readout, its output a potential)."""


class EncoderView(Protocol):
    """An input of the network (:class:`~spaic_train.Encoder`): one sample is ``shape`` (``[T, *shape]`` for
    per-sample sequences)."""

    label: str
    #: canonical coding name, e.g. ``'direct'``, ``'poisson'``, ``'sequence'`` (batch-first ``[N, T, *shape]``)
    coding: str

    @property
    def shape(self) -> tuple[int, ...]:
        """Shape of one sample; may raise ``ValueError`` while not known yet."""


class DecoderView(Protocol):
    """An output of the network (:class:`~spaic_train.Decoder`): how ``target``'s activity becomes the output."""

    #: canonical coding name, e.g. ``'spike_counts'``, ``'spike_rate'``, ``'sequence'``, ``'voltage'``
    coding: str
    target: GroupView


class ConnectionView(Protocol):
    """A connection (:class:`~spaic_train.Connection`); its ``weight`` / ``bias`` / ``delay`` tensors, when
    present, are what ``TensorBoardMonitor`` draws."""

    name: str
    #: whether the per-synapse delays are trained (then :meth:`sigma_ms` is their relaxation width)
    learn_delay: bool

    def sigma_ms(self) -> float:
        """Relaxation width (ms) of the learnable delays."""


@runtime_checkable
class SpikingNetwork(Protocol):
    """What training and monitoring use of a spiking network, besides it being an ``nn.Module``.

    ``network(x)`` maps a batch to the outputs of :attr:`decoders` (one tensor, or a tuple for several).
    """

    #: how messages name the network
    label: str

    @property
    def encoders(self) -> Sequence[EncoderView]: ...

    @property
    def decoders(self) -> Sequence[DecoderView]: ...

    @property
    def groups(self) -> Sequence[GroupView]: ...

    @property
    def connections(self) -> Sequence[ConnectionView]: ...

    def record(self, var_names: Sequence[str] = ("O",)) -> AbstractContextManager[dict[str, dict[str, Tensor]]]:
        """Inside the ``with`` block every run fills ``{group or encoder name: {var: [T, B, *shape]}}``."""

    def apply_constraints(self) -> None:
        """Put weights and delays back within their bounds (called after every optimizer step)."""


@runtime_checkable
class CheckedNetwork(Protocol):
    """What the data checks of ``fit`` / ``evaluate`` / ``predict`` (:mod:`spaic_train.training.checks`) read from a
    network: its name, ``time_steps`` (``None``: inputs must be sequences), its encoders (the input shape) and its
    decoders (the output size)."""

    label: str
    time_steps: Optional[int]

    @property
    def encoders(self) -> Sequence[EncoderView]: ...

    @property
    def decoders(self) -> Sequence[DecoderView]: ...


@runtime_checkable
class Constrained(Protocol):
    """A network whose weights or delays have bounds to restore after each optimizer step (every
    :class:`SpikingNetwork`; a plain ``nn.Module`` has none)."""

    def apply_constraints(self) -> None: ...


@runtime_checkable
class NetworkHolder(Protocol):
    """A LightningModule that trains a network held in ``network`` (:class:`~spaic_train.training.SNNModule`)."""

    network: nn.Module


def network_of(module: nn.Module) -> nn.Module:
    """The network ``module`` trains: ``module.network`` for an :class:`NetworkHolder` (``SNNModule``), else
    ``module`` itself (a LightningModule that is its own network).  Whether it is a :class:`SpikingNetwork` is
    the caller's question."""
    return module.network if isinstance(module, NetworkHolder) else module
