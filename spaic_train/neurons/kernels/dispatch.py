"""The one dispatch point of the LIF-family sequence kernels: which backend integrates a call.

:func:`lif_sequence` (hence :meth:`~spaic_train.neurons.lif.LIFFamily.run_sequence`) hands the calls that
:func:`kernel_supported` accepts (plain LIF / IF: no adaptation, float ``beta``, built-in surrogate,
float32, not traced by ``torch.compile``) to a per-neuron time loop compiled for the device.  On CPU that is
the C kernels of :mod:`.c_lif` (built with the system C compiler once per machine, a few MB in the
process) or, where no C compiler works, the numba kernels of :mod:`.numba_lif` (same code shape, ~120 MB of
runtime); on CUDA the Triton kernels of :mod:`.triton_lif`.  All follow the same equations and backward.
Everything else (``plif``, ``alif``, float64, custom surrogates) uses the torch kernel
:class:`~.torch_lif.LIFSequenceFunction`.  Compiled backends are imported on first use only.  Switch them off
with the environment variables ``SPAIC_TRAIN_C_KERNELS=0`` / ``SPAIC_TRAIN_NUMBA=0`` / ``SPAIC_TRAIN_TRITON=0``
(read at import) or by setting :data:`USE_C` / :data:`USE_NUMBA` / :data:`USE_TRITON` to ``False``.

:func:`bn_lif_sequence` is the same point for a batch norm followed by a LIF / IF neuron: a CPU call that
qualifies runs batch norm and the neuron in one compiled pass (the normalised current is never stored); any
other returns ``None`` and the caller normalises, then integrates.  ``SPAIC_TRAIN_FUSE_BN=0`` (or
:data:`FUSE_BN` ``= False``) turns it off.
"""

from __future__ import annotations

import logging
import math
import os
import warnings
from typing import Any, Optional, Protocol, Union

import torch

from ...surrogate import KERNEL_SURROGATE_IDS, Surrogate, get_surrogate
from . import bn_lif
from .torch_lif import RESET_ALIASES, Beta, LIFConfig, LIFSequenceFunction

__all__ = ["FUSE_BN", "USE_C", "USE_NUMBA", "USE_TRITON", "BatchNormLike", "bn_lif_sequence", "kernel_supported",
           "lif_sequence", "load_compiled_kernels", "max_pool2d_backward"]


def _env_flag(name: str) -> bool:
    return os.environ.get(name, "1").strip().lower() not in ("0", "false", "no", "off")


#: use the C kernels for supported CPU calls (see the module docstring)
USE_C = _env_flag("SPAIC_TRAIN_C_KERNELS")
#: use the numba kernels for supported CPU calls where the C kernels are off or cannot be built
USE_NUMBA = _env_flag("SPAIC_TRAIN_NUMBA")
#: use the Triton kernels for supported CUDA calls (see the module docstring)
USE_TRITON = _env_flag("SPAIC_TRAIN_TRITON")
#: fuse a batch norm into the compiled LIF kernels (:func:`bn_lif_sequence`)
FUSE_BN = _env_flag("SPAIC_TRAIN_FUSE_BN")

# kernel modules by backend name once loaded; False when missing or failing on this machine
_kernel_mods: dict[str, Any] = {}

log = logging.getLogger(__name__)


def _backends(device_type: str) -> list[str]:
    """The compiled backends to try for ``device_type``, in order of preference, as switched on now."""
    if device_type == "cuda":
        return ["triton"] if USE_TRITON else []
    if device_type == "cpu":
        return [name for name, on in (("c", USE_C), ("numba", USE_NUMBA)) if on]
    return []


def _import_backend(name: str):
    # imported here, on first use: the compilers are optional and heavy (numba: ~1 s, ~120 MB; the C kernels:
    # a compiler run the first time on a machine) and only one backend per device is ever needed in a process
    if name == "triton":
        from . import triton_lif as mod
    elif name == "numba":
        from . import numba_lif as mod
    else:
        from . import c_lif as mod
    return mod


