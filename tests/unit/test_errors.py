"""The anyhow-style error rendering the CLI prints on stderr (SPEC §2.2, §13.1 row 2)."""

from __future__ import annotations

import errno
import itertools
import os
import socket
import tempfile

import pytest

from daemonkit.errors import (
    DaemonError,
    LockTimeoutError,
    ManagedCodexError,
    PidRecordError,
    ProbeError,
    ProbeTimeoutError,
    SettingsError,
    UnsafeFileError,
    describe_exception,
    render_error,
)
from daemonkit.managed import missing_install_message

pytestmark = pytest.mark.timeout(30)


def chain(*links: BaseException) -> BaseException:
    """Link ``links`` so that each one's ``__cause__`` is the next; return the first."""
    for outer, inner in itertools.pairwise(links):
        outer.__cause__ = inner
    return links[0]


def real_enoent() -> OSError:
    """The OSError a real failing open(2) raises (errno, strerror and filename set)."""
    try:
        os.open("/nonexistent-dk-dir/file", os.O_RDONLY)
    except OSError as exc:
        return exc
    pytest.fail("opening a path under a missing directory succeeded")


def real_connection_refused() -> OSError:
    """ECONNREFUSED from a stale Unix socket: bound, never listened on, then closed."""
    with tempfile.TemporaryDirectory(prefix="dk-", dir="/tmp") as root:
        path = os.path.join(root, "s.sock")
        stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        stale.bind(path)
        stale.close()
        client = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            client.connect(path)
        except OSError as exc:
            return exc
        finally:
            client.close()
    pytest.fail("connecting to a stale socket succeeded")


def test_no_cause_is_only_the_error_line() -> None:
    assert render_error(ProbeError("failed to connect to /s")) == "Error: failed to connect to /s"


def test_one_cause_is_unnumbered() -> None:
    err = chain(
        ProbeError("failed to connect to /h/sock"),
        FileNotFoundError(errno.ENOENT, "No such file or directory"),
    )
    assert render_error(err) == (
        "Error: failed to connect to /h/sock\n"
        "\n"
        "Caused by:\n"
        "    No such file or directory (os error 2)"
    )


def test_several_causes_are_numbered_from_zero() -> None:
    err = chain(
        SettingsError("failed to write settings /h/s.json"),
        DaemonError("middle link"),
        PermissionError(errno.EACCES, "Permission denied"),
    )
    assert render_error(err) == (
        "Error: failed to write settings /h/s.json\n"
        "\n"
        "Caused by:\n"
        "    0: middle link\n"
        "    1: Permission denied (os error 13)"
    )


def test_chain_built_by_raise_from() -> None:
    def inner() -> None:
        raise ConnectionRefusedError(errno.ECONNREFUSED, os.strerror(errno.ECONNREFUSED))

    def outer() -> None:
        try:
            inner()
        except OSError as exc:
            raise ProbeError("failed to connect to /h/sock") from exc

    with pytest.raises(ProbeError) as caught:
        outer()
    assert render_error(caught.value) == (
        "Error: failed to connect to /h/sock\n\nCaused by:\n    Connection refused (os error 111)"
    )


def test_multi_line_message_is_printed_verbatim() -> None:
    path = "/h/packages/standalone/current/codex"
    text = missing_install_message(path)
    assert render_error(ManagedCodexError(text)) == f"Error: {text}"
    assert render_error(ManagedCodexError(text)).splitlines()[1:3] == ["", "Install it with:"]


def test_multi_line_message_with_cause() -> None:
    err = chain(DaemonError("app server did not become ready on /s\n\ncontext"), ValueError("x"))
    assert render_error(err) == (
        "Error: app server did not become ready on /s\n\ncontext\n\nCaused by:\n    x"
    )


def test_multi_line_single_cause_continues_under_the_text() -> None:
    err = chain(DaemonError("top"), DaemonError("first line\nsecond line"))
    assert render_error(err) == "Error: top\n\nCaused by:\n    first line\n    second line"


