"""status and logs through the CLI: every state as a golden line, read-only (SPEC §2.12, §2.14).

status: running / notReady / starting / notRunning with the key order and omission
rules of SPEC §2.3; it never fails for a daemon state, never writes and never removes a
record. logs: sizes and tails of the current and previous logs, ``--bytes`` cut at a
line boundary, absent logs as nulls, refused logs as warnings (SPEC §13.1 row 1,
§13.6 row 22).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import signal
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from daemonkit import __version__
from tests.harness import UPDATER_OFF, is_alive, wait_for, write_settings

if TYPE_CHECKING:
    import subprocess
    from collections.abc import Iterator

    from tests.harness import Home

pytestmark = pytest.mark.timeout(60)

NO_UPDATER = (
    '{"status":"notRunning","autoUpdateEnabled":false,'
    '"channel":"script","updateIntervalMinutes":60}'
)
DEFAULT_UPDATER = (
    '{"status":"notRunning","autoUpdateEnabled":true,"channel":"script","updateIntervalMinutes":60}'
)
# Nothing supervises: no kit updater runs (SPEC §14.8).
SUPERVISOR_OFF = '{"state":"off","restartOnExit":false,"restarts":0,"lastExit":null}'
DEFAULT_SUPERVISOR_OFF = '{"state":"off","restartOnExit":true,"restarts":0,"lastExit":null}'
# Supervision is on and the user wants the server running, but no updater runs: it
# was stopped from outside (SPEC §16); the next start restores it.
DEFAULT_SUPERVISOR_INTERRUPTED = (
    '{"state":"interrupted","restartOnExit":true,"restarts":0,"lastExit":null,'
    '"reason":"no updater is running: something outside the kit stopped it (a Codex daemon '
    "command does when it finds updates off or not its own to make); `codex-daemon start` "
    'restores supervision"}'
)
# The harness points XDG_RUNTIME_DIR at a missing directory: no user manager (SPEC §15.3).
NO_SYSTEMD = '{"systemd":"unavailable","linger":null}'
STATUS_RUNNING = (
    '{"status":"running","backend":"pid","pid":<pid>,"managedCodexPath":"<bin>",'
    '"managedCodexVersion":"1.0.0","socketPath":"<sock>","cliVersion":"<kitver>",'
    '"appServerVersion":"1.0.0","remoteControlEnabled":false,"desiredState":"running",'
    f'"updater":{NO_UPDATER},"supervisor":{SUPERVISOR_OFF},'
    f'"persistence":{NO_SYSTEMD},"warnings":[]}}'
)
STATUS_NOT_READY = (
    '{"status":"notReady","backend":"pid","pid":<pid>,"managedCodexPath":"<bin>",'
    '"managedCodexVersion":"1.0.0","socketPath":"<sock>","cliVersion":"<kitver>",'
    '"remoteControlEnabled":false,"desiredState":"running",'
    f'"updater":{NO_UPDATER},"supervisor":{SUPERVISOR_OFF},'
    f'"persistence":{NO_SYSTEMD},"warnings":[]}}'
)
STATUS_STARTING = (
    '{"status":"starting","backend":"pid","managedCodexPath":"<bin>",'
    '"managedCodexVersion":"1.0.0","socketPath":"<sock>","cliVersion":"<kitver>",'
    '"remoteControlEnabled":false,"desiredState":null,'
    f'"updater":{DEFAULT_UPDATER},"supervisor":{DEFAULT_SUPERVISOR_OFF},'
    f'"persistence":{NO_SYSTEMD},"warnings":[]}}'
)
STATUS_NOT_RUNNING = (
    '{"status":"notRunning","managedCodexPath":"<bin>","managedCodexVersion":<version>,'
    '"socketPath":"<sock>","cliVersion":"<kitver>","remoteControlEnabled":false,'
    f'"desiredState":<desired>,"updater":{DEFAULT_UPDATER},'
    f'"supervisor":<supervisor>,"persistence":{NO_SYSTEMD},"warnings":<warnings>}}'
)


def _json_text(value: str) -> str:
    return json.dumps(value, ensure_ascii=False)[1:-1]


def golden(home: Home, template: str, **values: object) -> str:
    """The template with this home's paths; ``values`` fill ``<name>`` with JSON values."""
    line = (
        template.replace("<bin>", _json_text(home.paths.managed_bin_candidates[0]))
        .replace("<sock>", _json_text(home.paths.socket))
        .replace("<S>", _json_text(home.paths.state_dir))
        .replace("<kitver>", _json_text(__version__))
    )
    for name, value in values.items():
        line = line.replace(
            f"<{name}>", json.dumps(value, separators=(",", ":"), ensure_ascii=False)
        )
    assert "<" not in line, line
    return line + "\n"


