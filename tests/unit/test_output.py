"""Golden JSON of every output object: key order, omitted vs null, encoding.

SPEC §2.2-§2.3, §13.1 row 1.
"""

from __future__ import annotations

import json
import os

import pytest

from daemonkit.output import (
    InstallOutput,
    InstallStatus,
    LifecycleOutput,
    LifecycleStatus,
    LogFile,
    LogsOutput,
    PersistenceOutput,
    PersistenceReport,
    PersistenceStatus,
    ServerStatus,
    StatusOutput,
    SupervisorReport,
    UpdaterReport,
    UpdaterStatus,
    emit,
    render,
)

pytestmark = pytest.mark.timeout(30)

H = "/tmp/dk-x/h"
BIN = f"{H}/packages/standalone/current/codex"
SOCK = f"{H}/app-server-control/app-server-control.sock"
S = f"{H}/app-server-daemon"

COMMON = (
    f'"managedCodexPath":"{BIN}","managedCodexVersion":"0.169.0",'
    f'"socketPath":"{SOCK}","cliVersion":"0.1.0"'
)


def lifecycle(
    status: LifecycleStatus,
    *,
    managed: bool,
    pid: int | None = None,
    version: str | None = "0.169.0",
    app: str | None = None,
    path: str = BIN,
) -> LifecycleOutput:
    return LifecycleOutput(
        status=status,
        managed=managed,
        pid=pid,
        managed_codex_path=path,
        managed_codex_version=version,
        socket_path=SOCK,
        cli_version="0.1.0",
        app_server_version=app,
    )


# -- LifecycleOutput --------------------------------------------------------------------


def test_spec_example_started() -> None:
    out = lifecycle(LifecycleStatus.STARTED, managed=True, pid=4804, app="0.169.0")
    assert render(out) == (
        '{"status":"started","backend":"pid","pid":4804,'
        f'"managedCodexPath":"{BIN}","managedCodexVersion":"0.169.0",'
        f'"socketPath":"{SOCK}","cliVersion":"0.1.0","appServerVersion":"0.169.0"}}\n'
    )


@pytest.mark.parametrize(
    ("out", "expected"),
    [
        (
            lifecycle(LifecycleStatus.RESTARTED, managed=True, pid=77, app="1.2.3"),
            '{"status":"restarted","backend":"pid","pid":77,'
            + COMMON
            + ',"appServerVersion":"1.2.3"}',
        ),
        (
            lifecycle(LifecycleStatus.ALREADY_RUNNING, managed=True, app="1.2.3"),
            '{"status":"alreadyRunning","backend":"pid",' + COMMON + ',"appServerVersion":"1.2.3"}',
        ),
        (
            lifecycle(LifecycleStatus.ALREADY_RUNNING, managed=False, app="1.2.3"),
            '{"status":"alreadyRunning",' + COMMON + ',"appServerVersion":"1.2.3"}',
        ),
        (
            lifecycle(LifecycleStatus.RUNNING, managed=True, app="0.169.0"),
            '{"status":"running","backend":"pid",' + COMMON + ',"appServerVersion":"0.169.0"}',
        ),
        (
            lifecycle(LifecycleStatus.RUNNING, managed=False, app="0.169.0"),
            '{"status":"running",' + COMMON + ',"appServerVersion":"0.169.0"}',
        ),
        (
            lifecycle(LifecycleStatus.ADOPTED, managed=True, pid=4242, app="0.170.0"),
            '{"status":"adopted","backend":"pid","pid":4242,'
            + COMMON
            + ',"appServerVersion":"0.170.0"}',
        ),
        (
            lifecycle(LifecycleStatus.STOPPED, managed=True),
            '{"status":"stopped","backend":"pid",' + COMMON + "}",
        ),
        (
            lifecycle(LifecycleStatus.NOT_RUNNING, managed=False),
            '{"status":"notRunning",' + COMMON + "}",
        ),
        (
            lifecycle(LifecycleStatus.NOT_RUNNING, managed=False, version=None),
            (
                '{"status":"notRunning",'
                f'"managedCodexPath":"{BIN}","managedCodexVersion":null,'
                f'"socketPath":"{SOCK}","cliVersion":"0.1.0"}}'
            ),
        ),
    ],
    ids=[
        "restarted",
        "alreadyRunning-managed",
        "alreadyRunning-unmanaged",
        "running-managed",
        "running-unmanaged",
        "adopted",
        "stopped",
        "notRunning",
        "notRunning-version-null",
    ],
)
def test_lifecycle_golden(out: LifecycleOutput, expected: str) -> None:
    assert render(out) == expected + "\n"


