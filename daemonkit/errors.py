"""The exception tree of codex-daemonkit, and how an error chain is rendered.

Every error the kit raises derives from ``DaemonError``; the builtin that fits is mixed
in so that ``except OSError`` or ``except TimeoutError`` in callers keeps working::

    DaemonError
    ├── HomeError                  CODEX_HOME cannot be resolved
    │   └── HomeNotDirectoryError (NotADirectoryError)   CODEX_HOME exists but is no directory
    ├── PlatformError              not a Unix platform
    ├── OutputError (OSError)      stdout or stderr cannot be written
    ├── UnsafeFileError (OSError)  a state path is a symlink, not regular, or foreign-owned
    ├── StateDirError (OSError)    the state directory cannot be created or used
    ├── SettingsError (ValueError) settings.json cannot be read, parsed or validated
    ├── JsonFieldError (ValueError)   a JSON object's field, named by its key path, is invalid
    ├── LockError (OSError)        a lock file cannot be opened or locked
    │   └── LockTimeoutError (TimeoutError)
    ├── PidFileError (OSError)     a pid record cannot be read, reserved, written or removed
    │   └── PidRecordError (ValueError)   the record's contents are invalid
    ├── SpawnError (OSError)       a detached process could not be started or recorded
    ├── StopError (OSError)        a managed process could not be signalled or did not stop
    ├── ProbeError (ConnectionError)      the control socket did not answer the handshake
    │   └── ProbeTimeoutError (TimeoutError)
    ├── NotReadyError              the app-server did not become ready after a spawn
    ├── UnmanagedServerError       a server answers but no pid record manages it
    ├── AdoptError                 the server that answers cannot be adopted
    ├── ManagedCodexError          the managed Codex binary is missing or misbehaves
    ├── InstallError               an install (npm or script channel) failed
    │   └── VerificationError      the candidate release failed its --version check
    ├── RpcError                   a JSON-RPC request on the control socket failed
    ├── UpdaterError               the updater could not be reached or answered an error
    ├── SystemdError               a systemd tool failed on this home's user unit or linger
    │   ├── UserManagerUnavailableError   no systemd user manager answers for this user
    │   └── UnitFileError (OSError)       a user unit file cannot be written, read or removed
    └── InterruptedByUserError     SIGINT, SIGTERM or SIGHUP reached the CLI

Messages are lower-case, name the object and its path, and reuse upstream wording
verbatim where upstream has one (SPEC §2.15). ``os_errors_as`` words an OS error as
the kit's error naming the object, with the OS error as its cause; ``render_error``
turns a chain of ``__cause__`` links into the anyhow-style text the CLI prints (SPEC §2.2).
"""

from __future__ import annotations

import errno
import os
from contextlib import contextmanager

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

__all__ = [
    "AdoptError",
    "DaemonError",
    "HomeError",
    "HomeNotDirectoryError",
    "InstallError",
    "InterruptedByUserError",
    "JsonFieldError",
    "LockError",
    "LockTimeoutError",
    "ManagedCodexError",
    "NotReadyError",
    "OutputError",
    "PidFileError",
    "PidRecordError",
    "PlatformError",
    "ProbeError",
    "ProbeTimeoutError",
    "RpcError",
    "SettingsError",
    "SpawnError",
    "StateDirError",
    "StopError",
    "SystemdError",
    "UnitFileError",
    "UnmanagedServerError",
    "UnsafeFileError",
    "UpdaterError",
    "UserManagerUnavailableError",
    "VerificationError",
    "describe_chain",
    "describe_exception",
    "os_errors_as",
    "render_error",
]


class DaemonError(Exception):
    """Base of every error raised by codex-daemonkit."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


class HomeError(DaemonError):
    """CODEX_HOME could not be determined from the flag, the environment or the home dir."""


class HomeNotDirectoryError(HomeError, NotADirectoryError):
    """CODEX_HOME names a file (or a path below one), so no state can live under it."""

    def __init__(self, message: str, path: str) -> None:
        super().__init__(message)
        self.path = path


class PlatformError(DaemonError):
    """The kit runs only on Unix platforms."""


class OutputError(DaemonError, OSError):
    """stdout or stderr could not be written (a full device, a closed pipe or descriptor)."""


class UnsafeFileError(DaemonError, OSError):
    """A state file is a symlink, not a regular file, or owned by another user."""

    def __init__(self, message: str, path: str) -> None:
        super().__init__(message)
        self.path = path


class StateDirError(DaemonError, OSError):
    """The daemon state directory could not be created or is not ours."""


class SettingsError(DaemonError, ValueError):
    """settings.json could not be read, parsed or validated."""


class JsonFieldError(DaemonError, ValueError):
    """A field of a JSON object is missing or not what the schema expects.

    ``key`` is the dotted key path (``processIdentity.bootId``) and ``expected`` the
    schema's wording (``a string``), so a reader can word the message its own way
    (pid records quote the key).
    """

    def __init__(self, key: str, expected: str) -> None:
        super().__init__(f"invalid type for {key}: expected {expected}")
        self.key = key
        self.expected = expected


class LockError(DaemonError, OSError):
    """A lock file could not be opened or locked."""


class LockTimeoutError(LockError, TimeoutError):
    """Another process held a lock for longer than the wait allows."""


class PidFileError(DaemonError, OSError):
    """A pid record could not be read, reserved, written, published or removed."""


class PidRecordError(PidFileError, ValueError):
    """A pid record's contents are not a valid record."""


class SpawnError(DaemonError, OSError):
    """A detached process could not be spawned or its startup recorded."""


