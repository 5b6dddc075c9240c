"""C CPU kernels for the plain LIF / IF sequence (``c_lif.c``), built once per machine with the system C
compiler and called through :mod:`ctypes`.

Same equations, chunking and backward as :mod:`.numba_lif` (see :mod:`.cpu_common`); the difference is the
fixed cost: the built library adds a few MB to the process, where numba's runtime (LLVM and its
typing system) adds ~120 MB of resident memory and ~1 s of import.  For a small network that is more than its
whole training, so :mod:`.dispatch` prefers these kernels on CPU and uses numba only where no C compiler
works.

Build: ``$CC`` (else the compiler Python was built with, else ``cc``) with ``-O3 -march=native -pthread``,
no ``-ffast-math`` (the membrane must stay one ``fmaf`` per step, bitwise equal to torch's), into
``$SPAIC_TRAIN_CACHE/kernels`` (default ``~/.cache/spaic_train/kernels``) under a name that hashes the source,
the compiler's version, the flags and this CPU's model and feature flags — a changed source or another
machine sharing the home directory builds its own library, never loads a stale one.  The library is
written to a temporary name and renamed, so processes building at the same time (DDP workers) cannot read
a half-written file.  Any failure (no compiler, a compiler error, a library that does not load) raises
:class:`ImportError`, and :mod:`.dispatch` goes on to numba.
"""

from __future__ import annotations

import ctypes
import hashlib
import logging
import os
import platform
import shutil
import subprocess
import sysconfig
import tempfile
from pathlib import Path
from types import SimpleNamespace
from typing import Optional

import torch

from ...io import default_cache_dir
from ...surrogate import KERNEL_SURROGATE_IDS
from . import spike_bits
from .buffers import OUTPUT_BUFFERS
from .cpu_common import CPUKernelFunction, chunk_layout, incoming_spike_grad, prepare_forward

__all__ = ["lif_forward", "lif_backward", "lif_sequence", "kernels_cached", "cache_dir", "library_path",
           "torch_openmp_entry", "use_openmp_team"]

_SOURCE = Path(__file__).with_name("c_lif.c")
_FLAGS = ("-O3", "-march=native", "-fPIC", "-shared", "-pthread", "-std=c99", "-fno-fast-math")
_BUILD_TIMEOUT_S = 120

log = logging.getLogger(__name__)

_f32, _i32, _i64 = ctypes.c_float, ctypes.c_int, ctypes.c_int64
_ptr = ctypes.c_void_p


def _compiler() -> list[str]:
    cc = os.environ.get("CC") or (sysconfig.get_config_var("CC") or "").split(" ")[0] or "cc"
    if shutil.which(cc) is None and shutil.which("cc") is not None:
        cc = "cc"
    if shutil.which(cc) is None:
        raise ImportError("spaic_train: no C compiler found (set $CC) for the C LIF kernels")
    return [cc]


def _cpu_identity() -> str:
    """The CPU's model name and feature flags (``-march=native`` code is only valid on the same features)."""
    fields = []
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith(("model name", "flags", "Features", "CPU part")):
                    fields.append(line.strip())
                    if len(fields) >= 2:
                        break
    except OSError:
        pass
    return "\n".join(fields) or platform.processor() or platform.machine()


def cache_dir() -> str:
    """Where the built libraries are kept."""
    return str(default_cache_dir() / "kernels")


def library_path() -> Path:
    """The library for this source, compiler, flags and CPU (it may not exist yet)."""
    cc = _compiler()
    try:
        version = subprocess.run([*cc, "--version"], capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.SubprocessError) as err:
        raise ImportError(f"spaic_train: the C compiler {cc[0]!r} does not run ({err})") from err
    key = hashlib.sha256("\0".join([_SOURCE.read_text(), version, " ".join(_FLAGS), _cpu_identity(),
                                    platform.machine()]).encode()).hexdigest()[:16]
    return Path(cache_dir()) / f"c_lif-{key}.so"


def kernels_cached() -> bool:
    """Whether the library for this machine is built already (otherwise the first use builds it: ~1 s)."""
    try:
        return library_path().exists()
    except ImportError:
        return True  # nothing will be built: no "building" notice


