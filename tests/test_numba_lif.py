"""Numba CPU LIF/IF kernels (:mod:`spaic_train.neurons.kernels.numba_lif`) and the output buffer pool."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch
from kernel_cases import (
    check_kernel_supported,
    check_run_sequence_dispatch,
    check_thread_count_invariance,
    compare_cases,
)

from spaic_train.neurons import build_neuron
from spaic_train.neurons.buffers import BufferPool
from spaic_train.neurons.kernels import cpu_common, dispatch, numba_lif


@pytest.fixture(autouse=True)
def _numba_first(monkeypatch):
    """The C kernels are the first CPU choice (test_c_lif.py): here numba's turn is tested, as on a machine
    without a working C compiler."""
    monkeypatch.setattr(dispatch, "USE_C", False)


def _numba_impl(I, V0, beta, cfg):
    return numba_lif.lif_sequence(I, V0, beta, cfg)


def test_supported_calls():
    check_kernel_supported()


def test_kernels_match_torch_fused():
    assert compare_cases(_numba_impl, "cpu", T=6, B=2, shape=(37,)) == 64


def test_several_chunks_and_tail_match(monkeypatch):
    # 16-neuron chunks: 5 chunks of 74 neurons, the last one partial; long T shrinks the backward chunk
    monkeypatch.setattr(cpu_common, "MAX_WIDTH", 16)
    compare_cases(_numba_impl, "cpu", T=5, B=2, shape=(37,), names=["atan", "rectangle"])
    monkeypatch.setattr(cpu_common, "MAX_WIDTH", 1024)
    monkeypatch.setattr(cpu_common, "SCRATCH_ELEMS", 64 * 40)
    compare_cases(_numba_impl, "cpu", T=40, B=3, shape=(50,), names=["sigmoid"])


def test_kernel_leaves_torch_thread_count_alone():
    """numba's OpenMP layer sets the process's OpenMP thread count when it starts its pool (once per process,
    hence a fresh one): torch must keep the count the user set."""
    code = ("import torch; torch.set_num_threads(1)\n"
            "from spaic_train.neurons import lif_sequence\n"
            "x = torch.rand(8, 4, 1000, requires_grad=True)\n"
            "lif_sequence(x)[0].sum().backward()\n"
            "print(torch.get_num_threads())\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                         env={**os.environ, "SPAIC_TRAIN_NUMBA": "1", "SPAIC_TRAIN_C_KERNELS": "0"})
    assert out.returncode == 0, out.stderr
    assert out.stdout.split()[-1] == "1"


def test_thread_count_does_not_change_results():
    check_thread_count_invariance((1, 2))


@pytest.mark.parametrize("reset", ["hard", "soft"])
@pytest.mark.parametrize("name", ["lif", "if"])
def test_run_sequence_dispatch(name, reset, monkeypatch):
    check_run_sequence_dispatch(monkeypatch, numba_lif, "USE_NUMBA", "cpu", name, reset)


def test_unsupported_cases_fall_back(monkeypatch):
    calls = []
    orig = numba_lif.lif_sequence
    monkeypatch.setattr(numba_lif, "lif_sequence", lambda *a: calls.append(1) or orig(*a))
    for name in ["alif", "plif"]:
        model = build_neuron(name)
        I = torch.randn(5, 2, 7, requires_grad=True)
        model.run_sequence(I)[0].sum().backward()
    build_neuron("lif").run_sequence(torch.randn(5, 2, 7, dtype=torch.float64))
    assert not calls
    build_neuron("lif").run_sequence(torch.randn(5, 2, 7))
    assert calls == [1]


def test_without_numba_the_torch_kernel_runs(monkeypatch):
    # what a machine without numba (import fails) gets: same results from the torch fused kernel
    monkeypatch.setitem(dispatch._kernel_mods, "numba", False)
    model = build_neuron("lif")
    I = torch.randn(6, 3, 11, requires_grad=True)
    O, _, _ = model.run_sequence(I)
    assert type(O.grad_fn).__name__ == "LIFSequenceFunctionBackward"
    monkeypatch.setitem(dispatch._kernel_mods, "numba", numba_lif)
    O2, _, _ = model.run_sequence(I)
    assert type(O2.grad_fn).__name__ == "CPUKernelFunctionBackward"
    assert torch.equal(O, O2)


def test_empty_sequence_and_empty_layer():
    model = build_neuron("lif")
    V0 = torch.randn(2, 5, requires_grad=True)
    O, state, Vs = model.run_sequence(torch.zeros(0, 2, 5, requires_grad=True), {"V": V0}, return_v=True)
    assert O.shape == (0, 2, 5) and Vs.shape == (0, 2, 5) and torch.equal(state["V"], V0)
    state["V"].sum().backward()
    assert torch.equal(V0.grad, torch.ones(2, 5))
    O, state, _ = model.run_sequence(torch.zeros(4, 3, 0))
    assert O.shape == (4, 3, 0) and state["V"].shape == (3, 0)


# ---------------------------------------------------------------------------------------- buffer pool
def test_pool_reuses_memory_only_when_every_reference_is_gone():
    pool = BufferPool(max_bytes=1 << 30, min_bytes=1 << 16)
    a = pool.empty((100, 1000))
    ptr = a.data_ptr()
    view = a[10:]
    del a
    b = pool.empty((100, 1000))
    assert b.data_ptr() != ptr  # a view of the first buffer is alive
    del view
    c = pool.empty((100, 1000))
    assert c.data_ptr() == ptr  # reused, no fresh pages

    x = torch.randn(100, 1000, requires_grad=True)
    c.fill_(2.0)
    y = (x * c).sum()  # autograd keeps c for the gradient of x
    del c
    d = pool.empty((100, 1000))
    assert d.data_ptr() != ptr
    d.fill_(-1.0)
    y.backward()
    assert torch.equal(x.grad, torch.full((100, 1000), 2.0))  # the saved buffer was not overwritten
    del y, d
    assert pool.empty((100, 1000)).data_ptr() in (ptr, b.data_ptr())


def test_pool_limits_and_empty_cache():
    pool = BufferPool(max_bytes=3 * 400_000, min_bytes=100_000)
    small = pool.empty((10,))
    assert pool.pooled_bytes == 0 and small.shape == (10,)  # below min_bytes: plain torch.empty
    held = [pool.empty((100_000,)) for _ in range(4)]  # 400 kB each: the 4th does not fit
    assert pool.pooled_bytes == 3 * 400_000 and all(t.shape == (100_000,) for t in held)
    del held[:2]
    other = pool.empty((50_000,))  # another size evicts one idle block to make room
    assert pool.pooled_bytes == 2 * 400_000 + 200_000
    assert pool.empty_cache() == 400_000  # one idle 400 kB block left; the live ones stay
    del other, held
    assert pool.empty_cache() == 2 * 400_000 + 200_000 - 400_000
    assert pool.pooled_bytes == 0
    assert BufferPool(0).empty((1 << 20,)).numel() == 1 << 20  # pooling off


def test_pool_env_var_is_checked(monkeypatch):
    from spaic_train.neurons.kernels import buffers

    monkeypatch.setenv("SPAIC_TRAIN_BUFFER_POOL_MB", "lots")
    with pytest.raises(ValueError, match="SPAIC_TRAIN_BUFFER_POOL_MB.*'lots'"):
        buffers._pool_limit()
    monkeypatch.setenv("SPAIC_TRAIN_BUFFER_POOL_MB", "-1")
    with pytest.raises(ValueError, match=">= 0"):
        buffers._pool_limit()
    monkeypatch.setenv("SPAIC_TRAIN_BUFFER_POOL_MB", "0.5")
    assert buffers._pool_limit() == 1 << 19


def test_public_pool_path_is_the_pool_the_kernels_use():
    # README: spaic_train.neurons.buffers.OUTPUT_BUFFERS (.empty_cache() frees the idle part of the kernels' pool)
    import spaic_train.neurons.buffers as public

    assert public.OUTPUT_BUFFERS is numba_lif.OUTPUT_BUFFERS and public.BufferPool is BufferPool
    I = torch.randn(64, 16, 2048)  # 8 MiB of spikes: pooled
    O, _, _ = build_neuron("lif").run_sequence(I)
    assert public.OUTPUT_BUFFERS.pooled_bytes >= O.numel() * 4
    del O
    assert public.OUTPUT_BUFFERS.empty_cache() >= I.numel() * 4  # the spikes' block, idle once O is gone


def test_training_outputs_survive_the_next_iteration():
    # pooled spikes must not be recycled while the caller still holds them
    model = build_neuron("lif")
    torch.manual_seed(0)
    I = torch.randn(64, 16, 2048) * 0.8 + 0.3  # 8 MiB of spikes: pooled
    first, _, _ = model.run_sequence(I)
    kept = first.clone()
    for _ in range(3):
        model.run_sequence(torch.randn(64, 16, 2048))
    assert torch.equal(first, kept)


def test_load_compiled_kernels(monkeypatch):
    from spaic_train.neurons import load_compiled_kernels

    assert load_compiled_kernels("cpu") is True
    monkeypatch.setitem(dispatch._kernel_mods, "numba", False)  # numba missing
    assert load_compiled_kernels("cpu") is False


def test_a_kernel_that_fails_to_run_falls_back_with_a_warning(monkeypatch):
    # e.g. numba present but unable to compile on this machine: warn once, train with the torch kernel
    def broken(*args):
        raise RuntimeError("LLVM ERROR: cannot select")

    monkeypatch.setattr(numba_lif, "lif_sequence", broken)
    monkeypatch.delitem(dispatch._kernel_mods, "numba", raising=False)
    model = build_neuron("lif")
    I = torch.randn(6, 3, 11, requires_grad=True)
    with pytest.warns(RuntimeWarning, match="numba LIF kernels for 'cpu' failed.*LLVM ERROR.*torch fused kernel"):
        O, _, _ = model.run_sequence(I)
    assert type(O.grad_fn).__name__ == "LIFSequenceFunctionBackward"
    O2, _, _ = model.run_sequence(I)  # decided once
    assert type(O2.grad_fn).__name__ == "LIFSequenceFunctionBackward"


def test_first_use_inside_inference_mode_keeps_the_compiled_kernels(monkeypatch):
    # Lightning's predict runs under torch.inference_mode(): the smoke run must not fail there
    import warnings

    monkeypatch.delitem(dispatch._kernel_mods, "numba", raising=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        with torch.inference_mode():
            build_neuron("lif").run_sequence(torch.randn(5, 2, 7))
    assert dispatch._kernel_mods["numba"] is numba_lif
