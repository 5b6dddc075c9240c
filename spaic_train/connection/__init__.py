"""Connections between assemblies: link types (topology), synapse ops and per-synapse delays.

See :class:`Connection`; link types live in :data:`LINKS`, synapse ops in :data:`SYNAPSES`.
"""

from .connection import CONNECTION_PARAMS, POST_VAR_NAMES, PRE_VAR_NAMES, Connection
from .delays import (
    DelayLine,
    check_delays,
    delay_steps,
    delayed_weight_op,
    draw_delays,
    gaussian_taps,
    integer_taps,
    with_history,
)
from .links import (
    LINKS,
    ConvLink,
    FullLink,
    Link,
    LinkContext,
    OneToOneLink,
    OneToOneSparseLink,
    RandomLink,
    SparseLink,
)
from .synapses import (
    SYNAPSES,
    AvgPool,
    BasicSynapse,
    BatchNorm,
    ConvSynapse,
    Dropout,
    Flatten,
    MaxPool,
    SumPool,
    Synapse,
)

__all__ = [
    "Connection", "CONNECTION_PARAMS", "PRE_VAR_NAMES", "POST_VAR_NAMES",
    "LINKS", "Link", "LinkContext", "FullLink", "SparseLink", "RandomLink", "OneToOneLink", "OneToOneSparseLink",
    "ConvLink",
    "SYNAPSES", "Synapse", "BasicSynapse", "ConvSynapse", "MaxPool", "AvgPool", "SumPool", "Dropout", "Flatten",
    "BatchNorm",
    "DelayLine", "delay_steps", "draw_delays", "check_delays", "with_history", "delayed_weight_op", "integer_taps",
    "gaussian_taps",
]
