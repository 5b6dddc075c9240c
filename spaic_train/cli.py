"""Hydra entry point: ``python train.py`` (repo root) and the ``spaic-train`` console script.

::

    python train.py                                          # default recipe digits_snn (no download, < 2 min)
    python train.py recipe=cifar_snn data.format=folder data.root=/data/cifar10-jpeg
    python train.py trainer.max_epochs=1 optimizer.lr=3e-4   # override any key
    python train.py --cfg job                                # print the composed config, run nothing
    python train.py -m optimizer.lr=1e-3,3e-4                # sweep: one output dir per value

Configs live in ``spaic_train/conf`` (``<repo>/conf`` and ``<repo>/recipes`` are links to it): the primary
``config.yaml``, the groups ``model/``, ``data/``, ``optimizer/``, ``trainer/`` and the recipes ``recipe/``.
They are validated against the structured configs of :mod:`spaic_train.config` while Hydra composes them,
then turned into objects 1:1 (see :func:`build_datamodule_from_config`, :func:`build_model`,
:func:`compile_kwargs`, :func:`fit_kwargs`) and run by :func:`run`.

Each run writes into its Hydra output directory (``outputs/<recipe>/<date>`` or ``multirun/<recipe>/<date>/<n>``):
``.hydra/`` (the composed config and overrides), ``tb/`` (TensorBoard, with
:class:`~spaic_train.monitoring.TensorBoardMonitor`), ``checkpoints/``, ``model.pt`` and ``metrics.json``.
"""

from __future__ import annotations

import difflib
import inspect
import json
import logging
import os
import shutil
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Optional

from omegaconf import DictConfig, OmegaConf

from spaic_train.config import ConfigError, register_configs, validate_config

__all__ = [
    "ConfigError",
    "build_callbacks",
    "build_datamodule_from_config",
    "build_logger",
    "build_model",
    "compile_kwargs",
    "fit_kwargs",
    "help_text",
    "load_data",
    "main",
    "resolve_devices",
    "resolve_initializers",
    "run",
]

#: ``trainer.*`` keys handed to ``lightning.Trainer`` as they are (when not null)
LIGHTNING_KEYS = (
    "limit_train_batches", "limit_val_batches", "limit_test_batches", "num_sanity_val_steps", "gradient_clip_val",
    "accumulate_grad_batches", "log_every_n_steps", "deterministic", "benchmark", "num_nodes",
)
CONFIG_DIR = Path(__file__).resolve().parent / "conf"

log = logging.getLogger(__name__)


# ---------------------------------------------------------------------------------------------------------------
# config -> objects
# ---------------------------------------------------------------------------------------------------------------
def _plain(node: Any) -> Any:
    """A resolved plain-Python copy of a config node (dicts, lists, scalars)."""
    if isinstance(node, (DictConfig,)) or OmegaConf.is_list(node):
        return OmegaConf.to_container(node, resolve=True)
    return node


