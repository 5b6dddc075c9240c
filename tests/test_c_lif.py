"""C CPU LIF/IF kernels (:mod:`spaic_train.neurons.kernels.c_lif`): results, dispatch, build and fallbacks."""

from __future__ import annotations

import logging
import os
import subprocess
import sys

import pytest
import torch
from kernel_cases import check_run_sequence_dispatch, check_thread_count_invariance, compare_cases

from spaic_train.neurons import build_neuron
from spaic_train.neurons.kernels import c_lif, cpu_common, dispatch, numba_lif


def _c_compiler_works() -> bool:
    try:
        c_lif._library()
        return True
    except ImportError:
        return False


# a machine without a working C compiler runs numba's kernels (test_numba_lif.py); the fallback tests below run anyway
needs_cc = pytest.mark.skipif(not _c_compiler_works(), reason="no working C compiler ($CC or cc) on this machine")


def _c_impl(I, V0, beta, cfg):
    return c_lif.lif_sequence(I, V0, beta, cfg)


@needs_cc
def test_kernels_match_torch_fused():
    assert compare_cases(_c_impl, "cpu", T=6, B=2, shape=(37,)) == 64


@needs_cc
def test_several_chunks_and_tail_match(monkeypatch):
    # 16-neuron chunks: 5 chunks of 74 neurons, the last one partial; long T shrinks the backward chunk
    monkeypatch.setattr(cpu_common, "MAX_WIDTH", 16)
    compare_cases(_c_impl, "cpu", T=5, B=2, shape=(37,), names=["atan", "rectangle"])
    monkeypatch.setattr(cpu_common, "MAX_WIDTH", 1024)
    monkeypatch.setattr(cpu_common, "SCRATCH_ELEMS", 64 * 40)
    compare_cases(_c_impl, "cpu", T=40, B=3, shape=(50,), names=["sigmoid", "erf"])


@needs_cc
def test_thread_count_does_not_change_results():
    check_thread_count_invariance()


@needs_cc
@pytest.mark.parametrize("reset", ["hard", "soft"])
@pytest.mark.parametrize("name", ["lif", "if"])
def test_run_sequence_prefers_the_c_kernels(name, reset, monkeypatch):
    # with USE_C off the numba kernels run instead: same spikes, states and gradients
    check_run_sequence_dispatch(monkeypatch, c_lif, "USE_C", "cpu", name, reset)


@needs_cc
def test_a_fresh_process_builds_once_and_never_imports_numba(tmp_path):
    code = ("import logging, sys, torch; logging.basicConfig(level=logging.INFO, format='%(message)s')\n"
            "from spaic_train.neurons import lif_sequence, load_compiled_kernels\n"
            "assert load_compiled_kernels('cpu')\n"
            "x = torch.rand(8, 4, 1000, requires_grad=True)\n"
            "lif_sequence(x)[0].sum().backward()\n"
            "print('numba imported:', 'numba' in sys.modules)\n")
    env = {**os.environ, "SPAIC_TRAIN_CACHE": str(tmp_path)}
    runs = [subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, env=env)
            for _ in range(2)]
    for out in runs:
        assert out.returncode == 0, out.stderr
        assert out.stdout.split()[-1] == "False"
    built = list((tmp_path / "kernels").iterdir())
    assert [p.suffix for p in built] == [".so"]  # one library, no temporary file left behind
    assert "building the C LIF kernels" in runs[0].stderr and str(built[0]) in runs[0].stderr
    assert "building the C LIF kernels" not in runs[1].stderr  # the second process loads the built one


@needs_cc
def test_library_name_hashes_source_and_flags(monkeypatch, tmp_path):
    default = c_lif.library_path()
    monkeypatch.setenv("SPAIC_TRAIN_CACHE", str(tmp_path / "cache"))
    here = c_lif.library_path()
    assert here.parent == tmp_path / "cache" / "kernels" and here.name == default.name
    source = c_lif._SOURCE
    edited = tmp_path / "c_lif.c"
    edited.write_text(source.read_text() + "\n/* edited */\n")
    monkeypatch.setattr(c_lif, "_SOURCE", edited)
    assert c_lif.library_path() != here  # an edited source never loads the old library
    monkeypatch.setattr(c_lif, "_SOURCE", source)
    monkeypatch.setattr(c_lif, "_FLAGS", (*c_lif._FLAGS, "-g"))
    assert c_lif.library_path() != here
    monkeypatch.setattr(c_lif, "_FLAGS", c_lif._FLAGS[:-1])
    monkeypatch.setattr(c_lif, "_cpu_identity", lambda: "model name : another CPU")
    assert c_lif.library_path() != here  # a home directory shared with another machine


@pytest.fixture
def fresh_cpu_backends(monkeypatch, tmp_path):
    """Nothing loaded yet, an empty kernel cache: what a new process on a new machine sees."""
    monkeypatch.setenv("SPAIC_TRAIN_CACHE", str(tmp_path))
    monkeypatch.setattr(c_lif, "_LIB", None)
    monkeypatch.delitem(dispatch._kernel_mods, "c", raising=False)
    monkeypatch.delitem(dispatch._kernel_mods, "numba", raising=False)


