"""status and logs: read-only reports that never fail because nothing runs (SPEC §2.12, §2.14).

Nothing here takes a lock, creates a file or removes a record.
"""

from __future__ import annotations

import json

from daemonkit import __version__
from daemonkit.binarycache import cached_codex_version
from daemonkit.environment import child_environment
from daemonkit.errors import DaemonError, ProbeError, UnsafeFileError, describe_exception
from daemonkit.files import read_state_file
from daemonkit.intent import DesiredState, read_desired_state
from daemonkit.jsonget import get_lenient
from daemonkit.logtail import read_tail
from daemonkit.managed import managed_bin_path
from daemonkit.output import (
    LogFile,
    LogsOutput,
    ServerStatus,
    StatusOutput,
    SupervisorReport,
    UpdaterReport,
    UpdaterStatus,
)
from daemonkit.persistence import persistence_report
from daemonkit.pidfile import Absent, Running, read_pid_state
from daemonkit.probe import probe
from daemonkit.procinfo import inspect_process, is_kit_updater, read_command, record_matches
from daemonkit.settings import Settings, load_settings_leniently

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping

    from daemonkit.paths import DaemonPaths, PidPaths

__all__ = ["collect_logs", "collect_status"]


def _record_status(paths: PidPaths, warnings: list[str]) -> tuple[Absent | Running, bool]:
    """(state, active) of a record, read without writing anything."""
    try:
        state = read_pid_state(paths, may_write=False)
    except DaemonError as exc:
        warnings.append(describe_exception(exc))
        return Absent.MISSING, False
    if isinstance(state, Running):
        snapshot = inspect_process(state.record.pid)
        return state, record_matches(state.record, snapshot, kind=paths.kind)
    return state, state is Absent.STARTING


def _updater_state(path: str) -> dict[str, object]:
    try:
        raw = read_state_file(path, 1 << 20)
        value = json.loads(raw.decode("utf-8")) if raw else {}
    except (OSError, UnicodeDecodeError, ValueError, RecursionError):
        # The updater's state file is informational; status reports what it can.
        return {}
    return value if isinstance(value, dict) else {}


def _supervisor(
    settings: Settings,
    updater: Absent | Running,
    active: bool,
    recorded: dict[str, object],
    desired: DesiredState | None,
) -> SupervisorReport:
    """SPEC §14.8: what the kit's updater saved; ``off`` when nothing is meant to
    supervise, ``interrupted`` (with the reason) when something should and does not.

    A Rust updater holding the record does not supervise, and neither does a kit
    updater while ``restartOnExit`` is false. Rust commands stop the kit's updater
    in some cases (SPEC §16); the kit's next start puts it back.
    """
    saved: dict[str, object] = get_lenient(recorded, "supervisor", dict, {})
    command = read_command(updater.record.pid) if isinstance(updater, Running) else None
    kit_updater = active and command is not None and is_kit_updater(command.argv)
    supervising = settings.restart_on_exit and kit_updater
    state = (get_lenient(saved, "state", str, None) or "watching") if supervising else "off"
    reason = None
    if settings.restart_on_exit and not supervising and desired is DesiredState.RUNNING:
        state = "interrupted"
        if active and isinstance(updater, Running):
            reason = (
                f"the updater running (pid {updater.record.pid}) is the Codex daemon's, "
                "which does not supervise"
            )
        else:
            reason = (
                "no updater is running: something outside the kit stopped it (a Codex "
                "daemon command does when it finds updates off or not its own to make)"
            )
        reason += "; `codex-daemon start` restores supervision"
    return SupervisorReport(
        state=state,
        restart_on_exit=settings.restart_on_exit,
        restarts=get_lenient(saved, "restarts", int, 0),
        last_exit=get_lenient(saved, "lastExit", dict, None),
        reason=reason,
    )


def collect_status(paths: DaemonPaths, environ: Mapping[str, str]) -> StatusOutput:
    """SPEC §2.12: both records, liveness, one probe, versions, intent, updater state,
    and whether systemd keeps this home's server running (§15.3)."""
    settings, setting_warnings = load_settings_leniently(paths.settings)
    warnings = list(setting_warnings)
    app_state, app_active = _record_status(paths.app_server, warnings)
    updater_state, updater_active = _record_status(paths.updater, warnings)
    try:
        info = probe(paths.socket)
    except ProbeError:
        info = None
    if info is not None:
        status = ServerStatus.RUNNING
    elif app_state is Absent.STARTING:
        status = ServerStatus.STARTING
    elif app_active:
        status = ServerStatus.NOT_READY
    else:
        status = ServerStatus.NOT_RUNNING
    recorded = _updater_state(paths.updater_state)
    desired = read_desired_state(paths.desired_state)
    bin_path = managed_bin_path(paths)
    return StatusOutput(
        status=status,
        managed=app_active,
        pid=app_state.record.pid if isinstance(app_state, Running) and app_active else None,
        managed_codex_path=bin_path,
        managed_codex_version=cached_codex_version(
            bin_path,
            child_environment(environ, paths.codex_home, remote_control=None),
            paths.binary_cache,
            may_write=False,
        ),
        socket_path=paths.socket,
        cli_version=__version__,
        app_server_version=None if info is None else info.app_server_version,
        remote_control_enabled=settings.remote_control_enabled,
        desired_state=None if desired is None else desired.value,
        updater=UpdaterReport(
            status=UpdaterStatus.RUNNING if updater_active else UpdaterStatus.NOT_RUNNING,
            pid=updater_state.record.pid
            if isinstance(updater_state, Running) and updater_active
            else None,
            auto_update_enabled=settings.auto_update_enabled,
            channel=settings.channel,
            update_interval_minutes=settings.update_interval_minutes,
            last_check_at_ms=get_lenient(recorded, "lastCheckAtMs", int, None),
            last_result=get_lenient(recorded, "lastResult", str, None),
            last_error=get_lenient(recorded, "lastError", str, None),
        ),
        supervisor=_supervisor(settings, updater_state, updater_active, recorded, desired),
        persistence=persistence_report(paths.codex_home, environ),
        warnings=tuple(warnings),
    )


def _log_file(path: str, limit: int, warnings: list[str]) -> LogFile:
    try:
        result = read_tail(path, limit)
    except UnsafeFileError as exc:
        warnings.append(describe_exception(exc))  # the message names the path already
        result = None
    except OSError as exc:
        warnings.append(f"failed to read {path}: {describe_exception(exc)}")
        result = None
    if result is None:
        return LogFile(path=path, size_bytes=None, tail=None)
    size, tail = result
    return LogFile(path=path, size_bytes=size, tail=tail)


def collect_logs(paths: DaemonPaths, limit: int) -> tuple[LogsOutput, list[str]]:
    """SPEC §2.14: the four logs' sizes and tails; refused files become warnings."""
    warnings: list[str] = []
    output = LogsOutput(
        app_server_log=_log_file(paths.app_server.log, limit, warnings),
        app_server_previous_log=_log_file(paths.app_server.previous_log, limit, warnings),
        updater_log=_log_file(paths.updater.log, limit, warnings),
        updater_previous_log=_log_file(paths.updater.previous_log, limit, warnings),
        tail_bytes=limit,
    )
    return output, warnings
