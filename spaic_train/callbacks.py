"""``spaic_train.callbacks`` is :mod:`spaic_train.training.callbacks` (``st.callbacks.EarlyStopping(...)``)."""

import sys

from .training import callbacks as _callbacks

sys.modules[__name__] = _callbacks
