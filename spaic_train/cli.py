"""Hydra entry point: ``python train.py`` (repo root) and the ``spaic-train`` console script.

::

    python train.py                                          # default recipe digits_snn (no download, < 2 min)
    python train.py recipe=cifar_snn data.format=folder data.root=/data/cifar10-jpeg
    python train.py trainer.max_epochs=1 optimizer.lr=3e-4   # override any key
    python train.py --cfg job                                # print the composed config, run nothing
    python train.py -m optimizer.lr=1e-3,3e-4                # sweep: one output dir per value

Configs live in ``spaic_train/conf`` (``<repo>/conf`` and ``<repo>/recipes`` are links to it): the primary
``config.yaml``, the groups ``model/``, ``data/``, ``optimizer/``, ``trainer/`` and the recipes ``recipe/``.
They are validated against the structured configs of :mod:`spaic_train.config` while Hydra composes them, then
turned into objects and run by :mod:`spaic_train.recipe` (:func:`~spaic_train.recipe.run`).

This module stays light: ``--help`` reads the config directory without importing torch or Lightning.  The names
of :mod:`spaic_train.recipe` (``build_model``, ``run``, ...) are also available here, imported on first use.
"""

from __future__ import annotations

import shutil
import sys
from collections.abc import Mapping
from importlib import import_module
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from spaic_train.config import ConfigError, register_configs
from spaic_train.console import route_to_root

#: names of :mod:`spaic_train.recipe` served from here (imported on first use, see :func:`__getattr__`)
_RECIPE_NAMES = ("build_callbacks", "build_datamodule_from_config", "build_logger", "build_model", "compile_kwargs",
                 "fit_kwargs", "load_data", "model_config", "plain_config", "resolve_devices", "resolve_initializers",
                 "run", "sweep_objective")
__all__ = ["CONFIG_DIR", "ConfigError", "help_text", "main", *_RECIPE_NAMES]

CONFIG_DIR = Path(__file__).resolve().parent / "conf"


def _recipe():
    """:mod:`spaic_train.recipe`, imported when a run starts (or one of its names is used): importing it imports
    torch and Lightning, which ``--help`` must not wait for."""
    return import_module("spaic_train.recipe")


def __getattr__(name: str) -> Any:
    if name in _RECIPE_NAMES:
        return getattr(_recipe(), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _discard_unused_run_dir() -> None:
    """Remove the Hydra run directory of a job that stopped before building anything (it holds only Hydra's
    ``.hydra/`` and the log), and the parents that this leaves empty, up to the launch directory."""
    try:
        from hydra.core.hydra_config import HydraConfig  # hydra is imported only when a run starts (--help: no)

        hc = HydraConfig.get()
        out = Path(hc.runtime.output_dir)
        own = {".hydra", f"{hc.job.name}.log"}
    except Exception:  # not inside a Hydra job
        return
    if not out.is_dir() or not {p.name for p in out.iterdir()} <= own:
        return
    shutil.rmtree(out)
    cwd = Path.cwd().resolve()
    for parent in out.resolve().parents:
        if cwd not in parent.parents or any(parent.iterdir()):
            break
        parent.rmdir()


def _task(cfg: DictConfig) -> Any:
    recipe = _recipe()
    route_to_root()  # Hydra has configured logging: everything reaches its console handler and train.log
    try:
        metrics = recipe.run(cfg)
    except (ConfigError, recipe.DataNotFoundError) as e:  # bad input, caught before anything was built: no traceback
        _discard_unused_run_dir()
        print(f"Error: {e}", file=sys.stderr)
        raise SystemExit(2) from None
    return recipe.sweep_objective(metrics, list(cfg.get("objective") or []))


def help_text() -> str:
    """``python train.py --help``: usage, the recipes (with the first comment line of each) and the config
    groups, read from the config directory (no torch / Lightning import, no composition: it is instant)."""
    groups = {d.name: sorted(p.stem for p in d.glob("*.yaml")) for d in sorted(CONFIG_DIR.iterdir()) if d.is_dir()}
    default = next((str(v) for entry in OmegaConf.load(CONFIG_DIR / "config.yaml").defaults
                    if isinstance(entry, Mapping) for k, v in entry.items() if k == "recipe"), None)

    def summary(path: Path) -> str:
        for line in path.read_text().splitlines():
            text = line.lstrip("# ").strip()
            if line.startswith("#") and text and not text.startswith("@package"):
                return text if len(text) <= 80 else text[:79].rstrip(" ,;") + "…"
        return ""

    recipes = [f"  {name + (' *' if name == default else ''):<16}{summary(CONFIG_DIR / 'recipe' / f'{name}.yaml')}"
               for name in groups.pop("recipe", [])]
    lines = [
        "spaic-train (python train.py): train a spiking network from a Hydra recipe.",
        "",
        "Usage:",
        "  python train.py [recipe=<name>] [group=<option> ...] [section.key=value ...]",
        "  python train.py recipe=mnist_fc paths.data=/data       # datasets under $SPAIC_TRAIN_DATA or paths.data",
        "  python train.py trainer.max_epochs=1 optimizer.lr=3e-4",
        "  python train.py --cfg job [overrides]                  # print the composed config (every key); run nothing",
        "  python train.py -m optimizer.lr=1e-3,3e-4              # sweep: one run per value",
        "  python train.py --hydra-help                           # Hydra's own options",
        "",
        "Recipes (recipe=<name>; * = the default):",
        *recipes,
        "",
        "Config groups (group=<option>):",
        *(f"  {group}: {', '.join(options)}" for group, options in groups.items()),
        "",
        "Where things go: each run writes outputs/<recipe>/<date>/ (train.log, metrics.json, model.pt, tb/ for",
        "TensorBoard, checkpoints/); datasets are read under $SPAIC_TRAIN_DATA (default ./data); image archives are",
        "extracted once under $SPAIC_TRAIN_CACHE (default ~/.cache/spaic_train).",
    ]
    return "\n".join(lines)


def main() -> None:
    """Console entry point (``spaic-train`` and ``python train.py``): parse Hydra's command line and run."""
    if any(arg in ("--help", "-h") for arg in sys.argv[1:]):
        print(help_text())
        return
    import hydra  # after --help, which must not wait for it

    register_configs()
    hydra.main(config_path=str(CONFIG_DIR), config_name="config", version_base="1.3")(_task)()


if __name__ == "__main__":
    main()
