"""Property tests (hypothesis): shape inference vs torch, schedule equivalence on random graphs."""

import torch
import torch.nn.functional as F
from exact_sums import grid_input, on_grid
from hypothesis import given, settings
from hypothesis import strategies as st

import spaic_train as spaic
from spaic_train.assembly import Assembly


@settings(max_examples=40, deadline=None)
@given(
    size=st.integers(5, 14), cin=st.sampled_from([2, 4]), cout=st.sampled_from([2, 4, 6]),
    k=st.integers(1, 3), stride=st.integers(1, 2), padding=st.integers(0, 2), dilation=st.integers(1, 2),
    groups=st.sampled_from([1, 2]), pool=st.sampled_from([None, "maxpool", "avgpool"]), pool_k=st.integers(1, 2),
)
def test_conv_shape_inference_agrees_with_torch(size, cin, cout, k, stride, padding, dilation, groups, pool, pool_k):
    if (size + 2 * padding - dilation * (k - 1) - 1) // stride + 1 < pool_k:
        return  # the conv output is smaller than the pool window: torch itself rejects it
    pre = Assembly(shape=(cin, size, size), name="pre")
    post = Assembly(name="post")
    chain = ["conv"] + ([pool] if pool else [])
    conn = spaic.Connection(pre, post, link_type="conv", syn_type=chain, out_channels=cout, kernel_size=[k, k],
                            stride=stride, padding=padding, dilation=dilation, groups=groups,
                            pool_kernel_size=[pool_k, pool_k])
    x = torch.rand(2, 3, cin, size, size)
    ref = F.conv2d(x.flatten(0, 1), conn.weight, stride=stride, padding=padding, dilation=dilation, groups=groups)
    if pool == "maxpool":
        ref = F.max_pool2d(ref, pool_k, pool_k)
    elif pool == "avgpool":
        ref = F.avg_pool2d(ref, pool_k, pool_k)
    assert post.shape == tuple(ref.shape[1:])
    torch.testing.assert_close(conn(x), ref.view(2, 3, *ref.shape[1:]))


@st.composite
def random_networks(draw):
    n_groups = draw(st.integers(1, 4))
    sizes = [draw(st.integers(1, 5)) for _ in range(n_groups)]
    edges = set()
    for post in range(1, n_groups + 1):  # node 0 is the encoder; every group gets at least one input
        edges.add((draw(st.integers(0, post - 1)), post))
    for _ in range(draw(st.integers(0, 4))):  # arbitrary extra edges, including feedback and self loops
        edges.add((draw(st.integers(0, n_groups)), draw(st.integers(1, n_groups))))
    delayed = {e: draw(st.booleans()) for e in sorted(edges)}
    return sizes, sorted(edges), delayed, draw(st.integers(0, 2 ** 16))


@settings(max_examples=25, deadline=None)
@given(spec=random_networks())
def test_random_networks_time_batched_equals_step_by_step(spec):
    sizes, edges, delayed, seed = spec
    torch.manual_seed(seed)
    net = spaic.Network()
    nodes = [net.add(spaic.Encoder(num=3, coding="direct"), "inp")]
    for i, n in enumerate(sizes):
        nodes.append(net.add(spaic.NeuronGroup(n, model="lif", tau=2.0, v_th=0.5), f"g{i}"))
    for a, b in edges:
        kw = dict(max_delay=3.0) if delayed[(a, b)] else {}
        net.add(spaic.Connection(nodes[a], nodes[b], w_mean=0.3, w_std=0.6, **kw), f"c{a}_{b}")
    net.add(spaic.Decoder(nodes[-1], coding="spike_counts"), "out")
    on_grid(net)  # exact sums: the time-batched and stepped matmuls (different shapes) agree bitwise
    x = grid_input(torch.rand(2, 3) * 2)
    results = []
    for mode in ("auto", "step"):
        net.zero_grad()
        y = net(x, time_steps=7, mode=mode)
        (y * torch.arange(1.0, sizes[-1] + 1)).sum().backward()
        results.append((y.detach(), [torch.zeros_like(p) if p.grad is None else p.grad.clone()
                                     for p in net.parameters()]))
    torch.testing.assert_close(results[0][0], results[1][0])
    for a, b in zip(results[0][1], results[1][1]):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
