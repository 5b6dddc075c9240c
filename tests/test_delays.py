"""Per-synapse delays: hand loops over synapses, history continuation, min_delay_steps, rounding, errors."""

import pytest
import torch
import torch.nn.functional as F

from spaic_train.assembly import Assembly
from spaic_train.connection import Connection, delay_steps
from spaic_train.init import constant, uniform


def A(shape=None, name=None):
    return Assembly(shape=shape, name=name)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def _dense_loop(W, d, x, history=None):
    """out[t, b, j] = Σ_i W[j, i] · x[t − d[j, i], b, i] (values before x[0] from history or 0)."""
    T, B, n_pre = x.shape
    H = 0 if history is None else history.shape[0]
    full = x if history is None else torch.cat([history, x])
    out = torch.zeros(T, B, W.shape[0], dtype=torch.float64)
    for t in range(T):
        for j in range(W.shape[0]):
            for i in range(n_pre):
                s = t - int(d[j, i]) + H
                if s >= 0:
                    out[t, :, j] += W[j, i].double() * full[s, :, i].double()
    return out.float()


def test_dense_delays_vs_hand_loop():
    pre, post = A(6, "pre"), A(4, "post")
    d = torch.randint(0, 5, (4, 6)).float()
    c = Connection(pre, post, max_delay=4, delay=d, bias=0.25)
    assert torch.equal(c.delay, d) and c.history_steps == int(d.max())
    x = torch.rand(9, 2, 6)
    torch.testing.assert_close(c(x), _dense_loop(c.weight.data, d, x) + 0.25)


@pytest.mark.parametrize("lt, kw", [("sparse_connect", dict(density=0.5)), ("random", dict(probability=0.5))])
def test_sparse_delays_vs_hand_loop(lt, kw):
    pre, post = A(8, "pre"), A(5, "post")
    c = Connection(pre, post, link_type=lt, max_delay=3, **kw)
    steps = delay_steps(c.delay, c.dt)
    assert steps.min() >= 1 and steps.max() <= 3  # drawn in [min_delay = dt, max_delay]
    x = torch.rand(7, 3, 8)
    torch.testing.assert_close(c(x), _dense_loop(c.weight.data * c.mask, steps, x))


@pytest.mark.parametrize("lt", ["one_to_one", "one_to_one_sparse"])
def test_one_to_one_delays(lt):
    pre, post = A(5, "pre"), A(5, "post")
    d = torch.tensor([0.0, 1.0, 2.0, 3.0, 1.0])
    w = torch.randn(5)
    c = Connection(pre, post, link_type=lt, weight=w, max_delay=3, delay=d)
    assert c.delay.shape == (5,)
    x = torch.rand(6, 2, 5)
    W = torch.diag(w)
    D = torch.zeros(5, 5)
    D[range(5), range(5)] = d
    torch.testing.assert_close(c(x), _dense_loop(W, D, x))


