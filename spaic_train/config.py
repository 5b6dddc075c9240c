"""Structured configs of the Hydra entry point (``python train.py`` / ``spaic-train``), registered in Hydra's
``ConfigStore`` by :func:`register_configs`.

The composed config has one section per config group, each mapping 1:1 onto constructor arguments:

==============  ===========================================  ===============================================
section         schema                                       becomes
==============  ===========================================  ===============================================
``data``        ``DataConfig_<name>`` (generated from the    ``build_datamodule(**cfg.data)``
                datamodule's ``__init__`` signature)
``model``       :class:`ModelConfig`                         :func:`spaic_train.cli.build_model`: an
                                                             ``Input`` + the ``layers`` list (each entry
                                                             ``{type: <Layer class>, **constructor args}``)
                                                             in a ``Sequential`` with ``feedback``
``optimizer``   :class:`OptimizerConfig`                     ``model.compile(optimizer=name, lr=lr,
                                                             optimizer_kwargs=kwargs, scheduler=scheduler,
                                                             scheduler_kwargs=scheduler_kwargs, ...)``
``trainer``     :class:`TrainerConfig`                       ``model.fit(epochs=max_epochs, ...)``; the
                                                             Lightning options go to ``lightning.Trainer``
``monitor``     :class:`MonitorConfig`                       :class:`~spaic_train.monitoring.TensorBoardMonitor`
==============  ===========================================  ===============================================

Validation happens at composition, before anything is built: a key that is not in the schema
(``trainer.max_epoch=1``, or a typo in a YAML file) or a value of the wrong type
(``trainer.max_epochs=abc``) stops Hydra with an error naming the full key.  Keys *added* on the command line
(``+trainer.max_epoch=1``, ``++trainer.max_epoch=1``) skip that check — Hydra adds them with the schema's
struct flag off — so :func:`validate_config` checks the composed config again when the run starts, still
before anything is built, and names the key with the closest valid one.  Layer entries are free-form dicts
checked against the layer's constructor when the model is built (still before training).

Values are never ``eval``-ed.  Initializers are written as dicts ``{init: kaiming_uniform, a: ${sqrt:5}}``
(names of :mod:`spaic_train.init` functions); the ``sqrt`` and ``mul`` resolvers compute square roots and
products (:data:`RESOLVERS`).
"""

from __future__ import annotations

import dataclasses
import difflib
import inspect
import math
import types
import typing
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Optional, Union

from omegaconf import MISSING, OmegaConf
from omegaconf.errors import OmegaConfBaseException

__all__ = [
    "Config",
    "ConfigError",
    "DelaySigmaConfig",
    "InputConfig",
    "ModelConfig",
    "EarlyStoppingConfig",
    "MonitorConfig",
    "OptimizerConfig",
    "PathsConfig",
    "TrainerConfig",
    "trainer_fit_args",
    "data_schema",
    "data_schemas",
    "register_configs",
    "validate_config",
]


class ConfigError(ValueError):
    """A config value that the schema accepts but the code cannot use, or a key the schema does not have; the
    message names the key."""


@dataclass
class InputConfig:
    """The model's ``Input`` layer: ``Input(shape, encoder=encoder, **encoder_kwargs)``.

    Attributes:
        encoder: ``direct`` (value as input current every step), ``poisson``, ``bernoulli``, ``latency`` or
            ``passthrough`` (data is already a ``[T, B, ...]`` sequence, e.g. N-MNIST).
        encoder_kwargs: coding options (``max_rate`` for poisson, ...).
        shape: sample shape without batch/time; ``null`` takes the datamodule's ``input_shape``.
    """

    encoder: str = "direct"
    encoder_kwargs: dict[str, Any] = field(default_factory=dict)
    shape: Optional[list[int]] = None


