"""The time loops of a compiled :class:`~spaic_train.network.plan.Plan`: time-batched, stepped and checkpointed.

A run starts from a *carry* (``None``: the initial state) and returns the records of every node and the
carry a continuation starts from: per node its final neuron state and the trailing presynaptic history the
delay lines of the connections out of it read (:func:`~spaic_train.connection.delays.trailing_history`)::

    {"batch": B, v: {"state": {var: [B, ...]}, "history": {var: [H, B, ...]}}, ...}

Stages run in schedule order: a node outside any cycle runs *time-batched* (its incoming connections on
all ``T`` steps at once, then the neuron over the sequence), a cycle runs *step by step*.  With
``checkpoint_steps=K`` the run is split into chunks of ``K`` steps, each under a non-reentrant activation
checkpoint, carrying the state between chunks as a ``reset=False`` continuation would.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Optional

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint as _checkpoint

from ..assembly import NeuronGroup
from ..connection.delays import step_history, trailing_history
from ..neurons.kernels import dispatch as kernel_dispatch
from .plan import Plan
from .schedule import Stage

__all__ = ["Runner", "encode_inputs"]

Records = dict[int, dict[str, torch.Tensor]]


def encode_inputs(owner: str, plan: Plan, x, T: Optional[int], dt: float) -> dict[int, torch.Tensor]:
    """Encode the network input ``x`` (one tensor, a tuple in encoder order, or a dict by encoder name) into
    ``{encoder node: [T, B, *shape]}``; every encoder must give the same ``(T, B)``."""
    encs = plan.encoders
    if isinstance(x, dict):
        names = {e.name for e in encs}
        unknown = set(x) - names
        if unknown or len(x) != len(encs):
            raise ValueError(f"{owner}: input dict keys {sorted(x)} must name each encoder exactly once: "
                             f"{sorted(names)}")
        xs = [x[e.name] for e in encs]
    elif isinstance(x, (tuple, list)):
        xs = list(x)
    else:
        xs = [x]
    if len(xs) != len(encs):
        raise ValueError(f"{owner}: got {len(xs)} input(s) for {len(encs)} encoder(s) "
                         f"({', '.join(e.label for e in encs)})")
    out = {}
    for e, xi in zip(encs, xs):
        seq = e.encode(xi, T, dt)
        if not torch.is_floating_point(seq):
            seq = seq.float()
        out[plan.index[id(e)]] = seq
    shapes = {tuple(s.shape[:2]) for s in out.values()}
    if len(shapes) > 1:
        raise ValueError(f"{owner}: encoders disagree on (time steps, batch): {sorted(shapes)}")
    return out


class Runner:
    """Runs ``plan`` over time for one batch size.

    Args:
        plan: the compiled network (``dt`` already set on its groups and connections).
        keep: per node, the variables to record (``plan.keep`` plus any recorded ones).
        batch: batch size ``B``.
    """

    def __init__(self, plan: Plan, keep: dict[int, set], batch: int):
        self.plan = plan
        self.keep = keep
        self.batch = batch
        self.depths = plan.history_depths()

    # ------------------------------------------------------------------ whole runs
    def run(self, encoded: dict[int, torch.Tensor], carry) -> tuple[Records, dict]:
        """Run the schedule over the ``T`` steps of ``encoded`` from ``carry`` (``None``: initial state).

        Returns ``(records, new_carry)``: ``{node: {var: [T, B, *shape]}}`` and the state / delay-line
        history a ``reset=False`` continuation (or the next checkpoint chunk) starts from.
        """
        plan = self.plan
        T = next(iter(encoded.values())).shape[0]
        records: Records = {}
        finals: Records = {}
        for i, seq in encoded.items():
            records[i] = {"O": seq}
        for stage in plan.stages:
            if stage.stepped:
                self._run_stepped(stage, records, finals, carry, T)
            else:
                (v,) = stage.nodes
                if v not in records:
                    self._run_batched(v, records, finals, carry, T)

        new_carry = {"batch": self.batch}
        for v in range(len(plan.nodes)):
            hist = {}
            if self.depths[v]:
                for var, seq in records[v].items():
                    hist[var] = trailing_history(_history(carry, v, var), seq, self.depths[v])
            new_carry[v] = {"state": finals.get(v, {}), "history": hist}
        return records, new_carry

    def run_checkpointed(self, encoded: dict[int, torch.Tensor], carry, chunk_steps: int,
                         export: dict[int, set], batchnorms: Sequence[nn.Module]) -> tuple[Records, dict]:
        """:meth:`run` over chunks of ``chunk_steps`` steps, each under a non-reentrant activation checkpoint.

        A chunk returns only the variables in ``export`` (those used after the run: decoder / monitor /
        recorded ones) and the carry into the next chunk, so nothing else of it is kept for backward.  The
        ``batchnorms`` (training, with running statistics) do not update their statistics again when a chunk
        is recomputed in backward.
        """
        def make_chunk():
            calls = [0]

            def chunk(enc, carry_in):
                calls[0] += 1
                # a second call is the recomputation in backward: batch norm must not update its running
                # statistics again
                frozen = [_frozen_stats(m) for m in batchnorms] if calls[0] > 1 else []
                try:
                    recs, new_carry = self.run(enc, carry_in)
                finally:
                    for restore in frozen:
                        restore()
                out = {v: {var: recs[v][var] for var in vs if var in recs[v]} for v, vs in export.items() if vs}
                return out, new_carry

            return chunk

        T = next(iter(encoded.values())).shape[0]
        parts: list[Records] = []
        for t0 in range(0, T, chunk_steps):
            enc = {i: seq[t0:t0 + chunk_steps] for i, seq in encoded.items()}
            out, carry = _checkpoint(make_chunk(), enc, carry, use_reentrant=False)
            parts.append(out)
        records = {v: {var: torch.cat([p[v][var] for p in parts]) for var in parts[0][v]} for v in parts[0]}
        return records, carry

    # ------------------------------------------------------------------ stages
    def _conn_input(self, k: int, records: Records, carry) -> torch.Tensor:
        c = self.plan.conns[k]
        a = self.plan.edges[k][0]
        return c(records[a][c.pre_var_name], history=_history(carry, a, c.pre_var_name))

    def _fusable_norm_input(self, v: int) -> Optional[int]:
        """The connection whose trailing batch norm node ``v``'s neuron may fuse: the node's only input, into
        ``Isyn``, which is not recorded (fusing never materialises the normalised current)."""
        incoming = self.plan.incoming[v]
        if not kernel_dispatch.FUSE_BN or len(incoming) != 1 or "Isyn" in self.keep[v]:
            return None
        c = self.plan.conns[incoming[0]]
        return incoming[0] if c.post_var_name == "Isyn" and c.trailing_norm is not None else None

    def _run_batched(self, v: int, records: Records, finals: Records, carry, T: int) -> None:
        plan = self.plan
        group = plan.nodes[v]
        k = self._fusable_norm_input(v)
        if k is not None:
            c = plan.conns[k]
            a = plan.edges[k][0]
            x = c(records[a][c.pre_var_name], history=_history(carry, a, c.pre_var_name), skip_trailing_norm=True)
            state = _initial_state(group, v, carry, x[0])
            O, final, vseq = group.neuron.run_sequence_normed(x, c.trailing_norm, state,
                                                              return_v="V" in self.keep[v])
            records[v] = {"O": O} if vseq is None else {"O": O, "V": vseq}
            finals[v] = final
            return
        inputs: dict[str, Optional[torch.Tensor]] = {"Isyn": None, "V": None}
        for k in plan.incoming[v]:
            _sum_into(inputs, plan.conns[k].post_var_name, self._conn_input(k, records, carry))
        isyn = inputs["Isyn"]
        total = _add(isyn, inputs["V"])
        if total is None:
            some = next(iter(records.values()))["O"]
            total = some.new_zeros((T, some.shape[1], *group.shape))
        state = _initial_state(group, v, carry, total[0])
        O, final, vseq = group.neuron.run_sequence(total, state, return_v="V" in self.keep[v])
        rec = {"O": O}
        if vseq is not None:
            rec["V"] = vseq
        if "Isyn" in self.keep[v]:
            rec["Isyn"] = isyn if isyn is not None else torch.zeros_like(total)
        records[v] = rec
        finals[v] = final

    def _run_stepped(self, stage: Stage, records: Records, finals: Records, carry, T: int) -> None:
        plan, keep, B = self.plan, self.keep, self.batch
        external: dict[int, dict[str, Optional[torch.Tensor]]] = {v: {"Isyn": None, "V": None} for v in stage.nodes}
        for k in stage.external:
            _sum_into(external[plan.edges[k][1]], plan.conns[k].post_var_name, self._conn_input(k, records, carry))
        groups = [v for v in stage.nodes if v not in records]  # encoders are already encoded
        steps: dict[int, dict[str, list[torch.Tensor]]] = {v: {var: [] for var in keep[v]} for v in stage.nodes}
        for v in stage.nodes:
            if v in records:
                steps[v]["O"] = list(records[v]["O"].unbind(0))
        ref = next(iter(records.values()))["O"]
        states = {}
        for v in groups:
            like = ref.new_zeros((B, *plan.nodes[v].shape))
            states[v] = _initial_state(plan.nodes[v], v, carry, like)
        internal_into: dict[int, list[int]] = {v: [] for v in stage.nodes}
        for k in stage.internal:
            internal_into[plan.edges[k][1]].append(k)
        for t in range(T):
            for v in groups:
                group = plan.nodes[v]
                inputs = {var: None if seq is None else seq[t] for var, seq in external[v].items()}
                for k in internal_into[v]:
                    zeros = ref.new_zeros((B, *plan.nodes[plan.edges[k][0]].shape))
                    _sum_into(inputs, plan.conns[k].post_var_name, self._conn_step(k, steps, carry, t, zeros))
                isyn = inputs["Isyn"]
                total = _add(isyn, inputs["V"])
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

    def _conn_step(self, k: int, steps, carry, t: int, zeros: torch.Tensor) -> torch.Tensor:
        """Input of connection ``k`` at step ``t`` inside a stepped stage (``zeros`` shaped like one pre step)."""
        c = self.plan.conns[k]
        a = self.plan.edges[k][0]
        var = c.pre_var_name
        done = steps[a][var]
        # pre not computed yet this step: a feedback edge (delay >= 1) never reads it
        x_t = done[t] if len(done) > t else zeros
        history = step_history(done, t, c.history_steps, _history(carry, a, var), zeros)
        return c(x_t.unsqueeze(0), history=history)[0]


def _history(carry, v: int, var: str) -> Optional[torch.Tensor]:
    return None if carry is None else carry[v]["history"].get(var)


def _initial_state(group: NeuronGroup, v: int, carry, like: torch.Tensor) -> dict[str, torch.Tensor]:
    if carry is not None and carry[v]["state"]:
        return carry[v]["state"]
    return group.neuron.initial_state(like)


def _sum_into(inputs: dict[str, Optional[torch.Tensor]], var: str, out: torch.Tensor) -> None:
    """Add one connection's output to the input ``var`` (``'Isyn'`` or ``'V'``) of its post group."""
    inputs[var] = out if inputs[var] is None else inputs[var] + out


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
