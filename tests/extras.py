"""Optional packages the tests use: a test that needs one skips, naming the extra that installs it.

Not ``pytest.importorskip``: a wrapper such as ``spaic_train.nir`` turns the missing package into an ``ImportError``
with install advice, on which importorskip fails the test (pytest < 8.2 and >= 9.1: it skips only on
``ModuleNotFoundError``) or warns that it soon will (8.2 to 9.0).
"""

from __future__ import annotations

import importlib
from types import ModuleType

import pytest


def require(module: str, extra: str) -> ModuleType:
    """``import module``, or skip the calling test (or test module, at module level) with a reason naming
    ``extra``: the ``pip install 'spaic_train[<extra>]'`` that provides it."""
    __tracebackhide__ = True  # the skip is reported at the caller's line
    try:
        return importlib.import_module(module)
    except ImportError as e:  # ModuleNotFoundError included
        pytest.skip(f"could not import {module!r} (pip install 'spaic_train[{extra}]'): {e}", allow_module_level=True)
