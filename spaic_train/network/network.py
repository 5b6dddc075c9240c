"""``Network``: SPAIC-style declarative container that compiles and runs a spiking network."""

from __future__ import annotations

import contextlib
from typing import Optional

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint as _checkpoint

from ..assembly import Assembly, NeuronGroup
from ..connection import Connection
from .decoders import Decoder
from .encoders import Encoder
from .monitors import StateMonitor
from .schedule import Stage, build_schedule

_ELEMENT_TYPES = (Assembly, Connection, Decoder, StateMonitor)
_MODES = ("auto", "step")


class _Plan:
    """A compiled network: nodes, connections, schedule stages and which variables to record."""

    def __init__(self, net: Network, force_stepped: bool):
        self.nodes: list[Assembly] = [e for e in net._elements if isinstance(e, Assembly)]
        self.conns: list[Connection] = [e for e in net._elements if isinstance(e, Connection)]
        self.decoders: list[Decoder] = [e for e in net._elements if isinstance(e, Decoder)]
        self.monitors: list[StateMonitor] = [e for e in net._elements if isinstance(e, StateMonitor)]
        self.encoders: list[Encoder] = [n for n in self.nodes if isinstance(n, Encoder)]
        index = {id(n): i for i, n in enumerate(self.nodes)}
        self.index = index

        def node_of(obj: Assembly, owner: str, role: str) -> int:
            if id(obj) not in index:
                raise ValueError(f"{net.label}: {owner} uses {role} {obj.label}, which is not part of the network; "
                                 "assign it as an attribute (or net.add it) first")
            return index[id(obj)]

        if not self.encoders:
            raise ValueError(f"{net.label}: the network has no Encoder to feed its input into; add "
                             "spaic_train.Encoder(shape=..., coding=...) first")
        edges = []
        for c in self.conns:
            a = node_of(c.pre, f"connection {c.label}", "pre")
            b = node_of(c.post, f"connection {c.label}", "post")
            if isinstance(c.post, Encoder):
                raise ValueError(f"{net.label}: connection {c.label} targets the encoder {c.post.label}; "
                                 "encoders take no input from connections")
            if c.pre_var_name not in c.pre.var_names:
                raise ValueError(f"{net.label}: connection {c.label} reads {c.pre_var_name!r} from {c.pre.label}, "
                                 f"which only has {', '.join(c.pre.var_names)}")
            c.min_delay_steps = 1 if a >= b else 0  # feedback: read the previous step at the earliest
            edges.append((a, b))
        self.edges = edges
        for d in self.decoders:
            node_of(d.target, repr(d), "target")
        for m in self.monitors:
            node_of(m.target, repr(m), "target")
        self.stages: list[Stage] = build_schedule(len(self.nodes), edges, force_stepped)
        # variables to keep per node beyond the spikes
        self.keep: dict[int, set] = {i: {"O"} for i in range(len(self.nodes))}
        for c, (a, _) in zip(self.conns, edges):
            self.keep[a].add(c.pre_var_name)
        for obj in [*self.decoders, *self.monitors]:
            self.keep[index[id(obj.target)]].add(obj.var_name)
        self.incoming: dict[int, list[int]] = {i: [] for i in range(len(self.nodes))}
        for k, (_, b) in enumerate(edges):
            self.incoming[b].append(k)


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

    def compile_plan(self, mode: str = "auto") -> _Plan:
        """The compiled schedule (cached until an element is added)."""
        if mode not in _MODES:
            raise ValueError(f"{self.label}: mode must be one of {_MODES}, got {mode!r}")
        if mode not in self._plans:
            self._plans[mode] = _Plan(self, force_stepped=mode == "step")
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
        need_hist = [0] * len(plan.nodes)
        for c, (a, _) in zip(plan.conns, plan.edges):
            need_hist[a] = max(need_hist[a], c.history_steps)

        encoded = self._encode_inputs(plan, x, T_default)
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
        if K is not None and T > K and torch.is_grad_enabled():
            records, new_carry = self._run_checkpointed(plan, keep, encoded, carry, T, B, K, need_hist)
        else:
            records, new_carry = self._run_span(plan, keep, encoded, carry, T, B, need_hist)
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
            last = max(i for i, n in enumerate(plan.nodes) if isinstance(n, NeuronGroup)) if self.groups else 0
            return records[last]["O"]
        outs = tuple(d.decode(records[plan.index[id(d.target)]], dt) for d in plan.decoders)
        return outs[0] if len(outs) == 1 else outs

    def _run_span(self, plan: _Plan, keep: dict[int, set], encoded: dict[int, torch.Tensor], carry, T: int, B: int,
                  need_hist: list[int]):
        """Run the schedule over the ``T`` steps of ``encoded`` from ``carry`` (``None``: initial state).

        Returns ``(records, new_carry)``: ``{node: {var: [T, B, *shape]}}`` and the state / delay-line
        history a ``reset=False`` continuation (or the next checkpoint chunk) starts from.
        """
        records: dict[int, dict[str, torch.Tensor]] = {}
        finals: dict[int, dict[str, torch.Tensor]] = {}
        for i, seq in encoded.items():
            records[i] = {"O": seq}
        for stage in plan.stages:
            if stage.stepped:
                self._run_stepped(plan, keep, stage, records, finals, carry, T, B)
            else:
                (v,) = stage.nodes
                if v not in records:
                    self._run_batched(plan, keep, v, records, finals, carry, T)

        new_carry = {"batch": B}
        for v in range(len(plan.nodes)):
            hist = {}
            if need_hist[v]:
                for var, seq in records[v].items():
                    prev = None if carry is None else carry[v]["history"].get(var)
                    full = seq if prev is None else torch.cat([prev, seq])
                    hist[var] = full[-need_hist[v]:]
            new_carry[v] = {"state": finals.get(v, {}), "history": hist}
        return records, new_carry

    def _run_checkpointed(self, plan: _Plan, keep: dict[int, set], encoded: dict[int, torch.Tensor], carry, T: int,
                          B: int, K: int, need_hist: list[int]):
        """:meth:`_run_span` over chunks of ``K`` steps, each under a non-reentrant activation checkpoint.

        A chunk returns only what is used after the run (decoder / monitor / recorded variables) and
        the carry into the next chunk, so nothing else of it is kept for backward.
        """
        export: dict[int, set] = {v: set() for v in range(len(plan.nodes))}
        for obj in [*plan.decoders, *plan.monitors]:
            export[plan.index[id(obj.target)]].add(obj.var_name)
        if not plan.decoders:
            groups = [i for i, n in enumerate(plan.nodes) if isinstance(n, NeuronGroup)]
            export[max(groups) if groups else 0].add("O")
        if self._recording is not None:
            for v in export:
                export[v] |= keep[v]
        bns = [m for m in self.modules()
               if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.training and m.track_running_stats]

        def make_chunk():
            calls = [0]

            def chunk(enc, carry_in):
                calls[0] += 1
                # a second call is the recomputation in backward: batch norm must not update its running
                # statistics again
                frozen = [_frozen_stats(m) for m in bns] if calls[0] > 1 else []
                try:
                    steps = next(iter(enc.values())).shape[0]
                    recs, new_carry = self._run_span(plan, keep, enc, carry_in, steps, B, need_hist)
                finally:
                    for restore in frozen:
                        restore()
                out = {v: {var: recs[v][var] for var in vs if var in recs[v]} for v, vs in export.items() if vs}
                return out, new_carry

            return chunk

        parts: list[dict[int, dict[str, torch.Tensor]]] = []
        for t0 in range(0, T, K):
            enc = {i: seq[t0:t0 + K] for i, seq in encoded.items()}
            out, carry = _checkpoint(make_chunk(), enc, carry, use_reentrant=False)
            parts.append(out)
        records = {v: {var: torch.cat([p[v][var] for p in parts]) for var in parts[0][v]} for v in parts[0]}
        return records, carry

    def _encode_inputs(self, plan: _Plan, x, T: Optional[int]) -> dict[int, torch.Tensor]:
        encs = plan.encoders
        if isinstance(x, dict):
            names = {e.name for e in encs}
            unknown = set(x) - names
            if unknown or len(x) != len(encs):
                raise ValueError(f"{self.label}: input dict keys {sorted(x)} must name each encoder exactly once: "
                                 f"{sorted(names)}")
            xs = [x[e.name] for e in encs]
        elif isinstance(x, (tuple, list)):
            xs = list(x)
        else:
            xs = [x]
        if len(xs) != len(encs):
            raise ValueError(f"{self.label}: got {len(xs)} input(s) for {len(encs)} encoder(s) "
                             f"({', '.join(e.label for e in encs)})")
        out = {}
        for e, xi in zip(encs, xs):
            seq = e.encode(xi, T, self.dt)
            if not torch.is_floating_point(seq):
                seq = seq.float()
            out[plan.index[id(e)]] = seq
        shapes = {tuple(s.shape[:2]) for s in out.values()}
        if len(shapes) > 1:
            raise ValueError(f"{self.label}: encoders disagree on (time steps, batch): {sorted(shapes)}")
        return out

    def _history(self, carry, v: int, var: str) -> Optional[torch.Tensor]:
        return None if carry is None else carry[v]["history"].get(var)

    def _conn_input(self, plan: _Plan, k: int, records, carry) -> torch.Tensor:
        c = plan.conns[k]
        a = plan.edges[k][0]
        return c(records[a][c.pre_var_name], history=self._history(carry, a, c.pre_var_name))

    def _initial_state(self, group: NeuronGroup, v: int, carry, like: torch.Tensor) -> dict[str, torch.Tensor]:
        if carry is not None and carry[v]["state"]:
            return carry[v]["state"]
        return group.neuron.initial_state(like)

    def _run_batched(self, plan: _Plan, keep: dict[int, set], v: int, records, finals, carry, T: int) -> None:
        group = plan.nodes[v]
        isyn = vkick = None
        for k in plan.incoming[v]:
            out = self._conn_input(plan, k, records, carry)
            if plan.conns[k].post_var_name == "V":
                vkick = out if vkick is None else vkick + out
            else:
                isyn = out if isyn is None else isyn + out
        total = _add(isyn, vkick)
        if total is None:
            some = next(iter(records.values()))["O"]
            total = some.new_zeros((T, some.shape[1], *group.shape))
        state = self._initial_state(group, v, carry, total[0])
        O, final, vseq = group.neuron.run_sequence(total, state, return_v="V" in keep[v])
        rec = {"O": O}
        if vseq is not None:
            rec["V"] = vseq
        if "Isyn" in keep[v]:
            rec["Isyn"] = isyn if isyn is not None else torch.zeros_like(total)
        records[v] = rec
        finals[v] = final

    def _run_stepped(self, plan: _Plan, keep: dict[int, set], stage: Stage, records, finals, carry, T: int,
                     B: int) -> None:
        external: dict[int, dict[str, Optional[torch.Tensor]]] = {v: {"Isyn": None, "V": None} for v in stage.nodes}
        for k in stage.external:
            b = plan.edges[k][1]
            var = plan.conns[k].post_var_name
            out = self._conn_input(plan, k, records, carry)
            external[b][var] = out if external[b][var] is None else external[b][var] + out
        groups = [v for v in stage.nodes if v not in records]  # encoders are already encoded
        steps: dict[int, dict[str, list[torch.Tensor]]] = {v: {var: [] for var in keep[v]} for v in stage.nodes}
        for v in stage.nodes:
            if v in records:
                steps[v]["O"] = list(records[v]["O"].unbind(0))
        ref = next(iter(records.values()))["O"]
        states = {}
        for v in groups:
            like = ref.new_zeros((B, *plan.nodes[v].shape))
            states[v] = self._initial_state(plan.nodes[v], v, carry, like)
        internal_into: dict[int, list[int]] = {v: [] for v in stage.nodes}
        for k in stage.internal:
            internal_into[plan.edges[k][1]].append(k)
        for t in range(T):
            for v in groups:
                group = plan.nodes[v]
                isyn = None if external[v]["Isyn"] is None else external[v]["Isyn"][t]
                vkick = None if external[v]["V"] is None else external[v]["V"][t]
                for k in internal_into[v]:
                    zeros = ref.new_zeros((B, *plan.nodes[plan.edges[k][0]].shape))
                    out = self._conn_step(plan, k, steps, carry, t, zeros)
                    if plan.conns[k].post_var_name == "V":
                        vkick = out if vkick is None else vkick + out
                    else:
                        isyn = out if isyn is None else isyn + out
                total = _add(isyn, vkick)
                if total is None:
                    total = ref.new_zeros((B, *group.shape))
                o, states[v] = group.neuron.step(total, states[v])
                rec = steps[v]
                rec["O"].append(o)
                if "V" in rec:
                    rec["V"].append(states[v]["V"])
                if "Isyn" in rec:
                    rec["Isyn"].append(isyn if isyn is not None else torch.zeros_like(total))
        for v in groups:
            records[v] = {var: torch.stack(seq) for var, seq in steps[v].items()}
            finals[v] = states[v]

    def _conn_step(self, plan: _Plan, k: int, steps, carry, t: int, zeros: torch.Tensor) -> torch.Tensor:
        """Input of connection ``k`` at step ``t`` inside a stepped stage (``zeros`` shaped like one pre step)."""
        c = plan.conns[k]
        a = plan.edges[k][0]
        var = c.pre_var_name
        done = steps[a][var]
        h = c.history_steps
        # pre not computed yet this step: a feedback edge (delay >= 1) never reads it
        x_t = done[t] if len(done) > t else zeros
        history = None
        if h:
            past = done[max(0, t - h):t]
            if len(past) < h:
                prev = self._history(carry, a, var)
                if prev is not None:
                    past = list(prev.unbind(0))[-(h - len(past)):] + past
            if past:
                history = torch.stack(past)
                if history.shape[0] < h:
                    pad = zeros.unsqueeze(0).expand(h - history.shape[0], *zeros.shape)
                    history = torch.cat([pad, history])
        return c(x_t.unsqueeze(0), history=history)[0]


def _add(a: Optional[torch.Tensor], b: Optional[torch.Tensor]) -> Optional[torch.Tensor]:
    if a is None:
        return b
    return a if b is None else a + b


def _frozen_stats(bn: nn.Module):
    """Snapshot a batch norm's running statistics; returns the function that restores them."""
    saved = {k: b.detach().clone() for k, b in bn.named_buffers(recurse=False) if b is not None}

    def restore() -> None:
        with torch.no_grad():
            for k, b in bn.named_buffers(recurse=False):
                if k in saved:
                    b.copy_(saved[k])

    return restore


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

