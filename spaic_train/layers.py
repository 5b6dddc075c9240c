"""``spaic_train.layers`` is :mod:`spaic_train.keras.layers` (``from spaic_train.layers import Full``)."""

import sys

from .keras import layers as _layers

sys.modules[__name__] = _layers
