"""Initializers: same values as torch.nn.init for the same seed; fans; bias; errors."""

import math

import pytest
import torch
from torch import nn

from spaic_train import init
from spaic_train.assembly import Assembly
from spaic_train.connection import Connection


def _same(ours, ref_fn, shape, seed=0):
    torch.manual_seed(seed)
    a = ours(shape)
    torch.manual_seed(seed)
    b = torch.empty(shape)
    ref_fn(b)
    torch.testing.assert_close(a, b, rtol=0, atol=0)


@pytest.mark.parametrize("shape", [(7, 5), (6, 4, 3, 3)])
def test_matches_torch(shape):
    _same(init.kaiming_uniform(), lambda t: nn.init.kaiming_uniform_(t), shape)
    _same(init.kaiming_uniform(a=math.sqrt(5)), lambda t: nn.init.kaiming_uniform_(t, a=math.sqrt(5)), shape)
    _same(init.kaiming_uniform(mode="fan_out", nonlinearity="relu"),
          lambda t: nn.init.kaiming_uniform_(t, mode="fan_out", nonlinearity="relu"), shape)
    _same(init.kaiming_normal(), lambda t: nn.init.kaiming_normal_(t), shape)
    _same(init.kaiming_normal(a=0.1, mode="fan_out"), lambda t: nn.init.kaiming_normal_(t, a=0.1, mode="fan_out"),
          shape)
    _same(init.xavier_uniform(), lambda t: nn.init.xavier_uniform_(t), shape)
    _same(init.xavier_uniform(gain=2.0), lambda t: nn.init.xavier_uniform_(t, gain=2.0), shape)
    _same(init.xavier_normal(), lambda t: nn.init.xavier_normal_(t), shape)
    _same(init.xavier_normal(gain=0.5), lambda t: nn.init.xavier_normal_(t, gain=0.5), shape)
    _same(init.uniform(), lambda t: nn.init.uniform_(t), shape)
    _same(init.uniform(-2, 3), lambda t: nn.init.uniform_(t, -2, 3), shape)
    _same(init.normal(), lambda t: nn.init.normal_(t), shape)
    _same(init.normal(1.0, 0.2), lambda t: nn.init.normal_(t, 1.0, 0.2), shape)
    _same(init.constant(0.3), lambda t: nn.init.constant_(t, 0.3), shape)


def test_sparse_matches_torch_2d():
    _same(init.sparse(0.5), lambda t: nn.init.sparse_(t, 0.5), (8, 6))
    _same(init.sparse(0.3, std=0.1), lambda t: nn.init.sparse_(t, 0.3, std=0.1), (10, 4))
    w = init.sparse(0.5)((8, 6))
    assert ((w == 0).sum(0) >= 4).all()  # ceil(0.5 * 8) zeros per column
    w4 = init.sparse(0.5)((4, 2, 3, 3))
    assert ((w4.view(4, -1) == 0).sum(0) >= 2).all()


def test_defaults():
    assert init.uniform().a == 0 and init.uniform().b == 1
    assert init.normal().mean == 0 and init.normal().std == 1
    k = init.kaiming_uniform()
    assert (k.a, k.mode, k.nonlinearity) == (0, "fan_in", "leaky_relu")
    assert init.xavier_uniform().gain == 1 and init.xavier_normal().gain == 1
    assert init.sparse(0.2).std == 0.01
    assert isinstance(init.constant(1.0), init.Initializer)
    assert init.normal(0, 1) == init.normal(0, 1) and "Normal" in repr(init.normal())


def test_analytic_bounds():
    torch.manual_seed(0)
    w = init.kaiming_uniform(a=math.sqrt(5))((64, 400))
    bound = 1 / math.sqrt(400)  # gain sqrt(2/(1+5)) * sqrt(3/400)
    assert w.abs().max() <= bound and w.abs().max() > 0.95 * bound
    w = init.xavier_uniform()((100, 300))
    bound = math.sqrt(6 / 400)
    assert w.abs().max() <= bound and w.abs().max() > 0.95 * bound
    w = init.kaiming_normal(nonlinearity="relu")((200, 500))
    assert abs(w.std().item() - math.sqrt(2 / 500)) < 0.05 * math.sqrt(2 / 500)


def test_explicit_fans_and_1d():
    torch.manual_seed(0)
    b = init.kaiming_uniform(a=math.sqrt(5))((1000,), fan_in=25, fan_out=10)
    assert b.abs().max() <= 1 / 5 and b.abs().max() > 0.19
    with pytest.raises(ValueError, match="fan"):
        init.kaiming_uniform()((10,))
    assert init.uniform(0, 1)((5,)).shape == (5,)  # fan-free ones work on any shape
    assert init.compute_fans((6, 4, 3, 3)) == (36, 54)


def test_connection_fans_dense_and_conv():
    pre, post = Assembly(num=30, name="pre"), Assembly(num=20, name="post")
    torch.manual_seed(3)
    c = Connection(pre, post, weight=init.kaiming_uniform(a=math.sqrt(5)))
    torch.manual_seed(3)
    ref = nn.init.kaiming_uniform_(torch.empty(20, 30), a=math.sqrt(5))
    torch.testing.assert_close(c.weight.data, ref)

    pre, post = Assembly(shape=(4, 8, 8), name="pre"), Assembly(shape=(6, 6, 6), name="post")
    torch.manual_seed(4)
    c = Connection(pre, post, link_type="conv", syn_type=["conv"], groups=2, weight=init.kaiming_normal())
    assert c.weight.shape == (6, 2, 3, 3)
    torch.manual_seed(4)
    ref = nn.init.kaiming_normal_(torch.empty(6, 2, 3, 3))  # fan_in = 2*3*3
    torch.testing.assert_close(c.weight.data, ref)


def test_bias_uses_connection_fan_in():
    pre, post = Assembly(num=36, name="pre"), Assembly(num=500, name="post")
    torch.manual_seed(0)
    c = Connection(pre, post, bias=init.kaiming_uniform(a=math.sqrt(5)))
    assert c.bias.shape == (500,)
    bound = 1 / math.sqrt(36)
    assert c.bias.abs().max() <= bound and c.bias.abs().max() > 0.95 * bound
    c = Connection(pre, post, bias=init.xavier_normal())
    assert abs(c.bias.std().item() - math.sqrt(2 / 536)) < 0.15 * math.sqrt(2 / 536)
    pre, post = Assembly(shape=(3, 6, 6), name="pre"), Assembly(name="post")
    c = Connection(pre, post, link_type="conv", out_channels=200, bias=init.kaiming_uniform(a=math.sqrt(5)))
    assert c.bias.shape == (200,)
    assert c.bias.abs().max() <= 1 / math.sqrt(27)


@pytest.mark.parametrize("make, match", [
    (lambda: init.kaiming_uniform(mode="fan_avg"), "mode"),
    (lambda: init.kaiming_normal(nonlinearity="swish"), "nonlinearity|Unsupported"),
    (lambda: init.sparse(1.5), "sparsity"),
    (lambda: init.uniform(2, 1), "a <= b"),
    (lambda: init.normal(0, -1), "std"),
])
def test_errors(make, match):
    with pytest.raises(ValueError, match=match):
        make()


def test_type_errors():
    with pytest.raises(TypeError):
        init.constant("1")