def _build(dest: Path) -> None:
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=dest.stem + ".", suffix=".tmp", dir=dest.parent)
    os.close(fd)
    try:
        out = subprocess.run([*_compiler(), *_FLAGS, "-o", tmp, str(_SOURCE), "-lm"], capture_output=True,
                             text=True, timeout=_BUILD_TIMEOUT_S)
        if out.returncode != 0:
            raise ImportError(f"spaic_train: building the C LIF kernels failed: {out.stderr.strip()[:500]}")
        os.replace(tmp, dest)
    except (OSError, subprocess.SubprocessError) as err:
        raise ImportError(f"spaic_train: building the C LIF kernels failed: {err}") from err
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _load() -> ctypes.CDLL:
    path = library_path()
    if not path.exists():
        log.info(f"spaic_train: building the C LIF kernels for this CPU (once per machine, ~1 s) into {path} ...")
        _build(path)
    try:
        lib = ctypes.CDLL(str(path))
    except OSError as err:
        raise ImportError(f"spaic_train: the C LIF kernels in {path} do not load ({err})") from err
    lib.lif_forward.argtypes = [_ptr, _ptr, _ptr, _ptr, _ptr, _ptr, _i32, _f32, _f32, _f32, _i32, _i64, _i64, _i64,
                                _i64]
    lib.lif_backward.argtypes = [_ptr, _ptr, _ptr, _i32, _f32, _ptr, _i32, _ptr, _i32, _ptr, _ptr, _f32, _f32, _f32,
                                 _f32, _i32, _i32, _i32, _i64, _i64, _i64, _i64]
    lib.bn_stats.argtypes = [_ptr, _i64, _i64, _ptr, _i64, _i64, _i64, _i64]
    lib.bn_lif_forward.argtypes = [_ptr, _ptr, _ptr, _i64, _i64, _ptr, _ptr, _ptr, _ptr, _i32, _f32, _f32, _f32, _i32,
                                   _i64, _i64, _i64, _i64]
    lib.bn_lif_backward.argtypes = [_ptr, _ptr, _ptr, _i64, _i64, _ptr, _i32, _f32, _ptr, _i32, _ptr, _i32, _ptr,
                                    _ptr, _ptr, _i32, _f32, _f32, _f32, _f32, _i32, _i32, _i32, _i64, _i64, _i64, _i64]
    lib.bn_input_grad.argtypes = [_ptr, _ptr, _ptr, _i64, _i64, _i64, _i64, _i64, _i64]
    lib.max_pool_backward.argtypes = [_ptr, _ptr, _ptr, _ptr, _ptr, _ptr, _ptr] + [_i64] * 13
    lib.use_openmp_team.argtypes = [_ptr]
    for fn in (lib.lif_forward, lib.lif_backward, lib.bn_stats, lib.bn_lif_forward, lib.bn_lif_backward,
               lib.bn_input_grad, lib.max_pool_backward, lib.use_openmp_team):
        fn.restype = _i32
    lib.use_openmp_team(torch_openmp_entry())
    return lib


def torch_openmp_entry() -> Optional[int]:
    """Address of ``GOMP_parallel`` in the OpenMP runtime torch's CPU ops run on, or ``None`` (then the kernels start
    POSIX threads per call).

    Why: after each parallel torch op, the threads of torch's OpenMP team spin-wait for more work for milliseconds;
    threads of our own would share the cores with them.  Running our parts on that same team avoids it (see the
    ``Threads`` note in ``c_lif.c``).  Found only where torch's parallel backend is OpenMP and its runtime is loaded
    (Linux: read from ``/proc/self/maps``, the one under torch's own directory preferred); opened with
    ``RTLD_NOLOAD``, so nothing new is ever loaded.
    """
    if "parallel backend: OpenMP" not in torch.__config__.parallel_info():
        return None
    try:
        with open("/proc/self/maps") as f:
            loaded = {line.split()[-1] for line in f if line.rstrip().endswith(_OPENMP_RUNTIMES)}
    except OSError:
        return None
    torch_dir = str(Path(torch.__file__).resolve().parent)
    ours = sorted(path for path in loaded if path.startswith(torch_dir))
    candidates = ours or sorted(loaded)
    if len(candidates) != 1:
        return None  # none, or several runtimes and no telling which one torch uses
    try:
        runtime = ctypes.CDLL(candidates[0], mode=os.RTLD_NOLOAD | os.RTLD_LOCAL)
        return ctypes.cast(runtime.GOMP_parallel, ctypes.c_void_p).value
    except (OSError, AttributeError):
        return None


