"""Output objects in upstream key order; the only writer of stdout and stderr (SPEC §2.2-§2.3).

Each output builds its JSON by hand: "omitted" (key absent) and ``null`` (key present)
are different contracts, and key order is part of the contract. Every write is flushed
at once and a failed one raises ``OutputError``, so the CLI can report it as an error.
"""

from __future__ import annotations

import errno
import json
import os
import re
import sys
from enum import StrEnum

from daemonkit.errors import OutputError
from daemonkit.value import Value

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Final, Protocol, TextIO

    class JsonOutput(Protocol):
        def to_json(self) -> dict[str, object]: ...


__all__ = [
    "InstallOutput",
    "InstallStatus",
    "LifecycleOutput",
    "LifecycleStatus",
    "LogFile",
    "LogsOutput",
    "PersistenceOutput",
    "PersistenceReport",
    "PersistenceStatus",
    "StatusOutput",
    "UpdaterStatus",
    "emit",
    "write_stderr",
]

BACKEND_PID = "pid"
_SURROGATE = re.compile("[\ud800-\udfff]")


class LifecycleStatus(StrEnum):
    ALREADY_RUNNING = "alreadyRunning"
    STARTED = "started"
    RESTARTED = "restarted"
    STOPPED = "stopped"
    NOT_RUNNING = "notRunning"
    RUNNING = "running"
    ADOPTED = "adopted"


class ServerStatus(StrEnum):
    RUNNING = "running"
    STARTING = "starting"
    NOT_READY = "notReady"
    NOT_RUNNING = "notRunning"


class InstallStatus(StrEnum):
    INSTALLED = "installed"
    ALREADY_INSTALLED = "alreadyInstalled"


class LifecycleOutput(Value):
    __slots__ = (
        "app_server_version",
        "cli_version",
        "managed",
        "managed_codex_path",
        "managed_codex_version",
        "pid",
        "socket_path",
        "status",
    )

    def __init__(
        self,
        *,
        status: LifecycleStatus,
        managed: bool,
        managed_codex_path: str,
        managed_codex_version: str | None,
        socket_path: str,
        cli_version: str,
        pid: int | None = None,
        app_server_version: str | None = None,
    ) -> None:
        self.status: Final = status
        self.managed: Final = managed  # renders "backend":"pid" when a managed record is active
        self.managed_codex_path: Final = managed_codex_path
        self.managed_codex_version: Final = managed_codex_version
        self.socket_path: Final = socket_path
        self.cli_version: Final = cli_version
        self.pid: Final = pid  # only when this invocation spawned or adopted the server
        self.app_server_version: Final = app_server_version  # omitted for stopped / notRunning

    def to_json(self) -> dict[str, object]:
        return _server_json(self)


def _server_json(output: LifecycleOutput | StatusOutput) -> dict[str, object]:
    """The keys lifecycle and status outputs share, in upstream order (SPEC §2.3)."""
    out: dict[str, object] = {"status": output.status.value}
    if output.managed:
        out["backend"] = BACKEND_PID
    if output.pid is not None:
        out["pid"] = output.pid
    out["managedCodexPath"] = output.managed_codex_path
    out["managedCodexVersion"] = output.managed_codex_version
    out["socketPath"] = output.socket_path
    out["cliVersion"] = output.cli_version
    if output.app_server_version is not None:
        out["appServerVersion"] = output.app_server_version
    return out


class RemoteControlStatus(StrEnum):
    ENABLED = "enabled"
    DISABLED = "disabled"
    ALREADY_ENABLED = "alreadyEnabled"
    ALREADY_DISABLED = "alreadyDisabled"


