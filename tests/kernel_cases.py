"""Shared checks for the compiled LIF/IF kernels (numba on CPU, Triton on CUDA): every case is
compared against the torch fused kernel :class:`~spaic_train.neurons.kernels.torch_lif.LIFSequenceFunction`."""

from __future__ import annotations

import torch

from spaic_train.neurons import build_neuron
from spaic_train.neurons.kernels import LIFConfig, LIFSequenceFunction, dispatch, kernel_supported
from spaic_train.surrogate import SURROGATES, get_surrogate

SURROGATE_NAMES = ["atan", "sigmoid", "fast_sigmoid", "rectangle", "gaussian", "triangle", "erf",
                   "piecewise_quadratic"]


def _run_both(impl, I, V0, beta, cfg, loss_kind, seed):
    """Outputs and input gradients of the torch fused kernel and of ``impl`` for one case.

    ``loss_kind``: 0 weighted spikes, 1 + weighted ``V_T``, 2 + weighted ``V_seq``, 3 plain
    ``spikes.sum()`` (a broadcast scalar gradient) + ``V_T``.
    """
    g = torch.Generator().manual_seed(seed)
    gO, gVT, gVs = (torch.randn(I.shape, generator=g).to(I.device), torch.randn(V0.shape, generator=g).to(I.device),
                    torch.randn(I.shape, generator=g).to(I.device))
    results = []
    for fn in (lambda: LIFSequenceFunction.apply(I, V0, None, beta, cfg), lambda: impl(I, V0, beta, cfg)):
        O, VT, aT, Vseq = fn()
        assert aT is None
        loss = O.sum() * 0.7 if loss_kind == 3 else (O * gO).sum()
        if loss_kind >= 1:
            loss = loss + (VT * gVT).sum()
        if loss_kind == 2 and Vseq is not None:
            loss = loss + (Vseq * gVs).sum()
        inputs = [t for t in (I, V0) if t.requires_grad]
        grads = torch.autograd.grad(loss, inputs)
        results.append((O.detach(), VT.detach(), None if Vseq is None else Vseq.detach(), grads))
    return results


def compare_cases(impl, device: str, T: int, B: int, shape: tuple, names=SURROGATE_NAMES, tol: float = 1e-5) -> int:
    """Every surrogate x hard/soft x detach_reset x return_v x loss kind, ``impl(I, V0, beta, cfg)``
    against the torch fused kernel: equal spikes, ``V`` to 1e-6, gradients to ``tol``."""
    n = 0
    for si, name in enumerate(names):
        for hard in (True, False):
            for detach in (False, True):
                for return_v in (False, True):
                    seed = 1000 * si + 100 * hard + 10 * detach + return_v
                    torch.manual_seed(seed)
                    v_reset = -0.2 if hard else 0.0
                    v_th = 0.9 if hard else 1.1
                    cfg = LIFConfig(v_th, v_reset, hard, detach, get_surrogate(name), 0.0, 0.0, return_v)
                    I = (torch.randn(T, B, *shape, device=device) * 0.8 + 0.35).requires_grad_()
                    V0 = (torch.randn(B, *shape, device=device) * 0.3).requires_grad_(seed % 2 == 0)
                    beta = 1.0 if seed % 3 == 0 else 0.8  # IF and LIF
                    (O, VT, Vs, gr), (O2, VT2, Vs2, gr2) = _run_both(impl, I, V0, beta, cfg, (seed + si) % 4, seed)
                    where = f"{name} hard={hard} detach={detach} return_v={return_v}"
                    # equal by construction: both compute H = beta * V + I with one fused multiply-add per
                    # element (elementwise IEEE ops, no reductions), then the same comparison with v_th
                    assert torch.equal(O, O2), f"spikes differ: {where}"
                    assert 0 < O.mean() < 1, f"degenerate case (all or no spikes): {where}"
                    torch.testing.assert_close(VT2, VT, atol=1e-6, rtol=1e-6, msg=f"V_T: {where}")
                    if return_v:
                        torch.testing.assert_close(Vs2, Vs, atol=1e-6, rtol=1e-6, msg=f"V_seq: {where}")
                    else:
                        assert Vs is None and Vs2 is None
                    for a, b in zip(gr, gr2):
                        torch.testing.assert_close(b, a, atol=tol, rtol=tol, msg=f"grad: {where}")
                    n += 1
    return n


