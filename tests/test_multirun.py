"""``python train.py -m seed=...`` ends with every metric's mean ± sd over the seeds (``summary.md``/``.json``)."""

import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from spaic_train.multirun import MultirunSummary, format_summary, summarize_runs

REPO = Path(__file__).resolve().parents[1]


def _job(root: Path, name: str, overrides: list, metrics=None):
    d = root / name
    (d / ".hydra").mkdir(parents=True)
    (d / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(overrides))
    if metrics is not None:
        (d / "metrics.json").write_text(json.dumps(metrics))


def test_summary_groups_by_the_non_seed_overrides_and_averages(tmp_path):
    accs = {("1e-3", 0): 0.9, ("1e-3", 1): 0.8, ("3e-4", 0): 0.7, ("3e-4", 1): 0.75}
    for i, ((lr, seed), acc) in enumerate(accs.items()):
        _job(tmp_path, str(i), [f"optimizer.lr={lr}", f"seed={seed}", "trainer.max_epochs=1"],
             {"test_accuracy": acc, "recipe": "digits_snn", "output_dir": "x", "epochs": 1})
    _job(tmp_path, "4", ["optimizer.lr=3e-4", "seed=2", "trainer.max_epochs=1"])  # crashed: no metrics.json
    s = summarize_runs(tmp_path)
    assert set(s) == {"optimizer.lr=1e-3", "optimizer.lr=3e-4"}
    a = s["optimizer.lr=1e-3"]["metrics"]["test_accuracy"]
    assert a["mean"] == pytest.approx(0.85) and a["sd"] == pytest.approx(statistics.stdev([0.9, 0.8])) and a["n"] == 2
    assert s["optimizer.lr=3e-4"]["missing"] == ["4"]
    assert "epochs" not in s["optimizer.lr=1e-3"]["metrics"]
    assert "| test_accuracy | 0.85 ± 0.07071 | 2 | 0.8 | 0.9 |" in format_summary(s)


def test_callback_writes_next_to_the_runs(tmp_path):
    from omegaconf import OmegaConf

    for seed, acc in enumerate((0.5, 0.7, 0.9)):
        _job(tmp_path, str(seed), [f"seed={seed}"], {"val_accuracy": acc})
    MultirunSummary().on_multirun_end(OmegaConf.create({"hydra": {"sweep": {"dir": str(tmp_path)}}}))
    data = json.loads((tmp_path / "summary.json").read_text())
    assert data["all runs"]["metrics"]["val_accuracy"]["mean"] == pytest.approx(0.7)
    assert data["all runs"]["metrics"]["val_accuracy"]["sd"] == pytest.approx(0.2)
    assert "val_accuracy | 0.7 ± 0.2 | 3" in (tmp_path / "summary.md").read_text()


@pytest.mark.slow
def test_the_readme_multirun_over_seeds_runs_and_writes_the_summary(tmp_path):
    """As printed, no hydra.sweep.dir override: the default sweep dir resolves (it used to crash)."""
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""), HYDRA_FULL_ERROR="0")
    tiny = ["trainer.max_epochs=1", "trainer.limit_train_batches=2", "trainer.limit_val_batches=1",
            "trainer.limit_test_batches=1", "trainer.enable_progress_bar=false", "summary=false", "save_model=false"]
    res = subprocess.run([sys.executable, str(REPO / "train.py"), "-m", "seed=0,1", *tiny], cwd=tmp_path, env=env,
                         capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    (sweep,) = (tmp_path / "multirun" / "digits_snn").iterdir()
    data = json.loads((sweep / "summary.json").read_text())
    m = data["all runs"]["metrics"]
    assert m["test_accuracy"]["n"] == 2 and "sops_per_sample" in m
    runs = [json.loads((sweep / str(i) / "metrics.json").read_text())["test_accuracy"] for i in (0, 1)]
    assert m["test_accuracy"]["mean"] == pytest.approx(statistics.fmean(runs))
    assert "mean ± sd" in res.stdout + res.stderr