#: file names of the OpenMP runtimes that export ``GOMP_parallel`` (GNU, LLVM, Intel)
_OPENMP_RUNTIMES = ("libgomp.so.1", "libomp.so", "libiomp5.so")


_LIB: ctypes.CDLL | None = None


def _library() -> ctypes.CDLL:
    """The loaded library, built on first use (:class:`ImportError` where that fails)."""
    global _LIB
    if _LIB is None:
        _LIB = _load()
    return _LIB


def use_openmp_team(enabled: bool = True) -> bool:
    """Run the kernels' parts on torch's OpenMP team (the default where it is found) or, with ``enabled=False``,
    on POSIX threads started per call; returns whether the OpenMP team is used now.  Results are identical."""
    entry = torch_openmp_entry() if enabled else None
    _library().use_openmp_team(entry)
    return entry is not None


def _check(status: int) -> None:
    if status != 0:
        raise MemoryError("spaic_train: the C LIF kernel could not allocate its scratch memory")


def _addr(x) -> int | None:
    return None if x is None else x.data_ptr()


def lif_forward(I: torch.Tensor, V0: torch.Tensor, beta: float, v_th: float, v_reset: float, hard: bool,
                return_v: bool = False, bits: Optional[torch.Tensor] = None):
    """Forward kernel on float32 ``I [T, B, ...]`` and ``V0 [B, ...]``.  Returns ``(O, V_T, V_seq or None)``;
    with ``bits`` (``torch.bool``, contiguous, shaped like ``I``) the spikes are written there as bytes too."""
    I, V0, O, VT, Vseq, work = prepare_forward(I, V0, return_v)
    if not work:
        return O, VT, Vseq
    T, N = I.shape[0], V0.numel()
    width, nparts = chunk_layout(T, N, torch.get_num_threads(), scratch=False)
    _check(_library().lif_forward(I.data_ptr(), V0.data_ptr(), O.data_ptr(), _addr(bits), VT.data_ptr(), _addr(Vseq),
                                  bool(return_v), beta, v_th, v_reset, bool(hard), T, N, width, nparts))
    return O, VT, Vseq


def lif_backward(I: torch.Tensor, V0: torch.Tensor, gO, gVT, gVseq, beta: float, v_th: float, v_reset: float,
                 hard: bool, detach: bool, surrogate) -> tuple[torch.Tensor, torch.Tensor]:
    """Backward kernel: ``(dI, dV0)`` from the forward's inputs and the output gradients (each may be ``None``)."""
    T, N = I.shape[0], V0.numel()
    dI = OUTPUT_BUFFERS.empty(I.shape)
    dV0 = torch.empty_like(V0)
    if T == 0 or N == 0:  # nothing was integrated: V_T is V0
        return dI, (gVT.clone() if gVT is not None else dV0.zero_())
    go_mode, go_scalar, go = incoming_spike_grad(gO)
    gVT = None if gVT is None else gVT.contiguous()
    gVseq = None if gVseq is None else gVseq.contiguous()
    width, nparts = chunk_layout(T, N, torch.get_num_threads(), scratch=True)
    _check(_library().lif_backward(I.data_ptr(), V0.data_ptr(), _addr(go), go_mode, go_scalar, _addr(gVT),
                             gVT is not None, _addr(gVseq), gVseq is not None, dI.data_ptr(), dV0.data_ptr(), beta,
                             v_th, v_reset, float(surrogate.alpha), KERNEL_SURROGATE_IDS[type(surrogate)],
                             bool(hard), bool(detach), T, N, width, nparts))
    return dI, dV0


# ---------------------------------------------------------------------------- batch norm + LIF (:mod:`.bn_lif`)
def _bn_channel_sums(X: torch.Tensor, inner: int, C: int) -> torch.Tensor:
    T, N = X.shape
    width, nparts = chunk_layout(T, N, torch.get_num_threads(), scratch=False)
    acc = torch.zeros(nparts, 2, C, dtype=torch.float64)
    _check(_library().bn_stats(X.data_ptr(), inner, C, acc.data_ptr(), T, N, width, nparts))
    return acc.sum(0)