def test_lifecycle_statuses_are_camel_case() -> None:
    assert [s.value for s in LifecycleStatus] == [
        "alreadyRunning",
        "started",
        "restarted",
        "stopped",
        "notRunning",
        "running",
        "adopted",
    ]


# -- StatusOutput -----------------------------------------------------------------------


def test_status_golden_full() -> None:
    out = StatusOutput(
        status=ServerStatus.RUNNING,
        managed=True,
        pid=4804,
        managed_codex_path=BIN,
        managed_codex_version="0.169.0",
        socket_path=SOCK,
        cli_version="0.1.0",
        app_server_version="0.169.0",
        remote_control_enabled=True,
        desired_state="running",
        updater=UpdaterReport(
            status=UpdaterStatus.RUNNING,
            pid=4900,
            auto_update_enabled=True,
            channel="script",
            update_interval_minutes=60,
            last_check_at_ms=1_795_000_000_000,
            last_result="noUpdate",
            last_error="boom",
        ),
        supervisor=SupervisorReport(
            state="backingOff",
            restart_on_exit=True,
            restarts=2,
            last_exit={"atMs": 1_795_000_000_500, "pid": 4800, "reason": "exited"},
        ),
        persistence=PersistenceReport(systemd="enabled", linger=True),
        warnings=("invalid pid file contents in /x", "second"),
    )
    assert render(out) == (
        '{"status":"running","backend":"pid","pid":4804,' + COMMON + ","
        '"appServerVersion":"0.169.0","remoteControlEnabled":true,"desiredState":"running",'
        '"updater":{"status":"running","pid":4900,"autoUpdateEnabled":true,"channel":"script",'
        '"updateIntervalMinutes":60,"lastCheckAtMs":1795000000000,"lastResult":"noUpdate",'
        '"lastError":"boom"},'
        '"supervisor":{"state":"backingOff","restartOnExit":true,"restarts":2,'
        '"lastExit":{"atMs":1795000000500,"pid":4800,"reason":"exited"}},'
        '"persistence":{"systemd":"enabled","linger":true},'
        '"warnings":["invalid pid file contents in /x","second"]}\n'
    )


def test_status_golden_not_running() -> None:
    out = StatusOutput(
        status=ServerStatus.NOT_RUNNING,
        managed=False,
        pid=None,
        managed_codex_path=BIN,
        managed_codex_version=None,
        socket_path=SOCK,
        cli_version="0.1.0",
        app_server_version=None,
        remote_control_enabled=False,
        desired_state=None,
        updater=UpdaterReport(
            status=UpdaterStatus.NOT_RUNNING,
            pid=None,
            auto_update_enabled=False,
            channel="npm",
            update_interval_minutes=525600,
        ),
        supervisor=SupervisorReport(state="off", restart_on_exit=False, restarts=0, last_exit=None),
        persistence=PersistenceReport(systemd="unavailable", linger=None),
    )
    assert render(out) == (
        '{"status":"notRunning",'
        f'"managedCodexPath":"{BIN}","managedCodexVersion":null,'
        f'"socketPath":"{SOCK}","cliVersion":"0.1.0",'
        '"remoteControlEnabled":false,"desiredState":null,'
        '"updater":{"status":"notRunning","autoUpdateEnabled":false,"channel":"npm",'
        '"updateIntervalMinutes":525600},'
        '"supervisor":{"state":"off","restartOnExit":false,"restarts":0,"lastExit":null},'
        '"persistence":{"systemd":"unavailable","linger":null},'
        '"warnings":[]}\n'
    )


