"""Tails of stderr logs: for error messages (SPEC §4.9) and for ``logs`` (SPEC §2.14)."""

from __future__ import annotations

import os

from daemonkit.errors import describe_exception
from daemonkit.files import open_state_file

__all__ = ["read_tail", "render_tail"]

ERROR_TAIL_BYTES = 4096


def read_tail(path: str, limit: int) -> tuple[int, str | None] | None:
    """Return (size, tail) of the log at ``path``, or None if it does not exist.

    The tail is at most ``limit`` bytes, cut after the first newline when the read
    did not start at offset 0, decoded with U+FFFD for invalid UTF-8, trailing
    whitespace trimmed; None when nothing is left. Refused files raise
    ``UnsafeFileError``.
    """
    try:
        fd = open_state_file(path, os.O_RDONLY)
    except FileNotFoundError:
        return None
    try:
        size = os.fstat(fd).st_size
        start = max(size - limit, 0)
        data = os.pread(fd, limit, start)
    finally:
        os.close(fd)
    if start > 0:
        newline = data.find(b"\n")
        data = data[newline + 1 :] if newline >= 0 else b""
    text = data.decode("utf-8", "replace").rstrip()
    return size, (text or None)


def render_tail(path: str) -> str | None:
    """The block appended to start errors: the header, then each line indented."""
    try:
        result = read_tail(path, ERROR_TAIL_BYTES)
    except OSError as exc:
        return f"Failed to read managed app-server stderr log: {describe_exception(exc)}"
    if result is None or result[1] is None:
        return None
    lines = "\n".join(f"  {line}" if line else "" for line in result[1].split("\n"))
    return f"Managed app-server stderr ({path}):\n{lines}"
