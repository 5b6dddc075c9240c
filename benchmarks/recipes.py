"""Recipe figures for the README: run recipes exactly as a user does and print one Markdown row per recipe.

    python benchmarks/recipes.py digits_snn mnist_fc nmnist --seeds 0 1 2 --data ../shared/data
    python benchmarks/recipes.py digits_snn --seeds 0 --threads 1 -- trainer.max_epochs=3   # extra overrides

Each (recipe, seed) is one ``python train.py recipe=<recipe> seed=<seed> ...`` subprocess (the same code path as
the command line, timed from launch to exit), with its run directory under ``--out`` (a temporary directory by
default).  Columns:

* test accuracy: ``test_accuracy`` of each run's ``metrics.json``; mean ± sample standard deviation over the
  seeds when there are several (``seed`` seeds the weights, dropout and encoders; the data split keeps its own
  ``data.seed``);
* s / epoch: median over every epoch of every seed of the time the run logged for it (``Epoch k/N - B batches -
  X s`` in ``train.log``: training plus that epoch's validation);
* whole run: mean wall time of the ``python train.py`` process (imports, data loading, training, test, saving);
* date, CPU model (``/proc/cpuinfo``), torch version, intra-op threads (``--threads``, else torch's default).

Timings are only comparable on an otherwise idle machine.  Benchmarks are not tests: nothing here runs under pytest.
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from machine import machine_info

ROOT = Path(__file__).resolve().parent.parent
EPOCH_LINE = re.compile(r"Epoch (\d+)/(\d+) - \d+ batches - ([0-9.]+) s")
HEADER = ("| recipe | test accuracy | s / epoch (median) | whole run (s) | seeds | date | CPU | torch | threads |\n"
          "|---|---|---|---|---|---|---|---|---|")


def run_recipe(recipe: str, seed: int, out: Path, data: str | None, threads: int | None, extra: list[str],
               timeout: float) -> dict:
    """One ``python train.py`` run; returns its metrics.json plus ``wall_s`` and the per-epoch times."""
    run_dir = out / f"{recipe}-seed{seed}"
    args = [sys.executable, str(ROOT / "train.py"), f"recipe={recipe}", f"seed={seed}", f"hydra.run.dir={run_dir}",
            "trainer.enable_progress_bar=false"]
    if data is not None:
        args.append(f"paths.data={data}")
    if threads is not None:
        args.append(f"trainer.num_threads={threads}")
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    t0 = time.perf_counter()
    res = subprocess.run([*args, *extra], cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)
    wall = time.perf_counter() - t0
    if res.returncode != 0:
        raise RuntimeError(f"{recipe} seed {seed} failed (exit {res.returncode}):\n{res.stderr[-3000:]}")
    metrics = json.loads((run_dir / "metrics.json").read_text())
    epochs = [float(m.group(3)) for m in EPOCH_LINE.finditer((run_dir / "train.log").read_text())]
    return {**metrics, "wall_s": wall, "epoch_s": epochs}


def _mean_std(values: list[float], scale: float = 1.0, digits: int = 1) -> str:
    if len(values) == 1:
        return f"{values[0] * scale:.{digits}f}"
    return f"{statistics.mean(values) * scale:.{digits}f} ± {statistics.stdev(values) * scale:.{digits}f}"


def markdown_row(recipe: str, runs: list[dict], seeds: list[int], machine: dict, threads: int) -> str:
    acc = [r["test_accuracy"] for r in runs if "test_accuracy" in r]
    epoch_s = [t for r in runs for t in r["epoch_s"]]
    cells = [
        f"`{recipe}`",
        f"{_mean_std(acc, 100.0, digits=2)} %" if acc else "not measured (trainer.test=false)",
        f"{statistics.median(epoch_s):.2f}" if epoch_s else "-",
        _mean_std([r["wall_s"] for r in runs], digits=0),
        ", ".join(map(str, seeds)),
        datetime.date.today().isoformat(),
        machine["cpu"] or "unknown CPU",
        machine["torch"],
        str(threads),
    ]
    return "| " + " | ".join(cells) + " |"


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    command = " ".join(["python benchmarks/recipes.py", *argv])
    extra: list[str] = []
    if "--" in argv:
        i = argv.index("--")
        argv, extra = argv[:i], argv[i + 1:]
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("recipes", nargs="+", help="recipe names (conf/recipe/<name>.yaml)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0], help="seeds (default: 0)")
    parser.add_argument("--data", default=os.environ.get("SPAIC_TRAIN_DATA"),
                        help="paths.data for the runs (default: $SPAIC_TRAIN_DATA, else the recipes' default)")
    parser.add_argument("--threads", type=int, default=None, help="trainer.num_threads (default: torch's default)")
    parser.add_argument("--out", type=Path, default=None, help="keep the run directories here (default: a temp dir)")
    parser.add_argument("--timeout", type=float, default=3600.0, help="seconds per run (default 3600)")
    args = parser.parse_args(argv)
    known = {p.stem for p in (ROOT / "spaic_train" / "conf" / "recipe").glob("*.yaml")}
    unknown = [r for r in args.recipes if r not in known]
    if unknown:
        parser.error(f"unknown recipe(s) {', '.join(unknown)}; valid: {', '.join(sorted(known))}")

    machine = machine_info()
    if args.threads is not None:
        threads = args.threads
    else:
        import torch

        threads = torch.get_num_threads()
    with tempfile.TemporaryDirectory(prefix="spaic_recipes_") as tmp:
        out = args.out or Path(tmp)
        out.mkdir(parents=True, exist_ok=True)
        print(f"# {command}", flush=True)
        print(HEADER, flush=True)
        for recipe in args.recipes:
            runs = []
            for seed in args.seeds:
                runs.append(run_recipe(recipe, seed, out, args.data, args.threads, extra, args.timeout))
                acc = runs[-1].get("test_accuracy", math.nan)
                print(f"#   {recipe} seed {seed}: test_accuracy={acc:.4f}, {len(runs[-1]['epoch_s'])} epochs, "
                      f"{runs[-1]['wall_s']:.1f} s", file=sys.stderr, flush=True)
            print(markdown_row(recipe, runs, args.seeds, machine, threads), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