@pytest.mark.parametrize(
    ("status", "value"),
    [
        (ServerStatus.STARTING, "starting"),
        (ServerStatus.NOT_READY, "notReady"),
    ],
)
def test_status_starting_and_not_ready(status: ServerStatus, value: str) -> None:
    out = StatusOutput(
        status=status,
        managed=True,
        pid=12,
        managed_codex_path=BIN,
        managed_codex_version="1",
        socket_path=SOCK,
        cli_version="0.1.0",
        app_server_version=None,
        remote_control_enabled=False,
        desired_state="stopped",
        updater=UpdaterReport(
            status=UpdaterStatus.NOT_RUNNING,
            pid=None,
            auto_update_enabled=True,
            channel="script",
            update_interval_minutes=60,
            last_error="x",
        ),
        supervisor=SupervisorReport(state="off", restart_on_exit=True, restarts=0, last_exit=None),
        persistence=PersistenceReport(systemd="disabled", linger=False),
    )
    line = render(out)
    assert line.startswith(f'{{"status":"{value}","backend":"pid","pid":12,')
    value_json = json.loads(line)
    assert "appServerVersion" not in value_json
    assert value_json["desiredState"] == "stopped"
    assert list(value_json["updater"]) == [
        "status",
        "autoUpdateEnabled",
        "channel",
        "updateIntervalMinutes",
        "lastError",
    ]

    assert list(value_json)[-3:] == ["supervisor", "persistence", "warnings"]
    assert value_json["persistence"] == {"systemd": "disabled", "linger": False}


# -- PersistenceOutput (SPEC §15.1) --------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "value", "linger"),
    [
        (PersistenceStatus.ENABLED, "enabled", True),
        (PersistenceStatus.ALREADY_ENABLED, "alreadyEnabled", False),
        (PersistenceStatus.DISABLED, "disabled", False),
        (PersistenceStatus.ALREADY_DISABLED, "alreadyDisabled", True),
    ],
)
def test_persistence_golden(status: PersistenceStatus, value: str, linger: bool) -> None:
    out = PersistenceOutput(
        status=status,
        unit="codex-daemon-0123456789ab.service",
        linger=linger,
        codex_home=H,
        cli_version="0.1.0",
    )
    assert render(out) == (
        f'{{"status":"{value}","unit":"codex-daemon-0123456789ab.service",'
        f'"linger":{json.dumps(linger)},"codexHome":"{H}","cliVersion":"0.1.0"}}\n'
    )


# -- InstallOutput and LogsOutput -------------------------------------------------------


def test_install_golden() -> None:
    out = InstallOutput(
        status=InstallStatus.INSTALLED,
        channel="npm",
        managed_codex_path=BIN,
        managed_codex_version="0.169.0",
        release_path=f"{H}/packages/standalone/releases/0.169.0-x86_64-unknown-linux-musl",
        previous_release_path=None,
        cli_version="0.1.0",
    )
    assert render(out) == (
        '{"status":"installed","channel":"npm",'
        f'"managedCodexPath":"{BIN}","managedCodexVersion":"0.169.0",'
        f'"releasePath":"{H}/packages/standalone/releases/0.169.0-x86_64-unknown-linux-musl",'
        '"previousReleasePath":null,"cliVersion":"0.1.0"}\n'
    )


def test_install_already_installed_all_null() -> None:
    out = InstallOutput(
        status=InstallStatus.ALREADY_INSTALLED,
        channel="script",
        managed_codex_path=BIN,
        managed_codex_version=None,
        release_path=None,
        previous_release_path=None,
        cli_version="0.1.0",
    )
    assert render(out) == (
        '{"status":"alreadyInstalled","channel":"script",'
        f'"managedCodexPath":"{BIN}","managedCodexVersion":null,'
        '"releasePath":null,"previousReleasePath":null,"cliVersion":"0.1.0"}\n'
    )


