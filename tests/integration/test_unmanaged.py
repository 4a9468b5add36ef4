"""A server on the control socket that no pid record manages (SPEC §1.3, §2.4-§2.8, §2.12).

SPEC §13.8 row 30: start reports it as alreadyRunning without ``backend``; stop and
restart refuse with the upstream text and leave it running; version and status report
it as running without ``backend``/``pid``. The test starts the fake itself, so the kit
never spawned it and has no record of it.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from daemonkit import __version__
from tests.harness import is_alive, wait_for

if TYPE_CHECKING:
    from tests.harness import Home, Result

pytestmark = pytest.mark.timeout(60)

UNMANAGED_ERROR = "Error: app server is running but is not managed by codex app-server daemon\n"
ALREADY_RUNNING = (
    '{"status":"alreadyRunning","managedCodexPath":"<bin>","managedCodexVersion":"1.0.0",'
    '"socketPath":"<sock>","cliVersion":"<kitver>","appServerVersion":"2.0.0"}'
)
RUNNING = (
    '{"status":"running","managedCodexPath":"<bin>","managedCodexVersion":"1.0.0",'
    '"socketPath":"<sock>","cliVersion":"<kitver>","appServerVersion":"2.0.0"}'
)
STATUS_RUNNING = (
    '{"status":"running","managedCodexPath":"<bin>","managedCodexVersion":"1.0.0",'
    '"socketPath":"<sock>","cliVersion":"<kitver>","appServerVersion":"2.0.0",'
    '"remoteControlEnabled":false,"desiredState":<desired>,"updater":{"status":"notRunning",'
    '"autoUpdateEnabled":true,"channel":"script","updateIntervalMinutes":60},'
    '"supervisor":{"state":"off","restartOnExit":true,"restarts":0,"lastExit":null},'
    '"persistence":{"systemd":"unavailable","linger":null},"warnings":[]}'
)


def _json_text(value: str) -> str:
    return json.dumps(value, ensure_ascii=False)[1:-1]


def golden(home: Home, template: str, *, desired: str | None = None) -> str:
    line = (
        template.replace("<bin>", _json_text(home.paths.managed_bin_candidates[0]))
        .replace("<sock>", _json_text(home.paths.socket))
        .replace("<kitver>", _json_text(__version__))
        .replace("<desired>", json.dumps(desired))
    )
    assert "<" not in line, line
    return line + "\n"


def answers(path: str) -> bool:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        try:
            sock.connect(path)
        except OSError:
            return False
    return True


@pytest.fixture
def unmanaged(home: Home) -> subprocess.Popen[bytes]:
    """A fake app-server started by the test (version 2.0.0), answering on the socket."""
    release = home.install_fake("1.0.0", server_version="2.0.0")
    process = home.spawn_marked(
        [str(release / "codex"), "app-server", "--listen", "unix://"],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    wait_for(lambda: answers(home.paths.socket), what="the unmanaged fake's socket")
    return process


def assert_refused(home: Home, result: Result, server: subprocess.Popen[bytes]) -> None:
    assert result.returncode == 1, result
    assert result.stdout == ""
    assert result.stderr == UNMANAGED_ERROR
    assert is_alive(server.pid)
    assert answers(home.paths.socket)
    assert home.record() is None


def test_start_reports_alreadyrunning_without_backend(
    home: Home, unmanaged: subprocess.Popen[bytes]
) -> None:
    result = home.run("start")
    assert (result.returncode, result.stderr) == (0, ""), result
    assert result.stdout == golden(home, ALREADY_RUNNING)
    assert is_alive(unmanaged.pid)
    # Nothing was spawned next to it: no record, no log.
    assert home.record() is None
    assert not os.path.exists(home.paths.app_server.log)


@pytest.mark.parametrize("command", ["stop", "restart"])
def test_stop_and_restart_refuse_and_leave_it_running(
    home: Home, unmanaged: subprocess.Popen[bytes], command: str
) -> None:
    assert_refused(home, home.run(command), unmanaged)
    assert not os.path.exists(home.paths.app_server.log)  # restart spawned nothing
    # The refusal is not sticky: asking again gives the same answer.
    assert_refused(home, home.run(command), unmanaged)


def test_version_and_status_report_running_without_backend(
    home: Home, unmanaged: subprocess.Popen[bytes]
) -> None:
    version = home.run("version")
    assert (version.returncode, version.stderr) == (0, ""), version
    assert version.stdout == golden(home, RUNNING)
    status = home.run("status")
    assert (status.returncode, status.stderr) == (0, ""), status
    assert status.stdout == golden(home, STATUS_RUNNING)
    # stop writes desiredState=stopped before it finds the server unmanaged (SPEC §2.7)
    assert_refused(home, home.run("stop"), unmanaged)
    assert home.run("status").stdout == golden(home, STATUS_RUNNING, desired="stopped")


def test_stale_record_does_not_make_an_unmanaged_server_managed(
    home: Home, unmanaged: subprocess.Popen[bytes]
) -> None:
    # A record naming a dead process (pid of a reaped child) is stale: the server is
    # still unmanaged, and stop must neither signal anything nor succeed.
    helper = subprocess.Popen(["true"])
    helper.wait()
    os.makedirs(home.paths.state_dir, mode=0o700, exist_ok=True)
    Path(home.paths.app_server.record).write_text(
        json.dumps(
            {"pid": helper.pid, "processStartTime": "Thu Jan  1 00:00:00 1970"},
            separators=(",", ":"),
        )
    )
    assert_refused(home, home.run("stop"), unmanaged)
    assert not os.path.exists(home.paths.app_server.record)  # stale record cleaned up


def test_a_server_that_daemon_pid_names_is_managed_in_place(
    home: Home, unmanaged: subprocess.Popen[bytes]
) -> None:
    # The Rust daemon's dedicated layout names its server in <S>/daemon.pid, a pid
    # record of the same JSON schema: the kit manages that home with Rust's names
    # (SPEC §9, §16) instead of refusing the server.
    os.makedirs(home.paths.state_dir, mode=0o700, exist_ok=True)
    lstart = subprocess.run(
        ["ps", "-p", str(unmanaged.pid), "-o", "lstart="],
        capture_output=True,
        env={**os.environ, "LC_ALL": "C"},
        check=True,
        text=True,
    ).stdout.strip()
    Path(os.path.join(home.paths.state_dir, "daemon.pid")).write_text(
        json.dumps({"pid": unmanaged.pid, "processStartTime": lstart}, separators=(",", ":"))
    )
    status = home.run("status").json
    assert status["status"] == "running"
    assert status["backend"] == "pid"
    assert status["pid"] == unmanaged.pid
    result = home.run("stop")
    assert (result.returncode, result.stderr) == (0, ""), result
    assert result.json["status"] == "stopped"
    assert result.json["backend"] == "pid"
    wait_for(lambda: unmanaged.poll() is not None, what="the server daemon.pid names to exit")
    assert not os.path.exists(os.path.join(home.paths.state_dir, "daemon.pid"))
    # Nothing of the standalone names was created next to Rust's files.
    for name in ("app-server.pid", "app-server.pid.lock", "app-server.stderr.log"):
        assert not os.path.exists(os.path.join(home.paths.state_dir, name)), name


def test_a_stale_dedicated_record_leaves_the_server_unmanaged(
    home: Home, unmanaged: subprocess.Popen[bytes]
) -> None:
    helper = subprocess.Popen(["true"])
    helper.wait()
    os.makedirs(home.paths.state_dir, mode=0o700, exist_ok=True)
    Path(os.path.join(home.paths.state_dir, "daemon.pid")).write_text(
        json.dumps(
            {"pid": helper.pid, "processStartTime": "Thu Jan  1 00:00:00 1970"},
            separators=(",", ":"),
        )
    )
    assert_refused(home, home.run("stop"), unmanaged)
