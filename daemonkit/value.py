"""Value: the base of the kit's small immutable value types (paths, records, outputs).

Every command imports about twenty of these types, and a command is over in tens of
milliseconds. On the 2-core reference machine a frozen dataclass costs about 1.3 ms to
define, after about 20 ms importing ``dataclasses`` (with ``inspect``, ``ast`` and
``dis``); a ``typing.NamedTuple`` about 0.5 ms, after about 7 ms importing ``typing``.
A slotted class with a hand-written ``__init__`` costs about 10 µs.

A subclass lists its fields in ``__slots__`` and sets each exactly once, in
``__init__``, annotated ``Final`` so that mypy rejects any later assignment. This base
derives equality, hashing and ``repr`` from the slots.

The updater package, a long-running process whose start-up nobody waits on, keeps
dataclasses for its own state and replies.
"""

from __future__ import annotations

__all__ = ["Value"]


class Value:
    __slots__ = ()

    def _fields(self) -> tuple[str, ...]:
        fields: tuple[str, ...] = type(self).__slots__
        return fields

    def _values(self) -> tuple[object, ...]:
        return tuple(getattr(self, name) for name in self._fields())

    def __eq__(self, other: object) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        assert isinstance(other, Value)  # for mypy: type(other) is type(self)
        return self._values() == other._values()

    def __hash__(self) -> int:
        return hash((type(self), self._values()))

    def __repr__(self) -> str:
        fields = ", ".join(f"{name}={getattr(self, name)!r}" for name in self._fields())
        return f"{type(self).__name__}({fields})"