def test_multi_line_numbered_cause_continues_under_the_text() -> None:
    err = chain(DaemonError("top"), DaemonError("a1\na2"), DaemonError("b"))
    assert render_error(err) == ("Error: top\n\nCaused by:\n    0: a1\n       a2\n    1: b")


def test_real_enoent_renders_like_rust_io_error() -> None:
    exc = real_enoent()
    assert describe_exception(exc) == "No such file or directory (os error 2)"
    rendered = render_error(chain(ProbeError("failed to connect to /x"), exc))
    assert rendered.endswith("\n    No such file or directory (os error 2)")
    assert "[Errno" not in rendered
    assert "nonexistent-dk-dir" not in rendered  # Python's filename suffix is not rendered


def test_real_connection_refused_renders_like_rust_io_error() -> None:
    exc = real_connection_refused()
    assert describe_exception(exc) == "Connection refused (os error 111)"
    assert "[Errno" not in render_error(chain(ProbeError("failed to connect to /s"), exc))


@pytest.mark.parametrize(
    ("exc", "expected"),
    [
        (OSError(errno.ENOENT, "No such file or directory", "/p"), "No such file or directory"),
        (PermissionError(errno.EPERM, "Operation not permitted"), "Operation not permitted"),
        (OSError(errno.EEXIST, "File exists", "/a", None, "/b"), "File exists"),
        (TimeoutError(errno.ETIMEDOUT, "Connection timed out"), "Connection timed out"),
    ],
)
def test_os_errors_never_render_python_errno_form(exc: OSError, expected: str) -> None:
    text = describe_exception(exc)
    assert text == f"{expected} (os error {exc.errno})"
    assert "[Errno" not in render_error(chain(DaemonError("top"), exc))


def test_os_error_without_errno_renders_its_text() -> None:
    assert describe_exception(OSError("custom text")) == "custom text"


def test_kit_os_error_subclasses_render_their_message() -> None:
    err = UnsafeFileError("refusing to use /h/x: it is a symbolic link", "/h/x")
    assert describe_exception(err) == "refusing to use /h/x: it is a symbolic link"
    record = PidRecordError("invalid type for 'pid': expected an unsigned 32-bit integer")
    assert render_error(chain(DaemonError("invalid pid file contents in /h/p"), record)) == (
        "Error: invalid pid file contents in /h/p\n\nCaused by:\n"
        "    invalid type for 'pid': expected an unsigned 32-bit integer"
    )


def test_kit_errors_are_catchable_as_the_builtins_they_mix_in() -> None:
    assert isinstance(UnsafeFileError("m", "/p"), OSError)
    assert isinstance(SettingsError("m"), ValueError)
    assert isinstance(LockTimeoutError("m"), TimeoutError)
    assert isinstance(ProbeTimeoutError("m"), ConnectionError)
    assert isinstance(ProbeTimeoutError("m"), TimeoutError)
    assert str(SettingsError("failed to parse settings /p")) == "failed to parse settings /p"


@pytest.mark.parametrize(
    ("cause", "nothing_listens"),
    [
        (FileNotFoundError(errno.ENOENT, "No such file or directory"), True),
        (ConnectionRefusedError(errno.ECONNREFUSED, "Connection refused"), True),
        (PermissionError(errno.EACCES, "Permission denied"), False),
        (ConnectionResetError(errno.ECONNRESET, "Connection reset by peer"), False),
        (ConnectionError("connection closed during upgrade"), False),
        (TimeoutError(), False),
        (None, False),
    ],
)
def test_probe_error_knows_when_nothing_listens(
    cause: BaseException | None, nothing_listens: bool
) -> None:
    # The CLI's "start it" hint after `version` rests on this (issue 10).
    err = ProbeError("failed to connect to /s")
    err.__cause__ = cause
    assert err.nothing_listens is nothing_listens