class BootstrapOutput(Value):
    __slots__ = (
        "app_server_version",
        "auto_update_enabled",
        "cli_version",
        "managed_codex_path",
        "managed_codex_version",
        "remote_control_enabled",
        "socket_path",
    )

    def __init__(
        self,
        *,
        auto_update_enabled: bool,
        remote_control_enabled: bool,
        managed_codex_path: str,
        managed_codex_version: str | None,
        socket_path: str,
        cli_version: str,
        app_server_version: str,
    ) -> None:
        self.auto_update_enabled: Final = (
            auto_update_enabled  # an updater is running when bootstrap returns
        )
        self.remote_control_enabled: Final = remote_control_enabled
        self.managed_codex_path: Final = managed_codex_path
        self.managed_codex_version: Final = managed_codex_version
        self.socket_path: Final = socket_path
        self.cli_version: Final = cli_version
        self.app_server_version: Final = app_server_version

    def to_json(self) -> dict[str, object]:
        return {
            "status": "bootstrapped",
            "backend": BACKEND_PID,
            "autoUpdateEnabled": self.auto_update_enabled,
            "remoteControlEnabled": self.remote_control_enabled,
            "managedCodexPath": self.managed_codex_path,
            "managedCodexVersion": self.managed_codex_version,
            "socketPath": self.socket_path,
            "cliVersion": self.cli_version,
            "appServerVersion": self.app_server_version,
        }


class RemoteControlOutput(Value):
    __slots__ = (
        "app_server_version",
        "cli_version",
        "remote_control_enabled",
        "socket_path",
        "status",
    )

    def __init__(
        self,
        *,
        status: RemoteControlStatus,
        app_server_version: str | None,
        remote_control_enabled: bool,
        socket_path: str,
        cli_version: str,
    ) -> None:
        self.status: Final = status
        self.app_server_version: Final = (
            app_server_version  # present, with backend, iff a managed server runs
        )
        self.remote_control_enabled: Final = remote_control_enabled
        self.socket_path: Final = socket_path
        self.cli_version: Final = cli_version

    def to_json(self) -> dict[str, object]:
        out: dict[str, object] = {"status": self.status.value}
        if self.app_server_version is not None:
            out["backend"] = BACKEND_PID
        out["remoteControlEnabled"] = self.remote_control_enabled
        out["socketPath"] = self.socket_path
        out["cliVersion"] = self.cli_version
        if self.app_server_version is not None:
            out["appServerVersion"] = self.app_server_version
        return out


class UpdaterStatus(StrEnum):
    RUNNING = "running"
    NOT_RUNNING = "notRunning"


class UpdaterReport(Value):
    __slots__ = (
        "auto_update_enabled",
        "channel",
        "last_check_at_ms",
        "last_error",
        "last_result",
        "pid",
        "status",
        "update_interval_minutes",
    )

    def __init__(
        self,
        *,
        status: UpdaterStatus,
        pid: int | None,
        auto_update_enabled: bool,
        channel: str,
        update_interval_minutes: int,
        last_check_at_ms: int | None = None,
        last_result: str | None = None,
        last_error: str | None = None,
    ) -> None:
        self.status: Final = status
        self.pid: Final = pid
        self.auto_update_enabled: Final = auto_update_enabled
        self.channel: Final = channel
        self.update_interval_minutes: Final = update_interval_minutes
        self.last_check_at_ms: Final = last_check_at_ms
        self.last_result: Final = last_result
        self.last_error: Final = last_error

    def to_json(self) -> dict[str, object]:
        out: dict[str, object] = {"status": self.status.value}
        if self.pid is not None:
            out["pid"] = self.pid
        out["autoUpdateEnabled"] = self.auto_update_enabled
        out["channel"] = self.channel
        out["updateIntervalMinutes"] = self.update_interval_minutes
        if self.last_check_at_ms is not None:
            out["lastCheckAtMs"] = self.last_check_at_ms
        if self.last_result is not None:
            out["lastResult"] = self.last_result
        if self.last_error is not None:
            out["lastError"] = self.last_error
        return out


