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

import logging
import shutil
import sys
from collections.abc import Mapping
from contextlib import nullcontext
from importlib import import_module
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from spaic_train.config import ConfigError, register_configs
from spaic_train.console import route_to_root
from spaic_train.run_dir import RunDirLock, latest_run_dir, launcher_rank, lock_holder, resume_command

#: names of :mod:`spaic_train.recipe` served from here (imported on first use, see :func:`__getattr__`)
_RECIPE_NAMES = ("build_callbacks", "build_datamodule_from_config", "build_logger", "build_model", "compile_kwargs",
                 "fit_kwargs", "load_data", "model_config", "plain_config", "resolve_devices", "resolve_initializers",
                 "run", "sweep_objective")
__all__ = ["CONFIG_DIR", "ConfigError", "help_text", "main", *_RECIPE_NAMES]

CONFIG_DIR = Path(__file__).resolve().parent / "conf"

log = logging.getLogger("spaic_train.cli")


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


def _command_line_groups_win(cfg: DictConfig) -> None:
    """``trainer=gpu`` on the command line wins over the recipe: the recipe is merged after the group options
    (so that it can tune them), so each key that a group option chosen on the command line sets itself
    (``conf/trainer/gpu.yaml``: ``accelerator``, ``devices``, ``precision``) is set back to that option's value where
    a recipe changed it, and the run says so.  Keys given on the command line (``trainer.precision=32``) win
    over both."""
    from hydra.core.hydra_config import HydraConfig

    overrides = list(HydraConfig.get().overrides.task)
    explicit = {o.split("=", 1)[0].lstrip("+~") for o in overrides if "=" in o}
    for override in overrides:
        group, _, option = override.partition("=")
        path = CONFIG_DIR / group / f"{option}.yaml"
        if group not in ("model", "data", "optimizer", "trainer") or not path.is_file():
            continue
        own = {k: v for k, v in OmegaConf.to_container(OmegaConf.load(path)).items() if k != "defaults"}
        composed = OmegaConf.to_container(cfg[group], resolve=False)
        for key, value in own.items():
            if f"{group}.{key}" not in explicit and composed.get(key) != value:
                log.info(f"{override} (command line) wins over the recipe's {group}.{key}={composed.get(key)}: "
                         f"{group}.{key}={value}")
                OmegaConf.update(cfg, f"{group}.{key}", value, merge=False)


def _task(cfg: DictConfig) -> Any:
    from hydra.core.hydra_config import HydraConfig

    from spaic_train.interrupt import TrainingInterrupted  # imports Lightning, as the run does

    route_to_root()  # Hydra has configured logging: everything reaches its console handler and train.log
    out = Path(HydraConfig.get().runtime.output_dir)
    try:
        _command_line_groups_win(cfg)
        with RunDirLock(out) if launcher_rank() == 0 else nullcontext():
            recipe = _recipe()
            try:
                metrics = recipe.run(cfg)
            except recipe.DataNotFoundError as e:
                raise ConfigError(str(e)) from None
    except ConfigError as e:  # bad input, caught before anything was built: no traceback
        _discard_unused_run_dir()
        print(f"Error: {e}", file=sys.stderr)
        raise SystemExit(2) from None
    except TrainingInterrupted as e:
        again = resume_command(sys.argv[0], HydraConfig.get().overrides.task, out.resolve())
        if e.checkpoint is None:
            print(f"Interrupted at {e.where}, before any checkpoint was written; start again with the same "
                  "command", file=sys.stderr)
        else:
            state = "the state after the last finished batch" if e.exact else "the last checkpoint written before"
            print(f"Interrupted at {e.where}; saved {e.checkpoint} ({state}). Continue with:\n  {again}",
                  file=sys.stderr)
        raise SystemExit(130) from None
    return recipe.sweep_objective(metrics, list(cfg.get("objective") or []))


def help_text() -> str:
    """``python train.py --help``: usage, the recipes (with the first comment line of each) and the config
    groups, read from the config directory (no torch / Lightning import, no composition: it is instant)."""
    groups = {d.name: sorted(p.stem for p in d.glob("*.yaml")) for d in sorted(CONFIG_DIR.iterdir()) if d.is_dir()}
    default = _default_recipe()

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


