"""What a user sees: the console of ``fit`` / ``evaluate`` / ``predict`` (captured output), the numba
first-compile notice, and where the library's messages go."""

from __future__ import annotations

import io
import logging
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

import spaic_train as st
from spaic_train.layers import Full, Input
from spaic_train.neurons.kernels import dispatch, numba_lif

REPO = Path(__file__).resolve().parents[1]
NOISE = ("GPU available", "TPU available", "litlogger", "LeafSpec", "Trainer.fit` stopped")

README_LIKE = textwrap.dedent("""
    import torch
    import spaic_train as st
    from spaic_train.layers import Full, Input

    torch.manual_seed(0)
    x, y = torch.rand(96, 6) * 4, torch.randint(0, 3, (96,))
    model = st.Sequential([Input((6,)), Full(16, name="hidden"), Full(3, name="out")], time_steps=4)
    model.compile(optimizer="adam", lr=1e-2, loss="ce_rate", metrics=["accuracy"])
    model.fit(x, y, epochs=2, batch_size=32, validation_split=0.25, seed=0)
    print("EVAL", model.evaluate(x, y))
    print("PRED", tuple(model.predict(x).shape))
""")


def _python(code: str, cwd: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    return subprocess.run([sys.executable, "-c", code], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=300)


def test_fit_evaluate_predict_console_is_one_line_per_epoch_without_lightning_noise(tmp_path):
    """stdout is a pipe here (as in CI or `> log.txt`): epoch lines only, no carriage returns, no repeated
    Lightning banners; the TensorBoard location is said once."""
    res = _python(README_LIKE, tmp_path)
    assert res.returncode == 0, res.stderr[-3000:]
    out, err = res.stdout, res.stderr
    assert "\r" not in out and "\r" not in err
    for noise in NOISE:
        assert noise not in out and noise not in err, noise
    epochs = [line for line in out.splitlines() if line.startswith("Epoch ")]
    assert len(epochs) == 2 and epochs[0].startswith("Epoch 1/2 - 3 batches - ") and epochs[1].startswith("Epoch 2/2")
    for key in ("loss: ", "accuracy: ", "val_loss: ", "val_accuracy: "):
        assert key in epochs[0]
    tb = [line for line in out.splitlines() if line.startswith("TensorBoard logs: ")]
    assert tb == [f"TensorBoard logs: {Path('runs', 'spaic_train', 'version_0')} "
                  f"(view: tensorboard --logdir {Path('runs', 'spaic_train', 'version_0')})"]
    assert (tmp_path / "runs" / "spaic_train" / "version_0").is_dir()
    assert out.count("EVAL {'loss': ") == 1 and "PRED (96, 3)" in out
    assert err.strip() == "", err  # no warnings either


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def _render(text: str) -> list[str]:
    """Lines as a terminal shows them: ``\\r`` returns to the line start, ``ESC[K`` erases to its end."""
    lines, line, col = [], [], 0
    for token in re.split(r"(\r|\n|\x1b\[K)", text):
        if token == "\r":
            col = 0
        elif token == "\n":
            lines.append("".join(line))
            line, col = [], 0
        elif token == "\x1b[K":
            del line[col:]
        else:
            line[col:col + len(token)] = list(token)
            col += len(token)
    return [*lines, "".join(line)] if line else lines


def test_live_bar_on_a_terminal_is_erased_before_each_epoch_line(monkeypatch, caplog):
    term = _Terminal()
    monkeypatch.setattr(sys, "stdout", term)
    torch.manual_seed(0)
    model = st.Sequential([Input((6,)), Full(3, name="out")], time_steps=4)
    model.compile(optimizer="adam", lr=1e-2, loss="ce_rate")
    with caplog.at_level(logging.INFO, logger="spaic_train"):
        model.fit(torch.rand(64, 6) * 4, torch.randint(0, 3, (64,)), epochs=2, batch_size=16, logger=False,
                  validation_split=0.25)
    epochs = [r.getMessage() for r in caplog.records if r.getMessage().startswith("Epoch ")]
    assert [e[:10] for e in epochs] == ["Epoch 1/2 ", "Epoch 2/2 "]
    drawn = term.getvalue()
    assert "\rEpoch 1/2 3/3 [" in drawn and "- loss: " in drawn  # the live bar, redrawn in place
    bar_lines = [line for line in _render(drawn) if re.match(r"Epoch \d/2 \d+/", line)]
    assert bar_lines == []  # every bar was erased: only the epoch lines stay on screen


def test_numba_compile_notice_once(monkeypatch, caplog):
    """The first use on a machine (nothing in numba's cache for this CPU) says what the pause is, once."""
    monkeypatch.setattr(dispatch, "USE_C", False)  # numba's turn: a machine without a working C compiler
    dispatch._kernels("cpu")  # the kernels as this session has them
    assert numba_lif.kernels_cached()  # compiled by now, so cached for this CPU
    monkeypatch.delitem(dispatch._kernel_mods, "numba")
    monkeypatch.setattr(numba_lif, "kernels_cached", lambda: False)
    with caplog.at_level(logging.INFO, logger="spaic_train"):
        assert dispatch._kernels("cpu") is numba_lif
        assert dispatch._kernels("cpu") is numba_lif
    notices = [r.getMessage() for r in caplog.records if "compiling the numba LIF kernels" in r.getMessage()]
    assert len(notices) == 1 and numba_lif.cache_dir() in notices[0] and "once per machine" in notices[0]


@pytest.mark.slow
def test_numba_compile_notice_on_a_fresh_cache_only(tmp_path):
    """Real first compile (empty NUMBA_CACHE_DIR): one notice; a second process finds the cache and says nothing."""
    code = "import torch, spaic_train as st; st.neurons.load_compiled_kernels()"
    env_code = f"import os; os.environ['NUMBA_CACHE_DIR'] = {str(tmp_path / 'numba')!r}; {code}"
    first, second = _python(env_code, tmp_path), _python(env_code, tmp_path)
    assert first.returncode == 0 and second.returncode == 0, first.stderr + second.stderr
    assert first.stdout.count("compiling the numba LIF kernels") == 1
    assert "compiling" not in second.stdout
