"""docs/errors.md rows of ANN → SNN conversion (``st.convert``, ``st.conversion_report``, ``QCFS``), appended to
``tests/test_errors.py``'s ``CASES``: ``(id, zero-argument callable, exception, key words)``."""

from __future__ import annotations

import torch
from torch import nn

import spaic_train as st
from spaic_train.conversion import QCFS, ConversionError


def _mlp():
    return nn.Sequential(nn.Linear(4, 4), nn.ReLU(), nn.Linear(4, 2))


def _x():
    return torch.rand(8, 4)


class _Nested(nn.Module):
    def __init__(self):
        super().__init__()
        self.block = nn.Sequential(nn.Linear(4, 4), nn.Sigmoid())
        self.fc = nn.Linear(4, 2)

    def forward(self, x):
        return self.fc(self.block(x))


class _Branchy(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 2)

    def forward(self, x):
        return self.fc(x) if x.sum() > 0 else -self.fc(x)


class _Tanh(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(4, 4), nn.Linear(4, 2)

    def forward(self, x):
        return self.fc2(torch.tanh(self.fc1(x)))


CONVERSION_CASES = [
    ("convert-not-a-module", lambda: st.convert("resnet", _x()), TypeError,
     ["ann must be a torch.nn.Module", "str"]),
    ("convert-unsupported-module", lambda: st.convert(_Nested(), _x()), ConversionError,
     ["Sigmoid at 'block.1'", "_Nested", "not a convertible module", "supported parts", "Conv2d", "Linear"]),
    ("convert-unsupported-function", lambda: st.convert(_Tanh(), _x()), ConversionError,
     ["tanh() at 'tanh'", "_Tanh", "not a convertible function", "supported parts", "relu", "add"]),
    ("convert-untraceable", lambda: st.convert(_Branchy(), _x()), ConversionError,
     ["_Branchy", "cannot be traced by torch.fx", "control flow"]),
    ("convert-no-readout", lambda: st.convert(nn.Sequential(nn.Linear(4, 2), nn.ReLU()), _x()), ConversionError,
     ["must end with one weight op", "no activation after it"]),
    ("convert-two-weight-ops", lambda: st.convert(nn.Sequential(nn.Linear(4, 4), nn.Linear(4, 2)), _x()),
     ConversionError, ["Linear at '1'", "two weight ops", "ReLU"]),
    ("convert-bad-threshold", lambda: st.convert(_mlp(), _x(), threshold="mean"), ValueError,
     ["threshold must be one of", "'mean'", "percentile", "clip"]),
    ("convert-clip-without-clip", lambda: st.convert(_mlp(), _x(), threshold="clip"), ConversionError,
     ["threshold='clip'", "activation '1'", "QCFS"]),
    ("convert-bad-percentile", lambda: st.convert(_mlp(), _x(), percentile=150), ValueError,
     ["percentile must be a number in (0, 100]", "150"]),
    ("convert-bad-maxpool", lambda: st.convert(_mlp(), _x(), maxpool="min"), ValueError,
     ["maxpool must be one of", "current", "spikes", "avg", "'min'"]),
    ("convert-nir-clash", lambda: st.convert(_mlp(), _x(), nir_compatible=True, reset="soft"), ValueError,
     ["nir_compatible=True needs reset='hard'", "reset='soft'"]),
    ("convert-bad-v-init", lambda: st.convert(_mlp(), _x(), v_init=1.5), ValueError,
     ["v_init must be 'auto'", "fraction of each layer's threshold in [0, 1)", "1.5"]),
    ("convert-bad-calibrate", lambda: st.convert(_mlp(), _x(), calibrate="weights"), ValueError,
     ["calibrate must be None", "'bias'", "'weights'"]),
    ("convert-bad-calibrate-steps", lambda: st.convert(_mlp(), _x(), calibrate="bias", calibrate_steps=0), ValueError,
     ["calibrate_steps must be a positive int", "the T to calibrate for", "0"]),
    ("convert-calibrate-steps-alone", lambda: st.convert(_mlp(), _x(), calibrate_steps=8), ValueError,
     ["calibrate_steps=8 needs calibrate='bias'"]),
    ("convert-empty-calibration", lambda: st.convert(_mlp(), torch.empty(0, 4)), ValueError,
     ["calibration_data holds no samples"]),
    ("report-bad-time-steps",
     lambda: st.conversion_report(st.convert(_mlp(), _x()), _mlp(), (_x(), torch.zeros(8, dtype=torch.long)),
                                  time_steps=[4, 0]), ValueError, ["time_steps must be positive ints", "0"]),
    ("report-missing-t",
     lambda: st.conversion_report({4: st.convert(_mlp(), _x())}, _mlp(), (_x(), torch.zeros(8, dtype=torch.long)),
                                  time_steps=[4, 8]), ValueError, ["snn is a mapping", "without a model for T = 8",
                                                                   "it has T = 4"]),
    ("qcfs-bad-levels", lambda: QCFS(levels=0), ValueError, ["QCFS", "levels must be a positive int", "0"]),
]
