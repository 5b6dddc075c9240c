"""bf16 mixed precision on the CPU, as ``precision="bf16-mixed"`` runs it (``torch.autocast('cpu', torch.bfloat16)``
around forward and loss; backward and the optimizer step outside): convolutions and linear layers compute in bf16
(forward and backward), batch norm takes the bf16 current with float32 parameters, LIF layers integrate in float32 on
the compiled kernels, and the float32 weights receive float32 gradients."""

from __future__ import annotations

import collections

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves

from spaic_train.connection import spike_ops
from spaic_train.keras import Model
from spaic_train.keras.layers import Conv2dSyn, Flatten, Full, Input
from spaic_train.neurons.kernels import dispatch, numba_lif
from spaic_train.training import get_loss

WEIGHT_OPS = ("aten.convolution.", "aten.convolution_backward.", "aten.mm.", "aten.addmm.", "aten.bmm.")


class OpDtypes(TorchDispatchMode):
    """Counts every aten op run, keyed by ``(op name, dtypes of its tensor arguments)``."""

    def __init__(self):
        super().__init__()
        self.seen: collections.Counter = collections.Counter()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        dtypes = tuple(a.dtype for a in tree_leaves((args, kwargs)) if isinstance(a, torch.Tensor))
        self.seen[(str(func), dtypes)] += 1
        return func(*args, **kwargs)

    def ops(self, prefix: str) -> list[tuple]:
        return [dtypes for (name, dtypes) in self.seen if name.startswith(prefix)]


def small_conv_net() -> Model:
    torch.manual_seed(0)
    x = Input((3, 8, 8))
    h = Conv2dSyn(8, padding=1, batchnorm=True, name="c1")(x)
    h = Conv2dSyn(8, padding=1, batchnorm=True, pool="max", name="c2")(h)
    out = Full(10, name="out")(Full(32, name="fc")(Flatten()(h)))
    return Model(x, out, time_steps=4)


@pytest.mark.parametrize("compact", [False, True], ids=["plain", "compact-spikes"])
def test_cpu_autocast_runs_weight_ops_in_bf16_and_lif_in_float32(monkeypatch, compact):
    if dispatch._kernels("cpu") is not numba_lif:
        pytest.skip("the numba LIF kernels do not load on this machine")
    monkeypatch.setattr(spike_ops, "COMPACT_SPIKES", compact)   # its bool-saving ops step aside under autocast
    kernel_inputs = []
    compiled = numba_lif.lif_sequence

    def recording(I, *args, **kwargs):
        kernel_inputs.append(I.dtype)
        return compiled(I, *args, **kwargs)

    monkeypatch.setattr(numba_lif, "lif_sequence", recording)
    model = small_conv_net()
    model.train()
    x, y = torch.randn(16, 3, 8, 8), torch.arange(16) % 10
    log = OpDtypes()
    with log:
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out = model(x)
            loss = get_loss("ce_rate")(out, y)
        loss.backward()
    # every convolution and matrix product, forward and backward, ran on bf16 operands
    weight_ops = [d for p in WEIGHT_OPS for d in log.ops(p)]
    assert log.ops("aten.convolution.") and log.ops("aten.convolution_backward.") and log.ops("aten.mm.")
    assert all(set(d) == {torch.bfloat16} for d in weight_ops), weight_ops
    # batch norm: the bf16 current (the connections' float32 bias does not promote it back to float32), float32
    # affine parameters and running statistics
    assert {d[0] for d in log.ops("aten.native_batch_norm.")} == {torch.bfloat16}
    assert all(set(d[1:]) == {torch.float32} for d in log.ops("aten.native_batch_norm."))
    # the four LIF layers integrated float32 currents on the compiled kernel, and the loss is float32
    assert kernel_inputs == [torch.float32] * 4
    assert out.dtype == torch.float32 and loss.dtype == torch.float32 and torch.isfinite(loss)
    for name, p in model.named_parameters():
        assert p.dtype == torch.float32 and p.grad is not None and p.grad.dtype == torch.float32, name
        assert torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0, name


def test_cpu_autocast_stays_close_to_float32():
    """bf16 rounds the currents (8 mantissa bits), so some neurons near threshold flip; most spikes and the loss
    stay as in float32 — a silent fallback to float32 would give identical results, a bf16 membrane far worse ones."""
    model = small_conv_net()
    model.train()
    x, y = torch.randn(32, 3, 8, 8), torch.arange(32) % 10
    with torch.no_grad(), model.record(("O",)) as rec32:
        out32 = model(x)
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16), model.record(("O",)) as rec16:
        out16 = model(x)
    s32, s16 = rec32["c1"]["O"], rec16["c1"]["O"]
    agreement = float((s32 == s16).float().mean())
    assert 0.97 < agreement < 1.0, agreement   # some spikes differ: bf16 did compute the convolution
    loss = get_loss("ce_rate")
    assert abs(float(loss(out16, y)) - float(loss(out32, y))) < 0.05
