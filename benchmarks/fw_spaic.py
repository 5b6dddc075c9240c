"""spaic_train implementations of the workloads (SPAIC-style ``Network`` API)."""

from __future__ import annotations

import torch
from workloads import ATAN_ALPHA, DELAY_SIGMA, TAU, V_RESET, V_TH, base_name

NAME = "spaic_train"


def version() -> str:
    import spaic_train

    return spaic_train.__version__


def _group(spaic, n=None, shape=None):
    return spaic.NeuronGroup(n, shape=shape, model="lif", tau=TAU, v_th=V_TH, v_reset=V_RESET, reset="hard",
                             surrogate="atan", surrogate_alpha=ATAN_ALPHA)


class LIFLayer:
    """``lif`` workload: the neuron model of one ``NeuronGroup`` on a current sequence (no connection)."""

    note = "exact"

    def __init__(self, spec):
        import spaic_train as spaic

        self.group = _group(spaic, spec["N"])
        self.neuron = self.group.neuron

    def parameters(self):
        return []

    def output(self, x):
        O, _, _ = self.neuron.run_sequence(x, self.neuron.initial_state(x[0]))
        return O

    def probe(self, x):
        return [self.output(x)]

    def after_step(self):
        pass


class NetModel:
    """A ``spaic.Network`` whose decoder gives the loss input; ``probe`` uses ``'sequence'`` decoders."""

    note = "exact"

    def __init__(self, workload, spec, params, probe=False, mode="auto"):
        import spaic_train as spaic

        self.workload = workload
        self.mode = mode
        self.T = spec["T"]
        self.net = build_network(spaic, workload, spec, params, probe=probe)
        # --memory workloads: checkpoint through time in chunks of K steps (None: plain BPTT)
        self.net.checkpoint_steps = spec.get("checkpoint_steps")
        if self.net.checkpoint_steps:
            self.note = f"checkpoint_steps={self.net.checkpoint_steps}"

    def parameters(self):
        return list(self.net.parameters())

    def output(self, x):
        return self.net(x, time_steps=self.T, mode=self.mode)

    def probe(self, x):
        out = self.net(x, time_steps=self.T, mode=self.mode)
        return list(out) if isinstance(out, tuple) else [out]

    def after_step(self):
        self.net.apply_constraints()


