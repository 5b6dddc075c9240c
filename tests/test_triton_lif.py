"""Triton LIF/IF kernels (:mod:`spaic_train.neurons.triton_lif`) against the torch fused kernel.

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

from spaic_train.neurons import lif as lif_mod
from spaic_train.neurons.lif import LIFSequenceFunction, _Cfg
from spaic_train.surrogate import SURROGATES, get_surrogate

ROOT = Path(__file__).resolve().parents[1]
HAS_TRITON = importlib.util.find_spec("triton") is not None
SURROGATE_NAMES = ["atan", "sigmoid", "fast_sigmoid", "rectangle", "gaussian", "triangle", "erf",
                   "piecewise_quadratic"]


def _run_both(I, V0, beta, cfg, loss_kind, seed):
    """Outputs and input gradients of the torch fused kernel and of the Triton kernel for one case."""
    from spaic_train.neurons import triton_lif

    g = torch.Generator().manual_seed(seed)
    gO, gVT, gVs = (torch.randn(I.shape, generator=g).to(I.device), torch.randn(V0.shape, generator=g).to(I.device),
                    torch.randn(I.shape, generator=g).to(I.device))
    results = []
    for fn in (lambda: LIFSequenceFunction.apply(I, V0, None, beta, cfg),
               lambda: triton_lif.lif_sequence(I, V0, beta, cfg)):
        O, VT, aT, Vseq = fn()
        assert aT is None
        loss = (O * gO).sum()
        if loss_kind >= 1:
            loss = loss + (VT * gVT).sum()
        if loss_kind >= 2 and Vseq is not None:
            loss = loss + (Vseq * gVs).sum()
        inputs = [t for t in (I, V0) if t.requires_grad]
        grads = torch.autograd.grad(loss, inputs)
        results.append((O.detach(), VT.detach(), None if Vseq is None else Vseq.detach(), grads))
    return results


def compare_cases(device: str, T: int, B: int, shape: tuple, names=SURROGATE_NAMES, tol: float = 1e-5) -> int:
    """Every surrogate x hard/soft x detach_reset x return_v x loss on (O | O,V_T | O,V_T,V_seq)."""
    n = 0
    for si, name in enumerate(names):
        for hard in (True, False):
            for detach in (False, True):
                for return_v in (False, True):
                    seed = 1000 * si + 100 * hard + 10 * detach + return_v
                    torch.manual_seed(seed)
                    v_reset = -0.2 if hard else 0.0
                    v_th = 0.9 if hard else 1.1
                    cfg = _Cfg(v_th, v_reset, hard, detach, get_surrogate(name), 0.0, 0.0, return_v)
                    I = (torch.randn(T, B, *shape, device=device) * 0.8 + 0.35).requires_grad_()
                    V0 = (torch.randn(B, *shape, device=device) * 0.3).requires_grad_(seed % 2 == 0)
                    beta = 1.0 if seed % 3 == 0 else 0.8  # IF and LIF
                    (O, VT, Vs, gr), (O2, VT2, Vs2, gr2) = _run_both(I, V0, beta, cfg, seed % 3, seed)
                    where = f"{name} hard={hard} detach={detach} return_v={return_v}"
                    assert torch.equal(O, O2), f"spikes differ: {where}"
                    torch.testing.assert_close(VT2, VT, atol=1e-6, rtol=1e-6, msg=f"V_T: {where}")
                    if return_v:
                        torch.testing.assert_close(Vs2, Vs, atol=1e-6, rtol=1e-6, msg=f"V_seq: {where}")
                    else:
                        assert Vs is None and Vs2 is None
                    for a, b in zip(gr, gr2):
                        torch.testing.assert_close(b, a, atol=tol, rtol=tol, msg=f"grad: {where}")
                    n += 1
    return n


def check_supported() -> None:
    """Which calls the Triton path accepts (the rest falls back to the torch fused kernel)."""
    from spaic_train.neurons import triton_lif
    from spaic_train.surrogate import ATan

    class MyATan(ATan):
        pass

    I, V0 = torch.zeros(3, 2, 4), torch.zeros(2, 4)
    cfg = _Cfg(1.0, 0.0, True, False, get_surrogate("atan"), 0.0, 0.0, False)
    assert triton_lif.supported(I, V0, 0.8, cfg)
    assert triton_lif.supported(I, V0, 1, cfg)
    assert not triton_lif.supported(I, V0, 0.8, cfg, a0=torch.zeros(2, 4))  # alif
    assert not triton_lif.supported(I, V0, torch.tensor(0.8), cfg)  # plif (tensor beta)
    assert not triton_lif.supported(I.double(), V0.double(), 0.8, cfg)
    assert not triton_lif.supported(I.half(), V0.half(), 0.8, cfg)
    cfg.sg = MyATan()
    assert not triton_lif.supported(I, V0, 0.8, cfg)
    for name in SURROGATES.names():
        cfg.sg = get_surrogate(name)
        assert triton_lif.supported(I, V0, 0.8, cfg), name


def interpreter_main() -> None:
    """Subprocess body: the kernels on CPU tensors under ``TRITON_INTERPRET=1``."""
    assert os.environ.get("TRITON_INTERPRET") == "1", "set TRITON_INTERPRET=1 before importing triton"
    torch.set_num_threads(1)
    from spaic_train.neurons import triton_lif

    check_supported()
    n = compare_cases("cpu", T=6, B=2, shape=(37,))
    triton_lif._MAX_BLOCK = 32  # several programs per step, with a masked tail
    n += compare_cases("cpu", T=5, B=2, shape=(3, 7), names=["atan", "rectangle"])
    # empty sequence
    cfg = _Cfg(1.0, 0.0, True, False, get_surrogate("atan"), 0.0, 0.0, True)
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
    from spaic_train.neurons import triton_lif

    check_supported()
    compare_cases("cuda", T=16, B=4, shape=(33, 41))  # 5412 neurons: several programs, masked tail
    old = triton_lif._MAX_BLOCK
    try:
        triton_lif._MAX_BLOCK = 128
        compare_cases("cuda", T=7, B=3, shape=(50,), names=["atan", "sigmoid"])
    finally:
        triton_lif._MAX_BLOCK = old


@needs_cuda
@pytest.mark.parametrize("reset", ["hard", "soft"])
@pytest.mark.parametrize("name", ["lif", "if"])
def test_cuda_run_sequence_dispatch(name, reset, monkeypatch):
    from spaic_train.neurons import build_neuron, triton_lif

    calls = []
    orig = triton_lif.lif_sequence
    monkeypatch.setattr(triton_lif, "lif_sequence", lambda *a: calls.append(1) or orig(*a))
    model = build_neuron(name, reset=reset)
    torch.manual_seed(0)
    x = torch.randn(20, 8, 300, device="cuda") * 0.7 + 0.3
    outs = []
    for use in (True, False):
        monkeypatch.setattr(lif_mod, "USE_TRITON", use)
        I = x.clone().requires_grad_()
        O, state, Vseq = model.run_sequence(I, None, return_v=True)
        (O.sum() + 0.5 * state["V"].sum() + 0.1 * Vseq.sum()).backward()
        outs.append((O, state["V"], Vseq, I.grad))
    assert len(calls) == 1  # the Triton path ran with USE_TRITON and not without
    (O, VT, Vs, gI), (O2, VT2, Vs2, gI2) = outs
    assert torch.equal(O, O2)
    torch.testing.assert_close(VT, VT2, atol=1e-6, rtol=1e-6)
    torch.testing.assert_close(Vs, Vs2, atol=1e-6, rtol=1e-6)
    torch.testing.assert_close(gI, gI2, atol=1e-5, rtol=1e-5)


@needs_cuda
def test_cuda_unsupported_cases_fall_back(monkeypatch):
    from spaic_train.neurons import build_neuron, triton_lif

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
