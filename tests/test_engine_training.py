"""A SPAIC-style network with a delayed feedback connection trains with a plain torch loop."""

import torch
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

import spaic_train as spaic


class DigitsNet(spaic.Network):
    def __init__(self):
        super().__init__(dt=1.0)
        self.input = spaic.Encoder(shape=(64,), coding="poisson")
        self.hidden = spaic.NeuronGroup(128, model="lif", tau=4.0, surrogate="atan")
        self.output = spaic.NeuronGroup(10, model="lif", tau=4.0, surrogate="atan")
        self.c_in = spaic.Connection(self.input, self.hidden, link_type="full",
                                     weight=spaic.kaiming_uniform(a=5 ** 0.5), bias=spaic.uniform(-0.1, 0.1))
        self.c_out = spaic.Connection(self.hidden, self.output, link_type="full",
                                      weight=spaic.kaiming_uniform(a=5 ** 0.5))
        # top-down feedback with per-synapse delays of 1..3 ms
        self.c_fb = spaic.Connection(self.output, self.hidden, link_type="full", max_delay=3.0,
                                     w_mean=0.0, w_std=0.05)
        self.decoder = spaic.Decoder(self.output, coding="spike_counts")


def test_spaic_style_network_with_delayed_feedback_learns_digits():
    torch.manual_seed(0)
    digits = load_digits()
    x = torch.tensor(digits.data / 16.0, dtype=torch.float32)
    y = torch.tensor(digits.target)
    x_tr, x_te, y_tr, y_te = train_test_split(x, y, test_size=0.25, random_state=0, stratify=y)
    net = DigitsNet()
    assert net.c_fb.min_delay_steps == 0
    assert any(s.stepped for s in net.compile_plan().stages)
    assert net.c_fb.min_delay_steps == 1  # feedback: compiled to read at least one step back
    opt = torch.optim.Adam(net.parameters(), lr=5e-3)
    T = 8
    for _ in range(8):
        perm = torch.randperm(len(x_tr))
        for i in range(0, len(x_tr), 64):
            idx = perm[i:i + 64]
            counts = net(x_tr[idx], time_steps=T)
            loss = torch.nn.functional.cross_entropy(counts, y_tr[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            net.apply_constraints()
    with torch.no_grad():
        acc = (net(x_te, time_steps=T).argmax(1) == y_te).float().mean().item()
    assert net.c_fb.weight.grad is not None and net.c_fb.weight.grad.abs().sum() > 0
    assert acc >= 0.90, acc
