"""Connection: link types vs direct torch computations, defaults, constraints, masks, shapes, errors."""

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from spaic_train.assembly import Assembly
from spaic_train.connection import LINKS, Connection
from spaic_train.init import kaiming_uniform, normal, uniform


def A(shape=None, name=None, num=None):
    return Assembly(num=num, shape=shape, name=name)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


# ---- link types: forward vs torch ------------------------------------------------------------

def test_full_forward_and_flatten():
    pre, post = A((2, 3, 4), "pre"), A((10,), "post")
    c = Connection(pre, post, bias=0.5)
    assert c.weight.shape == (10, 24) and c.bias.shape == (10,)
    x = torch.rand(5, 3, 2, 3, 4)
    ref = F.linear(x.reshape(5, 3, 24), c.weight, c.bias)
    torch.testing.assert_close(c(x), ref)
    torch.testing.assert_close(c(x[2]), ref[2])  # single step


def test_full_to_shaped_post():
    c = Connection(A(6, "a"), A((2, 3), "b"))
    x = torch.rand(2, 4, 6)
    torch.testing.assert_close(c(x), F.linear(x, c.weight).reshape(2, 4, 2, 3))


@pytest.mark.parametrize("lt", ["one_to_one", "one_to_one_sparse"])
def test_one_to_one(lt):
    pre, post = A((2, 5), "pre"), A((10,), "post")
    w = torch.randn(10)
    c = Connection(pre, post, link_type=lt, weight=w, bias=torch.arange(10.0))
    assert c.weight.shape == (10,)
    x = torch.rand(3, 2, 2, 5)
    torch.testing.assert_close(c(x), x.reshape(3, 2, 10) * w + torch.arange(10.0))
    d = Connection(pre, post, link_type=lt)
    torch.testing.assert_close(d.weight.data, torch.full((10,), 0.05))  # SPAIC: w_mean on the diagonal
    e = Connection(pre, post, link_type=lt, weight=np.diag(np.arange(10.0)))  # diagonal matrix accepted
    torch.testing.assert_close(e.weight.data, torch.arange(10.0))
    if lt == "one_to_one_sparse":
        assert c.indices.shape == (2, 10) and "indices" in c.state_dict()


def test_one_to_one_sparse_equals_dense():
    pre, post = A(7, "pre"), A(7, "post")
    w = torch.randn(7)
    a = Connection(pre, post, link_type="one_to_one", weight=w)
    b = Connection(pre, post, link_type="one_to_one_sparse", weight=w)
    x = torch.rand(4, 3, 7)
    torch.testing.assert_close(a(x), b(x))
    torch.testing.assert_close(a(x), F.linear(x, torch.diag(w)))


def test_conv_forward_vs_torch():
    pre, post = A((4, 9, 9), "pre"), A(name="post")
    c = Connection(pre, post, link_type="conv", syn_type=["conv"], out_channels=6, kernel_size=3, stride=2,
                   padding=1, dilation=2, groups=2, bias=uniform(-0.1, 0.1))
    assert c.weight.shape == (6, 2, 3, 3) and c.bias.shape == (6,)
    x = torch.rand(3, 2, 4, 9, 9)
    ref = F.conv2d(x.reshape(6, 4, 9, 9), c.weight, c.bias, 2, 1, 2, 2)
    assert post.shape == tuple(ref.shape[1:])
    torch.testing.assert_close(c(x), ref.reshape(3, 2, *ref.shape[1:]))


