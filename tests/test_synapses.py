"""Synapse ops: pooling, dropout, flatten, batchnorm, chain order, output shapes."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from spaic_train.assembly import Assembly
from spaic_train.connection import SYNAPSES, Connection
from spaic_train.connection.synapses import AvgPool, BatchNorm, Dropout, Flatten, MaxPool


def A(shape=None, name=None):
    return Assembly(shape=shape, name=name)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def test_registry_names():
    assert set(SYNAPSES.names()) >= {"basic", "conv", "maxpool", "avgpool", "dropout", "flatten", "batchnorm"}
    assert SYNAPSES.canonical("batchnorm2d") == "batchnorm"


def test_maxpool_is_max_and_avgpool_is_avg():
    pre = A((2, 6, 6), "pre")
    for syn, fn in (("maxpool", F.max_pool2d), ("avgpool", F.avg_pool2d)):
        post = A(name="post")
        c = Connection(pre, post, link_type="conv", syn_type=["conv", syn], out_channels=3, padding=1)
        x = torch.rand(3, 2, 2, 6, 6)
        ref = fn(F.conv2d(x.reshape(6, 2, 6, 6), c.weight, None, 1, 1), 2)
        assert post.shape == (3, 3, 3)
        torch.testing.assert_close(c(x), ref.reshape(3, 2, 3, 3, 3))


def test_pool_defaults_and_kwargs():
    p = MaxPool("o", (3, 8, 8), {})
    assert (p.kernel_size, p.stride, p.padding) == ((2, 2), (2, 2), (0, 0))
    assert p.output_shape((3, 8, 8)) == (3, 4, 4)
    p = AvgPool("o", (3, 9, 9), {"pool_kernel_size": 3, "pool_stride": 2, "pool_padding": 1})
    assert p.output_shape((3, 9, 9)) == tuple(F.avg_pool2d(torch.zeros(1, 3, 9, 9), 3, 2, 1).shape[1:])
    pre = A((2, 8, 8), "pre")
    # from kwargs and from syn_kwargs (syn_kwargs wins)
    post = A(name="post")
    Connection(pre, post, link_type="conv", syn_type=["conv", "maxpool"], out_channels=2, padding=1,
               pool_kernel_size=[4, 4])
    assert post.shape == (2, 2, 2)
    post = A(name="post2")
    Connection(pre, post, link_type="conv", syn_type=["conv", "maxpool"], out_channels=2, padding=1,
               pool_kernel_size=[4, 4], syn_kwargs={"pool_kernel_size": [2, 2], "pool_stride": 1})
    assert post.shape == (2, 7, 7)


def test_pool_before_weight_op():
    pre, post = A((1, 8, 8), "pre"), A((5,), "post")
    c = Connection(pre, post, syn_type=["maxpool", "basic"])
    assert c.weight.shape == (5, 16)
    x = torch.rand(2, 3, 1, 8, 8)
    ref = F.linear(F.max_pool2d(x.reshape(6, 1, 8, 8), 2).reshape(2, 3, 16), c.weight)
    torch.testing.assert_close(c(x), ref)


def test_flatten():
    f = Flatten("o", (2, 3, 4), {})
    assert f.output_shape((2, 3, 4)) == (24,)
    assert f(torch.rand(5, 2, 2, 3, 4)).shape == (5, 2, 24)
    pre, post = A((2, 6, 6), "pre"), A(name="post")
    c = Connection(pre, post, link_type="conv", syn_type=["conv", "flatten"], out_channels=3)
    assert post.shape == (3 * 4 * 4,)
    x = torch.rand(1, 2, 2, 6, 6)
    torch.testing.assert_close(c(x)[0], F.conv2d(x[0], c.weight).reshape(2, -1))


def test_dropout_p_from_syn_kwargs_and_defaults():
    pre, post = A(10, "a"), A(10, "b")
    assert Connection(pre, post, syn_type=["basic", "dropout"]).synapses[1].p == 0.5
    assert Connection(pre, post, syn_type=["basic", "dropout"], syn_kwargs={"p": 0.6}).synapses[1].p == 0.6
    assert Connection(pre, post, syn_type=["basic", "dropout"], p=0.3).synapses[1].p == 0.3  # SPAIC style
    with pytest.raises(ValueError, match="dropout p"):
        Connection(pre, post, syn_type=["basic", "dropout"], syn_kwargs={"p": 1.0})


def test_dropout_mask_shared_over_time_and_steps():
    pre, post = A(400, "a"), A(400, "b")
    c = Connection(pre, post, link_type="one_to_one", weight=torch.ones(400), syn_type=["basic", "dropout"],
                   syn_kwargs={"p": 0.6})
    x = torch.ones(5, 3, 400)
    y = c(x)
    zero = y == 0
    assert torch.equal(zero, zero[0].expand_as(zero))  # same mask at every time step
    assert not torch.equal(zero[0, 0], zero[0, 1])  # one mask per sample
    assert abs(zero.float().mean().item() - 0.6) < 0.05  # p=0.6 really used
    torch.testing.assert_close(y[~zero], torch.full_like(y[~zero], 1 / 0.4))
    # step-by-step calls reuse the mask until reset_state()
    for t in range(3):
        torch.testing.assert_close(c(x[t]), y[t])
    c.reset_state()
    assert not torch.equal(c(x[0]) == 0, zero[0])
    # eval: identity
    c.eval()
    torch.testing.assert_close(c(x), x)
    c.train()
    c.reset_state()
    assert c.synapses[1]._mask is None


def test_dropout_unit():
    d = Dropout("o", (4,), {"p": 0.5})
    d.eval()
    x = torch.rand(2, 3, 4)
    assert d(x) is x


def test_batchnorm_running_stats():
    pre, post = A((3, 5, 5), "pre"), A(name="post")
    c = Connection(pre, post, link_type="conv", syn_type=["conv", "batchnorm"], out_channels=4, padding=1)
    bn = c.synapses[1].bn
    assert isinstance(bn, nn.BatchNorm2d) and "synapses.1.bn.running_mean" in c.state_dict()
    ref_bn = nn.BatchNorm2d(4)
    x = torch.rand(6, 2, 3, 5, 5) * 3 + 1
    for _ in range(3):
        y = c(x)
        z = ref_bn(F.conv2d(x.reshape(12, 3, 5, 5), c.weight, None, 1, 1))  # statistics over T·B
        torch.testing.assert_close(y, z.reshape(6, 2, 4, 5, 5), rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(bn.running_mean, ref_bn.running_mean)
    torch.testing.assert_close(bn.running_var, ref_bn.running_var)
    assert bn.num_batches_tracked == 3 and not torch.allclose(bn.running_mean, torch.zeros(4))
    c.eval()
    ref_bn.eval()
    torch.testing.assert_close(c(x[:2]), ref_bn(F.conv2d(x[:2].reshape(4, 3, 5, 5), c.weight, None, 1, 1))
                               .reshape(2, 2, 4, 5, 5), rtol=1e-4, atol=1e-4)


def test_batchnorm_1d_and_kwargs():
    c = Connection(A(6, "a"), A(8, "b"), syn_type=["basic", "batchnorm"], syn_kwargs={"momentum": 0.5, "eps": 1e-3})
    bn = c.synapses[1].bn
    assert isinstance(bn, nn.BatchNorm1d) and bn.momentum == 0.5 and bn.eps == 1e-3
    x = torch.rand(4, 5, 6)
    y = c(x).reshape(20, 8)
    torch.testing.assert_close(y.mean(0), torch.zeros(8), atol=1e-5, rtol=0)
    assert BatchNorm("o", (3, 4), {}).bn.num_features == 3


def test_output_shapes():
    assert MaxPool("o", (4, 7, 7), {}).output_shape((4, 7, 7)) == (4, 3, 3)
    assert Dropout("o", (4, 7), {}).output_shape((4, 7)) == (4, 7)
    assert BatchNorm("o", (4, 7, 7), {}).output_shape((4, 7, 7)) == (4, 7, 7)


def test_synapse_errors():
    with pytest.raises(ValueError, match=r"\(channels, height, width\)"):
        Connection(A(8, "a"), A(4, "b"), syn_type=["basic", "maxpool"])
    with pytest.raises(ValueError, match="pool_padding"):
        MaxPool("o", (1, 8, 8), {"pool_padding": 2})
    with pytest.raises(ValueError, match="pool_kernel_size"):
        MaxPool("o", (1, 8, 8), {"pool_kernel_size": 0})
