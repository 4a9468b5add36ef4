"""Value: equality, hashing, repr and replace() over the slots of the whole hierarchy."""

from __future__ import annotations

from typing import Final

import pytest

from daemonkit.paths import DaemonPaths, Layout
from daemonkit.value import Value

pytestmark = pytest.mark.timeout(30)


class A(Value):
    __slots__ = ("a",)

    def __init__(self, a: int) -> None:
        self.a: Final = a


class B(A):
    __slots__ = ("b",)

    def __init__(self, a: int, b: int) -> None:
        super().__init__(a)
        self.b: Final = b


class Other(Value):
    """The same field as ``A``, in a different class."""

    __slots__ = ("a",)

    def __init__(self, a: int) -> None:
        self.a: Final = a


def test_fields_span_the_hierarchy_base_classes_first() -> None:
    assert A._value_fields == ("a",)
    assert B._value_fields == ("a", "b")


def test_a_subclass_compares_the_fields_of_its_bases() -> None:
    assert B(1, 2) != B(9, 2)
    assert B(1, 2) == B(1, 2)
    assert B(1, 2) != B(1, 3)


def test_equal_values_hash_equal() -> None:
    assert hash(B(1, 2)) == hash(B(1, 2))
    assert len({B(1, 2), B(1, 2), B(9, 2)}) == 2


def test_repr_names_every_field_in_order() -> None:
    assert repr(B(1, 2)) == "B(a=1, b=2)"
    assert repr(Other(1)) == "Other(a=1)"


def test_classes_with_equal_fields_differ() -> None:
    assert A(1) != Other(1)
    assert Other(1) != A(1)
    assert A(1) != B(1, 2)
    assert B(1, 2) != A(1)


def test_replace_changes_only_the_named_fields() -> None:
    original = B(1, 2)
    changed = original.replace(a=9)
    assert type(changed) is B
    assert changed == B(9, 2)
    assert original == B(1, 2)
    assert original.replace() == original


def test_replace_rejects_an_unknown_field() -> None:
    with pytest.raises(TypeError, match="B has no field 'c'"):
        B(1, 2).replace(c=3)


def test_replace_works_when_init_does_not_take_the_slot_names() -> None:
    paths = DaemonPaths("/home/u/.codex")
    moved = paths.replace(kit_dir="/elsewhere")
    assert moved.kit_dir == "/elsewhere"
    assert moved.settings == paths.settings
    assert moved.layout is Layout.STANDALONE
