"""What a spawned app-server inherits, observed from the inside (SPEC §4.7, §4.9, §13.2 row 9).

The fake writes a ``start`` event to its witness file before it opens anything (argv,
cwd, fds, umask, process group, session, environment); the rest is read from /proc
while it runs. The CLI is started with a umask, ignored and blocked signals and
socket-activation variables that must not reach the server.
"""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from tests.harness import UPDATER_OFF, Result, write_settings

if TYPE_CHECKING:
    from tests.harness import Home

pytestmark = pytest.mark.timeout(60)

CALLER_UMASK = 0o027
LEAKY_ENV = {
    "LISTEN_FDS": "3",
    "LISTEN_PID": "1",
    "LISTEN_FDNAMES": "activation",
    "NOTIFY_SOCKET": "/run/systemd/notify",
    "CODEX_DAEMONKIT_DEBUG": "1",
    "CODEX_DAEMONKIT_SOMETHING": "for the kit only",
}


def witness_start(home: Home, pid: int) -> dict[str, object]:
    for line in (home.root / "witness.jsonl").read_text().splitlines():
        entry = json.loads(line)
        if entry["event"] == "start" and entry["pid"] == pid:
            assert isinstance(entry, dict)
            return entry
    pytest.fail(f"no witness start event for pid {pid}")


def unfriendly_caller() -> None:
    """preexec_fn: the caller's umask, ignored and blocked signals survive exec."""
    os.umask(CALLER_UMASK)
    signal.signal(signal.SIGQUIT, signal.SIG_IGN)
    signal.signal(signal.SIGUSR2, signal.SIG_IGN)
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGUSR1, signal.SIGWINCH})


def start_from_unfriendly_caller(home: Home) -> Result:
    done = subprocess.run(
        home.argv("start"),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        env=home.env(**LEAKY_ENV),
        preexec_fn=unfriendly_caller,  # the test process runs no threads
        timeout=60,
        check=False,
    )
    return Result(done.returncode, done.stdout.decode(), done.stderr.decode())


def proc_status(pid: int) -> dict[str, str]:
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        fields[key] = value.strip()
    return fields


def test_spawned_server_is_a_clean_detached_group_leader(home: Home) -> None:
    write_settings(home, UPDATER_OFF)
    release = home.install_fake(witness=str(home.root / "witness.jsonl"))
    started = start_from_unfriendly_caller(home).json
    assert started["status"] == "started"
    pid = started["pid"]
    assert isinstance(pid, int)
    seen = witness_start(home, pid)

    # argv: the canonical release path, so a later flip of current changes nothing.
    assert seen["argv"] == [
        os.path.realpath(release / "codex"),
        "app-server",
        "--listen",
        "unix://",
        "--analytics-default-enabled",
        "--managed-daemon",
    ]
    assert seen["remote_control"] is False

    # Session, group, terminal.
    assert seen["pgid"] == pid
    assert seen["sid"] != os.getsid(0), "the server must not stay in the caller's session"
    assert seen["sid"] != pid, "a session leader could acquire a controlling terminal"
    proc_stat = Path(f"/proc/{pid}/stat").read_bytes().rsplit(b")", 1)[1].split()
    assert int(proc_stat[2]) == pid  # pgrp
    assert int(proc_stat[3]) == seen["sid"]  # session
    assert int(proc_stat[4]) == 0, "the server has a controlling terminal"  # tty_nr

    # Working directory: the state directory, neither the caller's nor $HOME, which
    # Codex would treat as a project (SPEC §4.7). And the caller's umask.
    state_dir = os.path.realpath(home.paths.state_dir)
    assert os.getcwd() != state_dir
    assert seen["cwd"] == state_dir
    assert os.readlink(f"/proc/{pid}/cwd") == state_dir
    assert seen["umask"] == CALLER_UMASK

    # Descriptors: 0 and 1 /dev/null, 2 the fresh log, nothing else at exec.
    assert seen["fds"] == [0, 1, 2]
    assert os.readlink(f"/proc/{pid}/fd/0") == "/dev/null"
    assert os.readlink(f"/proc/{pid}/fd/1") == "/dev/null"
    assert os.readlink(f"/proc/{pid}/fd/2") == home.paths.app_server.log
    held = {os.readlink(f"/proc/{pid}/fd/{fd}") for fd in os.listdir(f"/proc/{pid}/fd")}
    for lock in (home.paths.operation_lock, home.paths.app_server.lock):
        assert lock not in held, f"{lock} leaked into the server"
    assert stat.S_IMODE(os.stat(home.paths.app_server.log).st_mode) == 0o600

    # Signals: nothing ignored, nothing blocked, whatever the caller had.
    status = proc_status(pid)
    assert int(status["SigIgn"], 16) == 0, status["SigIgn"]
    assert int(status["SigBlk"], 16) == 0, status["SigBlk"]

    # Environment hygiene; remote control is off by default.
    env = seen["env"]
    assert isinstance(env, dict)
    assert env["CODEX_HOME"] == str(home.path)
    assert env["CODEX_INTERNAL_APP_SERVER_REMOTE_CONTROL_DISABLED"] == "1"
    for name in ("LISTEN_FDS", "LISTEN_PID", "LISTEN_FDNAMES", "NOTIFY_SOCKET"):
        assert env[name] is None, f"{name} reached the server"
    assert [name for name in env if name.startswith("CODEX_DAEMONKIT_")] == []


def test_each_spawn_rotates_the_previous_log(home: Home) -> None:
    write_settings(home, UPDATER_OFF)
    release = home.install_fake(stderr_text="first server")
    log = Path(home.paths.app_server.log)
    previous = Path(home.paths.app_server.previous_log)
    previous.parent.mkdir(mode=0o700, exist_ok=True)
    previous.write_text("ancient history\n")

    assert home.run("start").json["status"] == "started"
    assert log.read_text() == "first server\n"
    assert previous.read_text() == "ancient history\n", "no log existed to rotate"

    home.configure_fake(release, stderr_text="second server")
    assert home.run("restart").json["status"] == "restarted"
    assert log.read_text() == "second server\n"
    assert previous.read_text().startswith("first server\n")
    for path in (log, previous):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