def _did_you_mean(key: str, valid: list[str]) -> str:
    close = difflib.get_close_matches(key, valid, n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def resolve_initializers(value: Any, where: str) -> Any:
    """Turn ``{init: <name>, **params}`` dicts (at any depth) into :mod:`spaic_train.init` initializers.

    ``<name>`` is one of the lower-case factory functions of ``spaic_train.init`` (``kaiming_uniform``,
    ``uniform``, ``normal``, ``constant``, ``xavier_uniform``, ...).  Nothing is ``eval``-ed.

    Raises:
        ConfigError: unknown initializer name or bad parameters, naming ``where``.
    """
    from spaic_train import init as _init

    if isinstance(value, list):
        return [resolve_initializers(v, f"{where}[{i}]") for i, v in enumerate(value)]
    if not isinstance(value, dict):
        return value
    if "init" not in value:
        return {k: resolve_initializers(v, f"{where}.{k}") for k, v in value.items()}
    params = {k: v for k, v in value.items() if k != "init"}
    name = value["init"]
    names = [n for n in _init.__all__ if n[:1].islower()]
    if not isinstance(name, str) or name not in names:
        raise ConfigError(f"{where}.init: unknown initializer {name!r}; valid: {', '.join(names)}"
                          f"{_did_you_mean(str(name), names)}")
    try:
        return getattr(_init, name)(**params)
    except (TypeError, ValueError) as e:
        raise ConfigError(f"{where}: {name}({', '.join(f'{k}={v!r}' for k, v in params.items())}): {e}") from e


def build_datamodule_from_config(data_cfg: Mapping) -> Any:
    """``build_datamodule(**data_cfg)``, re-checked against the schema of ``data_cfg['name']``.

    (Composition already validated the keys of the chosen ``data`` option; this catches a ``data.name=``
    override that switches to a dataset with other options.)
    """
    from spaic_train.config import data_schema
    from spaic_train.data import build_datamodule

    data = dict(_plain(data_cfg))
    name = data.get("name")
    try:
        schema = data_schema(name)
    except (TypeError, ValueError) as e:
        raise ConfigError(f"data.name: {e}") from e
    try:
        checked = OmegaConf.merge(OmegaConf.structured(schema), data)
    except Exception as e:  # omegaconf ValidationError / ConfigKeyError
        key = getattr(e, "key", None)
        msg = getattr(e, "msg", str(e)).splitlines()[0]
        raise ConfigError(f"data.{key}: {msg} (data.name={name!r})" if key else f"data: {msg}") from e
    return build_datamodule(**OmegaConf.to_container(checked, resolve=True))


def _check_layer_kwargs(cls: type, kwargs: dict, where: str) -> None:
    params = inspect.signature(cls.__init__).parameters
    if any(p.kind is p.VAR_KEYWORD for p in params.values()):
        return  # extra keys go to Connection, which names any unknown one
    valid = [k for k in params if k != "self"]
    for key in kwargs:
        if key not in params:
            raise ConfigError(f"{where}.{key}: {cls.__name__} has no argument {key!r}{_did_you_mean(key, valid)}; "
                              f"valid: {', '.join(valid)}")


def build_model(model_cfg: Mapping, input_shape: Optional[tuple] = None) -> Any:
    """A :class:`~spaic_train.keras.Sequential` (or a functional :class:`~spaic_train.keras.Model`) from the
    ``model`` section.

    ``Input(shape=model.input.shape or input_shape, encoder=..., **encoder_kwargs)`` (named ``input``) followed by
    one layer per ``model.layers`` entry (``LAYERS[type](**rest)``), with ``Feedback(**entry)`` for each
    ``model.feedback`` entry, ``time_steps``, ``decoder``, ``dt`` and ``name``.  Each layer reads the previous
    entry; an entry with ``inbound: <name>`` or ``inbound: [<name>, ...]`` reads those earlier layers instead
    (a residual block: ``{type: Conv2dSyn, shortcut: auto, inbound: [block_a, block_in]}``), and the model is
    then a functional ``Model`` whose output is the last entry.

    Raises:
        ConfigError: unknown layer type or argument, bad initializer, unknown ``inbound`` name, or a layer that
            does not fit; the message names the key (``model.layers[2].unitz``).
    """
    from spaic_train.keras import LAYERS, Feedback, Input, Model, Sequential

    m = dict(_plain(model_cfg))
    inp = dict(m.get("input") or {})
    shape = inp.get("shape") or input_shape
    if shape is None:
        raise ConfigError("model.input.shape: unknown input shape; set it or use a datamodule with input_shape")
    layers_cfg = m.get("layers") or []
    if not layers_cfg:
        raise ConfigError("model.layers: empty; list the layers after the input, e.g. [{type: Flatten}, "
                          "{type: Full, units: 10}]")
    try:
        layers = [Input(tuple(shape), encoder=inp.get("encoder", "direct"), name="input",
                        **(inp.get("encoder_kwargs") or {}))]
    except (TypeError, ValueError) as e:
        raise ConfigError(f"model.input: {e}") from e
    graph = any(isinstance(entry, dict) and "inbound" in entry for entry in layers_cfg)
    outputs = {"input": layers[0].output}  # graph mode: the output of every named layer so far
    last = layers[0].output
    for i, entry in enumerate(layers_cfg):
        where = f"model.layers[{i}]"
        if not isinstance(entry, dict) or "type" not in entry:
            raise ConfigError(f"{where}: each layer is a mapping with a 'type' key ({LAYERS.describe()}), "
                              f"got {entry!r}")
        kwargs = {k: v for k, v in entry.items() if k not in ("type", "inbound")}
        try:
            cls = LAYERS.get(entry["type"], owner=f"{where}.type")
        except (TypeError, ValueError) as e:
            raise ConfigError(str(e)) from e
        if cls is Input:
            raise ConfigError(f"{where}.type: the Input is built from model.input; list only the layers after it")
        _check_layer_kwargs(cls, kwargs, where)
        kwargs = resolve_initializers(kwargs, where)
        try:
            layer = cls(**kwargs)
        except (TypeError, ValueError) as e:
            raise ConfigError(f"{where} ({cls.__name__}): {e}") from e
        layers.append(layer)
        if graph:
            last = _call_layer(layer, entry.get("inbound"), outputs, last, where)
            if layer.name:
                outputs[layer.name] = last
    feedback = []
    for i, entry in enumerate(m.get("feedback") or []):
        where = f"model.feedback[{i}]"
        if not isinstance(entry, dict) or "source" not in entry or "target" not in entry:
            raise ConfigError(f"{where}: each feedback is a mapping with 'source' and 'target' layer names, "
                              f"got {entry!r}")
        try:
            feedback.append(Feedback(**resolve_initializers(dict(entry), where)))
        except (TypeError, ValueError) as e:
            raise ConfigError(f"{where}: {e}") from e
    options = dict(time_steps=m.get("time_steps"), decoder=m.get("decoder", "spike_rate"), dt=m.get("dt", 1.0),
                   feedback=feedback, name=m.get("name"))
    try:
        if graph:
            return Model(layers[0], last, **options)
        return Sequential(layers, **options)
    except (TypeError, ValueError) as e:
        msg = str(e)
        for i, layer in enumerate(layers[1:]):  # layers are named by now: point at the failing entry
            if layer.name and msg.startswith(layer.label):
                raise ConfigError(f"model.layers[{i}]: {msg}") from e
        raise ConfigError(f"model: {msg}") from e


def _call_layer(layer: Any, inbound: Any, outputs: dict, previous: Any, where: str) -> Any:
    """Call ``layer`` on the outputs named by ``inbound`` (``None``: the previous entry's output)."""
    if inbound is None:
        tensors = [previous]
    else:
        names = [inbound] if isinstance(inbound, str) else inbound
        if not isinstance(names, list) or not names or not all(isinstance(n, str) for n in names):
            raise ConfigError(f"{where}.inbound: expected a layer name or a list of them, got {inbound!r}")
        missing = [n for n in names if n not in outputs]
        if missing:
            raise ConfigError(f"{where}.inbound: no earlier layer named {missing[0]!r}"
                              f"{_did_you_mean(missing[0], list(outputs))}; earlier named layers: "
                              f"{', '.join(outputs)}")
        tensors = [outputs[n] for n in names]
    try:
        return layer(tensors if len(tensors) > 1 else tensors[0])
    except (TypeError, ValueError) as e:
        raise ConfigError(f"{where} ({type(layer).__name__}): {e}") from e


def compile_kwargs(cfg: Mapping) -> dict:
    """``model.compile`` arguments: ``optimizer.*`` plus the model's ``loss``/``loss_kwargs``/``metrics``/
    ``regularizers``.

    Raises:
        ConfigError: a bad loss, ``model.regularizers`` or ``optimizer.delay_sigma``, naming the key.
    """
    from spaic_train.training import get_loss
    from spaic_train.training.delay_sigma import as_delay_sigma_schedule
    from spaic_train.training.regularizers import build_regularizers

    opt = dict(_plain(cfg["optimizer"]))
    model = dict(_plain(cfg["model"]))
    try:
        loss = get_loss(model.get("loss", "ce_rate"), **(model.get("loss_kwargs") or {}))
    except (TypeError, ValueError) as e:
        raise ConfigError(f"model.loss / model.loss_kwargs: {e}") from e
    regularizers = model.get("regularizers") or None
    try:
        build_regularizers(regularizers)
    except (TypeError, ValueError) as e:
        raise ConfigError(f"model.{e}") from e  # the message starts with regularizers[.<name>]
    sigma = opt.get("delay_sigma") or {}
    try:
        delay_sigma = as_delay_sigma_schedule(sigma if sigma.get("start") is not None else None)
    except (TypeError, ValueError) as e:
        raise ConfigError(f"optimizer.{e}") from e
    return {"optimizer": opt["name"], "lr": float(opt["lr"]), "optimizer_kwargs": opt.get("kwargs") or {},
            "scheduler": opt.get("scheduler"), "scheduler_kwargs": opt.get("scheduler_kwargs") or {},
            "loss": loss, "metrics": list(model.get("metrics") or []), "delay_lr": opt.get("delay_lr"),
            "delay_sigma": delay_sigma, "regularizers": regularizers}


def _check_limit(key: str, value: Any) -> None:
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(f"trainer.{key}: expected an int (batches) or a float in [0, 1] (fraction), got {value!r}")
    if isinstance(value, float) and not 0.0 <= value <= 1.0 or value < 0:
        raise ConfigError(f"trainer.{key}: expected an int >= 0 or a float in [0, 1], got {value!r}")


def build_logger(trainer_cfg: Mapping, output_dir: Path) -> Any:
    """``trainer.logger``: ``tensorboard`` → ``TensorBoardLogger(<output>/tb)``, ``csv`` → ``CSVLogger(<output>/csv)``,
    ``none`` → no logger."""
    kind = str(trainer_cfg.get("logger", "tensorboard")).lower()
    if kind in ("none", "false", "null", ""):
        return False
    if kind == "tensorboard":
        from lightning.pytorch.loggers import TensorBoardLogger

        return TensorBoardLogger(save_dir=str(output_dir), name="tb", version="", default_hp_metric=False)
    if kind == "csv":
        from lightning.pytorch.loggers import CSVLogger

        return CSVLogger(save_dir=str(output_dir), name="csv", version="")
    raise ConfigError(f"trainer.logger: expected tensorboard, csv or none, got {kind!r}")


def build_callbacks(cfg: Mapping, logger: Any) -> list:
    """The :class:`~spaic_train.monitoring.TensorBoardMonitor` and the :class:`~spaic_train.profiling.EnergyMonitor`
    (SOPs, rates, energy per epoch) when ``monitor.enabled`` and a TensorBoard logger."""
    mon = dict(_plain(cfg["monitor"]))
    if not mon.pop("enabled", True) or logger is False or type(logger).__name__ != "TensorBoardLogger":
        return []
    from spaic_train.monitoring import TensorBoardMonitor
    from spaic_train.profiling import EnergyMonitor

    try:
        return [TensorBoardMonitor(seed=int(cfg.get("seed") or 0), **mon), EnergyMonitor()]
    except (TypeError, ValueError) as e:
        raise ConfigError(str(e)) from e


def resolve_devices(devices: Any, accelerator: str) -> Any:
    """``trainer.devices`` for Lightning: ``-1`` ("every visible device") on the CPU becomes one process per core
    this process may run on (Lightning accepts only a positive count there); anything else passes unchanged."""
    import torch

    if str(devices) != "-1":
        return devices
    on_gpu = accelerator not in ("auto", "cpu") or torch.cuda.is_available() or torch.backends.mps.is_available()
    if on_gpu:
        return devices
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def fit_kwargs(cfg: Mapping, output_dir: Path) -> dict:
    """``model.fit`` arguments from ``trainer.*`` (and ``seed``): logger, log/checkpoint dirs, Lightning options."""
    from spaic_train.training.progress import EpochProgress

    t = dict(_plain(cfg["trainer"]))
    for key in ("limit_train_batches", "limit_val_batches", "limit_test_batches"):
        _check_limit(key, t.get(key))
    if t["max_epochs"] < 1:
        raise ConfigError(f"trainer.max_epochs: must be >= 1, got {t['max_epochs']}")
    logger = build_logger(t, output_dir)
    kwargs = {
        "epochs": int(t["max_epochs"]), "accelerator": t["accelerator"],
        "devices": resolve_devices(t["devices"], t["accelerator"]),
        "strategy": t["strategy"], "precision": t["precision"], "logger": logger, "log_dir": str(output_dir),
        "checkpoint_dir": str(output_dir / "checkpoints") if t.get("checkpoint") else None,
        "resume": t.get("resume"), "seed": cfg.get("seed"),
        # one line per epoch always (the run's log); the live bar on a terminal only with enable_progress_bar
        "enable_progress_bar": True,
        "callbacks": [EpochProgress(live=bool(t["enable_progress_bar"])), *build_callbacks(cfg, logger)],
    }
    for key in LIGHTNING_KEYS:
        if t.get(key) is not None:
            kwargs[key] = t[key]
    return kwargs


# ---------------------------------------------------------------------------------------------------------------
# the job
# ---------------------------------------------------------------------------------------------------------------
def _output_dir(output_dir: Optional[str | os.PathLike]) -> Path:
    if output_dir is not None:
        return Path(output_dir)
    try:
        from hydra.core.hydra_config import HydraConfig

        return Path(HydraConfig.get().runtime.output_dir)
    except Exception:  # not inside a Hydra job
        return Path("outputs") / time.strftime("%Y-%m-%d_%H-%M-%S")


def _recipe_name(cfg: Mapping) -> str:
    try:
        from hydra.core.hydra_config import HydraConfig

        return str(HydraConfig.get().runtime.choices.get("recipe") or "run")
    except Exception:
        return "run"


def load_data(dm: Any, cfg: Mapping) -> None:
    """Prepare and set up the datamodule now, before any model or Trainer is built, so that a missing dataset
    stops the run at once.

    Raises:
        DataNotFoundError: the datamodule's message (``data.root`` and the files looked for) plus where
            ``data.root`` comes from: ``paths.data`` and ``$SPAIC_TRAIN_DATA``.
    """
    from spaic_train.data import DataNotFoundError

    try:
        dm.prepare_data()
        dm.setup()
    except DataNotFoundError as e:
        root = OmegaConf.to_container(cfg["data"], resolve=False).get("root")
        env = os.environ.get("SPAIC_TRAIN_DATA")
        source = f"$SPAIC_TRAIN_DATA={env!r}" if env else "$SPAIC_TRAIN_DATA is not set: default ./data"
        raise DataNotFoundError(
            f"{e}\ndata.root={root!r} with paths.data={cfg['paths']['data']!r} ({source}). Point SPAIC_TRAIN_DATA "
            f"or paths.data at your datasets directory, or set data.root."
        ) from None


def run(cfg: DictConfig, output_dir: Optional[str | os.PathLike] = None) -> dict:
    """Build everything from ``cfg``, train, test, save; return the final metrics.

    Order (every config or data error surfaces before anything is built): config check against the schema →
    seed → datamodule and its data (:func:`load_data`) → output directory → model (+ summary) → compile →
    callbacks/logger → ``fit`` → ``evaluate`` on the test split (``trainer.test``; the test metrics also go to
    TensorBoard) → ``model.pt`` and ``metrics.json`` in the output directory.  What it prints goes through the
    ``spaic_train`` logger (console and, under Hydra, ``train.log``).  Under several processes (DDP, one or many
    machines) every process trains and evaluates (on its shard; the metrics are those of the whole split), and
    only global rank 0 prints the summary and the final metrics and writes ``model.pt`` and ``metrics.json``.

    Returns:
        ``{'val_loss': ..., 'val_accuracy': ..., 'test_loss': ..., 'test_accuracy': ..., 'epochs': ...,
        'fit_seconds': ..., 'output_dir': ...}`` (keys present when measured).
    """
    import lightning.pytorch as pl
    import torch
    from lightning.pytorch.utilities import rank_zero_only

    from spaic_train.profiling.runs import run_metrics

    validate_config(cfg)
    t_cfg = cfg.trainer
    if t_cfg.num_threads is not None:
        torch.set_num_threads(int(t_cfg.num_threads))
    if cfg.seed is not None:
        pl.seed_everything(int(cfg.seed), workers=True, verbose=False)
    dm = build_datamodule_from_config(cfg.data)
    load_data(dm, cfg)
    out = _output_dir(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    log.info(f"Run directory: {out}")
    model = build_model(cfg.model, tuple(dm.input_shape))
    if cfg.summary and rank_zero_only.rank == 0:  # the launcher's rank (RANK, SLURM_PROCID, LOCAL_RANK)
        model.summary(print_fn=log.info)
    model.compile(**compile_kwargs(cfg))
    kwargs = fit_kwargs(cfg, out)
    recipe = _recipe_name(cfg)

    t0 = time.perf_counter()
    history = model.fit(dm, **kwargs)
    fit_seconds = time.perf_counter() - t0
    trainer = history.trainer
    metrics: dict[str, Any] = {"recipe": recipe, "epochs": len(history.epoch) if hasattr(history, "epoch") else None,
                               "fit_seconds": round(fit_seconds, 2), "output_dir": str(out)}
    for key, values in history.history.items():
        if values:
            metrics[key] = float(values[-1])
    if t_cfg.test:  # on the processes of the fit: exact metrics of the whole split on every one
        eval_kwargs: dict[str, Any] = {"accelerator": t_cfg.accelerator, "devices": kwargs["devices"],
                                       "num_nodes": t_cfg.num_nodes, "strategy": t_cfg.strategy,
                                       "precision": t_cfg.precision, "batch_size": int(cfg.data.get("batch_size", 64))}
        if t_cfg.limit_test_batches is not None:
            eval_kwargs["limit_test_batches"] = t_cfg.limit_test_batches
        test = {f"test_{k}": float(v) for k, v in model.evaluate(dm, **eval_kwargs).items()}
        metrics.update(test)
        if kwargs["logger"] is not False:  # Lightning's loggers write from global rank 0 only
            kwargs["logger"].log_metrics(test, step=trainer.global_step)
            kwargs["logger"].finalize("success")
    if trainer is not None and not trainer.is_global_zero:
        return metrics
    if cfg.save_model:
        model.save(out / "model.pt")
    metrics.update(run_metrics(model, dm))  # SOPs and energy per validation sample (spaic_train.profiling)
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    _report(metrics, out, kwargs["logger"])
    return metrics


def _report(metrics: dict, out: Path, logger: Any) -> None:
    shown = [k for k in ("loss", "accuracy", "val_loss", "val_accuracy", "test_loss", "test_accuracy")
             if k in metrics]
    line = "  ".join(f"{k}={metrics[k]:.4f}" for k in shown)
    log.info(f"[{metrics['recipe']}] {metrics.get('epochs')} epochs in {metrics['fit_seconds']:.1f} s  {line}")
    log.info(f"outputs: {out} (train.log, metrics.json, model.pt, checkpoints/)")
    if logger is not False and type(logger).__name__ == "TensorBoardLogger":
        log.info(f"TensorBoard: tensorboard --logdir {out / 'tb'}")


def _discard_unused_run_dir() -> None:
    """Remove the Hydra run directory of a job that stopped before building anything (it holds only Hydra's
    ``.hydra/`` and the log), and the parents that this leaves empty, up to the launch directory."""
    try:
        from hydra.core.hydra_config import HydraConfig

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


def _task(cfg: DictConfig) -> Optional[float]:
    from spaic_train.console import route_to_root
    from spaic_train.data import DataNotFoundError

    route_to_root()  # Hydra has configured logging: everything reaches its console handler and train.log
    try:
        metrics = run(cfg)
    except (ConfigError, DataNotFoundError) as e:  # bad input, caught before anything was built: no traceback
        _discard_unused_run_dir()
        print(f"Error: {e}", file=sys.stderr)
        raise SystemExit(2) from None
    return sweep_objective(metrics, list(cfg.get("objective") or []))


def sweep_objective(metrics: Mapping, names: list) -> Any:
    """What the task returns to a sweeper: the ``metrics`` named by ``objective`` (validation metrics, never the
    test set's), a float for one name and a tuple for several; ``None`` (the sweeper then fails the trial) when a
    name was not measured."""
    missing = [n for n in names if n.startswith("test_") or n not in metrics]
    if missing or not names:
        if names:
            log.warning(f"objective {names}: {missing} not among the run's metrics ({', '.join(sorted(metrics))}) "
                        "or a test-set metric (a sweep optimises validation metrics)")
        return None
    values = tuple(float(metrics[n]) for n in names)
    return values[0] if len(values) == 1 else values


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
    import hydra

    register_configs()
    hydra.main(config_path=str(CONFIG_DIR), config_name="config", version_base="1.3")(_task)()


if __name__ == "__main__":
    main()
