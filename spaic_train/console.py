"""What spaic_train prints, and where it goes.

Everything the library tells the user — one line per training epoch, where TensorBoard files and extracted
archives are written, that numba is compiling its kernels — is an ``INFO`` record of a logger under
``spaic_train`` (:data:`LOG` or ``logging.getLogger(__name__)`` in a submodule).

* Used from Python without any logging setup (a script, a notebook), the records print to stdout bare, like
  Keras: a handler on the ``spaic_train`` logger, added at import when the root logger has no handler (the rule
  Lightning applies to its own logger).  Silence them with
  ``logging.getLogger("spaic_train").setLevel(logging.WARNING)``.
* With logging configured before ``import spaic_train``, the records propagate to the root logger's handlers.
* ``python train.py`` calls :func:`route_to_root` once Hydra has configured logging, so these records, Lightning's
  and Python warnings all reach Hydra's console handler *and* ``<run dir>/train.log``.
"""

from __future__ import annotations

import logging
import sys

__all__ = ["LOG", "route_to_root"]

#: the parent logger of every spaic_train module
LOG = logging.getLogger("spaic_train")

#: loggers whose own stream handlers :func:`route_to_root` removes
_OWN_HANDLER_LOGGERS = ("spaic_train", "lightning.pytorch", "lightning.fabric")


class _StdoutHandler(logging.StreamHandler):
    """Writes to whatever ``sys.stdout`` is when a record is emitted (redirections and captures see it)."""

    def __init__(self) -> None:
        super().__init__(sys.stdout)
        self.setFormatter(logging.Formatter("%(message)s"))

    @property
    def stream(self):  # type: ignore[override]
        return sys.stdout

    @stream.setter
    def stream(self, value) -> None:  # the base class assigns it; the current sys.stdout always wins
        pass


def _install_default_handler() -> None:
    if LOG.level == logging.NOTSET:
        LOG.setLevel(logging.INFO)
    if not logging.getLogger().hasHandlers() and not LOG.handlers:
        LOG.addHandler(_StdoutHandler())
        LOG.propagate = False


def route_to_root() -> None:
    """Send the records of spaic_train and Lightning, and Python warnings, to the root logger's handlers.

    Their own stream handlers (added at import when nothing was configured yet) are removed, so nothing is
    printed twice and nothing bypasses a log file the root logger writes.
    """
    for name in _OWN_HANDLER_LOGGERS:
        logger = logging.getLogger(name)
        for handler in list(logger.handlers):
            if type(handler) in (logging.StreamHandler, _StdoutHandler):
                logger.removeHandler(handler)
        logger.propagate = True
    logging.captureWarnings(True)


_install_default_handler()
