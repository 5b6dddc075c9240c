"""A composed recipe config → objects → a run: what ``python train.py`` does once Hydra has composed the config.

The ``model``, ``data``, ``optimizer`` and ``trainer`` sections are turned into objects 1:1
(:func:`build_datamodule_from_config`, :func:`build_model` through :func:`model_config` and
``Model.from_config``, :func:`compile_kwargs`, :func:`fit_kwargs`) and run by :func:`run`.  The command line
itself (``--help``, Hydra) is :mod:`spaic_train.cli`, which imports this module only when a run starts.

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
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Optional

import lightning.pytorch as pl
import torch
from hydra.core.hydra_config import HydraConfig
from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger
from lightning.pytorch.utilities import rank_zero_only
from omegaconf import DictConfig, OmegaConf

from . import init as _init
from .config import ConfigError, data_schema, trainer_fit_args, validate_config
from .data import DataNotFoundError, MissingExtraError, build_datamodule
from .data.events import RecordedSplit
from .interrupt import GracefulInterrupt
from .keras import LAYERS, Input, Model, Sequential
from .monitoring import TensorBoardMonitor
from .monitoring.event_frames import EventFramePreview
from .profiling import EnergyMonitor
from .profiling.runs import run_metrics
from .training import get_loss
from .training.callbacks import EarlyStopping
from .training.checkpoint import check_checkpoint
from .training.delay_sigma import as_delay_sigma_schedule
from .training.progress import EpochProgress
from .training.regularizers import build_regularizers

__all__ = [
    "ConfigError",
    "build_callbacks",
    "build_datamodule_from_config",
    "build_logger",
    "build_model",
    "check_accelerator",
    "compile_kwargs",
    "fit_kwargs",
    "load_data",
    "model_config",
    "plain_config",
    "resolve_devices",
    "resolve_initializers",
    "resume_checkpoint",
    "run",
]

log = logging.getLogger("spaic_train.cli")  # the run's messages keep the logger name they always had


# ---------------------------------------------------------------------------------------------------------------
# config -> objects
# ---------------------------------------------------------------------------------------------------------------
def plain_config(node: Any) -> Any:
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
    data = dict(plain_config(data_cfg))
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
    try:
        return build_datamodule(**OmegaConf.to_container(checked, resolve=True))
    except (TypeError, ValueError) as e:  # the datamodule's own checks name the key (data.batch_size, ...)
        msg = str(e)
        raise ConfigError(msg if msg.startswith("data.") else f"data: {msg}") from None


def _check_layer_kwargs(cls: type, kwargs: dict, where: str) -> None:
    params = inspect.signature(cls.__init__).parameters
    if any(p.kind is p.VAR_KEYWORD for p in params.values()):
        return  # extra keys go to Connection, which names any unknown one
    valid = [k for k in params if k != "self"]
    for key in kwargs:
        if key not in params:
            raise ConfigError(f"{where}.{key}: {cls.__name__} has no argument {key!r}{_did_you_mean(key, valid)}; "
                              f"valid: {', '.join(valid)}")


def model_config(model_cfg: Mapping, input_shape: Optional[tuple] = None) -> tuple[str, dict]:
    """The recipe's ``model`` section in the form of :meth:`Model.from_config <spaic_train.keras.Model.from_config>`:
    ``("Sequential" | "Model", config)``.

    ``model.input`` (``shape``, default ``input_shape``; ``encoder``; ``encoder_kwargs``) becomes an ``Input`` named
    ``input``; each ``model.layers`` entry ``{type: <layer class>, inbound: ..., **arguments}`` a layer entry
    ``{"class_name": type, "config": arguments}`` (``{init: <name>, ...}`` values become initializers);
    ``model.feedback`` entries are ``Feedback`` configs; ``time_steps``, ``decoder``, ``dt`` and ``name`` are kept.
    Each layer reads the previous entry; when an entry has ``inbound: <name>`` or ``inbound: [<name>, ...]`` (a
    residual block: ``{type: Conv2dSyn, shortcut: auto, inbound: [block_a, block_in]}``) the model is a functional
    ``Model`` whose output is the last entry, else a ``Sequential``.

    Raises:
        ConfigError: unknown layer type or argument, bad initializer, unknown ``inbound`` name; the message names
            the key (``model.layers[2].unitz``).
    """
    m = dict(plain_config(model_cfg))
    inp = dict(m.get("input") or {})
    shape = inp.get("shape") or input_shape
    if shape is None:
        raise ConfigError("model.input.shape: unknown input shape; set it or use a datamodule with input_shape")
    layers_cfg = m.get("layers") or []
    if not layers_cfg:
        raise ConfigError("model.layers: empty; list the layers after the input, e.g. [{type: Flatten}, "
                          "{type: Full, units: 10}]")
    entries = [{"class_name": "Input", "config": {"name": "input", "shape": list(shape),
                                                  "encoder": inp.get("encoder", "direct"),
                                                  "encoder_kwargs": inp.get("encoder_kwargs") or {}}}]
    graph = any(isinstance(entry, dict) and "inbound" in entry for entry in layers_cfg)
    names = ["input"]  # the layers named so far, which an inbound may read
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
        layer_entry = {"class_name": cls.__name__, "config": resolve_initializers(kwargs, where)}
        if graph and entry.get("inbound") is not None:
            layer_entry["inbound"] = _inbound_names(entry["inbound"], names, where)
        entries.append(layer_entry)
        if kwargs.get("name"):
            names.append(kwargs["name"])
    feedback = []
    for i, entry in enumerate(m.get("feedback") or []):
        where = f"model.feedback[{i}]"
        if not isinstance(entry, dict) or "source" not in entry or "target" not in entry:
            raise ConfigError(f"{where}: each feedback is a mapping with 'source' and 'target' layer names, "
                              f"got {entry!r}")
        feedback.append(resolve_initializers(dict(entry), where))
    config = {"name": m.get("name"), "time_steps": m.get("time_steps"), "dt": m.get("dt", 1.0),
              "decoder": m.get("decoder", "spike_rate"), "layers": entries, "feedback": feedback}
    if graph:
        config["inputs"] = ["input"]
    return ("Model" if graph else "Sequential"), config


def _inbound_names(inbound: Any, earlier: list[str], where: str) -> list[str]:
    names = [inbound] if isinstance(inbound, str) else inbound
    if not isinstance(names, list) or not names or not all(isinstance(n, str) for n in names):
        raise ConfigError(f"{where}.inbound: expected a layer name or a list of them, got {inbound!r}")
    missing = [n for n in names if n not in earlier]
    if missing:
        raise ConfigError(f"{where}.inbound: no earlier layer named {missing[0]!r}"
                          f"{_did_you_mean(missing[0], earlier)}; earlier named layers: {', '.join(earlier)}")
    return names


def _recipe_entry_name(kind: str, index: int) -> str:
    """Config entries named by their recipe keys: the ``Input`` (entry 0) is ``model.input``."""
    if kind == "layers":
        return "model.input" if index == 0 else f"model.layers[{index - 1}]"
    return f"model.{kind}[{index}]"


def build_model(model_cfg: Mapping, input_shape: Optional[tuple] = None) -> Any:
    """A :class:`~spaic_train.keras.Sequential` (or a functional :class:`~spaic_train.keras.Model`) from the
    ``model`` section: :func:`model_config` translates it, ``from_config`` builds it (the one model builder).

    Raises:
        ConfigError: any error of the section, naming the key (``model.layers[2].unitz``, ``model.input``, ...).
    """
    class_name, config = model_config(model_cfg, input_shape)
    cls = Model if class_name == "Model" else Sequential
    try:
        return cls.from_config(config, entry_name=_recipe_entry_name)
    except (TypeError, ValueError) as e:
        msg = str(e)
        raise ConfigError(msg if msg.startswith("model.") else f"model: {msg}") from e


def compile_kwargs(cfg: Mapping) -> dict:
    """``model.compile`` arguments: ``optimizer.*`` plus the model's ``loss``/``loss_kwargs``/``metrics``/
    ``regularizers``.

    Raises:
        ConfigError: a bad loss, ``model.regularizers`` or ``optimizer.delay_sigma``, naming the key.
    """
    opt = dict(plain_config(cfg["optimizer"]))
    model = dict(plain_config(cfg["model"]))
    loss, loss_kwargs = model.get("loss", "ce_rate"), dict(model.get("loss_kwargs") or {})
    try:
        get_loss(loss, **loss_kwargs)  # checked here; compile gets the names, which model.save can store
    except (TypeError, ValueError) as e:
        raise ConfigError(f"model.loss / model.loss_kwargs: {e}") from e
    regularizers = model.get("regularizers") or None
    try:
        build_regularizers(regularizers)
    except (TypeError, ValueError) as e:
        raise ConfigError(f"model.{e}") from e  # the message starts with regularizers[.<name>]
    lr = opt["lr"]
    if not 0 <= lr < float("inf"):
        raise ConfigError(f"optimizer.lr: must be a finite number >= 0, got {lr!r}")
    sigma = opt.get("delay_sigma") or {}
    try:
        delay_sigma = as_delay_sigma_schedule(sigma if sigma.get("start") is not None else None)
    except (TypeError, ValueError) as e:
        raise ConfigError(f"optimizer.{e}") from e
    return {"optimizer": opt["name"], "lr": float(lr), "optimizer_kwargs": opt.get("kwargs") or {},
            "scheduler": opt.get("scheduler"), "scheduler_kwargs": opt.get("scheduler_kwargs") or {},
            "loss": loss, "loss_kwargs": loss_kwargs, "metrics": list(model.get("metrics") or []),
            "delay_lr": opt.get("delay_lr"), "delay_sigma": delay_sigma, "regularizers": regularizers}


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
        return TensorBoardLogger(save_dir=str(output_dir), name="tb", version="", default_hp_metric=False)
    if kind == "csv":
        return CSVLogger(save_dir=str(output_dir), name="csv", version="")
    raise ConfigError(f"trainer.logger: expected tensorboard, csv or none, got {kind!r}")


def build_callbacks(cfg: Mapping, logger: Any) -> list:
    """The :class:`~spaic_train.monitoring.TensorBoardMonitor` when ``monitor.enabled`` and a TensorBoard logger."""
    mon = dict(plain_config(cfg["monitor"]))
    if not mon.pop("enabled", True) or logger is False or type(logger).__name__ != "TensorBoardLogger":
        return []
    try:
        # EnergyMonitor: SOPs, rates and energy per epoch; EventFramePreview does nothing for static data
        return [TensorBoardMonitor(seed=int(cfg.get("seed") or 0), **mon), EnergyMonitor(), EventFramePreview()]
    except (TypeError, ValueError) as e:
        raise ConfigError(str(e)) from e


def _usable_cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def _gpu_visible() -> bool:
    return torch.cuda.is_available() or torch.backends.mps.is_available()


def resolve_devices(devices: Any, accelerator: str) -> Any:
    """``trainer.devices`` for Lightning: ``-1`` ("every visible device") on the CPU becomes one process per core
    this process may run on (Lightning accepts only a positive count there); anything else passes unchanged.

    More CPU processes than usable cores are allowed (they share the cores, and run slower than fewer would):
    the launching process warns once."""
    on_cpu = accelerator == "cpu" or accelerator == "auto" and not _gpu_visible()
    if str(devices) == "-1":
        return _usable_cores() if on_cpu else devices
    count = devices if isinstance(devices, int) and not isinstance(devices, bool) else None
    if on_cpu and count is not None and count > _usable_cores() and rank_zero_only.rank == 0:
        log.warning(f"trainer.devices={count} on the CPU: {count} processes share {_usable_cores()} usable "
                    f"core(s), slower than trainer.devices={_usable_cores()} would be")
    return devices


def check_accelerator(accelerator: str) -> None:
    """Stop before anything is built when ``trainer.accelerator`` names a device this machine lacks.

    Raises:
        ConfigError: ``gpu``/``cuda``/``mps`` without one visible to PyTorch.
    """
    available = {"gpu": _gpu_visible(), "cuda": torch.cuda.is_available(), "mps": torch.backends.mps.is_available()}
    if not available.get(str(accelerator).lower(), True):
        raise ConfigError(f"trainer.accelerator={accelerator}: no such device is visible to PyTorch "
                          f"(torch.cuda.is_available() is False); use trainer.accelerator=cpu, or auto to take a "
                          f"GPU when there is one")


def resume_checkpoint(resume: Optional[str], output_dir: Path) -> Optional[str]:
    """``trainer.resume`` as the checkpoint file to continue from, checked before anything is built: ``last`` is
    ``<run dir>/checkpoints/last.ckpt``, which must exist (a resume never silently starts from scratch).

    Raises:
        ConfigError: a missing, truncated, corrupt or unsafe file, naming ``trainer.resume``.
    """
    if resume is None:
        return None
    path = output_dir / "checkpoints" / "last.ckpt" if resume == "last" else Path(resume)
    if not path.is_file():
        what = f"no checkpoint at {path} (this run directory has none)" if resume == "last" else \
            f"checkpoint {str(path)!r} does not exist"
        raise ConfigError(f"trainer.resume={resume}: {what}; give the run directory of the run to continue "
                          f"(hydra.run.dir=<dir> trainer.resume=last) or a checkpoint path")
    try:
        check_checkpoint(str(path))
    except (OSError, ValueError) as e:
        raise ConfigError(f"trainer.resume={resume}: {e}") from None
    return str(path)


def early_stopping(options: Mapping) -> list:
    """``trainer.early_stopping`` → ``[EarlyStopping(...)]`` when enabled, else ``[]``.

    Raises:
        ConfigError: a bad option, naming ``trainer.early_stopping``.
    """
    options = dict(options)
    if not options.pop("enabled", False):
        return []
    try:
        return [EarlyStopping(**options)]
    except (TypeError, ValueError) as e:
        raise ConfigError(f"trainer.early_stopping: {e}") from None


def fit_kwargs(cfg: Mapping, output_dir: Path) -> dict:
    """``model.fit`` arguments from ``trainer.*`` (and ``seed``): logger, log/checkpoint dirs, Lightning options."""
    t = dict(plain_config(cfg["trainer"]))
    for key in ("limit_train_batches", "limit_val_batches", "limit_test_batches"):
        _check_limit(key, t.get(key))
    check_accelerator(t["accelerator"])
    if t["max_epochs"] < 1:
        raise ConfigError(f"trainer.max_epochs: must be >= 1, got {t['max_epochs']}")
    logger = build_logger(t, output_dir)
    kwargs = {
        "devices": resolve_devices(t["devices"], t["accelerator"]), "logger": logger, "log_dir": str(output_dir),
        "checkpoint_dir": str(output_dir / "checkpoints") if t.get("checkpoint") else None, "seed": cfg.get("seed"),
        # one line per epoch always (the run's log); the live bar on a terminal only with enable_progress_bar
        "enable_progress_bar": True,
        "callbacks": [EpochProgress(live=bool(t["enable_progress_bar"])), *build_callbacks(cfg, logger),
                      *early_stopping(t["early_stopping"]),
                      GracefulInterrupt(output_dir / "checkpoints" / "last.ckpt")],
    }
    for key, (arg, lightning_option) in trainer_fit_args().items():  # the keys passed on as they are
        if not lightning_option or t.get(key) is not None:
            kwargs[arg] = t[key]
    kwargs["epochs"] = int(kwargs["epochs"])
    kwargs["resume"] = resume_checkpoint(t.get("resume"), output_dir)
    return kwargs


# ---------------------------------------------------------------------------------------------------------------
# the job
# ---------------------------------------------------------------------------------------------------------------
def _output_dir(output_dir: Optional[str | os.PathLike]) -> Path:
    if output_dir is not None:
        return Path(output_dir)
    try:
        return Path(HydraConfig.get().runtime.output_dir)
    except Exception:  # not inside a Hydra job
        return Path("outputs") / time.strftime("%Y-%m-%d_%H-%M-%S")


def _recipe_name(cfg: Mapping) -> str:
    try:
        return str(HydraConfig.get().runtime.choices.get("recipe") or "run")
    except Exception:
        return "run"


def load_data(dm: Any, cfg: Mapping) -> None:
    """Prepare and set up the datamodule now, before any model or Trainer is built, so that a missing dataset
    stops the run at once.

    Raises:
        DataNotFoundError: the datamodule's message (``data.root`` and the files looked for) plus where
            ``data.root`` comes from: ``paths.data`` and ``$SPAIC_TRAIN_DATA``.
        ConfigError: the dataset needs an extra that is not installed (``tonic`` of ``[events]``); the message names
            it (``python train.py``: that message alone, exit 2, no run directory).
    """
    try:
        dm.prepare_data()
        dm.setup()
    except MissingExtraError as e:
        raise ConfigError(str(e)) from None
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

    Order (every config or data error surfaces before anything is written, as a :class:`ConfigError` or
    ``DataNotFoundError``): config check against the schema → seed → datamodule and its data (:func:`load_data`)
    → model → compile → trainer arguments (callbacks, logger, :func:`check_accelerator`, the ``trainer.resume``
    file: :func:`resume_checkpoint`) → output directory (+ summary) → ``fit`` → ``evaluate`` on the test split
    (``trainer.test``; the test metrics also go to TensorBoard) → ``model.pt`` and ``metrics.json`` in the output
    directory.  A Ctrl-C during ``fit`` ends it after the current batch with the state saved
    (:class:`~spaic_train.interrupt.TrainingInterrupted`, see :mod:`spaic_train.interrupt`).  What it prints goes
    through the ``spaic_train`` logger (console and, under Hydra, ``train.log``).  Under several processes (DDP,
    one or many machines) every process trains and evaluates (on its shard; the metrics are those of the whole
    split), and only global rank 0 prints the summary and the final metrics and writes ``model.pt`` and
    ``metrics.json``.

    Returns:
        ``{'val_loss': ..., 'val_accuracy': ..., 'test_loss': ..., 'test_accuracy': ..., 'epochs': ...,
        'fit_seconds': ..., 'output_dir': ...}`` (keys present when measured).
    """
    validate_config(cfg)
    t_cfg = cfg.trainer
    if t_cfg.num_threads is not None:
        torch.set_num_threads(int(t_cfg.num_threads))
    if cfg.seed is not None:
        pl.seed_everything(int(cfg.seed), workers=True, verbose=False)
    dm = build_datamodule_from_config(cfg.data)
    load_data(dm, cfg)
    out = _output_dir(output_dir)
    model = build_model(cfg.model, tuple(dm.input_shape))
    try:
        model.compile(**compile_kwargs(cfg))
    except (TypeError, ValueError) as e:
        raise ConfigError(str(e) if isinstance(e, ConfigError) else f"optimizer / model: {e}") from None
    kwargs = fit_kwargs(cfg, out)  # the last check: from here on the run writes
    recipe = _recipe_name(cfg)
    out.mkdir(parents=True, exist_ok=True)
    rank0 = rank_zero_only.rank == 0  # the launcher's rank (RANK, SLURM_PROCID, LOCAL_RANK)
    if rank0:
        log.info(f"Run directory: {out}")
        if kwargs["resume"]:
            log.info(f"Resuming from {kwargs['resume']}")
    if cfg.summary and rank0:
        model.summary(print_fn=log.info)

    t0 = time.perf_counter()
    interrupt = next(c for c in kwargs["callbacks"] if isinstance(c, GracefulInterrupt))
    try:
        history = model.fit(dm, **kwargs)
    except SystemExit:  # Lightning's answer to a KeyboardInterrupt (a second Ctrl-C): say how to continue
        if interrupt.hard:
            raise interrupt.hard_stop() from None
        raise
    fit_seconds = time.perf_counter() - t0
    trainer = history.trainer
    metrics: dict[str, Any] = {"recipe": recipe, "fit_seconds": round(fit_seconds, 2), "output_dir": str(out),
                               # epochs trained in all: a resumed fit's History holds only those after the resume
                               "epochs": trainer.current_epoch if trainer is not None else len(history.epoch)}
    if isinstance(dm, RecordedSplit):  # event datasets: which files were train/val/test (data.events.splits)
        metrics["split_hash"] = dm.split_hash()
    for key, values in history.history.items():
        if values:
            metrics[key] = float(values[-1])
    if t_cfg.test:  # on the processes of the fit: exact metrics of the whole split on every one
        # the fit's hardware options; the batch size is the datamodule's own (data.batch_size)
        eval_kwargs = {k: kwargs[k] for k in ("accelerator", "devices", "num_nodes", "strategy", "precision",
                                              "limit_test_batches") if k in kwargs}
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