class StopError(DaemonError, OSError):
    """A managed process could not be signalled, or did not exit in time."""


class ProbeError(DaemonError, ConnectionError):
    """The app-server control socket did not complete the initialize handshake."""

    @property
    def nothing_listens(self) -> bool:
        """True when the connect found no server: no socket file, or a stale one."""
        cause = self.__cause__
        return isinstance(cause, OSError) and cause.errno in (errno.ENOENT, errno.ECONNREFUSED)


class ProbeTimeoutError(ProbeError, TimeoutError):
    """The control socket did not answer within the probe budget."""


class NotReadyError(DaemonError):
    """A spawned app-server did not become ready before the readiness deadline."""


class UnmanagedServerError(DaemonError):
    """An app-server answers on the control socket but no pid record manages it."""

    def __init__(self) -> None:
        # Upstream's wording (SPEC §2.15): every command that finds such a server says this.
        super().__init__("app server is running but is not managed by codex app-server daemon")


class AdoptError(DaemonError):
    """The server answering on the control socket is not one ``adopt`` may manage.

    Not our user's, not visible, gone, not a Codex app-server, or silent; the message
    says which: ``cannot adopt the app server on <sock>: <why>`` (SPEC §14.12).
    """


class ManagedCodexError(DaemonError):
    """The managed Codex binary is missing, cannot be resolved, or misreports its version.

    ``<bin> --version`` runs through subprocess in the CLI and through ``sh`` in the
    updater; both fail with the texts of the three constructors below.
    """

    @classmethod
    def version_timed_out(cls, path: str) -> ManagedCodexError:
        return cls(f"timed out running managed Codex binary {path}")

    @classmethod
    def version_not_run(cls, path: str) -> ManagedCodexError:
        return cls(f"failed to invoke managed Codex binary {path}")

    @classmethod
    def version_exited(cls, path: str, status: str) -> ManagedCodexError:
        return cls(f"managed Codex binary {path} exited with status {status}")


class InstallError(DaemonError):
    """Installing a Codex release through a channel failed."""


class VerificationError(InstallError):
    """A candidate release did not prove it runs; ``release`` names it."""

    def __init__(self, message: str, release: str) -> None:
        super().__init__(message)
        self.release = release


class RpcError(DaemonError):
    """A JSON-RPC request to the app-server failed or timed out."""


class UpdaterError(DaemonError):
    """The updater process could not be reached or answered with an error."""


class SystemdError(DaemonError):
    """systemctl, loginctl or a unit file failed while enabling or disabling persistence.

    The message names the unit (or the tool and its arguments); the tool's own words are
    the cause (SPEC §15.1).
    """


class UserManagerUnavailableError(SystemdError):
    """No systemd user manager answers for this user: not booted with systemd, no
    runtime directory, or nothing listening on it (``systemd user manager not
    available: <why>``)."""


class UnitFileError(SystemdError, OSError):
    """A user unit file cannot be written, read or removed, or is not the kit's to touch."""

    def __init__(self, message: str, path: str) -> None:
        super().__init__(message)
        self.path = path


class InterruptedByUserError(DaemonError):
    """SIGINT, SIGTERM or SIGHUP reached the CLI while it worked."""


@contextmanager
def os_errors_as(error: Callable[[str], DaemonError], message: str) -> Iterator[None]:
    """Raise ``error(message)`` from any ``OSError`` the ``with`` block raises.

    The kit's own errors pass through unchanged, ``OSError`` subclasses among them
    (``UnsafeFileError`` names its path and reason already)::

        with os_errors_as(PidFileError, f"failed to read pid file {path}"):
            data = read_state_file(path)
    """
    try:
        yield
    except DaemonError:
        raise
    except OSError as exc:
        raise error(message) from exc


def describe_exception(exc: BaseException) -> str:
    """Render one link of an error chain, OS errors the way Rust's io::Error prints them."""
    if isinstance(exc, DaemonError):
        return exc.message
    if isinstance(exc, OSError) and exc.errno is not None:
        reason = exc.strerror or os.strerror(exc.errno)
        return f"{reason} (os error {exc.errno})"
    text = str(exc)
    return text or type(exc).__name__


def describe_chain(exc: BaseException) -> str:
    """One line for a warning: the message and its causes joined by ``: ``."""
    parts = []
    current: BaseException | None = exc
    while current is not None:
        parts.append(describe_exception(current))
        current = current.__cause__
    return ": ".join(parts)


def _cause_of(exc: BaseException) -> BaseException | None:
    return exc.__cause__


def render_error(exc: BaseException) -> str:
    """Return the anyhow-style rendering of ``exc`` and its ``__cause__`` chain.

    >>> err = ProbeError("failed to connect to /s")
    >>> err.__cause__ = FileNotFoundError(2, "No such file or directory")
    >>> print(render_error(err))
    Error: failed to connect to /s
    <BLANKLINE>
    Caused by:
        No such file or directory (os error 2)
    """
    lines = [f"Error: {describe_exception(exc)}"]
    causes: list[str] = []
    cause = _cause_of(exc)
    while cause is not None:
        causes.append(describe_exception(cause))
        cause = _cause_of(cause)
    if not causes:
        return "\n".join(lines)
    lines.append("")
    lines.append("Caused by:")
    numbered = len(causes) > 1
    for index, text in enumerate(causes):
        prefix = f"    {index}: " if numbered else "    "
        continuation = " " * len(prefix)
        first, *rest = text.split("\n")
        lines.append(prefix + first)
        lines.extend(continuation + line if line else "" for line in rest)
    return "\n".join(lines)
