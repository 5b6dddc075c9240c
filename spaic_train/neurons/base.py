"""Neuron model base class, registry and factory.

A :class:`NeuronModel` integrates the neurons of one :class:`~spaic_train.NeuronGroup`.  It is
stateless between calls: the state is a ``dict[str, Tensor]`` passed in and returned, so the
network owns it (and resets it per sample with :meth:`NeuronModel.initial_state`).

Shapes: one step works on ``[B, *shape]``; a sequence is time first, ``[T, B, *shape]``.
Time is in ms; ``dt`` (ms) is set by the owning network and decay factors are computed from
it at call time (never cached), so changing ``dt`` takes effect on the next call.
"""

from __future__ import annotations

import inspect
import math
from typing import Any, Optional

import torch
from torch import nn

from ..registry import Registry
from ..surrogate import Surrogate, get_surrogate

__all__ = ["NeuronModel", "NEURONS", "build_neuron", "State", "apply_norm"]

State = dict[str, torch.Tensor]

def apply_norm(norm: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """``norm`` (a batch norm module) on ``x [T, B, C, ...]`` with ``T`` folded into the batch."""
    return norm(x.reshape(x.shape[0] * x.shape[1], *x.shape[2:])).reshape(x.shape)


#: registry of :class:`NeuronModel` subclasses (``'lif'``, ``'if'``, ``'plif'``, ``'alif'``, ``'izhikevich'``,
#: ``'leaky_integrator'``)
NEURONS: Registry = Registry("neuron model")


class NeuronModel(nn.Module):
    """Base class of neuron models.

    Args:
        dt: integration step in ms (the owning network overwrites it).
        owner: label of the owning group, used as a prefix in error messages.

    Subclasses define ``state_names`` (first is always ``'V'``), :meth:`step`, and may override
    :meth:`initial_state` and :meth:`run_sequence` (the default loops over :meth:`step`).

    Class attributes:
        state_names: names of the state variables, ``('V', ...)``.
        param_aliases: SPAIC-compatible parameter aliases accepted by :func:`build_neuron`,
            ``{alias: canonical}`` (e.g. ``{'tau_m': 'tau'}``).
    """

    state_names: tuple[str, ...] = ("V",)
    param_aliases: dict[str, str] = {}
    #: registry name (set by subclasses), used in messages
    model_name: str = "neuron"
    #: whether ``O`` is 0/1 spikes (False for a non-spiking readout, whose ``O`` is its potential): firing rates and
    #: synaptic-operation counts apply only to spikes
    emits_spikes: bool = True

    def __init__(self, dt: float = 1.0, owner: str = ""):
        super().__init__()
        self.owner = owner
        self.dt = dt

    # ------------------------------------------------------------------ helpers
    @property
    def dt(self) -> float:
        """Integration step in ms (positive)."""
        return self._dt

    @dt.setter
    def dt(self, value: float) -> None:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
            raise ValueError(f"{self._where()}dt must be a positive number of ms, got {value!r}")
        self._dt = float(value)

    def _where(self) -> str:
        return f"{self.owner}: {self.model_name}: " if self.owner else f"{self.model_name}: "

    def _check_positive(self, name: str, value: Any) -> float:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
            raise ValueError(f"{self._where()}{name} must be a positive finite number (ms), got {value!r}")
        return float(value)

    def _check_number(self, name: str, value: Any) -> float:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise ValueError(f"{self._where()}{name} must be a finite number, got {value!r}")
        return float(value)

    def _check_choice(self, name: str, value: Any, allowed: tuple[str, ...]) -> str:
        if not isinstance(value, str) or value.lower() not in allowed:
            raise ValueError(f"{self._where()}unknown {name} {value!r}; allowed: {', '.join(allowed)}")
        return value.lower()

    def _resolve_surrogate(self, surrogate: Any, alpha: Optional[float]) -> Surrogate:
        try:
            return get_surrogate(surrogate, owner=self._where().rstrip(": "), alpha=alpha)
        except TypeError:
            if isinstance(surrogate, (str, dict, Surrogate)) or surrogate is None:
                raise
            raise TypeError(f"{self._where()}surrogate must be a name, a dict or a Surrogate, got {surrogate!r}") \
                from None

    # ------------------------------------------------------------------ interface
    def initial_state(self, like: torch.Tensor) -> State:
        """Fresh state for a new sample.

        Args:
            like: a tensor ``[B, *shape]`` giving shape, dtype and device.

        Returns:
            ``{name: tensor shaped like like}`` for every name in ``state_names`` (zeros by default).
        """
        return {name: torch.zeros_like(like) for name in self.state_names}

    def step(self, I_t: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:
        """Advance one time step ``dt``.

        Args:
            I_t: total input of the step ``[B, *shape]`` (synaptic current plus direct membrane kicks).
            state: current state, ``{name: [B, *shape]}``.

        Returns:
            ``(O_t, new_state)``: spikes ``O_t`` ``[B, *shape]`` (0/1 in the dtype of ``I_t``) and the
            state after update and reset.
        """
        raise NotImplementedError

    def run_sequence(
        self, I: torch.Tensor, state: Optional[State] = None, return_v: bool = False
    ) -> tuple[torch.Tensor, State, Optional[torch.Tensor]]:
        """Integrate a whole sequence.

        Args:
            I: input ``[T, B, *shape]``.
            state: state at the start (``None`` → :meth:`initial_state` of ``I[0]``).
            return_v: also return the membrane sequence.

        Returns:
            ``(O, final_state, V_seq)``: spikes ``O`` ``[T, B, *shape]``, the state after the last step,
            and ``V_seq`` ``[T, B, *shape]`` (membrane after update and reset at each step) or ``None``.
        """
        if state is None:
            state = self.initial_state(I[0] if I.shape[0] else I.new_zeros(I.shape[1:]))
        outs, vs = [], []
        for t in range(I.shape[0]):
            o, state = self.step(I[t], state)
            outs.append(o)
            if return_v:
                vs.append(state["V"])
        if not outs:
            empty = I.new_zeros(I.shape)
            return empty, state, (empty if return_v else None)
        return torch.stack(outs), state, (torch.stack(vs) if return_v else None)

    def run_sequence_normed(self, x: torch.Tensor, norm: nn.Module, state: Optional[State] = None,
                            return_v: bool = False) -> tuple[torch.Tensor, State, Optional[torch.Tensor]]:
        """:meth:`run_sequence` of ``norm(x)``: a batch norm over dim 2 of ``x [T, B, C, ...]`` with statistics over
        all ``T·B`` samples (the ``batchnorm`` synapse's semantics).  Models with a fused kernel (``lif`` / ``if``)
        override it so that the normalised current is never stored; this default normalises, then integrates."""
        return self.run_sequence(apply_norm(norm, x), state, return_v)

    def forward(self, I: torch.Tensor, state: Optional[State] = None):
        """``run_sequence(I, state)`` without the membrane sequence: ``(O, final_state)``."""
        O, state, _ = self.run_sequence(I, state)
        return O, state

    @classmethod
    def allowed_params(cls) -> tuple[str, ...]:
        """Keyword parameters :func:`build_neuron` accepts for this model (aliases included)."""
        names = [p.name for p in inspect.signature(cls.__init__).parameters.values()
                 if p.name not in ("self", "owner") and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
        return tuple(names) + tuple(a for a in cls.param_aliases if a not in names)


def build_neuron(name, owner: str = "", **params) -> NeuronModel:
    """Instantiate a neuron model by name.

    Args:
        name: registry name (``'lif'``, ``'if'``, ``'plif'``, ``'alif'``, ``'izhikevich'``, ``'leaky_integrator'``,
            or an alias, case-insensitive) or a :class:`NeuronModel` subclass.
        owner: label of the owning group for error messages.
        **params: model parameters; SPAIC aliases (e.g. ``tau_m`` for ``tau``) are accepted.

    Raises:
        ValueError: unknown model name (lists the valid ones) or an invalid parameter value.
        TypeError: an unknown parameter (the message names the model, the key and the allowed keys),
            or a parameter given both under its name and an alias.
    """
    if isinstance(name, type) and issubclass(name, NeuronModel):
        cls = name
    else:
        cls = NEURONS.get(name, owner=owner)
    where = f"{owner}: " if owner else ""
    allowed = cls.allowed_params()
    resolved: dict[str, Any] = {}
    for key, value in params.items():
        canon = cls.param_aliases.get(key, key)
        if key not in allowed:
            raise TypeError(
                f"{where}neuron model {cls.model_name!r} got an unknown parameter {key!r}; "
                f"allowed parameters are: {', '.join(allowed)}"
            )
        if canon in resolved:
            raise TypeError(f"{where}neuron model {cls.model_name!r}: parameter {canon!r} given twice "
                            f"(as {canon!r} and its alias)")
        resolved[canon] = value
    return cls(owner=owner, **resolved)
