"""Triton LIF/IF kernels (:mod:`spaic_train.neurons.kernels.triton_lif`) against the torch fused kernel.

* On CPU (always, when triton is installed): the kernels run under Triton's interpreter
  (``TRITON_INTERPRET=1``, which must be set before triton is imported) in a subprocess, so this
  pytest process never imports triton (``test_neurons.test_no_triton_import_on_cpu``).
* On CUDA (when available): the compiled kernels, directly and through ``LIFFamily.run_sequence``.

Run as a script (``TRITON_INTERPRET=1 python tests/test_triton_lif.py``) for the interpreter check.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from kernel_cases import check_kernel_supported, check_run_sequence_dispatch, compare_cases

from spaic_train.neurons.kernels import LIFConfig
from spaic_train.surrogate import get_surrogate

ROOT = Path(__file__).resolve().parents[1]
HAS_TRITON = importlib.util.find_spec("triton") is not None


def _triton_impl(I, V0, beta, cfg):
    from spaic_train.neurons.kernels import triton_lif

    return triton_lif.lif_sequence(I, V0, beta, cfg)


def interpreter_main() -> None:
    """Subprocess body: the kernels on CPU tensors under ``TRITON_INTERPRET=1``."""
    assert os.environ.get("TRITON_INTERPRET") == "1", "set TRITON_INTERPRET=1 before importing triton"
    torch.set_num_threads(1)
    from spaic_train.neurons.kernels import triton_lif

    check_kernel_supported()
    n = compare_cases(_triton_impl, "cpu", T=6, B=2, shape=(37,))
    triton_lif._MAX_BLOCK = 32  # several programs per step, with a masked tail
    n += compare_cases(_triton_impl, "cpu", T=5, B=2, shape=(3, 7), names=["atan", "rectangle"])
    # empty sequence
    cfg = LIFConfig(1.0, 0.0, True, False, get_surrogate("atan"), 0.0, 0.0, True)
    V0 = torch.randn(2, 5, requires_grad=True)
    O, VT, aT, Vs = triton_lif.lif_sequence(torch.zeros(0, 2, 5, requires_grad=True), V0, 0.8, cfg)
    assert O.shape == (0, 2, 5) and Vs.shape == (0, 2, 5) and torch.equal(VT, V0)
    (VT.sum()).backward()
    assert torch.equal(V0.grad, torch.ones(2, 5))
    print(f"OK {n} cases")


@pytest.mark.skipif(not HAS_TRITON, reason="triton is not installed")
def test_interpreter_matches_torch_fused():
    env = dict(os.environ, TRITON_INTERPRET="1")
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    proc = subprocess.run([sys.executable, str(Path(__file__).resolve())], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    assert "OK" in proc.stdout


needs_cuda = pytest.mark.skipif(not (HAS_TRITON and torch.cuda.is_available()),
                                reason="needs a CUDA GPU and triton (the interpreter test covers the CPU)")


@needs_cuda
def test_cuda_kernels_match_torch_fused():
    from spaic_train.neurons.kernels import triton_lif

    check_kernel_supported()
    compare_cases(_triton_impl, "cuda", T=16, B=4, shape=(33, 41))  # 5412 neurons: several programs, masked tail
    old = triton_lif._MAX_BLOCK
    try:
        triton_lif._MAX_BLOCK = 128
        compare_cases(_triton_impl, "cuda", T=7, B=3, shape=(50,), names=["atan", "sigmoid"])
    finally:
        triton_lif._MAX_BLOCK = old


@needs_cuda
@pytest.mark.parametrize("reset", ["hard", "soft"])
@pytest.mark.parametrize("name", ["lif", "if"])
def test_cuda_run_sequence_dispatch(name, reset, monkeypatch):
    from spaic_train.neurons.kernels import triton_lif

    check_run_sequence_dispatch(monkeypatch, triton_lif, "USE_TRITON", "cuda", name, reset)


@needs_cuda
def test_cuda_unsupported_cases_fall_back(monkeypatch):
    from spaic_train.neurons import build_neuron
    from spaic_train.neurons.kernels import triton_lif

    calls = []
    orig = triton_lif.lif_sequence
    monkeypatch.setattr(triton_lif, "lif_sequence", lambda *a: calls.append(1) or orig(*a))
    for name in ["alif", "plif"]:
        model = build_neuron(name).cuda()
        I = torch.randn(5, 2, 7, device="cuda", requires_grad=True)
        model.run_sequence(I)[0].sum().backward()
    build_neuron("lif").run_sequence(torch.randn(5, 2, 7, device="cuda", dtype=torch.float64))
    assert not calls


if __name__ == "__main__":
    interpreter_main()
