"""``benchmarks/profile_iteration.py``: the profile of one training iteration of a ``run.py`` workload."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture()
def profile_iteration():
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        import profile_iteration

        yield profile_iteration
    finally:
        sys.path.remove(str(ROOT / "benchmarks"))


def test_conv_iteration_profile_names_its_operators(profile_iteration, capsys):
    """The quick conv workload: a median time, then the profiled operators, convolutions and the fused batch-norm +
    LIF kernel among them, split by input shape."""
    assert profile_iteration.main(["conv", "--quick", "--threads", "1", "--warmup", "1", "--iters", "1",
                                   "--profiled", "1", "--by-shape", "--rows", "40"]) == 0
    out = capsys.readouterr().out
    assert "conv: median" in out and "per iteration over 1 (1 threads)" in out
    assert "aten::convolution_backward" in out and "BNLIFFunction" in out and "Input Shapes" in out


def test_a_workload_without_an_optimizer_step_is_refused(profile_iteration, capsys):
    with pytest.raises(SystemExit) as e:
        profile_iteration.main(["lif", "--quick"])
    assert e.value.code == 2 and "workload 'lif' has no optimizer step" in capsys.readouterr().err
