"""Typed getters for decoded JSON objects; a bad field is named by its dotted key path.

Strict getters raise ``JsonFieldError`` carrying the key path (``processIdentity.bootId``)
and what was expected (``a string``); each reader words or collects it as its schema
says. Lenient getters (for advisory files such as the updater's state) return a default
instead. In Python ``True`` is an ``int``, but a JSON boolean is never a number, so an
integer field never accepts one.

Strict getters differ only in what an absent key means:

- ``get``: the default; ``null`` is a value of the wrong type (a defaulted field).
- ``get_optional`` and ``get_object``: ``None``, and so is ``null`` (an optional field).
- ``get_required``: an error, like ``null`` and any other wrong type.
"""

from __future__ import annotations

from daemonkit.errors import JsonFieldError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Mapping
    from typing import TypeGuard, TypeVar

    T = TypeVar("T")
    D = TypeVar("D")

__all__ = [
    "get",
    "get_lenient",
    "get_object",
    "get_optional",
    "get_required",
    "has_type",
    "key_path",
]

_EXPECTED: dict[type[object], str] = {
    bool: "a boolean",
    int: "an integer",
    str: "a string",
    list: "an array",
    dict: "an object",
}


def key_path(path: str, key: str) -> str:
    """The dotted path of ``key`` inside the object at ``path`` (``""`` is the top)."""
    return f"{path}.{key}" if path else key


def has_type(value: object, kind: type[T]) -> TypeGuard[T]:
    """``isinstance``, except that a JSON boolean is only ever a boolean."""
    return isinstance(value, kind) and (kind is bool or not isinstance(value, bool))


def _checked(
    value: object,
    kind: type[T],
    key: str,
    path: str,
    expected: str | None,
    valid: Callable[[T], bool] | None,
) -> T:
    if has_type(value, kind) and (valid is None or valid(value)):
        return value
    raise JsonFieldError(key_path(path, key), expected or _EXPECTED[kind])


def get(
    obj: Mapping[str, object],
    key: str,
    kind: type[T],
    default: T,
    *,
    path: str = "",
    expected: str | None = None,
    valid: Callable[[T], bool] | None = None,
) -> T:
    """``obj[key]`` when present, else ``default``.

    ``path`` is where ``obj`` sits in the document; ``expected`` words what ``valid``
    (a check beyond the type, such as a range) accepts.
    """
    if key not in obj:
        return default
    return _checked(obj[key], kind, key, path, expected, valid)


def get_optional(
    obj: Mapping[str, object],
    key: str,
    kind: type[T],
    *,
    path: str = "",
    expected: str | None = None,
    valid: Callable[[T], bool] | None = None,
) -> T | None:
    """``obj[key]``, or ``None`` when it is absent or ``null``."""
    value = obj.get(key)
    if value is None:
        return None
    return _checked(value, kind, key, path, expected, valid)


def get_required(
    obj: Mapping[str, object],
    key: str,
    kind: type[T],
    *,
    path: str = "",
    expected: str | None = None,
    valid: Callable[[T], bool] | None = None,
) -> T:
    """``obj[key]``, which must be present and not ``null``."""
    return _checked(obj.get(key), kind, key, path, expected, valid)


def get_object(obj: Mapping[str, object], key: str, *, path: str = "") -> dict[str, object] | None:
    """The nested object at ``key``, or ``None`` when it is absent or ``null``."""
    return get_optional(obj, key, dict, path=path)


def get_lenient(obj: Mapping[str, object], key: str, kind: type[T], default: D) -> T | D:
    """``obj[key]`` when it has the type, else ``default``: never raises."""
    value = obj.get(key)
    return value if has_type(value, kind) else default
