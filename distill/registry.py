"""A small name -> object registry, shared by the datasets, teacher engines, strategies,
students and isolation backends.

Contract of :class:`Registry`:

* ``Registry(kind, error=KeyError)``: ``kind`` names what is registered in messages
  (``"dataset"``, ``"student kind"``, ...); ``error`` is the exception class raised for an
  unknown name (called with the message as its only argument).
* ``register(name, obj)`` adds ``obj`` under ``name`` and returns ``obj``. A name registered
  twice raises ``ValueError(f"{kind} {name!r} is already registered")`` and leaves the first
  registration in place.
* ``decorator(name, make=None)`` is the class-decorator form: it checks ``name`` is free, sets
  ``cls.name = name``, registers ``make(cls)`` (the class itself when ``make`` is None; e.g.
  ``make=lambda cls: cls()`` registers an instance) and returns the class unchanged otherwise.
* ``get(name)`` (also ``registry[name]``) returns the object registered as ``name``; an unknown
  name raises ``error(f"unknown {kind} {name!r}; valid names: {', '.join(names())}")``.
* ``names()`` lists the registered names, sorted; ``name in registry`` tests one.

A registry never imports anything itself: a caller whose entries are registered by modules
imported on demand imports them before ``get`` / ``names``.
"""

from __future__ import annotations

from typing import Callable, Generic, Iterator, TypeVar

__all__ = ["Registry"]

T = TypeVar("T")
C = TypeVar("C", bound=type)


class Registry(Generic[T]):
    """Objects of one kind by name. See the module docstring for the contract."""

    def __init__(self, kind: str, error: type[Exception] = KeyError) -> None:
        self.kind = kind
        self.error = error
        self._items: dict[str, T] = {}

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}, names={self.names()!r})"

    def _check_free(self, name: str) -> None:
        if name in self._items:
            raise ValueError(f"{self.kind} {name!r} is already registered")

    def register(self, name: str, obj: T) -> T:
        """Add ``obj`` under ``name``; a name already taken raises ValueError."""
        self._check_free(name)
        self._items[name] = obj
        return obj

    def decorator(self, name: str, make: Callable[[C], T] | None = None) -> Callable[[C], C]:
        """Class decorator: set ``cls.name = name`` and register ``make(cls)`` (or the class)."""

        def wrap(cls: C) -> C:
            self._check_free(name)
            cls.name = name
            self.register(name, make(cls) if make is not None else cls)  # type: ignore[arg-type]
            return cls

        return wrap

    def get(self, name: str) -> T:
        """The object registered as ``name``; an unknown name raises ``self.error``."""
        try:
            return self._items[name]
        except (KeyError, TypeError):  # TypeError: an unhashable "name"
            raise self.error(
                f"unknown {self.kind} {name!r}; valid names: {', '.join(self.names())}"
            ) from None

    __getitem__ = get

    def names(self) -> list[str]:
        """The registered names, sorted."""
        return sorted(self._items)

    def __contains__(self, name: object) -> bool:
        try:
            return name in self._items
        except TypeError:
            return False

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self._items)
