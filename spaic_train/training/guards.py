"""Numerical guards used by ``fit``: non-finite losses/gradients and silent output layers.

* :class:`NonFiniteGuard` — checks the loss before ``backward`` and the gradients before every optimizer step.
  ``on_nan='raise'`` (default) stops training with a :class:`NonFiniteError` naming the step, the loss value,
  the parameters whose weights or gradients are non-finite and the first layer whose activations went
  non-finite; ``'skip'`` drops the update (all gradients set to ``None`` so the optimizer leaves every weight
  unchanged), warns, and counts the skipped steps per epoch in ``history.history['nan_skipped']``;
  ``'ignore'`` turns the guard off.
* :class:`DeadNetworkMonitor` — warns (``UserWarning``) when every neuron of a spike-decoded output stayed
  silent for a whole training epoch (no gradient can flow through a surrogate that never sees a spike near
  threshold, and the accuracy is chance).
"""

from __future__ import annotations

import warnings
from typing import Any, Optional

import lightning.pytorch as pl
import torch
from torch import Tensor, nn

from .data import unpack_batch
from .protocols import SpikingNetwork, network_of

__all__ = ["NAN_POLICIES", "DeadNetworkMonitor", "NonFiniteError", "NonFiniteGuard", "find_nonfinite"]

NAN_POLICIES = ("raise", "skip", "ignore")


class NonFiniteError(FloatingPointError):
    """Training produced a NaN/Inf loss or gradient (see :class:`NonFiniteGuard`)."""


def _finite(t: Tensor) -> bool:
    return bool(torch.isfinite(t).all())


def _nonfinite_params(module: nn.Module, grads: bool = False) -> list[str]:
    out = []
    for name, p in module.named_parameters():
        t = p.grad if grads else p
        if t is not None and torch.is_floating_point(t) and not _finite(t.detach()):
            out.append(name)
    return out


def find_nonfinite(module: nn.Module, x: Any) -> Optional[str]:
    """Re-run ``module(x)`` (no grad) and return the name of the first submodule (or network group variable)
    whose output is non-finite, ``None`` if every activation is finite."""
    found: list[str] = []
    names = {id(m): n for n, m in module.named_modules()}

    def hook(mod: nn.Module, inp: Any, out: Any) -> None:
        if found:
            return
        outs = out if isinstance(out, (tuple, list)) else (out,)
        for o in outs:
            if isinstance(o, Tensor) and torch.is_floating_point(o) and not _finite(o):
                found.append(f"{names.get(id(mod), type(mod).__name__) or 'model'} ({type(mod).__name__})")
                return

    handles = [m.register_forward_hook(hook) for m in module.modules()]
    recorded: dict = {}
    try:
        with torch.no_grad():
            net = network_of(module)
            if isinstance(net, SpikingNetwork):
                with net.record(("O", "V")) as recorded:
                    module(x)
                recorded = dict(recorded)
            else:
                module(x)
    except Exception:  # diagnosis is best effort
        pass
    finally:
        for h in handles:
            h.remove()
    # a group's membrane is more telling than the module that reads it
    for group, vars_ in recorded.items():
        for var, t in vars_.items():
            if torch.is_floating_point(t) and not _finite(t):
                return f"group {group!r} (variable {var})"
    return found[0] if found else None


