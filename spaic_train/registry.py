"""Name → factory registries for pluggable parts (link types, synapses, neurons, ...).

Every pluggable family (link types, synapse ops, neuron models, surrogates, encoders,
decoders, losses, optimizers, datasets) has one :class:`Registry`.  Adding a new member
is one decorated class or function in one place; looking up an unknown name raises a
``ValueError`` that lists every accepted name (aliases included) and suggests the closest one.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

T = TypeVar("T")


class Registry(Generic[T]):
    """A case-insensitive mapping from names (and aliases) to registered objects.

    Args:
        kind: what the registry holds, used in error messages (e.g. ``"link type"``).
    """

    def __init__(self, kind: str):
        self.kind = kind
        self._items: dict[str, T] = {}
        self._canonical: dict[str, str] = {}

    def register(self, name: str, *aliases: str) -> Callable[[T], T]:
        """Decorator registering ``obj`` under ``name`` and optional ``aliases``."""

        def deco(obj: T) -> T:
            for key in (name, *aliases):
                key = key.lower()
                if key in self._items:
                    raise ValueError(f"{self.kind} {key!r} is already registered")
                self._items[key] = obj
                self._canonical[key] = name
            return obj

        return deco

    def register_each(self, *names: str) -> Callable[[T], T]:
        """Decorator registering ``obj`` under several canonical names (each listed in messages, none an alias):
        one converter for several module or node types."""

        def deco(obj: T) -> T:
            for name in names:
                self.register(name)(obj)
            return obj

        return deco

    def names(self) -> list:
        """Canonical names (aliases excluded), sorted."""
        return sorted(set(self._canonical.values()))

    def describe(self) -> str:
        """Every accepted name, for messages: the canonical names, sorted, each followed by its aliases.

        Example: ``"ce (or cross_entropy, crossentropy), ce_count (or cross_entropy_count), mse"``.
        """
        parts = []
        for name in self.names():
            aliases = sorted(k for k, c in self._canonical.items() if c == name and k != name.lower())
            parts.append(f"{name} (or {', '.join(aliases)})" if aliases else name)
        return ", ".join(parts)

    def canonical(self, name: str) -> str:
        """The canonical name for ``name`` or one of its aliases."""
        self.get(name)
        return self._canonical[name.lower()]

    def get(self, name: str, owner: str = "") -> T:
        """Return the object registered as ``name``.

        Raises:
            TypeError: ``name`` is not a string.
            ValueError: unknown name; the message lists valid names and the closest match.
        """
        where = f"{owner}: " if owner else ""
        if not isinstance(name, str):
            raise TypeError(f"{where}{self.kind} must be a name (str), got {name!r} of type {type(name).__name__}")
        key = name.lower()
        if key not in self._items:
            close = difflib.get_close_matches(key, list(self._items), n=1, cutoff=0.5)
            hint = f" Did you mean {close[0]!r}?" if close else ""
            raise ValueError(
                f"{where}unknown {self.kind} {name!r}; valid {self.kind}s are: {self.describe()}.{hint}"
            )
        return self._items[key]

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name.lower() in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())