def check_kernel_supported() -> None:
    """Which calls the compiled kernels accept (the rest falls back to the torch fused kernel)."""
    from spaic_train.surrogate import ATan

    class MyATan(ATan):
        pass

    I, V0 = torch.zeros(3, 2, 4), torch.zeros(2, 4)
    cfg = LIFConfig(1.0, 0.0, True, False, get_surrogate("atan"), 0.0, 0.0, False)
    assert kernel_supported(I, V0, 0.8, cfg)
    assert kernel_supported(I, V0, 1, cfg)
    assert not kernel_supported(I, V0, 0.8, cfg, a0=torch.zeros(2, 4))  # alif
    assert not kernel_supported(I, V0, torch.tensor(0.8), cfg)  # plif (tensor beta)
    assert not kernel_supported(I.double(), V0.double(), 0.8, cfg)
    assert not kernel_supported(I.half(), V0.half(), 0.8, cfg)
    cfg.sg = MyATan()
    assert not kernel_supported(I, V0, 0.8, cfg)
    for name in SURROGATES.names():
        cfg.sg = get_surrogate(name)
        assert kernel_supported(I, V0, 0.8, cfg), name


def check_run_sequence_dispatch(monkeypatch, kernels, flag: str, device: str, name: str, reset: str) -> None:
    """``LIFFamily.run_sequence`` calls ``kernels.lif_sequence`` when ``dispatch.<flag>`` is on and not when it is
    off, with the same spikes, states and gradients either way."""
    calls = []
    orig = kernels.lif_sequence
    monkeypatch.setattr(kernels, "lif_sequence", lambda *a: calls.append(1) or orig(*a))
    model = build_neuron(name, reset=reset)
    torch.manual_seed(0)
    x = torch.randn(20, 8, 300, device=device) * 0.7 + 0.3
    outs = []
    for use in (True, False):
        monkeypatch.setattr(dispatch, flag, use)
        I = x.clone().requires_grad_()
        O, state, Vseq = model.run_sequence(I, None, return_v=True)
        (O.sum() + 0.5 * state["V"].sum() + 0.1 * Vseq.sum()).backward()
        outs.append((O, state["V"], Vseq, I.grad))
    assert len(calls) == 1  # the compiled path ran with the flag and not without
    (O, VT, Vs, gI), (O2, VT2, Vs2, gI2) = outs
    assert torch.equal(O, O2)  # same elementwise fused multiply-add per neuron and step (see compare_cases)
    torch.testing.assert_close(VT, VT2, atol=1e-6, rtol=1e-6)
    torch.testing.assert_close(Vs, Vs2, atol=1e-6, rtol=1e-6)
    torch.testing.assert_close(gI, gI2, atol=1e-5, rtol=1e-5)


def check_thread_count_invariance(thread_counts=(1, 2, 3)) -> None:
    """``LIFFamily.run_sequence`` on the compiled CPU backend in charge gives bitwise the same spikes, final
    membrane and input gradient for every torch thread count: each neuron is integrated by one thread, with no sum
    across neurons (equal by construction)."""
    torch.manual_seed(0)
    I = (torch.randn(30, 4, 700) * 0.8 + 0.3).requires_grad_()
    model = build_neuron("lif", tau=3.0)
    old = torch.get_num_threads()
    outs = []
    try:
        for threads in thread_counts:
            torch.set_num_threads(threads)
            I.grad = None
            O, state, _ = model.run_sequence(I)
            assert type(O.grad_fn).__name__ == "CPUKernelFunctionBackward"
            (O * torch.linspace(-1, 1, 700)).sum().backward()
            outs.append((O, state["V"], I.grad.clone()))
    finally:
        torch.set_num_threads(old)
    for other in outs[1:]:
        for a, b in zip(outs[0], other):
            assert torch.equal(a, b)
