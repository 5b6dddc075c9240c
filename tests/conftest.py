"""Shared pytest fixtures."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest
import torch

# The suite's networks are tiny: one intra-op thread is faster than two (no OpenMP hand-off per
# small op) and keeps timings stable on a busy 2-core machine.
torch.set_num_threads(1)


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """Directory of the shared real datasets: ``$SPAIC_TRAIN_DATA``, else ``<repo root>/../shared/data``.

    The path is returned even when it does not exist; tests that need a file skip with a reason naming it.
    """
    env = os.environ.get("SPAIC_TRAIN_DATA")
    if env:
        return Path(env).expanduser()
    return Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.fixture
def float64():
    """float64 as the default dtype for one test (exact comparisons with an analytic result)."""
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(old)


@pytest.fixture(autouse=True)
def _library_logs_reach_caplog(monkeypatch):
    """spaic_train's log records propagate to the root logger, where ``caplog`` listens, whatever handler setup
    ``spaic_train.console`` found at import."""
    monkeypatch.setattr(logging.getLogger("spaic_train"), "propagate", True)


@pytest.fixture(scope="session", autouse=True)
def _compiled_lif_kernels() -> None:
    """Load the compiled LIF kernels once, before the first test: the one-time numba compile of a fresh checkout
    (and the ~1 s load of the cached machine code in every later session) is charged to the session's set-up
    instead of to whichever test first runs a LIF layer."""
    from spaic_train.neurons import load_compiled_kernels

    load_compiled_kernels()
