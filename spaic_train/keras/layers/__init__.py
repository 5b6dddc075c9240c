"""Keras-style layers: thin builders of the shared SPAIC core (no op is implemented here).

A layer is a *recipe*.  Calling it on a symbolic tensor (``h = Full(64)(x)``) builds core objects
right away, so output shapes are known and shape errors surface at the call that caused them:

==================  ===========================================================  ====================================
layer               builds                                                       output shape (per step, no batch)
==================  ===========================================================  ====================================
``Input``           an :class:`~spaic_train.Encoder` (``coding=encoder``)        ``shape``
``Full``            ``NeuronGroup(units)`` + ``Connection(link_type='full')``    ``(units,)``
``Conv2dSyn``       ``NeuronGroup`` + ``Connection(link_type='conv')`` with      ``(out_channels, H', W')`` (after
                    ``syn_type=['conv'[, 'batchnorm'][, pool][, 'dropout']]``    conv and pool)
``OneToOne``        ``NeuronGroup`` + ``Connection(link_type='one_to_one')``     the input's shape
``SparseRandom``    ``NeuronGroup(units)`` + ``Connection('sparse_connect')``    ``(units,)``
                    (``density=``) or ``Connection('random')`` (``probability=``)
``Flatten``         nothing (folds ``'flatten'`` into the next connection)       ``(prod(shape),)``
``Dropout``         nothing (folds ``'dropout'`` into the next connection)       unchanged
``Pool2d``          nothing (folds ``'maxpool'``/``'avgpool'`` into the next     ``(C, H', W')``
                    connection)
``Feedback``        a ``Connection`` between two existing neuron layers (built   —
                    by the model: recurrent / top-down, with delays)
==================  ===========================================================  ====================================

**Where the neuron-less layers go.**  ``Flatten``, ``Dropout`` and ``Pool2d`` add no neurons; they are
folded into the synapse chain of the *next* connection, *before* its weight op — exactly where
their values flow: ``Conv2dSyn(8)`` → ``Pool2d(2)`` → ``Dropout(0.2)`` → ``Flatten()`` →
``Full(10)`` gives the ``Full`` connection ``syn_type=['maxpool', 'dropout', 'flatten', 'basic']``
(pooling and dropout act on the *spikes* of the conv layer, like ``nn.MaxPool2d`` → ``nn.Dropout`` →
``nn.Linear`` in PyTorch).  ``Conv2dSyn(pool=..., dropout=...)`` instead puts its own ops *after*
the conv (on the synaptic current); with ``pool_position='after'`` its pool acts on its spikes, folded into the
next connection like a ``Pool2d`` layer.  A neuron-less layer read by several layers is folded into
each of their connections (each with its own dropout mask); it cannot be a model output or the
end of a ``Feedback``.  All ops of one connection share its ``syn_kwargs``, so two pools (or two
dropouts) with *different* settings in one chain raise a ``ValueError``.

**Several inputs.**  ``Full(10)([a, b])`` makes one connection per input (each with its own
weight); their synaptic currents are summed in the layer's neurons (the network sums every
connection into a group).  The layer's one bias (``Full`` / ``Conv2dSyn``: ``bias=True`` by default, as
``nn.Linear`` / ``nn.Conv2d``) sits on the connection from its first input.

**Residual blocks.**  ``Conv2dSyn(..., shortcut='auto')([h, x])`` adds the block input ``x`` to the current of
its neurons through an identity (frozen weight-1 one-to-one synapses) or a 1×1-conv + batch-norm shortcut, next
to the conv chain of ``h``: ``out = neuron(BN(conv(h)) + shortcut(x))`` — a ResNet basic block is two
``Conv2dSyn`` calls (see the class, and ``conf/model/resnet19.yaml``).

**Delays.**  Every neuron layer and ``Feedback`` accepts ``max_delay=`` (ms, ``> 0`` enables
per-synapse delays) and ``delay=`` (a tensor of the link's delay shape in ms, a number, or an
initializer such as ``spaic_train.uniform(1, 4)``; default: whole steps drawn uniformly in
``[min_delay, max_delay]``, ``min_delay`` one step).  ``learn_delay=True`` (a connection keyword) makes
them learnable: ``Full(64, max_delay=8.0, learn_delay=True)``, ``Conv2dSyn(...)`` with one delay per
``(out, in)`` channel pair, ``SparseRandom``, ``OneToOne``, ``Feedback`` (see
:class:`~spaic_train.Connection`; anneal their width with ``model.compile(delay_sigma=...)``).

Names: a layer's ``name`` (a Python identifier) becomes the attribute name of its group (or
encoder) in the network; unnamed layers are named by the model (``full``, ``full_1``, ...).

**Layout** (one family per module): :mod:`.base` (``Layer``, ``SymbolicTensor``, the ``LAYERS`` registry),
:mod:`.input` (``Input``), :mod:`.neuron` (the base of the neuron layers: group + connections, folding),
:mod:`.dense` (``Full``, ``SparseRandom``, ``OneToOne``), :mod:`.conv` (``Conv2dSyn``), :mod:`.folding`
(``Flatten``, ``Dropout``, ``Pool2d``), :mod:`.feedback` (``Feedback``), :mod:`.checks` (the argument checks
every constructor runs) and :mod:`.config` (arguments ↔ JSON configs).
"""

from .base import LAYERS, Layer, SymbolicTensor, register_layer
from .base import Shape as Shape  # also public, as before the split (custom layers, the model code)
from .config import GivenTensor as GivenTensor
from .config import from_json_value as from_json_value
from .config import materialize as materialize
from .config import materialize_kwargs as materialize_kwargs
from .config import to_json_value as to_json_value
from .conv import Conv2dSyn
from .dense import Full, OneToOne, SparseRandom
from .feedback import Feedback
from .folding import Dropout, Flatten, Pool2d
from .input import Input

__all__ = [
    "LAYERS",
    "Layer",
    "SymbolicTensor",
    "Input",
    "Full",
    "Conv2dSyn",
    "OneToOne",
    "SparseRandom",
    "Flatten",
    "Dropout",
    "Pool2d",
    "Feedback",
    "register_layer",
]