def build_network(spaic, workload, spec, params, probe=False):
    w = base_name(workload)
    net = spaic.Network(dt=1.0)
    coding = "spike_rate" if w == "conv" else "spike_counts"
    if w == "fc":
        net.inp = spaic.Encoder(shape=(spec["n_in"],), coding="direct")
        net.l1 = _group(spaic, spec["n_hid"])
        net.l2 = _group(spaic, spec["n_out"])
        net.c1 = spaic.Connection(net.inp, net.l1, link_type="full", weight=params["W1"])
        net.c2 = spaic.Connection(net.l1, net.l2, link_type="full", weight=params["W2"])
        layers = [net.l1, net.l2]
    elif w == "conv":
        c1, c2, c3 = spec["C"]
        H = spec["H"]
        net.inp = spaic.Encoder(shape=(3, H, H), coding="direct")
        net.l1 = _group(spaic, shape=(c1, H, H))
        net.l2 = _group(spaic, shape=(c2, H, H))
        net.l3 = _group(spaic, shape=(c3, H // 2, H // 2))
        net.l4 = _group(spaic, spec["n_out"])
        net.c1 = spaic.Connection(net.inp, net.l1, link_type="conv", syn_type=["conv", "batchnorm"], in_channels=3,
                                  out_channels=c1, kernel_size=[3, 3], padding=1, weight=params["K1"])
        net.c2 = spaic.Connection(net.l1, net.l2, link_type="conv", syn_type=["conv", "batchnorm"], in_channels=c1,
                                  out_channels=c2, kernel_size=[3, 3], padding=1, weight=params["K2"])
        # LIF -> maxpool2 is a pool on the pre spikes of the next connection (ops listed before the weight op)
        net.c3 = spaic.Connection(net.l2, net.l3, link_type="conv", syn_type=["maxpool", "conv", "batchnorm"],
                                  in_channels=c2, out_channels=c3, kernel_size=[3, 3], padding=1,
                                  pool_kernel_size=[2, 2], weight=params["K3"])
        net.c4 = spaic.Connection(net.l3, net.l4, link_type="full", syn_type=["maxpool", "basic"],
                                  pool_kernel_size=[2, 2], weight=params["W4"])
        layers = [net.l1, net.l2, net.l3, net.l4]
    elif w in ("delay-feedback", "fastpath"):
        md = float(spec["max_delay"])
        net.inp = spaic.Encoder(shape=(spec["n_in"],), coding="direct")
        net.l1 = _group(spaic, spec["n_hid"])
        net.l2 = _group(spaic, spec["n_out"])
        d1 = params["D1"]
        if workload == "delay-feedback" and probe == "zero-delay":
            d1 = torch.zeros_like(d1)  # the peers cannot express per-synapse delays: compare without them
        learn = dict(learn_delay=True, delay_sigma=DELAY_SIGMA) if workload == "delays-learned" else {}
        net.c1 = spaic.Connection(net.inp, net.l1, link_type="full", weight=params["W1"], max_delay=md, delay=d1,
                                  **learn)
        if w == "delay-feedback":
            net.rec = spaic.Connection(net.l1, net.l1, link_type="full", weight=params["R"])
            net.c2 = spaic.Connection(net.l1, net.l2, link_type="full", weight=params["W2"])
        else:
            net.c2 = spaic.Connection(net.l1, net.l2, link_type="full", weight=params["W2"], max_delay=md,
                                      delay=params["D2"], **learn)
        layers = [net.l1, net.l2]
    else:
        raise ValueError(f"unknown workload {workload!r}")
    if probe:
        for i, g in enumerate(layers):
            net.add(spaic.Decoder(g, coding="sequence"), name=f"probe{i}")
    else:
        net.out = spaic.Decoder(layers[-1], coding=coding)
    return net


def build(workload, spec, params, probe=False):
    w = base_name(workload)
    if w == "lif":
        return LIFLayer(spec)
    if workload == "fastpath-step":
        return NetModel(workload, spec, params, probe=probe, mode="step")
    return NetModel(workload, spec, params, probe=probe)


# ------------------------------------------------------------------------------------------ Keras-style API
KERAS_NAME = "spaic_train-keras"


class KerasModel(NetModel):
    """The same networks written with ``spaic_train.keras`` layers (``Sequential``; ``Model`` with one
    ``'sequence'`` output per neuron layer when probing)."""

    note = "exact (Keras-style API on the same core)"

    def __init__(self, workload, spec, params, probe=False):
        self.workload = workload
        self.mode = "auto"
        self.T = spec["T"]
        self.net = build_keras(workload, spec, params, probe=probe)


def build_keras(workload, spec, params, probe=False):
    from spaic_train import keras

    L = keras.layers
    w = base_name(workload)
    nk = dict(tau=TAU, v_th=V_TH, v_reset=V_RESET, reset="hard")
    sg = {"name": "atan", "alpha": ATAN_ALPHA}
    common = dict(neuron_kwargs=nk, surrogate=sg, bias=False)  # no biases: the peers' layers have none
    feedback = None
    coding = "spike_rate" if w == "conv" else "spike_counts"
    if w == "fc":
        layers = [L.Input((spec["n_in"],), encoder="direct"),
                  L.Full(spec["n_hid"], **common, weight=params["W1"]),
                  L.Full(spec["n_out"], **common, weight=params["W2"])]
    elif w == "conv":
        c1, c2, c3 = spec["C"]
        H = spec["H"]
        layers = [L.Input((3, H, H), encoder="direct"),
                  L.Conv2dSyn(c1, 3, padding=1, batchnorm=True, **common, weight=params["K1"]),
                  L.Conv2dSyn(c2, 3, padding=1, batchnorm=True, **common, weight=params["K2"]),
                  L.Pool2d(2),
                  L.Conv2dSyn(c3, 3, padding=1, batchnorm=True, **common, weight=params["K3"]),
                  L.Pool2d(2),
                  L.Full(spec["n_out"], **common, weight=params["W4"])]
    elif w == "delay-feedback":
        d1 = torch.zeros_like(params["D1"]) if probe else params["D1"]
        layers = [L.Input((spec["n_in"],), encoder="direct"),
                  L.Full(spec["n_hid"], **common, weight=params["W1"],
                         max_delay=float(spec["max_delay"]), delay=d1, name="h"),
                  L.Full(spec["n_out"], **common, weight=params["W2"], name="out")]
        feedback = [keras.layers.Feedback("h", "h", weight=params["R"])]
    else:
        raise NotImplementedError(f"{KERAS_NAME}: no Keras-style version of workload {workload!r}")
    if not probe:
        return keras.Sequential(layers, time_steps=spec["T"], decoder=coding, feedback=feedback)
    x = layers[0].output
    outs = []
    for layer in layers[1:]:
        x = layer(x)
        if not isinstance(layer, L.Pool2d):
            outs.append(x)
    return keras.Model(layers[0], outs, time_steps=spec["T"], decoder="sequence", feedback=feedback)


def build_keras_model(workload, spec, params, probe=False):
    return KerasModel(workload, spec, params, probe=bool(probe))