def test_conv_delays_vs_hand_loop():
    pre, post = A((4, 6, 6), "pre"), A(name="post")
    c = Connection(pre, post, link_type="conv", out_channels=4, groups=2, padding=1, max_delay=3,
                   delay=uniform(0, 3), bias=0.1)
    assert c.delay.shape == (4, 2)
    steps = delay_steps(c.delay, c.dt)
    x = torch.rand(6, 2, 4, 6, 6)
    out = torch.zeros(6, 2, *post.shape)
    for o in range(4):
        g = o // 2
        for ci in range(2):
            k = int(steps[o, ci])
            w = c.weight.data[o, ci][None, None]
            for t in range(k, 6):
                out[t, :, o] += F.conv2d(x[t - k, :, g * 2 + ci][:, None], w, padding=1)[:, 0]
    torch.testing.assert_close(c(x), out + 0.1, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("lt, pre_shape, extra", [
    ("full", (6,), {}),
    ("one_to_one", (6,), {}),
    ("conv", (2, 5, 5), dict(out_channels=3, padding=1)),
])
def test_history_continuation(lt, pre_shape, extra):
    pre = A(pre_shape, "pre")
    post = A(name="post") if lt == "conv" else A(6, "post")
    c = Connection(pre, post, link_type=lt, max_delay=4, min_delay=0, **extra)
    x = torch.rand(10, 2, *pre_shape)
    full = c(x)
    first, second = c(x[:4]), c(x[4:], history=x[:4])
    torch.testing.assert_close(torch.cat([first, second]), full)
    # longer history than needed is fine; so is step-by-step with history (single-step input)
    torch.testing.assert_close(c(x[7:], history=x[:7]), full[7:])
    for t in range(1, 10):
        torch.testing.assert_close(c(x[t], history=x[:t]), full[t])


def test_min_delay_steps_shift_without_delays():
    pre, post = A(5, "pre"), A(3, "post")
    c = Connection(pre, post, bias=1.0)
    x = torch.rand(6, 2, 5)
    y0 = c(x)
    c.min_delay_steps = 1
    assert c.history_steps == 1
    y1 = c(x)
    torch.testing.assert_close(y1[1:], y0[:-1])
    torch.testing.assert_close(y1[0], torch.ones(2, 3))  # zero history + bias
    h = torch.rand(3, 2, 5)
    torch.testing.assert_close(c(x, history=h)[0], F.linear(h[-1], c.weight, c.bias))  # last history step
    # one step with history: the previous step's value
    torch.testing.assert_close(c(x[3], history=x[:3]), y0[2])


def test_min_delay_steps_with_delays():
    pre, post = A(4, "pre"), A(3, "post")
    d = torch.tensor([[0.0, 1.0, 2.0, 0.0], [1.0, 0.0, 0.0, 3.0], [2.0, 2.0, 1.0, 0.0]])
    c = Connection(pre, post, max_delay=3, delay=d)
    c.min_delay_steps = 1
    x = torch.rand(6, 2, 4)
    torch.testing.assert_close(c(x), _dense_loop(c.weight.data, d.clamp(min=1), x))
    assert c.history_steps == 3


def test_rounding_and_dt():
    assert delay_steps(torch.tensor([0.3]), 0.1).item() == 3  # SPAIC truncates to 2
    assert delay_steps(torch.tensor([0.25, 0.24, 0.0]), 0.1).tolist() == [3, 2, 0]
    pre, post = A(3, "pre"), A(2, "post")
    d = torch.tensor([[0.3, 0.1, 0.0], [0.2, 0.3, 0.1]])
    c = Connection(pre, post, max_delay=0.3, delay=d)
    c.dt = 0.1  # the network sets dt after construction
    assert c.history_steps == 3
    x = torch.rand(5, 1, 3)
    torch.testing.assert_close(c(x), _dense_loop(c.weight.data, torch.round(d / 0.1), x))


def test_defaults_and_state_dict():
    pre, post = A(30, "pre"), A(20, "post")
    c = Connection(pre, post, max_delay=5)
    assert c.delay.shape == (20, 30) and "delay" in c.state_dict()
    assert c.delay.min() >= 1.0 and c.delay.max() <= 5.0
    assert torch.equal(c.delay, c.delay.round())  # whole steps of dt = 1 ms
    assert set(c.delay.unique().tolist()) == {1.0, 2.0, 3.0, 4.0, 5.0}
    c2 = Connection(pre, post, max_delay=5)
    c2.load_state_dict(c.state_dict())
    assert torch.equal(c2.delay, c.delay)
    c3 = Connection(pre, post, max_delay=4, min_delay=2.0)
    assert c3.delay.min() >= 2
    c4 = Connection(pre, post, max_delay=2, delay=constant(0.0))  # delay 0 allowed
    assert c4.history_steps == 0
    x = torch.rand(3, 1, 30)
    torch.testing.assert_close(c4(x), F.linear(x, c4.weight))


def test_gradients_through_delays():
    pre, post = A(4, "pre"), A(3, "post")
    c = Connection(pre, post, max_delay=2)
    x = torch.rand(5, 2, 4, requires_grad=True)
    c(x).sum().backward()
    assert c.weight.grad is not None and x.grad is not None and c.delay.grad is None


@pytest.mark.parametrize("kw, match", [
    (dict(max_delay=2, delay=torch.full((3, 4), -1.0)), "outside"),
    (dict(max_delay=2, delay=torch.full((3, 4), 2.5)), "outside"),
    (dict(max_delay=2, delay=torch.ones(4, 3)), "delay has shape"),
    (dict(delay=torch.ones(3, 4)), "max_delay=0"),
    (dict(max_delay=-1.0), "max_delay must be >= 0"),
    (dict(max_delay=2, min_delay=3), "min_delay"),
    (dict(max_delay=2, min_delay=-1), "min_delay"),
    (dict(max_delay=2, delay=uniform(-1, 0)), "outside"),
])
def test_delay_errors(kw, match):
    with pytest.raises(ValueError, match=match):
        Connection(A(4, "pre"), A(3, "post"), name="d", **kw)
