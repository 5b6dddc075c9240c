"""Spike tensors straight into fit (issue 21, item 5): ``Input(shape, encoder="sequence")`` takes arrays
``[N, T, *shape]``; each batch ``[B, T, ...]`` is transposed to the engine's ``[T, B, ...]``."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from spaic_train.keras import Model
from spaic_train.keras.layers import Full, Input

QUIET = {"enable_progress_bar": False, "logger": False}


def _model(encoder: str, time_steps=None, shape=6):
    torch.manual_seed(0)
    x = Input(shape, encoder=encoder)
    return Model(x, Full(3, name="out", neuron="leaky_integrator")(Full(8, name="h")(x)), time_steps=time_steps,
                 decoder="mean_voltage")


def test_sequence_batches_are_the_transposed_passthrough_batches():
    spikes = (torch.rand(5, 20, 6, generator=torch.Generator().manual_seed(1)) < 0.3).float()  # [N, T, 6]
    seq, ref = _model("sequence"), _model("passthrough")
    ref.load_state_dict(seq.state_dict())
    torch.testing.assert_close(seq(spikes), ref(spikes.transpose(0, 1)), rtol=0, atol=0)


def test_fit_evaluate_predict_take_N_T_arrays(tmp_path):
    """The issue's example: fit(torch.rand(96, 20, 6), y, batch_size=32) with T = 20 from the data, numpy too."""
    model = _model("sequence")
    model.compile(loss="ce", lr=1e-2)
    x = (torch.rand(96, 20, 6, generator=torch.Generator().manual_seed(2)) < 0.3).float()
    y = (x[:, :, :3].sum(1).argmax(1))  # the class is the busiest of the first 3 channels
    hist = model.fit(x, y, batch_size=32, epochs=3, default_root_dir=str(tmp_path), **QUIET)
    assert hist.history["loss"][-1] < hist.history["loss"][0]
    out = model.predict(x.numpy(), batch_size=32, **QUIET)
    assert out.shape == (96, 3)
    model.eval()
    torch.testing.assert_close(out, model(x), rtol=1e-5, atol=1e-6)  # batch by batch = all at once
    metrics = model.evaluate(np.asarray(x), y, batch_size=32, **QUIET)
    assert 0.0 <= metrics["accuracy"] <= 1.0


@pytest.mark.parametrize("bad, words", [
    (torch.rand(96, 6), ["[96, 6]", "encoder 'sequence'", "[N, T, 6]"]),
    (torch.rand(20, 96, 5), ["[20, 96, 5]", "[N, T, 6]"]),
])
def test_wrong_layouts_name_the_expected_one(bad, words):
    model = _model("sequence")
    model.compile(loss="ce")
    with pytest.raises(ValueError) as e:
        model.fit(bad, torch.zeros(len(bad), dtype=torch.long), batch_size=32, **QUIET)
    assert all(w in str(e.value) for w in words), str(e.value)


def test_time_steps_mismatch_and_static_batch_in_the_encoder():
    model = _model("sequence", time_steps=10)
    with pytest.raises(ValueError, match=r"encoder 'sequence' got 20 time steps \(dim 1 of the batch \[B, T, 6\]"):
        model(torch.rand(4, 20, 6))
    with pytest.raises(ValueError, match=r"reads batches \[B, T, 6\].*a time-first batch \[T, B, 6\] needs "
                                         r"encoder='passthrough'"):
        model(torch.rand(4, 6))