def _bn_forward(X, V0, affine, inner, C, O, bits, VT, Vseq, beta, v_th, v_reset, hard) -> None:
    T, N = X.shape
    width, nparts = chunk_layout(T, N, torch.get_num_threads(), scratch=False)
    _check(_library().bn_lif_forward(X.data_ptr(), V0.data_ptr(), affine.data_ptr(), inner, C, O.data_ptr(),
                                     _addr(bits), VT.data_ptr(), _addr(Vseq), Vseq is not None, beta, v_th, v_reset,
                                     bool(hard), T, N, width, nparts))


def _bn_backward(X, V0, per_channel, inner, C, gO, gVT, gVseq, dX, dV0, batch_stats, beta, cfg) -> torch.Tensor:
    T, N = X.shape
    go_mode, go_scalar, go = incoming_spike_grad(gO)
    gVT = None if gVT is None else gVT.contiguous()
    gVseq = None if gVseq is None else gVseq.contiguous()
    width, nparts = chunk_layout(T, N, torch.get_num_threads(), scratch=True)
    acc = torch.zeros(nparts, 2, C, dtype=torch.float64)
    _check(_library().bn_lif_backward(
        X.data_ptr(), V0.data_ptr(), per_channel.data_ptr(), inner, C, _addr(go), go_mode, go_scalar, _addr(gVT),
        gVT is not None, _addr(gVseq), gVseq is not None, dX.data_ptr(), dV0.data_ptr(), acc.data_ptr(),
        bool(batch_stats), beta, cfg.v_th, cfg.v_reset, float(cfg.sg.alpha), KERNEL_SURROGATE_IDS[type(cfg.sg)],
        bool(cfg.hard), bool(cfg.detach), T, N, width, nparts))
    return acc.sum(0)


def _bn_input_grad(X, dX, rows, inner, C) -> None:
    T, N = X.shape
    width, nparts = chunk_layout(T, N, torch.get_num_threads(), scratch=False)
    _check(_library().bn_input_grad(X.data_ptr(), dX.data_ptr(), rows.data_ptr(), inner, C, T, N, width, nparts))


def max_pool2d_backward(saved: torch.Tensor, gy: torch.Tensor, kernel_size, stride, padding) -> torch.Tensor:
    """Input gradient of ``F.max_pool2d`` (dilation 1, floor mode) from its input ``saved`` ``[N, C, H, W]`` (any
    strides): float32 values, or 0/1 spikes as ``torch.bool``.  Equal to autograd's (same tie rule), without argmax
    indices; the gradient has the input's memory format."""
    gx = torch.empty_like(saved, dtype=gy.dtype)
    N, C, H, W = saved.shape
    OH, OW = gy.shape[2:]
    strides = [torch.tensor(t.stride(), dtype=torch.int64) for t in (saved, gy, gx)]
    bits = saved.data_ptr() if saved.dtype == torch.bool else None
    values = saved.data_ptr() if saved.dtype == torch.float32 else None
    nparts = max(1, min(torch.get_num_threads(), N * C))
    _check(_library().max_pool_backward(bits, values, strides[0].data_ptr(), gy.data_ptr(), strides[1].data_ptr(),
                                        gx.data_ptr(), strides[2].data_ptr(), N, C, H, W, OH, OW, *kernel_size,
                                        *stride, *padding, nparts))
    return gx


#: this module's :class:`~.bn_lif.BNLIFKernels`
BN_KERNELS = SimpleNamespace(writes_bits=True, channel_sums=_bn_channel_sums, forward=_bn_forward,
                             backward=_bn_backward, input_grad=_bn_input_grad)

#: this module's :class:`~.cpu_common.LIFKernelPair`
KERNEL_PAIR = SimpleNamespace(lif_forward=lif_forward, lif_backward=lif_backward)


def lif_sequence(I: torch.Tensor, V0: torch.Tensor, beta: float, cfg):
    """Fused LIF/IF integration with the C kernels (caller checked ``kernel_supported``).  While autograd
    records and spike compaction is on, the spikes' bytes are written in the same pass and remembered
    (:mod:`.spike_bits`) for the weight ops that will save them."""
    I = I.contiguous()
    bits = OUTPUT_BUFFERS.empty(I.shape, torch.bool) if spike_bits.wanted() and I.numel() else None
    O, VT, aT, Vseq = CPUKernelFunction.apply(I, V0.contiguous(), float(beta), cfg, KERNEL_PAIR, bits)
    if bits is not None:
        spike_bits.remember(O, bits)
    return O, VT, aT, Vseq