def status_line(home: Home) -> str:
    result = home.run("status")
    assert (result.returncode, result.stderr) == (0, ""), result
    return result.stdout


def write_log(path: str, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.write(fd, data)
    finally:
        os.close(fd)


# -- status ---------------------------------------------------------------------------------


def test_status_running_and_not_ready(fake_home: Home) -> None:
    # Golden lines independent of whether start spawns an updater.
    write_settings(fake_home, UPDATER_OFF)
    assert fake_home.run("start").json["status"] == "started"
    pid = fake_home.record_pid()
    assert pid is not None
    assert status_line(fake_home) == golden(fake_home, STATUS_RUNNING, pid=pid)

    # The server keeps running but stops answering: the fake never re-creates its
    # socket, so the record is active while every probe fails.
    os.unlink(fake_home.paths.socket)
    assert status_line(fake_home) == golden(fake_home, STATUS_NOT_READY, pid=pid)
    assert is_alive(pid)
    assert fake_home.record_pid() == pid

    # A managed server that does not answer is still stopped by its record.
    stopped = fake_home.run("stop").json
    assert stopped["status"] == "stopped"
    assert stopped["backend"] == "pid"
    assert not is_alive(pid)


@pytest.mark.parametrize("installed", [True, False])
def test_status_not_running_in_a_fresh_home_writes_nothing(home: Home, installed: bool) -> None:
    if installed:
        home.install_fake()
    before = sorted(os.listdir(home.path))
    line = status_line(home)
    expected = golden(
        home,
        STATUS_NOT_RUNNING,
        version="1.0.0" if installed else None,
        desired=None,
        warnings=[],
        supervisor=json.loads(DEFAULT_SUPERVISOR_OFF),
    )
    assert line == expected
    assert sorted(os.listdir(home.path)) == before  # no state dir, no socket dir


@contextlib.contextmanager
def flock_held(home: Home, path: str) -> Iterator[subprocess.Popen[bytes]]:
    """Hold the flock of ``path`` from another process (flock(1) and its sleep).

    flock(1) forks its command, so the pair runs in its own session and is killed as a
    group; killing only the flock process would leave the marked sleep behind.
    """
    holder = home.spawn_marked(["flock", path, "sleep", "30"], start_new_session=True)

    def held() -> bool:
        try:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            return False
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        finally:
            os.close(fd)
        return False

    try:
        wait_for(held, what=f"flock(1) to hold {path}")
        yield holder
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(holder.pid, signal.SIGKILL)
        holder.wait(timeout=10)


def test_status_starting_while_a_reservation_is_held(fake_home: Home) -> None:
    paths = fake_home.paths.app_server
    os.makedirs(fake_home.paths.state_dir, mode=0o700)
    write_log(paths.record, b"")  # the empty reservation of SPEC §4.4
    with flock_held(fake_home, paths.lock):
        assert status_line(fake_home) == golden(fake_home, STATUS_STARTING)
        assert os.path.getsize(paths.record) == 0
    # Lock released: an abandoned reservation reads as not running, and status (a
    # reader that must not write) leaves it for the next writer to clean up.
    line = status_line(fake_home)
    assert line == golden(
        fake_home,
        STATUS_NOT_RUNNING,
        version="1.0.0",
        desired=None,
        warnings=[],
        supervisor=json.loads(DEFAULT_SUPERVISOR_OFF),
    )
    assert os.path.exists(paths.record)


def test_status_never_removes_a_stale_record(fake_home: Home) -> None:
    started = fake_home.run("start").json
    pid = started["pid"]
    assert isinstance(pid, int)
    fake_home.stop_updater()  # the golden line is about the app-server's stale record
    raw = Path(fake_home.paths.app_server.record).read_bytes()
    os.kill(pid, signal.SIGKILL)
    wait_for(lambda: not is_alive(pid), what="the killed app-server to die")
    line = status_line(fake_home)
    assert line == golden(
        fake_home,
        STATUS_NOT_RUNNING,
        version="1.0.0",
        desired="running",
        warnings=[],
        supervisor=json.loads(DEFAULT_SUPERVISOR_INTERRUPTED),
    )
    assert Path(fake_home.paths.app_server.record).read_bytes() == raw
    # A writer cleans it up (SPEC §4.5).
    assert fake_home.run("stop").json["status"] == "notRunning"
    assert fake_home.record() is None


@pytest.mark.parametrize("contents", [b"garbage", b'{"pid":"12"}', b'{"pid":12'])
def test_status_warns_about_a_corrupt_record(fake_home: Home, contents: bytes) -> None:
    os.makedirs(fake_home.paths.state_dir, mode=0o700)
    record = fake_home.paths.app_server.record
    write_log(record, contents)
    line = status_line(fake_home)
    assert line == golden(
        fake_home,
        STATUS_NOT_RUNNING,
        version="1.0.0",
        desired=None,
        warnings=[f"invalid pid file contents in {record}"],
        supervisor=json.loads(DEFAULT_SUPERVISOR_OFF),
    )
    assert Path(record).read_bytes() == contents


# -- logs -----------------------------------------------------------------------------------

LOGS = (
    '{"appServerLog":{"path":"<S>/app-server.stderr.log","sizeBytes":<size>,"tail":<tail>},'
    '"appServerPreviousLog":{"path":"<S>/app-server.stderr.log.previous",'
    '"sizeBytes":<psize>,"tail":<ptail>},'
    '"updaterLog":{"path":"<S>/app-server-updater.stderr.log","sizeBytes":null,"tail":null},'
    '"updaterPreviousLog":{"path":"<S>/app-server-updater.stderr.log.previous",'
    '"sizeBytes":null,"tail":null},"tailBytes":<bytes>}'
)


def test_logs_after_start_and_restart(fake_home: Home) -> None:
    # Golden lines independent of whether start spawns an updater.
    write_settings(fake_home, UPDATER_OFF)
    release = fake_home.install_fake(stderr_text="server one")
    assert fake_home.run("start").json["status"] == "started"
    fake_home.configure_fake(release, stderr_text="server two")
    assert fake_home.run("restart").json["status"] == "restarted"

    current = "server two\n"
    previous = "server one\nfake codex app-server terminated\n"
    result = fake_home.run("logs")
    assert (result.returncode, result.stderr) == (0, ""), result
    assert result.stdout == golden(
        fake_home,
        LOGS,
        size=len(current),
        tail="server two",
        psize=len(previous),
        ptail="server one\nfake codex app-server terminated",
        bytes=16384,
    )
    # --bytes cuts at a line boundary: the partial first line is dropped.
    cut = fake_home.run("logs", "--bytes", "40")
    assert cut.stdout == golden(
        fake_home,
        LOGS,
        size=len(current),
        tail="server two",
        psize=len(previous),
        ptail="fake codex app-server terminated",
        bytes=40,
    )


def test_logs_with_nothing_there_are_nulls_and_create_nothing(home: Home) -> None:
    result = home.run("logs", "--bytes", "1")
    assert (result.returncode, result.stderr) == (0, ""), result
    assert result.stdout == golden(
        home, LOGS, size=None, tail=None, psize=None, ptail=None, bytes=1
    )
    assert not os.path.exists(home.paths.state_dir)


@pytest.mark.parametrize(
    ("limit", "tail"),
    [
        ("1048576", "alpha\nbravo\ncharlie"),
        ("20", "alpha\nbravo\ncharlie"),  # the whole file: nothing to cut
        ("19", "bravo\ncharlie"),  # starts inside "alpha\n": that partial line is dropped
        ("10", "charlie"),
        # The window lies inside the last line: its end, rather than nothing.
        ("5", "rlie"),
        ("2", "e"),
        ("1", None),  # only the final newline: nothing but whitespace to show
    ],
)
def test_logs_bytes_cut_at_a_line_boundary(home: Home, limit: str, tail: str | None) -> None:
    os.makedirs(home.paths.state_dir, mode=0o700)
    write_log(home.paths.app_server.log, b"alpha\nbravo\ncharlie\n")
    result = home.run("logs", "--bytes", limit)
    assert (result.returncode, result.stderr) == (0, ""), result
    assert result.stdout == golden(
        home, LOGS, size=20, tail=tail, psize=None, ptail=None, bytes=int(limit)
    )


@pytest.mark.parametrize(
    ("last_line", "tail"),
    [
        # The case issue 10 reports: 866 bytes, --bytes 300, a last line of 365 bytes.
        ("y" * 365, "y" * 299),
        # Two-byte characters with the window starting on the second byte of one:
        # the stray byte is dropped, never shown as U+FFFD.
        ("\u00e9" * 182, "\u00e9" * 149),
    ],
    ids=["ascii", "cut-inside-a-character"],
)
def test_logs_tail_inside_one_long_line_is_its_end(home: Home, last_line: str, tail: str) -> None:
    os.makedirs(home.paths.state_dir, mode=0o700)
    last = last_line.encode() + b"\n"
    head = b"a" * (866 - len(last) - 1) + b"\n"
    write_log(home.paths.app_server.log, head + last)
    result = home.run("logs", "--bytes", "300")
    assert (result.returncode, result.stderr) == (0, ""), result
    assert result.stdout == golden(
        home, LOGS, size=866, tail=tail, psize=None, ptail=None, bytes=300
    )


def test_logs_empty_file_has_size_zero_and_null_tail(home: Home) -> None:
    os.makedirs(home.paths.state_dir, mode=0o700)
    write_log(home.paths.app_server.previous_log, b"")
    result = home.run("logs")
    assert result.stdout == golden(
        home, LOGS, size=None, tail=None, psize=0, ptail=None, bytes=16384
    )


def test_logs_replace_invalid_utf8_and_print_raw_utf8(home: Home) -> None:
    os.makedirs(home.paths.state_dir, mode=0o700)
    data = b"ok \xe2\x9c\x93\nbad \xff\xfe end\n  \n"
    write_log(home.paths.app_server.log, data)
    result = home.run("logs")
    assert (result.returncode, result.stderr) == (0, ""), result
    assert "\\u" not in result.stdout  # raw UTF-8, not escapes (SPEC §2.2)
    assert result.stdout == golden(
        home,
        LOGS,
        size=len(data),
        tail="ok \u2713\nbad \ufffd\ufffd end",
        psize=None,
        ptail=None,
        bytes=16384,
    )


@pytest.mark.parametrize("target_exists", [True, False], ids=["target", "dangling"])
def test_logs_refuse_a_symlinked_log_with_a_warning(home: Home, target_exists: bool) -> None:
    os.makedirs(home.paths.state_dir, mode=0o700)
    target = home.root / "outside.log"
    if target_exists:
        target.write_text("secret line\n")
    log = home.paths.app_server.log
    os.symlink(target, log)
    write_log(home.paths.app_server.previous_log, b"previous line\n")
    result = home.run("logs")
    assert result.returncode == 0, result  # a warning never changes the exit code
    assert result.stderr == f"warning: refusing to use {log}: it is a symbolic link\n"
    assert result.stdout == golden(
        home,
        LOGS,
        size=None,
        tail=None,
        psize=len("previous line\n"),
        ptail="previous line",
        bytes=16384,
    )
    assert "secret" not in result.stdout
    assert os.path.islink(log)
    if target_exists:
        assert target.read_text() == "secret line\n"
    else:
        assert not os.path.lexists(target)