def test_logs_golden() -> None:
    out = LogsOutput(
        app_server_log=LogFile(
            path=f"{S}/app-server.stderr.log", size_bytes=12, tail="line 1\nline 2"
        ),
        app_server_previous_log=LogFile(
            path=f"{S}/app-server.stderr.log.previous", size_bytes=0, tail=None
        ),
        updater_log=LogFile(path=f"{S}/app-server-updater.stderr.log", size_bytes=None, tail=None),
        updater_previous_log=LogFile(
            path=f"{S}/app-server-updater.stderr.log.previous", size_bytes=None, tail=None
        ),
        tail_bytes=16384,
    )
    assert render(out) == (
        "{"
        f'"appServerLog":{{"path":"{S}/app-server.stderr.log","sizeBytes":12,'
        '"tail":"line 1\\nline 2"},'
        f'"appServerPreviousLog":{{"path":"{S}/app-server.stderr.log.previous",'
        '"sizeBytes":0,"tail":null},'
        f'"updaterLog":{{"path":"{S}/app-server-updater.stderr.log",'
        '"sizeBytes":null,"tail":null},'
        f'"updaterPreviousLog":{{"path":"{S}/app-server-updater.stderr.log.previous",'
        '"sizeBytes":null,"tail":null},'
        '"tailBytes":16384}\n'
    )


# -- encoding ---------------------------------------------------------------------------


def test_non_ascii_is_emitted_raw() -> None:
    out = lifecycle(LifecycleStatus.NOT_RUNNING, managed=False, path="/home/zoë/.codex/☃/codex")
    line = render(out)
    assert '"managedCodexPath":"/home/zoë/.codex/☃/codex"' in line
    assert "\\u" not in line
    assert "/home/zoë/.codex/☃/codex".encode() in line.encode("utf-8")


def test_surrogate_escaped_path_bytes_become_replacement_characters() -> None:
    path = os.fsdecode(b"/tmp/dk-x/caf\xe9/\xff\xfe/codex")
    line = render(lifecycle(LifecycleStatus.NOT_RUNNING, managed=False, path=path))
    assert '"managedCodexPath":"/tmp/dk-x/caf\ufffd/\ufffd\ufffd/codex"' in line
    line.encode("utf-8")  # strictly encodable: no lone surrogates remain
    assert "\\u" not in line


def test_surrogate_escaped_log_tail_becomes_replacement_characters() -> None:
    tail = os.fsdecode(b"bad \x80 byte")
    log = LogFile(path="/l", size_bytes=9, tail=tail)
    out = LogsOutput(
        app_server_log=log,
        app_server_previous_log=log,
        updater_log=log,
        updater_previous_log=log,
        tail_bytes=1,
    )
    assert '"tail":"bad \ufffd byte"' in render(out)


def test_lone_surrogate_from_json_text_never_breaks_the_output() -> None:
    # A JSON "\ud800" escape (e.g. in a misbehaving server's userAgent) decodes to a lone
    # surrogate outside the surrogateescape range; the line must still be valid UTF-8.
    version = json.loads('"1.0\\ud800"')
    line = render(lifecycle(LifecycleStatus.RUNNING, managed=False, app=version))
    assert line.endswith('"appServerVersion":"1.0\ufffd"}\n')
    line.encode("utf-8")


def test_control_characters_are_json_escaped() -> None:
    out = lifecycle(LifecycleStatus.NOT_RUNNING, managed=False, path='/a"b\\c\td')
    line = render(out)
    assert '"managedCodexPath":"/a\\"b\\\\c\\td"' in line
    assert json.loads(line)["managedCodexPath"] == '/a"b\\c\td'


def test_render_is_one_line_with_one_newline() -> None:
    out = lifecycle(LifecycleStatus.STARTED, managed=True, pid=1, app="x\ny")
    line = render(out)
    assert line.endswith("}\n")
    assert line.count("\n") == 1
    assert ": " not in line
    assert ", " not in line


def test_emit_writes_exactly_the_rendered_line(capsys: pytest.CaptureFixture[str]) -> None:
    out = lifecycle(LifecycleStatus.STOPPED, managed=True)
    emit(out)
    captured = capsys.readouterr()
    assert captured.out == render(out)
    assert captured.err == ""
