"""A registry of plug-in classes of one kind (model methods, attacks, explainers).

A registry maps a method name to its class. Registering a class (``@REGISTRY.register``) is all
it takes to add a method: the config schema is assembled from the registries when a config is
loaded (:func:`bayeslrp.experiment.config.load_config`), so a class registered by user or test
code after import is accepted like a built-in one.
"""
from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Generic, TypeVar

from bayeslrp.errors import BayesLRPError

__all__ = ["Registry"]

T = TypeVar("T")
_NAME = re.compile(r"^[a-z][a-z0-9_]{0,39}$")


class Registry(Generic[T]):
    """Name → plug-in class of one kind.

    Parameters
    ----------
    kind : str
        What the entries are, for messages (``"attack"``).
    """

    def __init__(self, kind: str):
        self.kind = kind
        self._entries: dict[str, type[T]] = {}
        #: Bumped on every change, so that schemas built from the registry are rebuilt.
        self.version = 0

    def register(self, cls: type[T] | None = None, *, replace: bool = False):
        """Add ``cls`` under ``cls.name``; usable as a decorator.

        Raises
        ------
        BayesLRPError
            When the name is malformed or taken (and ``replace`` is false).
        """
        def add(c: type[T]) -> type[T]:
            name = getattr(c, "name", None)
            if not isinstance(name, str) or not _NAME.match(name):
                raise BayesLRPError(f"a {self.kind} class needs a lower-case `name`; "
                                    f"{c.__name__} has {name!r}")
            if name in self._entries and not replace and self._entries[name] is not c:
                raise BayesLRPError(f"{self.kind} {name!r} is already registered "
                                    f"({self._entries[name].__name__}); pass replace=True")
            self._entries[name] = c
            self.version += 1
            return c

        return add if cls is None else add(cls)

    def unregister(self, name: str) -> None:
        """Remove an entry (tests that register toy methods clean up with this)."""
        if self._entries.pop(name, None) is not None:
            self.version += 1

    def get(self, name: str) -> type[T]:
        """The class registered as ``name``.

        Raises
        ------
        BayesLRPError
            Naming the registered entries when ``name`` is unknown.
        """
        try:
            return self._entries[name]
        except KeyError:
            raise BayesLRPError(f"unknown {self.kind} {name!r}; registered: "
                                f"{', '.join(self._entries)}") from None

    def names(self) -> tuple[str, ...]:
        """Registered names in registration order."""
        return tuple(self._entries)

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[type[T]]:
        return iter(list(self._entries.values()))

    def __len__(self) -> int:
        return len(self._entries)