def test_conv_output_is_channels_last_on_cpu_and_flows_through_the_network():
    pre, post = A((3, 8, 8), "pre"), A(name="post")
    c = Connection(pre, post, link_type="conv", syn_type=["conv", "batchnorm", "maxpool"], out_channels=5,
                   kernel_size=3, padding=1)
    x = torch.rand(2, 4, 3, 8, 8)
    y = c(x)
    assert y.shape == (2, 4, 5, 4, 4)
    assert y.reshape(8, 5, 4, 4).is_contiguous(memory_format=torch.channels_last)
    with torch.no_grad():  # same values as the default (NCHW) layout
        ref = F.max_pool2d(c.synapses[1].bn(F.conv2d(x.reshape(8, 3, 8, 8), c.weight, None, 1, 1)), 2)
    torch.testing.assert_close(y, ref.reshape(2, 4, 5, 4, 4), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("in_channels, size", [(2, 32), (4, 32), (8, 16)])
def test_strided_1x1_conv_matches_torch_in_forward_and_backward(in_channels, size):
    """The shapes of ResNet-19's narrow 1x1 stride-2 shortcuts, whose channels-last oneDNN backward corrupts
    memory or hangs on AVX2-only CPUs: the link takes every second pixel and convolves with stride 1, which must
    give torch's strided NCHW convolution.  Outputs are float32 sums of at most 8 products (default tolerance);
    a weight gradient sums up to 32 x 16 x 16 = 8192 products of size ~1 in another order, so its values (~50)
    may differ by a few float32 ulps times sqrt(8192): rtol 1e-4."""
    pre, post = A((in_channels, size, size), "pre"), A(name="post")
    c = Connection(pre, post, link_type="conv", syn_type=["conv"], out_channels=2 * in_channels, kernel_size=1,
                   stride=2, bias=uniform(-0.1, 0.1))
    x = (torch.rand(2, 16, in_channels, size, size) < 0.3).float()
    w_ref = c.weight.detach().clone().requires_grad_(True)
    for _ in range(20):  # the defect showed on repeated backward passes
        c.weight.grad = None
        y = c(x)
        g = torch.randn_like(y)
        y.backward(g)
    ref = F.conv2d(x.reshape(32, in_channels, size, size), w_ref, c.bias.detach(), 2)
    ref.backward(g.reshape(ref.shape))
    assert post.shape == tuple(ref.shape[1:])
    torch.testing.assert_close(y.detach(), ref.detach().reshape(y.shape))
    torch.testing.assert_close(c.weight.grad, w_ref.grad, rtol=1e-4, atol=1e-4)


def test_conv_basic_synapse_and_upscale():
    pre, post = A((2, 4, 4), "pre"), A(name="post")
    c = Connection(pre, post, link_type="conv", out_channels=3, upscale=2, padding=1)
    x = torch.rand(2, 1, 2, 4, 4)
    up = F.interpolate(x[:, 0], scale_factor=2, mode="nearest")
    ref = F.conv2d(up, c.weight, None, 1, 1)
    assert post.shape == (3, 8, 8)
    torch.testing.assert_close(c(x)[:, 0], ref)


@pytest.mark.parametrize("kw", [
    dict(kernel_size=3, stride=1, padding=0),
    dict(kernel_size=[5, 3], stride=2, padding=[2, 1]),
    dict(kernel_size=3, stride=3, padding=1, dilation=2),
    dict(kernel_size=3, dilation=[2, 1], groups=4),
    dict(kernel_size=3, padding="same"),
])
@pytest.mark.parametrize("pool", [None, "maxpool", "avgpool"])
def test_conv_shape_inference_vs_torch(kw, pool):
    pre, post = A((4, 17, 15), "pre"), A(name="post")
    syn = ["conv"] + ([pool] if pool else [])
    c = Connection(pre, post, link_type="conv", syn_type=syn, out_channels=8, **kw)
    ref = F.conv2d(torch.zeros(1, 4, 17, 15), c.weight, None, c.link.stride, c.link.padding, c.link.dilation,
                   c.link.groups)
    if pool:
        ref = F.max_pool2d(ref, 2)
    assert post.shape == tuple(ref.shape[1:])
    assert c(torch.zeros(1, 1, 4, 17, 15)).shape == (1, 1, *ref.shape[1:])


def test_conv_channels_inferred_and_checked():
    pre, post = A((3, 8, 8), "pre"), A((5, 6, 6), "post")
    c = Connection(pre, post, link_type="conv")
    assert (c.link.in_channels, c.link.out_channels) == (3, 5) and c.weight.shape == (5, 3, 3, 3)
    with pytest.raises(ValueError, match="produces shape"):
        Connection(pre, A((5, 7, 7), "bad"), link_type="conv")
    flat = A(num=5 * 36, name="flat")  # flat post of the right size is fine with out_channels
    Connection(pre, flat, link_type="conv", out_channels=5)


def test_sparse_and_random_masks():
    pre, post = A(200, "pre"), A(100, "post")
    s = Connection(pre, post, link_type="sparse_connect")
    assert LINKS.canonical("sparse") == "sparse_connect"
    frac = s.mask.float().mean().item()
    assert abs(frac - 0.1) < 0.02
    assert torch.equal(s.weight.data != 0, s.mask)
    s2 = Connection(pre, post, link_type="sparse", density=0.5)
    assert abs(s2.mask.float().mean().item() - 0.5) < 0.03
    x = torch.rand(2, 3, 200)
    torch.testing.assert_close(s(x), F.linear(x, s.weight * s.mask))
    g = A(50, "g")
    r = Connection(g, g, link_type="random_connection", probability=0.5)
    assert r.link_type == "random" and not r.mask.diagonal().any()
    assert abs(r.mask.float().mean().item() - 0.49) < 0.05
    r2 = Connection(pre, post, link_type="random")
    assert abs(r2.mask.float().mean().item() - 0.1) < 0.02


def test_sparse_explicit_weight_defines_topology():
    w = torch.tensor([[1.0, 0.0], [0.0, 2.0], [3.0, 0.0]])
    c = Connection(A(2, "a"), A(3, "b"), link_type="sparse", weight=w)
    assert torch.equal(c.mask, w != 0) and torch.equal(c.weight.data, w)


# ---- defaults --------------------------------------------------------------------------------

def test_defaults():
    pre, post = A(400, "pre"), A(300, "post")
    c = Connection(pre, post)
    assert c.link_type == "full" and c.syn_type == ["basic"] and c.bias is None and c.mask is None
    assert c.pre is pre and c.post is post and c.pre_var_name == "O" and c.post_var_name == "Isyn"
    assert c.dt == 1.0 and c.min_delay_steps == 0 and c.history_steps == 0 and c.delay is None
    assert abs(c.weight.mean().item() - 0.005) < 0.002 and abs(c.weight.std().item() - 0.05) < 0.002
    assert list(c.state_dict()) == ["weight"]  # pre/post are not submodules
    assert not any(m is pre or m is post for m in c.modules())
    conv = Connection(A((8, 16, 16), "p"), A(name="q"), link_type="conv", out_channels=64)
    assert conv.weight.shape == (64, 8, 3, 3)
    assert abs(conv.weight.mean().item() - 0.05) < 0.005 and abs(conv.weight.std().item() - 0.05) < 0.005
    lk = conv.link
    assert (lk.kernel_size, lk.stride, lk.padding, lk.dilation, lk.groups, lk.upscale) == ((3, 3), (1, 1), (0, 0),
                                                                                            (1, 1), 1, None)
    assert conv.post.shape == (64, 14, 14)
    assert Connection(A(10, "a"), A(10, "b"), link_type="sparse_connect").link.prob == 0.1
    assert Connection(A(10, "a"), A(10, "b"), link_type="random").link.prob == 0.1


def test_weight_options():
    pre, post = A(4, "pre"), A(3, "post")
    w = np.arange(12.0).reshape(3, 4)
    c = Connection(pre, post, weight=w)
    torch.testing.assert_close(c.weight.data, torch.tensor(w, dtype=torch.float32))
    c = Connection(pre, post, weight=normal(1.0, 0.0))
    assert torch.all(c.weight == 1.0)
    c = Connection(pre, post, w_mean=1.0, w_std=5.0, w_min=0.0, w_max=2.0)  # the page's conn1_example
    assert c.weight.min() >= 0 and c.weight.max() <= 2 and (c.weight == 2).any()
    c = Connection(pre, post, bias=torch.ones(3))
    assert c.bias.requires_grad and torch.equal(c.bias.data, torch.ones(3))
    c = Connection(pre, post, bias=True)
    assert c.bias.abs().max() <= 0.5


def test_bias_added_right_after_weight_op():
    pre, post = A((2, 6, 6), "pre"), A(name="post")
    c = Connection(pre, post, link_type="conv", syn_type=["conv", "maxpool"], out_channels=3, bias=-1.0)
    x = torch.rand(1, 2, 2, 6, 6)
    ref = F.max_pool2d(F.conv2d(x[0], c.weight, c.bias), 2)
    torch.testing.assert_close(c(x)[0], ref)


def test_sparse_with_mask_on_full():
    w = torch.tensor([[0.0, 1.0, 0.0], [2.0, 0.0, 3.0]])
    c = Connection(A(3, "a"), A(2, "b"), weight=w, sparse_with_mask=True)
    assert torch.equal(c.mask, w != 0)
    c2 = Connection(A(3, "a"), A(2, "b"), weight=w)
    assert c2.mask is None


# ---- training constraints --------------------------------------------------------------------

def _train(conn, opt, steps, constrain=True, shape=(4, 3)):
    for _ in range(steps):
        x = torch.rand(2, *shape[:1], *conn.pre.shape)
        loss = -(conn(x) ** 2).sum() - conn(x).sum()
        opt.zero_grad()
        loss.backward()
        opt.step()
        if constrain:
            conn.apply_constraints()


def test_clamp_after_adam_steps():
    c = Connection(A(20, "a"), A(10, "b"), w_min=-0.1, w_max=0.5, w_mean=0.45, w_std=0.1)
    assert c.weight.max() <= 0.5
    _train(c, torch.optim.Adam(c.parameters(), lr=0.05), 10)
    assert c.weight.max().item() == 0.5 and c.weight.min() >= -0.1


@pytest.mark.parametrize("opt_cls, kw", [(torch.optim.SGD, dict(lr=0.1, momentum=0.9, weight_decay=0.1)),
                                         (torch.optim.Adam, dict(lr=0.05)),
                                         (torch.optim.AdamW, dict(lr=0.05, weight_decay=0.5))])
@pytest.mark.parametrize("constrain", [True, False])
def test_masks_hold_under_optimizers(opt_cls, kw, constrain):
    pre, post = A(30, "a"), A(20, "b")
    conns = [Connection(pre, post, link_type="sparse_connect", density=0.3),
             Connection(pre, post, link_type="random", probability=0.3),
             Connection(pre, post, weight=torch.randn(20, 30) * (torch.rand(20, 30) < 0.5), sparse_with_mask=True)]
    for c in conns:
        absent = ~c.mask
        _train(c, opt_cls(c.parameters(), **kw), 5, constrain=constrain)
        assert torch.all(c.weight[absent] == 0)
        assert torch.any(c.weight[c.mask] != 0)


def test_masked_weights_have_no_effect():
    c = Connection(A(5, "a"), A(4, "b"), link_type="sparse", density=0.5)
    with torch.no_grad():
        c.weight.fill_(1.0)  # even if someone writes into absent synapses
    x = torch.rand(1, 2, 5)
    torch.testing.assert_close(c(x), F.linear(x, c.mask.float()))
    c.apply_constraints()
    assert torch.all(c.weight[~c.mask] == 0)


# ---- the reference page's conv example 2 -----------------------------------------------------

def test_reference_conv_example_2():
    class args:  # noqa: N801 - as on the page
        stride = 1
        padding = 1

    layer1, layer2, layer3, layer4 = A((128, 8, 8), "layer1"), A(name="layer2"), A(name="layer3"), A(name="layer4")
    conv2 = Connection(layer1, layer2, link_type='conv',
                       syn_type=['conv', 'dropout'], in_channels=128, out_channels=256,
                       kernel_size=(3, 3), stride=args.stride, padding=args.padding,
                       weight=kaiming_uniform(a=math.sqrt(5)),
                       bias=uniform(a=-math.sqrt(1 / 1152), b=math.sqrt(1 / 1152))
                       )
    conv3 = Connection(layer2, layer3, link_type='conv',
                       syn_type=['conv', 'maxpool', 'dropout'], in_channels=256, out_channels=512,
                       kernel_size=(3, 3), stride=args.stride, padding=args.padding,
                       pool_stride=2, pool_padding=0,
                       weight=kaiming_uniform(a=math.sqrt(5)),
                       bias=uniform(a=-math.sqrt(1 / 2304), b=math.sqrt(1 / 2304))
                       )
    conv4 = Connection(layer3, layer4, link_type='conv',
                       syn_type=['conv', 'maxpool', 'dropout'], in_channels=512, out_channels=1024,
                       kernel_size=(3, 3), stride=args.stride, padding=args.padding,
                       pool_stride=2, pool_padding=0,
                       weight=kaiming_uniform(a=math.sqrt(5)),
                       bias=uniform(a=-math.sqrt(1 / 4608), b=math.sqrt(1 / 4608)),
                       syn_kwargs={'p': 0.6})
    assert (layer2.shape, layer3.shape, layer4.shape) == ((256, 8, 8), (512, 4, 4), (1024, 2, 2))
    assert conv2.synapses[1].p == 0.5 and conv4.synapses[2].p == 0.6
    bound = 1 / math.sqrt(1152)  # kaiming_uniform(a=sqrt(5)) with fan_in = 128*3*3
    assert conv2.weight.abs().max() <= bound and conv2.bias.abs().max() <= bound
    x = (torch.rand(2, 2, 128, 8, 8) < 0.2).float()
    y = conv4(conv3(conv2(x)))
    assert y.shape == (2, 2, 1024, 2, 2) and torch.isfinite(y).all()
    conv4.eval()
    dropped = (conv4(torch.ones(1, 1, 512, 4, 4)) == 0).float().mean()
    assert dropped == 0 or dropped < 0.05  # eval: no dropout


# ---- errors --------------------------------------------------------------------------------

@pytest.mark.parametrize("make, exc, match", [
    (lambda: Connection(A(3, "a"), A(2, "b"), link_type="fulll"), ValueError, "valid link types.*full"),
    (lambda: Connection(A(3, "a"), A(2, "b"), syn_type=["basic", "maxpol"]), ValueError, "valid synapse types"),
    (lambda: Connection(A(3, "a"), A(2, "b"), link_type="one_to_one"), ValueError, "equal size"),
    (lambda: Connection(A(3, "a"), A(3, "b"), link_type="one_to_one", weight=torch.ones(3, 3)), ValueError,
     "diagonal"),
    (lambda: Connection(A(3, "a"), A(2, "b"), weight=torch.ones(3, 2)), ValueError, r"\(3, 2\).*\(2, 3\)"),
    (lambda: Connection(A(3, "a"), A(2, "b"), w_min=1.0, w_max=0.5), ValueError, "w_min"),
    (lambda: Connection(A(3, "a"), A(2, "b"), link_type="sparse", density=0), ValueError, r"density.*\(0, 1\]"),
    (lambda: Connection(A(3, "a"), A(2, "b"), link_type="sparse", density=1.5), ValueError, "density"),
    (lambda: Connection(A(3, "a"), A(2, "b"), link_type="random", probability=-0.1), ValueError, "probability"),
    (lambda: Connection(A(3, "a"), A(2, "b"), pre_var_name="o"), ValueError, "pre_var_name='o'.*'O', 'V'"),
    (lambda: Connection(A(3, "a"), A(2, "b"), post_var_name="I"), ValueError, "post_var_name='I'.*'Isyn'"),
    (lambda: Connection(A(3, "a"), A(2, "b"), w_mena=1.0), TypeError, "w_mena.*Did you mean 'w_mean'"),
    (lambda: Connection(A(3, "a"), A(2, "b"), syn_kwargs={"q": 1}), TypeError, "'q'"),
    (lambda: Connection(A(3, "a"), A(2, "b"), syn_type=["maxpool"]), ValueError, "exactly one weight op"),
    (lambda: Connection(A(3, "a"), A(2, "b"), syn_type=["conv"]), ValueError, "link_type='conv'"),
    (lambda: Connection(A(3, "a"), A(name="b")), ValueError, "no shape"),
    (lambda: Connection(A(12, "a"), A(name="b"), link_type="conv", out_channels=2), ValueError,
     r"\(channels, height, width\)"),
    (lambda: Connection(A((3, 8, 8), "a"), A(name="b"), link_type="conv", in_channels=4, out_channels=2),
     ValueError, "in_channels=4"),
    (lambda: Connection(A((3, 8, 8), "a"), A(name="b"), link_type="conv"), ValueError, "out_channels cannot"),
    (lambda: Connection(A((3, 8, 8), "a"), A(name="b"), link_type="conv", out_channels=4, groups=2), ValueError,
     "divisible by groups"),
    (lambda: Connection(A((3, 8, 8), "a"), A((4, 6, 6), "b"), link_type="conv", out_channels=5), ValueError,
     "produces shape"),
    (lambda: Connection(A((3, 4, 4), "a"), A(name="b"), link_type="conv", out_channels=2, kernel_size=5),
     ValueError, "too small"),
    (lambda: Connection(A((3, 4, 4), "a"), A(name="b"), link_type="conv", out_channels=2, weight=torch.ones(2, 3)),
     ValueError, r"\(2, 3, 3, 3\)"),
    (lambda: Connection(A(3, "a"), A(2, "b"), bias=torch.ones(3)), ValueError, "bias has shape"),
    (lambda: Connection(A(3, "a"), A(2, "b"), max_delay=-1), ValueError, "max_delay"),
    (lambda: Connection(A(3, "a"), A(2, "b"), weight="x"), TypeError, "weight"),
])
def test_errors(make, exc, match):
    with pytest.raises(exc, match=match):
        make()


def test_error_names_connection():
    with pytest.raises(ValueError, match=r"Connection\('c1'\)"):
        Connection(A(3, "a"), A(2, "b"), name="c1", link_type="one_to_one")
    with pytest.raises(ValueError, match="Connection\\(a→b\\)"):
        Connection(A(3, "a"), A(2, "b"), link_type="one_to_one")


def test_forward_shape_errors():
    c = Connection(A(3, "a"), A(2, "b"))
    with pytest.raises(ValueError, match="does not match"):
        c(torch.rand(2, 2, 4))
    with pytest.raises(ValueError, match="does not match"):
        c(torch.rand(3))
