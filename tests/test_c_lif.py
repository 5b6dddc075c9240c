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
