"""What a traced ANN becomes before any spiking layer is built: a list of neuron layers and their input terms.

Every activation (ReLU, clip, QCFS) of the ANN becomes one IF :class:`LayerPlan`; its pre-activation is a sum of
:class:`Term`\\ s, each the output of an earlier layer (or the input) through neuron-less ops (:class:`Fold`: pooling,
flatten), at most one weight op (:class:`Affine`, batch norm already folded in) and pooling of the current.  The
last pre-activation (the logits) is the readout layer.  Conversion errors are :class:`ConversionError`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

import torch

__all__ = ["INPUT", "Act", "Affine", "ConversionError", "Fold", "LayerPlan", "NetworkPlan", "Pre", "Term"]

#: source index of the network input
INPUT = -1


class ConversionError(ValueError):
    """An ANN (or a part of it) that :func:`spaic_train.convert` cannot turn into a spiking model."""


@dataclass
class Affine:
    """A weight op: ``kind`` ``'conv'`` (``conv`` holds kernel_size/stride/padding/dilation/groups) or ``'linear'``."""

    kind: str
    weight: torch.Tensor
    bias: Optional[torch.Tensor]
    path: str
    conv: dict = field(default_factory=dict)


@dataclass
class Fold:
    """A neuron-less op: ``'avgpool'``, ``'maxpool'`` (params ``size``, ``stride``, ``padding``) or ``'flatten'``."""

    kind: str
    path: str
    size: tuple = ()
    stride: tuple = ()
    padding: tuple = (0, 0)


@dataclass
class Term:
    """One summand of a pre-activation: ``post(affine(folds(source)))``; ``affine=None`` is an identity shortcut."""

    source: int
    folds: list
    affine: Optional[Affine]
    post: list = field(default_factory=list)


@dataclass
class Act:
    """The value of an activation (a layer's rate × threshold) seen through neuron-less ops."""

    layer: int
    folds: list
    node: str  # the fx node of the activation itself


@dataclass
class Pre:
    """A pre-activation: the sum of its terms."""

    terms: list


@dataclass
class LayerPlan:
    """One IF layer (or the readout).  ``node``: the fx node whose ANN value its rate × threshold approximates;
    ``clip``: a trained clip value (ReLU6, Hardtanh, QCFS) or ``None``; ``qcfs``: ``(levels, shift)`` or ``None``;
    ``name``: the Keras layer built for it (set by :func:`~.build.build_model`)."""

    terms: list
    node: str
    path: str
    shape: tuple
    clip: Optional[float] = None
    qcfs: Optional[tuple] = None
    readout: bool = False
    threshold: Optional[float] = None
    name: Optional[str] = None


@dataclass
class NetworkPlan:
    """The whole ANN: the input shape (one sample), the neuron layers in order, the last one the readout."""

    input_shape: tuple
    layers: list

    def sources(self, index: int) -> list:
        return [t.source for t in self.layers[index].terms]