def _default_recipe() -> str:
    return next((str(v) for entry in OmegaConf.load(CONFIG_DIR / "config.yaml").defaults
                 if isinstance(entry, Mapping) for k, v in entry.items() if k == "recipe"), "digits_snn")


def _checked_arguments(argv: list[str]) -> list[str]:
    """The command line as Hydra should read it, or a :class:`ConfigError` for what a user means differently:
    ``--recipe cifar_snn`` (Hydra overrides take no dashes), ``recipe=digits_snn.yaml`` (read as ``digits_snn``).
    Then, on the launching process only: ``trainer.resume=last`` without ``hydra.run.dir`` continues the latest
    run of the recipe (its directory is added), and a run directory that a live run holds stops here, before
    Hydra writes into it."""
    groups = {d.name for d in CONFIG_DIR.iterdir() if d.is_dir()}
    keys = groups | {"monitor", "paths", "seed", "save_model", "summary"}
    args = []
    for i, arg in enumerate(argv):
        name, eq, value = arg.lstrip("-").partition("=")
        if arg.startswith("--") and name.split(".")[0] in keys:
            value = value if eq else (argv[i + 1] if i + 1 < len(argv) else "<value>")
            raise ConfigError(f"unrecognized option {arg!r}: Hydra overrides are written without dashes, "
                              f"use {name}={value}")
        if arg.partition("=")[0] in groups and arg.endswith((".yaml", ".yml")):
            arg = arg.rsplit(".", 1)[0]  # recipe=digits_snn.yaml is recipe=digits_snn
        args.append(arg)
    if launcher_rank() != 0 or {"-m", "--multirun", "--cfg", "-c", "--info", "-i"} & set(args):
        return args
    run_dir = next((a.split("=", 1)[1] for a in args if a.startswith("hydra.run.dir=")), None)
    if run_dir is None and "trainer.resume=last" in args:
        recipe = next((a.split("=", 1)[1] for a in args if a.startswith("recipe=")), None) or _default_recipe()
        latest = latest_run_dir(Path("outputs") / recipe)
        if latest is None:
            raise ConfigError(f"trainer.resume=last: no run of recipe {recipe!r} with a checkpoint under "
                              f"outputs/{recipe}/ (looked for */checkpoints/last.ckpt); give the run to continue "
                              f"with hydra.run.dir=<its directory>, or leave trainer.resume out to start afresh")
        print(f"trainer.resume=last: continuing {latest} (the latest run of {recipe})", file=sys.stderr)
        run_dir = str(latest)
        args.append(f"hydra.run.dir={run_dir}")
    holder = lock_holder(run_dir) if run_dir is not None else None
    if holder is not None:
        with RunDirLock(run_dir):  # raises the ConfigError naming the holder
            pass
    return args


def main() -> None:
    """Console entry point (``spaic-train`` and ``python train.py``): parse Hydra's command line and run.

    Exit status: 0 done, 2 bad input (one message, no traceback, no run directory), 130 Ctrl-C (during start-up:
    one line; during training: the command that continues the run exactly)."""
    if any(arg in ("--help", "-h") for arg in sys.argv[1:]):
        print(help_text())
        return
    try:
        try:
            sys.argv[1:] = _checked_arguments(sys.argv[1:])
        except ConfigError as e:
            print(f"Error: {e}", file=sys.stderr)
            raise SystemExit(2) from None
        import hydra  # after --help, which must not wait for it

        register_configs()
        hydra.main(config_path=str(CONFIG_DIR), config_name="config", version_base="1.3")(_task)()
    except KeyboardInterrupt:  # Ctrl-C before training started (or after it ended): nothing to continue
        _discard_unused_run_dir()
        print("Interrupted (Ctrl-C) before training started; nothing to continue", file=sys.stderr)
        raise SystemExit(130) from None


if __name__ == "__main__":
    main()
