"""Sweeps over accuracy and energy: a resumable Optuna sweeper for Hydra that writes the Pareto front.

``python train.py -m recipe=digits_pareto`` (needs ``pip install 'spaic_train[sweep]'``: hydra-optuna-sweeper
1.3, optuna < 3, matplotlib) searches the ranges of ``hydra.sweeper.params`` with NSGA-II for the objectives of
``objective`` (default ``[val_accuracy]``; ``digits_pareto``: ``[val_accuracy, energy_uj_per_sample]``, maximised
and minimised).  The objectives are validation metrics, never the test set: the task returns the run's
``metrics.json`` values named by ``objective``.

:class:`ResumableOptunaSweeper` wraps the plugin's sweeper:

* the study lives in ``<sweep dir>/optuna.db`` (SQLite; ``storage`` overrides it), so with a fixed
  ``hydra.sweep.dir`` a rerun loads it and runs only the trials still missing up to ``n_trials`` *in total*,
  numbering the new job folders after the existing ones (nothing is overwritten);
* at the end it writes ``trials.csv`` (every finished trial: number, state, objective values, parameters),
  ``pareto.csv`` (the non-dominated trials; the best one for a single objective) and ``pareto.png`` (all trials and
  the front, first two objectives).
"""

from __future__ import annotations

import csv
import logging
from pathlib import Path
from typing import Any, Optional

from hydra.plugins.sweeper import Sweeper

__all__ = ["ResumableOptunaSweeper", "write_front"]

log = logging.getLogger("spaic_train")


def _finished(study) -> list:
    import optuna

    done = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.FAIL, optuna.trial.TrialState.PRUNED)
    return [t for t in study.trials if t.state in done]


def write_front(study, out_dir: str | Path, objective_names: Optional[list[str]] = None) -> list:
    """``trials.csv``, ``pareto.csv`` and ``pareto.png`` of ``study`` in ``out_dir``; returns the front's trials."""
    import optuna

    out = Path(out_dir)
    complete = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    n_obj = len(study.directions)
    names = list(objective_names or [])[:n_obj] + [f"value_{i}" for i in range(len(objective_names or []), n_obj)]
    front = (study.best_trials if n_obj > 1 else [study.best_trial]) if complete else []
    params = sorted({k for t in study.trials for k in t.params})

    def rows(trials):
        for t in trials:
            values = list(t.values) if t.values is not None else [None] * n_obj
            yield [t.number, t.state.name, *values, *(t.params.get(k) for k in params)]

    header = ["trial", "state", *names, *params]
    for name, trials in (("trials.csv", _finished(study)), ("pareto.csv", front)):
        with open(out / name, "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(header)
            w.writerows(rows(sorted(trials, key=lambda t: t.number)))
    if complete and n_obj >= 2:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(5, 4), dpi=120)
        ax.scatter([t.values[1] for t in complete], [t.values[0] for t in complete], s=14, c="0.6", label="trials")
        pts = sorted((t.values[1], t.values[0]) for t in front)
        ax.plot([p[0] for p in pts], [p[1] for p in pts], "o-", c="C3", ms=5, label="Pareto front")
        ax.set_xlabel(f"{names[1]} ({study.directions[1].name.lower()})")
        ax.set_ylabel(f"{names[0]} ({study.directions[0].name.lower()})")
        ax.legend()
        ax.grid(alpha=0.3)
        fig.tight_layout()
        fig.savefig(out / "pareto.png")
        plt.close(fig)
    return front


class ResumableOptunaSweeper(Sweeper):
    """hydra-optuna-sweeper's ``OptunaSweeper`` with a resumable study in the sweep directory and the Pareto front
    written at the end (same arguments as the plugin's sweeper; ``storage`` default ``sqlite:///<sweep
    dir>/optuna.db``, ``study_name`` default ``spaic_train``)."""

    def __init__(self, sampler: Any, direction: Any, storage: Optional[str], study_name: Optional[str],
                 n_trials: int, n_jobs: int, max_failure_rate: float, search_space: Any = None,
                 custom_search_space: Optional[str] = None, params: Any = None):
        try:
            from hydra_plugins.hydra_optuna_sweeper._impl import OptunaSweeperImpl
        except ImportError as e:  # pragma: no cover - the sweep extra
            raise ImportError("the Optuna sweeper needs pip install 'spaic_train[sweep]' (hydra-optuna-sweeper 1.3, "
                              "optuna < 3)") from e
        if isinstance(n_trials, bool) or not isinstance(n_trials, int) or n_trials < 1:
            raise ValueError(f"hydra.sweeper.n_trials must be an int >= 1, got {n_trials!r}")
        self.n_total = n_trials
        self.impl = OptunaSweeperImpl(sampler, direction, storage, study_name or "spaic_train", n_trials, n_jobs,
                                      max_failure_rate, search_space, custom_search_space, params)
        self.config = None

    def setup(self, *, hydra_context, task_function, config) -> None:
        self.impl.setup(hydra_context=hydra_context, task_function=task_function, config=config)
        self.config = config

    def sweep(self, arguments: list[str]) -> None:
        import optuna

        sweep_dir = Path(str(self.config.hydra.sweep.dir))
        sweep_dir.mkdir(parents=True, exist_ok=True)
        if self.impl.storage is None:
            self.impl.storage = f"sqlite:///{(sweep_dir / 'optuna.db').resolve()}"
        try:
            study = optuna.load_study(study_name=self.impl.study_name, storage=self.impl.storage)
            asked, finished = len(study.trials), len(_finished(study))
        except KeyError:  # a new study
            asked = finished = 0
        remaining = max(0, self.n_total - finished)
        log.info(f"Optuna study {self.impl.study_name!r} in {self.impl.storage}: {finished} trial(s) finished, "
                 f"{remaining} to run (n_trials={self.n_total} in total)")
        if remaining:
            self.impl.n_trials = remaining
            self.impl.job_idx = asked  # new job folders follow the existing ones
            self.impl.sweep(arguments)
        study = optuna.load_study(study_name=self.impl.study_name, storage=self.impl.storage)
        objective = list(self.config.get("objective") or [])
        front = write_front(study, sweep_dir, objective)
        log.info(f"Pareto front: {len(front)} trial(s) in {sweep_dir / 'pareto.csv'}"
                 + (f" and {sweep_dir / 'pareto.png'}" if len(study.directions) > 1 else ""))
