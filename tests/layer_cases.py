"""Bad layer arguments, one family at a time: ``{family: [(case id, constructor call, exception, key words)]}``.

Each call must raise at construction, with every key word in its message (case-insensitive): the layer, the
argument, the value and what is allowed.  ``tests/test_errors.py`` runs them with the rest of the error table
(docs/errors.md lists every id), ``tests/test_layer_validation.py`` family by family with the valid neighbours.
"""

from __future__ import annotations

from spaic_train import layers as L
from spaic_train.keras import Sequential


def _sequential_with_decoder(decoder):
    return Sequential([L.Input(4), L.Full(2)], time_steps=2, decoder=decoder)


FAMILIES = {
    "sizes": [
        ("layer-conv-bad-out-channels", lambda: L.Conv2dSyn(0), ValueError,
         ["conv2dsyn", "out_channels", "positive int", "0"]),
        ("layer-input-bad-shape", lambda: L.Input((4, 0)), ValueError, ["input", "shape", "positive int", "0"]),
        ("layer-sparse-bad-density", lambda: L.SparseRandom(4, density=0.0), ValueError,
         ["sparserandom", "density", "(0, 1]", "0.0"]),
    ],
    "conv geometry": [
        ("layer-conv-bad-kernel-size", lambda: L.Conv2dSyn(4, kernel_size=-1), ValueError,
         ["conv2dsyn", "kernel_size", "positive int or a pair", "-1"]),
        ("layer-conv-bad-stride", lambda: L.Conv2dSyn(4, stride=(1, 0)), ValueError,
         ["conv2dsyn", "stride", "positive int or a pair", "(1, 0)"]),
        ("layer-conv-bad-padding", lambda: L.Conv2dSyn(4, padding=-1), ValueError,
         ["conv2dsyn", "padding", ">= 0", "'same' or 'valid'", "-1"]),
        ("layer-conv-same-padding-stride", lambda: L.Conv2dSyn(4, padding="same", stride=2), ValueError,
         ["conv2dsyn", "padding='same'", "stride=1", "stride=2"]),
        ("layer-conv-bad-dilation", lambda: L.Conv2dSyn(4, dilation=0), ValueError,
         ["conv2dsyn", "dilation", "positive int", "0"]),
    ],
    "groups": [
        ("layer-conv-groups-0", lambda: L.Conv2dSyn(4, kernel_size=3, groups=0), ValueError,
         ["conv2dsyn", "groups", "positive int", "0"]),
        ("layer-conv-groups-not-dividing", lambda: L.Conv2dSyn(4, groups=3), ValueError,
         ["conv2dsyn", "groups=3", "must divide out_channels=4"]),
    ],
    "pooling": [
        ("layer-conv-bad-pool", lambda: L.Conv2dSyn(4, pool="mean"), ValueError,
         ["conv2dsyn", "pool must be", "'max', 'avg' or 'sum'", "'mean'"]),
        ("layer-conv-bad-pool-size", lambda: L.Conv2dSyn(4, pool="max", pool_size=0), ValueError,
         ["conv2dsyn", "pool_size", "positive int", "0"]),
        ("layer-pool-bad-kind", lambda: L.Pool2d("median"), ValueError,
         ["pool2d", "kind must be", "'max', 'avg' or 'sum'", "'median'"]),
        ("layer-pool-bad-stride", lambda: L.Pool2d("avg", 2, stride=0), ValueError,
         ["pool2d", "stride", "positive int", "0"]),
        ("layer-pool-padding-too-large", lambda: L.Pool2d("max", 2, padding=2), ValueError,
         ["pool2d", "padding=2", "at most half the pooling window"]),
        ("layer-pool-kind-twice", lambda: L.Pool2d("max", kind="avg"), TypeError,
         ["pool2d", "kind given twice", "'max'", "kind='avg'"]),
        ("layer-conv-bad-pool-position", lambda: L.Conv2dSyn(4, pool="max", pool_position="neuron"), ValueError,
         ["conv2dsyn", "pool_position must be 'before'", "'after'", "'neuron'"]),
        ("layer-conv-pool-after-without-pool", lambda: L.Conv2dSyn(4, pool_position="after"), ValueError,
         ["conv2dsyn", "pool_position='after' needs a pool", "pool=none"]),
    ],
    "dropout": [
        ("layer-dropout-p-1", lambda: L.Dropout(1.0), ValueError, ["dropout", "p must be a number in [0, 1)", "1.0"]),
        ("layer-conv-bad-dropout", lambda: L.Conv2dSyn(4, dropout=-0.1), ValueError,
         ["conv2dsyn", "dropout must be a number in [0, 1)", "-0.1"]),
    ],
    "delays": [
        ("layer-delay-negative-max", lambda: L.Full(3, max_delay=-1.0), ValueError,
         ["full", "max_delay must be >= 0", "-1.0"]),
        ("layer-delay-without-max", lambda: L.Full(3, delay=2.0), ValueError,
         ["full", "delay given but max_delay=0", "max_delay (ms) > 0"]),
        ("layer-delay-min-gt-max", lambda: L.Full(3, max_delay=2.0, min_delay=5.0), ValueError,
         ["full", "min_delay=5.0", "[0, max_delay=2.0]"]),
        ("layer-delay-out-of-range", lambda: L.Full(3, max_delay=2.0, delay=7.0), ValueError,
         ["full", "delay=7.0", "max_delay=2.0"]),
        ("layer-learn-delay-not-bool", lambda: L.Full(3, max_delay=4.0, learn_delay="yes"), TypeError,
         ["full", "learn_delay must be true or false", "'yes'"]),
        ("layer-delay-sigma-without-learn", lambda: L.Full(3, max_delay=4.0, delay_sigma=1.0), ValueError,
         ["full", "delay_sigma", "learn_delay=true"]),
        ("layer-delay-sigma-negative", lambda: L.Full(3, max_delay=4.0, learn_delay=True, delay_sigma=-0.5),
         ValueError, ["full", "delay_sigma", ">= 0", "-0.5"]),
        ("feedback-delay-negative-max", lambda: L.Feedback("out", "h", max_delay=-2.0), ValueError,
         ["feedback(out→h)", "max_delay must be >= 0", "-2.0"]),
    ],
    "neurons and surrogates": [
        ("layer-unknown-surrogate", lambda: L.Full(3, surrogate="sigmod"), ValueError,
         ["full", "unknown surrogate", "'sigmod'", "did you mean", "sigmoid"]),
        ("layer-unknown-neuron-param", lambda: L.Full(3, neuron_kwargs={"tauu": 2.0}), TypeError,
         ["full", "'lif'", "unknown parameter", "'tauu'", "allowed parameters", "tau"]),
        ("layer-bad-neuron-param", lambda: L.Conv2dSyn(4, neuron="plif", neuron_kwargs={"tau": -1.0}), ValueError,
         ["conv2dsyn", "tau", "-1"]),
        ("layer-surrogate-given-twice", lambda: L.Full(3, surrogate="atan", neuron_kwargs={"surrogate": "erf"}),
         ValueError, ["full", "surrogate given both"]),
        ("layer-no-neuron-with-neuron-kwargs", lambda: L.Full(3, neuron=None, neuron_kwargs={"tau": 2.0}),
         ValueError, ["full", "neuron=none", "plain weighted layer", "takes no neuron_kwargs or surrogate"]),
        ("layer-bad-decay-input", lambda: L.Full(3, neuron_kwargs={"decay_input": "yes"}), ValueError,
         ["full", "decay_input must be a bool", "'yes'"]),
        ("layer-decay-input-on-if", lambda: L.Full(3, neuron="if", neuron_kwargs={"decay_input": True}), TypeError,
         ["full", "'if'", "unknown parameter", "'decay_input'"]),
    ],
    "bias": [
        ("layer-bad-bias", lambda: L.Full(3, bias="yes"), TypeError,
         ["full", "bias must be true", "false/none", "initializer", "'yes'"]),
        ("layer-conv-bad-bias", lambda: L.Conv2dSyn(4, bias=[0.1, 0.2]), TypeError,
         ["conv2dsyn", "bias must be", "list"]),
    ],
    "connection keywords": [
        ("layer-unknown-kwarg", lambda: L.Full(3, kernel_sise=3), TypeError,
         ["full", "unknown keyword argument", "'kernel_sise'", "accepted", "weight"]),
        ("layer-kwarg-did-you-mean", lambda: L.Conv2dSyn(4, kernal_size=3), TypeError,
         ["conv2dsyn", "'kernal_size'", "did you mean 'kernel_size'"]),
        ("layer-reserved-kwarg", lambda: L.Full(3, link_type="conv"), TypeError,
         ["full", "link_type=", "set by the layer"]),
        ("layer-batchnorm-unknown-option", lambda: L.Conv2dSyn(4, batchnorm={"epsilon": 1e-3}), TypeError,
         ["conv2dsyn", "batchnorm", "unknown option", "'epsilon'", "eps"]),
        ("feedback-unknown-link", lambda: L.Feedback("out", "h", link_type="ful"), ValueError,
         ["feedback(out→h)", "unknown link type", "'ful'", "did you mean", "full"]),
        ("feedback-bad-endpoint", lambda: L.Feedback(3, "h"), TypeError,
         ["feedback", "endpoints must be layer names, layers or layer outputs", "int"]),
    ],
    "encoders and decoders": [
        ("layer-unknown-encoder", lambda: L.Input(4, encoder="poison"), ValueError,
         ["input", "unknown encoder coding", "'poison'", "did you mean", "poisson"]),
        ("model-unknown-decoder", lambda: _sequential_with_decoder("spike_count"), ValueError,
         ["sequential", "unknown", "'spike_count'", "did you mean", "spike_counts"]),
    ],
}

LAYER_CASES = [case for cases in FAMILIES.values() for case in cases]
