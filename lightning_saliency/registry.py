"""One registry for everything that is added by name: attribution methods, tasks and logger sinks.

A registry is a read-only mapping from a name to what was registered under it, plus the two ways
to add: :meth:`Registry.add` for a value under an explicit name, and :meth:`Registry.register`, a
class decorator that registers an instance of a class under its ``name`` attribute. Adding a
name twice is an error, so a plugin cannot silently replace a built-in.
"""
from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any, Generic, TypeVar

T = TypeVar("T")


class Registry(Mapping[str, T], Generic[T]):
    """Named entries of one kind.

    Args:
        kind: what the entries are, for error messages (``"attribution method"``, ``"task"``).
        hint: how to add one, appended to the unknown-name error.

    Example:
        >>> shapes = Registry("shape", "register one with shapes.add")
        >>> shapes.add("square", 4)
        4
        >>> shapes.get_or_raise("square")
        4
    """

    def __init__(self, kind: str, hint: str = "") -> None:
        self.kind, self.hint = kind, hint
        self._entries: dict[str, T] = {}

    def __getitem__(self, name: str) -> T:
        return self._entries[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)

    def __len__(self) -> int:
        return len(self._entries)

    def add(self, name: str, value: T) -> T:
        """Register ``value`` under ``name``.

        Raises:
            ValueError: ``name`` is taken.
        """
        if name in self._entries:
            raise ValueError(f"A {self.kind} named {name!r} is already registered.")
        self._entries[name] = value
        return value

    def remove(self, name: str) -> T:
        """Take ``name`` out again (a plugin's test cleaning up after itself); returns its entry."""
        return self._entries.pop(name)

    def register(self, cls: type) -> type:
        """Class decorator: register an instance of ``cls`` under ``cls.name``; returns ``cls``."""
        self.add(cls.name, cls())
        return cls

    def get_or_raise(self, name: Any) -> T:
        """The entry ``name``.

        Raises:
            ValueError: no such entry; the message names the choices and how to add one.
        """
        if isinstance(name, str) and name in self._entries:
            return self._entries[name]
        hint = f" (or {self.hint})" if self.hint else ""
        raise ValueError(f"Unknown {self.kind} {name!r}; choose one of {tuple(self._entries)}{hint}.")