class NonFiniteGuard(pl.Callback):
    """Stop (or skip) training steps with a non-finite loss or gradient; see the module docstring."""

    def __init__(self, on_nan: str = "raise"):
        super().__init__()
        if on_nan not in NAN_POLICIES:
            raise ValueError(f"on_nan must be one of {NAN_POLICIES}, got {on_nan!r}")
        self.on_nan = on_nan
        self._bad_loss: Optional[float] = None
        self._batch: Any = None
        self._batch_idx = -1
        self._skipped_epoch = 0
        self.skipped_total = 0

    def _where(self, trainer: pl.Trainer) -> str:
        return f"step {trainer.global_step} (epoch {trainer.current_epoch}, batch {self._batch_idx})"

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._skipped_epoch = 0

    def on_train_batch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any,
                             batch_idx: int) -> None:
        self._batch, self._batch_idx, self._bad_loss = batch, batch_idx, None

    def on_before_backward(self, trainer: pl.Trainer, pl_module: pl.LightningModule, loss: Tensor) -> None:
        if self.on_nan == "ignore" or _finite(loss.detach()):
            return
        value = float(loss.detach().float().item())
        if self.on_nan == "skip":
            self._bad_loss = value
            return
        raise NonFiniteError(self._diagnose(trainer, pl_module, f"non-finite loss {value} at {self._where(trainer)}"))

    def on_before_optimizer_step(self, trainer: pl.Trainer, pl_module: pl.LightningModule, optimizer: Any) -> None:
        if self.on_nan == "ignore":
            return
        bad_grads = [] if self._bad_loss is not None else _nonfinite_params(pl_module, grads=True)
        if self._bad_loss is None and not bad_grads:
            return
        if self.on_nan == "raise":
            raise NonFiniteError(self._diagnose(
                trainer, pl_module, f"non-finite gradient at {self._where(trainer)} (loss was finite) in "
                f"{_names(bad_grads)}"))
        for group in optimizer.param_groups:
            for p in group["params"]:
                p.grad = None
        self._skipped_epoch += 1
        self.skipped_total += 1
        what = f"loss {self._bad_loss}" if self._bad_loss is not None else f"gradients of {_names(bad_grads)}"
        warnings.warn(f"on_nan='skip': skipped the optimizer step at {self._where(trainer)}: non-finite {what}",
                      stacklevel=2)
        self._bad_loss = None

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        if self.on_nan == "skip":
            pl_module.log("nan_skipped", float(self._skipped_epoch), on_step=False, on_epoch=True, reduce_fx="max",
                          batch_size=1, sync_dist=True)

    def _diagnose(self, trainer: pl.Trainer, pl_module: pl.LightningModule, head: str) -> str:
        parts = [head]
        bad_w = _nonfinite_params(pl_module)
        if bad_w:
            parts.append(f"non-finite weights in {_names(bad_w)}")
        x = None
        try:
            x, _ = unpack_batch(self._batch)
        except Exception:
            pass
        if isinstance(x, Tensor) and torch.is_floating_point(x) and not _finite(x):
            parts.append(f"the input batch itself holds {int((~torch.isfinite(x)).sum())} NaN/Inf values")
        elif x is not None:
            layer = find_nonfinite(pl_module, x)
            if layer is not None:
                parts.append(f"first non-finite activation in layer {layer}")
        if len(parts) == 1:
            parts.append("weights, input and activations are finite: the loss itself overflowed "
                         "(check the loss inputs, e.g. log of 0, or lower the learning rate)")
        parts.append("use fit(..., on_nan='skip') to skip such steps, or gradient_clip_val= / a lower lr")
        return "; ".join(parts)


def _names(names: list[str], k: int = 5) -> str:
    return ", ".join(names[:k]) + (f" (+{len(names) - k} more)" if len(names) > k else "")


_SPIKE_CODINGS = ("spike_counts", "spike_rate", "sequence")


class DeadNetworkMonitor(pl.Callback):
    """Warn when every output neuron stayed silent during a whole training epoch (spike decoders only).

    Works with every :class:`~.protocols.SpikingNetwork` (every :class:`~spaic_train.Network` and keras
    ``Model``); other modules are not monitored.
    """

    def __init__(self) -> None:
        super().__init__()
        self._handle: Any = None
        self._outputs: list[tuple[int, str]] = []
        self._active: Optional[list[Tensor]] = None
        self.warned: list[str] = []

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        net = network_of(pl_module)
        if not isinstance(net, SpikingNetwork) or not isinstance(net, nn.Module) or not net.decoders:
            return
        decoders = list(net.decoders)
        self._outputs = [(i, d.target.label) for i, d in enumerate(decoders) if d.coding in _SPIKE_CODINGS]
        if not self._outputs:
            return
        n = len(decoders)

        def hook(mod: nn.Module, inp: Any, out: Any) -> None:
            if not mod.training or self._active is None:
                return
            outs = out if (n > 1 and isinstance(out, (tuple, list))) else (out,)
            for j, (i, _) in enumerate(self._outputs):
                o = outs[i] if i < len(outs) else None
                if isinstance(o, Tensor):
                    self._active[j] = self._active[j] | o.detach().ne(0).any()

        self._handle = net.register_forward_hook(hook)

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self._outputs:
            self._active = [torch.zeros((), dtype=torch.bool, device=pl_module.device) for _ in self._outputs]

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not self._outputs or self._active is None:
            return
        for (_, label), active in zip(self._outputs, self._active):
            if not bool(active):
                msg = (f"dead network: every neuron of the output {label} stayed silent (no spike) during "
                       f"epoch {trainer.current_epoch}; the loss cannot improve. Lower the thresholds (v_th), "
                       "scale up the initial weights or the input (max_rate), or use more time_steps")
                self.warned.append(label)
                warnings.warn(msg, UserWarning, stacklevel=2)
        self._active = None

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self._handle is not None:
            self._handle.remove()
            self._handle = None
