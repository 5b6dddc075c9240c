"""What training and monitoring need from a network (``spaic_train.training.protocols``): the built-in networks
satisfy it, and a network written from scratch that satisfies it gets the same checks and diagnostics."""

from __future__ import annotations

import contextlib
from types import SimpleNamespace

import pytest
import torch
from torch import nn

import spaic_train as spaic
from spaic_train.keras import Full, Input, Sequential
from spaic_train.monitoring import TensorBoardMonitor
from spaic_train.training import SNNModule, fit
from spaic_train.training.guards import find_nonfinite
from spaic_train.training.protocols import NetworkHolder, SpikingNetwork, network_of

QUIET = dict(enable_progress_bar=False, logger=False, accelerator="cpu", devices=1)


class ScratchNet(nn.Module):
    """A spiking network that is not a :class:`spaic_train.Network`: one linear layer whose output neurons never
    fire (outputs ``0 * fc(x)``), recording its membrane ``fc(x)`` as group ``'out'`` (``nan`` when ``poisoned``)."""

    def __init__(self, poisoned: bool = False):
        super().__init__()
        self.fc = nn.Linear(8, 3)
        self.poisoned = poisoned
        self.label = "ScratchNet('s')"
        self.time_steps = 3  # static inputs are run for 3 steps (CheckedNetwork)
        out = SimpleNamespace(name="out", label="Group('out')", shape=(3,))
        self.encoders = [SimpleNamespace(label="Input('x')", coding="direct", shape=(8,))]
        self.decoders = [SimpleNamespace(coding="spike_counts", target=out)]
        self.groups = [out]
        self.connections = []
        self._recording = None

    @contextlib.contextmanager
    def record(self, var_names=("O",)):
        self._recording = out = {}
        try:
            yield out
        finally:
            self._recording = None

    def apply_constraints(self) -> None:
        pass

    def forward(self, x):
        v = self.fc(x)
        if self.poisoned:
            v = v * float("nan")
        if self._recording is not None:
            self._recording["out"] = {"O": torch.zeros_like(v)[None], "V": v.detach()[None]}
        return 0.0 * v


def small_network() -> spaic.Network:
    net = spaic.Network(time_steps=3)
    net.input = spaic.Encoder(shape=(8,), coding="poisson")
    net.out = spaic.NeuronGroup(3, model="lif")
    net.c = spaic.Connection(net.input, net.out)
    net.dec = spaic.Decoder(net.out, coding="spike_counts")
    return net


def test_builtin_networks_satisfy_the_protocol():
    assert isinstance(small_network(), SpikingNetwork)
    assert isinstance(Sequential([Input((8,)), Full(3, name="out")], time_steps=3), SpikingNetwork)
    assert isinstance(ScratchNet(), SpikingNetwork)
    assert not isinstance(nn.Linear(8, 3), SpikingNetwork)  # trains, without the network-specific checks


def test_network_of_unwraps_the_module_that_trains_it():
    net = small_network()
    module = SNNModule(net)
    assert isinstance(module, NetworkHolder) and network_of(module) is net
    plain = nn.Linear(8, 3)
    assert not isinstance(plain, NetworkHolder) and network_of(plain) is plain


def test_a_scratch_network_gets_the_label_check_and_the_dead_output_warning():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(16, 8, generator=g)
    with pytest.raises(ValueError, match=r"y: .*5.*output layer Group\('out'\) has 3 neurons"):
        fit(SNNModule(ScratchNet(), loss="ce_count"), x, torch.full((16,), 5), epochs=1, **QUIET)
    with pytest.warns(UserWarning, match=r"dead network: every neuron of the output Group\('out'\)"):
        fit(SNNModule(ScratchNet(), loss="ce_count"), x, torch.randint(0, 3, (16,), generator=g), epochs=1,
            batch_size=8, **QUIET)


def test_a_scratch_network_is_recorded_to_find_the_nonfinite_group():
    assert find_nonfinite(SNNModule(ScratchNet(poisoned=True)), torch.rand(2, 8)) == "group 'out' (variable V)"
    assert find_nonfinite(SNNModule(ScratchNet()), torch.rand(2, 8)) is None


def test_tensorboard_monitor_needs_a_spiking_network():
    net = ScratchNet()
    assert TensorBoardMonitor._network(SNNModule(net)) is net
    with pytest.raises(TypeError, match="TensorBoardMonitor needs a spaic_train Network.*Linear"):
        TensorBoardMonitor._network(SNNModule(nn.Linear(8, 3)))