def _backend(name: str, device_type: str, fallback: str):
    """The kernel module of backend ``name``, or ``None`` where it is missing or broken on this machine.

    On first use the module is imported and run once on a tiny sequence (forward and backward), so a
    compiler that is missing (``ImportError``, silently) or broken on this machine (a ``RuntimeWarning``
    naming the error) leaves the next backend in charge instead of failing a training step.  The first
    time on a machine numba compiles its kernels (~10 s): one log line says so.
    """
    mod = _kernel_mods.get(name)
    if mod is None:
        try:
            mod = _import_backend(name)
            if name == "numba" and not mod.kernels_cached():
                log.info(f"spaic_train: compiling the numba LIF kernels for this CPU (once per machine, ~10 s; "
                         f"cached in {mod.cache_dir()}) ...")
            # the first call may come from inside torch.inference_mode() (Lightning's predict), where no
            # tensor can require grad: the smoke run leaves it
            with torch.inference_mode(False), torch.enable_grad():
                I = torch.zeros(2, 1, 4, device=device_type, requires_grad=True)
                cfg = LIFConfig(1.0, 0.0, True, False, get_surrogate("atan"), 0.0, 0.0, True)
                O, VT, _, Vseq = mod.lif_sequence(I, torch.zeros(1, 4, device=device_type), 0.5, cfg)
                (O.sum() + VT.sum() + Vseq.sum()).backward()
        except ImportError:
            mod = False
        except Exception as err:  # a compiler that fails on this machine
            warnings.warn(f"spaic_train: the {name} LIF kernels for {device_type!r} failed to run "
                          f"({type(err).__name__}: {err}); using {fallback} instead", RuntimeWarning, stacklevel=4)
            mod = False
        _kernel_mods[name] = mod
    return mod or None


def _kernels(device_type: str):
    """The compiled-kernel module for ``'cpu'`` (C, else numba) or ``'cuda'`` (Triton), or ``None``."""
    names = _backends(device_type)
    for i, name in enumerate(names):
        fallback = f"the {names[i + 1]} kernels" if i + 1 < len(names) else "the torch fused kernel"
        mod = _backend(name, device_type, fallback)
        if mod is not None:
            return mod
    return None


def _c_kernels_in_charge() -> bool:
    """Whether the C kernels are the CPU backend :func:`_kernels` picks."""
    mod = _kernels("cpu")
    return mod is not None and mod is _kernel_mods.get("c")


def _bn_kernels():
    """The batch norm + LIF passes of the CPU backend in charge (:func:`_kernels`), or ``None`` without one."""
    mod = _kernels("cpu")
    if mod is None:
        return None
    if mod is _kernel_mods.get("c"):
        from . import c_lif

        return c_lif.BN_KERNELS
    from . import numba_bn_lif  # numba is imported on first use only (the module docstring)

    return numba_bn_lif.KERNELS


def max_pool2d_backward(saved: torch.Tensor, gy: torch.Tensor, kernel_size, stride, padding) -> torch.Tensor:
    """Input gradient of ``F.max_pool2d(x, kernel_size, stride, padding)`` (dilation 1, floor mode) from the input
    ``saved``: float32 ``x`` itself, or 0/1 spikes as ``torch.bool``.  The C kernel finds each window's maximum and
    writes the gradient in one pass; otherwise torch's own max-pool kernels recompute the indices (same values,
    same gradient either way)."""
    if (saved.device.type == "cpu" and saved.dtype in (torch.bool, torch.float32) and gy.dtype == torch.float32
            and gy.dim() == 4 and _c_kernels_in_charge()):
        from . import c_lif

        return c_lif.max_pool2d_backward(saved, gy, list(kernel_size), list(stride), list(padding))
    x = saved.to(gy.dtype)
    _, idx = torch.ops.aten.max_pool2d_with_indices(x, kernel_size, stride, padding, [1, 1], False)
    return torch.ops.aten.max_pool2d_with_indices_backward(gy, x, kernel_size, stride, padding, [1, 1], False, idx)


def load_compiled_kernels(device: Union[str, torch.device] = "cpu") -> bool:
    """Load the compiled LIF kernels for ``device`` now rather than in the first training step.

    On CPU this loads the C kernels (building them the first time on a machine: about a second; a few MB
    of resident memory) or, without a working C compiler, numba's (about a second and ~120 MB, once per
    process).  Returns ``False`` when no compiled kernels are available there (the torch fused kernel is used
    instead).
    """
    return _kernels(torch.device(device).type) is not None


def kernel_supported(I: torch.Tensor, V0: torch.Tensor, beta: Beta, cfg: LIFConfig, a0=None) -> bool:
    """Whether the compiled kernels handle this call (device not checked): no adaptation, a Python
    number ``beta``, float32 ``I`` and ``V0`` on one device, a built-in surrogate (exact class), and
    not inside ``torch.compile`` tracing.  Hard or soft reset, any ``v_th`` / ``v_reset``,
    ``detach_reset`` and ``return_v`` are all supported."""
    return (a0 is None and isinstance(beta, (int, float)) and not isinstance(beta, bool)
            and I.dtype == torch.float32 and V0.dtype == torch.float32 and V0.device == I.device
            and type(cfg.sg) in KERNEL_SURROGATE_IDS and not torch.compiler.is_compiling())