@dataclass
class ModelConfig:
    """A ``Sequential`` model plus its loss and metrics (the model-dependent ``compile`` arguments).

    Attributes:
        name: model name (shown by ``summary``).
        vars: free values the other keys may interpolate, e.g. ``units: ${model.vars.hidden}`` (so a sweep can
            change one number that several layers use).
        time_steps: simulation steps ``T`` for static inputs; ``null`` for sequence data (``T`` from the data).
        dt: step in ms.
        decoder: ``spike_rate``, ``spike_counts``, ``mean_voltage``, ``max_voltage``, ``first_spike``, ``sequence``.
        input: the :class:`InputConfig`.
        layers: the layers after the input, each ``{type: Full | Conv2dSyn | Flatten | Dropout | Pool2d |
            OneToOne | SparseRandom, <constructor argument>: value, ...}``.
        feedback: ``Feedback`` connections, each ``{source: <layer name>, target: <layer name>, max_delay: ms,
            ...}`` (``Feedback`` constructor arguments).
        loss: loss name (``ce_rate``, ``ce_count``, ``mse_count``, ``tet``, ``mse``, ``ce``).
        loss_kwargs: options of the loss (e.g. ``{scale: 5.0}`` for ``ce_rate``).
        metrics: metric names.
        regularizers: activity regularisers added to the training loss, ``{rate: {target: 0.05}, spike_l1: 0.2,
            energy: 1.0}`` (name → coefficient or options; see :mod:`spaic_train.training.regularizers`).
    """

    name: Optional[str] = None
    vars: dict[str, Any] = field(default_factory=dict)
    time_steps: Optional[int] = 8
    dt: float = 1.0
    decoder: str = "spike_rate"
    input: InputConfig = field(default_factory=InputConfig)
    layers: list[dict[str, Any]] = field(default_factory=list)
    feedback: list[dict[str, Any]] = field(default_factory=list)
    loss: str = "ce_rate"
    loss_kwargs: dict[str, Any] = field(default_factory=dict)
    metrics: list[str] = field(default_factory=lambda: ["accuracy"])
    regularizers: dict[str, Any] = field(default_factory=dict)


@dataclass
class DelaySigmaConfig:
    """Annealing of the relaxation width of learnable delays (→ ``DelaySigmaSchedule(start, end, epochs)``).

    Attributes:
        start: width in the first epoch (ms); ``null`` (default): no annealing.
        end: final width (ms).
        epochs: epochs the annealing takes.
    """

    start: Optional[float] = None
    end: float = 0.0
    epochs: int = 1


@dataclass
class OptimizerConfig:
    """``compile`` arguments of the optimizer and learning-rate schedule.

    Attributes:
        name: ``adam``, ``adamw``, ``sgd``, ``rmsprop`` (→ ``optimizer=``).
        lr: learning rate (→ ``lr=``).
        kwargs: extra optimizer options such as ``weight_decay``, ``momentum`` (→ ``optimizer_kwargs=``).
        scheduler: ``null``, ``cosine``, ``step``, ``exponential``, ``onecycle``, ``plateau`` (→ ``scheduler=``).
        scheduler_kwargs: scheduler options (→ ``scheduler_kwargs=``).
        delay_lr: learning rate of learnable delays (``learn_delay: true`` layers; ``null``: 100 × ``lr``)
            (→ ``delay_lr=``).
        delay_sigma: annealing of the learnable delays' relaxation width (:class:`DelaySigmaConfig`;
            → ``delay_sigma=``).
    """

    name: str = "adam"
    lr: float = 1e-3
    kwargs: dict[str, Any] = field(default_factory=dict)
    scheduler: Optional[str] = None
    scheduler_kwargs: dict[str, Any] = field(default_factory=dict)
    delay_lr: Optional[float] = None
    delay_sigma: DelaySigmaConfig = field(default_factory=DelaySigmaConfig)


def _passed_to_fit(name: Optional[str] = None) -> dict:
    """Field metadata: the key is passed to ``fit`` as the argument ``name`` (default: the key's own name)."""
    return {"fit": name}


#: field metadata: the key is passed to ``fit`` as a ``lightning.Trainer`` option of the same name (when not null)
_LIGHTNING_OPTION = {"fit": None, "lightning": True}


def trainer_fit_args() -> dict[str, tuple[str, bool]]:
    """``trainer.*`` keys passed on to ``fit`` as they are: key → (``fit`` argument, whether it is a
    ``lightning.Trainer`` option left out when null) — read from the metadata of :class:`TrainerConfig`'s fields,
    the one place that lists them."""
    return {f.name: (f.metadata["fit"] or f.name, bool(f.metadata.get("lightning")))
            for f in dataclasses.fields(TrainerConfig) if "fit" in f.metadata}