class SupervisorReport(Value):
    """``status``'s ``supervisor`` object (SPEC §14.8); ``reason`` says why an
    ``interrupted`` supervisor is not watching (SPEC §16), and is omitted otherwise."""

    __slots__ = ("last_exit", "reason", "restart_on_exit", "restarts", "state")

    def __init__(
        self,
        *,
        state: str,
        restart_on_exit: bool,
        restarts: int,
        last_exit: dict[str, object] | None,
        reason: str | None = None,
    ) -> None:
        self.state: Final = state
        self.restart_on_exit: Final = restart_on_exit
        self.restarts: Final = restarts
        self.last_exit: Final = last_exit
        self.reason: Final = reason

    def to_json(self) -> dict[str, object]:
        value: dict[str, object] = {
            "state": self.state,
            "restartOnExit": self.restart_on_exit,
            "restarts": self.restarts,
            "lastExit": self.last_exit,
        }
        if self.reason is not None:
            value["reason"] = self.reason
        return value


class PersistenceReport(Value):
    """``status``'s ``persistence`` object (SPEC §15.3): ``systemd`` is ``enabled``,
    ``disabled`` or ``unavailable``; ``linger`` is null when systemd is unavailable."""

    __slots__ = ("linger", "systemd")

    def __init__(self, *, systemd: str, linger: bool | None) -> None:
        self.systemd: Final = systemd
        self.linger: Final = linger

    def to_json(self) -> dict[str, object]:
        return {"systemd": self.systemd, "linger": self.linger}


class StatusOutput(Value):
    __slots__ = (
        "app_server_version",
        "cli_version",
        "desired_state",
        "managed",
        "managed_codex_path",
        "managed_codex_version",
        "persistence",
        "pid",
        "remote_control_enabled",
        "socket_path",
        "status",
        "supervisor",
        "updater",
        "warnings",
    )

    def __init__(
        self,
        *,
        status: ServerStatus,
        managed: bool,
        pid: int | None,
        managed_codex_path: str,
        managed_codex_version: str | None,
        socket_path: str,
        cli_version: str,
        app_server_version: str | None,
        remote_control_enabled: bool,
        desired_state: str | None,
        updater: UpdaterReport,
        supervisor: SupervisorReport,
        persistence: PersistenceReport,
        warnings: tuple[str, ...] = (),
    ) -> None:
        self.status: Final = status
        self.managed: Final = managed
        self.pid: Final = pid
        self.managed_codex_path: Final = managed_codex_path
        self.managed_codex_version: Final = managed_codex_version
        self.socket_path: Final = socket_path
        self.cli_version: Final = cli_version
        self.app_server_version: Final = app_server_version
        self.remote_control_enabled: Final = remote_control_enabled
        self.desired_state: Final = desired_state
        self.updater: Final = updater
        self.supervisor: Final = supervisor
        self.persistence: Final = persistence
        self.warnings: Final = warnings

    def to_json(self) -> dict[str, object]:
        out = _server_json(self)
        out["remoteControlEnabled"] = self.remote_control_enabled
        out["desiredState"] = self.desired_state
        out["updater"] = self.updater.to_json()
        out["supervisor"] = self.supervisor.to_json()
        out["persistence"] = self.persistence.to_json()
        out["warnings"] = list(self.warnings)
        return out


class PersistenceStatus(StrEnum):
    ENABLED = "enabled"
    ALREADY_ENABLED = "alreadyEnabled"
    DISABLED = "disabled"
    ALREADY_DISABLED = "alreadyDisabled"


class PersistenceOutput(Value):
    """What ``enable`` and ``disable`` print (SPEC §15.1)."""

    __slots__ = ("cli_version", "codex_home", "linger", "status", "unit")

    def __init__(
        self,
        *,
        status: PersistenceStatus,
        unit: str,
        linger: bool,
        codex_home: str,
        cli_version: str,
    ) -> None:
        self.status: Final = status
        self.unit: Final = unit  # "<name>.service"
        self.linger: Final = linger  # logind keeps the user manager without a session
        self.codex_home: Final = codex_home
        self.cli_version: Final = cli_version

    def to_json(self) -> dict[str, object]:
        return {
            "status": self.status.value,
            "unit": self.unit,
            "linger": self.linger,
            "codexHome": self.codex_home,
            "cliVersion": self.cli_version,
        }