def _memory_order(x: torch.Tensor) -> Optional[tuple[int, ...]]:
    """For a dense, non-contiguous ``x`` whose first (time) dim is outermost in memory: the dim order
    that makes it contiguous (``x.permute(order).is_contiguous()``); ``None`` otherwise."""
    if x.dim() < 3 or x.is_contiguous():
        return None
    order = (0, *sorted(range(1, x.dim()), key=lambda d: (-x.stride(d), d)))
    return order if x.permute(order).is_contiguous() else None


def lif_sequence(
    I: torch.Tensor,
    V0: Optional[torch.Tensor] = None,
    beta: Beta = 1.0,
    v_th: float = 1.0,
    v_reset: float = 0.0,
    reset: str = "hard",
    surrogate: Optional[Surrogate] = None,
    detach_reset: bool = False,
    return_v: bool = False,
    a0: Optional[torch.Tensor] = None,
    rho: float = 0.0,
    beta_adapt: float = 0.0,
):
    """Functional fused LIF integration (see the module docstring).

    Args:
        I: input ``[T, B, *shape]``.
        V0: initial membrane ``[B, *shape]`` (``None`` → zeros).
        beta: decay ``exp(-dt/tau)`` (float or tensor; a tensor that requires grad gets a gradient).
        v_th, v_reset: threshold and reset potential.
        reset: ``'hard'`` or ``'soft'``.
        surrogate: :class:`~spaic_train.surrogate.Surrogate` (``None`` → ATan(2)).
        detach_reset: detach the spike in the reset term.
        return_v: also return ``V_seq``.
        a0: ALIF adaptation state ``[B, *shape]``; ``None`` disables adaptation.
        rho, beta_adapt: ALIF decay ``exp(-dt/tau_adapt)`` and strength.

    Returns:
        ``(O, V_T, a_T, V_seq)`` — ``a_T`` is ``None`` without adaptation, ``V_seq`` without ``return_v``.

    Calls that :func:`kernel_supported` accepts run the compiled kernels (module docstring); the results
    match the torch path.  bf16 / fp16 inputs (mixed precision) are integrated in float32 and give float32
    outputs (the gradient reaches ``I`` in its own dtype).
    """
    if surrogate is None or not isinstance(surrogate, Surrogate):
        surrogate = get_surrogate(surrogate)
    reset = RESET_ALIASES[reset]
    if I.dtype in (torch.bfloat16, torch.float16):
        # half-precision currents (bf16 / fp16 autocast): integrate in float32 — a bf16 membrane keeps 8 mantissa
        # bits, too few to accumulate T steps — which also keeps the compiled float32 kernels; outputs are float32
        I = I.float()
        V0 = None if V0 is None else V0.float()
        a0 = None if a0 is None else a0.float()
    if V0 is None:
        V0 = I.new_zeros(I.shape[1:])
    V0 = V0.expand(I.shape[1:]) if V0.shape != I.shape[1:] else V0
    if a0 is not None and a0.shape != I.shape[1:]:
        a0 = a0.expand(I.shape[1:])
    perm = _memory_order(I) if not (isinstance(beta, torch.Tensor) and beta.dim() > 0) else None
    if perm is not None:
        # dense but permuted (e.g. a channels_last conv output): integrate in memory order, no copy
        inv = tuple(sorted(range(len(perm)), key=perm.__getitem__))
        state_perm = [p - 1 for p in perm[1:]]
        state_inv = [p - 1 for p in inv[1:]]
        O, VT, aT, Vseq = lif_sequence(I.permute(perm), V0.permute(state_perm), beta, v_th, v_reset, reset, surrogate,
                                       detach_reset, return_v, None if a0 is None else a0.permute(state_perm), rho,
                                       beta_adapt)
        return (O.permute(inv), VT.permute(state_inv), None if aT is None else aT.permute(state_inv),
                None if Vseq is None else Vseq.permute(inv))
    I = I.contiguous()
    cfg = LIFConfig(float(v_th), float(v_reset), reset == "hard", bool(detach_reset), surrogate, float(rho),
               float(beta_adapt), bool(return_v))
    if kernel_supported(I, V0, beta, cfg, a0):
        kernels = _kernels(I.device.type)
        if kernels is not None:
            return kernels.lif_sequence(I, V0, beta, cfg)
    return LIFSequenceFunction.apply(I, V0.contiguous(), None if a0 is None else a0.contiguous(), beta, cfg)


