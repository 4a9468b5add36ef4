"""Typed getters for JSON objects: types, absent and null keys, key paths (issue 14)."""

from __future__ import annotations

import json

import pytest

from daemonkit.errors import DaemonError, JsonFieldError
from daemonkit.jsonget import (
    get,
    get_lenient,
    get_object,
    get_optional,
    get_required,
    has_type,
    key_path,
)

pytestmark = pytest.mark.timeout(30)

DOC: dict[str, object] = json.loads(
    '{"n":7,"flag":true,"text":"t","items":[1],"nested":{"k":1},"nothing":null,"big":2.0}'
)


def test_key_path_joins_with_dots() -> None:
    assert key_path("", "pid") == "pid"
    assert key_path("processIdentity", "bootId") == "processIdentity.bootId"
    assert key_path("a.b", "c") == "a.b.c"


@pytest.mark.parametrize(
    ("value", "kind", "expected"),
    [
        (7, int, True),
        (True, int, False),
        (False, int, False),
        (2.0, int, False),
        (True, bool, True),
        (1, bool, False),
        ("t", str, True),
        (None, str, False),
        ([1], list, True),
        ({}, dict, True),
        ([], dict, False),
    ],
)
def test_has_type_never_takes_a_boolean_for_an_integer(
    value: object, kind: type[object], expected: bool
) -> None:
    assert has_type(value, kind) is expected


def test_field_error_is_a_daemon_error_and_value_error_naming_the_key_path() -> None:
    err = JsonFieldError("processIdentity.bootId", "a string")
    assert isinstance(err, DaemonError)
    assert isinstance(err, ValueError)
    assert (err.key, err.expected) == ("processIdentity.bootId", "a string")
    assert err.message == "invalid type for processIdentity.bootId: expected a string"


# -- get: absent means the default, null is a wrong type --------------------------------


def test_get_returns_the_value_or_the_default_when_absent() -> None:
    assert get(DOC, "n", int, 0) == 7
    assert get(DOC, "missing", int, 60) == 60
    assert get(DOC, "flag", bool, False) is True


@pytest.mark.parametrize(
    ("key", "kind", "expected"),
    [
        ("flag", int, "an integer"),
        ("big", int, "an integer"),
        ("nothing", bool, "a boolean"),
        ("n", str, "a string"),
        ("text", list, "an array"),
        ("items", dict, "an object"),
    ],
)
def test_get_names_the_key_path_and_the_expected_type(
    key: str, kind: type[object], expected: str
) -> None:
    with pytest.raises(JsonFieldError) as caught:
        get(DOC, key, kind, None, path="updater")
    assert caught.value.key == f"updater.{key}"
    assert caught.value.message == f"invalid type for updater.{key}: expected {expected}"


def test_a_check_beyond_the_type_uses_the_given_wording() -> None:
    doc: dict[str, object] = {"grace": -1}
    with pytest.raises(JsonFieldError) as caught:
        get(doc, "grace", int, 60, expected="a non-negative integer", valid=lambda n: n >= 0)
    assert caught.value.message == "invalid type for grace: expected a non-negative integer"
    # The wording also covers a wrong type, and a valid value passes.
    with pytest.raises(JsonFieldError, match="non-negative"):
        get({"grace": "1"}, "grace", int, 60, expected="a non-negative integer")
    assert get({"grace": 5}, "grace", int, 60, valid=lambda n: n >= 0) == 5


# -- get_optional and get_object: absent or null means None ------------------------------


def test_get_optional_treats_absent_and_null_alike() -> None:
    assert get_optional(DOC, "missing", str) is None
    assert get_optional(DOC, "nothing", str) is None
    assert get_optional(DOC, "text", str) == "t"
    with pytest.raises(JsonFieldError, match=r"^invalid type for p\.flag: expected an integer$"):
        get_optional(DOC, "flag", int, path="p")


def test_get_object_returns_the_nested_object() -> None:
    nested = get_object(DOC, "nested")
    assert nested == {"k": 1}
    assert nested is not None
    assert get_required(nested, "k", int, path="nested") == 1
    assert get_object(DOC, "nothing") is None
    assert get_object(DOC, "missing") is None
    with pytest.raises(JsonFieldError) as caught:
        get_object(DOC, "items", path="top")
    assert caught.value.message == "invalid type for top.items: expected an object"


# -- get_required: absent and null are errors -------------------------------------------


@pytest.mark.parametrize("key", ["missing", "nothing", "flag"])
def test_get_required_refuses_absent_null_and_wrong_types(key: str) -> None:
    with pytest.raises(JsonFieldError) as caught:
        get_required(DOC, key, int, path="a.b")
    assert caught.value.key == f"a.b.{key}"
    assert caught.value.expected == "an integer"


def test_get_required_returns_a_present_value() -> None:
    assert get_required(DOC, "n", int) == 7
    assert get_required(DOC, "items", list) == [1]


# -- get_lenient: never raises ----------------------------------------------------------


@pytest.mark.parametrize(
    ("key", "kind", "default", "expected"),
    [
        ("n", int, None, 7),
        ("flag", int, None, None),
        ("big", int, 0, 0),
        ("missing", str, None, None),
        ("nothing", str, "d", "d"),
        ("text", str, None, "t"),
        ("nested", dict, {}, {"k": 1}),
        ("items", dict, {}, {}),
    ],
)
def test_get_lenient_falls_back_to_the_default(
    key: str, kind: type[object], default: object, expected: object
) -> None:
    assert get_lenient(DOC, key, kind, default) == expected
