"""Hydra instantiates sweepers only from the ``hydra_plugins`` namespace: :mod:`spaic_train.sweep`'s, defined here."""

from spaic_train import sweep as _sweep

__all__ = ["ResumableOptunaSweeper"]


class ResumableOptunaSweeper(_sweep.ResumableOptunaSweeper):
    __doc__ = _sweep.ResumableOptunaSweeper.__doc__