class BatchNormLike(Protocol):
    """What :func:`bn_lif_sequence` reads of a batch norm (``torch.nn.BatchNorm1d/2d/3d`` satisfy it)."""

    weight: Optional[torch.Tensor]
    bias: Optional[torch.Tensor]
    running_mean: Optional[torch.Tensor]
    running_var: Optional[torch.Tensor]
    num_batches_tracked: Optional[torch.Tensor]
    eps: float
    momentum: Optional[float]
    training: bool
    track_running_stats: bool


def _fusable_norm(norm: BatchNormLike, count: int) -> bool:
    """A plain ``torch.nn.BatchNorm1d/2d/3d`` (not a subclass such as ``SyncBatchNorm``, whose statistics span
    processes) with float32 parameters and statistics, no hooks on the module (they would not see the skipped call),
    and more than one value per channel in training (else the unfused batch norm raises its own error)."""
    if type(norm) not in (torch.nn.BatchNorm1d, torch.nn.BatchNorm2d, torch.nn.BatchNorm3d):
        return False
    tensors = [t for t in (norm.weight, norm.bias, norm.running_mean, norm.running_var) if t is not None]
    if any(t.dtype != torch.float32 or t.device.type != "cpu" for t in tensors):
        return False
    if isinstance(norm, torch.nn.Module) and (norm._forward_hooks or norm._forward_pre_hooks):
        return False
    return count > 1 or not (norm.training or norm.running_mean is None)


def bn_lif_sequence(
    x: torch.Tensor,
    norm: BatchNormLike,
    V0: torch.Tensor,
    beta: Beta,
    v_th: float = 1.0,
    v_reset: float = 0.0,
    reset: str = "hard",
    surrogate: Optional[Surrogate] = None,
    detach_reset: bool = False,
    return_v: bool = False,
    drive_scale: float = 1.0,
):
    """Batch norm over dim 2 of ``x [T, B, C, ...]`` (statistics over all ``T·B·...`` values of a channel, as the
    ``batchnorm`` synapse), times ``drive_scale``, into a plain LIF / IF neuron, fused (module docstring).

    ``norm``'s running statistics (and ``num_batches_tracked``) are updated as its own call would.  Returns
    ``(O, V_T, V_seq or None)``, or ``None`` when the call does not qualify (the caller then runs
    ``norm`` and :func:`lif_sequence`): a float32 CPU ``x`` (contiguous or channels-last), a call that
    :func:`kernel_supported` accepts, and a float32 batch norm without hooks.
    """
    if not (FUSE_BN and x.device.type == "cpu" and x.dim() >= 3 and x.numel() > 0):
        return None
    if surrogate is None or not isinstance(surrogate, Surrogate):
        surrogate = get_surrogate(surrogate)
    reset = RESET_ALIASES[reset]
    cfg = LIFConfig(float(v_th), float(v_reset), reset == "hard", bool(detach_reset), surrogate, 0.0, 0.0,
                    bool(return_v))
    perm = _memory_order(x) if not x.is_contiguous() else tuple(range(x.dim()))
    C = x.shape[2]
    if (perm is None or not kernel_supported(x, V0, beta, cfg) or not isinstance(drive_scale, (int, float))
            or not _fusable_norm(norm, x.numel() // C)):
        return None
    kernels = _bn_kernels()
    if kernels is None:
        return None
    factor = 0.0
    if norm.training and norm.track_running_stats and norm.num_batches_tracked is not None:
        norm.num_batches_tracked.add_(1)  # as torch's _BatchNorm.forward, before normalising
        factor = 1.0 / float(norm.num_batches_tracked) if norm.momentum is None else float(norm.momentum)
    elif norm.momentum is not None:
        factor = float(norm.momentum)
    pos = perm.index(2)
    # training, or no running statistics: this call's statistics (which then update the running ones)
    spec = bn_lif.NormSpec(C, math.prod(x.shape[d] for d in perm[pos + 1:]), float(norm.eps),
                           bool(norm.training or norm.running_mean is None), norm.running_mean,
                           norm.running_var, factor, float(drive_scale))
    V0 = V0.expand(x.shape[1:]) if V0.shape != x.shape[1:] else V0
    inv = tuple(sorted(range(len(perm)), key=perm.__getitem__))
    O, VT, Vseq = bn_lif.bn_lif_sequence(x.permute(perm), V0.permute([p - 1 for p in perm[1:]]), norm.weight,
                                         norm.bias, spec, float(beta), cfg, kernels)
    return (O.permute(inv), VT.permute([p - 1 for p in inv[1:]]),
            None if Vseq is None else Vseq.permute(inv))
