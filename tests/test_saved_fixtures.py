"""Files written by an earlier main (commit 0c5775f, ``tests/fixtures/main_0c5775f/make_fixtures.py``) still work:
the saved model loads and predicts the same, and the Lightning checkpoint resumes to the weights of the
uninterrupted run recorded then."""

from __future__ import annotations

import importlib.util
import shutil
from pathlib import Path

import torch

import spaic_train as st

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "main_0c5775f"


def _maker():
    spec = importlib.util.spec_from_file_location("make_fixtures_0c5775f", FIXTURES / "make_fixtures.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_model_saved_by_0c5775f_loads_with_the_same_outputs():
    expected = torch.load(FIXTURES / "expected.pt", weights_only=True)
    model = st.load_model(FIXTURES / "model.pt")
    assert expected["predict"].std() > 0  # the fixture's network is alive, so the comparison means something
    torch.testing.assert_close(model.predict(expected["probe"]), expected["predict"], rtol=0, atol=1e-6)


def test_checkpoint_written_by_0c5775f_resumes_to_the_uninterrupted_weights(tmp_path):
    maker = _maker()
    expected = torch.load(FIXTURES / "expected.pt", weights_only=True)["two_epoch_state"]
    ckpt_dir = tmp_path / "ckpt"
    ckpt_dir.mkdir()
    shutil.copy(FIXTURES / "epoch1.ckpt", ckpt_dir / "last.ckpt")
    x, y = maker.data()
    torch.manual_seed(123)  # other initial weights than the recorded run: only the checkpoint can bring them back
    model = maker.build()
    model.compile(optimizer="adam", lr=1e-2, loss="ce_rate", metrics=["accuracy"])
    model.fit(x, y, epochs=2, resume="last", **maker.fit_kwargs(ckpt_dir))
    state = model.state_dict()
    assert sorted(state) == sorted(expected)
    for name, value in expected.items():
        torch.testing.assert_close(state[name], value, rtol=1e-5, atol=1e-6, msg=name)
