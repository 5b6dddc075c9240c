"""Keras-style models: ``Sequential`` and the functional ``Model``, both a :class:`spaic_train.Network`.

A model *is* the core network: its layers built ``Encoder``/``NeuronGroup``/``Connection`` objects,
the model registers them (groups under the layer names, connections as ``<pre>_to_<layer>``,
feedback connections as ``fb_<source>_to_<target>``, decoders as ``decoder`` or
``decoder_<output>``) and adds one :class:`~spaic_train.Decoder` per output.  ``model(x)`` is
``Network.forward``: ``x`` ``[B, *input_shape]`` (or a sequence ``[T, B, *input_shape]``) → the
decoded output ``[B, *output_shape]`` (``[T, B, ...]`` for the ``'sequence'`` decoder).

Training goes through :class:`~spaic_train.training.SNNModule` and the Lightning drivers::

    model.compile(optimizer="adam", lr=1e-3, loss="ce_rate", metrics=["accuracy"])
    history = model.fit(x, y, epochs=5, batch_size=64, validation_split=0.2)
    model.evaluate(x_test, y_test)      # {'loss': ..., 'accuracy': ...}
    model.predict(x_test)               # [N, C]
    model.save("model.pt"); model2 = spaic_train.load_model("model.pt")
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from contextlib import contextmanager
from typing import Any, Optional, Union

import lightning.pytorch as pl
import torch

from .. import training
from ..network import DECODINGS, Decoder, Network
from .layers import LAYERS, Feedback, Input, Layer, SymbolicTensor
from .layers.base import format_shape, reraise_with_prefix

__all__ = ["Model", "Sequential"]


def _as_list(x) -> list:
    return list(x) if isinstance(x, (list, tuple)) else [x]


class Model(Network):
    """A spiking network defined by connecting layers (the functional API).

    Args:
        inputs: ``Input`` layer(s) (or their outputs), in the order the data is given.
        outputs: output tensor(s) of neuron layers; one decoder is added per output.
        time_steps: number of simulation steps ``T`` for static inputs.
        decoder: decoding of the output spikes — ``'spike_rate'`` (default, spikes per step),
            ``'spike_counts'``, ``'mean_voltage'``, ``'max_voltage'``, ``'first_spike'`` (ms) or
            ``'sequence'`` (``[T, B, C]``, for the ``'tet'`` loss); a list gives one per output.
        dt: simulation step in ms.
        feedback: list of :class:`~spaic_train.keras.layers.Feedback` connections between neuron layers
            (by layer name, layer or output tensor), e.g. ``[Feedback(out, h, max_delay=4.0)]``.
        name: model name.

    Example::

        x = Input((1, 8, 8))
        c = Conv2dSyn(8, pool="max")(x)
        h = Full(64, name="h")(Flatten()(c))
        skip = Full(64)(Flatten()(x))
        y = Full(10, name="out")([h, skip])          # two inputs: their currents sum
        model = Model(x, y, time_steps=6, feedback=[Feedback("out", "h", max_delay=3.0)])
    """

    def __init__(self, inputs, outputs, time_steps: Optional[int] = None,
                 decoder: Union[str, Sequence[str]] = "spike_rate", dt: float = 1.0,
                 feedback: Optional[Sequence[Feedback]] = None, name: Optional[str] = None):
        super().__init__(dt=dt, time_steps=time_steps, name=name)
        self.__dict__["_module"] = None
        self.__dict__["_compile_config"] = None
        self.__dict__["_pending_optimizer_state"] = None
        self.__dict__["_last_trainer"] = None
        owner = self.label

        in_tensors = []
        for t in _as_list(inputs):
            if isinstance(t, Input):
                t = t.output
            if not isinstance(t, SymbolicTensor) or not isinstance(t.layer, Input):
                raise TypeError(f"{owner}: inputs must be Input layers (or their outputs), got {t!r}")
            in_tensors.append(t)
        if not in_tensors:
            raise ValueError(f"{owner}: give at least one Input")
        out_tensors = []
        for t in _as_list(outputs):
            if isinstance(t, Layer) and t.output is not None:
                t = t.output
            if not isinstance(t, SymbolicTensor):
                raise TypeError(f"{owner}: outputs must be outputs of layer calls, got {type(t).__name__}")
            if not t.layer.creates_neurons or isinstance(t.layer, Input):
                raise ValueError(f"{owner}: the output {t.layer.label} has no neurons to decode; end the model "
                                 "with a neuron layer (Full, Conv2dSyn, OneToOne, SparseRandom)")
            if t.ops:
                raise ValueError(f"{owner}: the output {t.layer.label} still has "
                                 f"{', '.join(op.syn for op in t.ops)} to apply (pool_position='after' pools in the "
                                 "next layer's synapses); end the model with a neuron layer after it, or pool before "
                                 "the neurons")
            out_tensors.append(t)
        if not out_tensors:
            raise ValueError(f"{owner}: give at least one output")
        decoders = _as_list(decoder)
        if len(decoders) == 1:
            decoders = decoders * len(out_tensors)
        if len(decoders) != len(out_tensors):
            raise ValueError(f"{owner}: got {len(decoders)} decoders for {len(out_tensors)} outputs")
        for d in decoders:
            DECODINGS.get(d, owner=owner)

        # ---- graph: inputs first (in the given order), then every layer after its inbound layers
        order: list[Layer] = [t.layer for t in in_tensors]
        if len({id(x) for x in order}) != len(order):
            raise ValueError(f"{owner}: an Input is listed twice in inputs")
        seen = {id(x) for x in order}
        for t in out_tensors:
            self._visit(t.layer, order, seen, set())
        for layer in order:
            if isinstance(layer, Input) and layer not in [t.layer for t in in_tensors]:
                raise ValueError(f"{owner}: the outputs depend on {layer.label}, which is not in inputs")
            if layer._model is not None and layer._model is not self:
                raise ValueError(f"{owner}: {layer.label} already belongs to another model; build new layers")
        self.__dict__["layers"] = order
        self.__dict__["input_layers"] = [t.layer for t in in_tensors]
        self.__dict__["output_layers"] = [t.layer for t in out_tensors]
        self.__dict__["decoder_codings"] = [DECODINGS.canonical(d) for d in decoders]
        self.__dict__["feedbacks"] = list(feedback or [])
        _assign_names(order, owner)
        self._register(owner)

    # ---------------------------------------------------------------------------------------------- building
    @staticmethod
    def _visit(layer: Layer, order: list[Layer], seen: set, stack: set) -> None:
        if id(layer) in seen:
            return
        stack.add(id(layer))
        for t in layer.inbound:
            Model._visit(t.layer, order, seen, stack)
        stack.discard(id(layer))
        seen.add(id(layer))
        order.append(layer)

    def _register(self, owner: str) -> None:
        taken = set()

        def unique(base: str) -> str:
            name, k = base, 1
            while name in taken or name in self.__dict__ or name in self._modules or hasattr(type(self), name):
                name = f"{base}_{k}"
                k += 1
            taken.add(name)
            return name

        for layer in self.layers:
            n = layer.name
            if hasattr(type(self), n) or n in self.__dict__ or n in self._modules:
                raise ValueError(f"{owner}: the layer name {n!r} clashes with an attribute of {type(self).__name__}; "
                                 "choose another name")
            taken.add(n)
        for layer in self.layers:
            layer._rename()
            layer._model = self
            if layer.group is not None:
                self.add(layer.group, layer.name)
            for t, conn in zip(layer.inbound, layer.connections):
                conn.name = unique(f"{t.node.name}_to_{layer.name}")
                self.add(conn, conn.name)
        by_name = {layer.name: layer for layer in self.layers}
        for fb in self.feedbacks:
            if not isinstance(fb, Feedback):
                raise TypeError(f"{owner}: feedback must be a list of Feedback(...) objects, got {type(fb).__name__}")
            if fb.connection is not None:
                raise ValueError(f"{owner}: {fb.label} was already built into a model; create a new Feedback")
            src, tgt = fb.resolve(by_name)
            name = unique(fb.name or f"fb_{src.name}_to_{tgt.name}")
            conn = fb.build(src, tgt, name)
            self.add(conn, name)
        multi = len(self.output_layers) > 1
        for layer, coding in zip(self.output_layers, self.decoder_codings):
            name = unique(f"decoder_{layer.name}" if multi else "decoder")
            self.add(Decoder(layer.group, coding=coding, name=name), name)

    # ---------------------------------------------------------------------------------------------- access
    def get_layer(self, name: str) -> Layer:
        """The layer called ``name`` (``KeyError`` listing the names otherwise)."""
        for layer in self.layers:
            if layer.name == name:
                return layer
        raise KeyError(f"{self.label}: no layer named {name!r}; layers are: {', '.join(x.name for x in self.layers)}")

    @property
    def input_shape(self):
        """Shape of one input sample (a list of shapes for several inputs)."""
        shapes = [layer.shape for layer in self.input_layers]
        return shapes[0] if len(shapes) == 1 else shapes

    @property
    def output_shape(self):
        """Shape of one decoded output sample (a list for several outputs)."""
        shapes = [layer.output_shape for layer in self.output_layers]
        return shapes[0] if len(shapes) == 1 else shapes

    def count_params(self, trainable_only: bool = False) -> int:
        """Number of parameter elements of the whole model."""
        return sum(p.numel() for p in self.parameters() if p.requires_grad or not trainable_only)

    # ---------------------------------------------------------------------------------------------- summary
    def summary(self, print_fn=print, sample=None, **profile_kwargs) -> str:
        """Print (with ``print_fn``; ``None`` prints nothing) and return a table of the layers.

        Columns: layer name and type, output shape per step (no batch/time), neuron model (with its
        parameters), parameter count, synaptic delays of its incoming connections (ms), inbound
        layers.  Feedback connections follow as ``fb_...`` rows.  Given a ``sample`` (inputs, as for
        :func:`spaic_train.profile`, which gets ``profile_kwargs``), the profile table follows: neurons,
        synapses, firing rates, SOPs/MACs per sample and the energy estimate.
        """
        rows = [("Layer (type)", "Output shape", "Neuron", "Params", "Delays", "Connected to")]
        for layer in self.layers:
            rows.append((f"{layer.name} ({type(layer).__name__})", format_shape(layer.output_shape),
                         layer.neuron_description(), f"{layer.count_params():,}", layer.delay_description(),
                         ", ".join(t.layer.name for t in layer.inbound) or "-"))
        for fb in self.feedbacks:
            conn = fb.connection
            rows.append((f"{conn.name} (Feedback)", f"-> {conn.post.name}", conn.link_type,
                         f"{fb.count_params():,}", fb.delay_description() + " (>=1 step)"
                         if _is_feedback_edge(self, conn) else fb.delay_description(), conn.pre.name))
        widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
        line = "  ".join(f"{{:<{w}}}" for w in widths)
        total = sum(widths) + 2 * (len(widths) - 1)
        codings = ", ".join(self.decoder_codings)
        out = [f'Model: "{self.name or type(self).__name__.lower()}" ({type(self).__name__}; '
               f"time_steps={self.time_steps}, dt={self.dt:g} ms, decoder={codings})", "=" * total,
               line.format(*rows[0]).rstrip(), "-" * total]
        out += [line.format(*r).rstrip() for r in rows[1:]]
        n_all = self.count_params()
        n_train = self.count_params(trainable_only=True)
        n_buf = sum(b.numel() for b in self.buffers())
        out += ["=" * total, f"Total params: {n_all:,}", f"Trainable params: {n_train:,}",
                f"Non-trainable params: {n_all - n_train:,}",
                f"Buffers (masks, delays, batch-norm statistics): {n_buf:,}"]
        if sample is not None:
            from ..profiling import profile

            out += ["", profile(self, sample, **profile_kwargs).table()]
        text = "\n".join(out)
        if print_fn is not None:
            print_fn(text)
        return text

    # ---------------------------------------------------------------------------------------------- config
    def get_config(self) -> dict[str, Any]:
        """JSON-able architecture: the layer graph (each layer's config and inbound layer names), feedback,
        inputs, outputs, decoders, ``time_steps``, ``dt`` and ``name``."""
        layers = []
        for layer in self.layers:
            _check_registered(layer)
            layers.append({"class_name": type(layer).__name__, "config": layer.get_config(),
                           "inbound": [t.layer.name for t in layer.inbound]})
        return {"name": self.name, "time_steps": self.time_steps, "dt": self.dt,
                "decoder": list(self.decoder_codings), "layers": layers,
                "inputs": [x.name for x in self.input_layers], "outputs": [x.name for x in self.output_layers],
                "feedback": [fb.get_config() for fb in self.feedbacks]}

    @classmethod
    def from_config(cls, config: dict[str, Any], entry_name: Optional[EntryNamer] = None) -> Model:
        """Build a model (fresh weights) from :meth:`get_config` output.

        ``config["layers"]`` lists ``{"class_name", "config", "inbound"}`` entries, every layer after the ones it
        reads; an entry without ``"inbound"`` reads the previous entry, and without ``"outputs"`` the model's output
        is the last layer (so a config written by hand need not name every layer).  An error raised while building
        names the entry: ``entry_name(kind, index)`` (default ``layers[i]`` / ``feedback[i]``) and its class.
        """
        namer = entry_name or _default_entry_name
        layers: list[Layer] = []
        outputs: list[SymbolicTensor] = []
        by_name: dict[str, SymbolicTensor] = {}
        for i, entry in enumerate(config["layers"]):
            with _naming_errors(namer("layers", i), entry.get("class_name")):
                layer = LAYERS.get(entry["class_name"], owner="load").from_config(entry["config"])
                if isinstance(layer, Input):
                    out = layer.output
                else:
                    inbound = entry.get("inbound")
                    out = layer([outputs[-1]] if inbound is None else [by_name[n] for n in inbound])
            layers.append(layer)
            outputs.append(out)
            if layer.name is not None:
                by_name[layer.name] = out
        inputs = [by_name[n] for n in config["inputs"]] if "inputs" in config else \
            [t for t in outputs if isinstance(t.layer, Input)]
        outs = [by_name[n] for n in config["outputs"]] if "outputs" in config else [outputs[-1]]
        feedback = _feedback_from_config(config, namer)
        with _naming_layer_errors(layers, namer):
            return cls(inputs, outs, time_steps=config.get("time_steps"), decoder=config.get("decoder", "spike_rate"),
                       dt=config.get("dt", 1.0), feedback=feedback, name=config.get("name"))

    # ---------------------------------------------------------------------------------------------- training
    def compile(self, optimizer: Any = "adam", lr: float = 1e-3, loss: Any = "ce_rate",
                metrics: Union[Sequence[Any], Any, None] = ("accuracy",), scheduler: Any = None,
                optimizer_kwargs: Optional[dict] = None, scheduler_kwargs: Optional[dict] = None,
                delay_lr: Optional[float] = None, delay_sigma: Any = None, regularizers: Any = None,
                loss_kwargs: Optional[dict] = None) -> None:
        """Configure training: builds the :class:`~spaic_train.training.SNNModule` that ``fit`` uses.

        (This shadows ``nn.Module.compile``; use ``torch.compile(model)`` for TorchDynamo.)  Compiling again
        starts a fresh optimizer (the state of previous fits, or one restored by ``load_model``, is dropped).
        Only a single-input, single-output model can be compiled.

        Args:
            optimizer: ``'adam'``, ``'adamw'``, ``'sgd'``, ``'rmsprop'``, a ``torch.optim.Optimizer`` class, or a
                factory ``params -> Optimizer``.
            lr: learning rate.
            loss: ``'ce_rate'``, ``'ce_count'``, ``'mse_count'``, ``'tet'`` (needs ``decoder='sequence'``),
                ``'mse'``, ``'ce'`` or a callable ``(output, target) -> scalar``.
            metrics: metric names (``'accuracy'``, ``'top5_accuracy'``) or callables.
            scheduler: ``None``, ``'cosine'``, ``'step'``, ``'exponential'``, ``'onecycle'``, ``'plateau'``, a
                scheduler class or a factory.
            optimizer_kwargs, scheduler_kwargs: extra options (``weight_decay``, ``momentum``, ``T_max``...).
            delay_lr: learning rate of learnable delays (``learn_delay=True``; default 100 × ``lr``).
            delay_sigma: annealing of the learnable delays' relaxation width, ``{start, end, epochs}`` (ms, ms,
                epochs) or a :class:`~spaic_train.training.DelaySigmaSchedule` (see
                :class:`~spaic_train.training.SNNModule`).
            regularizers: activity regularisers in the training loss, e.g. ``{"rate": {"target": 0.05}}``,
                ``{"spike_l1": 0.5}``, ``{"energy": 1.0}`` (see :mod:`spaic_train.training.regularizers`).
            loss_kwargs: options of a named loss (``loss='ce_rate', loss_kwargs={'scale': 5.0}``); kept as names
                and numbers, so ``model.save`` stores them and ``load_model`` compiles the same loss again.

        Raises:
            ValueError: an unknown loss, optimizer, scheduler or metric name, a bad ``lr`` (negative, NaN) or
                ``delay_lr``, a model with several inputs or outputs.
        """
        if len(self.output_layers) != 1:
            raise ValueError(f"{self.label}: compile/fit need a single-output model, this one has "
                             f"{len(self.output_layers)} outputs")
        if len(self.input_layers) != 1:
            raise ValueError(f"{self.label}: compile/fit need a single-input model (the training loop feeds one "
                             f"tensor), this one has {len(self.input_layers)} inputs")
        loss_fn = training.get_loss(loss, **loss_kwargs) if loss_kwargs else loss
        module = training.SNNModule(self, loss=loss_fn, optimizer=optimizer, lr=lr, optimizer_kwargs=optimizer_kwargs,
                           scheduler=scheduler, scheduler_kwargs=scheduler_kwargs, metrics=metrics, delay_lr=delay_lr,
                           delay_sigma=delay_sigma, regularizers=regularizers)
        self.__dict__["_module"] = module
        self.__dict__["_last_trainer"] = None
        self.__dict__["_pending_optimizer_state"] = None
        metric_list = None if metrics is None else _as_list(metrics)
        self.__dict__["_compile_config"] = {
            "optimizer": optimizer, "lr": lr, "loss": loss, "loss_kwargs": loss_kwargs, "metrics": metric_list,
            "scheduler": scheduler, "optimizer_kwargs": optimizer_kwargs, "scheduler_kwargs": scheduler_kwargs,
            "delay_lr": delay_lr, "delay_sigma": None if module.delay_sigma is None else module.delay_sigma.to_dict(),
            "regularizers": {r.name: r.get_config() for r in module.regularizers} or None}

    @property
    def module(self):
        """The :class:`~spaic_train.training.SNNModule` built by :meth:`compile` (``None`` before)."""
        return self._module

    @property
    def optimizer(self) -> Optional[torch.optim.Optimizer]:
        """The optimizer of the last :meth:`fit` (``None`` before the first fit)."""
        trainer = self._last_trainer
        if trainer is None:
            return None
        opts = getattr(trainer, "optimizers", None) or []
        return opts[0] if opts else None

    def optimizer_state_dict(self) -> Optional[dict]:
        """State of the optimizer: from the last fit, or the one restored by ``load_model`` (not yet used)."""
        opt = self.optimizer
        if opt is not None:
            return opt.state_dict()
        return self._pending_optimizer_state

    def _require_module(self, what: str):
        if self._module is None:
            raise RuntimeError(f"{self.label}: call model.compile(optimizer=..., loss=...) before {what}")
        return self._module

    @property
    def num_classes(self) -> int:
        """Number of output units (the size labels are checked against)."""
        return math.prod(self.output_layers[0].output_shape)

    def fit(self, x, y=None, **kwargs):
        """Train with :func:`spaic_train.training.fit` and return its ``History``.

        Takes the arguments of :func:`~spaic_train.training.fit` (``epochs``, ``batch_size``, ``validation_data``,
        ``validation_split``, ``callbacks``, ``devices``, ``logger``, ``checkpoint_dir``, ``resume``, ``seed``,
        ``on_nan``, any ``lightning.Trainer`` option, ...), with the same defaults, and passes them on unchanged:
        ``x`` ``[N, *input_shape]`` (tensor/array) with labels ``y`` ``[N]`` (class indices) or ``[N, C]``, or a
        Dataset / DataLoader / LightningDataModule; input shapes and labels are checked there, before the trainer
        starts.  Besides, an optimizer state restored by ``load_model`` is loaded into the new optimizer, and the
        model is put in ``train()`` mode first (dropout on, batch norm updating).
        """
        module = self._require_module("fit")
        self.train()  # Lightning keeps the current mode: a model loaded (eval) or just evaluated must train
        if self._pending_optimizer_state is not None and kwargs.get("resume") is None:
            kwargs["callbacks"] = [*(kwargs.get("callbacks") or []),
                                   _RestoreOptimizer(self, self._pending_optimizer_state)]
        history = training.fit(module, x, y, **kwargs)
        self.__dict__["_last_trainer"] = history.trainer
        self.__dict__["_pending_optimizer_state"] = None
        return history

    def evaluate(self, x, y=None, **kwargs) -> dict[str, float]:
        """Loss and metrics on ``(x, y)``: :func:`spaic_train.training.evaluate` (same arguments and checks),
        ``{"loss": .., "accuracy": ..}``."""
        return training.evaluate(self._require_module("evaluate"), x, y, **kwargs)

    def predict(self, x, **kwargs) -> torch.Tensor:
        """Decoded outputs for ``x``: :func:`spaic_train.training.predict` (same arguments and checks),
        ``[N, *output_shape]`` on the CPU (``[T, N, ...]`` for the ``'sequence'`` decoder).  Works without
        :meth:`compile` (in eval mode)."""
        if len(self.output_layers) != 1 or len(self.input_layers) != 1:
            raise ValueError(f"{self.label}: predict needs a single-input, single-output model; call the model "
                             "itself, model(x), for several inputs/outputs")
        module = self._module if self._module is not None else training.SNNModule(self, metrics=())
        return training.predict(module, x, **kwargs)

    # ---------------------------------------------------------------------------------------------- saving
    def to_nir(self, path=None, dt: Optional[float] = None, sample_input: Optional[torch.Tensor] = None):
        """Export to the Neuromorphic Intermediate Representation (needs ``pip install 'spaic_train[nir]'``).

        Returns the ``nir.NIRGraph`` of :func:`spaic_train.nir.export` (same ``dt`` in seconds per step and
        ``sample_input`` check) and, given ``path``, writes it there atomically; ``spaic_train.from_nir(path)``
        rebuilds the model, other frameworks read it with their NIR importers.
        """
        from ..nir import export, write  # needs the optional nir package: imported only when used

        graph = export(self, sample_input=sample_input, dt=dt)
        if path is not None:
            write(graph, path)
        return graph

    def save(self, path, include_optimizer: bool = True) -> None:
        """Write architecture (JSON config), weights and buffers (masks, delays, batch-norm statistics),
        the compile settings and the optimizer state to ``path`` atomically.  See
        :func:`spaic_train.keras.serialization.save_model`."""
        from .serialization import save_model  # the lazy delegate (serialization imports this module)

        save_model(self, path, include_optimizer=include_optimizer)


def _is_feedback_edge(model: Model, conn) -> bool:
    nodes = [e for e in model._elements if hasattr(e, "shape_known")]
    ids = [id(n) for n in nodes]
    return ids.index(id(conn.pre)) >= ids.index(id(conn.post))


def _check_registered(layer: Layer) -> None:
    cls = type(layer)
    if cls.__name__ not in LAYERS or LAYERS.get(cls.__name__) is not cls:
        raise TypeError(f"{layer.label}: its class {cls.__name__} is not registered, so a saved model could not "
                        "rebuild it; decorate it with @spaic_train.keras.register_layer")


def _assign_names(layers: Sequence[Layer], owner: str) -> None:
    """Give unnamed layers ``<default_name>``, ``<default_name>_1``, ...; reject duplicate names."""
    names: dict[str, Layer] = {}
    for layer in layers:
        if layer.name is not None:
            if layer.name in names and names[layer.name] is not layer:
                raise ValueError(f"{owner}: two layers are named {layer.name!r} ({names[layer.name].label} and "
                                 f"{type(layer).__name__}); layer names must be unique")
            names[layer.name] = layer
    for layer in layers:
        if layer.name is None:
            base = layer.default_name
            name, k = base, 1
            while name in names:
                name = f"{base}_{k}"
                k += 1
            layer.name = name
            names[name] = layer


class Sequential(Model):
    """A linear stack of layers, the first an ``Input``.

    Args:
        layers: ``[Input(shape, encoder=...), layer, layer, ...]``; each layer reads the previous one.
        time_steps, decoder, dt, name: see :class:`Model`.
        feedback: :class:`~spaic_train.keras.layers.Feedback` connections between layers *by name*, e.g.
            ``Sequential([Input(64), Full(64, name='h'), Full(10, name='out')],
            feedback=[Feedback('out', 'h', max_delay=4.0)])``.

    Unnamed layers are named before they are built (``full``, ``full_1``, ``conv``, ...), so shape errors
    name the offending layer.
    """

    def __init__(self, layers: Sequence[Layer], time_steps: Optional[int] = None, decoder: str = "spike_rate",
                 dt: float = 1.0, feedback: Optional[Sequence[Feedback]] = None, name: Optional[str] = None):
        owner = f"Sequential({name!r})" if name else "Sequential"
        layers = list(layers)
        if not layers or not isinstance(layers[0], Input):
            first = type(layers[0]).__name__ if layers else "nothing"
            raise ValueError(f"{owner}: the first layer must be Input(shape, encoder=...), got {first}")
        if len(layers) < 2:
            raise ValueError(f"{owner}: add at least one neuron layer after the Input")
        for i, layer in enumerate(layers):
            if not isinstance(layer, Layer):
                raise TypeError(f"{owner}: item {i} is a {type(layer).__name__}, not a layer"
                                + ("; pass Feedback(...) objects as feedback=[...]" if isinstance(layer, Feedback)
                                   else ""))
            if i and isinstance(layer, Input):
                raise ValueError(f"{owner}: only the first layer may be an Input (item {i} is {layer.label})")
        _assign_names(layers, owner)
        x = layers[0].output
        for layer in layers[1:]:
            x = layer(x)
        super().__init__(layers[0], x, time_steps=time_steps, decoder=decoder, dt=dt, feedback=feedback, name=name)

    def get_config(self) -> dict[str, Any]:
        """JSON-able architecture: the layer list (class name + config), feedback, decoder, ``time_steps``, ``dt``."""
        cfg = super().get_config()
        for entry in cfg["layers"]:
            del entry["inbound"]
        del cfg["inputs"], cfg["outputs"]
        cfg["decoder"] = cfg["decoder"][0]
        return cfg

    @classmethod
    def from_config(cls, config: dict[str, Any], entry_name: Optional[EntryNamer] = None) -> Sequential:
        """Build a model (fresh weights) from :meth:`get_config` output; errors name the entry (see
        :meth:`Model.from_config`)."""
        namer = entry_name or _default_entry_name
        layers = []
        for i, entry in enumerate(config["layers"]):
            with _naming_errors(namer("layers", i), entry.get("class_name")):
                layers.append(LAYERS.get(entry["class_name"], owner="load").from_config(entry["config"]))
        feedback = _feedback_from_config(config, namer)
        with _naming_layer_errors(layers, namer):
            return cls(layers, time_steps=config.get("time_steps"), decoder=config.get("decoder", "spike_rate"),
                       dt=config.get("dt", 1.0), feedback=feedback, name=config.get("name"))


#: ``(kind, index) -> name`` of a config entry in error messages (kind: ``'layers'`` or ``'feedback'``)
EntryNamer = Callable[[str, int], str]


def _default_entry_name(kind: str, index: int) -> str:
    return f"{kind}[{index}]"


@contextmanager
def _naming_errors(where: str, class_name: Optional[str]):
    """Re-raise a ``ValueError`` / ``TypeError`` with the config entry that caused it in front."""
    try:
        yield
    except (TypeError, ValueError) as e:
        reraise_with_prefix(e, f"{where} ({class_name})" if class_name else where)


@contextmanager
def _naming_layer_errors(layers: Sequence[Layer], namer: EntryNamer):
    """An error of the model build that starts with a layer's label is reported for that layer's entry."""
    try:
        yield
    except (TypeError, ValueError) as e:
        msg = str(e)
        for i, layer in enumerate(layers):
            if layer.name and msg.startswith(layer.label):
                reraise_with_prefix(e, f"{namer('layers', i)} ({type(layer).__name__})")
        raise


def _feedback_from_config(config: dict[str, Any], namer: EntryNamer) -> list[Feedback]:
    feedback = []
    for i, entry in enumerate(config.get("feedback", [])):
        with _naming_errors(namer("feedback", i), None):
            feedback.append(Feedback.from_config(entry))
    return feedback


class _RestoreOptimizer(pl.Callback):
    """Loads a saved optimizer state into the optimizer a fit created (once)."""

    def __init__(self, model: Model, state: dict):
        self.model = model
        self.state = state

    def on_fit_start(self, trainer, pl_module):
        opts = trainer.optimizers
        if opts:
            opts[0].load_state_dict(self.state)
        self.model.__dict__["_pending_optimizer_state"] = None
