"""Tails of stderr logs: for error messages (SPEC §4.9) and for ``logs`` (SPEC §2.14).

Both read a window of the log's last bytes and, when the window starts inside the file,
drop the partial first line. They differ only when that leaves nothing: an error's
tail is then none, as the spec says, while ``logs`` shows the window itself, because
a log with content must never report an empty tail.
"""

from __future__ import annotations

import os

from daemonkit.errors import describe_exception
from daemonkit.files import open_state_file

__all__ = ["read_tail", "render_tail"]

ERROR_TAIL_BYTES = 4096
# A UTF-8 character is at most four bytes, so at most three continuation bytes
# (0b10xxxxxx) precede the first character boundary of a window.
_MAX_CONTINUATION_BYTES = 3


def _read_window(path: str, limit: int) -> tuple[int, bytes, bool] | None:
    """(size, the last ``limit`` bytes, whether they start inside the file), or None
    if the log does not exist. Refused files raise ``UnsafeFileError``."""
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
    return size, data, start > 0


def _whole_lines(data: bytes) -> bytes:
    """``data`` after its first newline: the partial line a window starts in is dropped."""
    newline = data.find(b"\n")
    return data[newline + 1 :] if newline >= 0 else b""


def _from_character_boundary(data: bytes) -> bytes:
    """``data`` without the continuation bytes of a character cut by the window."""
    skip = 0
    while skip < min(len(data), _MAX_CONTINUATION_BYTES) and data[skip] & 0xC0 == 0x80:
        skip += 1
    return data[skip:]


def _decode(data: bytes) -> str | None:
    """U+FFFD for invalid UTF-8, trailing whitespace trimmed; None when nothing is left."""
    return data.decode("utf-8", "replace").rstrip() or None


def read_tail(path: str, limit: int) -> tuple[int, str | None] | None:
    """Return (size, tail) of the log at ``path`` for ``logs``, or None if it is absent.

    The tail is the last ``limit`` bytes cut at a line boundary. When the window lies
    inside one long line, so that the cut would leave nothing, it is the window itself
    from its first whole character. It is None only for an empty log or a window of
    whitespace. Refused files raise ``UnsafeFileError``.
    """
    window = _read_window(path, limit)
    if window is None:
        return None
    size, data, partial = window
    if not partial:
        return size, _decode(data)
    tail = _decode(_whole_lines(data))
    if tail is None:
        tail = _decode(_from_character_boundary(data))
    return size, tail


def render_tail(path: str) -> str | None:
    """The block appended to start errors: the header, then each line indented."""
    try:
        window = _read_window(path, ERROR_TAIL_BYTES)
    except OSError as exc:
        return f"Failed to read managed app-server stderr log: {describe_exception(exc)}"
    if window is None:
        return None
    _, data, partial = window
    tail = _decode(_whole_lines(data) if partial else data)
    if tail is None:
        return None
    lines = "\n".join(f"  {line}" if line else "" for line in tail.split("\n"))
    return f"Managed app-server stderr ({path}):\n{lines}"