def test_without_a_c_compiler_numba_runs_silently(monkeypatch, fresh_cpu_backends, recwarn):
    monkeypatch.setenv("CC", "no-such-compiler")
    monkeypatch.setattr(c_lif.shutil, "which", lambda name: None)
    with pytest.raises(ImportError, match="no C compiler found"):
        c_lif.library_path()
    assert dispatch._kernels("cpu") is numba_lif
    assert dispatch._kernel_mods["c"] is False  # decided once per process
    assert not [w for w in recwarn if issubclass(w.category, RuntimeWarning)]
    O, _, _ = build_neuron("lif").run_sequence(torch.randn(5, 2, 7, requires_grad=True))
    assert type(O.grad_fn).__name__ == "CPUKernelFunctionBackward"


def test_a_failing_build_falls_back_to_numba_and_leaves_no_file(monkeypatch, fresh_cpu_backends, tmp_path):
    monkeypatch.setattr(c_lif, "_FLAGS", (*c_lif._FLAGS, "-fno-such-option-spaic"))
    with pytest.raises(ImportError, match="building the C LIF kernels failed.*no-such-option-spaic"):
        c_lif._library()
    assert list((tmp_path / "kernels").iterdir()) == []  # the temporary output was removed
    assert dispatch._kernels("cpu") is numba_lif


@needs_cc
def test_a_kernel_that_fails_to_run_warns_and_falls_back_to_numba(monkeypatch, fresh_cpu_backends):
    def broken(*args):
        raise RuntimeError("illegal instruction in the built library")

    monkeypatch.setattr(c_lif, "lif_sequence", broken)
    with pytest.warns(RuntimeWarning, match="c LIF kernels for 'cpu' failed.*illegal instruction.*numba kernels"):
        assert dispatch._kernels("cpu") is numba_lif


@needs_cc
def test_building_notice(monkeypatch, fresh_cpu_backends, caplog):
    with caplog.at_level(logging.INFO, logger="spaic_train"):
        assert dispatch._kernels("cpu") is c_lif
        assert dispatch._kernels("cpu") is c_lif
    notices = [r.getMessage() for r in caplog.records if "building the C LIF kernels" in r.getMessage()]
    assert len(notices) == 1 and "once per machine" in notices[0]


def _team_workload() -> list[torch.Tensor]:
    """Spikes, states and gradients of the plain LIF, the fused batch norm + LIF and the max-pool gradient kernels
    (3 parts each: more than this machine's cores)."""
    from torch import nn

    from spaic_train.neurons.kernels import dispatch

    g = torch.Generator().manual_seed(0)
    I = (torch.randn(12, 4, 3000, generator=g) * 0.8 + 0.3).requires_grad_()
    O, state, _ = build_neuron("lif", tau=3.0).run_sequence(I)
    assert type(O.grad_fn).__name__ == "CPUKernelFunctionBackward"
    (O * torch.linspace(-1, 1, 3000)).sum().backward()
    x = (torch.randn(4, 3, 8, 32, 32, generator=g) * 2 + 0.5).requires_grad_()
    bn = nn.BatchNorm2d(8).train()
    Ob, state_b, _ = build_neuron("lif", tau=2.0).run_sequence_normed(x, bn, {"V": torch.zeros(3, 8, 32, 32)})
    assert "BNLIFFunctionBackward" in {type(f).__name__ for f, _ in Ob.grad_fn.next_functions} | {
        type(Ob.grad_fn).__name__}
    (Ob * torch.randn(Ob.shape, generator=g)).sum().backward()
    spikes = torch.rand(6, 19, 16, 16, generator=g) < 0.3
    gy = torch.randn(6, 19, 8, 8, generator=g)
    pooled = [dispatch.max_pool2d_backward(s, gy, (2, 2), (2, 2), (0, 0))
              for s in (spikes, spikes.contiguous(memory_format=torch.channels_last))]
    return [O, state["V"], I.grad, Ob, state_b["V"], x.grad, bn.weight.grad, bn.bias.grad, bn.running_var, *pooled]


@needs_cc
def test_openmp_team_and_posix_threads_give_identical_results():
    """The kernels' parts run on torch's own OpenMP team where it is found (no threads of ours competing with its
    spin-waiting ones) or on POSIX threads: bitwise the same results either way, from the main thread or another."""
    import threading

    old = torch.get_num_threads()
    results = {}
    try:
        torch.set_num_threads(3)
        if sys.platform.startswith("linux") and "parallel backend: OpenMP" in torch.__config__.parallel_info():
            assert c_lif.torch_openmp_entry() is not None  # torch's libgomp is found, so the team is used
        for team in (True, False):
            c_lif.use_openmp_team(team)
            results[team] = _team_workload()
        c_lif.use_openmp_team(True)
        worker = threading.Thread(target=lambda: results.__setitem__("thread", _team_workload()))
        worker.start()
        worker.join()
    finally:
        c_lif.use_openmp_team(True)
        torch.set_num_threads(old)
    for other in (results[False], results["thread"]):
        for a, b in zip(results[True], other):
            assert torch.equal(a, b)
