"""The pieces issue 20 made public: ``DelayLine`` on its own, links built without a connection, and the
presynaptic history helpers the runner uses (each against a direct computation)."""

import gc

import pytest
import torch
from torch import nn

from spaic_train.assembly import Assembly
from spaic_train.connection import Connection, DelayLine, FullLink, LinkContext, OneToOneSparseLink
from spaic_train.connection.delays import step_history, trailing_history, with_history


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def test_delay_line_registers_its_tensors_under_the_saved_keys():
    holder = nn.Module()
    line = DelayLine("holder", (3, 4), max_delay=3.0, delay=torch.full((3, 4), 1.5), learn=True, sigma=0.75)
    line.register_tensors(holder)
    assert list(holder.state_dict()) == ["delay", "delay_sigma"]
    assert isinstance(holder.delay, nn.Parameter) and float(holder.delay_sigma) == 0.75
    fixed = nn.Module()
    DelayLine("fixed", (2,), max_delay=2.0, delay=1.0).register_tensors(fixed)
    assert [n for n, _ in fixed.named_buffers()] == ["delay"] and fixed.delay_sigma is None
    none = nn.Module()
    DelayLine("none", (2,)).register_tensors(none)
    assert none.delay is None and none.delay_sigma is None and list(none.state_dict()) == []


def test_delay_line_taps_history_and_bounds():
    d = torch.tensor([0.4, 1.6, 2.5, 3.0])
    line = DelayLine("l", (4,), max_delay=3.0, delay=d, min_delay=0.2, learn=True, sigma=1.0)
    sigma = torch.tensor(1.0)
    # relaxed (training, σ > 0): a Gaussian over the taps lo..hi, each synapse's weights summing to 1
    assert line.relaxed(training=True) and not line.relaxed(training=False)
    assert line.tap_range() == (0, 3) and line.history_steps(d, training=True) == 3
    taps = list(line.taps(d, sigma, training=True, dtype=torch.float32))
    assert [k for k, _ in taps] == [0, 1, 2, 3]
    g = torch.stack([g for _, g in taps])
    expect = torch.softmax(-0.5 * (torch.arange(0.0, 4.0)[:, None] - d) ** 2, dim=0)
    torch.testing.assert_close(g, expect)
    # eval: the integer taps at round(d / dt) (halves up), one 0/1 mask per distinct value
    assert torch.equal(line.steps(d), torch.tensor([0, 2, 3, 3]))
    assert line.history_steps(d, training=False) == 3
    assert [(k, g.tolist()) for k, g in line.integer_taps(d, torch.float32)] == [
        (0, [1.0, 0.0, 0.0, 0.0]), (2, [0.0, 1.0, 0.0, 0.0]), (3, [0.0, 0.0, 1.0, 1.0])]
    # feedback: at least one step, in the taps, the integer steps and the clamping bounds
    line.set_feedback(True)
    assert line.min_steps == 1 and line.tap_range() == (1, 3) and line.bounds() == (1.0, 3.0)
    assert torch.equal(line.steps(d), torch.tensor([1, 2, 3, 3]))
    line.dt = 0.5
    assert line.bounds() == (0.5, 3.0) and line.tap_range() == (1, 6)
    # σ = 0 snaps to whole steps of dt, then clamps
    line.set_sigma(sigma, 0.0)
    assert float(sigma) == 0.0 and not line.relaxed(training=True)
    w = torch.tensor([0.1, 0.74, 1.26, 3.9])
    line.constrain_(w)
    assert torch.equal(w, torch.tensor([0.5, 0.5, 1.5, 3.0]))


def test_delay_line_without_per_synapse_delays_is_a_plain_shift():
    line = DelayLine("l", (3, 2))
    assert not line.per_synapse and line.steps(None) is None and line.history_steps(None, training=True) == 0
    assert line.integer_taps(None, torch.float32) == [(0, None)]
    line.set_feedback(True)
    assert line.history_steps(None, training=False) == 1 and line.integer_taps(None, torch.float32) == [(1, None)]


def test_links_are_built_without_a_connection_and_keep_no_reference_to_it():
    ctx = LinkContext(owner="Connection('c')", name="full", post_label="post", post_shape=(3,))
    link = FullLink(ctx, (4,), {})
    w = torch.randn(3, 4)
    x = torch.randn(5, 4)
    torch.testing.assert_close(link.op(x, w), x @ w.T)
    sparse = OneToOneSparseLink(LinkContext("c", "one_to_one_sparse", "post", (4,)), (4,), {})
    indices = torch.tensor([[0, 1, 2, 3], [3, 2, 1, 0]])  # post i reads pre 3 - i
    y = sparse.op(x, torch.tensor([1.0, 2.0, 3.0, 4.0]), indices=indices)
    torch.testing.assert_close(y, x.flip(1) * torch.tensor([1.0, 2.0, 3.0, 4.0]))
    pre, post = Assembly(shape=(4,), name="pre"), Assembly(shape=(3,), name="post")
    conn = Connection(pre, post)
    for part in (conn.link, conn.delay_line):
        refs = list(vars(part).values())
        assert refs and not any(r is conn or r is pre or r is post for r in refs)
        assert not any(r is conn for r in gc.get_referents(*refs))  # nor one level down


@pytest.mark.parametrize("depth", [1, 3])
@pytest.mark.parametrize("carried_steps", [0, 2, 5])
def test_step_history_equals_the_window_of_the_whole_sequence(depth, carried_steps):
    T, B = 6, 2
    x = torch.randn(T, B, 3)
    carried = torch.randn(carried_steps, B, 3) if carried_steps else None
    full = with_history(x, carried, depth)  # [depth + T]: zero-padded in front where nothing was carried
    done = list(x.unbind(0))
    zeros = torch.zeros(B, 3)
    for t in range(T):
        h = step_history(done[:t], t, depth, carried, zeros)
        if h is None:  # nothing before step 0: the connection pads with zeros itself
            assert t == 0 and carried is None
            continue
        assert torch.equal(with_history(x[t:t + 1], h, depth)[:depth], full[t:t + depth])
    # the trailing history a continuation gets is the end of everything seen so far
    tail = trailing_history(carried, x, depth)
    seen = x if carried is None else torch.cat([carried, x])
    assert torch.equal(tail, seen[-depth:]) and tail.shape[0] == min(depth, seen.shape[0])