@dataclass
class EarlyStoppingConfig:
    """``trainer.early_stopping``: stop when a History metric stops improving
    (:class:`spaic_train.callbacks.EarlyStopping`, Keras' names).

    Attributes:
        enabled: add the callback.
        monitor: History name of the quantity (``val_loss``, ``val_accuracy``, ...).
        patience: epochs without improvement before stopping (0: at the first such epoch).
        min_delta: smallest change that counts as an improvement.
        mode: ``auto`` (losses decrease, accuracies increase), ``min`` or ``max``.
        restore_best_weights: end with the weights of the best epoch.
    """

    enabled: bool = False
    monitor: str = "val_loss"
    patience: int = 5
    min_delta: float = 0.0
    mode: str = "auto"
    restore_best_weights: bool = False


@dataclass
class TrainerConfig:
    """``fit`` / ``lightning.Trainer`` options.

    Lightning options keep their ``lightning.Trainer`` names; ``null`` leaves Lightning's default.  The keys that
    go to ``fit`` as they are carry that in their field metadata (:func:`trainer_fit_args`, which ``cli.fit_kwargs``
    reads); the others are turned into objects first (``devices``, ``logger``, ``checkpoint``, ...).

    Attributes:
        max_epochs: epochs (→ ``fit(epochs=...)``).
        accelerator, devices, strategy, precision: as ``lightning.Trainer`` (``devices`` may be an int, a list or
            ``auto``; ``-1``: every visible GPU, or on the CPU one process per usable core).
        num_nodes: machines taking part (each runs ``devices`` processes), as ``lightning.Trainer``; the processes
            are started by ``torchrun`` or SLURM (README "Many machines").
        limit_train_batches, limit_val_batches, limit_test_batches: int (batches) or float (fraction) per epoch.
        num_sanity_val_steps, gradient_clip_val, accumulate_grad_batches, log_every_n_steps, deterministic,
            benchmark: as ``lightning.Trainer``.
        enable_progress_bar: draw a live bar of the batches when the console is a terminal (the one line per
            epoch is always logged: console and ``train.log``).
        logger: ``tensorboard`` (default; ``<output dir>/tb``), ``csv`` or ``none``.
        checkpoint: save ``last.ckpt`` and the best checkpoint in ``<output dir>/checkpoints``.
        resume: ``last`` or a checkpoint path to continue from.
        test: evaluate on the test split after training.
        num_threads: ``torch.set_num_threads`` (``null``: PyTorch's default).
        early_stopping: :class:`EarlyStoppingConfig` (off by default).
    """

    max_epochs: int = field(default=10, metadata=_passed_to_fit("epochs"))
    accelerator: str = field(default="auto", metadata=_passed_to_fit())
    devices: Any = "auto"  # resolved for the CPU first (cli.resolve_devices)
    num_nodes: int = field(default=1, metadata=_LIGHTNING_OPTION)
    strategy: str = field(default="auto", metadata=_passed_to_fit())
    precision: str = field(default="32-true", metadata=_passed_to_fit())
    limit_train_batches: Any = field(default=None, metadata=_LIGHTNING_OPTION)
    limit_val_batches: Any = field(default=None, metadata=_LIGHTNING_OPTION)
    limit_test_batches: Any = field(default=None, metadata=_LIGHTNING_OPTION)
    num_sanity_val_steps: Optional[int] = field(default=None, metadata=_LIGHTNING_OPTION)
    gradient_clip_val: Optional[float] = field(default=None, metadata=_LIGHTNING_OPTION)
    accumulate_grad_batches: int = field(default=1, metadata=_LIGHTNING_OPTION)
    log_every_n_steps: Optional[int] = field(default=None, metadata=_LIGHTNING_OPTION)
    deterministic: Optional[bool] = field(default=None, metadata=_LIGHTNING_OPTION)
    benchmark: Optional[bool] = field(default=None, metadata=_LIGHTNING_OPTION)
    enable_progress_bar: bool = True
    logger: str = "tensorboard"
    checkpoint: bool = True
    resume: Optional[str] = field(default=None, metadata=_passed_to_fit())
    test: bool = True
    num_threads: Optional[int] = None
    early_stopping: EarlyStoppingConfig = field(default_factory=EarlyStoppingConfig)


