"""Optuna sweeps over accuracy and energy: objective = validation metrics, resumable study, Pareto front files."""

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from spaic_train.cli import sweep_objective

REPO = Path(__file__).resolve().parents[1]


def _optuna():
    try:
        import hydra_plugins.hydra_optuna_sweeper  # noqa: F401
        import optuna
    except ImportError:
        pytest.skip("the Optuna sweeper is not installed (pip install 'spaic_train[sweep]')")
    return optuna


def test_the_objective_is_validation_metrics_never_the_test_set():
    metrics = {"val_accuracy": 0.9, "test_accuracy": 0.95, "energy_uj_per_sample": 0.2}
    assert sweep_objective(metrics, ["val_accuracy"]) == 0.9
    assert sweep_objective(metrics, ["val_accuracy", "energy_uj_per_sample"]) == (0.9, 0.2)
    assert sweep_objective(metrics, ["test_accuracy"]) is None  # the sweeper fails such a trial
    assert sweep_objective({"test_accuracy": 0.95}, ["val_accuracy"]) is None


def test_front_files_hold_exactly_the_non_dominated_trials(tmp_path):
    optuna = _optuna()
    from spaic_train.sweep import write_front

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(directions=["maximize", "minimize"])
    points = [(0.9, 1.0), (0.8, 0.5), (0.85, 2.0), (0.95, 3.0), (0.7, 0.6)]  # (0.85, 2) and (0.7, 0.6) dominated
    for values in points:
        t = study.ask()
        t.suggest_float("x", 0, 1)
        study.tell(t, values)
    write_front(study, tmp_path, ["val_accuracy", "energy_uj_per_sample"])
    with open(tmp_path / "pareto.csv") as f:
        rows = list(csv.DictReader(f))
    assert sorted(int(r["trial"]) for r in rows) == [0, 1, 3]
    assert {"val_accuracy", "energy_uj_per_sample", "x"} <= set(rows[0])
    assert len((tmp_path / "trials.csv").read_text().strip().splitlines()) == 1 + len(points)
    assert (tmp_path / "pareto.png").stat().st_size > 1000


@pytest.mark.slow
def test_digits_sweep_runs_resumes_to_n_trials_in_total_and_writes_its_front(tmp_path):
    _optuna()
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""), HYDRA_FULL_ERROR="0")
    tiny = ["trainer.max_epochs=1", "trainer.limit_train_batches=3", "trainer.limit_val_batches=2",
            "trainer.limit_test_batches=1", "trainer.enable_progress_bar=false",
            "hydra.sweeper.sampler.population_size=2", f"hydra.sweep.dir={tmp_path / 'sweep'}"]

    def sweep(n):
        res = subprocess.run([sys.executable, str(REPO / "train.py"), "-m", "recipe=digits_pareto",
                              f"hydra.sweeper.n_trials={n}", *tiny], cwd=tmp_path, env=env, capture_output=True,
                             text=True, timeout=900)
        assert res.returncode == 0, res.stderr[-3000:]
        return res

    sweep(2)
    first = (tmp_path / "sweep" / "0" / "metrics.json").read_text()
    res = sweep(3)  # the same sweep dir: one more trial, in a new folder
    assert "2 trial(s) finished, 1 to run" in res.stdout + res.stderr
    d = tmp_path / "sweep"
    assert sorted(p.name for p in d.iterdir() if p.name.isdigit()) == ["0", "1", "2"]
    assert (d / "0" / "metrics.json").read_text() == first  # not overwritten
    with open(d / "trials.csv") as f:
        trials = list(csv.DictReader(f))
    assert len(trials) == 3 and all(t["state"] == "COMPLETE" for t in trials)
    for t in trials:  # the objective values are the runs' validation accuracy and energy
        m = json.loads((d / t["trial"] / "metrics.json").read_text())
        assert float(t["val_accuracy"]) == pytest.approx(m["val_accuracy"])
        assert float(t["energy_uj_per_sample"]) == pytest.approx(m["energy_uj_per_sample"])
    with open(d / "pareto.csv") as f:
        front = list(csv.DictReader(f))
    assert 1 <= len(front) <= 3 and (d / "pareto.png").is_file()
    sweep(3)  # complete: nothing more runs
    assert sorted(p.name for p in d.iterdir() if p.name.isdigit()) == ["0", "1", "2"]
