"""Value: the base of the kit's small immutable value types (paths, records, outputs).

Every command imports about twenty of these types, and a command is over in tens of
milliseconds. On the 2-core reference machine a frozen dataclass costs about 1.3 ms to
define, after about 20 ms importing ``dataclasses`` (with ``inspect``, ``ast`` and
``dis``); a ``typing.NamedTuple`` about 0.5 ms, after about 7 ms importing ``typing``.
A slotted class with a hand-written ``__init__`` costs about 10 µs.

A subclass lists its fields in ``__slots__`` and sets each exactly once, in
``__init__``, annotated ``Final`` so that mypy rejects any later assignment. This base
derives equality, hashing and ``repr`` from the slots of the whole class hierarchy,
and :meth:`Value.replace` copies a value with some fields changed. A Value is never
mutated: state that grows while it is built (an accumulator) is a plain class.

The updater package, a long-running process whose start-up nobody waits on, keeps
dataclasses for its own state and replies.
"""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import ClassVar, Self

__all__ = ["Value"]


def _own_slots(cls: type) -> tuple[str, ...]:
    slots = cls.__dict__.get("__slots__", ())
    # ``__slots__ = "name"`` declares one slot, not one per character.
    return (slots,) if isinstance(slots, str) else tuple(slots)


class Value:
    __slots__ = ()

    # Every slot of the class and its bases, base classes first; computed once per
    # class when it is defined, so that equality and hashing stay a tuple comparison.
    _value_fields: ClassVar[tuple[str, ...]] = ()

    def __init_subclass__(cls, **kwargs: object) -> None:
        super().__init_subclass__(**kwargs)
        # A name a subclass declares again keeps its first (base class) position.
        names = (name for klass in reversed(cls.__mro__) for name in _own_slots(klass))
        cls._value_fields = tuple(dict.fromkeys(names))

    def _values(self) -> tuple[object, ...]:
        return tuple(getattr(self, name) for name in self._value_fields)

    def __eq__(self, other: object) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        assert isinstance(other, Value)  # for mypy: type(other) is type(self)
        return self._values() == other._values()

    def __hash__(self) -> int:
        return hash((type(self), self._values()))

    def __repr__(self) -> str:
        fields = ", ".join(f"{name}={getattr(self, name)!r}" for name in self._value_fields)
        return f"{type(self).__name__}({fields})"

    def replace(self, **changes: object) -> Self:
        """A copy of this value with ``changes`` (field name to value) applied.

        The copy is built by setting the slots, not through ``__init__``: not every
        subclass's ``__init__`` takes its slot names (``DaemonPaths`` derives its
        fields from ``codex_home``), so each change must be a field's final value;
        nothing is derived or normalised again.
        """
        cls = type(self)
        fields = cls._value_fields
        for name in changes:
            if name not in fields:
                raise TypeError(f"{cls.__name__} has no field {name!r}")
        copy = object.__new__(cls)
        for name in fields:
            value = changes[name] if name in changes else getattr(self, name)
            # The one write outside the class's own __init__, past any __setattr__.
            object.__setattr__(copy, name, value)
        return copy
