"""``Network``: SPAIC-style declarative container that compiles and runs a spiking network.

The container registers elements and compiles them into a :class:`~spaic_train.network.plan.Plan`; the time
loops that run a plan live in :mod:`spaic_train.network.runner`.
"""

from __future__ import annotations

import contextlib
from typing import Optional

import torch
from torch import nn

from ..assembly import Assembly, NeuronGroup
from ..connection import Connection
from .decoders import Decoder
from .encoders import Encoder
from .monitors import StateMonitor
from .plan import Plan
from .runner import Runner, encode_inputs

_ELEMENT_TYPES = (Assembly, Connection, Decoder, StateMonitor)
_MODES = ("auto", "step")


class Network(nn.Module):
    """A spiking network of encoders, neuron groups, connections, decoders and monitors.

    SPAIC's declarative style: assigning ``Encoder``, ``NeuronGroup``, ``Connection``,
    ``Decoder`` and ``StateMonitor`` objects as attributes (in ``__init__`` of a subclass, or on
    an instance) registers them in declaration order; ``net.add(obj)`` does the same
    programmatically.

    Timing: a connection delivers the presynaptic value of step ``t − d`` to step ``t`` (``d`` its
    delay in steps, ``round(delay_ms / dt)``); ``d = 0`` is the same step, so a feed-forward chain
    responds within one step.  A connection whose pre is declared after its post (or a group to
    itself) is *feedback* and always has ``d >= 1``.  Several connections into one variable sum.

    Schedule: acyclic parts run time-batched, each synapse op on all ``T`` steps at once; connections
    inside a cycle run step by step.  Both give identical results, except that a ``batchnorm`` synapse in
    training mode normalizes over ``T·B`` samples when time-batched and over the ``B`` samples of one step
    inside a cycle.

    Args:
        dt: simulation step in ms (default 1.0).
        time_steps: default number of steps ``T`` for static inputs.
        name: display name.
        checkpoint_steps: ``None`` (default) or an int ``K >= 1``: *checkpoint through time* — while
            gradients are recorded, a run of ``T > K`` steps is split into chunks of ``K`` steps, each run
            under ``torch.utils.checkpoint.checkpoint(use_reentrant=False)`` with the neuron state and the
            delay-line history carried between chunks (the ``reset=False`` machinery).  Activations inside a
            chunk (synaptic currents, conv / batch-norm / pool outputs, spikes of hidden layers) are not
            kept for backward but recomputed chunk by chunk, so the memory of BPTT grows with ``K`` (plus
            the small per-chunk state) instead of ``T``; the price is a second forward pass in backward.
            Outputs and gradients equal the plain run's, except with ``batchnorm`` synapses in training
            mode, whose batch statistics are then per chunk (as when running the chunks with
            ``reset=False``); running statistics are updated once per chunk (not again on recomputation).
            Also a per-call argument, ``net(x, checkpoint_steps=K)``.

    Call: ``net(x, time_steps=None, reset=True, mode='auto', checkpoint_steps=None)`` where ``x`` is a static
    ``[B, *shape]`` or sequence ``[T, B, *shape]`` input (a dict by encoder name, or a tuple in
    encoder order, for several encoders).  Returns the decoder output (a tuple for several
    decoders; the last group's spikes ``[T, B, *shape]`` when there is none).  ``reset=False``
    continues from the state the previous call ended in.  ``mode='step'`` forces step-by-step
    execution of the whole network (the reference for the time-batched schedule).
    """

    def __init__(self, dt: float = 1.0, time_steps: Optional[int] = None, name: Optional[str] = None,
                 checkpoint_steps: Optional[int] = None):
        super().__init__()
        self.__dict__["_elements"] = []
        self.__dict__["_plans"] = {}
        self.__dict__["_carry"] = None
        self.__dict__["_recording"] = None
        self.name = name
        self.dt = dt
        self.time_steps = time_steps
        self.checkpoint_steps = checkpoint_steps

    # ------------------------------------------------------------------ building
    @property
    def label(self) -> str:
        return f"{type(self).__name__}({self.name!r})" if self.name else type(self).__name__

    @property
    def dt(self) -> float:
        return self._dt

    @dt.setter
    def dt(self, value: float) -> None:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
            raise ValueError(f"{self.label}: dt must be a positive number of ms, got {value!r}")
        self.__dict__["_dt"] = float(value)

    @property
    def time_steps(self) -> Optional[int]:
        return self._time_steps

    @time_steps.setter
    def time_steps(self, value: Optional[int]) -> None:
        self.__dict__["_time_steps"] = _check_time_steps(self.label, value, allow_none=True)

    @property
    def checkpoint_steps(self) -> Optional[int]:
        """Chunk length ``K`` of checkpointing through time, or ``None`` (off); see the class docstring."""
        return self.__dict__.get("_checkpoint_steps")

    @checkpoint_steps.setter
    def checkpoint_steps(self, value: Optional[int]) -> None:
        self.__dict__["_checkpoint_steps"] = _check_checkpoint_steps(self.label, value)

    def __setattr__(self, name: str, value) -> None:
        if isinstance(value, _ELEMENT_TYPES) and "_elements" in self.__dict__:
            if any(e is value for e in self._elements):
                raise ValueError(f"{self.label}: {value!r} is already part of the network")
            if getattr(value, "name", None) is None:
                value.name = name
            self._elements.append(value)
            self._plans.clear()
            self.__dict__["_carry"] = None
        super().__setattr__(name, value)

    def add(self, obj, name: Optional[str] = None):
        """Register ``obj`` (encoder, group, connection, decoder or monitor) and return it."""
        if not isinstance(obj, _ELEMENT_TYPES):
            raise TypeError(f"{self.label}.add: expected an Encoder, NeuronGroup, Connection, Decoder or "
                            f"StateMonitor, got {type(obj).__name__}")
        name = name or getattr(obj, "name", None) or f"{type(obj).__name__.lower()}_{len(self._elements)}"
        if name in self.__dict__ or name in self._modules:
            raise ValueError(f"{self.label}.add: the name {name!r} is already taken")
        setattr(self, name, obj)
        return obj

    @property
    def groups(self) -> list[NeuronGroup]:
        return [e for e in self._elements if isinstance(e, NeuronGroup)]

    @property
    def connections(self) -> list[Connection]:
        return [e for e in self._elements if isinstance(e, Connection)]

    @property
    def encoders(self) -> list[Encoder]:
        return [e for e in self._elements if isinstance(e, Encoder)]

    @property
    def decoders(self) -> list[Decoder]:
        return [e for e in self._elements if isinstance(e, Decoder)]

    @property
    def monitors(self) -> list[StateMonitor]:
        return [e for e in self._elements if isinstance(e, StateMonitor)]

    def compile_plan(self, mode: str = "auto") -> Plan:
        """The compiled schedule (cached until an element is added)."""
        if mode not in _MODES:
            raise ValueError(f"{self.label}: mode must be one of {_MODES}, got {mode!r}")
        if mode not in self._plans:
            self._plans[mode] = Plan(self.label, self._elements, force_stepped=mode == "step")
        return self._plans[mode]

    def apply_constraints(self) -> None:
        """Clamp weights to ``[w_min, w_max]`` and re-apply masks (call after each optimizer step)."""
        for c in self.connections:
            c.apply_constraints()

    def detach_state(self) -> None:
        """Cut the autograd graph of the carried state (truncated BPTT with ``reset=False``)."""
        if self._carry is not None:
            for node in self._carry.values():
                node["state"] = {k: v.detach() for k, v in node["state"].items()}
                node["history"] = {k: v.detach() for k, v in node["history"].items()}

    @contextlib.contextmanager
    def record(self, var_names=("O",), detach: bool = True):
        """Record variables of every assembly during the runs inside a ``with`` block.

        Yields a dict ``{assembly name: {var: tensor [T, B, *shape]}}`` (detached unless ``detach=False``,
        which keeps the autograd graph for activity regularisers) refilled by each run; variables an assembly
        does not have (an encoder's ``'V'``) are skipped.  Used by monitoring callbacks; outside the block
        nothing extra is kept.
        """
        out: dict[str, dict[str, torch.Tensor]] = {}
        previous = self._recording
        self.__dict__["_recording"] = (tuple(var_names), out, bool(detach))
        try:
            yield out
        finally:
            self.__dict__["_recording"] = previous

    # ------------------------------------------------------------------ running
    def forward(self, x, time_steps: Optional[int] = None, reset: bool = True, mode: str = "auto",
                checkpoint_steps: Optional[int] = None):
        plan = self.compile_plan(mode)
        T_default = _check_time_steps(self.label, time_steps, allow_none=True) or self.time_steps
        K = self.checkpoint_steps if checkpoint_steps is None else _check_checkpoint_steps(self.label,
                                                                                           checkpoint_steps)
        dt = self.dt
        for g in plan.nodes:
            if isinstance(g, NeuronGroup):
                g.neuron.dt = dt
        for c in plan.conns:
            c.dt = dt

        encoded = encode_inputs(self.label, plan, x, T_default, dt)
        T, B = next(iter(encoded.values())).shape[:2]
        carry = None if reset else self._carry
        if reset or carry is None:
            for c in plan.conns:
                c.reset_state()
        elif carry.get("batch") != B:
            raise ValueError(f"{self.label}: reset=False continues a run with batch size {carry.get('batch')}, "
                             f"but this input has batch size {B}")
        keep = plan.keep
        if self._recording is not None:
            extra = set(self._recording[0])
            keep = {v: plan.keep[v] | (extra & set(n.var_names)) for v, n in enumerate(plan.nodes)}
        runner = Runner(plan, keep, B)
        if K is not None and T > K and torch.is_grad_enabled():
            records, new_carry = runner.run_checkpointed(encoded, carry, K, self._exported(plan, keep),
                                                         self._training_batchnorms())
        else:
            records, new_carry = runner.run(encoded, carry)
        self.__dict__["_carry"] = new_carry

        if self._recording is not None:
            wanted, out, detach = self._recording
            out.clear()
            for v, node in enumerate(plan.nodes):
                out[node.name] = {var: records[v][var].detach() if detach else records[v][var]
                                  for var in wanted if var in records[v]}
        for m in plan.monitors:
            m.record(records[plan.index[id(m.target)]][m.var_name], dt)
        if not plan.decoders:
            return records[plan.output_node()]["O"]
        outs = tuple(d.decode(records[plan.index[id(d.target)]], dt) for d in plan.decoders)
        return outs[0] if len(outs) == 1 else outs

    def _exported(self, plan: Plan, keep: dict[int, set]) -> dict[int, set]:
        """Per node, the variables used after a run: by decoders, monitors, the output and :meth:`record`."""
        export: dict[int, set] = {v: set() for v in range(len(plan.nodes))}
        for obj in [*plan.decoders, *plan.monitors]:
            export[plan.index[id(obj.target)]].add(obj.var_name)
        if not plan.decoders:
            export[plan.output_node()].add("O")
        if self._recording is not None:
            for v in export:
                export[v] |= keep[v]
        return export

    def _training_batchnorms(self) -> list[nn.Module]:
        """The batch norms that update running statistics in this run."""
        return [m for m in self.modules()
                if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.training and m.track_running_stats]


def _check_checkpoint_steps(owner: str, value) -> Optional[int]:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{owner}: checkpoint_steps must be None or an int >= 1, got {value!r}")
    return value


def _check_time_steps(owner: str, value, allow_none: bool) -> Optional[int]:
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{owner}: time_steps must be an int >= 1, got {value!r}")
    return value