@dataclass
class MonitorConfig:
    """TensorBoard monitoring (:class:`~spaic_train.monitoring.TensorBoardMonitor`), used with ``logger=tensorboard``.

    Attributes:
        enabled: add the monitor.
        num_samples: size of the fixed validation sample the network is run on at each logging epoch.
        raster_sample: which sample of it is drawn as the spike raster.
        max_raster_neurons: neurons per layer drawn in the raster (evenly spaced when the layer is larger).
        every_n_epochs: log every n-th epoch (the last epoch is always logged).
        histograms: log membrane-potential and weight histograms.
    """

    enabled: bool = True
    num_samples: int = 32
    raster_sample: int = 0
    max_raster_neurons: int = 256
    every_n_epochs: int = 1
    histograms: bool = True


@dataclass
class PathsConfig:
    """Locations referenced by the group configs (``${paths.data}/mnist``).

    Attributes:
        data: datasets root: ``$SPAIC_TRAIN_DATA`` if set, else ``data`` (relative to the launch directory).
    """

    data: str = "${oc.env:SPAIC_TRAIN_DATA,data}"


@dataclass
class Config:
    """The whole run: the group sections plus run-level options.

    Attributes:
        seed: seeds everything before the model is built (``null``: not seeded).
        save_model: write ``model.pt`` (``spaic_train.load_model``) into the output directory.
        summary: print the model summary before training.
        objective: the ``metrics.json`` values a sweep optimises (what the task returns: one float, or a tuple
            for several objectives), e.g. ``[val_accuracy, energy_uj_per_sample]``; validation metrics, never the
            test set's.
    """

    model: ModelConfig = field(default_factory=ModelConfig)
    data: Any = MISSING
    optimizer: OptimizerConfig = field(default_factory=OptimizerConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    monitor: MonitorConfig = field(default_factory=MonitorConfig)
    paths: PathsConfig = field(default_factory=PathsConfig)
    seed: Optional[int] = 0
    save_model: bool = True
    summary: bool = True
    objective: list[str] = field(default_factory=lambda: ["val_accuracy"])


# ---------------------------------------------------------------------------------------------------------------
# data schemas, generated from the datamodule constructors (so they can never drift from the code)
# ---------------------------------------------------------------------------------------------------------------
_PRIMITIVES = (int, float, bool, str)


def _omegaconf_type(tp: Any) -> Any:
    """Map a constructor annotation onto a type OmegaConf can validate (``Any`` when it cannot)."""
    origin = typing.get_origin(tp)
    if tp in _PRIMITIVES or tp is Any:
        return tp
    if origin in (Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        optional = len(args) < len(typing.get_args(tp))
        inner = _omegaconf_type(args[0]) if len(args) == 1 else Any
        return Optional[inner] if optional and inner is not Any else inner
    if origin in (list, tuple, Sequence):
        args = typing.get_args(tp)
        if args and args[0] in _PRIMITIVES and (origin is not tuple or len(args) == 1 or args[1] is Ellipsis
                                                 or len(set(args)) == 1):
            return list[args[0]]
        return Any
    return Any


def data_schema(name: str) -> type:
    """The structured-config dataclass of dataset ``name``: a ``name`` field plus one field per argument of
    the datamodule's ``__init__`` (same names, types and defaults)."""
    from spaic_train.data import DATASETS  # imports torch: not at import time, which --help must not wait for

    canonical = DATASETS.canonical(name)
    cls = DATASETS.get(canonical, owner="data.name")
    hints = typing.get_type_hints(cls.__init__)
    fields: list = [("name", str, field(default=canonical))]
    for p in list(inspect.signature(cls.__init__).parameters.values())[1:]:
        if p.kind in (p.VAR_KEYWORD, p.VAR_POSITIONAL):
            continue
        tp = _omegaconf_type(hints.get(p.name, Any))
        if p.default is inspect.Parameter.empty:
            fields.append((p.name, tp, field(default=MISSING)))
        elif isinstance(p.default, (list, tuple)):
            fields.append((p.name, tp, field(default_factory=lambda d=p.default: list(d))))
        else:
            fields.append((p.name, tp, field(default=p.default)))
    schema = dataclasses.make_dataclass(f"DataConfig_{canonical}", fields)
    schema.__doc__ = f"``data`` section for {cls.__name__} (``build_datamodule(**cfg.data)``)."
    return schema


def data_schemas() -> dict[str, type]:
    """``{dataset name: schema}`` for every registered dataset."""
    from spaic_train.data import DATASETS  # imports torch (see data_schema)

    return {n: data_schema(n) for n in DATASETS.names()}


def _schema_error(e: Exception, prefix: str) -> ConfigError:
    """An OmegaConf ``ConfigKeyError`` / ``ValidationError`` as a :class:`ConfigError` naming the full key and,
    for an unknown key, the closest valid one and all valid ones."""
    full_key = f"{prefix}{getattr(e, 'full_key', '') or getattr(e, 'key', '')}"
    msg = (getattr(e, "msg", None) or str(e)).splitlines()[0]
    obj_type = getattr(e, "object_type", None)
    if type(e).__name__ == "ConfigKeyError" and dataclasses.is_dataclass(obj_type):
        key = str(getattr(e, "key", ""))
        valid = [f.name for f in dataclasses.fields(obj_type)]
        parent = full_key.rsplit(".", 1)[0] if "." in full_key else ""
        close = difflib.get_close_matches(key, valid, n=1)
        hint = f" Did you mean {parent + '.' if parent else ''}{close[0]}?" if close else ""
        return ConfigError(f"{full_key}: unknown config key.{hint} Valid keys "
                           f"{'of ' + parent if parent else 'at the top level'}: {', '.join(valid)}")
    return ConfigError(f"{full_key}: {msg}")


def validate_config(cfg: Any) -> None:
    """Check a composed config against the schema: :class:`Config`, and the ``data`` section against the
    schema of its dataset (:func:`data_schema`).

    Composition already checks every key that comes from a YAML file or a ``key=value`` override; this catches
    keys added with ``+key=value`` / ``++key=value``, which Hydra merges with the schema's checks switched off.

    Raises:
        ConfigError: an unknown key (naming it, the closest valid key and the valid ones) or a value of the
            wrong type.
    """
    plain = OmegaConf.to_container(cfg, resolve=False)
    data = plain.pop("data", None)
    try:
        OmegaConf.merge(OmegaConf.structured(Config), plain)
    except OmegaConfBaseException as e:
        raise _schema_error(e, "") from None
    if isinstance(data, dict):
        try:
            schema = data_schema(data.get("name"))
        except (TypeError, ValueError) as e:
            raise ConfigError(f"data.name: {e}") from None
        try:
            OmegaConf.merge(OmegaConf.structured(schema), data)
        except OmegaConfBaseException as e:
            raise _schema_error(e, "data.") from None


def _sqrt(x: Any) -> float:
    return math.sqrt(float(x))


def _mul(*xs: Any) -> Any:
    out: Any = 1
    for x in xs:
        out = out * x
    return out


#: OmegaConf resolvers usable in configs: ``${sqrt:5}`` (a float) and ``${mul:2,${model.vars.width}}`` (product)
RESOLVERS = {"sqrt": _sqrt, "mul": _mul}


_REGISTERED = False


def register_configs() -> None:
    """Register the schemas in Hydra's ``ConfigStore`` and the :data:`RESOLVERS` (idempotent).

    Stored: ``config_schema`` (:class:`Config`, the primary config's base) and ``schema/data/<name>`` per
    dataset (the base of ``conf/data/<name>.yaml``).
    """
    global _REGISTERED
    if _REGISTERED:
        return
    from hydra.core.config_store import ConfigStore  # hydra: not at import time, which --help must not wait for

    for name, fn in RESOLVERS.items():
        if not OmegaConf.has_resolver(name):
            OmegaConf.register_new_resolver(name, fn)
    cs = ConfigStore.instance()
    cs.store(name="config_schema", node=Config)
    for name, schema in data_schemas().items():
        cs.store(group="schema/data", name=name, node=schema)
    _REGISTERED = True