class InstallOutput(Value):
    __slots__ = (
        "channel",
        "cli_version",
        "managed_codex_path",
        "managed_codex_version",
        "previous_release_path",
        "release_path",
        "status",
    )

    def __init__(
        self,
        *,
        status: InstallStatus,
        channel: str,
        managed_codex_path: str,
        managed_codex_version: str | None,
        release_path: str | None,
        previous_release_path: str | None,
        cli_version: str,
    ) -> None:
        self.status: Final = status
        self.channel: Final = channel
        self.managed_codex_path: Final = managed_codex_path
        self.managed_codex_version: Final = managed_codex_version
        self.release_path: Final = release_path
        self.previous_release_path: Final = previous_release_path
        self.cli_version: Final = cli_version

    def to_json(self) -> dict[str, object]:
        return {
            "status": self.status.value,
            "channel": self.channel,
            "managedCodexPath": self.managed_codex_path,
            "managedCodexVersion": self.managed_codex_version,
            "releasePath": self.release_path,
            "previousReleasePath": self.previous_release_path,
            "cliVersion": self.cli_version,
        }


class LogFile(Value):
    __slots__ = ("path", "size_bytes", "tail")

    def __init__(self, *, path: str, size_bytes: int | None, tail: str | None) -> None:
        self.path: Final = path
        self.size_bytes: Final = size_bytes
        self.tail: Final = tail

    def to_json(self) -> dict[str, object]:
        return {"path": self.path, "sizeBytes": self.size_bytes, "tail": self.tail}


class LogsOutput(Value):
    __slots__ = (
        "app_server_log",
        "app_server_previous_log",
        "tail_bytes",
        "updater_log",
        "updater_previous_log",
    )

    def __init__(
        self,
        *,
        app_server_log: LogFile,
        app_server_previous_log: LogFile,
        updater_log: LogFile,
        updater_previous_log: LogFile,
        tail_bytes: int,
    ) -> None:
        self.app_server_log: Final = app_server_log
        self.app_server_previous_log: Final = app_server_previous_log
        self.updater_log: Final = updater_log
        self.updater_previous_log: Final = updater_previous_log
        self.tail_bytes: Final = tail_bytes

    def to_json(self) -> dict[str, object]:
        return {
            "appServerLog": self.app_server_log.to_json(),
            "appServerPreviousLog": self.app_server_previous_log.to_json(),
            "updaterLog": self.updater_log.to_json(),
            "updaterPreviousLog": self.updater_previous_log.to_json(),
            "tailBytes": self.tail_bytes,
        }


def render(output: JsonOutput) -> str:
    """One compact JSON line, raw UTF-8 (no \\u escapes).

    Paths decoded with surrogateescape carry their non-UTF-8 bytes as lone
    surrogates; they are printed as U+FFFD (SPEC §2.2).
    """
    text = json.dumps(output.to_json(), separators=(",", ":"), ensure_ascii=False)
    # Any lone surrogate (surrogateescape'd path bytes, or a \ud800 a server sent in
    # JSON) cannot be encoded as UTF-8; print U+FFFD in its place.
    return _SURROGATE.sub("\ufffd", text) + "\n"


def emit(output: JsonOutput) -> None:
    """Write the command's single JSON line to stdout; raise ``OutputError`` if it fails."""
    _write(sys.stdout, "stdout", render(output))


def write_stderr(text: str) -> None:
    """Write warnings, errors and prompts to stderr; raise ``OutputError`` if it fails."""
    _write(sys.stderr, "stderr", text)


def _write(stream: TextIO | None, name: str, text: str) -> None:
    if stream is None:
        # Python leaves sys.stdout/sys.stderr None when the descriptor was closed at
        # start-up; the descriptor number may by now belong to a state file.
        closed = OSError(errno.EBADF, os.strerror(errno.EBADF))
        raise OutputError(f"failed to write to {name}") from closed
    try:
        stream.write(text)
        stream.flush()
    except OSError as exc:
        raise OutputError(f"failed to write to {name}") from exc
