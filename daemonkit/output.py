"""Output objects in upstream key order, and the only writer of stdout (SPEC §2.2-§2.3).

Each output builds its JSON by hand: "omitted" (key absent) and ``null`` (key present)
are different contracts, and key order is part of the contract.
"""

from __future__ import annotations

import json
import re
import sys
from enum import StrEnum
from typing import NamedTuple, Protocol

__all__ = [
    "InstallOutput",
    "InstallStatus",
    "LifecycleOutput",
    "LifecycleStatus",
    "LogFile",
    "LogsOutput",
    "StatusOutput",
    "UpdaterStatus",
    "emit",
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


class ServerStatus(StrEnum):
    RUNNING = "running"
    STARTING = "starting"
    NOT_READY = "notReady"
    NOT_RUNNING = "notRunning"


class InstallStatus(StrEnum):
    INSTALLED = "installed"
    ALREADY_INSTALLED = "alreadyInstalled"


class LifecycleOutput(NamedTuple):
    status: LifecycleStatus
    managed: bool  # renders "backend":"pid" when a managed record is active
    managed_codex_path: str
    managed_codex_version: str | None
    socket_path: str
    cli_version: str
    pid: int | None = None  # only when this invocation spawned the server
    app_server_version: str | None = None  # omitted for stopped / notRunning

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


class BootstrapOutput(NamedTuple):
    auto_update_enabled: bool  # an updater is running when bootstrap returns
    remote_control_enabled: bool
    managed_codex_path: str
    managed_codex_version: str | None
    socket_path: str
    cli_version: str
    app_server_version: str

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


class RemoteControlOutput(NamedTuple):
    status: RemoteControlStatus
    app_server_version: str | None  # present, with backend, iff a managed server runs
    remote_control_enabled: bool
    socket_path: str
    cli_version: str

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


class UpdaterReport(NamedTuple):
    status: UpdaterStatus
    pid: int | None
    auto_update_enabled: bool
    channel: str
    update_interval_minutes: int
    last_check_at_ms: int | None = None
    last_result: str | None = None
    last_error: str | None = None

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


class StatusOutput(NamedTuple):
    status: ServerStatus
    managed: bool
    pid: int | None
    managed_codex_path: str
    managed_codex_version: str | None
    socket_path: str
    cli_version: str
    app_server_version: str | None
    remote_control_enabled: bool
    desired_state: str | None
    updater: UpdaterReport
    warnings: tuple[str, ...] = ()

    def to_json(self) -> dict[str, object]:
        out = _server_json(self)
        out["remoteControlEnabled"] = self.remote_control_enabled
        out["desiredState"] = self.desired_state
        out["updater"] = self.updater.to_json()
        out["warnings"] = list(self.warnings)
        return out


class InstallOutput(NamedTuple):
    status: InstallStatus
    channel: str
    managed_codex_path: str
    managed_codex_version: str | None
    release_path: str | None
    previous_release_path: str | None
    cli_version: str

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


class LogFile(NamedTuple):
    path: str
    size_bytes: int | None
    tail: str | None

    def to_json(self) -> dict[str, object]:
        return {"path": self.path, "sizeBytes": self.size_bytes, "tail": self.tail}


class LogsOutput(NamedTuple):
    app_server_log: LogFile
    app_server_previous_log: LogFile
    updater_log: LogFile
    updater_previous_log: LogFile
    tail_bytes: int

    def to_json(self) -> dict[str, object]:
        return {
            "appServerLog": self.app_server_log.to_json(),
            "appServerPreviousLog": self.app_server_previous_log.to_json(),
            "updaterLog": self.updater_log.to_json(),
            "updaterPreviousLog": self.updater_previous_log.to_json(),
            "tailBytes": self.tail_bytes,
        }


class JsonOutput(Protocol):
    def to_json(self) -> dict[str, object]: ...


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
    """Write the command's single JSON line to stdout."""
    sys.stdout.write(render(output))
    sys.stdout.flush()
