"""Log tails: the error tail of SPEC §4.9 and the ``logs`` tail of SPEC §2.14 (issue 10)."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

import pytest

from daemonkit.logtail import ERROR_TAIL_BYTES, read_tail, render_tail

if TYPE_CHECKING:
    from pathlib import Path

pytestmark = pytest.mark.timeout(30)


def write_log(tmp_path: Path, data: bytes) -> str:
    path = tmp_path / "app-server.stderr.log"
    path.write_bytes(data)
    os.chmod(path, 0o600)
    return str(path)


def test_error_tail_of_one_long_line_is_none_as_the_spec_says(tmp_path: Path) -> None:
    # SPEC §4.9: a window that starts inside the file drops everything up to its first
    # newline; inside one long line that is everything.
    path = write_log(tmp_path, b"x" * (ERROR_TAIL_BYTES + 10) + b"\n")
    assert render_tail(path) is None
    assert read_tail(path, ERROR_TAIL_BYTES) == (ERROR_TAIL_BYTES + 11, "x" * 4095)


def test_error_tail_drops_the_partial_first_line(tmp_path: Path) -> None:
    path = write_log(tmp_path, b"x" * ERROR_TAIL_BYTES + b"\nlast words\n")
    assert render_tail(path) == f"Managed app-server stderr ({path}):\n  last words"


@pytest.mark.parametrize(
    ("data", "limit", "tail"),
    [
        (b"abc\n", 4, "abc"),  # the whole file: nothing is cut
        (b"\xe2\x9c\x93\xe2\x9c\x93\n", 5, "\u2713"),  # cut after the first byte of a ✓
        (b"\xe2\x9c\x93\xe2\x9c\x93\n", 4, "\u2713"),  # ... after its second byte
        (b"\xe2\x9c\x93\xe2\x9c\x93\n", 3, None),  # no whole character in the window
        (b"ab\xffcd\n", 4, "\ufffdcd"),  # invalid UTF-8 inside the window still shows
        (b"abc\n \n\n", 3, None),  # nothing but whitespace in the window
    ],
)
def test_logs_tail_inside_one_line(
    tmp_path: Path, data: bytes, limit: int, tail: str | None
) -> None:
    path = write_log(tmp_path, data)
    assert read_tail(path, limit) == (len(data), tail)


def test_absent_log_is_none(tmp_path: Path) -> None:
    missing = str(tmp_path / "missing.log")
    assert read_tail(missing, 10) is None
    assert render_tail(missing) is None
